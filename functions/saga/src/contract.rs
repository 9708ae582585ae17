//! The saga's public contract, declared once: services, topics, subscriptions (with their
//! delivery policy) and Firestore collection names.
//!
//! Everything that provisions or checks the topology (the local stack, the tests, and the
//! Terraform drift test) reads it from here, so the names users rely on cannot drift apart.

use std::fmt;
use std::time::Duration;

/// One of the five services. The name doubles as the saga step name carried in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Takes orders over HTTP and starts sagas.
    Frontend,
    /// Records the user's order.
    Orders,
    /// Reserves stock.
    Inventory,
    /// Charges for the order.
    Payments,
    /// Compensates failed sagas.
    Janitor,
}

impl Service {
    /// Every service, in saga order.
    pub const ALL: [Service; 5] = [
        Service::Frontend,
        Service::Orders,
        Service::Inventory,
        Service::Payments,
        Service::Janitor,
    ];

    /// The service's name, as used for its binary, its Cloud Run service and the `step` field.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Frontend => "frontend",
            Service::Orders => "orders",
            Service::Inventory => "inventory",
            Service::Payments => "payments",
            Service::Janitor => "janitor",
        }
    }

    /// Parses a service name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The topics this service publishes to, and only those: the publishers it builds at
    /// start-up and the IAM grants it gets in Terraform both come from this list.
    pub const fn publishes(self) -> &'static [Topic] {
        match self {
            Service::Frontend => &[Topic::Frontend],
            Service::Orders => &[Topic::OrderCreated, Topic::Error, Topic::DeadLetter],
            Service::Inventory => &[Topic::InventoryUpdated, Topic::Error, Topic::DeadLetter],
            Service::Payments => &[Topic::PaymentCreated, Topic::Error, Topic::DeadLetter],
            // The forward topics too: when Pub/Sub gives up on a step whose record holds an
            // unpublished message, the janitor publishes it (see `engine::resume`).
            Service::Janitor => &[
                Topic::OrderCreated,
                Topic::InventoryUpdated,
                Topic::PaymentCreated,
                Topic::Error,
                Topic::Compensated,
                Topic::DeadLetter,
            ],
        }
    }

    /// The topic this service's step (or compensation, for the janitor) reads, if it has one.
    pub fn consumes(self) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|&topic| consumer_step(topic) == Some(self))
    }

    /// Whether any subscription pushes to this service (so it must verify push tokens).
    pub fn takes_pushes(self) -> bool {
        self.push_subscriptions().next().is_some()
    }

    /// The push subscriptions that deliver to this service.
    pub fn push_subscriptions(self) -> impl Iterator<Item = &'static Subscription> {
        SUBSCRIPTIONS
            .iter()
            .filter(move |s| matches!(s.delivery, Delivery::Push { service, .. } if service == self))
    }

    /// The port the local stack gives this service (the frontend keeps the original's 8080).
    pub const fn local_port(self) -> u16 {
        match self {
            Service::Frontend => 8080,
            Service::Orders => 8081,
            Service::Inventory => 8082,
            Service::Payments => 8083,
            Service::Janitor => 8084,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Pub/Sub topic of the saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Orders accepted by the frontend.
    Frontend,
    /// Orders recorded for their user.
    OrderCreated,
    /// Stock reserved for an order.
    InventoryUpdated,
    /// Orders paid: the saga's successful end.
    PaymentCreated,
    /// A step failed: the saga's failure, which the janitor compensates.
    Error,
    /// The janitor finished compensating a failed saga.
    Compensated,
    /// Messages that could not be processed, kept for people to inspect.
    DeadLetter,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 7] = [
        Topic::Frontend,
        Topic::OrderCreated,
        Topic::InventoryUpdated,
        Topic::PaymentCreated,
        Topic::Error,
        Topic::Compensated,
        Topic::DeadLetter,
    ];

    /// The topic id.
    pub const fn name(self) -> &'static str {
        match self {
            Topic::Frontend => "frontend",
            Topic::OrderCreated => "order-created",
            Topic::InventoryUpdated => "inventory-updated",
            Topic::PaymentCreated => "payment-created",
            Topic::Error => "error",
            Topic::Compensated => "compensated",
            Topic::DeadLetter => "dead-letter",
        }
    }

    /// Parses a topic id.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The topic's full resource name in `project`.
    pub fn path(self, project: &str) -> String {
        format!("projects/{project}/topics/{}", self.name())
    }
}

/// A topic is stored (in a step's outbox) by its id.
impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Topic::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown topic `{name}`")))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a push subscription is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Drives the next forward step of the saga.
    Step,
    /// Drives the janitor's compensation of a failed saga.
    Compensation,
    /// Hands dead letters to the janitor.
    DeadLetters,
}

/// The step that consumes `topic` as its input (forward step or compensation), if one does.
/// That step's record then proves that a message on `topic` was delivered.
pub fn consumer_step(topic: Topic) -> Option<Service> {
    SUBSCRIPTIONS.iter().find_map(|s| match s.delivery {
        Delivery::Push {
            service,
            purpose: Purpose::Step | Purpose::Compensation,
            ..
        } if s.topic == topic => Some(service),
        _ => None,
    })
}

/// How a subscription's messages reach their reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Pushed to `path` on `service`, which acks by answering 2xx.
    Push {
        /// The receiving service.
        service: Service,
        /// What the service does with the messages.
        purpose: Purpose,
        /// The HTTP path the push is sent to.
        path: &'static str,
        /// Whether repeated failures move the message to [`Topic::DeadLetter`]. Off only for
        /// the subscription that reads the dead-letter topic itself.
        dead_letter: bool,
    },
    /// Read by people and tools with `gcloud pubsub subscriptions pull`.
    Pull,
}

/// A subscription of the saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The subscription id.
    pub name: &'static str,
    /// The topic it reads.
    pub topic: Topic,
    /// How its messages are delivered.
    pub delivery: Delivery,
}

impl Subscription {
    /// Looks a subscription up by id, accepting the full resource name too (push envelopes
    /// carry `projects/P/subscriptions/NAME`, dead-letter attributes only `NAME`).
    pub fn find(name: &str) -> Option<&'static Subscription> {
        let id = name.rsplit('/').next().unwrap_or(name);
        SUBSCRIPTIONS.iter().find(|s| s.name == id)
    }

    /// The subscription's full resource name in `project`.
    pub fn path(&self, project: &str) -> String {
        format!("projects/{project}/subscriptions/{}", self.name)
    }

    /// Whether Pub/Sub moves what it cannot deliver to the dead-letter topic.
    pub fn dead_letters(&self) -> bool {
        matches!(
            self.delivery,
            Delivery::Push {
                dead_letter: true,
                ..
            }
        )
    }
}

/// The HTTP path on which a service receives pushes of `topic`.
pub const fn push_path(topic: Topic) -> &'static str {
    match topic {
        Topic::Frontend => "/push/frontend",
        Topic::OrderCreated => "/push/order-created",
        Topic::InventoryUpdated => "/push/inventory-updated",
        Topic::PaymentCreated => "/push/payment-created",
        Topic::Error => "/push/error",
        Topic::Compensated => "/push/compensated",
        Topic::DeadLetter => "/push/dead-letter",
    }
}

const fn push(name: &'static str, topic: Topic, service: Service, purpose: Purpose) -> Subscription {
    Subscription {
        name,
        topic,
        delivery: Delivery::Push {
            service,
            purpose,
            path: push_path(topic),
            dead_letter: !matches!(topic, Topic::DeadLetter),
        },
    }
}

const fn pull(name: &'static str, topic: Topic) -> Subscription {
    Subscription {
        name,
        topic,
        delivery: Delivery::Pull,
    }
}

/// Every subscription of the saga. The `<topic>-sub` names and the two CLI pull
/// subscriptions are the original's; the rest are new.
pub const SUBSCRIPTIONS: &[Subscription] = &[
    push("frontend-sub", Topic::Frontend, Service::Orders, Purpose::Step),
    push(
        "order-created-sub",
        Topic::OrderCreated,
        Service::Inventory,
        Purpose::Step,
    ),
    push(
        "inventory-updated-sub",
        Topic::InventoryUpdated,
        Service::Payments,
        Purpose::Step,
    ),
    pull("payment-created-sub", Topic::PaymentCreated),
    push("error-sub", Topic::Error, Service::Janitor, Purpose::Compensation),
    pull("error-cli-sub", Topic::Error),
    pull("compensated-sub", Topic::Compensated),
    pull("dead-letter-sub", Topic::DeadLetter),
    push(
        "dead-letter-janitor-sub",
        Topic::DeadLetter,
        Service::Janitor,
        Purpose::DeadLetters,
    ),
];

/// Delivery settings shared by every push subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushPolicy {
    /// How long Pub/Sub waits for an answer before it redelivers. Longer than
    /// [`HANDLER_TIMEOUT`], so a slow handler is cut off (and answers 5xx) before a second
    /// delivery of the same message can race it.
    pub ack_deadline: Duration,
    /// First retry delay after a 5xx.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Deliveries before a message is moved to the dead-letter topic.
    pub max_delivery_attempts: u32,
}

impl PushPolicy {
    /// The longest Pub/Sub may keep a message in retries before it dead-letters it: every
    /// delivery timing out at the ack deadline and held by the longest [`PUSH_BACKOFF`]
    /// (which Pub/Sub applies to a whole subscription while its pushes keep failing, as in
    /// an outage, so to a first delivery too), and between deliveries the retry policy's
    /// backoff (Pub/Sub's "Handle message failures": exponential from the least to the
    /// most, without saying by how much; doubling is assumed).
    pub const fn retry_horizon(&self) -> Duration {
        let mut total =
            (self.ack_deadline.as_secs() + PUSH_BACKOFF.as_secs()) * self.max_delivery_attempts as u64;
        let mut backoff = self.min_backoff.as_secs();
        let mut gap = 1;
        while gap < self.max_delivery_attempts {
            total += if backoff < self.max_backoff.as_secs() {
                backoff
            } else {
                self.max_backoff.as_secs()
            };
            backoff *= 2;
            gap += 1;
        }
        Duration::from_secs(total)
    }
}

/// The longest pause of Pub/Sub's push backoff. Pub/Sub "Push subscriptions", "Push
/// backoff": after too many negative answers it stops pushing a subscription for 100 ms to
/// 60 s (five failures a second: a push every 30 to 60 s), independently of the retry
/// policy, and "the total delay is the maximum combined value of both": counted here as
/// their sum, the longer reading.
pub const PUSH_BACKOFF: Duration = Duration::from_mins(1);

/// The push policy of every push subscription.
pub const PUSH_POLICY: PushPolicy = PushPolicy {
    ack_deadline: Duration::from_secs(30),
    min_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_mins(1),
    max_delivery_attempts: 5,
};

/// How long one request may run before the service answers 503 (and Pub/Sub retries).
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(20);

/// How long Pub/Sub keeps messages of a subscription that nobody reads.
pub const RETENTION: Duration = Duration::from_hours(7 * 24);

/// The sweep, which ends sagas that passed their deadline (see the janitor's `sweep`
/// module): Cloud Scheduler calls the janitor's [`sweep::PATH`] on [`sweep::SCHEDULE`] with
/// an OIDC token of its own service account.
pub mod sweep {
    use std::time::Duration;

    /// The janitor's endpoint.
    pub const PATH: &str = "/sweep";
    /// Cloud Scheduler's cron schedule: every minute.
    pub const SCHEDULE: &str = "* * * * *";
    /// How long a saga may run, from `received`, before a sweep ends it (`SAGA_DEADLINE`):
    /// [`MIN_DEADLINE`] and some margin, as Pub/Sub's backoffs are best effort.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_mins(10);
    /// The shortest `SAGA_DEADLINE`: Pub/Sub's retries of one message, push backoff
    /// included, in whole minutes (8). A shorter deadline would compensate sagas whose
    /// first message Pub/Sub is still retrying (a step down for a few minutes), cancelling
    /// orders that would have gone through.
    pub const MIN_DEADLINE: Duration =
        Duration::from_mins(super::PUSH_POLICY.retry_horizon().as_secs().div_ceil(60));
    /// Sagas one query of a sweep reads; a sweep reads page after page while its time lasts.
    pub const BATCH: u32 = 100;
    /// Most sagas one sweep looks at; the next sweep goes on from where it stopped.
    pub const MOST: u32 = 2_000;
    /// The fields of `sagas/{uuid}` the sweep's query filters and orders by, as its
    /// composite index lists them: `ended == 0`, `created` ascending.
    pub const INDEX_FIELDS: [&str; 2] = ["ended", "created"];
    /// The janitor's WARN line for a saga past its deadline that a sweep could not end
    /// (once per saga per sweep). `/sweep` still answers 200, so Cloud Scheduler's runs
    /// look fine: Terraform's log-based alert counts this line.
    pub const NOT_ENDED: &str = "the sweep could not end a saga; the next sweep tries again";
    /// The janitor's WARN line for a sweep that could not list the open sagas (at all,
    /// answered 503, or past a page, leaving the rest for the next sweep); the same alert
    /// counts it.
    pub const NOT_LISTED: &str = "the sweep could not list open sagas";
}

/// The uptime check Terraform creates on the frontend (`terraform/monitoring.tf`): a status
/// lookup of a saga that cannot exist, which the frontend answers 404 only once it has
/// asked Firestore, so a passing check shows the service up, reachable from outside, and
/// able to read its data. Not `/healthz`: it answers without Firestore, and Cloud Run
/// reserves some paths ending in `z` on a service's URL (Cloud Run "Known issues").
pub mod uptime {
    /// The path: `GET /orders/` and the nil uuid, which no saga is ever given
    /// (`SagaId::new` makes version-4 uuids).
    pub const PATH: &str = "/orders/00000000-0000-0000-0000-000000000000";
    /// The status the frontend answers for it.
    pub const STATUS: u16 = 404;
    /// What its answer says, which the check looks for: Google's own 404 page (a path
    /// Cloud Run keeps for itself, a service not deployed) does not say it.
    pub const NOT_FOUND: &str = "no saga with uuid";
}

/// Firestore collection ids.
pub mod collections {
    /// `users/{user}`: the people who may order (seeded).
    pub const USERS: &str = "users";
    /// `users/{user}/orders/{uuid}` and `inventory/{item}/orders/{uuid}`.
    pub const ORDERS: &str = "orders";
    /// `inventory/{item}`: stock and price (seeded).
    pub const INVENTORY: &str = "inventory";
    /// `payments/{uuid}`: one per paid saga.
    pub const PAYMENTS: &str = "payments";
    /// `sagas/{uuid}`: per-saga bookkeeping.
    pub const SAGAS: &str = "sagas";
    /// `sagas/{uuid}/steps/{step}`: each step's record, with the message it publishes.
    pub const STEPS: &str = "steps";
    /// `idempotency-keys/{sha256(key)}`: the saga each client idempotency key started.
    pub const IDEMPOTENCY_KEYS: &str = "idempotency-keys";
    /// `inventory/{item}/stock-changes/{id}`: each change of a stock made by hand with
    /// `sagactl stock`, with its levels and reason (no step reads them).
    pub const STOCK_CHANGES: &str = "stock-changes";
    /// `sweeps/cursor`: where the last sweep stopped, so that the next one goes on from
    /// there (no step reads it).
    pub const SWEEPS: &str = "sweeps";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_names_are_kept() {
        let topics: Vec<_> = Topic::ALL.iter().map(|t| t.name()).collect();
        for name in [
            "frontend",
            "order-created",
            "inventory-updated",
            "payment-created",
            "error",
        ] {
            assert!(topics.contains(&name), "{name} missing");
        }
        for name in [
            "frontend-sub",
            "order-created-sub",
            "inventory-updated-sub",
            "payment-created-sub",
            "error-sub",
            "error-cli-sub",
        ] {
            assert!(Subscription::find(name).is_some(), "{name} missing");
        }
        assert_eq!(
            Subscription::find("payment-created-sub").map(|s| s.delivery),
            Some(Delivery::Pull)
        );
        assert_eq!(
            Subscription::find("error-cli-sub").map(|s| s.delivery),
            Some(Delivery::Pull)
        );
    }

    #[test]
    fn subscription_names_are_unique_and_found_by_full_path() {
        for s in SUBSCRIPTIONS {
            assert_eq!(SUBSCRIPTIONS.iter().filter(|o| o.name == s.name).count(), 1);
            assert_eq!(Subscription::find(&s.path("p")), Some(s));
        }
    }

    #[test]
    fn each_worker_reads_exactly_its_topics() {
        let reads = |svc: Service| -> Vec<Topic> { svc.push_subscriptions().map(|s| s.topic).collect() };
        assert_eq!(reads(Service::Frontend), vec![]);
        assert_eq!(reads(Service::Orders), vec![Topic::Frontend]);
        assert_eq!(reads(Service::Inventory), vec![Topic::OrderCreated]);
        assert_eq!(reads(Service::Payments), vec![Topic::InventoryUpdated]);
        assert_eq!(reads(Service::Janitor), vec![Topic::Error, Topic::DeadLetter]);
    }

    #[test]
    fn the_retry_horizon_adds_every_delivery_with_its_push_backoff_and_the_capped_backoffs_between() {
        let policy = |attempts, min, max| PushPolicy {
            ack_deadline: Duration::from_secs(30),
            min_backoff: Duration::from_secs(min),
            max_backoff: Duration::from_secs(max),
            max_delivery_attempts: attempts,
        };
        // Each delivery may also wait out the longest push backoff, 60 s.
        for (attempts, min, max, want) in [
            (1, 10, 600, 30 + 60),
            (2, 1, 60, 2 * (30 + 60) + 1),
            (5, 1, 60, 5 * (30 + 60) + 1 + 2 + 4 + 8),
            (5, 10, 30, 5 * (30 + 60) + 10 + 20 + 30 + 30),
            (3, 600, 600, 3 * (30 + 60) + 600 + 600),
        ] {
            assert_eq!(
                policy(attempts, min, max).retry_horizon(),
                Duration::from_secs(want),
                "{attempts} attempts, backoff {min}..{max} s"
            );
        }
        assert!(sweep::MIN_DEADLINE >= PUSH_POLICY.retry_horizon());
        assert!(sweep::MIN_DEADLINE < PUSH_POLICY.retry_horizon() + Duration::from_mins(1));
        assert!(sweep::DEFAULT_DEADLINE >= sweep::MIN_DEADLINE);
    }

    #[test]
    fn the_dead_letter_reader_cannot_dead_letter_into_itself() {
        for s in SUBSCRIPTIONS {
            if let Delivery::Push { dead_letter, .. } = s.delivery {
                assert_eq!(dead_letter, s.topic != Topic::DeadLetter, "{}", s.name);
            }
        }
    }

    #[test]
    fn each_step_message_has_a_consuming_step_and_outcomes_have_none() {
        assert_eq!(consumer_step(Topic::Frontend), Some(Service::Orders));
        assert_eq!(consumer_step(Topic::OrderCreated), Some(Service::Inventory));
        assert_eq!(consumer_step(Topic::InventoryUpdated), Some(Service::Payments));
        assert_eq!(consumer_step(Topic::Error), Some(Service::Janitor));
        assert_eq!(consumer_step(Topic::PaymentCreated), None);
        assert_eq!(consumer_step(Topic::Compensated), None);
        assert_eq!(consumer_step(Topic::DeadLetter), None);
    }

    #[test]
    fn each_step_consumes_the_topic_its_subscription_delivers() {
        assert_eq!(Service::Frontend.consumes(), None);
        assert_eq!(Service::Orders.consumes(), Some(Topic::Frontend));
        assert_eq!(Service::Inventory.consumes(), Some(Topic::OrderCreated));
        assert_eq!(Service::Payments.consumes(), Some(Topic::InventoryUpdated));
        assert_eq!(Service::Janitor.consumes(), Some(Topic::Error));
    }

    #[test]
    fn the_ack_deadline_outlasts_the_handler_timeout() {
        assert!(PUSH_POLICY.ack_deadline > HANDLER_TIMEOUT);
    }
}
