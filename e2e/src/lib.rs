//! The end-to-end test harness: a whole saga per test, isolated in its own project on the
//! shared emulators, with the five services running in the test process on free ports and
//! real push subscriptions pointing at them.
//!
//! The emulators are started once per test binary (or reused from
//! `PUBSUB_EMULATOR_HOST`/`FIRESTORE_EMULATOR_HOST`). If they cannot start, every test fails
//! with a message saying how to install them.

use devstack::emulators::{self, Emulators};
use devstack::gcp_like::{self, GcpLike};
use devstack::pubsub::{Puller, Received};
use gcp_models::pubsub_push::{self, Settings};
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_pubsub::client::{BasePublisher, SubscriptionAdmin};
use google_cloud_pubsub::model::Message;
use saga::contract::{PUSH_POLICY, PushPolicy, Service, Topic};
use saga::domain::SagaId;
use saga::faults::Faults;
use saga::gcp::store::{DocPath, Store, WriteSet};
use saga::runtime::config::Config;
use saga::runtime::service::Running;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

pub use devstack::pubsub;

pub mod written;

static EMULATORS: OnceLock<Result<Emulators, String>> = OnceLock::new();

/// The emulators of this test binary, started on first use.
///
/// # Panics
/// If they cannot be started or reached; the message says how to install them.
pub fn shared_emulators() -> &'static Emulators {
    let result = EMULATORS.get_or_init(|| {
        let options = emulators::Options {
            pubsub_port: 0,
            firestore_port: 0,
            log_dir: std::env::temp_dir().join(format!("saga-e2e-{}", std::process::id())),
            progress: false,
        };
        Emulators::reuse_or_start(&options).map_err(|e| format!("{e:#}"))
    });
    match result {
        Ok(emulators) => emulators,
        Err(e) => panic!("the end-to-end tests need the Pub/Sub and Firestore emulators: {e}"),
    }
}

/// Logs as `RUST_LOG` says, and records every committed write for [`written`].
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,firestore=error"));
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(filter),
            )
            .with(written::Recorder.with_filter(EnvFilter::new("saga::writes=debug")))
            .try_init();
    });
}

/// A project id for one test: its name plus a random suffix, so reruns never collide.
fn project_id(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("t-{clean}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A whole saga for one test.
pub struct TestStack {
    /// The test's own project.
    pub project: String,
    /// The running services (with GCP-like delivery, each worker's first instance).
    pub services: BTreeMap<Service, Running>,
    /// With GCP-like delivery, each worker's other instances, as Cloud Run runs
    /// [`gcp_like::INSTANCES`] of it: they share its test hooks ([`saga::faults::Faults::of`]).
    pub more_instances: Vec<Running>,
    /// GCP-like delivery, when the stack was started with it.
    pub gcp: Option<GcpLike>,
    /// Firestore of the project.
    pub store: Store,
    /// Reads pull subscriptions.
    pub puller: Puller,
    /// HTTP client.
    pub http: reqwest::Client,
    publisher: BasePublisher,
    emulators: &'static Emulators,
    /// Messages read by [`TestStack::outcomes`] but not asked for yet, by subscription and uuid.
    stash: std::sync::Mutex<HashMap<String, HashMap<String, Vec<Value>>>>,
}

/// How pushes reach the workers of a test stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Delivery {
    /// The Pub/Sub emulator's own push: at most two requests in flight per subscription, no
    /// token, no duplicates after a 2xx.
    Emulator,
    /// As Google Cloud delivers ([`devstack::gcp_like`]): Terraform's full concurrency, a
    /// token per push through a model of Cloud Run's front end to workers that check it
    /// behind invoker IAM, and these faults. The seed is printed; `SAGA_PUSH_SEED` replays it.
    GcpLike(pubsub_push::Faults),
    /// GCP-like delivery without faults to services that take less at once than Pub/Sub's
    /// push window sends: what they cannot take waits at Cloud Run's front end for the
    /// capacity's pending time, then is refused with 429, as on an overloaded deployment.
    Overloaded(gcp_like::Capacity),
}

impl Delivery {
    /// The faults and the services' capacity of a GCP-like delivery.
    fn gcp_like(self) -> Option<(pubsub_push::Faults, gcp_like::Capacity)> {
        match self {
            Delivery::Emulator => None,
            Delivery::GcpLike(faults) => Some((faults, gcp_like::Capacity::DEPLOYED)),
            Delivery::Overloaded(capacity) => Some((pubsub_push::Faults::default(), capacity)),
        }
    }

    /// GCP-like delivery at full concurrency with 5 % of messages delivered twice.
    pub const GCP_WITH_DUPLICATES: Delivery = Delivery::GcpLike(pubsub_push::Faults {
        duplicate: 0.05,
        lost_answer: 0.0,
        max_delay: Duration::ZERO,
    });

    /// [`Delivery::GCP_WITH_DUPLICATES`], and out of order as Google's may be: each push
    /// held up to 30 ms (so messages overtake each other, a forward message its saga's
    /// compensation), and 2 % of answers lost (redelivered as after an ack deadline).
    pub const GCP_WITH_FAULTS: Delivery = Delivery::GcpLike(pubsub_push::Faults {
        duplicate: 0.05,
        lost_answer: 0.02,
        max_delay: Duration::from_millis(30),
    });
}

/// The seed of a GCP-like run: `SAGA_PUSH_SEED`, or a fresh one.
fn push_seed() -> u64 {
    std::env::var("SAGA_PUSH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

impl TestStack {
    /// Starts a saga with the production push policy and the original's seed data, on the
    /// emulator's push.
    pub async fn start(name: &str) -> Self {
        Self::start_in(Delivery::Emulator, name).await
    }

    /// [`TestStack::start`] with pushes delivered as `delivery` says.
    pub async fn start_in(delivery: Delivery, name: &str) -> Self {
        Self::start_configured(delivery, name, &PUSH_POLICY, |_| {}).await
    }

    /// Starts a saga with `policy` on every push subscription.
    ///
    /// # Panics
    /// If anything fails to start.
    pub async fn start_with(name: &str, policy: &PushPolicy) -> Self {
        Self::start_configured(Delivery::Emulator, name, policy, |_| {}).await
    }

    /// Starts a saga delivered as `delivery` says, with `policy` on every push subscription,
    /// each service configured as the emulators need and then changed by `configure`.
    ///
    /// # Panics
    /// If anything fails to start.
    pub async fn start_configured(
        delivery: Delivery,
        name: &str,
        policy: &PushPolicy,
        configure: impl Fn(&mut Config),
    ) -> Self {
        init_logging();
        let emulators = tokio::task::spawn_blocking(shared_emulators)
            .await
            .expect("emulator start-up does not panic twice");
        Self::try_start(delivery, name, policy, emulators, &configure)
            .await
            .unwrap_or_else(|e| panic!("starting the test stack: {e:#}"))
    }

    async fn try_start(
        delivery: Delivery,
        name: &str,
        policy: &PushPolicy,
        emulators: &'static Emulators,
        configure: &dyn Fn(&mut Config),
    ) -> anyhow::Result<Self> {
        let project = project_id(name);
        let mut services = BTreeMap::new();
        let mut more_instances = Vec::new();
        let mut instance_urls: HashMap<Service, Vec<String>> = HashMap::new();
        for service in Service::ALL {
            let mut config =
                Config::for_emulators(service, &project, &emulators.pubsub, &emulators.firestore);
            if delivery != Delivery::Emulator && service.takes_pushes() {
                config.push_auth = gcp_like::push_auth(&project, service);
            }
            if delivery != Delivery::Emulator && service == Service::Janitor {
                config.sweep_account = Some(gcp_like::SCHEDULER_ACCOUNT.to_owned());
            }
            configure(&mut config);
            let running = Running::start(&config, devstack::router_of(service)).await?;
            instance_urls.entry(service).or_default().push(running.url());
            if delivery != Delivery::Emulator && service.takes_pushes() {
                for _ in 1..gcp_like::INSTANCES {
                    let another = Running::start(&config, devstack::router_of(service)).await?;
                    instance_urls.entry(service).or_default().push(another.url());
                    more_instances.push(another);
                }
            }
            services.insert(service, running);
        }
        let urls: HashMap<Service, String> = services.iter().map(|(s, r)| (*s, r.url())).collect();
        let gcp = match delivery.gcp_like() {
            None => {
                devstack::pubsub::provision(
                    &emulators.pubsub_endpoint(),
                    &project,
                    |s| urls[&s].clone(),
                    policy,
                )
                .await?;
                None
            }
            Some((faults, capacity)) => {
                let settings = Settings {
                    faults,
                    ..Settings::like_the_deployment(policy.ack_deadline, push_seed())
                };
                eprintln!(
                    "{project}: GCP-like push delivery, {faults:?}, {capacity:?}, seed {} (replay: SAGA_PUSH_SEED={})",
                    settings.seed, settings.seed
                );
                let endpoint = emulators.pubsub_endpoint();
                Some(
                    GcpLike::start_with(
                        &endpoint,
                        &project,
                        |s| instance_urls[&s].clone(),
                        policy,
                        settings,
                        capacity,
                    )
                    .await?,
                )
            }
        };
        let store = Store::connect(&saga::gcp::store::FirestoreTarget {
            project: project.clone(),
            emulator_host: Some(emulators.firestore.clone()),
        })
        .await?;
        devstack::seed::seed(&store, &devstack::seed::seed_documents()).await?;
        let puller = Puller::connect(&emulators.pubsub_endpoint(), &project).await?;
        let publisher = BasePublisher::builder()
            .with_endpoint(emulators.pubsub_endpoint())
            .with_credentials(Anonymous::new().build())
            .build()
            .await?;
        Ok(TestStack {
            project,
            gcp,
            services,
            more_instances,
            store,
            puller,
            http: reqwest::Client::new(),
            publisher,
            emulators,
            stash: std::sync::Mutex::default(),
        })
    }

    /// The URL of `service`.
    pub fn url(&self, service: Service) -> String {
        self.services[&service].url()
    }

    /// The test hooks of `service`.
    pub fn faults(&self, service: Service) -> &Faults {
        &self.services[&service].clients.faults
    }

    /// POSTs `body` to the frontend's `/order` as JSON.
    pub async fn order(&self, body: &Value) -> (u16, Value) {
        self.post(
            Service::Frontend,
            "/order",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// POSTs `body` as JSON to `path` on `service`, as [`TestStack::post`] does.
    pub async fn post_json(&self, service: Service, path: &str, body: &Value) -> (u16, Value) {
        self.post(service, path, "application/json", body.to_string().into_bytes())
            .await
    }

    /// POSTs raw bytes to `path` on `service`.
    ///
    /// # Panics
    /// If the request cannot be sent.
    pub async fn post(
        &self,
        service: Service,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let (status, _, answer) = self.post_for_outcome(service, path, content_type, body).await;
        (status, answer)
    }

    /// POSTs raw bytes to `path` on `service`, as [`TestStack::post`] does, and also returns
    /// the answer's `saga-outcome` header, which names what an acked push came to.
    ///
    /// # Panics
    /// If the request cannot be sent.
    pub async fn post_for_outcome(
        &self,
        service: Service,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Option<String>, Value) {
        let answer = PushAnswer::read(self.send(service, path, content_type, body).await).await;
        let json = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body));
        (answer.status, answer.outcome, json)
    }

    /// POSTs raw bytes to `path` on `service`, through its front end when there is one.
    async fn send(
        &self,
        service: Service,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        // Behind Cloud Run, a push reaches a worker only through its front end, with a token.
        let front_end = self.gcp.as_ref().and_then(|g| Some((g.front_end(service)?, g)));
        let base = front_end.map_or_else(|| self.url(service), |(front_end, _)| front_end.url());
        let mut request = self
            .http
            .post(format!("{base}{path}"))
            .header("content-type", content_type)
            .body(body);
        if let Some((_, gcp)) = front_end {
            request = request.header("authorization", gcp.authorization(service));
        }
        request.send().await.expect("the service answers")
    }

    /// GETs `path` from the frontend and returns the status and the JSON answer.
    ///
    /// # Panics
    /// If the request cannot be sent.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url(Service::Frontend)))
            .send()
            .await
            .expect("the frontend answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The views of all of `uuids` once every one of them has finished, read from
    /// Firestore in pages (for runs of hundreds of sagas).
    ///
    /// # Panics
    /// If some have not finished within `timeout`, or a view cannot be read.
    pub async fn all_finished<'a>(
        &self,
        uuids: impl IntoIterator<Item = &'a str>,
        timeout: Duration,
    ) -> HashMap<String, saga::engine::status::StatusDoc> {
        let uuids: Vec<&str> = uuids.into_iter().collect();
        let mut done = HashMap::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while done.len() < uuids.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {} sagas never ended",
                uuids.len() - done.len(),
                uuids.len()
            );
            let pending: Vec<DocPath> = uuids
                .iter()
                .filter(|u| !done.contains_key(**u))
                .map(|u| DocPath::new(["sagas", u]))
                .collect();
            for chunk in pending.chunks(200) {
                for view in self
                    .store
                    .get_all(chunk)
                    .await
                    .expect("reading views")
                    .into_iter()
                    .flatten()
                {
                    let view: saga::engine::status::StatusDoc = view.decode().expect("a view decodes");
                    if view.finished() {
                        done.insert(view.uuid.clone(), view);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        done
    }

    /// Polls `GET /orders/{uuid}` until the saga has finished, and returns its view.
    ///
    /// # Panics
    /// If it has not finished within `timeout`.
    pub async fn finished(&self, uuid: &str, timeout: Duration) -> Value {
        eventually(timeout, || async {
            let (status, body) = self.get(&format!("/orders/{uuid}")).await;
            (status == 200 && body["finished"] == true).then_some(body)
        })
        .await
        .unwrap_or_else(|| panic!("saga {uuid} never showed a terminal state"))
    }

    /// Places a valid order and returns its uuid.
    ///
    /// # Panics
    /// If the frontend does not accept it.
    pub async fn place(&self, body: &Value) -> String {
        let (status, answer) = self.order(body).await;
        assert_eq!(status, 202, "order {body} was not accepted: {answer}");
        answer["uuid"]
            .as_str()
            .expect("the answer carries the uuid")
            .to_owned()
    }

    /// Publishes raw `data` to `topic`, as any producer could.
    ///
    /// # Panics
    /// If Pub/Sub refuses it.
    pub async fn publish(&self, topic: Topic, data: &[u8], attributes: &[(&str, &str)]) -> String {
        let publisher = self.publisher.publisher(topic.path(&self.project)).build();
        let message = Message::new()
            .set_data(data.to_vec())
            .set_attributes(attributes.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        publisher.publish(message).await.expect("publishing in a test")
    }

    /// Pushes `data` to `service` as Pub/Sub pushes a message of `topic` (the envelope of
    /// the subscription that carries it there), bypassing Pub/Sub so that the test sees the
    /// answer.
    ///
    /// # Panics
    /// If no subscription of the contract pushes `topic` to `service`, or the request
    /// cannot be sent.
    pub async fn push(&self, service: Service, topic: Topic, data: &[u8]) -> PushAnswer {
        let (subscription, path) = service
            .push_subscriptions()
            .find_map(|s| match s.delivery {
                saga::contract::Delivery::Push { path, .. } if s.topic == topic => Some((s, path)),
                _ => None,
            })
            .expect("the contract pushes this topic to this service");
        let envelope = saga::wire::envelope::envelope(
            &subscription.path(&self.project),
            &format!("direct-{}", SagaId::new()),
            data,
            &BTreeMap::new(),
        );
        PushAnswer::read(self.send(service, path, "application/json", envelope).await).await
    }

    /// Reads up to `want` messages from `subscription`, waiting at most `timeout`.
    ///
    /// # Panics
    /// If the subscription cannot be read.
    pub async fn pull(&self, subscription: &str, want: usize, timeout: Duration) -> Vec<Received> {
        self.puller
            .pull(subscription, want, timeout)
            .await
            .expect("pulling in a test")
    }

    /// Reads `dead-letter-sub` until `want` distinct letters arrived or `timeout` passed, then
    /// for `quiet` more so that extra letters are seen too, and returns one copy of each.
    ///
    /// Pub/Sub delivers at least once: a poison message pushed twice is dead-lettered twice,
    /// both copies naming the message's id (`saga_dead_letter_message_id`) and carrying its
    /// data and attributes. Such copies count once. The emulator's push never delivers twice
    /// after a 2xx, so on it a copy fails the test.
    ///
    /// # Panics
    /// On a copy under the emulator's push, or if the subscription cannot be read.
    pub async fn dead_letters(&self, want: usize, timeout: Duration, quiet: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = std::collections::BTreeSet::new();
        let mut one_each = Vec::new();
        let mut keep = |letters: Vec<Received>, one_each: &mut Vec<Received>| {
            for letter in letters {
                if seen.insert((letter.data.clone(), letter.attributes.clone())) {
                    one_each.push(letter);
                } else {
                    assert!(
                        self.gcp.is_some(),
                        "the emulator's push never delivers twice: {letter:?}"
                    );
                }
            }
        };
        while one_each.len() < want {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let read = self
                .pull(
                    "dead-letter-sub",
                    want - one_each.len(),
                    left.min(Duration::from_millis(500)),
                )
                .await;
            keep(read, &mut one_each);
        }
        let more = self.pull("dead-letter-sub", 100, quiet).await;
        keep(more, &mut one_each);
        one_each
    }

    /// Reads `subscription` until a message for each of `uuids` arrived (or `timeout`), and
    /// returns the messages of those uuids. Messages of other uuids read meanwhile are kept
    /// for later calls, so concurrent sagas can be awaited one after the other.
    ///
    /// # Panics
    /// If the stash lock is poisoned by an earlier panic.
    pub async fn outcomes(
        &self,
        subscription: &str,
        uuids: &[String],
        timeout: Duration,
    ) -> HashMap<String, Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let complete = {
                let stash = self.stash.lock().expect("no test panicked holding the stash");
                let seen = stash.get(subscription);
                uuids.iter().all(|u| seen.is_some_and(|s| s.contains_key(u)))
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if complete || left.is_zero() {
                break;
            }
            let read = self
                .pull(subscription, 1000, left.min(Duration::from_millis(500)))
                .await;
            let mut stash = self.stash.lock().expect("no test panicked holding the stash");
            let seen = stash.entry(subscription.to_owned()).or_default();
            for m in read {
                let json = m.json();
                let uuid = json["uuid"].as_str().unwrap_or_default().to_owned();
                seen.entry(uuid).or_default().push(json);
            }
        }
        let mut stash = self.stash.lock().expect("no test panicked holding the stash");
        let seen = stash.entry(subscription.to_owned()).or_default();
        uuids.iter().filter_map(|u| seen.remove_entry(u)).collect()
    }

    /// A subscription admin client of the emulator.
    ///
    /// # Panics
    /// If it cannot be built.
    async fn subscription_admin(&self) -> SubscriptionAdmin {
        SubscriptionAdmin::builder()
            .with_endpoint(self.emulators.pubsub_endpoint())
            .with_credentials(Anonymous::new().build())
            .build()
            .await
            .expect("subscription admin client")
    }

    /// Adds a pull subscription named `name` on `topic`, to watch what a test publishes.
    ///
    /// # Panics
    /// If it cannot be created.
    pub async fn tap(&self, topic: Topic, name: &str) {
        self.subscription_admin()
            .await
            .create_subscription()
            .set_name(format!("projects/{}/subscriptions/{name}", self.project))
            .set_topic(topic.path(&self.project))
            .send()
            .await
            .expect("creating a tap subscription");
    }

    /// Deletes subscription `name`: what it would have delivered from now on is lost, as
    /// when a subscription's retention runs out.
    ///
    /// # Panics
    /// If it cannot be deleted.
    pub async fn drop_subscription(&self, name: &str) {
        self.subscription_admin()
            .await
            .delete_subscription()
            .set_subscription(format!("projects/{}/subscriptions/{name}", self.project))
            .send()
            .await
            .expect("deleting a subscription");
    }

    /// A document as JSON, or `None` if it does not exist.
    ///
    /// # Panics
    /// If Firestore cannot be read.
    pub async fn doc(&self, path: &str) -> Option<Value> {
        let segments: Vec<&str> = path.split('/').collect();
        self.store
            .get(&DocPath::new(segments))
            .await
            .expect("reading Firestore")
            .map(|s| s.decode::<Value>().expect("a document decodes as JSON"))
    }

    /// `quantity` of `inventory/{item}`.
    ///
    /// # Panics
    /// If the item does not exist.
    pub async fn stock(&self, item: &str) -> i64 {
        self.doc(&format!("inventory/{item}"))
            .await
            .expect("the item exists")["quantity"]
            .as_i64()
            .expect("quantity is an integer")
    }

    /// Sets `inventory/{item}` to `quantity` units at `price` each.
    ///
    /// # Panics
    /// If Firestore refuses the write.
    pub async fn set_stock(&self, item: &str, quantity: i64, price: i64) {
        let mut writes = WriteSet::new();
        writes.update(
            DocPath::new(["inventory", item]),
            &json!({ "quantity": quantity, "price_per_unit": price }),
            None,
            None,
        );
        self.store.commit(writes).await.expect("setting stock");
    }

    /// The step record of `uuid` at `step`.
    pub async fn step(&self, uuid: &str, step: Service) -> Option<Value> {
        self.doc(&format!("sagas/{uuid}/steps/{}", step.name())).await
    }
}

/// A saga message for `uuid`, as the frontend would publish it.
pub fn saga_message(uuid: &str, item: &str, quantity: u32, user: &str) -> Value {
    json!({ "item": item, "quantity": quantity, "user": user, "uuid": uuid })
}

/// A fresh uuid string.
pub fn new_uuid() -> String {
    SagaId::new().to_string()
}

/// Runs `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a service answered a push: a handled one has no body and names its outcome in
/// [`saga::runtime::push_route::OUTCOME_HEADER`].
#[derive(Debug)]
pub struct PushAnswer {
    /// The status.
    pub status: u16,
    /// The outcome header, if the answer had one.
    pub outcome: Option<String>,
    /// The body, as text.
    pub body: String,
}

impl PushAnswer {
    /// Reads `response` whole.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let outcome = response
            .headers()
            .get(saga::runtime::push_route::OUTCOME_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        PushAnswer {
            status,
            outcome,
            body,
        }
    }

    /// Whether the step handled the push and published its message: 204, `published`, and
    /// no body.
    pub fn published(&self) -> bool {
        self.status == 204 && self.outcome.as_deref() == Some("published") && self.body.is_empty()
    }
}

/// Stands for anything secret in a request or message: no answer, log line or dead-letter
/// attribute may quote it, since none may quote a body.
pub const SECRET: &str = "hunter2-s3cr3t-token";

/// A request the frontend must refuse, and how it must say so.
pub struct Refused {
    /// What the case tries, for the failure message.
    pub what: &'static str,
    /// The request's `content-type`.
    pub content_type: &'static str,
    /// The request body.
    pub body: Vec<u8>,
    /// The status the frontend must answer.
    pub status: u16,
    /// The `error` code of its JSON answer.
    pub code: &'static str,
    /// The field the answer must name, if the problem is in one.
    pub field: Option<&'static str>,
    /// Words the message must contain, to say what the problem is.
    pub mentions: Option<&'static str>,
}

/// A JSON `POST /order` that must get `status` with error `code`, naming `field` if given.
pub fn refused(
    what: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Refused {
    Refused {
        what,
        content_type: "application/json",
        body: body.into(),
        status,
        code,
        field,
        mentions: None,
    }
}

impl Refused {
    /// Posts the request to the frontend and asserts the answer: status, error code, a
    /// message, and the field or words the case names.
    ///
    /// # Panics
    /// If the answer is not the refusal the case describes.
    pub async fn assert_refused_by(self, stack: &TestStack) {
        let what = self.what;
        let (status, answer) = stack
            .post(Service::Frontend, "/order", self.content_type, self.body)
            .await;
        assert_eq!(status, self.status, "{what}: {answer}");
        assert_eq!(answer["error"], self.code, "{what}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: {answer}");
        if let Some(field) = self.field {
            assert_eq!(answer["field"], field, "{what}: {answer}");
            assert!(message.contains(field), "{what}: {answer}");
        }
        if let Some(words) = self.mentions {
            assert!(message.contains(words), "{what}: {answer}");
        }
        assert!(
            !answer.to_string().contains(SECRET),
            "{what}: quotes the body: {answer}"
        );
    }
}
