//! HTTP serving shared by every service: the health endpoint, the layers every request
//! passes through, and graceful shutdown.

use crate::contract::HANDLER_TIMEOUT;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::future::Future;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The health endpoint, for Cloud Run's startup and liveness probes.
pub const HEALTH_PATH: &str = "/healthz";

/// Adds the health endpoint and the layers every service needs: a request timeout (503,
/// so that Pub/Sub retries), a body-size limit (413), a panic guard (500, the process keeps
/// serving) and request tracing.
pub fn standard(router: Router, body_limit: usize) -> Router {
    router
        .route(
            HEALTH_PATH,
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            HANDLER_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(CatchPanicLayer::custom(|_| internal_error()))
        .layer(axum::middleware::map_response(move |res| {
            std::future::ready(json_errors(res, body_limit))
        }))
        .layer(TraceLayer::new_for_http())
}

/// Gives every error answer a JSON body, including those made by layers and by axum itself
/// (unknown path, wrong method, body too large, timeout), which come with none.
fn json_errors(res: Response, body_limit: usize) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("request body is larger than {body_limit} bytes"),
        StatusCode::SERVICE_UNAVAILABLE => "the request took too long; try again".to_owned(),
        _ => reason.to_owned(),
    };
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = axum::Json(json!({ "error": code, "message": message })).into_response();
    let (body_parts, body) = body.into_parts();
    parts.headers.extend(body_parts.headers);
    Response::from_parts(parts, body)
}

fn internal_error() -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": "internal", "message": "internal error" })),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// flight to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on SIGTERM (how Cloud Run stops an instance) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
