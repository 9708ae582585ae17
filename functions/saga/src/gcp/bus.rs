//! Publishing to the saga's topics.
//!
//! One Pub/Sub connection per process, one publisher per topic the service is
//! allowed to publish to ([`Service::publishes`]), all built once at start-up.

use crate::contract::{Service, Topic};
#[cfg(feature = "test-hooks")]
use crate::faults::Faults;
use anyhow::{Context as _, bail};
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::retry_policy::RetryPolicyExt as _;
use google_cloud_pubsub::client::{BasePublisher, Publisher};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::retry_policy::RetryableErrors;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Where a service's Pub/Sub clients connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubTarget {
    /// The project.
    pub project: String,
    /// `http://host:port` of the emulator, or `None` for Google Cloud.
    pub emulator_endpoint: Option<String>,
}

/// How long a publish may take before the step gives up and answers 5xx. A message whose
/// last attempt reached Pub/Sub but whose answer was lost may still have gone out; every
/// consumer is idempotent, so that is harmless.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the client library may keep one publish going, its retries included. The
/// library sends from a task of its own, which the step's [`PUBLISH_TIMEOUT`] does not stop,
/// and by default retries for 10 minutes: a frontend that answered 503 ("not placed") would
/// place the order minutes later, after the user placed it again, and a step would send
/// its message long after giving its publish lease back (and with Cloud Run's CPU
/// throttled after the answer). So the library gives up first.
pub const PUBLISH_RETRY_LIMIT: Duration = Duration::from_secs(9);

/// A message to publish, exactly as it will be (and was) sent, so that a step can store it
/// before publishing and send the identical bytes again after a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The topic (stored by its id).
    pub topic: Topic,
    /// The payload (JSON text).
    pub data: String,
    /// The attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Outgoing {
    /// A message for `topic`.
    pub fn new(topic: Topic, data: String) -> Self {
        Outgoing {
            topic,
            data,
            attributes: BTreeMap::new(),
        }
    }

    /// Carries `trace` to the message's readers.
    #[must_use]
    pub fn traced(self, trace: &crate::wire::trace::TraceContext) -> Self {
        self.with_attribute(crate::wire::trace::TRACEPARENT, trace.to_traceparent())
    }

    /// Adds an attribute.
    #[must_use]
    pub fn with_attribute(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }
}

/// How a publisher groups messages into calls.
#[derive(Clone, Copy)]
enum Batching {
    /// Each message in a call of its own, at once.
    None,
    /// Messages published at the same moment share a call; none waits for more.
    ArrivingTogether,
}

/// The publishers of one service.
#[derive(Clone, Debug)]
pub struct Bus {
    publishers: HashMap<Topic, Publisher>,
    #[cfg(feature = "test-hooks")]
    faults: Faults,
}

impl Bus {
    /// Builds a publisher for each topic `service` publishes to.
    pub async fn connect(target: &PubSubTarget, service: Service) -> anyhow::Result<Self> {
        // Every push and every POST waits for its publish, so a batching timer is pure
        // latency: a step, which publishes one message per push, sends each at once. The
        // frontend publishes for as many clients as come at once, and a call per message
        // costs the server more than the timer's tick: its messages that arrive together
        // share a call (BENCHMARKS.md, "What was tried").
        let batching = if service == Service::Frontend {
            Batching::ArrivingTogether
        } else {
            Batching::None
        };
        Self::build(target, service.publishes(), batching, PUBLISH_RETRY_LIMIT).await
    }

    /// Builds a publisher for each of `topics`, each sending every message at once: for an
    /// operator's tool (`sagactl redrive` puts dead letters back on the topics they came
    /// from), which is no service and so not bound to one service's topics.
    pub async fn connect_topics(target: &PubSubTarget, topics: &[Topic]) -> anyhow::Result<Self> {
        Self::build(target, topics, Batching::None, PUBLISH_RETRY_LIMIT).await
    }

    async fn build(
        target: &PubSubTarget,
        topics: &[Topic],
        batching: Batching,
        retry_limit: Duration,
    ) -> anyhow::Result<Self> {
        let mut builder =
            BasePublisher::builder().with_retry_policy(RetryableErrors.with_time_limit(retry_limit));
        if let Some(endpoint) = &target.emulator_endpoint {
            // google-cloud-pubsub does not read PUBSUB_EMULATOR_HOST itself.
            builder = builder
                .with_endpoint(endpoint.clone())
                .with_credentials(Anonymous::new().build());
        }
        let base = builder
            .build()
            .await
            .context("building the Pub/Sub publisher client")?;
        let publishers = topics
            .iter()
            .map(|&topic| {
                let publisher = base.publisher(topic.path(&target.project));
                let publisher = match batching {
                    Batching::ArrivingTogether => publisher.set_delay_threshold(Duration::ZERO),
                    Batching::None => publisher.set_message_count_threshold(1),
                };
                (topic, publisher.build())
            })
            .collect();
        Ok(Bus {
            publishers,
            #[cfg(feature = "test-hooks")]
            faults: Faults::default(),
        })
    }

    /// The test hooks of this bus's publishes (shared with the service's [`Clients`]).
    ///
    /// [`Clients`]: crate::gcp::Clients
    #[cfg(feature = "test-hooks")]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// This bus with `faults` as its test hooks.
    #[cfg(feature = "test-hooks")]
    #[must_use]
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Publishes `msg` and waits until Pub/Sub has accepted it.
    pub async fn publish(&self, msg: &Outgoing) -> anyhow::Result<String> {
        let topic = msg.topic;
        let Some(publisher) = self.publishers.get(&topic) else {
            bail!("this service may not publish to `{topic}`");
        };
        #[cfg(feature = "test-hooks")]
        if self.faults.take_publish_failure() {
            bail!("injected publish failure (test hook)");
        }
        let message = Message::new()
            .set_data(msg.data.clone().into_bytes())
            .set_attributes(msg.attributes.clone());
        let id = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(message))
            .await
            .with_context(|| format!("publishing to `{topic}` timed out"))?
            .with_context(|| format!("publishing to `{topic}`"))?;
        // For `RUST_LOG=saga::publishes=debug`: messages and bytes, as a bill counts them.
        tracing::debug!(target: "saga::publishes", %topic, bytes = msg.data.len(), "published");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Instant;

    /// A loopback port with nothing listening on it (for now).
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_publish_that_gave_up_is_not_sent_later_by_the_library() {
        let port = closed_port();
        let target = PubSubTarget {
            project: "bus-test".to_owned(),
            emulator_endpoint: Some(format!("http://127.0.0.1:{port}")),
        };
        let limit = Duration::from_secs(1);
        let bus = Bus::build(&target, &[Topic::Frontend], Batching::None, limit)
            .await
            .unwrap();
        let started = Instant::now();
        let outcome = bus
            .publish(&Outgoing::new(Topic::Frontend, "{}".to_owned()))
            .await;
        assert!(outcome.is_err(), "nothing listens: {outcome:?}");
        assert!(
            started.elapsed() < limit + Duration::from_secs(2),
            "the library gave up at its limit, not at the step's timeout: {:?}",
            started.elapsed()
        );

        // Had the library kept retrying in its own task (its default: 10 minutes), it would
        // connect as soon as the port opens.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let connected = tokio::time::timeout(Duration::from_secs(4), listener.accept()).await;
        assert!(
            connected.is_err(),
            "a publish the service gave up on was still being sent"
        );
    }
}
