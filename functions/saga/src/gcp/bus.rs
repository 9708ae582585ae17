//! Publishing to the saga's topics.
//!
//! One Pub/Sub connection per process, one publisher per topic the service is
//! allowed to publish to ([`Service::publishes`]), all built once at start-up.

use crate::contract::{Service, Topic};
#[cfg(feature = "test-hooks")]
use crate::faults::Faults;
use anyhow::{Context as _, bail};
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_pubsub::client::{BasePublisher, Publisher};
use google_cloud_pubsub::model::Message;
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

/// How long a publish may take before the step gives up and answers 5xx. The message may
/// still go out afterwards; every consumer is idempotent, so that is harmless.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

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
        Self::build(target, service.publishes(), batching).await
    }

    /// Builds a publisher for each of `topics`, each sending every message at once: for an
    /// operator's tool (`sagactl redrive` puts dead letters back on the topics they came
    /// from), which is no service and so not bound to one service's topics.
    pub async fn connect_topics(target: &PubSubTarget, topics: &[Topic]) -> anyhow::Result<Self> {
        Self::build(target, topics, Batching::None).await
    }

    async fn build(target: &PubSubTarget, topics: &[Topic], batching: Batching) -> anyhow::Result<Self> {
        let mut builder = BasePublisher::builder();
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
