//! A model of Pub/Sub push delivery as Google Cloud does it, for subscriptions on the
//! emulator, which pushes quite differently (at most two requests in flight per
//! subscription, no token, no duplicates after a 2xx, no `deliveryAttempt`).
//!
//! The subscriptions keep their retry and dead-letter policies, but are created without a
//! push endpoint: this deliverer pulls their messages (a streaming pull, as a push server
//! would), and POSTs each as the push envelope Pub/Sub sends, acking on 2xx and nacking
//! otherwise, so that the emulator's retry and dead-letter policies still decide what is
//! redelivered and what is dead-lettered. It follows:
//!
//! - Pub/Sub "Push subscriptions": the envelope (`message.data` in base64, `attributes`,
//!   `messageId`, `publishTime`, `subscription`), success is a 102/200/201/202/204 answer,
//!   anything else (or no answer within the ack deadline) is a failed delivery; Pub/Sub
//!   pushes many requests at once, adjusting to the rate of successful answers.
//! - Pub/Sub "Push subscriptions", "Delivery rate": the pushes in flight are limited by a
//!   push window, which starts at a small single-digit size, grows on each successful
//!   delivery (so it doubles every round trip, as a slow start does) and shrinks on each
//!   failure ([`Window`]: here it starts at 3, grows by one, halves on a failure, at most
//!   once a round trip as a congestion window does, and never passes
//!   [`Settings::max_in_flight`]). The page gives no exact rule; these are the
//!   model's choice, and the cap is what Terraform's Cloud Run services can take at once.
//! - Pub/Sub "Authentication for push subscriptions": each push carries an OIDC token for
//!   the subscription's audience, issued to its push service account (minted here by
//!   [`crate::oidc::Issuer`]).
//! - Pub/Sub "Dead-letter topics": `deliveryAttempt` in the envelope when the subscription
//!   has a dead-letter policy.
//! - Pub/Sub "Exactly-once delivery" and "Message ordering": delivery is at least once, a
//!   message may arrive twice even after a successful answer, and in any order.
//!
//! The fault knobs of [`Faults`] (duplicates, also after a 2xx; answers lost as if the ack
//! deadline passed; random delays, which reorder) are decided per delivery from the run's
//! seed, the message id and the delivery's number (its `deliveryAttempt`, or counted here
//! where the subscription has no dead-letter policy and so none), so a run prints its seed
//! and a failure can be replayed with the same decisions for the same messages.
//!
//! What it leaves out: Pub/Sub's push backoff (the same page: after too many negative
//! answers Pub/Sub stops pushing a subscription for 100 ms to 60 s, from an exponential
//! backoff on the rate of negative answers whose values are not published; its examples:
//! one failure a second in five pushes, a push every 500 ms; five failures a second, a push
//! every 30 to 60 s), which only slows retries down (the saga's deadline allows for it:
//! `saga::contract::PushPolicy::retry_horizon`); a push window above what the services take
//! at once (Google's grows past 3,000 outstanding messages; see [`Settings::max_in_flight`]);
//! and the 10 MB push size.

use crate::oidc::Issuer;
use anyhow::Context as _;
use base64::Engine as _;
use google_cloud_pubsub::client::Subscriber;
use serde_json::json;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Where one subscription's messages go.
#[derive(Clone, Debug)]
pub struct Route {
    /// The subscription's full name, `projects/P/subscriptions/S`.
    pub subscription: String,
    /// The push endpoint: the Cloud Run service's URL and the path.
    pub endpoint: String,
    /// The token's audience (the subscription's `oidc_token.audience`).
    pub audience: String,
    /// The push service account the token is issued to.
    pub push_account: String,
}

/// Faults to inject, each a fraction of messages (0.0 to 1.0) chosen from the seed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Delivered twice: half of them concurrently, half after the first was answered (even
    /// with a 2xx).
    pub duplicate: f64,
    /// Answered, but the answer is lost as if the ack deadline passed: redelivered.
    pub lost_answer: f64,
    /// Each push waits a random time up to this first, so messages overtake each other.
    pub max_delay: Duration,
}

/// How the deliverer delivers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Most pushes in flight per subscription, the most its push window grows to: Cloud
    /// Run's `max_instance_count × max_instance_request_concurrency` for the default
    /// deployment, as issue 17 set it. Google's window is not bounded by the endpoint (past
    /// 3,000 outstanding messages it grows linearly, and shrinks no lower than that): what
    /// the services cannot take then waits at Cloud Run's front end and, after 10 s, is
    /// refused with 429 (`cloud_run`'s pending queue; docs/deploy.md says what that costs).
    pub max_in_flight: usize,
    /// How long a push may wait for its answer: the subscription's ack deadline.
    pub ack_deadline: Duration,
    /// The faults to inject.
    pub faults: Faults,
    /// The seed of every random decision.
    pub seed: u64,
}

impl Settings {
    /// Terraform's default deployment (3 instances × 80 requests), no faults.
    pub fn like_the_deployment(ack_deadline: Duration, seed: u64) -> Self {
        Settings {
            max_in_flight: 3 * 80,
            ack_deadline,
            faults: Faults::default(),
            seed,
        }
    }
}

/// What the deliverer did, for tests and the benchmark's bill.
#[derive(Debug, Default)]
pub struct Counters {
    /// Push requests sent (duplicates included).
    pub pushes: AtomicU64,
    /// Messages acked.
    pub acked: AtomicU64,
    /// Messages nacked (non-2xx, timeout, lost answer): the emulator redelivers them.
    pub nacked: AtomicU64,
    /// Extra deliveries of a message.
    pub duplicates: AtomicU64,
    /// Answers thrown away as if late.
    pub lost_answers: AtomicU64,
    /// Bytes of message data pushed.
    pub bytes: AtomicU64,
    /// The widest any subscription's push window grew.
    pub widest_window: AtomicU64,
}

/// The window a push starts with: "a small single-digit window size".
pub const START_WINDOW: usize = 3;

/// A subscription's push window: how many of its pushes may be in flight. Pure, so that its
/// rule is tested on its own; [`Gate`] holds the deliveries to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    size: usize,
    max: usize,
}

impl Window {
    /// A window that starts at [`START_WINDOW`] and grows to at most `max` (at least 1).
    pub fn new(max: usize) -> Window {
        let max = max.max(1);
        Window {
            size: START_WINDOW.min(max),
            max,
        }
    }

    /// How many pushes may be in flight now.
    pub fn size(self) -> usize {
        self.size
    }

    /// After a successful delivery: one more. Each push of a full window that succeeds adds
    /// one, so the window doubles every round trip.
    #[must_use]
    pub fn widened(self) -> Window {
        Window {
            size: (self.size + 1).min(self.max),
            ..self
        }
    }

    /// After a failed delivery (a non-success answer, or none in time): half, at least 1.
    #[must_use]
    pub fn narrowed(self) -> Window {
        Window {
            size: (self.size / 2).max(1),
            ..self
        }
    }
}

/// Admits a subscription's deliveries within its push window. One task waits to enter (the
/// subscription's pull loop); any number of passes leave.
///
/// A failure narrows the window once per round trip, as a congestion window is: the pushes
/// already in flight when it narrowed were sent into the old window, so their failures (a
/// burst of 429s, say) do not narrow it again; a push sent after it narrowed can.
#[derive(Debug)]
struct Gate {
    state: std::sync::Mutex<GateState>,
    freed: Notify,
}

#[derive(Debug)]
struct GateState {
    window: Window,
    in_flight: usize,
    /// How many times the window narrowed: a pass remembers it to know whether it was sent
    /// before the last narrowing.
    narrowings: u64,
}

/// A delivery in flight; [`Pass::leave`] says how it went, and dropping it unsaid (a task
/// cancelled at shutdown) frees its place without moving the window.
struct Pass {
    gate: Arc<Gate>,
    sent_after: u64,
    left: bool,
}

impl Gate {
    fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: std::sync::Mutex::new(GateState {
                window: Window::new(max),
                in_flight: 0,
                narrowings: 0,
            }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the window has room for one more delivery.
    async fn enter(self: &Arc<Self>) -> Pass {
        loop {
            if let Some(pass) = self.try_enter() {
                return pass;
            }
            // `notify_one` keeps a permit when nobody waits yet, so a place freed between
            // the check above and this wait is not missed.
            self.freed.notified().await;
        }
    }

    /// A place in the window, if there is one now.
    fn try_enter(self: &Arc<Self>) -> Option<Pass> {
        let mut state = self.lock();
        (state.in_flight < state.window.size()).then(|| {
            state.in_flight += 1;
            Pass {
                gate: self.clone(),
                sent_after: state.narrowings,
                left: false,
            }
        })
    }
}

impl Pass {
    /// The delivery ended: widens the window if it succeeded, narrows it if not (unless it
    /// narrowed since this push was sent). The window's size after.
    fn leave(mut self, delivered: bool) -> usize {
        self.left = true;
        let mut state = self.gate.lock();
        if delivered {
            state.window = state.window.widened();
        } else if self.sent_after == state.narrowings {
            state.window = state.window.narrowed();
            state.narrowings += 1;
        }
        state.in_flight -= 1;
        let size = state.window.size();
        drop(state);
        self.gate.freed.notify_one();
        size
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.left {
            self.gate.lock().in_flight -= 1;
            self.gate.freed.notify_one();
        }
    }
}

/// The decisions for one delivery of one message, derived from the seed and its id.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fate {
    delay: Duration,
    duplicate: Option<Duplicate>,
    lose_answer: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Duplicate {
    Concurrent,
    AfterAnswer,
}

/// A uniform number in [0, 1) from `seed`, the message and what is being decided.
fn draw(seed: u64, message_id: &str, attempt: i32, what: &str) -> f64 {
    let mut h = DefaultHasher::new();
    (seed, message_id, attempt, what).hash(&mut h);
    #[allow(clippy::cast_precision_loss)]
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

impl Fate {
    fn of(faults: &Faults, seed: u64, message_id: &str, attempt: i32) -> Fate {
        let d = |what| draw(seed, message_id, attempt, what);
        let duplicate = (d("duplicate") < faults.duplicate).then(|| {
            if d("concurrent") < 0.5 {
                Duplicate::Concurrent
            } else {
                Duplicate::AfterAnswer
            }
        });
        Fate {
            delay: faults.max_delay.mul_f64(d("delay")),
            duplicate,
            lose_answer: d("lose") < faults.lost_answer,
        }
    }
}

/// Delivers the messages of every route until stopped.
#[derive(Debug)]
pub struct Deliverer {
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdowns: Vec<google_cloud_pubsub::subscriber::ShutdownToken>,
}

struct Shared {
    route: Route,
    settings: Settings,
    issuer: Arc<Issuer>,
    http: reqwest::Client,
    counters: Arc<Counters>,
    gate: Arc<Gate>,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
    deliveries: Deliveries,
}

/// Deliveries so far of each unacked message, for a subscription without a dead-letter
/// policy, whose messages carry no `deliveryAttempt`: each delivery then still draws its own
/// fate (Google's faults are independent per attempt), instead of the first one's for ever.
#[derive(Debug, Default)]
struct Deliveries(std::sync::Mutex<std::collections::HashMap<String, i32>>);

impl Deliveries {
    /// This delivery's number, from 1.
    fn next(&self, message_id: &str) -> i32 {
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = counts.entry(message_id.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// An acked message is not delivered again.
    fn forget(&self, message_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(message_id);
    }
}

/// How long a minted token is reused before a new one is minted. Signing is the costly part
/// of a push here; Google's tokens are valid for an hour, and Pub/Sub's reuse of them is not
/// visible to a receiver, which checks each one anyway.
const TOKEN_REUSE: Duration = Duration::from_mins(5);

impl Deliverer {
    /// Starts delivering `routes` from the Pub/Sub emulator at `pubsub_endpoint`
    /// (`http://host:port`), with tokens from `issuer`.
    pub async fn start(
        pubsub_endpoint: &str,
        issuer: Arc<Issuer>,
        routes: Vec<Route>,
        settings: &Settings,
    ) -> anyhow::Result<Deliverer> {
        let client = Subscriber::builder()
            .with_endpoint(pubsub_endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .context("building the deliverer's subscriber client")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.max_in_flight)
            .build()
            .context("building the deliverer's HTTP client")?;
        let counters = Arc::new(Counters::default());
        let mut tasks = Vec::new();
        let mut shutdowns = Vec::new();
        for route in routes {
            let max = i64::try_from(settings.max_in_flight).unwrap_or(i64::MAX);
            let mut stream = client
                .subscribe(route.subscription.clone())
                .set_max_outstanding_messages(max)
                .build();
            shutdowns.push(stream.shutdown_token());
            let shared = Arc::new(Shared {
                route,
                settings: settings.clone(),
                issuer: issuer.clone(),
                http: http.clone(),
                counters: counters.clone(),
                gate: Gate::new(settings.max_in_flight),
                token: tokio::sync::Mutex::new(None),
                deliveries: Deliveries::default(),
            });
            tasks.push(tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    let (message, handler) = match item {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::debug!(target: "pubsub_push", error = %e, "pull failed; the stream retries");
                            continue;
                        }
                    };
                    let pass = shared.gate.enter().await;
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let delivered = deliver(&shared, message, handler).await;
                        let window = u64::try_from(pass.leave(delivered)).unwrap_or(u64::MAX);
                        shared.counters.widest_window.fetch_max(window, Ordering::Relaxed);
                    });
                }
            }));
        }
        Ok(Deliverer {
            counters,
            tasks,
            shutdowns,
        })
    }

    /// What it did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops pulling; messages being pushed are nacked by the client library and
    /// redelivered by the emulator to whoever pulls next.
    pub async fn stop(self) {
        for shutdown in self.shutdowns {
            shutdown.shutdown().await;
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    async fn token(&self) -> String {
        let mut cached = self.token.lock().await;
        if let Some((token, minted)) = cached.as_ref()
            && minted.elapsed() < TOKEN_REUSE
        {
            return token.clone();
        }
        let token = self
            .issuer
            .push_token(&self.route.audience, &self.route.push_account);
        *cached = Some((token.clone(), Instant::now()));
        token
    }

    /// The push envelope of `message`, as Pub/Sub POSTs it.
    fn envelope(&self, message: &google_cloud_pubsub::model::Message, attempt: Option<i32>) -> Vec<u8> {
        let publish_time = message.publish_time.map(String::from).unwrap_or_default();
        let mut body = json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(&message.data),
                "attributes": message.attributes,
                "messageId": message.message_id,
                "message_id": message.message_id,
                "publishTime": publish_time,
                "publish_time": publish_time,
            },
            "subscription": self.route.subscription,
        });
        if let Some(attempt) = attempt {
            body["deliveryAttempt"] = json!(attempt);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// One POST; whether it was answered with a success within the ack deadline.
    async fn push(&self, body: Vec<u8>, data_bytes: usize) -> bool {
        self.counters.pushes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(u64::try_from(data_bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
        let request = self
            .http
            .post(&self.route.endpoint)
            .header("content-type", "application/json")
            .bearer_auth(self.token().await)
            .body(body)
            .send();
        match tokio::time::timeout(self.settings.ack_deadline, request).await {
            // Pub/Sub's success codes.
            Ok(Ok(answer)) => matches!(answer.status().as_u16(), 102 | 200 | 201 | 202 | 204),
            Ok(Err(e)) => {
                tracing::debug!(target: "pubsub_push", error = %e, "push failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// Delivers `message` (twice, if its fate says so); whether Pub/Sub would count it as a
/// successful delivery.
async fn deliver(
    shared: &Shared,
    message: google_cloud_pubsub::model::Message,
    handler: google_cloud_pubsub::subscriber::handler::Handler,
) -> bool {
    let attempt = handler.delivery_attempt();
    let fate = Fate::of(
        &shared.settings.faults,
        shared.settings.seed,
        &message.message_id,
        attempt.unwrap_or_else(|| shared.deliveries.next(&message.message_id)),
    );
    tokio::time::sleep(fate.delay).await;
    let body = shared.envelope(&message, attempt);
    let size = message.data.len();
    let delivered = if fate.duplicate == Some(Duplicate::Concurrent) {
        shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        let (first, _) = tokio::join!(shared.push(body.clone(), size), shared.push(body.clone(), size));
        first
    } else {
        shared.push(body.clone(), size).await
    };
    let succeeded = delivered && !fate.lose_answer;
    if succeeded {
        if attempt.is_none() {
            shared.deliveries.forget(&message.message_id);
        }
        handler.ack();
        shared.counters.acked.fetch_add(1, Ordering::Relaxed);
    } else {
        if fate.lose_answer {
            shared.counters.lost_answers.fetch_add(1, Ordering::Relaxed);
        }
        handler.nack();
        shared.counters.nacked.fetch_add(1, Ordering::Relaxed);
    }
    if fate.duplicate == Some(Duplicate::AfterAnswer) {
        shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        shared.push(body, size).await;
    }
    succeeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_delivery_attempt_each_delivery_of_a_message_is_counted_until_it_is_acked() {
        let deliveries = Deliveries::default();
        let counted: Vec<i32> = ["a", "a", "b", "a"]
            .iter()
            .map(|id| deliveries.next(id))
            .collect();
        assert_eq!(counted, [1, 2, 1, 3]);
        deliveries.forget("a");
        assert_eq!((deliveries.next("a"), deliveries.next("b")), (1, 2));
        // So a message whose first delivery loses its answer is not lost on every one.
        let faults = Faults {
            lost_answer: 0.5,
            ..Faults::default()
        };
        let lost: Vec<bool> = (1..=20)
            .map(|n| Fate::of(&faults, 3, "m", n).lose_answer)
            .collect();
        assert!(lost.contains(&false) && lost.contains(&true), "{lost:?}");
    }

    #[test]
    fn the_push_window_starts_small_grows_by_one_per_success_and_halves_on_a_failure() {
        // (max, outcomes in order, size after each)
        let cases: &[(usize, &str, &[usize])] = &[
            (240, "", &[]),
            (240, "+++", &[4, 5, 6]),
            (240, "++++-", &[4, 5, 6, 7, 3]),
            (240, "----+", &[1, 1, 1, 1, 2]),
            (5, "+++++", &[4, 5, 5, 5, 5]),
            (2, "+-", &[2, 1]),
            (0, "++", &[1, 1]),
        ];
        for &(max, outcomes, sizes) in cases {
            let mut window = Window::new(max);
            assert_eq!(window.size(), START_WINDOW.min(max.max(1)), "max {max}: start");
            for (outcome, &size) in outcomes.chars().zip(sizes) {
                window = if outcome == '+' {
                    window.widened()
                } else {
                    window.narrowed()
                };
                assert_eq!(window.size(), size, "max {max}, {outcomes}");
            }
        }
    }

    #[test]
    fn the_window_doubles_each_round_trip_while_every_push_succeeds() {
        let mut window = Window::new(240);
        let mut trips = 0;
        while window.size() < 240 {
            let before = window.size();
            for _ in 0..before {
                window = window.widened();
            }
            assert_eq!(window.size(), (2 * before).min(240));
            trips += 1;
        }
        assert_eq!(trips, 7, "3 → 240 in seven round trips");
    }

    #[test]
    fn the_gate_admits_only_what_the_window_allows_and_failures_admit_fewer() {
        let gate = Gate::new(240);
        let passes: Vec<Pass> = (0..START_WINDOW).map_while(|_| gate.try_enter()).collect();
        assert_eq!(passes.len(), START_WINDOW);
        assert!(gate.try_enter().is_none(), "a full window admits no more");

        let mut passes = passes.into_iter();
        assert_eq!(passes.next().map(|p| p.leave(true)), Some(4));
        let more: Vec<Pass> = std::iter::from_fn(|| gate.try_enter()).collect();
        assert_eq!(more.len(), 2, "a success frees one place and adds one");

        let sizes: Vec<usize> = passes.chain(more).map(|p| p.leave(false)).collect();
        assert_eq!(
            sizes,
            vec![2, 2, 2, 2],
            "halved once: the others were sent before it narrowed"
        );
        let after: Vec<Pass> = std::iter::from_fn(|| gate.try_enter()).collect();
        assert_eq!(after.len(), 2, "after failures, fewer at a time");
        let sizes: Vec<usize> = after.into_iter().map(|p| p.leave(false)).collect();
        assert_eq!(
            sizes,
            vec![1, 1],
            "a push sent after it narrowed narrows it again"
        );
    }

    #[test]
    fn a_pass_dropped_unsaid_frees_its_place_and_leaves_the_window_as_it_was() {
        let gate = Gate::new(240);
        let passes: Vec<Pass> = std::iter::from_fn(|| gate.try_enter()).collect();
        assert_eq!(passes.len(), START_WINDOW);
        drop(passes);
        let again: Vec<Pass> = std::iter::from_fn(|| gate.try_enter()).collect();
        assert_eq!(again.len(), START_WINDOW);
    }

    #[tokio::test]
    async fn a_delivery_waiting_at_a_full_window_enters_when_one_leaves() {
        let gate = Gate::new(1);
        let first = gate
            .try_enter()
            .unwrap_or_else(|| panic!("an empty window admits one"));
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.leave(true) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits while the window is full");
        first.leave(true);
        let entered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(
            matches!(entered, Ok(Ok(1))),
            "woken when a place freed: {entered:?}"
        );
    }

    #[test]
    fn a_messages_fate_depends_only_on_the_seed_and_the_message() {
        let faults = Faults {
            duplicate: 0.5,
            lost_answer: 0.5,
            max_delay: Duration::from_millis(100),
        };
        let a = Fate::of(&faults, 7, "42", 1);
        assert_eq!(a, Fate::of(&faults, 7, "42", 1), "replayable");
        let others: Vec<Fate> = (0..50).map(|i| Fate::of(&faults, 7, &i.to_string(), 1)).collect();
        assert!(others.iter().any(|f| f.duplicate.is_some()) && others.iter().any(|f| f.duplicate.is_none()));
        assert!(others.iter().any(|f| f.lose_answer) && others.iter().any(|f| !f.lose_answer));
        assert!(others.iter().all(|f| f.delay <= faults.max_delay));
    }

    #[test]
    fn the_rates_of_the_faults_are_kept_over_many_messages() {
        let faults = Faults {
            duplicate: 0.05,
            ..Faults::default()
        };
        let n = 20_000;
        let twice = (0..n)
            .filter(|i| Fate::of(&faults, 1, &i.to_string(), 1).duplicate.is_some())
            .count();
        assert!((800..1200).contains(&twice), "{twice} of {n}");
        assert!(
            (0..n).all(|i| Fate::of(&Faults::default(), 1, &i.to_string(), 1)
                == Fate {
                    delay: Duration::ZERO,
                    duplicate: None,
                    lose_answer: false
                }),
            "no faults unless asked for"
        );
    }
}
