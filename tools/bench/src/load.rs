//! Placing orders over HTTP: closed loop (a fixed number of clients, each sending its next
//! order when the previous one was answered) for capacity, and open loop (orders sent on a
//! schedule, whether or not earlier ones were answered) for latency, so that a slow answer
//! cannot hold back the load that measures it.

use crate::orders::OrderSpec;
use anyhow::Context as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Longest one `POST /order` may take; a frontend slower than this has failed the run.
pub const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// One order sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its position in the run.
    pub index: usize,
    /// What was ordered.
    pub spec: OrderSpec,
    /// Wall-clock time the request started: the emulator's publish times are on the same
    /// clock, which is how a saga's end-to-end time is measured.
    pub started: SystemTime,
    /// Time to the answer.
    pub latency: Duration,
    /// The saga's uuid, or why the order was not accepted.
    pub result: Result<String, String>,
}

/// The HTTP client every run uses.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        // Loopback only: a system proxy must not see (or slow) the benchmark.
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

async fn post(http: &reqwest::Client, url: &str, index: usize, spec: OrderSpec) -> Sent {
    let started = SystemTime::now();
    let clock = Instant::now();
    let result = async {
        let response = http
            .post(url)
            .json(&spec.body())
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("{e}"))?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("answered {status}: {body}"));
        }
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("uuid")?.as_str().map(str::to_owned))
            .ok_or_else(|| format!("answered 202 without a uuid: {body}"))
    }
    .await;
    Sent {
        index,
        spec,
        started,
        latency: clock.elapsed(),
        result: result.map_err(|e| format!("order #{index}: {e}")),
    }
}

/// Sends `orders` to `url` from `concurrency` clients, each sending its next order as soon
/// as the previous one was answered.
pub async fn closed_loop(
    http: &reqwest::Client,
    url: &str,
    orders: Vec<OrderSpec>,
    concurrency: usize,
) -> Vec<Sent> {
    let orders = Arc::new(orders);
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, url, orders, next) = (http.clone(), url.to_owned(), orders.clone(), next.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = orders.get(index) else { break };
                    sent.push(post(&http, &url, index, spec.clone()).await);
                }
                sent
            })
        })
        .collect();
    let mut all = Vec::with_capacity(orders.len());
    for sent in futures::future::join_all(clients).await {
        all.extend(sent.unwrap_or_default());
    }
    all.sort_by_key(|s| s.index);
    all
}

/// Sends `orders` to `url` at `rate` per second, each at its scheduled time.
pub async fn open_loop(http: &reqwest::Client, url: &str, orders: Vec<OrderSpec>, rate: f64) -> Vec<Sent> {
    let start = tokio::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tasks = Vec::with_capacity(orders.len());
    for (index, spec) in orders.into_iter().enumerate() {
        let at = start + gap * u32::try_from(index).unwrap_or(u32::MAX);
        tokio::time::sleep_until(at).await;
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move { post(&http, &url, index, spec).await }));
    }
    let mut all: Vec<Sent> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    all.sort_by_key(|s| s.index);
    all
}
