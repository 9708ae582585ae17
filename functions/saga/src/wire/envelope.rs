//! The Pub/Sub push envelope: what a push subscription POSTs to a service.
//!
//! ```json
//! {"message": {"data": "<base64>", "attributes": {...}, "messageId": "1",
//!              "publishTime": "..."}, "subscription": "projects/P/subscriptions/S",
//!  "deliveryAttempt": 3}
//! ```
//!
//! Pub/Sub (and its emulator) sends the message fields both in camelCase and in
//! `snake_case`; either is accepted.

use crate::domain::JsonProblem;

use crate::wire::message::MAX_MESSAGE_BYTES;
use crate::wire::trace::{TRACEPARENT, TraceContext};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most bytes a push request may carry: the largest message Pub/Sub takes (10 MB) in base64,
/// with its attributes and envelope. Larger pushes cannot come from Pub/Sub; a push this
/// large is read (after its token is checked) only to move its message to the dead-letter
/// topic whole, since it is far over [`MAX_MESSAGE_BYTES`].
pub const MAX_PUSH_BYTES: usize = 16 * 1024 * 1024;

/// A pushed message, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Push {
    /// The message payload.
    pub data: Vec<u8>,
    /// The message attributes.
    pub attributes: BTreeMap<String, String>,
    /// The id Pub/Sub gave the message.
    pub message_id: String,
    /// When it was published (RFC 3339), if given.
    pub publish_time: Option<String>,
    /// The subscription that delivered it (full resource name).
    pub subscription: String,
    /// Which delivery this is, when the subscription has a dead-letter policy.
    pub delivery_attempt: Option<u32>,
    /// The span of the handling of this push: a child of the message's `traceparent`
    /// attribute, or a new trace if it has none.
    pub trace: TraceContext,
}

/// Why an envelope could not be read. Its `Display` never quotes the envelope, so it may
/// be logged and put in dead-letter attributes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not the JSON of a push envelope.
    #[error("not a Pub/Sub push envelope: {0}")]
    Malformed(JsonProblem),
    /// `message.data` is not base64: where, but not which byte.
    #[error("message data is not base64: {0}")]
    BadBase64(String),
    /// `message.data` decodes to more than [`MAX_MESSAGE_BYTES`].
    #[error("message data is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
}

impl EnvelopeError {
    /// A short machine-readable code for the problem.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Malformed(_) => "bad_envelope",
            EnvelopeError::BadBase64(_) => "bad_base64",
            EnvelopeError::TooLarge => "too_large",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message: WireMessage,
    #[serde(default)]
    subscription: String,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

/// Both spellings are separate fields, so that an envelope carrying both is not a
/// "duplicate field" error.
#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "messageId")]
    message_id_camel: Option<String>,
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(default, rename = "publishTime")]
    publish_time_camel: Option<String>,
    #[serde(default, rename = "publish_time")]
    publish_time_snake: Option<String>,
}

/// Reads a push request body, refusing data over [`MAX_MESSAGE_BYTES`].
pub fn parse_envelope(body: &[u8]) -> Result<Push, EnvelopeError> {
    let push = read_envelope(body)?;
    push.check_size()?;
    Ok(push)
}

/// Reads a push request body whatever the size of its data (the HTTP body limit bounds
/// it), so that an oversized message can still be dead-lettered whole, with its attributes.
pub fn read_envelope(body: &[u8]) -> Result<Push, EnvelopeError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::Malformed(JsonProblem::of(&e)))?;
    let msg = env.message;
    let encoded = msg.data.unwrap_or_default();
    let data = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| EnvelopeError::BadBase64(base64_problem(&e)))?;
    let attributes = msg.attributes.unwrap_or_default();
    let trace = attributes
        .get(TRACEPARENT)
        .and_then(|t| TraceContext::from_traceparent(t))
        .map_or_else(TraceContext::new_root, |parent| parent.child());
    Ok(Push {
        data,
        trace,
        attributes,
        message_id: msg.message_id_camel.or(msg.message_id_snake).unwrap_or_default(),
        publish_time: msg.publish_time_camel.or(msg.publish_time_snake),
        subscription: env.subscription,
        delivery_attempt: env.delivery_attempt,
    })
}

/// What is wrong with base64 text, without the byte at fault (base64's own `Display`
/// quotes it).
fn base64_problem(e: &base64::DecodeError) -> String {
    use base64::DecodeError;
    match e {
        DecodeError::InvalidByte(offset, _) => format!("a character that is not base64 at offset {offset}"),
        DecodeError::InvalidLength(length) => format!("{length} symbols is not a length base64 can have"),
        DecodeError::InvalidLastSymbol(offset, _) => {
            format!("the last symbol, at offset {offset}, is not canonical")
        }
        DecodeError::InvalidPadding => "the padding is wrong".to_owned(),
    }
}

impl Push {
    /// Refuses data over [`MAX_MESSAGE_BYTES`]: no saga message is that large.
    pub fn check_size(&self) -> Result<(), EnvelopeError> {
        if self.data.len() > MAX_MESSAGE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        Ok(())
    }
}

/// Builds the body Pub/Sub would push for `data`: for tests and tools that drive a
/// handler directly.
pub fn envelope(
    subscription: &str,
    message_id: &str,
    data: &[u8],
    attributes: &BTreeMap<String, String>,
) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    serde_json::to_vec(&serde_json::json!({
        "message": {
            "data": encoded,
            "attributes": attributes,
            "messageId": message_id,
            "message_id": message_id,
        },
        "subscription": subscription,
    }))
    .expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulators_envelope_with_both_spellings_parses() {
        let body = br#"{"subscription":"projects\/exp\/subscriptions\/tt1-sub","message":{"publishTime":"2026-11-26T11:33:32.669Z","data":"eyJhIjoxfQ==","publish_time":"2026-11-26T11:33:32.669Z","messageId":"1","attributes":{"k":"v"},"message_id":"1"}}"#;
        let push = parse_envelope(body).unwrap();
        assert_eq!(push.data, br#"{"a":1}"#);
        assert_eq!(push.message_id, "1");
        assert_eq!(push.attributes.get("k").map(String::as_str), Some("v"));
        assert_eq!(push.subscription, "projects/exp/subscriptions/tt1-sub");
        assert_eq!(push.publish_time.as_deref(), Some("2026-11-26T11:33:32.669Z"));
        assert_eq!(push.delivery_attempt, None);
    }

    #[test]
    fn delivery_attempt_and_snake_case_only_fields_are_read() {
        let body = br#"{"message":{"data":"","message_id":"9"},"subscription":"s","deliveryAttempt":4}"#;
        let push = parse_envelope(body).unwrap();
        assert_eq!(push.message_id, "9");
        assert_eq!(push.delivery_attempt, Some(4));
        assert!(push.data.is_empty());
    }

    #[test]
    fn a_push_continues_the_trace_of_its_message_or_starts_one() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let attrs = BTreeMap::from([(TRACEPARENT.to_owned(), parent.to_owned())]);
        let push = parse_envelope(&envelope("s", "1", b"{}", &attrs)).unwrap();
        assert_eq!(push.trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(push.trace.span_id(), "00f067aa0ba902b7");
        let orphan = parse_envelope(&envelope("s", "2", b"{}", &BTreeMap::new())).unwrap();
        assert_ne!(orphan.trace.trace_id(), push.trace.trace_id());
    }

    #[test]
    fn bad_envelopes_are_told_apart() {
        assert_eq!(parse_envelope(b"nope").unwrap_err().code(), "bad_envelope");
        assert_eq!(parse_envelope(b"{}").unwrap_err().code(), "bad_envelope");
        assert_eq!(
            parse_envelope(br#"{"message":{"data":"!!!"}}"#)
                .unwrap_err()
                .code(),
            "bad_base64"
        );
        let big = "A".repeat(MAX_MESSAGE_BYTES * 2);
        let body = format!(r#"{{"message":{{"data":"{big}"}}}}"#);
        assert_eq!(parse_envelope(body.as_bytes()).unwrap_err().code(), "too_large");
    }

    #[test]
    fn envelope_builds_what_parse_envelope_reads() {
        let attrs = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let push = parse_envelope(&envelope("projects/p/subscriptions/s", "7", b"hello", &attrs)).unwrap();
        assert_eq!(push.data, b"hello");
        assert_eq!(push.attributes, attrs);
        assert_eq!(push.message_id, "7");
    }

    #[test]
    fn an_envelope_error_never_quotes_the_envelope() {
        const SECRET: &str = "hunter2-s3cr3t-token";
        let cases = [
            format!(r#"{{"message":{{"data":"{SECRET}!"}}}}"#),
            format!(r#"{{"message":{{"data":"","attributes":"{SECRET}"}}}}"#),
            format!(r#"{{"message":{{"data":"","messageId":["{SECRET}"]}}}}"#),
            format!(r#"{{"message":{{"data":""}},"deliveryAttempt":"{SECRET}"}}"#),
            format!(r#"{{"message":"{SECRET}"}}"#),
            format!(r#""{SECRET}""#),
            format!(r#"{{"message":{{"data":""}}}} {SECRET}"#),
        ];
        for body in &cases {
            let e = parse_envelope(body.as_bytes()).unwrap_err();
            let said = crate::engine::PoisonDetail::from(&e).to_string();
            assert!(!said.contains("s3cr3t"), "{said}");
            assert!(said.len() < 300, "{said}");
        }
        let e = parse_envelope(br#"{"message":{"data":"","messageId":7}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a Pub/Sub push envelope: invalid type: integer, expected a string at line 1 column 35"
        );
    }
}
