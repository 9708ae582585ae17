//! HTTP serving shared by every service: the health endpoint, the layers every request
//! passes through, and graceful shutdown.

use crate::contract::HANDLER_TIMEOUT;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// The health endpoint, for Cloud Run's startup and liveness probes.
pub const HEALTH_PATH: &str = "/healthz";

/// After a shutdown signal, how long requests in flight may still run before they are
/// answered 503. Cloud Run kills an instance 10 s after SIGTERM; this leaves time to answer
/// and exit, and a push cut off this way is redelivered.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(8);

/// Adds the health endpoint and the layers every service needs: a request timeout (503,
/// so that Pub/Sub retries), a body-size limit (413), a panic guard (500, the process keeps
/// serving), JSON bodies on every error, `nosniff` and `no-store` (answers are live state,
/// not to be cached; the page's assets set their own policy), and an access log.
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
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn(access_log))
}

/// The log line of an answer: what a handler's reply or error type attaches to its response
/// in `into_response`, for the logging layer to write after the handler has returned. The
/// types that build answers never log themselves, as in axum's error-handling example.
#[derive(Clone)]
pub struct AnswerLog(Arc<dyn Fn() + Send + Sync>);

impl AnswerLog {
    /// Attaches `line` to `response`, to be written within the span current now (the one the
    /// answer was made in).
    pub fn attach(response: &mut Response, line: impl Fn() + Send + Sync + 'static) {
        let span = tracing::Span::current();
        response
            .extensions_mut()
            .insert(AnswerLog(Arc::new(move || span.in_scope(&line))));
    }
}

/// One line per request, with Cloud Logging's `httpRequest` fields: at DEBUG normally (Cloud
/// Run logs every request already), at WARN when the service failed it; and the answer's own
/// line ([`AnswerLog`]), if it has one.
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    if let Some(AnswerLog(line)) = res.extensions().get::<AnswerLog>() {
        line();
    }
    let status = res.status().as_u16();
    let latency = format!("{:.3}s", started.elapsed().as_secs_f64());
    if res.status().is_server_error() {
        tracing::warn!(
            http_request.request_method = %method,
            http_request.request_url = %path,
            http_request.status = status,
            http_request.latency = %latency,
            "request failed"
        );
    } else {
        tracing::debug!(
            http_request.request_method = %method,
            http_request.request_url = %path,
            http_request.status = status,
            http_request.latency = %latency,
            "request"
        );
    }
    res
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

/// Serves `router` on `listener` until `shutdown` completes; then stops taking requests,
/// lets those in flight finish for up to [`DRAIN_DEADLINE`], and answers the rest 503.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_draining(listener, router, shutdown, DRAIN_DEADLINE).await
}

/// [`serve`] with another drain deadline (tests use a short one).
pub async fn serve_draining(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    deadline: Duration,
) -> std::io::Result<()> {
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    let router = router.layer(axum::middleware::from_fn_with_state(cut_rx, cut_off));
    let draining = async move {
        shutdown.await;
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            let _ = cut_tx.send(true);
        });
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(draining)
        .await
}

/// Runs a request, unless the drain deadline passes first: then it is dropped (every step
/// is safe to stop at any point) and answered 503, so Pub/Sub delivers it again elsewhere.
async fn cut_off(
    State(mut cut): State<tokio::sync::watch::Receiver<bool>>,
    req: Request,
    next: Next,
) -> Response {
    tokio::select! {
        res = next.run(req) => res,
        _ = cut.wait_for(|cut| *cut) => {
            tracing::warn!("shutting down: request cut off; answering 503 so that it is retried");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": "shutting_down", "message": "the instance is stopping; retry" })),
            )
                .into_response()
        }
    }
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
