//! The frontend: takes orders over HTTP and starts their sagas.
//!
//! `POST /order` with `{"item": "widget", "quantity": 50, "user": "jack", ...}` checks the
//! order, gives it a saga `uuid`, publishes it to `frontend` and answers `202` with the
//! uuid. Every other field the client sent travels with the saga unchanged.
//!
//! `GET /orders/{uuid}` tells where a saga stands (from the status view the janitor keeps),
//! and `GET /orders` lists the latest sagas of everyone, where `ORDER_LIST` allows it (not
//! by default on Cloud Run: the uuid is what keeps one person's order from the others).

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use firestore::FirestoreTimestamp;
use saga::contract::{Topic, collections};
use saga::domain::{FieldError, Order, SagaId, Stage};
use saga::engine::records;
use saga::engine::status::{self, StatusDoc};
use saga::gcp::Clients;
use saga::gcp::bus::Outgoing;
use saga::gcp::store::WriteSet;
use saga::runtime::config::{Config, OrderList};
use saga::runtime::server::AnswerLog;
use saga::wire::message::{MAX_ORDER_BYTES, SagaMessage};
use saga::wire::trace::{CLOUD_TRACE_CONTEXT, TRACEPARENT, TraceContext};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument as _;

pub mod idempotency;
mod page;

/// The path that takes orders.
pub const ORDER_PATH: &str = "/order";

/// Every way a request can fail, each with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not acceptable.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The body is not declared as JSON.
    #[error("Content-Type must be application/json")]
    NotJson,
    /// The `Idempotency-Key` header is not acceptable.
    #[error("header `Idempotency-Key` {0}")]
    BadIdempotencyKey(String),
    /// The `Idempotency-Key` was used before for a different request.
    #[error("this Idempotency-Key was already used for a different order")]
    KeyReused,
    /// The path names no valid saga id.
    #[error("`{0}` is not a saga uuid")]
    BadUuid(String),
    /// The path or the query string cannot be read (axum's words say why).
    #[error("{0}")]
    BadRequest(String),
    /// No saga has that id (a saga's view is written before `POST /order` answers).
    #[error("{not_found} {0}", not_found = saga::contract::uptime::NOT_FOUND)]
    NotFound(SagaId),
    /// `GET /orders` is turned off on this deployment.
    #[error(
        "the list of everyone's orders is turned off here (ORDER_LIST=off); follow one order at \
         GET /orders/{{uuid}}, with the uuid that POST /order answered"
    )]
    ListDisabled,
    /// A dependency failed; the client may retry.
    #[error("temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl From<saga::engine::retry::Contention> for ApiError {
    fn from(e: saga::engine::retry::Contention) -> Self {
        ApiError::Unavailable(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            ApiError::Invalid(e) => {
                let status = match e {
                    FieldError::NotJson(_) => StatusCode::BAD_REQUEST,
                    FieldError::TooLarge(_) | FieldError::WouldGrowTooLarge { .. } => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, e.code(), e.field().map(str::to_owned))
            }
            ApiError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None),
            ApiError::BadUuid(_) => (StatusCode::BAD_REQUEST, "invalid_uuid", Some("uuid".to_owned())),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::BadIdempotencyKey(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                Some("Idempotency-Key".to_owned()),
            ),
            ApiError::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                Some("Idempotency-Key".to_owned()),
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::ListDisabled => (StatusCode::NOT_FOUND, "order_list_disabled", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
        };
        let mut body = json!({ "error": code, "message": self.to_string() });
        if let Some(field) = field {
            body["field"] = field.into();
        }
        let mut response = (status, Json(body)).into_response();
        // A dependency failed: the logging layer says which; the client learns only to retry.
        if let ApiError::Unavailable(e) = self {
            let error = format!("{e:#}");
            AnswerLog::attach(&mut response, move || {
                tracing::error!(error, "a dependency failed; answered 503");
            });
        }
        response
    }
}

/// The answer to an accepted order.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The saga's id.
    pub uuid: String,
    /// Where the saga stands: `received`, or for a retry of an order placed before, its
    /// stage now (`completed`, `compensated`, ...).
    pub status: &'static str,
    /// Where to follow it: `/orders/{uuid}`.
    pub status_url: String,
    /// The trace of this request, to find its log lines
    /// (`trace="projects/PROJECT/traces/TRACE_ID"` in Cloud Logging).
    pub trace_id: String,
}

/// One stage of a saga's timeline.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    /// The stage.
    pub stage: Stage,
    /// When it happened.
    pub at: FirestoreTimestamp,
}

/// `GET /orders/{uuid}`: where a saga stands.
#[derive(Debug, Serialize)]
pub struct OrderStatus {
    /// The saga.
    pub uuid: String,
    /// `received`, `order_created`, `stock_reserved`, `completed`, `failed` or `compensated`.
    pub status: Stage,
    /// Whether the saga has ended (completed, or failed and compensated).
    pub finished: bool,
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// By whom.
    pub user: String,
    /// The step that failed.
    pub failed_step: Option<String>,
    /// Why (machine-readable).
    pub reason: Option<String>,
    /// The failure's text, or that of the furthest stage.
    pub status_text: Option<String>,
    /// The invoice, once paid.
    pub total_invoice: Option<u64>,
    /// Each stage once, in saga order.
    pub timeline: Vec<TimelineEntry>,
}

impl From<StatusDoc> for OrderStatus {
    fn from(doc: StatusDoc) -> Self {
        let at = |micros: i64| {
            firestore::jiff::Timestamp::from_microsecond(micros)
                .map(FirestoreTimestamp)
                .unwrap_or_default()
        };
        OrderStatus {
            status: doc.status(),
            finished: doc.finished(),
            status_text: doc.status_text().map(str::to_owned),
            timeline: doc
                .timeline
                .iter()
                .map(|(stage, micros)| TimelineEntry {
                    stage: *stage,
                    at: at(*micros),
                })
                .collect(),
            uuid: doc.uuid,
            item: doc.item,
            quantity: doc.quantity,
            user: doc.user,
            failed_step: doc.failed_step,
            reason: doc.reason,
            total_invoice: doc.total_invoice,
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The trace this request belongs to: the client's (`traceparent`, else
/// `X-Cloud-Trace-Context`) continued with a span of ours, or a new one.
pub fn request_trace(headers: &HeaderMap) -> TraceContext {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header(TRACEPARENT)
        .and_then(TraceContext::from_traceparent)
        .or_else(|| header(CLOUD_TRACE_CONTEXT).and_then(TraceContext::from_cloud_trace_context))
        .map_or_else(TraceContext::new_root, |parent| parent.child())
}

/// `POST /order`.
pub async fn place_order(
    State(clients): State<Clients>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let trace = request_trace(&headers);
    let span = tracing::info_span!(
        "order",
        uuid = tracing::field::Empty,
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id(),
    );
    start_saga(&clients, &headers, &body, &trace)
        .instrument(span)
        .await
}

async fn start_saga(
    clients: &Clients,
    headers: &HeaderMap,
    body: &[u8],
    trace: &TraceContext,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if !is_json(headers) {
        return Err(ApiError::NotJson);
    }
    let key = idempotency::Key::from_headers(headers)?;
    let (order, extra) = Order::parse_request(body)?;
    // Checked before a key is claimed or anything published; the uuid's length is fixed, so
    // the size check holds for the saga's real one.
    let message = SagaMessage::start(SagaId::new(), order, extra)?;
    let uuid = match &key {
        None => {
            let uuid = SagaId::new();
            tracing::Span::current().record("uuid", tracing::field::display(uuid));
            uuid
        }
        Some(key) => match idempotency::claim(&clients.store, key, &idempotency::request_hash(body)).await? {
            idempotency::Claim::New(uuid) => {
                tracing::Span::current().record("uuid", tracing::field::display(uuid));
                uuid
            }
            idempotency::Claim::Retry { uuid, published } => {
                tracing::Span::current().record("uuid", tracing::field::display(uuid));
                let view = retried_view(clients, uuid).await?;
                if let Some(stage) = retry_answer(published, view) {
                    tracing::info!("a retried order: answering with its saga");
                    return Ok(accepted(uuid, stage, trace));
                }
                tracing::info!("a retried order whose message may not have gone out: publishing it again");
                uuid
            }
        },
    };
    let message = SagaMessage { uuid, ..message };
    // In the view before it is published: every saga that may run is there to be found,
    // by its user and by the sweep, even if it stops before its first step.
    let mut view = WriteSet::new();
    status::record_received(&mut view, &message);
    clients
        .store
        .commit(view)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    clients
        .bus
        .publish(&Outgoing::new(Topic::Frontend, message.to_json()).traced(trace))
        .await
        .map_err(ApiError::Unavailable)?;
    if let Some(key) = &key {
        idempotency::mark_published(&clients.store, key).await;
    }
    tracing::info!("saga started");
    Ok(accepted(uuid, Stage::Received, trace))
}

fn accepted(uuid: SagaId, stage: Stage, trace: &TraceContext) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            uuid: uuid.to_string(),
            status: stage.as_str(),
            status_url: format!("/orders/{uuid}"),
            trace_id: trace.trace_id(),
        }),
    )
}

/// What the status view of a retried order's saga says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RetriedView {
    /// There is none: the first attempt stopped before its view was written.
    Absent,
    /// There is one, but it cannot be read (a hand edit, a stage a newer revision wrote).
    Unreadable,
    /// The saga's stage.
    At(Stage),
}

async fn retried_view(clients: &Clients, uuid: SagaId) -> Result<RetriedView, ApiError> {
    let snapshot = clients
        .store
        .get(&records::saga(uuid))
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(match snapshot.map(|s| s.decode::<StatusDoc>()) {
        None => RetriedView::Absent,
        Some(Ok(view)) => RetriedView::At(view.status()),
        Some(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "a retried order's status view cannot be read");
            RetriedView::Unreadable
        }
    })
}

/// How a retry of an order whose key says `published` (or not) and whose saga's view is
/// `view` is answered: with the saga's stage, or `None` to publish its message again. Only
/// a saga no step moved on, whose message may never have gone out, is published again: one
/// whose key says it went out, or that a step moved on (or a sweep ended) is not. Nor is one
/// whose view exists but cannot be read: its first attempt got that far, and whether a step
/// moved it on cannot be told (the sweep, which reads it too, warns about it until a person
/// acts); it answers `received`, as the first attempt did.
fn retry_answer(published: bool, view: RetriedView) -> Option<Stage> {
    match view {
        RetriedView::At(stage) if published || stage != Stage::Received => Some(stage),
        RetriedView::Unreadable => Some(Stage::Received),
        RetriedView::Absent if published => Some(Stage::Received),
        RetriedView::At(_) | RetriedView::Absent => None,
    }
}

/// `GET /orders/{uuid}`.
pub async fn order_status(
    State(clients): State<Clients>,
    uuid: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderStatus>, ApiError> {
    let Path(uuid) = uuid.map_err(|e| rejected(e.status(), e.body_text()))?;
    let id = SagaId::parse(&uuid).ok_or_else(|| ApiError::BadUuid(uuid.chars().take(64).collect()))?;
    let snapshot = clients
        .store
        .get(&records::saga(id))
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or(ApiError::NotFound(id))?;
    let view: StatusDoc = snapshot.decode().map_err(ApiError::Unavailable)?;
    Ok(Json(view.into()))
}

/// An extractor's refusal: the client's fault (400, in axum's words), or, where axum says it
/// is the server's (a route that does not match its extractor), a 5xx that is logged.
fn rejected(status: StatusCode, text: String) -> ApiError {
    if status.is_client_error() {
        ApiError::BadRequest(text)
    } else {
        ApiError::Unavailable(anyhow::anyhow!("a route's extractor refused a request: {text}"))
    }
}

/// Query of `GET /orders`.
#[derive(Debug, serde::Deserialize)]
pub struct RecentQuery {
    /// How many sagas, newest first (default 20, at most 100).
    pub limit: Option<u32>,
}

/// `GET /orders`: the most recent sagas, newest first; 404 where the list is turned off.
pub async fn recent_orders(
    State(clients): State<Clients>,
    Extension(list): Extension<OrderList>,
    query: Result<Query<RecentQuery>, QueryRejection>,
) -> Result<Json<Vec<OrderStatus>>, ApiError> {
    if list == OrderList::Off {
        return Err(ApiError::ListDisabled);
    }
    let Query(query) = query.map_err(|e| rejected(e.status(), e.body_text()))?;
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let snapshots = clients
        .store
        .latest(collections::SAGAS, "created", limit)
        .await
        .map_err(ApiError::Unavailable)?;
    // One view that cannot be read (a hand edit, a stage a newer revision wrote) is left
    // out, not a 503 for everyone while it is among the latest.
    let views = snapshots
        .iter()
        .filter_map(|s| match s.decode::<StatusDoc>() {
            Ok(view) => Some(OrderStatus::from(view)),
            Err(e) => {
                tracing::warn!(view = s.name(), error = %format!("{e:#}"), "a status view cannot be read; left out of the list");
                None
            }
        })
        .collect();
    Ok(Json(views))
}

/// The frontend's routes.
pub fn router(clients: Clients, config: &Config) -> Router {
    let routes = Router::new()
        .route(ORDER_PATH, post(place_order))
        .route("/orders", get(recent_orders))
        .route("/orders/{uuid}", get(order_status))
        .merge(page::routes())
        .layer(Extension(config.order_list))
        .with_state(clients);
    saga::runtime::server::standard(routes, MAX_ORDER_BYTES)
}

#[cfg(test)]
mod tests {
    // A failed unwrap in a test is a failed assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_retried_order_is_published_again_only_while_nothing_shows_it_went_out() {
        use RetriedView::{Absent, At, Unreadable};
        for (published, view, want) in [
            (false, Absent, None),
            (false, At(Stage::Received), None),
            (false, At(Stage::OrderCreated), Some(Stage::OrderCreated)),
            (false, At(Stage::Compensated), Some(Stage::Compensated)),
            (false, Unreadable, Some(Stage::Received)),
            (true, Absent, Some(Stage::Received)),
            (true, At(Stage::Received), Some(Stage::Received)),
            (true, At(Stage::Completed), Some(Stage::Completed)),
            (true, Unreadable, Some(Stage::Received)),
        ] {
            assert_eq!(
                retry_answer(published, view),
                want,
                "published {published}, {view:?}"
            );
        }
    }

    #[test]
    fn an_extractors_refusal_is_the_clients_fault_only_when_axum_says_so() {
        for (status, want) in [
            (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST),
            (StatusCode::UNPROCESSABLE_ENTITY, StatusCode::BAD_REQUEST),
            (StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let answer = rejected(status, "limit: invalid digit found in string".into()).into_response();
            assert_eq!(answer.status(), want, "{status}");
        }
    }

    #[tokio::test]
    async fn the_list_turned_off_answers_404_saying_so_and_how_to_follow_one_order() {
        let response = ApiError::ListDisabled.into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "order_list_disabled");
        let message = body["message"].as_str().unwrap();
        for words in ["turned off", "ORDER_LIST", "GET /orders/{uuid}", "POST /order"] {
            assert!(message.contains(words), "{words:?} in {message}");
        }
    }
}
