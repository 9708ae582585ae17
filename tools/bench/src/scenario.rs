//! One run: read the stock, place the orders, wait for every saga (and compensation) to
//! end, read the stock again, check, and compute the figures. Also the probes that explain
//! the figures: Firestore round trips on an idle emulator, and the time each hop of a saga
//! took (see [`crate::taps`]).

use crate::check::{self, Kind, Outcome, Placed, Stock, Verdict};
use crate::load::{self, Sent};
use crate::observe::Observer;
use crate::orders::OrderSpec;
use crate::stats::{self, Summary};
use saga::contract::{Topic, collections};
use saga::gcp::store::{DocPath, Store, WriteSet};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

/// How orders are sent.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Load {
    /// `concurrency` clients, each sending its next order when answered.
    Closed {
        /// Clients.
        concurrency: usize,
    },
    /// Orders at `rate` per second, on schedule.
    Open {
        /// Orders per second.
        rate: f64,
    },
}

/// What a run reads and where it sends.
pub struct Target<'a> {
    /// `POST /order` URL.
    pub url: String,
    /// The pull subscriptions' readers.
    pub observer: &'a mut Observer,
    /// Firestore, for stock; `None` for the floor, which keeps none.
    pub store: Option<&'a Store>,
    /// Items whose stock is checked.
    pub items: Vec<String>,
    /// Prices, for the invoice check.
    pub prices: BTreeMap<String, u64>,
    /// CPU to measure from the first order until every saga ended (before the grace
    /// period, which would only dilute it).
    pub meter: Option<crate::procfs::CpuMeter>,
}

/// How long to wait for outcomes.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// Give up once nothing new arrived for this long.
    pub idle: Duration,
    /// After everything ended, wait this much longer for any conflicting second outcome.
    pub grace: Duration,
}

/// Stock of an item around a run, with what the check computed.
#[derive(Clone, Debug, Serialize)]
pub struct StockReport {
    /// Before.
    pub initial: i64,
    /// After.
    #[serde(rename = "final")]
    pub after: i64,
    /// Sold by successful sagas.
    pub sold: u64,
}

/// Time spent in each hop of successful sagas, from the publish times of their messages.
#[derive(Clone, Debug, Serialize)]
pub struct HopReport {
    /// Sagas measured.
    pub sagas: usize,
    /// `POST` start to the frontend's message (the frontend's work and its publish).
    pub post_to_received: Option<Summary>,
    /// To the orders step's message: push delivery, orders' reads, commits and publish.
    pub received_to_order_created: Option<Summary>,
    /// To the inventory step's message.
    pub order_created_to_stock_reserved: Option<Summary>,
    /// To the payments step's message: the saga's end.
    pub stock_reserved_to_completed: Option<Summary>,
}

/// Everything measured in one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Name.
    pub name: String,
    /// How orders were sent.
    pub load: Load,
    /// Orders sent.
    pub orders: usize,
    /// Orders the frontend accepted.
    pub accepted: usize,
    /// Seconds from the first `POST` to the last terminal message's publish time.
    pub span_s: Option<f64>,
    /// Sagas ended per second over that span.
    pub sagas_per_s: Option<f64>,
    /// `POST` start to the terminal message's publish time.
    pub end_to_end: Option<Summary>,
    /// `POST` start to its `202`.
    pub post: Option<Summary>,
    /// Whether everything ended before the wait gave up.
    pub settled: bool,
    /// The correctness check.
    pub check: Verdict,
    /// Stock per item.
    pub stock: BTreeMap<String, StockReport>,
    /// Whether the run passed its correctness check.
    pub passed: bool,
    /// Per-hop times (latency run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hops: Option<HopReport>,
    /// How long the steps' calls took, per service (latency run, and only when the services
    /// log `saga::timing`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<crate::phases::PhaseReport>,
    /// CPU used while the run went on (capacity and floor runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<crate::procfs::CpuReport>,
    /// Publish latency inside the floor's handlers (floor runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Summary>,
    /// What the run used, as a bill counts it (the saga's runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::bill::Usage>,
    /// The shared documents written, hottest first (the saga's runs, when the services log
    /// `saga::writes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_writes: Vec<crate::writes::DocumentWrites>,
    /// What the GCP-like deliverer and front ends did during the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::delivery::Counts>,
}

async fn read_stock(store: Option<&Store>, items: &[String]) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    if let Some(store) = store {
        for item in items {
            out.insert(item.clone(), crate::stack::stock(store, item).await?);
        }
    }
    Ok(out)
}

/// The run's span (first `POST` to last terminal publish), sagas per second over it, and
/// the end-to-end times of the sagas that ended.
fn timing(sent: &[Sent], verdict: &Verdict) -> (Option<Duration>, Option<f64>, Option<Summary>) {
    let started: BTreeMap<&str, SystemTime> = sent
        .iter()
        .filter_map(|s| Some((s.result.as_ref().ok()?.as_str(), s.started)))
        .collect();
    let mut end_to_end = Vec::new();
    let mut last_end: Option<SystemTime> = None;
    for (uuid, ended) in &verdict.ended {
        if let (Some(at), Some(start)) = (ended.at, started.get(uuid.as_str())) {
            // The emulator stamps milliseconds; a saga that ended within the millisecond it
            // started counts as zero, not as an error.
            end_to_end.push(at.duration_since(*start).unwrap_or_default());
            last_end = Some(last_end.map_or(at, |l| l.max(at)));
        }
    }
    let first_start = sent.iter().map(|s| s.started).min();
    let span = match (first_start, last_end) {
        (Some(first), Some(last)) => last.duration_since(first).ok(),
        _ => None,
    };
    let sagas_per_s = span
        .filter(|s| !s.is_zero())
        .map(|s| stats::as_f64(verdict.ended.len()) / s.as_secs_f64());
    (span, sagas_per_s, stats::summarize(&end_to_end))
}

/// Notes what the check should know about how the run's outcomes were collected.
fn add_notes(verdict: &mut Verdict, late: usize, settled: bool, idle: Duration) {
    if late > 0 {
        verdict.notes.push(format!(
            "{late} late messages about sagas of earlier runs were set aside"
        ));
    }
    if !settled {
        verdict
            .notes
            .push(format!("gave up waiting: nothing new arrived for {idle:?}"));
    }
}

/// Runs `orders` against `target`.
pub async fn run(
    name: &str,
    http: &reqwest::Client,
    target: Target<'_>,
    orders: Vec<OrderSpec>,
    load: Load,
    waits: Waits,
) -> anyhow::Result<(RunReport, Vec<Sent>)> {
    // Whatever arrived between runs belongs to earlier runs, whose stock effects the
    // initial stock read below already includes.
    let mut late = target.observer.drain()?.len();
    let before = read_stock(target.store, &target.items).await?;
    let count = orders.len();
    let sent = match load {
        Load::Closed { concurrency } => load::closed_loop(http, &target.url, orders, concurrency).await,
        Load::Open { rate } => load::open_loop(http, &target.url, orders, rate).await,
    };
    let placed: Vec<Placed> = sent
        .iter()
        .filter_map(|s| {
            s.result.as_ref().ok().map(|uuid| Placed {
                uuid: uuid.clone(),
                spec: s.spec.clone(),
            })
        })
        .collect();
    let refused: Vec<String> = sent.iter().filter_map(|s| s.result.clone().err()).collect();
    let mut collected = target.observer.collect(&placed, waits.idle).await?;
    let cpu = target.meter.map(|m| m.finish(placed.len()));
    if collected.settled {
        collected
            .outcomes
            .extend(target.observer.linger(waits.grace).await?);
    }
    let (earlier, outcomes): (Vec<Outcome>, Vec<Outcome>) = collected
        .outcomes
        .into_iter()
        .partition(|o| o.uuid.as_deref().is_some_and(|u| target.observer.is_earlier(u)));
    late += earlier.len();
    target.observer.remember(placed.iter().map(|p| p.uuid.clone()));
    let after = read_stock(target.store, &target.items).await?;

    let stock: BTreeMap<String, Stock> = before
        .iter()
        .map(|(item, &initial)| {
            (
                item.clone(),
                Stock {
                    initial,
                    after: after.get(item).copied().unwrap_or(i64::MIN),
                },
            )
        })
        .collect();
    let verdict = check::check(&check::Input {
        placed: &placed,
        refused: &refused,
        outcomes: &outcomes,
        stock: &stock,
        prices: &target.prices,
    });

    let (span, sagas_per_s, end_to_end) = timing(&sent, &verdict);
    let post: Vec<Duration> = sent.iter().map(|s| s.latency).collect();

    let stock_report = stock
        .iter()
        .map(|(item, s)| {
            (
                item.clone(),
                StockReport {
                    initial: s.initial,
                    after: s.after,
                    sold: verdict.sold.get(item).copied().unwrap_or(0),
                },
            )
        })
        .collect();
    let mut verdict = verdict;
    add_notes(&mut verdict, late, collected.settled, waits.idle);
    let report = RunReport {
        name: name.to_owned(),
        load,
        orders: count,
        accepted: placed.len(),
        span_s: span.map(|s| s.as_secs_f64()),
        sagas_per_s,
        end_to_end,
        post: stats::summarize(&post),
        settled: collected.settled,
        passed: verdict.passed(),
        check: verdict,
        stock: stock_report,
        hops: None,
        phases: Vec::new(),
        cpu,
        publish: None,
        usage: None,
        shared_writes: Vec::new(),
        delivery: None,
    };
    Ok((report, sent))
}

/// Round-trip times of the two Firestore calls a step makes, on the (otherwise idle)
/// emulator: a batch read of two documents and a one-document commit.
#[derive(Clone, Debug, Serialize)]
pub struct FirestoreProbe {
    /// `BatchGetDocuments` of two documents.
    pub batch_get: Option<Summary>,
    /// `Commit` creating one document.
    pub commit: Option<Summary>,
}

/// Measures [`FirestoreProbe`] with `n` sequential calls of each kind.
pub async fn probe_firestore(store: &Store, n: usize) -> anyhow::Result<FirestoreProbe> {
    let reads = [
        DocPath::new([collections::USERS, "jack"]),
        DocPath::new([collections::INVENTORY, "widget"]),
    ];
    let mut gets = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        store.get_all(&reads).await?;
        gets.push(t.elapsed());
    }
    let mut commits = Vec::with_capacity(n);
    for _ in 0..n {
        let mut writes = WriteSet::new();
        // A collection the saga never reads, so the probe cannot disturb it.
        writes.create(
            DocPath::new(["bench-probe", &uuid::Uuid::new_v4().to_string()]),
            &serde_json::json!({ "probe": true }),
        );
        let t = Instant::now();
        store
            .commit(writes)
            .await
            .map_err(|e| anyhow::anyhow!("probe commit: {e}"))?;
        commits.push(t.elapsed());
    }
    Ok(FirestoreProbe {
        batch_get: stats::summarize(&gets),
        commit: stats::summarize(&commits),
    })
}

/// Splits the time of each successful saga of `sent` into hops, from the publish times the
/// taps saw (per topic, per saga) and the terminal publish time the check recorded.
pub fn hops(
    sent: &[Sent],
    verdict: &Verdict,
    taps: &HashMap<Topic, HashMap<String, SystemTime>>,
) -> HopReport {
    let gap = |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default();
    let at = |topic: Topic, uuid: &str| taps.get(&topic).and_then(|m| m.get(uuid)).copied();
    let mut post_to_received = Vec::new();
    let mut to_order_created = Vec::new();
    let mut to_stock_reserved = Vec::new();
    let mut to_completed = Vec::new();
    for s in sent {
        let Ok(uuid) = s.result.as_deref() else { continue };
        let Some(ended) = verdict.ended.get(uuid).filter(|e| e.kind == Kind::Completed) else {
            continue;
        };
        let (Some(received), Some(created), Some(reserved), Some(completed)) = (
            at(Topic::Frontend, uuid),
            at(Topic::OrderCreated, uuid),
            at(Topic::InventoryUpdated, uuid),
            ended.at,
        ) else {
            continue;
        };
        post_to_received.push(gap(s.started, received));
        to_order_created.push(gap(received, created));
        to_stock_reserved.push(gap(created, reserved));
        to_completed.push(gap(reserved, completed));
    }
    HopReport {
        sagas: post_to_received.len(),
        post_to_received: stats::summarize(&post_to_received),
        received_to_order_created: stats::summarize(&to_order_created),
        order_created_to_stock_reserved: stats::summarize(&to_stock_reserved),
        stock_reserved_to_completed: stats::summarize(&to_completed),
    }
}

#[cfg(test)]
// A failed unwrap in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::Ended;
    use crate::orders::OrderSpec;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn hops_split_a_successful_saga_between_consecutive_publish_times() {
        let spec = OrderSpec {
            item: "widget".to_owned(),
            quantity: 1,
            user: "jack".to_owned(),
            expect: crate::orders::Expect::Valid,
        };
        let sent = |uuid: &str| Sent {
            index: 0,
            spec: spec.clone(),
            started: at(1000),
            latency: Duration::from_millis(3),
            result: Ok(uuid.to_owned()),
        };
        let mut verdict = Verdict::default();
        verdict.ended.insert(
            "a".to_owned(),
            Ended {
                kind: Kind::Completed,
                at: Some(at(1100)),
            },
        );
        verdict.ended.insert(
            "b".to_owned(),
            Ended {
                kind: Kind::Failed,
                at: Some(at(1050)),
            },
        );
        let taps = HashMap::from([
            (
                Topic::Frontend,
                HashMap::from([("a".to_owned(), at(1002)), ("b".to_owned(), at(1002))]),
            ),
            (Topic::OrderCreated, HashMap::from([("a".to_owned(), at(1030))])),
            (
                Topic::InventoryUpdated,
                HashMap::from([("a".to_owned(), at(1070))]),
            ),
        ]);
        let report = hops(&[sent("a"), sent("b")], &verdict, &taps);
        assert_eq!(report.sagas, 1, "only the successful saga has every hop");
        assert!((report.post_to_received.unwrap().p50_ms - 2.0).abs() < 1e-9);
        assert!((report.received_to_order_created.unwrap().p50_ms - 28.0).abs() < 1e-9);
        assert!((report.order_created_to_stock_reserved.unwrap().p50_ms - 40.0).abs() < 1e-9);
        assert!((report.stock_reserved_to_completed.unwrap().p50_ms - 30.0).abs() < 1e-9);
    }
}
