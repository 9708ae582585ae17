//! The frontend: takes orders over HTTP and starts their sagas.
//!
//! `POST /order` with `{"item": "widget", "quantity": 50, "user": "jack", ...}` checks the
//! order, gives it a saga `uuid`, publishes it to `frontend` and answers `202` with the
//! uuid. Every other field the client sent travels with the saga unchanged.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use saga::bus::Outgoing;
use saga::contract::{Service, Topic};
use saga::message::{FieldError, MAX_MESSAGE_BYTES, Order, SagaId, SagaMessage, StatusCode as SagaStatus};
use saga::service::Clients;
use serde::Serialize;
use serde_json::json;

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
    /// A dependency failed; the client may retry.
    #[error("temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = match &self {
            ApiError::Invalid(e) => {
                let status = match e {
                    FieldError::NotJson(_) => StatusCode::BAD_REQUEST,
                    FieldError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, e.code(), e.field().map(str::to_owned))
            }
            ApiError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None),
            ApiError::Unavailable(e) => {
                tracing::error!(error = format!("{e:#}"), "could not start a saga");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
            }
        };
        let mut body = json!({ "error": code, "message": self.to_string() });
        if let Some(field) = field {
            body["field"] = field.into();
        }
        (status, Json(body)).into_response()
    }
}

/// The answer to an accepted order.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The saga's id.
    pub uuid: String,
    /// Where the saga stands: `received`.
    pub status: &'static str,
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

/// `POST /order`.
pub async fn place_order(
    State(clients): State<Clients>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if !is_json(&headers) {
        return Err(ApiError::NotJson);
    }
    let (order, extra) = Order::parse_request(&body)?;
    let uuid = SagaId::new();
    let message = SagaMessage::new(uuid, order, extra).advance(
        Service::Frontend,
        SagaStatus::Received,
        "Order received".to_owned(),
    );
    clients
        .bus
        .publish(&Outgoing::new(Topic::Frontend, message.to_json()))
        .await
        .map_err(ApiError::Unavailable)?;
    tracing::info!(%uuid, "saga started");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            uuid: uuid.to_string(),
            status: SagaStatus::Received.as_str(),
        }),
    ))
}

/// The frontend's routes.
pub fn router(clients: Clients) -> Router {
    let routes = Router::new()
        .route(ORDER_PATH, post(place_order))
        .with_state(clients);
    saga::server::standard(routes, MAX_MESSAGE_BYTES)
}
