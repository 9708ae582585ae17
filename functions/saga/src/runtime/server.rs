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

/// Bytes of request bodies one process works on at once, each counted [`BODY_COPIES`]
/// times. Cloud Run gives an instance 512 MiB (Terraform's `memory`) for up to 80 requests at
/// once, and a push may carry Pub/Sub's largest message, 10 MB (Pub/Sub "Quotas and limits";
/// 13.4 MB as base64; Cloud Run "Configure memory limits" for what an instance has): a handful
/// of those at once would exhaust it, and the kill would fail every request on the instance.
/// Past the budget a request is answered 503 before its body is read, and Pub/Sub delivers
/// it again later. The saga's own messages (72 KiB at most) never come near it.
pub const BODY_BUDGET: usize = 160 * 1024 * 1024;

/// How many times a handler may hold a body's size while it works on it: the body, the
/// envelope's text, the decoded data, and the message it publishes or dead-letters.
pub const BODY_COPIES: usize = 4;

/// Adds the health endpoint and the layers every service needs: a request timeout (503,
/// so that Pub/Sub retries), a body-size limit (413), a memory budget for bodies (503,
/// [`BODY_BUDGET`]), a panic guard (500, the process keeps serving), JSON bodies on every
/// error, `nosniff` and `no-store` (answers are live state, not to be cached; the page's
/// assets set their own policy), and an access log.
pub fn standard(router: Router, body_limit: usize) -> Router {
    standard_within(router, body_limit, BODY_BUDGET)
}

fn standard_within(router: Router, body_limit: usize, budget: usize) -> Router {
    let budget = Budget::new(budget, body_limit);
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
        .layer(axum::middleware::from_fn_with_state(budget, within_budget))
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

/// What is left of a process's [`BODY_BUDGET`], in KiB.
#[derive(Clone)]
struct Budget {
    kib: Arc<tokio::sync::Semaphore>,
    total_kib: u32,
    body_limit: usize,
}

impl Budget {
    fn new(bytes: usize, body_limit: usize) -> Self {
        let total_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX);
        Budget {
            kib: Arc::new(tokio::sync::Semaphore::new(total_kib as usize)),
            total_kib,
            body_limit,
        }
    }
}

/// What a request with these headers takes of the budget, in KiB: its declared length
/// (at most the body limit: a longer one is refused anyway), or the body limit if it sends
/// a body of unknown length, or nothing if it sends none; [`BODY_COPIES`] times; and never
/// more than the whole budget, so that any request can run alone.
fn cost(content_length: Option<&str>, chunked: bool, body_limit: usize, total_kib: u32) -> u32 {
    let bytes = match content_length.map(str::parse::<usize>) {
        Some(Ok(n)) => n.min(body_limit),
        Some(Err(_)) => body_limit,
        None if chunked => body_limit,
        None => 0,
    };
    u32::try_from(bytes.saturating_mul(BODY_COPIES).div_ceil(1024))
        .unwrap_or(u32::MAX)
        .min(total_kib)
}

/// Runs a request within the body budget, or answers 503 at once.
async fn within_budget(State(budget): State<Budget>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let kib = cost(
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()),
        headers.contains_key(header::TRANSFER_ENCODING),
        budget.body_limit,
        budget.total_kib,
    );
    if kib == 0 {
        return next.run(req).await;
    }
    match budget.kib.clone().try_acquire_many_owned(kib) {
        Ok(_held) => next.run(req).await,
        Err(_) => error_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many large requests at once; try again",
        ),
    }
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
    let (body_parts, body) = error_answer(status, &code, &message).into_parts();
    parts.headers.extend(body_parts.headers);
    Response::from_parts(parts, body)
}

/// The answer of an error the layers decide: `status`, with `{"error": code, "message"}`.
fn error_answer(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "error": code, "message": message }))).into_response()
}

fn internal_error() -> Response {
    tracing::error!("a request handler panicked");
    error_answer(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
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
            error_answer(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the instance is stopping; retry")
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt as _;

    #[test]
    fn a_request_costs_its_declared_body_four_times_and_never_more_than_the_budget() {
        let (limit, total) = (16 * 1024 * 1024, 160 * 1024);
        for (what, length, chunked, want) in [
            ("no body", None, false, 0),
            ("an empty body", Some("0"), false, 0),
            ("a saga message", Some("75000"), false, 293),
            ("Pub/Sub's largest message", Some("13981036"), false, 54614),
            ("over the limit", Some("99999999999"), false, 65536),
            ("a body of unknown length", None, true, 65536),
            ("a length that is no number", Some("lots"), false, 65536),
        ] {
            assert_eq!(cost(length, chunked, limit, total), want, "{what}");
        }
        assert_eq!(
            cost(Some("99999999"), false, usize::MAX, 1000),
            1000,
            "any request can run alone"
        );
    }

    fn request(method: &str, path: &str, bytes: usize) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_LENGTH, bytes)
            .body(Body::from(vec![b'x'; bytes]))
            .unwrap()
    }

    #[tokio::test]
    async fn past_the_body_budget_a_request_is_answered_503_until_the_bodies_before_it_are_done() {
        let (release, released) = tokio::sync::watch::channel(false);
        let routes = Router::new()
            .route(
                "/hold",
                post(move |_: axum::body::Bytes| {
                    let mut released = released.clone();
                    async move {
                        let _ = released.wait_for(|r| *r).await;
                        "held"
                    }
                }),
            )
            .route("/quick", post(|_: axum::body::Bytes| async { "quick" }));
        // 8 KiB of budget: one 2 KiB body (8 KiB counted) takes it all.
        let app = standard_within(routes, 4096, 8 * 1024);
        let holding = tokio::spawn(app.clone().oneshot(request("POST", "/hold", 2048)));
        tokio::time::sleep(Duration::from_millis(100)).await;

        let refused = app
            .clone()
            .oneshot(request("POST", "/quick", 1024))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(refused.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "busy", "{body}");
        let health = axum::http::Request::builder()
            .uri(HEALTH_PATH)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(health).await.unwrap().status(),
            StatusCode::OK,
            "no body, no cost"
        );

        release.send(true).unwrap();
        assert_eq!(holding.await.unwrap().unwrap().status(), StatusCode::OK);
        let again = app.oneshot(request("POST", "/quick", 1024)).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "the budget came back");
    }
}
