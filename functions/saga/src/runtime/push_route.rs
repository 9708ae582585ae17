//! The ack policy of every push endpoint, in one place.
//!
//! | outcome                               | answer | effect                          |
//! |---------------------------------------|--------|---------------------------------|
//! | handled (published, duplicate, ...)   | 204    | Pub/Sub drops the message       |
//! | poison (bad envelope, base64, JSON, a | 200    | copied to `dead-letter` first,  |
//! | field the step needs)                 |        | with the reason as attributes   |
//! | transient (Firestore, Pub/Sub, races) | 503    | Pub/Sub retries with backoff,   |
//! |                                       |        | then dead-letters               |
//!
//! A poison message is answered 2xx only once its dead-letter copy is published; if that
//! fails too, the answer is 503 and Pub/Sub tries again.
//!
//! A handled push is answered without a body, its outcome in the [`OUTCOME_HEADER`]; every
//! other answer has a JSON body naming what happened, and every acked one (poison moved to
//! `dead-letter`, an unreadable letter kept) names its outcome in the header too, so that
//! whoever replays a push reads any ack the same way. Pub/Sub reads only the status (any of
//! 102, 200, 201, 202 and 204 acks: "Push subscriptions"), and a body nobody reads is not
//! free: the emulator's push client never reads one, and with a body it opened about two
//! connections a push instead of one (BENCHMARKS.md, "Push answers without a body").

use crate::contract::Topic;
use crate::engine::{Deadline, Handled, Inbound, PoisonDetail, Step, StepError};
use crate::gcp::Clients;
use crate::gcp::auth::AuthError;
use crate::gcp::bus::Outgoing;
use crate::runtime::server::AnswerLog;
use crate::wire::envelope::{MAX_PUSH_BYTES, Push, read_envelope};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use base64::Engine as _;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

/// The header that carries an acked push's outcome (`published`, `republished`,
/// `duplicate`, `recorded`, `ignored` or `dead_lettered`), for whoever replays a push by
/// hand.
pub const OUTCOME_HEADER: HeaderName = HeaderName::from_static("saga-outcome");

/// Attributes put on a message copied to the dead-letter topic by a service.
pub mod dead_letter_attributes {
    /// Machine-readable reason.
    pub const REASON: &str = "saga_dead_letter_reason";
    /// What was wrong, in words.
    pub const DETAIL: &str = "saga_dead_letter_detail";
    /// The service that refused it.
    pub const SERVICE: &str = "saga_dead_letter_service";
    /// The subscription it arrived on.
    pub const SUBSCRIPTION: &str = "saga_dead_letter_subscription";
    /// Its Pub/Sub message id.
    pub const MESSAGE_ID: &str = "saga_dead_letter_message_id";
    /// `base64` when the payload is the base64 of bytes that were not UTF-8.
    pub const ENCODING: &str = "saga_dead_letter_encoding";
    /// How many of the message's own attributes the copy left out, when they and these
    /// would pass Pub/Sub's limit of [`MAX`] a message.
    pub const DROPPED: &str = "saga_dead_letter_attributes_dropped";
    /// The prefix of every attribute above: a message's own attributes of these names are
    /// replaced in its copy.
    pub const PREFIX: &str = "saga_dead_letter_";
    /// Most attributes a Pub/Sub message may carry (Pub/Sub "Quotas and limits").
    pub const MAX: usize = 100;
    /// The attribute Pub/Sub itself puts on a message it dead-lettered: the subscription
    /// that gave up.
    pub const PUBSUB_SOURCE_SUBSCRIPTION: &str = "CloudPubSubDeadLetterSourceSubscription";

    /// Where a dead letter came from, as its attributes tell: read the same way by the
    /// janitor (which ends its saga) and by `sagactl` (which lists and redrives it).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Origin<'a> {
        /// The poison code, when a service copied the message here itself because it can
        /// never be processed; `None` when Pub/Sub gave up delivering it.
        pub poison: Option<&'a str>,
        /// The subscription it was read from, as the attributes name it (an id, or a full
        /// resource name); `None` if they do not say.
        pub subscription: Option<&'a str>,
    }

    /// The origin of a dead letter with `attributes`. A service's copy names the
    /// subscription it arrived on; Pub/Sub's own names the one that gave up. A service's
    /// copy keeps the message's attributes, so its own attributes take precedence.
    pub fn origin(attributes: &std::collections::BTreeMap<String, String>) -> Origin<'_> {
        let get = |key: &str| attributes.get(key).map(String::as_str);
        let poison = get(REASON);
        Origin {
            poison,
            subscription: match poison {
                Some(_) => get(SUBSCRIPTION),
                None => get(PUBSUB_SOURCE_SUBSCRIPTION),
            },
        }
    }
}

/// What to do with a push that can never be processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poison {
    /// Copy it to the dead-letter topic, then ack it: for the saga's steps.
    DeadLetter,
    /// Ack it and log it: for the subscription on the dead-letter topic itself, where the
    /// message stays (on `dead-letter-sub`); copying it there again would only feed it back.
    Keep,
    /// Ack it quietly: for the status view, which reads the same topics as the steps; the
    /// step that reads the message dead-letters it, once.
    Skip,
}

/// A push endpoint whose handler gets the decoded message and the deadline of its delivery
/// (which started when the request arrived); everything around it (token, envelope, poison
/// routing, status codes, logging) is this module's.
pub fn push_route<F, Fut>(handler: F) -> MethodRouter<Clients>
where
    F: Fn(Clients, Push, Deadline) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Handled, StepError>> + Send + 'static,
{
    route(Poison::DeadLetter, handler)
}

/// The push endpoint of a forward step: parse the saga message, run the step engine.
pub fn step_route<S: Step>(step: S) -> MethodRouter<Clients> {
    let step: Arc<dyn Step> = Arc::new(step);
    push_route(move |clients, push, deadline| {
        let step = step.clone();
        async move {
            let msg = parse_message(&push)?;
            crate::engine::run(step, &clients, &msg, &Inbound::of(&push), deadline).await
        }
    })
}

/// [`push_route`] with another way of handling poison.
pub fn push_route_with<F, Fut>(poison: Poison, handler: F) -> MethodRouter<Clients>
where
    F: Fn(Clients, Push, Deadline) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Handled, StepError>> + Send + 'static,
{
    route(poison, handler)
}

fn route<F, Fut>(poison: Poison, handler: F) -> MethodRouter<Clients>
where
    F: Fn(Clients, Push, Deadline) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Handled, StepError>> + Send + 'static,
{
    post(
        move |State(clients): State<Clients>, headers: HeaderMap, body: Body| {
            // Before anything that may wait: the server's timeout is already running.
            let deadline = Deadline::arrived_at(Instant::now());
            let handler = handler.clone();
            async move { receive(clients, &headers, body, handler, poison, deadline).await }
        },
    )
}

/// Everything a push goes through, in order: the token, the body, the envelope, its size,
/// then the handler, within the push's span.
async fn receive<F, Fut>(
    clients: Clients,
    headers: &HeaderMap,
    body: Body,
    handler: F,
    poison: Poison,
    deadline: Deadline,
) -> Answer
where
    F: Fn(Clients, Push, Deadline) -> Fut,
    Fut: Future<Output = Result<Handled, StepError>>,
{
    // The token first: nobody else gets us to read a large body.
    if let Some(verifier) = &clients.push_verifier
        && let Err(error) = verifier.verify(headers).await
    {
        return PushReply::Refused {
            error,
            mode: verifier.mode(),
        }
        .outside_a_push();
    }
    let body = match axum::body::to_bytes(body, MAX_PUSH_BYTES).await {
        Ok(body) => body,
        // Larger than any push Pub/Sub makes, or the connection broke.
        Err(e) => return PushReply::NotAPush(e.to_string()).outside_a_push(),
    };
    #[cfg(feature = "test-hooks")]
    if clients.faults.take_push_failure() {
        return PushReply::Unavailable("injected push failure (test hook)".to_owned()).outside_a_push();
    }
    let push = match read_envelope(&body) {
        Ok(push) => push,
        Err(e) => {
            let raw = Push {
                data: body.to_vec(),
                ..Push::default()
            };
            return refuse(&clients, poison, &raw, e.code(), PoisonDetail::from(&e))
                .await
                .outside_a_push();
        }
    };
    let span = push_span(&push);
    let reply = async {
        // The dead-letter reader takes letters of any size: a letter may have been refused
        // for its size alone, and its saga must still end.
        if poison != Poison::Keep
            && let Err(e) = push.check_size()
        {
            // The whole message, attributes and all, goes to the dead-letter topic.
            return refuse(&clients, poison, &push, e.code(), PoisonDetail::from(&e)).await;
        }
        match handler(clients.clone(), push.clone(), deadline).await {
            Ok(done) => PushReply::Handled(done),
            Err(StepError::Poison { code, detail }) => refuse(&clients, poison, &push, code, detail).await,
            Err(StepError::Transient(e)) => PushReply::Unavailable(format!("{e:#}")),
        }
    }
    .instrument(span.clone())
    .await;
    Answer { reply, span }
}

/// The span every log line about one push is written in.
fn push_span(push: &Push) -> tracing::Span {
    tracing::info_span!(
        "push",
        subscription = %push.subscription.rsplit('/').next().unwrap_or_default(),
        message_id = %push.message_id,
        delivery_attempt = push.delivery_attempt,
        uuid = tracing::field::Empty,
        trace_id = %push.trace.trace_id(),
        span_id = %push.trace.span_id(),
    )
}

/// What becomes of a push that can never be processed, as `poison` says.
async fn refuse(
    clients: &Clients,
    poison: Poison,
    push: &Push,
    code: &'static str,
    detail: PoisonDetail,
) -> PushReply {
    let bytes = push.data.len();
    let message_id = push.message_id.clone();
    match poison {
        Poison::DeadLetter => match dead_letter(clients, push, code, &detail).await {
            Ok(dead_letter_id) => PushReply::DeadLettered {
                code,
                detail,
                bytes,
                message_id,
                dead_letter_id,
            },
            Err(e) => PushReply::DeadLetterFailed {
                code,
                why: format!("{e:#}"),
            },
        },
        Poison::Keep => PushReply::Kept {
            code,
            detail,
            bytes,
            message_id,
        },
        Poison::Skip => PushReply::Skipped {
            code,
            detail,
            message_id,
        },
    }
}

/// Copies a message that can never be processed to the dead-letter topic; the id Pub/Sub
/// gave the copy.
async fn dead_letter(
    clients: &Clients,
    push: &Push,
    code: &'static str,
    detail: &PoisonDetail,
) -> anyhow::Result<String> {
    use dead_letter_attributes as attr;
    let (data, encoding) = match String::from_utf8(push.data.clone()) {
        Ok(text) => (text, None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&push.data),
            Some("base64"),
        ),
    };
    let (attributes, dropped) = room_for_ours(&push.attributes);
    let mut out = Outgoing {
        topic: Topic::DeadLetter,
        data,
        attributes,
    }
    .with_attribute(attr::REASON, code)
    .with_attribute(
        attr::DETAIL,
        detail.as_str().chars().take(1024).collect::<String>(),
    )
    .with_attribute(attr::SERVICE, clients.service.name())
    .with_attribute(attr::SUBSCRIPTION, push.subscription.clone())
    .with_attribute(attr::MESSAGE_ID, push.message_id.clone());
    if let Some(encoding) = encoding {
        out = out.with_attribute(attr::ENCODING, encoding);
    }
    if dropped > 0 {
        out = out.with_attribute(attr::DROPPED, dropped.to_string());
    }
    clients.bus.publish(&out).await
}

/// The attributes of a message its dead-letter copy keeps: all but those named like the
/// copy's own, and, if Pub/Sub's limit leaves no room for the copy's seven, only the trace
/// context and then the first by name. Else the copy could never be published, and the
/// message would be retried until Pub/Sub dead-lettered it without its reason. Returns them
/// and how many were left out.
fn room_for_ours(
    attributes: &std::collections::BTreeMap<String, String>,
) -> (std::collections::BTreeMap<String, String>, usize) {
    use crate::wire::trace::{CLOUD_TRACE_CONTEXT, TRACEPARENT};
    // REASON, DETAIL, SERVICE, SUBSCRIPTION, MESSAGE_ID, ENCODING and DROPPED.
    const OURS: usize = 7;
    let is_trace = |name: &str| name == TRACEPARENT || name == CLOUD_TRACE_CONTEXT;
    let theirs = attributes
        .iter()
        .filter(|(name, _)| !name.starts_with(dead_letter_attributes::PREFIX));
    // The trace first, so that the janitor's handling of the copy stays in the saga's trace.
    let kept: std::collections::BTreeMap<String, String> = theirs
        .clone()
        .filter(|(name, _)| is_trace(name))
        .chain(theirs.clone().filter(|(name, _)| !is_trace(name)))
        .take(dead_letter_attributes::MAX - OURS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let dropped = theirs.count() - kept.len();
    (kept, dropped)
}

/// What a push route answers: one variant per row of the ack policy in the module doc.
/// Its `IntoResponse` is the one place outcomes become statuses and bodies; the log line of
/// each is written by the logging layer ([`AnswerLog`]). `detail` never quotes the message
/// (see [`PoisonDetail`]); the lines give its size.
#[derive(Clone, Debug)]
pub enum PushReply {
    /// Handled (published, duplicate, recorded, ignored): 204, the outcome in
    /// [`OUTCOME_HEADER`].
    Handled(Handled),
    /// Poison, copied to the dead-letter topic: 200.
    DeadLettered {
        /// Machine-readable reason.
        code: &'static str,
        /// What is wrong.
        detail: PoisonDetail,
        /// The message's size.
        bytes: usize,
        /// The message's id.
        message_id: String,
        /// The copy's id.
        dead_letter_id: String,
    },
    /// Poison whose dead-letter copy failed: 503, and Pub/Sub tries again.
    DeadLetterFailed {
        /// Machine-readable reason.
        code: &'static str,
        /// Why the copy failed.
        why: String,
    },
    /// An unreadable letter on the dead-letter topic itself, which stays there: 200.
    Kept {
        /// Machine-readable reason.
        code: &'static str,
        /// What is wrong.
        detail: PoisonDetail,
        /// The message's size.
        bytes: usize,
        /// The message's id.
        message_id: String,
    },
    /// Not a saga message, on a route whose step elsewhere dead-letters it: 200.
    Skipped {
        /// Machine-readable reason.
        code: &'static str,
        /// What is wrong.
        detail: PoisonDetail,
        /// The message's id.
        message_id: String,
    },
    /// A transient failure: 503, and Pub/Sub retries.
    Unavailable(String),
    /// The worker's token check refused the push: 401, 403, or 503 if keys were unavailable.
    Refused {
        /// Why.
        error: AuthError,
        /// The check's mode, as `PUSH_AUTH` names it.
        mode: &'static str,
    },
    /// A body that cannot be a Pub/Sub push: 413.
    NotAPush(String),
}

/// What a [`PushReply`] puts on the wire (see the module docs).
enum Wire {
    /// 204, the outcome in [`OUTCOME_HEADER`].
    Outcome(&'static str),
    /// A status and a JSON body naming what happened; an ack's outcome in
    /// [`OUTCOME_HEADER`] too.
    Json(StatusCode, serde_json::Value, Option<&'static str>),
}

/// A reply and the span of its push (none before the envelope is read).
struct Answer {
    reply: PushReply,
    span: tracing::Span,
}

impl PushReply {
    fn outside_a_push(self) -> Answer {
        Answer {
            reply: self,
            span: tracing::Span::none(),
        }
    }

    fn wire(&self) -> Wire {
        let unavailable = || {
            json!({
                "error": "unavailable",
                "message": "temporarily unable to process the message; it will be retried"
            })
        };
        let acked = |result: &'static str, code: &str, detail: &PoisonDetail| {
            let body = json!({ "result": result, "reason": code, "detail": detail.as_str() });
            Wire::Json(StatusCode::OK, body, Some(result))
        };
        let (status, body) = match self {
            PushReply::Handled(handled) => return Wire::Outcome(handled.word()),
            PushReply::DeadLettered { code, detail, .. } => return acked("dead_lettered", code, detail),
            PushReply::Kept { code, detail, .. } | PushReply::Skipped { code, detail, .. } => {
                return acked(Handled::Ignored("").word(), code, detail);
            }
            PushReply::Unavailable(_) | PushReply::DeadLetterFailed { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, unavailable())
            }
            PushReply::Refused { error, .. } => {
                let (status, code, message) = match error {
                    AuthError::Unauthenticated(_) => (
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "this endpoint only takes pushes from Pub/Sub",
                    ),
                    AuthError::Forbidden(_) => (
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "this endpoint only takes pushes from Pub/Sub",
                    ),
                    AuthError::Unavailable(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "cannot verify push tokens right now; retry",
                    ),
                };
                (status, json!({ "error": code, "message": message }))
            }
            PushReply::NotAPush(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": "payload_too_large", "message": "not a Pub/Sub push" }),
            ),
        };
        Wire::Json(status, body, None)
    }

    /// The reply's log line, at the level its outcome deserves.
    fn log(&self) {
        match self {
            PushReply::Handled(handled) => match handled {
                Handled::Published(Topic::Error) | Handled::Republished(Topic::Error) => {
                    tracing::warn!(outcome = handled.word(), topic = %Topic::Error, "the saga failed at this step");
                }
                Handled::Published(topic) | Handled::Republished(topic) => {
                    tracing::info!(outcome = handled.word(), %topic, "step done");
                }
                Handled::Recorded => tracing::debug!(outcome = "recorded", "view updated"),
                Handled::Duplicate => tracing::info!(outcome = "duplicate", "already done; nothing to do"),
                Handled::Ignored(why) => tracing::info!(outcome = "ignored", why, "nothing to do"),
            },
            PushReply::DeadLettered {
                code,
                detail,
                bytes,
                message_id,
                dead_letter_id,
            } => tracing::error!(
                reason = code, %detail, bytes, message_id, dead_letter_id,
                "poison message moved to the dead-letter topic"
            ),
            PushReply::DeadLetterFailed { code, why } => tracing::error!(
                reason = code,
                error = why,
                "could not dead-letter a poison message; Pub/Sub will retry"
            ),
            PushReply::Kept {
                code,
                detail,
                bytes,
                message_id,
            } => tracing::error!(
                reason = code, %detail, bytes, message_id,
                "an unreadable dead letter; it stays on dead-letter-sub"
            ),
            PushReply::Skipped { code, message_id, .. } => tracing::debug!(
                reason = code,
                message_id,
                "not a saga message; its step dead-letters it"
            ),
            PushReply::Unavailable(why) => {
                tracing::warn!(error = why, "transient failure; Pub/Sub will retry");
            }
            // The line says it was the worker that refused, in which mode: Cloud Run's own
            // refusals never reach the container.
            PushReply::Refused { error, mode } => {
                tracing::warn!(error = %error, push_auth = mode, "push refused by the worker's token check");
            }
            PushReply::NotAPush(why) => tracing::warn!(error = why, "could not read the push body"),
        }
    }
}

impl IntoResponse for PushReply {
    fn into_response(self) -> Response {
        let mut response = match self.wire() {
            Wire::Outcome(word) => (
                StatusCode::NO_CONTENT,
                [(OUTCOME_HEADER, HeaderValue::from_static(word))],
            )
                .into_response(),
            Wire::Json(status, body, outcome) => {
                let mut response = (status, Json(body)).into_response();
                if let Some(word) = outcome {
                    response
                        .headers_mut()
                        .insert(OUTCOME_HEADER, HeaderValue::from_static(word));
                }
                response
            }
        };
        AnswerLog::attach(&mut response, move || self.log());
        response
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let Answer { reply, span } = self;
        span.in_scope(|| reply.into_response())
    }
}

/// Parses the saga message of `push` and tags the current log span with its uuid.
pub fn parse_message(push: &Push) -> Result<crate::wire::message::SagaMessage, StepError> {
    let msg = crate::wire::message::SagaMessage::parse(&push.data)?;
    tracing::Span::current().record("uuid", tracing::field::display(msg.uuid));
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_copy_keeps_the_messages_attributes_within_pubsubs_limit() {
        let named = |n: usize| -> std::collections::BTreeMap<String, String> {
            (0..n).map(|i| (format!("a{i:03}"), "v".to_owned())).collect()
        };
        for (theirs, kept, dropped) in [(0, 0, 0), (10, 10, 0), (93, 93, 0), (94, 93, 1), (150, 93, 57)] {
            let (copy, left_out) = room_for_ours(&named(theirs));
            assert_eq!((copy.len(), left_out), (kept, dropped), "{theirs} attributes");
            assert!(copy.len() + 7 <= dead_letter_attributes::MAX);
            // The first by name, so that the same message always keeps the same ones.
            assert!(copy.keys().eq(named(kept).keys()), "{theirs} attributes");
        }
        let mut traced = named(150);
        traced.insert(crate::wire::trace::TRACEPARENT.to_owned(), "00-trace".to_owned());
        let (copy, left_out) = room_for_ours(&traced);
        assert_eq!((copy.len(), left_out), (93, 58));
        assert!(
            copy.contains_key(crate::wire::trace::TRACEPARENT),
            "the trace is kept"
        );
        let mut spoofed = named(2);
        spoofed.insert(dead_letter_attributes::REASON.to_owned(), "forged".to_owned());
        let (copy, left_out) = room_for_ours(&spoofed);
        assert_eq!((copy.len(), left_out), (2, 0), "ours are the copy's to set");
    }

    #[test]
    fn a_dead_letter_names_its_origin_by_whoever_dead_lettered_it() {
        use dead_letter_attributes::{Origin, PUBSUB_SOURCE_SUBSCRIPTION, REASON, SUBSCRIPTION, origin};
        let cases: &[(&[(&str, &str)], Origin<'static>)] = &[
            (
                &[(PUBSUB_SOURCE_SUBSCRIPTION, "order-created-sub")],
                Origin {
                    poison: None,
                    subscription: Some("order-created-sub"),
                },
            ),
            (
                &[
                    (REASON, "missing_field"),
                    (SUBSCRIPTION, "projects/p/subscriptions/frontend-sub"),
                ],
                Origin {
                    poison: Some("missing_field"),
                    subscription: Some("projects/p/subscriptions/frontend-sub"),
                },
            ),
            // A service's copy of a message Pub/Sub had dead-lettered before: the copy's own
            // attributes tell.
            (
                &[
                    (REASON, "too_large"),
                    (SUBSCRIPTION, "error-sub"),
                    (PUBSUB_SOURCE_SUBSCRIPTION, "frontend-sub"),
                ],
                Origin {
                    poison: Some("too_large"),
                    subscription: Some("error-sub"),
                },
            ),
            (
                &[(REASON, "bad_envelope")],
                Origin {
                    poison: Some("bad_envelope"),
                    subscription: None,
                },
            ),
            (
                &[("origin", "test")],
                Origin {
                    poison: None,
                    subscription: None,
                },
            ),
        ];
        for (attributes, expected) in cases {
            let attributes = attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(origin(&attributes), *expected, "{attributes:?}");
        }
    }

    fn detail() -> PoisonDetail {
        PoisonDetail::from(&crate::domain::FieldError::Missing("uuid"))
    }

    #[tokio::test]
    async fn a_handled_push_is_answered_204_with_its_outcome_in_a_header_and_no_body() {
        for (handled, word) in [
            (Handled::Published(Topic::OrderCreated), "published"),
            (Handled::Republished(Topic::Error), "republished"),
            (Handled::Duplicate, "duplicate"),
            (Handled::Recorded, "recorded"),
            (Handled::Ignored("why"), "ignored"),
        ] {
            let response = PushReply::Handled(handled).into_response();
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "{word}");
            assert_eq!(
                response
                    .headers()
                    .get(OUTCOME_HEADER)
                    .and_then(|v| v.to_str().ok()),
                Some(word)
            );
            assert!(
                response.extensions().get::<AnswerLog>().is_some(),
                "{word}: a log line"
            );
            assert!(
                response.headers().get("content-type").is_none(),
                "{word}: nothing to type"
            );
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .expect("a body");
            assert!(body.is_empty(), "{word}: {body:?}");
        }
    }

    #[tokio::test]
    async fn every_other_reply_answers_as_the_ack_policy_says_and_every_ack_names_its_outcome() {
        let cases = [
            (
                PushReply::DeadLettered {
                    code: "missing_field",
                    detail: detail(),
                    bytes: 3,
                    message_id: "1".into(),
                    dead_letter_id: "2".into(),
                },
                200,
                ("result", "dead_lettered"),
            ),
            (
                PushReply::Kept {
                    code: "missing_field",
                    detail: detail(),
                    bytes: 3,
                    message_id: "1".into(),
                },
                200,
                ("result", "ignored"),
            ),
            (
                PushReply::Skipped {
                    code: "missing_field",
                    detail: detail(),
                    message_id: "1".into(),
                },
                200,
                ("result", "ignored"),
            ),
            (
                PushReply::DeadLetterFailed {
                    code: "missing_field",
                    why: "down".into(),
                },
                503,
                ("error", "unavailable"),
            ),
            (
                PushReply::Unavailable("down".into()),
                503,
                ("error", "unavailable"),
            ),
            (
                PushReply::Refused {
                    error: AuthError::Unauthenticated("no".into()),
                    mode: "cloud-run-iam",
                },
                401,
                ("error", "unauthenticated"),
            ),
            (
                PushReply::Refused {
                    error: AuthError::Forbidden("no".into()),
                    mode: "signature",
                },
                403,
                ("error", "forbidden"),
            ),
            (
                PushReply::Refused {
                    error: AuthError::Unavailable("keys".into()),
                    mode: "signature",
                },
                503,
                ("error", "unavailable"),
            ),
            (
                PushReply::NotAPush("big".into()),
                413,
                ("error", "payload_too_large"),
            ),
        ];
        for (reply, status, (key, value)) in cases {
            let what = format!("{reply:?}");
            let response = reply.into_response();
            assert_eq!(response.status().as_u16(), status, "{what}");
            assert!(
                response.extensions().get::<AnswerLog>().is_some(),
                "{what}: a log line"
            );
            let header = response
                .headers()
                .get(OUTCOME_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .expect("a body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(body[key], value, "{what}");
            // An ack names its outcome in the header as the body does; a refusal has none.
            let expected = (status == 200).then(|| value.to_owned());
            assert_eq!(header, expected, "{what}");
        }
    }
}
