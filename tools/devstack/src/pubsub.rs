//! Pub/Sub administration and reading: creating the saga's topology and pulling from its
//! pull subscriptions, against an emulator or Google Cloud. Reading either acks what it
//! reads ([`Puller::pull`]), or holds it unacknowledged until each message is acked or put
//! back ([`Puller::hold`]), for tools that must look without taking.

use anyhow::Context as _;
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{DeadLetterPolicy, ExpirationPolicy, Message, PushConfig, RetryPolicy};
use saga::contract::{Delivery, PushPolicy, RETENTION, SUBSCRIPTIONS, Service, Topic};
use saga::gcp::bus::PubSubTarget;

pub use crate::held::Held;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

fn duration(d: Duration) -> google_cloud_wkt::Duration {
    google_cloud_wkt::Duration::clamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
}

fn already_exists(e: &google_cloud_pubsub::Error) -> bool {
    e.status().is_some_and(|s| s.code == Code::AlreadyExists)
}

/// What a worker gets, besides the common settings, when the emulator pushes to it:
/// inventory and the janitor write an item's stock without a gap between writes
/// (`SHARED_WRITE_GAP=0s`).
/// The emulator keeps at most 2 pushes in flight per subscription, which leaves nothing to
/// batch, so the gap (kept under GCP-like delivery, as a deployment keeps it) would only make
/// each sale wait for it, about 8 sales a second in all; and the emulator has no
/// per-document write limit to keep to.
pub fn emulator_push_env(service: Service) -> Vec<(&'static str, String)> {
    if matches!(service, Service::Inventory | Service::Janitor) {
        vec![(saga::runtime::config::env::SHARED_WRITE_GAP, "0s".to_owned())]
    } else {
        Vec::new()
    }
}

/// Who delivers the messages of the contract's push subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pusher {
    /// The emulator's own push, to the endpoint of each subscription.
    Emulator,
    /// Something that pulls them and pushes as Google Cloud would
    /// (`gcp_models::pubsub_push`): the subscriptions are created without an endpoint, with
    /// the same retry and dead-letter policies, so that the emulator still decides what is
    /// redelivered and dead-lettered.
    Pulled,
}

/// Creates every topic and subscription of [`saga::contract`] in `project` on the emulator
/// at `endpoint`, pushed by the emulator: [`provision_for`] with [`Pusher::Emulator`].
pub async fn provision(
    endpoint: &str,
    project: &str,
    push_base: impl Fn(Service) -> String,
    policy: &PushPolicy,
) -> anyhow::Result<()> {
    provision_for(endpoint, project, push_base, policy, Pusher::Emulator).await
}

/// Creates every topic and subscription of [`saga::contract`] in `project` on the emulator
/// at `endpoint`. Push subscriptions point at `push_base(service)` plus their path, unless
/// `pusher` is [`Pusher::Pulled`]. Safe to run again: what exists is kept, and push
/// endpoints are updated.
pub async fn provision_for(
    endpoint: &str,
    project: &str,
    push_base: impl Fn(Service) -> String,
    policy: &PushPolicy,
    pusher: Pusher,
) -> anyhow::Result<()> {
    let topics = TopicAdmin::builder()
        .with_endpoint(endpoint)
        .with_credentials(Anonymous::new().build())
        .build()
        .await
        .context("building the topic admin client")?;
    let subscriptions = SubscriptionAdmin::builder()
        .with_endpoint(endpoint)
        .with_credentials(Anonymous::new().build())
        .build()
        .await
        .context("building the subscription admin client")?;

    for topic in Topic::ALL {
        match topics.create_topic().set_name(topic.path(project)).send().await {
            Ok(_) => {}
            Err(e) if already_exists(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("creating topic {topic}")),
        }
    }

    for sub in SUBSCRIPTIONS {
        let mut create = subscriptions
            .create_subscription()
            .set_name(sub.path(project))
            .set_topic(sub.topic.path(project))
            .set_message_retention_duration(duration(RETENTION))
            .set_expiration_policy(ExpirationPolicy::new());
        let push_config = match sub.delivery {
            Delivery::Pull => None,
            Delivery::Push {
                service,
                path,
                dead_letter,
                ..
            } => {
                let config = match pusher {
                    Pusher::Emulator => {
                        PushConfig::new().set_push_endpoint(format!("{}{path}", push_base(service)))
                    }
                    // An empty push config makes it a pull subscription.
                    Pusher::Pulled => PushConfig::new(),
                };
                create = create
                    .set_push_config(config.clone())
                    .set_ack_deadline_seconds(i32::try_from(policy.ack_deadline.as_secs()).unwrap_or(600))
                    .set_retry_policy(
                        RetryPolicy::new()
                            .set_minimum_backoff(duration(policy.min_backoff))
                            .set_maximum_backoff(duration(policy.max_backoff)),
                    );
                if dead_letter {
                    create = create.set_dead_letter_policy(
                        DeadLetterPolicy::new()
                            .set_dead_letter_topic(Topic::DeadLetter.path(project))
                            .set_max_delivery_attempts(
                                i32::try_from(policy.max_delivery_attempts).unwrap_or(5),
                            ),
                    );
                }
                Some(config)
            }
        };
        match create.send().await {
            Ok(_) => {}
            Err(e) if already_exists(&e) => {
                if let Some(config) = push_config {
                    subscriptions
                        .modify_push_config()
                        .set_subscription(sub.path(project))
                        .set_push_config(config)
                        .send()
                        .await
                        .with_context(|| format!("updating the push endpoint of {}", sub.name))?;
                }
            }
            Err(e) => return Err(e).with_context(|| format!("creating subscription {}", sub.name)),
        }
    }
    Ok(())
}

/// A message read from a pull subscription.
#[derive(Debug, Clone)]
pub struct Received {
    /// The id Pub/Sub gave it.
    pub message_id: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The attributes.
    pub attributes: BTreeMap<String, String>,
    /// When Pub/Sub accepted it.
    pub publish_time: Option<std::time::SystemTime>,
}

impl Received {
    /// The payload as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.data).unwrap_or(serde_json::Value::Null)
    }

    fn of(message: Message) -> Self {
        Received {
            message_id: message.message_id,
            data: message.data.to_vec(),
            attributes: message.attributes.into_iter().collect(),
            publish_time: message
                .publish_time
                .and_then(|t| std::time::SystemTime::try_from(t).ok()),
        }
    }
}

/// A subscriber client (one connection) for `target`.
async fn subscriber(target: &PubSubTarget) -> anyhow::Result<Subscriber> {
    let mut builder = Subscriber::builder();
    if let Some(endpoint) = &target.emulator_endpoint {
        // google-cloud-pubsub does not read PUBSUB_EMULATOR_HOST itself.
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(Anonymous::new().build());
    }
    builder.build().await.context("building the subscriber client")
}

/// A reader of pull subscriptions.
///
/// It keeps one streaming pull per subscription open for its whole life, read by a
/// background task that acks each message and queues it for [`Puller::pull`]. Opening a
/// stream per read would strand the messages a dropped stream had leased, and a read that
/// gives up waiting must not cancel the stream's own `next()`: after such a cancellation the
/// stream delivers nothing more.
#[derive(Debug)]
pub struct Puller {
    client: Subscriber,
    target: PubSubTarget,
    project: String,
    readers: tokio::sync::Mutex<HashMap<String, Reader>>,
}

#[derive(Debug)]
struct Reader {
    queue: tokio::sync::mpsc::UnboundedReceiver<anyhow::Result<Received>>,
    shutdown: google_cloud_pubsub::subscriber::ShutdownToken,
}

impl Puller {
    /// Connects to the emulator at `endpoint` (`http://host:port`).
    pub async fn connect(endpoint: &str, project: &str) -> anyhow::Result<Self> {
        Self::connect_to(&PubSubTarget {
            project: project.to_owned(),
            emulator_endpoint: Some(endpoint.to_owned()),
        })
        .await
    }

    /// Connects to the emulator of `target`, or to Google Cloud with Application Default
    /// Credentials if it names none.
    pub async fn connect_to(target: &PubSubTarget) -> anyhow::Result<Self> {
        Ok(Puller {
            client: subscriber(target).await?,
            target: target.clone(),
            project: target.project.clone(),
            readers: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }

    fn open(&self, subscription: &str) -> Reader {
        let mut stream = self.client.subscribe(self.path(subscription)).build();
        let shutdown = stream.shutdown_token();
        let (tx, queue) = tokio::sync::mpsc::unbounded_channel();
        let name = subscription.to_owned();
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let received =
                    item.with_context(|| format!("pulling from {name}"))
                        .map(|(message, handler)| {
                            handler.ack();
                            Received::of(message)
                        });
                if tx.send(received).is_err() {
                    break;
                }
            }
        });
        Reader { queue, shutdown }
    }

    /// Returns messages from `subscription` (already acked) until `want` arrived or
    /// `timeout` passed, whichever is first.
    pub async fn pull(
        &self,
        subscription: &str,
        want: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Received>> {
        let mut readers = self.readers.lock().await;
        let reader = readers
            .entry(subscription.to_owned())
            .or_insert_with(|| self.open(subscription));
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < want {
            match tokio::time::timeout_at(deadline, reader.queue.recv()).await {
                Ok(Some(received)) => out.push(received?),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Closes every stream, flushing pending acks.
    pub async fn close(&self) {
        let readers: Vec<Reader> = self.readers.lock().await.drain().map(|(_, r)| r).collect();
        for reader in readers {
            reader.shutdown.shutdown().await;
        }
    }

    /// Reads up to `max` distinct messages from `subscription` without acknowledging them,
    /// until `max` were read or none came for `quiet`, and holds them until each is acked
    /// or the rest are put back with [`Held::release`].
    ///
    /// By unary pulls ([`crate::held`]), not by a stream like [`Puller::pull`]'s, which ack
    /// all they read.
    ///
    /// # Errors
    /// When Pub/Sub cannot be reached or refuses the pull.
    pub async fn hold(&self, subscription: &str, max: usize, quiet: Duration) -> anyhow::Result<Held> {
        let rest = crate::held::Rest::for_target(&self.target)?;
        Held::read(rest, self.path(subscription), max, quiet).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_emulators_push_only_the_stocks_writers_run_without_a_stock_write_gap() {
        for service in Service::ALL {
            let want = matches!(service, Service::Inventory | Service::Janitor).then_some("0s");
            let env = emulator_push_env(service);
            assert_eq!(
                env.iter()
                    .find(|(var, _)| *var == "SHARED_WRITE_GAP")
                    .map(|(_, v)| v.as_str()),
                want,
                "{service}"
            );
            assert!(env.len() <= 1, "{service}: {env:?}");
        }
    }
}
