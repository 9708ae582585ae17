//! A model of Cloud Run's front end for a private service, as `terraform/` deploys the
//! workers: `INGRESS_TRAFFIC_INTERNAL_ONLY`, invoker IAM on, `run.invoker` granted to the push
//! account only.
//!
//! It is a reverse proxy in front of one container, and does what Google's front end does
//! before a request reaches it:
//!
//! 1. **Instances and concurrency.** The service runs as `max_instance_count` instances,
//!    each a container of its own (a process with its own memory: what one instance keeps,
//!    such as the batches of a hot item, the others do not see), each taking at most
//!    `max_instance_request_concurrency` requests at once (Cloud Run "Concurrency",
//!    "About instance autoscaling"). A request goes to the least busy instance, the first
//!    of equals: requests one at a time all reach one instance, and concurrent ones spread
//!    over all of them, the case in which the most instances write the same documents at
//!    once. When every instance is full, a request is held pending until one frees a slot,
//!    for at most [`PENDING_TIMEOUT`], and is answered 429 "no available instance" if none
//!    does (Cloud Run "About instance autoscaling", section "Exceeding maximum instances",
//!    and "Troubleshooting", 429).
//! 2. **Authentication** (Cloud Run "Authenticating service-to-service" and
//!    "Troubleshooting"): the token is read from `X-Serverless-Authorization` when the request
//!    carries it, else from `Authorization: Bearer`. No token: 403. A token that does not
//!    verify (signature against the issuer's JWKS, issuer, expiry, an audience that is
//!    neither the service's URL nor one of its custom audiences): 401.
//! 3. **Authorization**: the token's `email` must hold `roles/run.invoker` on the service
//!    (here: be in the invoker list), else 403.
//! 4. **Forwarding**: the checked header is forwarded with its signature replaced by
//!    `SIGNATURE_REMOVED_BY_GOOGLE` (Cloud Run "Troubleshooting", section
//!    "signature-removed"); the other header, if any, is passed through untouched.
//! 5. **Request timeout** (`template.timeout`): a request the container has not answered in
//!    time gets 504.
//!
//! Cloud Run's refusals are its own HTML pages, never the container's JSON, and the
//! container sees nothing of them: that is how a log reader tells which link refused a push.
//! Ingress is modelled only in that the proxy listens on loopback. Left out: cold starts,
//! instance autoscaling (every instance runs from the start; Cloud Run adds them as load
//! grows, aiming at about 60 % of each one's concurrency, and may send an instance fewer
//! requests while its CPU is busy), the 32 MiB HTTP/1 request limit's exact page, and the
//! headers Cloud Run adds (`X-Forwarded-For`, `traceparent`).

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What Cloud Run puts in place of a token's signature once it has verified it.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// The header Cloud Run checks instead of `Authorization` when a request carries it.
pub const X_SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

/// The largest HTTP/1 request Cloud Run takes.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// How long a request that finds every instance busy is held before it is refused with 429:
/// the average start-up time of an instance or 10 seconds, whichever is longer (Cloud Run
/// "About instance autoscaling", "Exceeding maximum instances"); the services start in
/// milliseconds, so 10 seconds.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);

/// The issuers Cloud Run accepts in Google-signed ID tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// How one modelled Cloud Run service is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where each instance's container listens, `http://host:port`: `max_instance_count`
    /// of them.
    pub instances: Vec<String>,
    /// The service's custom audiences; the front end's own URL is always accepted too, as
    /// Cloud Run accepts the service's `run.app` URL.
    pub audiences: Vec<String>,
    /// The emails that hold `roles/run.invoker` on the service.
    pub invokers: Vec<String>,
    /// The issuer's public keys.
    pub jwks: JwkSet,
    /// `template.timeout`.
    pub request_timeout: Duration,
    /// `max_instance_request_concurrency`: the requests one instance takes at once.
    pub requests_per_instance: usize,
    /// How long a request that finds every instance full waits for a slot before 429
    /// ([`PENDING_TIMEOUT`] on Google Cloud).
    pub pending_timeout: Duration,
}

/// What the front end did, for tests and the benchmark's bill.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests passed to the container.
    pub forwarded: AtomicU64,
    /// Requests refused for their token (401) or their caller (403).
    pub refused_auth: AtomicU64,
    /// Requests that found every slot taken and were held pending.
    pub pended: AtomicU64,
    /// Requests refused because no slot freed up while they were pending (429).
    pub refused_busy: AtomicU64,
    /// Requests the container did not answer within the timeout (504).
    pub timed_out: AtomicU64,
    /// The most requests in flight at once so far, over all instances.
    pub peak_in_flight: AtomicU64,
    /// Requests passed to each instance, in the order of [`Settings::instances`].
    pub forwarded_by_instance: Vec<AtomicU64>,
}

struct Shared {
    settings: Settings,
    audiences: Vec<String>,
    /// The service's slots, over all instances: what a request waits for while pending.
    /// Taken before an instance's slot and given back after it, so that a request holding
    /// one always finds an instance with a slot free.
    slots: Arc<Semaphore>,
    /// Each instance's own slots.
    instances: Vec<Arc<Semaphore>>,
    client: reqwest::Client,
    counters: Arc<Counters>,
}

impl Shared {
    fn capacity(&self) -> usize {
        self.settings.instances.len() * self.settings.requests_per_instance
    }

    /// A slot on the least busy instance (the first of equals), and that instance's index.
    /// Only for a request that holds one of [`Shared::slots`], which guarantees a free one.
    fn instance_slot(&self) -> (usize, OwnedSemaphorePermit) {
        loop {
            let least_busy = (0..self.instances.len())
                .rev()
                .max_by_key(|&i| self.instances[i].available_permits())
                .unwrap_or_default();
            if let Ok(slot) = self.instances[least_busy].clone().try_acquire_owned() {
                return (least_busy, slot);
            }
            // Another request took that slot between the look and the take: look again.
        }
    }
}

/// A running front end.
#[derive(Debug)]
pub struct FrontEnd {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl FrontEnd {
    /// Starts a front end for `settings` on a free loopback port.
    pub async fn start(settings: Settings) -> anyhow::Result<FrontEnd> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the front end's port")?;
        Self::start_on(listener, settings)
    }

    /// Starts a front end for `settings` on `listener`.
    pub fn start_on(listener: tokio::net::TcpListener, settings: Settings) -> anyhow::Result<FrontEnd> {
        let addr = listener.local_addr()?;
        let mut audiences = settings.audiences.clone();
        audiences.push(format!("http://{addr}"));
        anyhow::ensure!(
            !settings.instances.is_empty(),
            "a service runs at least one instance"
        );
        let counters = Arc::new(Counters {
            forwarded_by_instance: settings.instances.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Counters::default()
        });
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(
                settings.instances.len() * settings.requests_per_instance,
            )),
            instances: settings
                .instances
                .iter()
                .map(|_| Arc::new(Semaphore::new(settings.requests_per_instance)))
                .collect(),
            client: reqwest::Client::builder()
                .build()
                .context("building the front end's client")?,
            settings,
            audiences,
            counters: counters.clone(),
        });
        let app = axum::Router::new().fallback(serve).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FrontEnd { addr, counters, task })
    }

    /// `http://addr`: the service's URL, which is also an accepted audience.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One of Google's HTML error pages: the container never sees the request.
fn google_page(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<html><head><title>{} {reason}</title></head><body><h1>Error: {reason}</h1><h2>{message}</h2></body></html>\n",
        status.as_u16()
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=UTF-8")], html).into_response()
}

/// Why the front end refused a request's token or caller.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// 403: no credentials, or a caller without `run.invoker`.
    Forbidden(String),
    /// 401: credentials that do not verify.
    Unauthorized(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let slot = if let Ok(slot) = shared.slots.clone().try_acquire_owned() {
        slot
    } else {
        shared.counters.pended.fetch_add(1, Ordering::Relaxed);
        let pending = tokio::time::timeout(
            shared.settings.pending_timeout,
            shared.slots.clone().acquire_owned(),
        );
        let Ok(Ok(slot)) = pending.await else {
            shared.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "cloud_run", "429: no available instance (every slot stayed taken)");
            return google_page(
                StatusCode::TOO_MANY_REQUESTS,
                "The request was aborted because there was no available instance.",
            );
        };
        slot
    };
    let in_flight = shared.capacity() - shared.slots.available_permits();
    shared
        .counters
        .peak_in_flight
        .fetch_max(u64::try_from(in_flight).unwrap_or(u64::MAX), Ordering::Relaxed);
    // Dropped in the reverse order: the instance's slot before the service's.
    let _slot = slot;
    let (instance, _instance_slot) = shared.instance_slot();
    let (mut parts, body) = request.into_parts();
    let checked = match authenticate(&shared, &parts.headers) {
        Ok(checked) => checked,
        Err(refusal) => {
            shared.counters.refused_auth.fetch_add(1, Ordering::Relaxed);
            let status = refusal.status();
            let (Refusal::Forbidden(why) | Refusal::Unauthorized(why)) = refusal;
            tracing::warn!(target: "cloud_run", status = status.as_u16(), why, "refused by Cloud Run's front end");
            return google_page(
                status,
                &format!(
                    "Your client does not have permission to the requested URL <code>{}</code>.",
                    parts.uri.path()
                ),
            );
        }
    };
    parts.headers.insert(checked.header, checked.stripped);
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return google_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Your client issued a request that was too large.",
        );
    };
    let forwarded = forward(&shared, &shared.settings.instances[instance], parts, body);
    match tokio::time::timeout(shared.settings.request_timeout, forwarded).await {
        Ok(Ok(response)) => {
            shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            shared.counters.forwarded_by_instance[instance].fetch_add(1, Ordering::Relaxed);
            response
        }
        Ok(Err(e)) => {
            tracing::warn!(target: "cloud_run", error = format!("{e:#}"), "the container did not answer");
            google_page(StatusCode::SERVICE_UNAVAILABLE, "The service is unavailable.")
        }
        Err(_) => {
            shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "cloud_run", "504: the request timed out");
            google_page(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
        }
    }
}

/// The header that was checked and its stripped value.
struct Checked {
    header: HeaderName,
    stripped: HeaderValue,
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Checked, Refusal> {
    let name = if headers.contains_key(X_SERVERLESS_AUTHORIZATION) {
        HeaderName::from_static(X_SERVERLESS_AUTHORIZATION)
    } else {
        header::AUTHORIZATION
    };
    let Some(value) = headers.get(&name) else {
        return Err(Refusal::Forbidden("the request was not authenticated".to_owned()));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| Refusal::Unauthorized("not a bearer token".to_owned()))?;
    let claims = verify(token, &shared.settings.jwks, &shared.audiences)?;
    let email = claims.get("email").and_then(Value::as_str).unwrap_or_default();
    if !shared.settings.invokers.iter().any(|i| i == email) {
        return Err(Refusal::Forbidden(format!(
            "{email:?} does not hold roles/run.invoker on this service"
        )));
    }
    let (signed, _signature) = token
        .rsplit_once('.')
        .ok_or_else(|| Refusal::Unauthorized("malformed token".to_owned()))?;
    let stripped = HeaderValue::from_str(&format!("Bearer {signed}.{SIGNATURE_REMOVED}"))
        .map_err(|_| Refusal::Unauthorized("malformed token".to_owned()))?;
    Ok(Checked {
        header: name,
        stripped,
    })
}

/// Verifies `token`'s signature against `jwks`, its issuer, expiry and audience.
fn verify(
    token: &str,
    jwks: &JwkSet,
    audiences: &[String],
) -> Result<serde_json::Map<String, Value>, Refusal> {
    let bad = |why: String| Refusal::Unauthorized(why);
    let header = jsonwebtoken::decode_header(token).map_err(|e| bad(format!("malformed token: {e}")))?;
    let kid = header
        .kid
        .ok_or_else(|| bad("the token names no key".to_owned()))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| bad(format!("no published key {kid}")))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("unusable key: {e}")))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(audiences);
    validation.set_issuer(&GOOGLE_ISSUERS);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| bad(format!("the token does not verify: {e}")))
}

/// Sends the request on to the container at `instance` and relays its answer.
async fn forward(
    shared: &Shared,
    instance: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> anyhow::Result<Response> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    for hop in [
        header::HOST,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(hop);
    }
    let answer = shared
        .client
        .request(parts.method, format!("{instance}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .context("sending the request to the container")?;
    let status = answer.status();
    let mut out_headers = answer.headers().clone();
    out_headers.remove(header::TRANSFER_ENCODING);
    out_headers.remove(header::CONNECTION);
    let bytes = answer.bytes().await.context("reading the container's answer")?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::Issuer;
    use serde_json::json;

    fn shared(issuer: &Issuer) -> Shared {
        Shared {
            settings: Settings {
                instances: vec!["http://127.0.0.1:9".to_owned()],
                audiences: vec!["aud".to_owned()],
                invokers: vec!["push@p".to_owned()],
                jwks: JwkSet {
                    keys: vec![issuer.jwk()],
                },
                request_timeout: Duration::from_secs(1),
                requests_per_instance: 1,
                pending_timeout: Duration::from_millis(100),
            },
            audiences: vec!["aud".to_owned(), "http://127.0.0.1:1".to_owned()],
            slots: Arc::new(Semaphore::new(1)),
            instances: vec![Arc::new(Semaphore::new(1))],
            client: reqwest::Client::new(),
            counters: Arc::default(),
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        h
    }

    #[test]
    fn each_kind_of_bad_credential_gets_the_status_cloud_run_answers() {
        let google = Issuer::generate();
        let impostor = Issuer::generate();
        let front = shared(&google);
        let mut expired = google.push_claims("aud", "push@p");
        expired["exp"] = json!(crate::oidc::now() - 60);
        let mut elsewhere = google.push_claims("aud", "push@p");
        elsewhere["iss"] = json!("https://issuer.example.com");
        let cases = [
            ("no token", HeaderMap::new(), 403),
            (
                "wrong audience",
                bearer(&google.push_token("other", "push@p")),
                401,
            ),
            ("another key", bearer(&impostor.push_token("aud", "push@p")), 401),
            ("expired", bearer(&google.sign(&expired)), 401),
            ("another issuer", bearer(&google.sign(&elsewhere)), 401),
            (
                "not an invoker",
                bearer(&google.push_token("aud", "someone@p")),
                403,
            ),
        ];
        for (what, headers, status) in cases {
            match authenticate(&front, &headers) {
                Err(refusal) => assert_eq!(refusal.status().as_u16(), status, "{what}: {refusal:?}"),
                Ok(_) => panic!("{what}: accepted"),
            }
        }
    }

    #[test]
    fn a_good_token_is_forwarded_with_its_signature_replaced() {
        let google = Issuer::generate();
        let token = google.push_token("aud", "push@p");
        let checked = authenticate(&shared(&google), &bearer(&token)).expect("accepted");
        assert_eq!(checked.header, header::AUTHORIZATION);
        let (signed, _) = token.rsplit_once('.').expect("three parts");
        assert_eq!(checked.stripped, format!("Bearer {signed}.{SIGNATURE_REMOVED}"));
    }

    #[test]
    fn x_serverless_authorization_is_checked_and_stripped_instead_of_authorization() {
        let google = Issuer::generate();
        let mut headers = bearer("not-even-a-token");
        let token = google.push_token("aud", "push@p");
        headers.insert(
            X_SERVERLESS_AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        let checked = authenticate(&shared(&google), &headers).expect("accepted");
        assert_eq!(checked.header.as_str(), X_SERVERLESS_AUTHORIZATION);
    }

    /// A worker whose every request waits until the test lets it answer.
    async fn held_worker() -> (String, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let held = gate.clone();
        let app = axum::Router::new().fallback(move || {
            let held = held.clone();
            async move {
                let _ = held.acquire().await.map(tokio::sync::SemaphorePermit::forget);
                "answered"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, gate)
    }

    async fn front_end(
        issuer: &Issuer,
        instances: Vec<String>,
        requests_per_instance: usize,
        pending: Duration,
    ) -> FrontEnd {
        FrontEnd::start(Settings {
            instances,
            audiences: vec!["aud".to_owned()],
            invokers: vec!["push@p".to_owned()],
            jwks: JwkSet {
                keys: vec![issuer.jwk()],
            },
            request_timeout: Duration::from_secs(5),
            requests_per_instance,
            pending_timeout: pending,
        })
        .await
        .expect("a front end")
    }

    async fn push(front: &FrontEnd, token: &str) -> (u16, String) {
        let answer = reqwest::Client::new()
            .post(format!("{}/push", front.url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("an answer");
        (answer.status().as_u16(), answer.text().await.unwrap_or_default())
    }

    /// A front end of one slot in front of a held worker, a push token for it, and a first
    /// push already holding the slot: the second push finds every slot taken.
    struct Busy {
        front: Arc<FrontEnd>,
        gate: Arc<Semaphore>,
        token: String,
        first: tokio::task::JoinHandle<(u16, String)>,
    }

    async fn busy(pending: Duration) -> Busy {
        let google = Issuer::generate();
        let (upstream, gate) = held_worker().await;
        let front = Arc::new(front_end(&google, vec![upstream], 1, pending).await);
        let token = google.push_token("aud", "push@p");
        let first = tokio::spawn({
            let (front, token) = (front.clone(), token.clone());
            async move { push(&front, &token).await }
        });
        while front.counters().peak_in_flight.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Busy {
            front,
            gate,
            token,
            first,
        }
    }

    #[tokio::test]
    async fn a_request_over_the_limit_waits_pending_and_is_served_when_a_slot_frees() {
        let Busy {
            front,
            gate,
            token,
            first,
        } = busy(Duration::from_secs(5)).await;
        let second = tokio::spawn({
            let front = front.clone();
            async move { push(&front, &token).await }
        });
        while front.counters().pended.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.expect("the first push").0, 200);
        assert_eq!(
            second.await.expect("the second push"),
            (200, "answered".to_owned())
        );
        assert_eq!(front.counters().refused_busy.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_request_still_pending_when_its_time_is_up_gets_cloud_runs_429_page() {
        let Busy {
            front,
            gate,
            token,
            first,
        } = busy(Duration::from_millis(200)).await;
        let (status, page) = push(&front, &token).await;
        assert_eq!(status, 429);
        assert!(page.contains("no available instance"), "{page}");
        assert_eq!(front.counters().refused_busy.load(Ordering::Relaxed), 1);
        gate.add_permits(1);
        assert_eq!(first.await.expect("the first push").0, 200);
    }

    #[tokio::test]
    async fn concurrent_requests_spread_over_the_instances_and_requests_one_at_a_time_reach_the_first() {
        let google = Issuer::generate();
        let (a, gate_a) = held_worker().await;
        let (b, gate_b) = held_worker().await;
        let front = Arc::new(front_end(&google, vec![a, b], 2, Duration::from_millis(200)).await);
        let token = google.push_token("aud", "push@p");
        let forwarded = |front: &FrontEnd| -> Vec<u64> {
            front
                .counters()
                .forwarded_by_instance
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect()
        };

        let held: Vec<_> = (0..4)
            .map(|_| {
                let (front, token) = (front.clone(), token.clone());
                tokio::spawn(async move { push(&front, &token).await })
            })
            .collect();
        while front.counters().peak_in_flight.load(Ordering::Relaxed) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (status, page) = push(&front, &token).await;
        assert_eq!(status, 429, "two instances of two slots hold four: {page}");
        gate_a.add_permits(2);
        gate_b.add_permits(2);
        for push in held {
            assert_eq!(push.await.expect("a held push").0, 200);
        }
        assert_eq!(forwarded(&front), vec![2, 2], "the four held pushes, two on each");

        gate_a.add_permits(2);
        for _ in 0..2 {
            assert_eq!(push(&front, &token).await.0, 200);
        }
        assert_eq!(forwarded(&front), vec![4, 2], "one at a time, the first instance");
    }
}
