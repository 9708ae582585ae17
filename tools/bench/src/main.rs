//! `bench`: drives the saga on the emulators over HTTP, observes every outcome on the pull
//! subscriptions, checks each run for correctness, and reports throughput, latency and what
//! each service costs. See `BENCHMARKS.md` for what it measures and why.
//!
//! ```sh
//! cargo build --release --bins && target/release/bench all
//! ```
//!
//! It starts emulators of its own on free ports, in projects of its own, and the five
//! service binaries next to its own executable, and stops all of them when it ends. Pushes
//! are delivered as on Google Cloud unless `--push emulator` says otherwise (see
//! [`delivery`]). Exit code 1 means a correctness violation (never slowness), 2 that the
//! benchmark could not run.

mod bill;
mod check;
mod delivery;
mod floor;
mod load;
mod logs;
mod observe;
mod orders;
mod phases;
mod procfs;
mod report;
mod scenario;
mod stack;
mod stats;
mod taps;
mod writes;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use delivery::{Counts, Push};
use devstack::emulators::{Emulators, Options};
use observe::Observer;
use report::{BillReport, DeliveryReport, Machine, Report, ServiceReport};
use saga::contract::Service;
use scenario::{Load, RunReport, Target, Waits};
use stack::{EmulatorHosts, RssSampler, Stack};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Load, latency and correctness benchmark of the saga on the emulators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    options: Opts,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Floor, capacity, latency and hot item, with per-service figures.
    All,
    /// Capacity: `--orders` valid orders from `--concurrency` clients.
    Capacity,
    /// Latency: `--rate` orders per second for `--duration` seconds, on the floor and then
    /// on the saga, so that the saga's p99 can be judged against the floor's.
    Latency,
    /// Hot item: `--orders` orders all for one item whose stock runs out part-way.
    Hot,
    /// The floor alone: the same topology with no-op handlers that only re-publish.
    Floor,
    /// What a completed and a compensated saga cost on a bill: `--bill-orders` of each, no
    /// warm-up (the counts do not depend on the emulators' speed).
    Bill,
    /// Correctness only, for CI: 50 orders from 8 clients, with payment errors and unknown
    /// users mixed in. Exit code 1 on any violation, whatever the speed.
    Smoke,
}

#[derive(clap::Args, Debug, Clone)]
#[allow(clippy::struct_field_names)]
struct Opts {
    /// Orders per capacity, hot, floor or smoke run [default: 1000; smoke 50].
    #[arg(long, global = true)]
    orders: Option<usize>,
    /// Clients of the closed-loop runs [default: 32; smoke 8].
    #[arg(long, global = true)]
    concurrency: Option<usize>,
    /// Orders per second of the latency run.
    #[arg(long, global = true, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of the latency run.
    #[arg(long, global = true, default_value_t = 30)]
    duration: u64,
    /// Where to write the results as JSON.
    #[arg(long, global = true, default_value = "bench-results.json")]
    json: PathBuf,
    /// Stock of the hot item. The default, 2000, is two thirds of what 1,000 orders of 1 to
    /// 5 units ask for, so the item sells out part-way and the end of the run checks that
    /// nothing was sold beyond it.
    #[arg(long, global = true, default_value_t = 2000)]
    hot_stock: i64,
    /// The most orders the warm-up may send before the measured runs, in rounds of 1,000
    /// sent like the capacity run's. The emulators' JVMs go on compiling their hot paths
    /// for the first 8,000 sagas or so, with up to a third of their CPU, and a run measured
    /// meanwhile measures their compilers: the warm-up ends early once the compiler
    /// threads used under 5 % of the emulators' CPU in two rounds in a row. 0 for none.
    #[arg(long, global = true, default_value_t = 20_000)]
    warmup: usize,
    /// Starts of each service to time (all but the last are stopped again at once).
    #[arg(long, global = true, default_value_t = 5)]
    startup_samples: usize,
    /// Seconds without any new outcome after which a run stops waiting; whatever has not
    /// ended by then is a violation. Longer than Pub/Sub's retry backoff (up to 60 s).
    #[arg(long, global = true, default_value_t = 150)]
    settle: u64,
    /// `RUST_LOG` of the services. The default has them log each Firestore read call, each
    /// document written and each message published, for the write rates and the bill
    /// (which costs them some CPU: about twenty short lines per saga). Add
    /// `saga::timing=debug` for how long each Firestore read, commit, publish and mark of a
    /// step takes, reported per service.
    #[arg(long, global = true, default_value = DEFAULT_SERVICE_LOG)]
    service_log: String,
    /// Who delivers the pushes: `gcp`, as Google Cloud would (many at a time, with tokens,
    /// through a model of Cloud Run's front end per worker), or `emulator`, the Pub/Sub
    /// emulator's own push (at most two at a time per subscription, on a 100 ms cycle).
    #[arg(long, global = true, value_enum, default_value_t = Push::Gcp)]
    push: Push,
    /// Seed of the GCP-like deliverer's decisions, to replay a run [default: random; the
    /// report prints it].
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Orders of each of the two bill runs (all completing, all compensated), sent at 5 per
    /// second.
    #[arg(long, global = true, default_value_t = 100)]
    bill_orders: usize,
    /// Container images are looked up as PREFIX + service name (`docker image inspect`).
    #[arg(long, global = true, default_value = "")]
    image_prefix: String,
}

/// What the services log unless `--service-log` says otherwise: warnings, and the lines the
/// write rates and the bill are counted from.
const DEFAULT_SERVICE_LOG: &str = "warn,saga::writes=debug,saga::reads=debug,saga::publishes=debug";

/// Orders per second of the bill runs: slow enough that sagas rarely overlap, so that
/// what is counted is what one saga costs, without the reads and commits that conflicts on
/// a shared document add (the other runs show those).
const BILL_RATE: f64 = 5.0;

/// Shared documents listed per run.
const SHARED_LISTED: usize = 5;

/// Stock of the two ordinary items: more than any run here can sell, so that only the
/// hot-item run ever runs out.
const PLENTY: i64 = 1_000_000;

/// Orders per warm-up round.
const WARMUP_ROUND: usize = 1000;
/// A warm-up round is quiet when the emulators' JIT compilers used less than this share of
/// their CPU, per cent.
const JIT_QUIET_PCT: f64 = 5.0;
/// Quiet rounds in a row that end the warm-up: one alone can fall in a lull between two
/// bursts of compiling.
const QUIET_ROUNDS: usize = 2;

fn say(line: &str) {
    eprintln!("bench | {line}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::select! {
        result = bench(cli.command, &cli.options) => result,
        () = saga::runtime::server::shutdown_signal() => {
            say("interrupted: stopping everything this run started");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(report) => {
            let text = report::render(&report);
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            if let Err(e) = write_json(&report, &cli.options.json) {
                say(&format!("error: {e:#}"));
                return ExitCode::from(2);
            }
            say(&format!("results written to {}", cli.options.json.display()));
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            say(&format!("error: {e:#}"));
            ExitCode::from(2)
        }
    }
}

fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

fn machine() -> Machine {
    let (clock_ticks, clock_ticks_assumed) = procfs::ticks_per_second();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        memory_bytes: procfs::mem_total(),
        cpu: procfs::cpu_model(),
        load_before: procfs::load_average(),
        load_after: None,
        clock_ticks,
        clock_ticks_assumed,
    }
}

fn prices() -> BTreeMap<String, u64> {
    orders::ITEMS
        .iter()
        .chain(std::iter::once(&orders::HOT_ITEM))
        .map(|(item, price)| ((*item).to_owned(), *price))
        .collect()
}

fn items() -> Vec<String> {
    prices().into_keys().collect()
}

fn floor_target<'a>(floor: &floor::Floor, observer: &'a mut Observer) -> Target<'a> {
    Target {
        url: floor.order_url(),
        observer,
        store: None,
        items: Vec::new(),
        prices: BTreeMap::new(),
        meter: None,
    }
}

fn stack_target<'a>(stack: &'a Stack, observer: &'a mut Observer) -> Target<'a> {
    Target {
        url: stack.order_url(),
        observer,
        store: Some(&stack.store),
        items: items(),
        prices: prices(),
        meter: None,
    }
}

fn port_of(host: &str) -> &str {
    host.rsplit(':').next().unwrap_or(host)
}

/// What every run of one benchmark shares.
struct Ctx<'a> {
    opts: &'a Opts,
    hosts: EmulatorHosts,
    http: reqwest::Client,
    waits: Waits,
    /// Orders of the closed-loop runs.
    orders_n: usize,
    /// Clients of the closed-loop runs.
    concurrency: usize,
    /// Seed of the GCP-like deliverer.
    seed: u64,
}

async fn bench(command: Command, opts: &Opts) -> anyhow::Result<Report> {
    let mut machine = machine();
    let log_dir = std::env::temp_dir().join(format!("saga-bench-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let wants_stack = command != Command::Floor;
    // Before the emulators start: a missing binary should fail in a second, not in twenty.
    let bin_dir = if wants_stack {
        Some(stack::binaries_dir()?)
    } else {
        None
    };
    let profile = profile_of_exe().unwrap_or_default();
    let seed = opts.seed.unwrap_or_else(rand::random);

    say(&format!("logs go to {}", log_dir.display()));
    say(&match opts.push {
        Push::Gcp => {
            format!("pushes delivered as on Google Cloud (GCP-like), seed {seed} (replay: --seed {seed})")
        }
        Push::Emulator => "pushes delivered by the Pub/Sub emulator".to_owned(),
    });
    let options = Options {
        pubsub_port: 0,
        firestore_port: 0,
        log_dir: log_dir.clone(),
        progress: true,
    };
    let emulators = tokio::task::spawn_blocking(move || Emulators::start(&options)).await??;
    let smoke = command == Command::Smoke;
    let ctx = Ctx {
        opts,
        hosts: EmulatorHosts {
            pubsub: emulators.pubsub.clone(),
            firestore: emulators.firestore.clone(),
        },
        http: load::client()?,
        waits: Waits {
            idle: Duration::from_secs(opts.settle),
            grace: Duration::from_secs(2),
        },
        orders_n: opts.orders.unwrap_or(if smoke { 50 } else { 1000 }),
        concurrency: opts.concurrency.unwrap_or(if smoke { 8 } else { 32 }),
        seed,
    };

    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: firestore::jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        profile,
        machine: machine.clone(),
        delivery: DeliveryReport::new(opts.push, seed),
        runs: Vec::new(),
        capacity_pct_of_floor: None,
        services: Vec::new(),
        firestore_probe: None,
        publish_idle: None,
        bill: Vec::new(),
        image_note: None,
        passed: true,
    };

    if command == Command::Floor {
        run_floor(&ctx, &mut report, FloorRuns::All, true).await?;
    }
    if let Some(bin_dir) = bin_dir {
        run_stack(command, &ctx, &bin_dir, &log_dir, &mut report).await?;
    }

    if let (Some(floor), Some(capacity)) = (
        report.run("floor").and_then(|r| r.sagas_per_s),
        report.run("capacity").and_then(|r| r.sagas_per_s),
    ) {
        report.capacity_pct_of_floor = Some(capacity / floor * 100.0);
    }
    report.passed = report.runs.iter().all(|r| r.passed);
    machine.load_after = procfs::load_average();
    report.machine = machine;
    say("stopping the emulators");
    let mut emulators = emulators;
    tokio::task::spawn_blocking(move || emulators.stop()).await?;
    Ok(report)
}

fn profile_of_exe() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.file_name()?.to_string_lossy().into_owned())
}

/// Which of the floor's runs to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FloorRuns {
    /// One order at a time, the closed loop, and the latency run.
    All,
    /// The latency run only, for the saga's latency to be judged against.
    Latency,
}

/// What the GCP-like delivery of a floor or stack has done so far, if it has one.
fn counts(gcp: Option<&devstack::gcp_like::GcpLike>) -> Option<Counts> {
    gcp.map(Counts::of)
}

/// The floor's runs. `warm`: warm the Pub/Sub emulator up on the floor first (when the
/// floor runs alone; otherwise the stack's warm-up has done it).
async fn run_floor(ctx: &Ctx<'_>, report: &mut Report, runs: FloorRuns, warm: bool) -> anyhow::Result<()> {
    say("floor: no-op handlers that only re-publish, in a project of their own");
    let floor = floor::Floor::start(&ctx.hosts.pubsub_endpoint(), ctx.opts.push, ctx.seed).await?;
    let mut observer = Observer::start(&ctx.hosts.pubsub_endpoint(), &floor.project).await?;
    if warm {
        WarmUp { ctx }
            .run(&mut observer, &Under::Floor(&floor), report)
            .await?;
        floor.take_publishes();
    }
    let since = |before: Option<Counts>| Some(counts(floor.gcp.as_ref())?.since(before?));
    if runs == FloorRuns::All {
        // One order at a time first: what a publish costs when nothing else is going on.
        say("floor: 50 orders, one at a time");
        let before = counts(floor.gcp.as_ref());
        let (mut idle, _) = scenario::run(
            "floor sequential",
            &ctx.http,
            floor_target(&floor, &mut observer),
            orders::spread(50),
            Load::Closed { concurrency: 1 },
            ctx.waits,
        )
        .await?;
        report.publish_idle = stats::summarize(&floor.take_publishes());
        idle.publish.clone_from(&report.publish_idle);
        idle.delivery = since(before);
        report.runs.push(idle);

        say(&format!(
            "floor: {} orders from {} clients",
            ctx.orders_n, ctx.concurrency
        ));
        let before = counts(floor.gcp.as_ref());
        let mut target = floor_target(&floor, &mut observer);
        target.meter = Some(procfs::CpuMeter::start(emulator_and_bench_groups(&ctx.hosts)));
        let (mut run, _) = scenario::run(
            "floor",
            &ctx.http,
            target,
            orders::spread(ctx.orders_n),
            Load::Closed {
                concurrency: ctx.concurrency,
            },
            ctx.waits,
        )
        .await?;
        run.publish = stats::summarize(&floor.take_publishes());
        run.delivery = since(before);
        report.runs.push(run);
    }

    say(&format!(
        "floor: {} orders per second for {} s",
        ctx.opts.rate, ctx.opts.duration
    ));
    let before = counts(floor.gcp.as_ref());
    let target = floor_target(&floor, &mut observer);
    let mut run = latency_run("floor latency", ctx, &floor.project, target).await?;
    run.delivery = since(before);
    floor.take_publishes();
    report.runs.push(run);
    observer.stop().await;
    floor.stop().await;
    Ok(())
}

async fn run_stack(
    command: Command,
    ctx: &Ctx<'_>,
    bin_dir: &Path,
    log_dir: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let opts = ctx.opts;
    say(&format!(
        "starting the five services from {} ({} starts each, one service at a time)",
        bin_dir.display(),
        opts.startup_samples
    ));
    let stack = Stack::start(
        &ctx.hosts,
        bin_dir,
        log_dir,
        &stack::seed_documents(PLENTY, opts.hot_stock),
        opts.startup_samples,
        &opts.service_log,
        opts.push,
        ctx.seed,
    )
    .await?;
    // Let start-up allocations settle before calling memory idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut services: Vec<ServiceReport> = stack
        .processes
        .iter()
        .map(|p| {
            let mut startup: Vec<Duration> = p.startup.clone();
            startup.sort_unstable();
            ServiceReport {
                service: p.service.name().to_owned(),
                binary_bytes: p.binary_bytes,
                startup_ms: p.startup.iter().copied().map(stats::ms).collect(),
                startup_median_ms: stats::percentile(&startup, 50.0).map(stats::ms),
                rss_idle_bytes: procfs::rss(p.pid),
                ..ServiceReport::default()
            }
        })
        .collect();
    let (images, image_note) = image_sizes(&opts.image_prefix).await;
    for (s, image) in services.iter_mut().zip(images) {
        s.image_bytes = image;
    }
    report.image_note = image_note;

    let mut observer = Observer::start(&ctx.hosts.pubsub_endpoint(), &stack.project).await?;
    let result = measured_runs(command, ctx, &stack, &mut observer, report, &mut services).await;
    observer.stop().await;
    for (s, p) in services.iter_mut().zip(&stack.processes) {
        s.rss_after_bytes = procfs::rss(p.pid);
    }
    report.services = services;
    if let Some(gcp) = &stack.gcp {
        report.delivery.totals = Some(Counts::of(gcp));
        report.delivery.peak_in_flight = delivery::peak_in_flight(gcp);
    }
    say("stopping the services");
    stack.stop().await;
    result
}

async fn measured_runs(
    command: Command,
    ctx: &Ctx<'_>,
    stack: &Stack,
    observer: &mut Observer,
    report: &mut Report,
    services: &mut [ServiceReport],
) -> anyhow::Result<()> {
    let (orders_n, concurrency) = (ctx.orders_n, ctx.concurrency);
    if command == Command::Smoke {
        say(&format!("smoke: {orders_n} orders from {concurrency} clients"));
        let run = saga_closed(
            ctx,
            stack,
            observer,
            "smoke",
            orders::smoke(orders_n),
            concurrency,
        )
        .await?;
        report.runs.push(run);
        return Ok(());
    }
    if command == Command::Bill {
        return bill_runs(ctx, stack, observer, report).await;
    }

    WarmUp { ctx }.run(observer, &Under::Stack(stack), report).await?;
    if command == Command::All {
        // After the warm-up, so that the floor, too, is measured on warm emulators.
        run_floor(ctx, report, FloorRuns::All, false).await?;
        say("probing Firestore round trips on the idle emulator");
        report.firestore_probe = Some(scenario::probe_firestore(&stack.store, 100).await?);
    }
    if command == Command::Latency {
        run_floor(ctx, report, FloorRuns::Latency, false).await?;
    }

    if matches!(command, Command::All | Command::Capacity) {
        say(&format!("capacity: {orders_n} orders from {concurrency} clients"));
        let run = capacity(ctx, stack, observer, services).await?;
        report.runs.push(run);
    }

    if matches!(command, Command::All | Command::Latency) {
        say(&format!(
            "latency: {} orders per second for {} s",
            ctx.opts.rate, ctx.opts.duration
        ));
        let measure = Measure::start(stack)?;
        let mut target = stack_target(stack, observer);
        target.meter = Some(procfs::CpuMeter::start(stack_groups(&ctx.hosts, stack)));
        let mut run = latency_run("latency", ctx, &stack.project, target).await?;
        measure.finish(stack, observer, &mut run)?;
        report.runs.push(run);
    }

    if matches!(command, Command::All | Command::Hot) {
        say(&format!(
            "hot item: {orders_n} orders from {concurrency} clients, all for {} (stock {})",
            orders::HOT_ITEM.0,
            ctx.opts.hot_stock
        ));
        let run = saga_closed(ctx, stack, observer, "hot", orders::hot(orders_n), concurrency).await?;
        report.runs.push(run);
    }

    if command == Command::All {
        bill_runs(ctx, stack, observer, report).await?;
    }
    Ok(())
}

/// What a run of the saga measures besides the scenario's own figures: the services' log
/// lines (write rates, the bill's counts, step timings) and the delivery's counters.
struct Measure {
    marks: logs::Marks,
    counts: Option<Counts>,
}

impl Measure {
    /// Notes where the logs and counters stand before a run.
    fn start(stack: &Stack) -> anyhow::Result<Self> {
        Ok(Measure {
            marks: logs::mark(stack)?,
            counts: counts(stack.gcp.as_ref()),
        })
    }

    /// Adds what happened since [`Measure::start`] to `run`, which has just ended (its sagas
    /// are known to `observer`).
    fn finish(self, stack: &Stack, observer: &Observer, run: &mut RunReport) -> anyhow::Result<()> {
        let logs = logs::since(&self.marks)?;
        run.phases = phases::summarize(&logs);
        let tally = logs::tally(&logs);
        let mut shared = writes::shared(tally.written.iter().copied(), |segment| {
            observer.is_earlier(segment)
        });
        shared.truncate(SHARED_LISTED);
        run.shared_writes = shared;
        let delivered = match (counts(stack.gcp.as_ref()), self.counts) {
            (Some(now), Some(before)) => Some(now.since(before)),
            _ => None,
        };
        run.delivery = delivered;
        let service_cpu: Vec<f64> = run
            .cpu
            .iter()
            .flat_map(|c| Service::ALL.into_iter().filter_map(|s| c.group(s.name())))
            .map(|g| g.cpu_s)
            .collect();
        run.usage = Some(bill::Usage {
            sagas: run.check.ended.len(),
            posts: run.orders,
            read_calls: tally.read_calls,
            documents_read: tally.documents_read,
            documents_written: u64::try_from(tally.written.len()).unwrap_or(u64::MAX),
            documents_deleted: 0,
            published: tally.published,
            published_bytes: tally.published_bytes,
            published_billed_bytes: tally.published_billed_bytes,
            largest_message: tally.largest_message,
            pushes: delivered.map(|d| d.pushes),
            push_bytes: delivered.map(|d| d.bytes),
            forwarded: delivered.map(|d| d.forwarded),
            service_cpu_s: (!service_cpu.is_empty()).then(|| service_cpu.iter().sum()),
        });
        Ok(())
    }
}

/// A closed-loop run of the saga, measured.
async fn saga_closed(
    ctx: &Ctx<'_>,
    stack: &Stack,
    observer: &mut Observer,
    name: &str,
    orders: Vec<orders::OrderSpec>,
    concurrency: usize,
) -> anyhow::Result<RunReport> {
    saga_run(ctx, stack, observer, name, orders, Load::Closed { concurrency }).await
}

/// A run of the saga, measured.
async fn saga_run(
    ctx: &Ctx<'_>,
    stack: &Stack,
    observer: &mut Observer,
    name: &str,
    orders: Vec<orders::OrderSpec>,
    load: Load,
) -> anyhow::Result<RunReport> {
    let measure = Measure::start(stack)?;
    let mut target = stack_target(stack, observer);
    target.meter = Some(procfs::CpuMeter::start(stack_groups(&ctx.hosts, stack)));
    let (mut run, _) = scenario::run(name, &ctx.http, target, orders, load, ctx.waits).await?;
    measure.finish(stack, observer, &mut run)?;
    Ok(run)
}

/// The two runs the bill is counted from: `--bill-orders` sagas that complete, and as many
/// that fail at the last step and are compensated, each sent at [`BILL_RATE`].
async fn bill_runs(
    ctx: &Ctx<'_>,
    stack: &Stack,
    observer: &mut Observer,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = ctx.opts.bill_orders;
    for (name, orders) in [
        ("bill completed", orders::spread(n)),
        ("bill compensated", orders::declined(n)),
    ] {
        say(&format!(
            "{name}: {n} orders at {BILL_RATE} per second, counting what a bill counts"
        ));
        let run = saga_run(ctx, stack, observer, name, orders, Load::Open { rate: BILL_RATE }).await?;
        if let Some(usage) = &run.usage
            && let Some(per_saga) = usage.per_saga()
        {
            report.bill.push(BillReport {
                run: name.to_owned(),
                per_million: bill::per_million(&per_saga),
                per_saga,
                usage: usage.clone(),
            });
        }
        report.runs.push(run);
    }
    Ok(())
}

/// What a warm-up sends its orders to.
enum Under<'s> {
    Stack(&'s Stack),
    Floor(&'s floor::Floor),
}

impl Under<'_> {
    fn target<'o>(&'o self, observer: &'o mut Observer) -> Target<'o> {
        match self {
            Under::Stack(stack) => stack_target(stack, observer),
            Under::Floor(floor) => floor_target(floor, observer),
        }
    }
}

/// The warm-up before the measured runs.
struct WarmUp<'a, 'b> {
    ctx: &'a Ctx<'b>,
}

impl WarmUp<'_, '_> {
    /// Sends rounds of [`WARMUP_ROUND`] orders to `under` until the emulators' JIT
    /// compilers have been quiet for [`QUIET_ROUNDS`] rounds in a row, or `--warmup` orders
    /// went out. Each round is checked like any run; a violation ends the warm-up (and
    /// fails the report).
    async fn run(
        &self,
        observer: &mut Observer,
        under: &Under<'_>,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let mut sent = 0;
        let mut quiet = 0;
        let mut round = 0;
        while sent < ctx.opts.warmup && quiet < QUIET_ROUNDS {
            round += 1;
            let n = WARMUP_ROUND.min(ctx.opts.warmup - sent);
            let mut t = under.target(observer);
            t.meter = Some(procfs::CpuMeter::start(emulator_and_bench_groups(&ctx.hosts)));
            let (run, _) = scenario::run(
                &format!("warm-up {round}"),
                &ctx.http,
                t,
                orders::spread(n),
                Load::Closed {
                    concurrency: ctx.concurrency,
                },
                ctx.waits,
            )
            .await?;
            sent += n;
            let jit = run.cpu.as_ref().and_then(procfs::CpuReport::jit_pct);
            say(&format!(
                "warm-up {round}: {n} orders, {} sagas/s; JIT compiling took {} % of the emulators' CPU",
                report::opt(run.sagas_per_s, |v| format!("{v:.1}")),
                report::opt(jit, |v| format!("{v:.0}")),
            ));
            quiet = if jit.is_some_and(|p| p < JIT_QUIET_PCT) {
                quiet + 1
            } else {
                0
            };
            let passed = run.passed;
            report.runs.push(run);
            if !passed {
                break;
            }
        }
        Ok(())
    }
}

/// The capacity run, measuring what each process (services, emulators, the bench itself)
/// costs while it goes on, and the services' memory.
async fn capacity(
    ctx: &Ctx<'_>,
    stack: &Stack,
    observer: &mut Observer,
    services: &mut [ServiceReport],
) -> anyhow::Result<RunReport> {
    let service_pids: Vec<u32> = stack.pids().into_iter().map(|(_, p)| p).collect();
    let sampler = RssSampler::start(service_pids.clone(), Duration::from_millis(100));
    let run = saga_closed(
        ctx,
        stack,
        observer,
        "capacity",
        orders::spread(ctx.orders_n),
        ctx.concurrency,
    )
    .await?;
    let max_rss = sampler.finish().await;
    for (s, pid) in services.iter_mut().zip(&service_pids) {
        s.rss_capacity_max_bytes = max_rss.get(pid).copied();
        if let Some(group) = run.cpu.as_ref().and_then(|c| c.group(&s.service)) {
            s.cpu_capacity_s = Some(group.cpu_s);
            // Milliseconds per saga are seconds per 1,000 sagas.
            s.cpu_s_per_1000_sagas = group.ms_per_saga;
        }
    }
    Ok(run)
}

/// Each service's processes (all its instances), the emulators' Java servers and this
/// process, as CPU groups.
fn stack_groups(hosts: &EmulatorHosts, stack: &Stack) -> Vec<(String, Vec<u32>)> {
    let mut groups: Vec<(String, Vec<u32>)> = stack
        .all_pids()
        .into_iter()
        .map(|(service, pids)| (service.name().to_owned(), pids))
        .collect();
    groups.extend(emulator_and_bench_groups(hosts));
    groups
}

/// The emulators' Java servers (found by their ports: gcloud starts them as grandchildren
/// in process groups of their own) and this process, as CPU groups.
fn emulator_and_bench_groups(hosts: &EmulatorHosts) -> Vec<(String, Vec<u32>)> {
    let java = |host: &str| procfs::pids_matching(&["java", &format!("--port={}", port_of(host))]);
    vec![
        ("Pub/Sub emulator".to_owned(), java(&hosts.pubsub)),
        ("Firestore emulator".to_owned(), java(&hosts.firestore)),
        ("bench".to_owned(), vec![std::process::id()]),
    ]
}

/// An open-loop run at `--rate` for `--duration`, with the hops of each saga timed by
/// tapping the topics between the steps.
async fn latency_run(
    name: &str,
    ctx: &Ctx<'_>,
    project: &str,
    target: Target<'_>,
) -> anyhow::Result<RunReport> {
    let n = latency_orders(ctx.opts.rate, ctx.opts.duration);
    let taps = taps::Taps::start(&ctx.hosts.pubsub_endpoint(), project).await?;
    let (mut run, sent) = scenario::run(
        name,
        &ctx.http,
        target,
        orders::spread(n),
        Load::Open { rate: ctx.opts.rate },
        ctx.waits,
    )
    .await?;
    let completed: Vec<String> = run
        .check
        .ended
        .iter()
        .filter(|(_, e)| e.kind == check::Kind::Completed)
        .map(|(u, _)| u.clone())
        .collect();
    let seen = taps.finish(&completed, Duration::from_secs(10)).await;
    run.hops = Some(scenario::hops(&sent, &run.check, &seen));
    Ok(run)
}

fn latency_orders(rate: f64, duration: u64) -> usize {
    let n = (rate * stats::u64_as_f64(duration)).round().max(1.0);
    // A rate and duration given on the command line: far below usize::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = n as usize;
    n
}

/// Image sizes from `docker image inspect`, if docker answers and the images exist.
async fn image_sizes(prefix: &str) -> (Vec<Option<u64>>, Option<String>) {
    let mut sizes = Vec::new();
    let mut problem = None;
    for service in saga::contract::Service::ALL {
        let name = format!("{prefix}{}", service.name());
        let output = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new("docker")
                .args(["image", "inspect", "--format", "{{.Size}}", &name])
                .kill_on_drop(true)
                .output(),
        )
        .await;
        let size = match output {
            Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().parse().ok(),
            Ok(Ok(out)) => {
                let err = String::from_utf8_lossy(&out.stderr);
                problem.get_or_insert_with(|| {
                    format!(
                        "not measured: `docker image inspect {name}` failed ({}); build them with `docker build --build-arg SERVICE={} -t {name} .`",
                        err.lines().next().unwrap_or("").trim(),
                        service.name()
                    )
                });
                None
            }
            Ok(Err(e)) => {
                problem.get_or_insert_with(|| format!("not measured: docker is not available ({e})"));
                None
            }
            Err(_) => {
                problem.get_or_insert_with(|| "not measured: docker did not answer within 10 s".to_owned());
                None
            }
        };
        sizes.push(size);
    }
    (sizes, problem)
}
