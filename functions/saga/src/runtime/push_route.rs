//! The ack policy of every push endpoint, in one place.
//!
//! | outcome                               | answer | effect                          |
//! |---------------------------------------|--------|---------------------------------|
//! | handled (published, duplicate, ...)   | 200    | Pub/Sub drops the message       |
//! | poison (bad envelope, base64, JSON, a | 200    | copied to `dead-letter` first,  |
//! | field the step needs)                 |        | with the reason as attributes   |
//! | transient (Firestore, Pub/Sub, races) | 503    | Pub/Sub retries with backoff,   |
//! |                                       |        | then dead-letters               |
//!
//! A poison message is answered 2xx only once its dead-letter copy is published; if that
//! fails too, the answer is 503 and Pub/Sub tries again.

use crate::contract::Topic;
use crate::engine::{Deadline, Handled, PoisonDetail, Step, StepError};
use crate::gcp::Clients;
use crate::gcp::auth::AuthError;
use crate::gcp::bus::Outgoing;
use crate::wire::envelope::{MAX_PUSH_BYTES, Push, read_envelope};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use base64::Engine as _;
use serde_json::json;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument as _;

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
pub fn step_route<S: Step + Copy + 'static>(step: S) -> MethodRouter<Clients> {
    push_route(move |clients, push, deadline| async move {
        let msg = parse_message(&push)?;
        crate::engine::run(&step, &clients, &msg, &push.trace, deadline).await
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
            async move {
                // The token first: nobody else gets us to read a large body.
                if let Some(verifier) = &clients.push_verifier
                    && let Err(e) = verifier.verify(&headers).await
                {
                    return refused(&e, verifier.mode());
                }
                match axum::body::to_bytes(body, MAX_PUSH_BYTES).await {
                    Ok(body) => handle(clients, body, handler, poison, deadline).await,
                    // Larger than any push Pub/Sub makes, or the connection broke.
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the push body");
                        (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            Json(json!({ "error": "payload_too_large", "message": "not a Pub/Sub push" })),
                        )
                            .into_response()
                    }
                }
            }
        },
    )
}

async fn handle<F, Fut>(
    clients: Clients,
    body: Bytes,
    step: F,
    poison: Poison,
    deadline: Deadline,
) -> Response
where
    F: Fn(Clients, Push, Deadline) -> Fut,
    Fut: Future<Output = Result<Handled, StepError>>,
{
    #[cfg(feature = "test-hooks")]
    if clients.faults.take_push_failure() {
        tracing::warn!("injected push failure (test hook)");
        return unavailable();
    }
    // `detail` never quotes the message (see `PoisonDetail`); the lines give its size.
    let refuse = |push: Push, code: &'static str, detail: PoisonDetail| {
        let clients = clients.clone();
        async move {
            match poison {
                Poison::DeadLetter => dead_letter(&clients, &push, code, &detail).await,
                Poison::Keep => {
                    tracing::error!(reason = code, %detail, bytes = push.data.len(), message_id = %push.message_id, "an unreadable dead letter; it stays on dead-letter-sub");
                    (
                        StatusCode::OK,
                        Json(json!({ "result": "ignored", "reason": code, "detail": detail.as_str() })),
                    )
                        .into_response()
                }
                Poison::Skip => {
                    tracing::debug!(reason = code, message_id = %push.message_id, "not a saga message; its step dead-letters it");
                    (
                        StatusCode::OK,
                        Json(json!({ "result": "ignored", "reason": code, "detail": detail.as_str() })),
                    )
                        .into_response()
                }
            }
        }
    };
    let push = match read_envelope(&body) {
        Ok(push) => push,
        Err(e) => {
            let raw = Push {
                data: body.to_vec(),
                ..Push::default()
            };
            return refuse(raw, e.code(), PoisonDetail::from(&e)).await;
        }
    };
    // The dead-letter reader takes letters of any size: a letter may have been refused for
    // its size alone, and its saga must still end.
    if poison != Poison::Keep
        && let Err(e) = push.check_size()
    {
        // The whole message, attributes and all, goes to the dead-letter topic.
        return refuse(push, e.code(), PoisonDetail::from(&e)).await;
    }
    let span = tracing::info_span!(
        "push",
        subscription = %push.subscription.rsplit('/').next().unwrap_or_default(),
        message_id = %push.message_id,
        delivery_attempt = push.delivery_attempt,
        uuid = tracing::field::Empty,
        trace_id = %push.trace.trace_id(),
        span_id = %push.trace.span_id(),
    );
    async {
        match step(clients.clone(), push.clone(), deadline).await {
            Ok(handled) => {
                match &handled {
                    Handled::Published(Topic::Error) | Handled::Republished(Topic::Error) => {
                        tracing::warn!(outcome = handled.word(), topic = %Topic::Error, "the saga failed at this step");
                    }
                    Handled::Published(topic) | Handled::Republished(topic) => {
                        tracing::info!(outcome = handled.word(), %topic, "step done");
                    }
                    Handled::Recorded => tracing::debug!(outcome = "recorded", "view updated"),
                    Handled::Duplicate => {
                        tracing::info!(outcome = "duplicate", "already done; nothing to do");
                    }
                    Handled::Ignored(why) => {
                        tracing::info!(outcome = "ignored", why, "nothing to do");
                    }
                }
                (StatusCode::OK, Json(json!({ "result": handled.word() }))).into_response()
            }
            Err(StepError::Poison { code, detail }) => refuse(push.clone(), code, detail).await,
            Err(StepError::Transient(e)) => {
                tracing::warn!(error = format!("{e:#}"), "transient failure; Pub/Sub will retry");
                unavailable()
            }
        }
    }
    .instrument(span)
    .await
}

/// Copies a message that can never be processed to the dead-letter topic, then acks it.
async fn dead_letter(clients: &Clients, push: &Push, code: &'static str, detail: &PoisonDetail) -> Response {
    use dead_letter_attributes as attr;
    let (data, encoding) = match String::from_utf8(push.data.clone()) {
        Ok(text) => (text, None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&push.data),
            Some("base64"),
        ),
    };
    let mut out = Outgoing {
        topic: Topic::DeadLetter,
        data,
        attributes: push.attributes.clone(),
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
    match clients.bus.publish(&out).await {
        Ok(id) => {
            tracing::error!(
                reason = code,
                %detail,
                bytes = push.data.len(),
                message_id = %push.message_id,
                dead_letter_id = %id,
                "poison message moved to the dead-letter topic"
            );
            (
                StatusCode::OK,
                Json(json!({ "result": "dead_lettered", "reason": code, "detail": detail.as_str() })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(
                reason = code,
                error = format!("{e:#}"),
                "could not dead-letter a poison message; Pub/Sub will retry"
            );
            unavailable()
        }
    }
}

/// The answer to a push that failed authentication; nothing else was done for it. The log
/// line says it was the worker that refused, in which mode: Cloud Run's own refusals never
/// reach the container.
fn refused(e: &AuthError, mode: &'static str) -> Response {
    let (status, code) = match e {
        AuthError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        AuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    tracing::warn!(error = %e, push_auth = mode, "push refused by the worker's token check");
    let message = match e {
        AuthError::Unavailable(_) => "cannot verify push tokens right now; retry",
        _ => "this endpoint only takes pushes from Pub/Sub",
    };
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "error": "unavailable",
            "message": "temporarily unable to process the message; it will be retried"
        })),
    )
        .into_response()
}

/// Parses the saga message of `push` and tags the current log span with its uuid.
pub fn parse_message(push: &Push) -> Result<crate::wire::message::SagaMessage, StepError> {
    let msg = crate::wire::message::SagaMessage::parse(&push.data)?;
    tracing::Span::current().record("uuid", tracing::field::display(msg.uuid));
    Ok(msg)
}
