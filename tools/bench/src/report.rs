//! The benchmark's results: one value, written as JSON and printed as tables, with each
//! figure next to its budget.

use crate::bill::{Bill, PerSaga, Usage};
use crate::delivery::{Counts, Push};
use crate::scenario::{FirestoreProbe, RunReport};
use crate::stats::Summary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The budgets (2 cores, emulators). Targets to report against, not pass/fail.
pub mod budget {
    /// Capacity run, sagas per second.
    pub const CAPACITY_PER_S: f64 = 150.0;
    /// Hot-item run, orders decided (sagas ended) per second.
    pub const HOT_PER_S: f64 = 100.0;
    /// Hot-item run: the most writes within one second of any shared document.
    pub const HOT_SHARED_WRITES_PER_S: usize = 5;
    /// p99 end to end at 20 orders per second, at most this much above the floor's p99
    /// measured in the same benchmark, milliseconds.
    pub const P99_OVER_FLOOR_MS: f64 = 50.0;
    /// Idle resident memory per service, bytes.
    pub const IDLE_RSS_BYTES: u64 = 15 * 1024 * 1024;
    /// Start to first healthy answer, milliseconds.
    pub const STARTUP_MS: f64 = 50.0;
}

/// The machine the figures were taken on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Cores the bench may use.
    pub cores: usize,
    /// Memory, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU model.
    pub cpu: Option<String>,
    /// 1-minute load average when the bench started and when it ended: the machine is
    /// shared, and this says how much else ran.
    pub load_before: Option<f64>,
    /// See `load_before`.
    pub load_after: Option<f64>,
    /// Clock ticks per second that CPU times were counted in.
    pub clock_ticks: u64,
    /// Whether that rate was assumed (100) because `getconf CLK_TCK` failed.
    pub clock_ticks_assumed: bool,
}

/// One service's cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServiceReport {
    /// Name.
    pub service: String,
    /// Release (or debug) binary size, bytes.
    pub binary_bytes: u64,
    /// Spawn to first `200` on `/healthz`, each start, milliseconds.
    pub startup_ms: Vec<f64>,
    /// Median of those.
    pub startup_median_ms: Option<f64>,
    /// Resident memory after start, before any load, bytes.
    pub rss_idle_bytes: Option<u64>,
    /// Largest resident memory sampled every 100 ms during the capacity run, bytes.
    pub rss_capacity_max_bytes: Option<u64>,
    /// Resident memory after every run, bytes.
    pub rss_after_bytes: Option<u64>,
    /// CPU (user + system) used during the capacity run, seconds.
    pub cpu_capacity_s: Option<f64>,
    /// That, per 1,000 sagas.
    pub cpu_s_per_1000_sagas: Option<f64>,
    /// Container image size, bytes, if an image was found.
    pub image_bytes: Option<u64>,
}

/// How pushes were delivered.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryReport {
    /// Who pushed.
    pub push: Push,
    /// The GCP-like deliverer's seed (`--seed` replays its decisions).
    pub seed: Option<u64>,
    /// Pushes in flight at most per subscription (GCP-like).
    pub max_in_flight: Option<usize>,
    /// The subscriptions' ack deadline, seconds.
    pub ack_deadline_s: u64,
    /// What the saga's deliverer and front ends did over the whole benchmark.
    pub totals: Option<Counts>,
    /// The most requests each worker's front end had in flight at once.
    pub peak_in_flight: BTreeMap<String, u64>,
}

impl DeliveryReport {
    /// Before anything ran.
    pub fn new(push: Push, seed: u64) -> Self {
        let settings = crate::delivery::settings(seed);
        let gcp = push == Push::Gcp;
        DeliveryReport {
            push,
            seed: gcp.then_some(seed),
            max_in_flight: gcp.then_some(settings.max_in_flight),
            ack_deadline_s: saga::contract::PUSH_POLICY.ack_deadline.as_secs(),
            totals: None,
            peak_in_flight: BTreeMap::new(),
        }
    }
}

/// What one kind of saga costs on a bill.
#[derive(Clone, Debug, Serialize)]
pub struct BillReport {
    /// The run it was counted in.
    pub run: String,
    /// The run's counts.
    pub usage: Usage,
    /// Per saga.
    pub per_saga: PerSaga,
    /// A million of them at list prices, USD.
    pub per_million: Bill,
}

/// Everything.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The command that ran.
    pub command: String,
    /// When (UTC).
    pub date: String,
    /// `release` or `debug` binaries.
    pub profile: String,
    /// The machine.
    pub machine: Machine,
    /// How pushes were delivered.
    pub delivery: DeliveryReport,
    /// Runs, in order.
    pub runs: Vec<RunReport>,
    /// Capacity as a share of the floor, percent.
    pub capacity_pct_of_floor: Option<f64>,
    /// Per service.
    pub services: Vec<ServiceReport>,
    /// Firestore round trips on the idle emulator.
    pub firestore_probe: Option<FirestoreProbe>,
    /// Publish latency on the idle emulator (sequential floor orders).
    pub publish_idle: Option<Summary>,
    /// What a completed and a compensated saga cost on a bill.
    pub bill: Vec<BillReport>,
    /// Why the image sizes are missing, if they are.
    pub image_note: Option<String>,
    /// Whether every run passed its correctness check.
    pub passed: bool,
}

impl Report {
    /// A run by name.
    pub fn run(&self, name: &str) -> Option<&RunReport> {
        self.runs.iter().find(|r| r.name == name)
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", crate::stats::u64_as_f64(bytes) / (1024.0 * 1024.0))
}

/// `f(v)`, or a dash for a figure that is missing.
pub fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

fn percentiles(s: Option<&Summary>) -> String {
    opt(s, |s| {
        format!("{:.0} / {:.0} / {:.0}", s.p50_ms, s.p95_ms, s.p99_ms)
    })
}

fn mark(ok: bool) -> &'static str {
    if ok { "meets" } else { "MISSES" }
}

/// Lays `rows` out in columns, the first row being the header.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s}{}", " ".repeat(widths[c] - s.chars().count())))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    out
}

/// The report as Markdown tables (readable on a terminal too).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "{}, {} binaries, {} cores ({}), {} GiB, load {} → {}\n",
        report.date,
        report.profile,
        m.cores,
        m.cpu.as_deref().unwrap_or("unknown CPU"),
        opt(m.memory_bytes, |b| format!(
            "{:.1}",
            crate::stats::u64_as_f64(b) / f64::from(1u32 << 30)
        )),
        opt(m.load_before, |l| format!("{l:.2}")),
        opt(m.load_after, |l| format!("{l:.2}")),
    );

    let d = &report.delivery;
    let _ = writeln!(
        out,
        "{}\n",
        match d.push {
            Push::Gcp => format!(
                "pushes: GCP-like (pulled and pushed by the deliverer, {} in flight at most per subscription, \
                 through a Cloud Run front end per worker), seed {}",
                opt(d.max_in_flight, |n| n.to_string()),
                opt(d.seed, |s| s.to_string())
            ),
            Push::Emulator =>
                "pushes: the Pub/Sub emulator's own (2 in flight per subscription, 100 ms cycle)".to_owned(),
        }
    );

    out.push_str(&render_runs(report));
    if let Some(pct) = report.capacity_pct_of_floor {
        let _ = writeln!(out, "\ncapacity is {pct:.1} % of the floor");
    }
    out.push_str(&render_writes(report));
    out.push_str(&render_usage(report));
    out.push_str(&render_delivery(report));
    out.push_str(&render_bill(report));

    out.push_str(&render_services(report));

    out.push_str(&render_explanations(report));

    let budgets = budgets(report);
    if report.profile != "release" {
        // Debug binaries are several times larger and slower: judging them would only
        // print misses that say nothing about the product.
        let _ = writeln!(
            out,
            "\nbudgets: not judged, the services are {} binaries (they are for release builds)",
            report.profile
        );
    } else if !budgets.is_empty() {
        let _ = writeln!(out, "\nbudgets (targets, not tests):");
        for line in budgets {
            let _ = writeln!(out, "  {line}");
        }
    }

    for r in &report.runs {
        for v in &r.check.violations {
            let _ = writeln!(out, "VIOLATION in {}: {v}", r.name);
        }
        for n in &r.check.notes {
            let _ = writeln!(out, "note on {}: {n}", r.name);
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if report.passed {
            "every run passed its correctness check"
        } else {
            "CORRECTNESS VIOLATIONS: see above"
        }
    );
    out
}

/// The table of runs.
fn render_runs(report: &Report) -> String {
    let mut out = String::new();
    let mut rows = vec![
        [
            "run",
            "load",
            "orders",
            "completed",
            "failed",
            "sagas/s",
            "end to end p50 / p95 / p99 ms",
            "POST p50 / p95 / p99 ms",
            "check",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in report.runs.iter().filter(|r| !is_warm_up(r)) {
        let load = match r.load {
            crate::scenario::Load::Closed { concurrency: 1 } => "1 client".to_owned(),
            crate::scenario::Load::Closed { concurrency } => format!("{concurrency} clients"),
            crate::scenario::Load::Open { rate } => format!("{rate}/s"),
        };
        let failed = if r.check.failed.is_empty() {
            "0".to_owned()
        } else {
            r.check
                .failed
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(vec![
            r.name.clone(),
            load,
            r.orders.to_string(),
            r.check.completed.to_string(),
            failed,
            opt(r.sagas_per_s, |v| format!("{v:.1}")),
            percentiles(r.end_to_end.as_ref()),
            percentiles(r.post.as_ref()),
            if r.passed {
                "pass".to_owned()
            } else {
                format!("FAIL ({})", r.check.violations.len())
            },
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(&render_warm_up(report));
    out
}

/// Whether `run` is a round of the warm-up, which is summed up on one line rather than
/// listed.
fn is_warm_up(run: &RunReport) -> bool {
    run.name.starts_with("warm-up")
}

/// The warm-up rounds on one line: how many, whether they passed, and the JIT share that
/// decided when they stopped.
fn render_warm_up(report: &Report) -> String {
    let rounds: Vec<&RunReport> = report.runs.iter().filter(|r| is_warm_up(r)).collect();
    if rounds.is_empty() {
        return String::new();
    }
    let failed = rounds.iter().filter(|r| !r.passed).count();
    let each = |f: &dyn Fn(&RunReport) -> String| rounds.iter().map(|r| f(r)).collect::<Vec<_>>().join(" ");
    format!(
        "\nwarm-up: {} rounds, {} orders, {}; sagas/s by round: {}; the emulators' JIT compilers' share \
         of their CPU by round, %: {}\n",
        rounds.len(),
        rounds.iter().map(|r| r.orders).sum::<usize>(),
        if failed == 0 {
            "every one passed its check".to_owned()
        } else {
            format!("{failed} FAILED their check")
        },
        each(&|r| opt(r.sagas_per_s, |v| format!("{v:.0}"))),
        each(&|r| opt(
            r.cpu.as_ref().and_then(crate::procfs::CpuReport::jit_pct),
            |v| format!("{v:.0}")
        )),
    )
}

/// The table of services (empty when no service ran).
fn render_services(report: &Report) -> String {
    let mut out = String::new();
    if !report.services.is_empty() {
        let mut rows = vec![
            [
                "service",
                "binary MB",
                "start→healthy ms (median; each)",
                "idle RSS MB",
                "RSS max in capacity MB",
                "RSS after MB",
                "CPU s / 1000 sagas",
                "image MB",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for s in &report.services {
            rows.push(vec![
                s.service.clone(),
                mb(s.binary_bytes),
                format!(
                    "{}; {}",
                    opt(s.startup_median_ms, |v| format!("{v:.1}")),
                    s.startup_ms
                        .iter()
                        .map(|v| format!("{v:.0}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                opt(s.rss_idle_bytes, mb),
                opt(s.rss_capacity_max_bytes, mb),
                opt(s.rss_after_bytes, mb),
                opt(s.cpu_s_per_1000_sagas, |v| format!("{v:.2}")),
                opt(s.image_bytes, mb),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
        if let Some(note) = &report.image_note {
            let _ = writeln!(out, "image sizes: {note}");
        }
    }
    out
}

/// The hottest shared document of each run, and how hard it was written.
fn render_writes(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .filter(|r| !is_warm_up(r))
        .filter_map(|r| {
            let hottest = r.shared_writes.first()?;
            let others = r
                .shared_writes
                .iter()
                .skip(1)
                .map(|d| format!("{} {}", d.doc, d.max_per_s))
                .collect::<Vec<_>>()
                .join(", ");
            Some(vec![
                r.name.clone(),
                hottest.doc.clone(),
                hottest.max_per_s.to_string(),
                hottest.writes.to_string(),
                if others.is_empty() {
                    "–".to_owned()
                } else {
                    others
                },
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut all = vec![
        [
            "run",
            "hottest shared document",
            "most writes in one second",
            "writes in the run",
            "other shared documents (most in one second)",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    all.extend(rows);
    format!("\n{}", table(&all))
}

/// What each run of the saga used per saga, in a bill's units: conflicts on a shared
/// document show here as extra reads and writes.
fn render_usage(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .filter(|r| !is_warm_up(r))
        .filter_map(|r| {
            let u = r.usage.as_ref()?;
            let s = u.per_saga()?;
            let two = |v: f64| format!("{v:.2}");
            Some(vec![
                r.name.clone(),
                u.sagas.to_string(),
                format!(
                    "{} ({})",
                    two(s.documents_read),
                    two(crate::stats::u64_as_f64(u.read_calls) / crate::stats::as_f64(u.sagas))
                ),
                two(s.documents_written),
                two(s.published),
                opt(s.pushes, two),
                opt(s.cloud_run_requests, two),
                opt(s.cpu_ms, two),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut all = vec![
        [
            "run",
            "sagas",
            "documents read (calls) / saga",
            "written / saga",
            "published / saga",
            "pushes / saga",
            "Cloud Run requests / saga",
            "services' CPU ms / saga",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    all.extend(rows);
    format!("\n{}", table(&all))
}

/// What the GCP-like deliverer and the front ends did, per run.
fn render_delivery(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .filter(|r| !is_warm_up(r))
        .filter_map(|r| {
            let c = r.delivery?;
            Some(vec![
                r.name.clone(),
                c.pushes.to_string(),
                c.acked.to_string(),
                c.nacked.to_string(),
                c.duplicates.to_string(),
                c.forwarded.to_string(),
                c.refused_busy.to_string(),
                c.refused_auth.to_string(),
                c.timed_out.to_string(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut all = vec![
        [
            "run",
            "pushes",
            "acked",
            "nacked",
            "duplicates",
            "forwarded",
            "429 busy",
            "401/403",
            "504",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    all.extend(rows);
    let mut out = format!("\nGCP-like delivery per run:\n{}", table(&all));
    if !report.delivery.peak_in_flight.is_empty() {
        let peaks: Vec<String> = report
            .delivery
            .peak_in_flight
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "most requests in flight at once per front end (limit {}, over {} instances of each worker): {}",
            devstack::gcp_like::MAX_CONCURRENT_REQUESTS,
            devstack::gcp_like::INSTANCES,
            peaks.join(", ")
        );
    }
    out
}

fn usd(v: Option<f64>) -> String {
    opt(v, |v| format!("{v:.2}"))
}

/// What a completed and a compensated saga cost on a bill, and a million of each.
fn render_bill(report: &Report) -> String {
    if report.bill.is_empty() {
        return String::new();
    }
    let one = |v: f64| format!("{v:.2}");
    let row = |label: &str, f: &dyn Fn(&BillReport) -> String| {
        let mut r = vec![label.to_owned()];
        r.extend(report.bill.iter().map(f));
        r
    };
    let header = |first: &str| {
        let mut r = vec![first.to_owned()];
        r.extend(report.bill.iter().map(|b| b.run.clone()));
        r
    };
    let per_saga = vec![
        header("per saga"),
        row("Firestore documents read (read calls)", &|b| {
            format!(
                "{} ({})",
                one(b.per_saga.documents_read),
                one(crate::stats::u64_as_f64(b.usage.read_calls) / crate::stats::as_f64(b.usage.sagas.max(1)))
            )
        }),
        row("Firestore documents written", &|b| {
            one(b.per_saga.documents_written)
        }),
        row("Firestore documents deleted", &|b| {
            one(b.per_saga.documents_deleted)
        }),
        row("Pub/Sub messages published", &|b| one(b.per_saga.published)),
        row("Pub/Sub pushes", &|b| opt(b.per_saga.pushes, one)),
        row("Pub/Sub throughput billed, KB", &|b| {
            opt(b.per_saga.pubsub_billed_bytes, |v| one(v / 1000.0))
        }),
        row("Cloud Run requests", &|b| opt(b.per_saga.cloud_run_requests, one)),
        row("services' CPU, ms", &|b| opt(b.per_saga.cpu_ms, one)),
    ];
    let money = vec![
        header("per million sagas, USD"),
        row("Firestore reads", &|b| usd(Some(b.per_million.firestore_reads))),
        row("Firestore writes", &|b| usd(Some(b.per_million.firestore_writes))),
        row("Firestore deletes", &|b| {
            usd(Some(b.per_million.firestore_deletes))
        }),
        row("Pub/Sub throughput", &|b| usd(b.per_million.pubsub)),
        row("Cloud Run requests", &|b| usd(b.per_million.cloud_run_requests)),
        row("Cloud Run vCPU (the CPU used: the least)", &|b| {
            usd(b.per_million.cloud_run_cpu)
        }),
        row("Cloud Run memory (over the same seconds)", &|b| {
            usd(b.per_million.cloud_run_memory)
        }),
        row("total", &|b| usd(b.per_million.total())),
    ];
    let largest = report
        .bill
        .iter()
        .map(|b| b.usage.largest_message)
        .max()
        .unwrap_or(0);
    format!(
        "\nthe bill (largest message {largest} bytes of data; prices and their sources in bill::price; \
         free tiers not subtracted):\n{}\n{}",
        table(&per_saga),
        table(&money)
    )
}

/// The figures that explain the others: who used the CPU, round trips, hops.
fn render_explanations(report: &Report) -> String {
    let mut out = String::new();
    for r in report.runs.iter().filter(|r| !is_warm_up(r)) {
        let Some(cpu) = &r.cpu else { continue };
        let groups: Vec<String> = cpu
            .groups
            .iter()
            .map(|g| {
                format!(
                    "{} {:.1} s ({} ms/saga{})",
                    g.name,
                    g.cpu_s,
                    opt(g.ms_per_saga, |v| format!("{v:.1}")),
                    g.jit_s
                        .map(|j| format!("; JIT compiling {j:.1} s"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\nCPU during {} ({:.1} s wall, machine {} % busy): {}",
            r.name,
            cpu.wall_s,
            opt(cpu.machine_busy_pct, |v| format!("{v:.0}")),
            groups.join(", ")
        );
    }
    if let Some(probe) = &report.firestore_probe {
        let _ = writeln!(
            out,
            "Firestore emulator, idle, p50 / p95 / p99 ms: batch get {}, commit {}",
            percentiles(probe.batch_get.as_ref()),
            percentiles(probe.commit.as_ref())
        );
    }
    if report.publish_idle.is_some() || report.run("floor").and_then(|r| r.publish.as_ref()).is_some() {
        let _ = writeln!(
            out,
            "Pub/Sub publish, p50 / p95 / p99 ms: idle {}, under the floor's load {}",
            percentiles(report.publish_idle.as_ref()),
            percentiles(report.run("floor").and_then(|r| r.publish.as_ref()))
        );
    }
    for r in &report.runs {
        let Some(hops) = &r.hops else { continue };
        let _ = writeln!(
            out,
            "{}, per hop p50 / p95 / p99 ms ({} sagas): POST→received {}, →order_created {}, →stock_reserved {}, →completed {}",
            r.name,
            hops.sagas,
            percentiles(hops.post_to_received.as_ref()),
            percentiles(hops.received_to_order_created.as_ref()),
            percentiles(hops.order_created_to_stock_reserved.as_ref()),
            percentiles(hops.stock_reserved_to_completed.as_ref()),
        );
    }
    for r in report.runs.iter().filter(|r| !r.phases.is_empty()) {
        let mut by_service: Vec<(&str, Vec<String>)> = Vec::new();
        for p in &r.phases {
            // Most calls take a millisecond or two: whole milliseconds would hide them.
            let part = format!(
                "{} {:.1} / {:.1} / {:.1}",
                p.phase, p.times.p50_ms, p.times.p95_ms, p.times.p99_ms
            );
            match by_service.last_mut() {
                Some((service, parts)) if *service == p.service => parts.push(part),
                _ => by_service.push((&p.service, vec![part])),
            }
        }
        let services: Vec<String> = by_service
            .into_iter()
            .map(|(service, parts)| format!("{service} {}", parts.join(", ")))
            .collect();
        let _ = writeln!(
            out,
            "{}, the steps' calls p50 / p95 / p99 ms: {}",
            r.name,
            services.join("; ")
        );
    }
    out
}

/// Whether a p99 of `p99_ms` meets the latency budget against a floor p99 of `floor_ms`.
pub fn within_floor(p99_ms: f64, floor_ms: f64) -> bool {
    p99_ms <= floor_ms + budget::P99_OVER_FLOOR_MS
}

/// The hot-item budget: orders decided per second, the hottest shared document's writes
/// per second, and no order lost to `retries_exhausted`.
fn hot_budget(r: &RunReport, sagas_per_s: f64) -> String {
    let sold_per_s = r
        .span_s
        .filter(|s| *s > 0.0)
        .map(|s| crate::stats::as_f64(r.check.completed) / s);
    let hottest = r.shared_writes.first();
    let max_writes = hottest.map(|d| d.max_per_s);
    let exhausted = r.check.failed.get("retries_exhausted").copied().unwrap_or(0);
    let met = hot_met(sagas_per_s, max_writes, exhausted) && r.passed;
    format!(
        "hot item ≥ {} orders/s with ≤ {} writes/s of any shared document: {sagas_per_s:.1} orders decided/s \
         ({} sold/s), hottest shared document {} at {} writes/s, {exhausted} retries_exhausted: {}",
        budget::HOT_PER_S,
        budget::HOT_SHARED_WRITES_PER_S,
        opt(sold_per_s, |v| format!("{v:.1}")),
        opt(hottest, |d| d.doc.clone()),
        opt(max_writes, |w| w.to_string()),
        mark(met)
    )
}

/// Whether a hot-item run meets its budget on its figures: the rate, the hottest shared
/// document's most writes in one second (none logged: not judged as met), and the orders
/// lost to `retries_exhausted`.
pub fn hot_met(sagas_per_s: f64, max_writes_per_s: Option<usize>, retries_exhausted: usize) -> bool {
    sagas_per_s >= budget::HOT_PER_S
        && max_writes_per_s.is_some_and(|w| w <= budget::HOT_SHARED_WRITES_PER_S)
        && retries_exhausted == 0
}

/// Each budget the report has a figure for, with the figure and whether it is met.
pub fn budgets(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(r) = report.run("capacity")
        && let Some(v) = r.sagas_per_s
    {
        lines.push(format!(
            "capacity ≥ {} sagas/s with zero violations: {v:.1}, {} violations: {}",
            budget::CAPACITY_PER_S,
            r.check.violations.len(),
            mark(v >= budget::CAPACITY_PER_S && r.passed)
        ));
    }
    if let Some(r) = report.run("hot")
        && let Some(v) = r.sagas_per_s
    {
        lines.push(hot_budget(r, v));
    }
    if let Some(s) = report.run("latency").and_then(|r| r.end_to_end.as_ref()) {
        let floor = report.run("floor latency").and_then(|r| r.end_to_end.as_ref());
        lines.push(match floor {
            Some(f) => format!(
                "p99 at the latency run's rate ≤ the floor's p99 + {} ms: {:.0} ms, the floor {:.0} + {} = {:.0} ms: {}",
                budget::P99_OVER_FLOOR_MS,
                s.p99_ms,
                f.p99_ms,
                budget::P99_OVER_FLOOR_MS,
                f.p99_ms + budget::P99_OVER_FLOOR_MS,
                mark(within_floor(s.p99_ms, f.p99_ms))
            ),
            None => format!(
                "p99 at the latency run's rate: {:.0} ms (not judged: no floor latency run to compare with)",
                s.p99_ms
            ),
        });
    }
    for s in &report.services {
        if let Some(rss) = s.rss_idle_bytes {
            lines.push(format!(
                "{} idle RSS ≤ {} MB: {} MB: {}",
                s.service,
                mb(budget::IDLE_RSS_BYTES),
                mb(rss),
                mark(rss <= budget::IDLE_RSS_BYTES)
            ));
        }
        if let Some(ms) = s.startup_median_ms {
            lines.push(format!(
                "{} start→healthy ≤ {} ms: {ms:.1} ms (median): {}",
                s.service,
                budget::STARTUP_MS,
                mark(ms <= budget::STARTUP_MS)
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_budget_is_the_floors_p99_plus_fifty_milliseconds_inclusive() {
        assert!(within_floor(150.0, 100.0));
        assert!(!within_floor(150.1, 100.0));
        assert!(within_floor(90.0, 100.0));
    }

    #[test]
    fn the_hot_item_budget_needs_the_rate_few_writes_of_the_shared_document_and_no_lost_order() {
        assert!(hot_met(100.0, Some(5), 0));
        assert!(!hot_met(99.9, Some(4), 0));
        assert!(!hot_met(390.0, Some(6), 0));
        assert!(!hot_met(390.0, None, 0));
        assert!(!hot_met(390.0, Some(4), 1));
    }

    #[test]
    fn a_table_pads_every_column_to_its_widest_cell() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned()],
            vec!["ccc".to_owned(), "d".to_owned()],
        ];
        assert_eq!(table(&rows), "| a   | bb |\n|-----|----|\n| ccc | d  |\n");
    }
}
