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
//! - Pub/Sub "Authentication for push subscriptions": each push carries an OIDC token for
//!   the subscription's audience, issued to its push service account (minted here by
//!   [`crate::oidc::Issuer`]).
//! - Pub/Sub "Dead-letter topics": `deliveryAttempt` in the envelope when the subscription
//!   has a dead-letter policy.
//! - Pub/Sub "Exactly-once delivery" and "Message ordering": delivery is at least once, a
//!   message may arrive twice even after a successful answer, and in any order.
//!
//! The fault knobs of [`Faults`] (duplicates, also after a 2xx; answers lost as if the ack
//! deadline passed; random delays, which reorder) are decided per message from the run's
//! seed and the message id, so a run prints its seed and a failure can be replayed with the
//! same decisions for the same messages. What it leaves out: Pub/Sub's slow start and its
//! push backoff (the flow here is limited only by `max_in_flight`), and the 10 MB push size.

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
use tokio::sync::Semaphore;

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
    /// Most pushes in flight per subscription: Cloud Run's `max_instance_count ×
    /// max_instance_request_concurrency` for the default deployment.
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
    slots: Arc<Semaphore>,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
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
                slots: Arc::new(Semaphore::new(settings.max_in_flight)),
                token: tokio::sync::Mutex::new(None),
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
                    let Ok(slot) = shared.slots.clone().acquire_owned().await else {
                        return;
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        deliver(&shared, message, handler).await;
                        drop(slot);
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

async fn deliver(
    shared: &Shared,
    message: google_cloud_pubsub::model::Message,
    handler: google_cloud_pubsub::subscriber::handler::Handler,
) {
    let attempt = handler.delivery_attempt();
    let fate = Fate::of(
        &shared.settings.faults,
        shared.settings.seed,
        &message.message_id,
        attempt.unwrap_or(1),
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
    if delivered && !fate.lose_answer {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
