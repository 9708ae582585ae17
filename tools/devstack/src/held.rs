//! Reading a pull subscription without taking what is read: for tools that must look at
//! messages and leave them (`sagactl dead-letters`), or take only some (`sagactl redrive`,
//! `sagactl discard`).
//!
//! Through Pub/Sub's unary `pull`, `acknowledge` and `modifyAckDeadline` over REST, which
//! the emulator serves on the same port as gRPC and Google Cloud at
//! `pubsub.googleapis.com`: the client library only reads by streaming pull, and the
//! emulator keeps handing a stream's messages to it after its client has gone, out of
//! anyone's reach until their lease runs out, so a message "put back" by a closed stream
//! did not come back. A unary pull hands out nothing once it has answered, and a message
//! put back with `modifyAckDeadline 0` is at once there for the next reader.

use anyhow::Context as _;
use base64::Engine as _;
use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use saga::gcp::bus::PubSubTarget;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use crate::pubsub::Received;

/// How long the messages read stay ours: long enough for a tool to act on each (a redrive
/// publishes each before acking it), short enough that, should the tool die, they are back
/// on the subscription soon. [`Held::release`] puts back the rest at once.
pub const HOLD: Duration = Duration::from_mins(1);

/// How long a message read stays ours if its lease could not be extended to [`HOLD`]: the
/// least ack deadline a subscription can have (Pub/Sub "Subscription properties", the ack
/// deadline: 10 to 600 seconds), so it holds for every subscription.
const LEAST_ACK_DEADLINE: Duration = Duration::from_secs(10);

/// How long before its lease runs out a message is no longer acked: an ack that arrives
/// after the lease is accepted by Google Cloud (without exactly-once delivery) and does
/// nothing, so a tool would report a message taken that is back on the subscription.
const ACK_MARGIN: Duration = Duration::from_secs(2);

/// How long to wait between two pulls that found nothing, while waiting for more.
const POLL: Duration = Duration::from_millis(250);

/// Most messages one pull asks for (Pub/Sub's own limit).
const MAX_PER_PULL: usize = 1_000;

/// How long one REST call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the REST calls go, and how they authenticate.
#[derive(Clone, Debug)]
pub(crate) struct Rest {
    http: reqwest::Client,
    /// `http://host:port/v1` on the emulator, `https://pubsub.googleapis.com/v1` on Google
    /// Cloud.
    base: String,
    /// Application Default Credentials, on Google Cloud; none on the emulator.
    credentials: Option<Credentials>,
}

impl Rest {
    /// The REST endpoint of `target`: its emulator, or Google Cloud with Application
    /// Default Credentials.
    pub(crate) fn for_target(target: &PubSubTarget) -> anyhow::Result<Self> {
        let (base, credentials) = match &target.emulator_endpoint {
            Some(endpoint) => (format!("{}/v1", endpoint.trim_end_matches('/')), None),
            None => (
                "https://pubsub.googleapis.com/v1".to_owned(),
                Some(
                    credentials::Builder::default()
                        .with_scopes(["https://www.googleapis.com/auth/pubsub"])
                        .build()
                        .context("Application Default Credentials for Pub/Sub")?,
                ),
            ),
        };
        Ok(Rest {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .context("building the HTTP client")?,
            base,
            credentials,
        })
    }

    /// POSTs `body` to `{base}/{path}:{verb}` and reads the answer.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        verb: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        let mut request = self.http.post(format!("{}/{path}:{verb}", self.base)).json(body);
        if let Some(credentials) = &self.credentials {
            match credentials
                .headers(http::Extensions::new())
                .await
                .context("getting an access token")?
            {
                CacheableResource::New { data, .. } => request = request.headers(data),
                CacheableResource::NotModified => {
                    anyhow::bail!("the credentials returned no headers")
                }
            }
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{verb} on {path}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            anyhow::bail!("{verb} on {path}: {status}: {}", text.trim());
        }
        response
            .json()
            .await
            .with_context(|| format!("reading the answer to {verb} on {path}"))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedMessage {
    ack_id: String,
    message: PubsubMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PubsubMessage {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_id: String,
    #[serde(default)]
    publish_time: Option<String>,
}

impl PubsubMessage {
    fn received(self) -> anyhow::Result<Received> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .with_context(|| format!("message {}: its data is not base64", self.message_id))?;
        Ok(Received {
            message_id: self.message_id,
            data,
            attributes: self.attributes,
            publish_time: self.publish_time.as_deref().and_then(parse_time),
        })
    }
}

/// An RFC 3339 time as Pub/Sub writes it.
fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .ok()
        .filter(|_| text.ends_with('Z'))
}

/// Messages read by [`crate::pubsub::Puller::hold`] and neither acked nor put back yet:
/// Pub/Sub hands them to no one else for [`HOLD`]. Call [`Held::release`] when done, so
/// that the rest go back at once instead of when that runs out.
#[derive(Debug)]
pub struct Held {
    rest: Rest,
    subscription: String,
    messages: Vec<Received>,
    /// Every ack id of each message still held (a message may be delivered twice), by id.
    ack_ids: HashMap<String, Vec<String>>,
    /// When the lease of each message held runs out (that of its earliest delivery), by id.
    leases: HashMap<String, Instant>,
}

/// When the lease of messages pulled at `pulled` runs out: [`HOLD`] after, if it was
/// extended to that, else the least ack deadline. Counted from before the pull was sent, so
/// never later than Pub/Sub counts it.
fn lease_end(pulled: Instant, extended: bool) -> Instant {
    pulled + if extended { HOLD } else { LEAST_ACK_DEADLINE }
}

/// Whether a message whose lease runs out at `end` can still be acked at `now`.
fn still_ours(end: Instant, now: Instant) -> bool {
    now + ACK_MARGIN < end
}

impl Held {
    /// Reads up to `max` distinct messages from `subscription` (its full name), until `max`
    /// were read or none came for `quiet`, and holds them.
    pub(crate) async fn read(
        rest: Rest,
        subscription: String,
        max: usize,
        quiet: Duration,
    ) -> anyhow::Result<Self> {
        let mut held = Held {
            rest,
            subscription,
            messages: Vec::new(),
            ack_ids: HashMap::new(),
            leases: HashMap::new(),
        };
        let mut last_news = Instant::now();
        while held.messages.len() < max {
            // `returnImmediately`: a pull that waited would hand out a message after this
            // reader stopped waiting, and that message would stay out of reach until its
            // lease ran out.
            let want = (max - held.messages.len()).min(MAX_PER_PULL);
            let pulled_at = Instant::now();
            let pulled: anyhow::Result<PullResponse> = held
                .rest
                .call(
                    &held.subscription,
                    "pull",
                    &serde_json::json!({ "maxMessages": want, "returnImmediately": true }),
                )
                .await;
            let pulled = match pulled {
                Ok(pulled) => pulled,
                Err(e) => {
                    held.release().await;
                    return Err(e);
                }
            };
            if pulled.received_messages.is_empty() {
                if last_news.elapsed() >= quiet {
                    break;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            last_news = Instant::now();
            let ack_ids: Vec<String> = pulled
                .received_messages
                .iter()
                .map(|m| m.ack_id.clone())
                .collect();
            // Ours for [`HOLD`] from now, not for the subscription's ack deadline.
            let extended = match held.modify(&ack_ids, HOLD).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not extend the lease of the messages read");
                    false
                }
            };
            let end = lease_end(pulled_at, extended);
            for ReceivedMessage { ack_id, message } in pulled.received_messages {
                let id = message.message_id.clone();
                held.leases
                    .entry(id.clone())
                    .and_modify(|e| *e = (*e).min(end))
                    .or_insert(end);
                let deliveries = held.ack_ids.entry(id).or_default();
                if deliveries.is_empty() {
                    match message.received() {
                        Ok(received) => held.messages.push(received),
                        Err(e) => tracing::warn!(error = %e, "skipping an unreadable message"),
                    }
                }
                deliveries.push(ack_id);
            }
        }
        Ok(held)
    }

    /// The messages held, each once, in the order they arrived.
    pub fn messages(&self) -> &[Received] {
        &self.messages
    }

    /// Acknowledges the message `message_id` (every delivery of it held): Pub/Sub drops it.
    /// `Ok(false)` if it was not held.
    ///
    /// # Errors
    /// When its lease has run out, or nearly (it is back on the subscription, or soon will
    /// be, and an ack now might do nothing), or Pub/Sub does not take the ack (then
    /// [`Held::release`] puts it back).
    pub async fn ack(&mut self, message_id: &str) -> anyhow::Result<bool> {
        let Some(ack_ids) = self.ack_ids.get(message_id) else {
            return Ok(false);
        };
        let end = self.leases.get(message_id).copied();
        if end.is_some_and(|end| !still_ours(end, Instant::now())) {
            self.ack_ids.remove(message_id);
            anyhow::bail!("its lease ran out before it could be acked, so it is back on the subscription");
        }
        self.rest
            .call::<serde_json::Value>(
                &self.subscription,
                "acknowledge",
                &serde_json::json!({ "ackIds": ack_ids }),
            )
            .await?;
        self.ack_ids.remove(message_id);
        Ok(true)
    }

    async fn modify(&self, ack_ids: &[String], lease: Duration) -> anyhow::Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        self.rest
            .call::<serde_json::Value>(
                &self.subscription,
                "modifyAckDeadline",
                &serde_json::json!({ "ackIds": ack_ids, "ackDeadlineSeconds": lease.as_secs() }),
            )
            .await
            .map(|_| ())
    }

    /// Puts every message not acked back on the subscription at once (a nack: its ack
    /// deadline set to 0). Best effort: a message whose nack was lost comes back when its
    /// lease runs out.
    pub async fn release(self) {
        let rest: Vec<String> = self.ack_ids.values().flatten().cloned().collect();
        for chunk in rest.chunks(MAX_PER_PULL) {
            if let Err(e) = self.modify(chunk, Duration::ZERO).await {
                tracing::warn!(
                    error = %e,
                    "could not put messages back; they come back when their lease runs out"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_acked_only_while_its_lease_surely_holds() {
        let pulled = Instant::now();
        assert_eq!(LEAST_ACK_DEADLINE.as_secs(), 10);
        // (extended to HOLD, a minute; acked this long after the pull; still ours), with a
        // margin of 2 s
        assert_eq!((HOLD.as_secs(), ACK_MARGIN.as_secs()), (60, 2));
        let cases = [
            (true, Duration::ZERO, true),
            (true, Duration::from_millis(57_999), true),
            (true, Duration::from_secs(58), false),
            (true, HOLD, false),
            (false, Duration::from_millis(7_999), true),
            (false, Duration::from_secs(8), false),
            (false, Duration::from_secs(30), false),
        ];
        for (extended, after, ours) in cases {
            assert_eq!(
                still_ours(lease_end(pulled, extended), pulled + after),
                ours,
                "{extended} {after:?}"
            );
        }
    }

    #[test]
    fn pubsub_times_are_read_to_the_microsecond_and_anything_else_is_no_time() {
        let at =
            |s: &str| parse_time(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros());
        assert_eq!(at("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(at("2026-12-01T16:35:41.670Z"), Some(1_796_142_941_670_000));
        assert_eq!(at("2026-12-01T16:35:41.670123Z"), Some(1_796_142_941_670_123));
        assert_eq!(at("yesterday"), None);
        assert_eq!(at("2026-12-01T16:35:41"), None, "no zone");
    }
}
