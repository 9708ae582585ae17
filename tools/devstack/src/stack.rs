//! The `devstack` commands: `up` (the default) runs the whole stack and keeps its services
//! running, `seed` seeds a project, `serve` runs one service.

use anyhow::Context as _;
use devstack::emulators::{self, Emulators};
use devstack::gcp_like::{self, GcpLike};
use devstack::process::{self, Backoff, Event, Output, Probe, Spec, Supervisor};
use devstack::{pubsub, router_of, seed};
use gcp_models::pubsub_push::{Faults, Settings};
use saga::contract::{PUSH_POLICY, Service};
use saga::gcp::store::FirestoreTarget;
use saga::gcp::store::Store;
use saga::runtime::config::env;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

/// Options of the default command.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Project id used on the emulators.
    #[arg(long, env = "PROJECT_ID", default_value = "saga-local")]
    project: String,
    /// Port for a Pub/Sub emulator started here.
    #[arg(long, default_value_t = 8085)]
    pubsub_port: u16,
    /// Port for a Firestore emulator started here.
    #[arg(long, default_value_t = 8086)]
    firestore_port: u16,
    /// The frontend's port; orders, inventory, payments and janitor take the four after it.
    #[arg(long, default_value_t = Service::Frontend.local_port(),
          value_parser = clap::value_parser!(u16).range(1..=65531))]
    port_base: u16,
    /// How often to call the janitor's sweep, which ends sagas past their deadline
    /// (`SAGA_DEADLINE`, 10 minutes unless set), as Cloud Scheduler does every minute on
    /// Google Cloud; `0s` turns it off.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    sweep_every: std::time::Duration,
    /// Who pushes the saga's messages to the workers: `emulator`, the emulator's own push
    /// (two requests in flight per subscription, no token), or `gcp`, as Google Cloud pushes
    /// (up to 3 × 80 in flight, an OIDC token per push checked by a model of Cloud Run's
    /// front end before each worker, and the faults below).
    #[arg(long, value_enum, default_value_t = Push::Emulator)]
    push: Push,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Who pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Push {
    /// The Pub/Sub emulator's own push.
    Emulator,
    /// GCP-like delivery (`devstack::gcp_like`).
    Gcp,
}

/// Faults of `--push gcp`, each chosen per message from the seed.
#[derive(Debug, clap::Args)]
struct FaultArgs {
    /// Fraction of messages delivered twice (0 to 1), also after a 2xx.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    duplicates: f64,
    /// Fraction of answers lost as if late (0 to 1): those messages are delivered again.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    lost_answers: f64,
    /// Each push waits up to this many milliseconds first, so messages overtake each other.
    #[arg(long, default_value_t = 0)]
    max_delay_ms: u64,
    /// The seed of every fault; a run's seed is printed, and this replays it.
    #[arg(long, env = "SAGA_PUSH_SEED")]
    seed: Option<u64>,
}

impl FaultArgs {
    fn faults(&self) -> Faults {
        Faults {
            duplicate: self.duplicates,
            lost_answer: self.lost_answers,
            max_delay: std::time::Duration::from_millis(self.max_delay_ms),
        }
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a fraction between 0 and 1")),
    }
}

/// Where the services listen: their [`Service::local_port`], moved to start at `--port-base`
/// (so that two stacks can run side by side). A restarted service keeps its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ports {
    base: u16,
}

impl Ports {
    fn of(self, service: Service) -> u16 {
        self.base + (service.local_port() - Service::Frontend.local_port())
    }

    fn url(self, service: Service) -> String {
        format!("http://127.0.0.1:{}", self.of(service))
    }
}

const COLOURS: [&str; 5] = ["\x1b[36m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[34m"];
const RESET: &str = "\x1b[0m";

fn say(line: &str) {
    eprintln!("devstack  | {line}");
}

/// Runs everything until Ctrl-C or SIGTERM.
pub async fn up(args: UpArgs) -> ExitCode {
    match run_up(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    let faults = args.faults.faults();
    if args.push == Push::Emulator && faults != Faults::default() {
        anyhow::bail!("--duplicates, --lost-answers and --max-delay-ms need --push gcp");
    }
    let log_dir = std::env::temp_dir().join("saga-devstack");
    let options = emulators::Options {
        pubsub_port: args.pubsub_port,
        firestore_port: args.firestore_port,
        log_dir: log_dir.clone(),
        progress: true,
    };
    let mut emulators = tokio::task::spawn_blocking(move || Emulators::reuse_or_start(&options)).await??;
    if emulators.started {
        say(&format!("emulator logs are in {}", log_dir.display()));
    } else {
        say(&format!(
            "reusing the emulators at {} (Pub/Sub) and {} (Firestore)",
            emulators.pubsub, emulators.firestore
        ));
    }

    if args.push == Push::Emulator {
        say("creating topics and subscriptions, pushed by the emulator");
        pubsub::provision(
            &emulators.pubsub_endpoint(),
            &args.project,
            |service| Ports { base: args.port_base }.url(service),
            &PUSH_POLICY,
        )
        .await?;
    }

    let store = Store::connect(&FirestoreTarget {
        project: args.project.clone(),
        emulator_host: Some(emulators.firestore.clone()),
    })
    .await?;
    let report = seed::seed(&store, &seed::seed_documents()).await?;
    say(&format!(
        "seed data: created {:?}, kept as they were {:?}",
        report.created, report.kept
    ));

    let ports = Ports { base: args.port_base };
    let children = start_services(&args, &emulators, ports).await?;
    let gcp = start_gcp_delivery(&args, &emulators, faults, ports).await?;
    print_banner(&args.project, &emulators, gcp.as_ref(), ports, &children);

    // From here on a service that exits is started again; only a signal ends the stack.
    let supervisors = supervise(children, ports)?;
    let sweeper = (!args.sweep_every.is_zero()).then(|| {
        let (url, authorization) = match gcp
            .as_ref()
            .and_then(|g| Some((g.front_end(Service::Janitor)?, g)))
        {
            Some((front_end, g)) => (front_end.url(), Some(g.sweep_authorizer())),
            None => (ports.url(Service::Janitor), None),
        };
        tokio::spawn(sweep_on_a_timer(url, authorization, args.sweep_every))
    });
    saga::runtime::server::shutdown_signal().await;
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    if let Some(gcp) = gcp {
        gcp.stop().await;
    }
    say("stopping the services");
    futures::future::join_all(supervisors.into_iter().map(|s| s.stop(process::STOP_DEADLINE))).await;
    if emulators.started {
        say("stopping the emulators");
    }
    tokio::task::spawn_blocking(move || emulators.stop()).await?;
    Ok(())
}

/// Starts the five services and waits until each is healthy.
async fn start_services(
    args: &UpArgs,
    emulators: &Emulators,
    ports: Ports,
) -> anyhow::Result<Vec<process::Child>> {
    let mut children = Vec::new();
    for service in Service::ALL {
        let behind_front_end = args.push == Push::Gcp && service.takes_pushes();
        let mut extra = if behind_front_end {
            gcp_like::worker_env(&args.project, service)
        } else {
            Vec::new()
        };
        if args.push == Push::Emulator {
            // What the caller's environment sets wins.
            extra.extend(
                devstack::pubsub::emulator_push_env(service)
                    .into_iter()
                    .filter(|(var, _)| std::env::var_os(var).is_none()),
            );
        }
        let spec = service_spec(service, &args.project, emulators, ports, &extra)?;
        let mut child = spec.spawn().with_context(|| format!("starting {service}"))?;
        relay_output(&mut child, &output_prefix(service))?;
        children.push(child);
    }
    for (service, child) in Service::ALL.into_iter().zip(&children) {
        child
            .wait_healthy(&health_probe(ports, service)?)
            .await
            .with_context(|| format!("{service} did not become healthy"))?;
    }
    Ok(children)
}

/// A supervisor for each running service (in [`Service::ALL`]'s order), which starts it
/// again from the same spec (so on the same port, with the same environment) when it exits,
/// and says so.
fn supervise(children: Vec<process::Child>, ports: Ports) -> anyhow::Result<Vec<Supervisor>> {
    Service::ALL
        .into_iter()
        .zip(children)
        .map(|(service, child)| {
            let prefix = output_prefix(service);
            Ok(Supervisor::start(
                child,
                health_probe(ports, service)?,
                Backoff::DEFAULT,
                move |child| relay_output(child, &prefix),
                move |event| say(&restart_line(service, &event)),
            ))
        })
        .collect()
}

/// What the devstack says when a supervisor reports `event` about `service`.
fn restart_line(service: Service, event: &Event) -> String {
    let secs = |d: &std::time::Duration| d.as_secs_f64();
    match event {
        Event::Exited { status, restart_in } => format!(
            "{service} exited ({}); restarting in {} s",
            process::exit_reason(status),
            secs(restart_in)
        ),
        Event::StartFailed { error, restart_in } => format!(
            "{service} could not be started again ({error:#}); trying again in {} s",
            secs(restart_in)
        ),
        Event::Unhealthy { error, restart_in } => format!(
            "{service} did not become healthy ({error}); restarting in {} s",
            secs(restart_in)
        ),
        Event::Healthy { pid: Some(pid) } => format!("{service} is healthy again (pid {pid})"),
        Event::Healthy { pid: None } => format!("{service} is healthy again"),
    }
}

/// Calls the janitor's sweep at `base` every `every`, as Cloud Scheduler does on Google
/// Cloud (with its token, under `--push gcp`), and says what each sweep ended.
async fn sweep_on_a_timer(
    base: String,
    authorization: Option<impl Fn() -> String>,
    every: std::time::Duration,
) {
    let http = reqwest::Client::new();
    let url = format!("{base}{}", saga::contract::sweep::PATH);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut request = http.post(&url).timeout(saga::contract::HANDLER_TIMEOUT * 2);
        if let Some(mint) = &authorization {
            request = request.header("authorization", mint());
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => {
                if let Ok(report) = answer.json::<serde_json::Value>().await
                    && let Some(line) = sweep_line(&report)
                {
                    say(&line);
                }
            }
            Ok(answer) => say(&format!("the sweep answered {}", answer.status())),
            Err(e) => say(&format!("could not call the sweep: {e}")),
        }
    }
}

/// What the devstack says about a sweep's report: nothing if it ended no saga.
fn sweep_line(report: &serde_json::Value) -> Option<String> {
    let ended: Vec<String> = report["sagas"]
        .as_array()?
        .iter()
        .filter(|s| s["outcome"] == "done")
        .map(|s| {
            let step = s["step"].as_str().unwrap_or("?");
            match (s["action"].as_str(), s["reason"].as_str()) {
                (Some("relay"), _) => {
                    format!("{} (relayed {step}'s message)", s["uuid"].as_str().unwrap_or("?"))
                }
                (Some("compensate"), Some(reason)) => {
                    format!(
                        "{} (compensated: {step} {reason})",
                        s["uuid"].as_str().unwrap_or("?")
                    )
                }
                (action, _) => format!(
                    "{} ({})",
                    s["uuid"].as_str().unwrap_or("?"),
                    action.unwrap_or("?")
                ),
            }
        })
        .collect();
    (!ended.is_empty()).then(|| {
        format!(
            "the sweep ended {} saga(s) past their deadline: {}",
            ended.len(),
            ended.join(", ")
        )
    })
}

/// `GET /healthz` of `service`.
fn health_probe(ports: Ports, service: Service) -> anyhow::Result<Probe> {
    Probe::new(format!(
        "{}{}",
        ports.url(service),
        saga::runtime::server::HEALTH_PATH
    ))
}

/// With `--push gcp`: provisions pulled subscriptions and starts the front ends and the
/// deliverer, once the workers listen.
async fn start_gcp_delivery(
    args: &UpArgs,
    emulators: &Emulators,
    faults: Faults,
    ports: Ports,
) -> anyhow::Result<Option<GcpLike>> {
    Ok(match args.push {
        Push::Emulator => None,
        Push::Gcp => {
            let seed = args.faults.seed.unwrap_or_else(rand::random);
            say(&format!(
                "creating topics and subscriptions, pushed as Google Cloud would: {faults:?}, \
                 seed {seed} (replay: --seed {seed})"
            ));
            let settings = Settings {
                faults,
                ..Settings::like_the_deployment(PUSH_POLICY.ack_deadline, seed)
            };
            Some(
                GcpLike::start(
                    &emulators.pubsub_endpoint(),
                    &args.project,
                    |service| vec![ports.url(service)],
                    &PUSH_POLICY,
                    settings,
                )
                .await?,
            )
        }
    })
}

/// How `service` is started: `devstack serve SERVICE`, with its environment.
fn service_spec(
    service: Service,
    project: &str,
    emulators: &Emulators,
    ports: Ports,
    extra_env: &[(&'static str, String)],
) -> anyhow::Result<Spec> {
    let exe = std::env::current_exe().context("finding the devstack binary")?;
    let mut spec = Spec::new(exe)
        .arg("serve")
        .arg(service.name())
        .env(env::PORT, ports.of(service).to_string())
        .env(env::PROJECT_ID, project)
        .env(env::PUBSUB_EMULATOR_HOST, &emulators.pubsub)
        .env(env::FIRESTORE_EMULATOR_HOST, &emulators.firestore)
        .env(env::LOG_FORMAT, log_format())
        .stdout(Output::Piped)
        .stderr(Output::Piped);
    if let Some((key, value)) = runtime_workers(|key| std::env::var_os(key)) {
        spec = spec.env(key, value);
    }
    for (key, value) in extra_env {
        spec = spec.env(key, value);
    }
    Ok(spec)
}

/// Tokio's variable for the number of runtime worker threads.
const TOKIO_WORKER_THREADS: &str = "TOKIO_WORKER_THREADS";

/// The runtime size the services get here, unless `TOKIO_WORKER_THREADS` is set already
/// (they inherit it then): one worker each. Five services and two emulator JVMs share this
/// machine's cores, and a runtime per service sized to every core only adds idle workers
/// that wake one another (BENCHMARKS.md, "One runtime worker per local service"). On Cloud
/// Run an instance has its CPUs to itself, and Tokio sizes its runtime to them.
fn runtime_workers(
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<(&'static str, &'static str)> {
    lookup(TOKIO_WORKER_THREADS)
        .is_none()
        .then_some((TOKIO_WORKER_THREADS, "1"))
}

/// The services' log format: `LOG_FORMAT=json` shows the lines Cloud Logging would get, one
/// JSON object per line and unprefixed (each names its service), ready for `jq`; text is
/// the default here.
fn log_format() -> String {
    std::env::var(env::LOG_FORMAT).unwrap_or_else(|_| "text".to_owned())
}

/// What precedes each of `service`'s lines: its name (coloured on a terminal), or nothing
/// for JSON.
fn output_prefix(service: Service) -> String {
    let i = Service::ALL
        .iter()
        .position(|s| *s == service)
        .unwrap_or_default();
    let colour = COLOURS[i % COLOURS.len()];
    if log_format() == "json" {
        String::new()
    } else if std::io::stderr().is_terminal() {
        format!("{colour}{:<9}|{RESET} ", service.name())
    } else {
        format!("{:<9} | ", service.name())
    }
}

/// Copies a started service's stdout and stderr to ours, line by line after `prefix`.
fn relay_output(child: &mut process::Child, prefix: &str) -> anyhow::Result<()> {
    if let Some(out) = child.take_stdout() {
        tokio::spawn(relay(
            tokio::process::ChildStdout::from_std(out)?,
            prefix.to_owned(),
        ));
    }
    if let Some(err) = child.take_stderr() {
        tokio::spawn(relay(
            tokio::process::ChildStderr::from_std(err)?,
            prefix.to_owned(),
        ));
    }
    Ok(())
}

async fn relay(stream: impl AsyncRead + Unpin, prefix: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{prefix}{line}");
    }
}

fn print_banner(
    project: &str,
    emulators: &Emulators,
    gcp: Option<&GcpLike>,
    ports: Ports,
    children: &[process::Child],
) {
    let mut lines = vec![String::new(), "the saga is running:".to_owned()];
    for (service, child) in Service::ALL.into_iter().zip(children) {
        let pid = child.pid().map(|pid| format!(", pid {pid}")).unwrap_or_default();
        let behind = gcp
            .and_then(|g| g.front_end(service))
            .map(|f| format!(", pushed through its front end at {}", f.url()))
            .unwrap_or_default();
        lines.push(format!(
            "  {:<10} {} (devstack serve {service}{pid}{behind})",
            service.name(),
            ports.url(service)
        ));
    }
    lines.push(match gcp {
        None => "  pushes     by the Pub/Sub emulator (two at a time per subscription, no token)".to_owned(),
        Some(g) => format!(
            "  pushes     GCP-like: up to {} at a time per subscription, a token each; seed {}",
            g.settings().max_in_flight,
            g.settings().seed
        ),
    });
    lines.push(format!(
        "  {:<10} {} (project {project})",
        "pubsub", emulators.pubsub
    ));
    lines.push(format!("  {:<10} {}", "firestore", emulators.firestore));
    lines.push(String::new());
    lines.push("place an order:".to_owned());
    lines.push(format!(
        "  curl -X POST http://127.0.0.1:{}/order -H 'Content-Type: application/json' -d '{{\"item\":\"widget\",\"quantity\":50,\"user\":\"jack\"}}'",
        ports.of(Service::Frontend)
    ));
    lines.push("read outcomes:".to_owned());
    lines.push(format!(
        "  export CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://{}/ CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true CLOUDSDK_CORE_PROJECT={project}",
        emulators.pubsub
    ));
    lines.push("  gcloud pubsub subscriptions pull payment-created-sub --auto-ack --limit=10".to_owned());
    lines.push("  gcloud pubsub subscriptions pull error-cli-sub --auto-ack --limit=10".to_owned());
    lines.push("look into sagas and dead letters, add stock (docs/operations.md, sagactl):".to_owned());
    lines.push(format!(
        "  export PUBSUB_EMULATOR_HOST={} FIRESTORE_EMULATOR_HOST={} PROJECT_ID={project}",
        emulators.pubsub, emulators.firestore
    ));
    lines.push("  cargo run -q -p sagactl -- stuck; cargo run -q -p sagactl -- dead-letters".to_owned());
    lines.push("  cargo run -q -p sagactl -- stock widget --add 1000".to_owned());
    lines.push("a service that exits is started again; stop everything with Ctrl-C".to_owned());
    lines.push(String::new());
    for line in lines {
        say(&line);
    }
}

/// `devstack seed`.
pub async fn seed_project(project: &str) -> ExitCode {
    let target = FirestoreTarget {
        project: project.to_owned(),
        emulator_host: std::env::var(env::FIRESTORE_EMULATOR_HOST)
            .ok()
            .filter(|h| !h.is_empty()),
    };
    let where_ = target.emulator_host.as_ref().map_or_else(
        || format!("project {project} (Application Default Credentials)"),
        |h| format!("the emulator at {h}, project {project}"),
    );
    let result = async {
        let store = Store::connect(&target).await?;
        seed::seed(&store, &seed::seed_documents()).await
    }
    .await;
    match result {
        Ok(report) => {
            say(&format!("seeded {where_}"));
            for doc in report.created {
                say(&format!("  created {doc}"));
            }
            for doc in report.kept {
                say(&format!("  kept    {doc} (it existed)"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("seeding {where_} failed: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// `devstack serve SERVICE`: one service, stopped by SIGTERM or Ctrl-C. Started by `up`, it
/// does not outlive a `devstack` that was killed: see [`devstack::process`].
pub async fn serve(service: Service) -> ExitCode {
    saga::runtime::service::main(service, router_of(service)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;
    use std::time::Duration;

    #[test]
    fn the_services_take_their_local_ports_by_default_and_keep_their_order_from_another_base() {
        let table = [
            (8080, Service::Frontend, 8080),
            (8080, Service::Inventory, 8082),
            (8080, Service::Janitor, 8084),
            (18_000, Service::Frontend, 18_000),
            (18_000, Service::Orders, 18_001),
            (18_000, Service::Payments, 18_003),
            (65_531, Service::Janitor, 65_535),
        ];
        for (base, service, port) in table {
            assert_eq!(Ports { base }.of(service), port, "{service} from {base}");
        }
        assert_eq!(
            Ports { base: 9000 }.url(Service::Inventory),
            "http://127.0.0.1:9002"
        );
    }

    #[test]
    fn the_services_run_one_runtime_worker_unless_told_otherwise() {
        let table = [
            (None, Some((TOKIO_WORKER_THREADS, "1"))),
            (Some("4"), None),
            (Some(""), None),
        ];
        for (set, expected) in table {
            let lookup = |key: &str| {
                (key == TOKIO_WORKER_THREADS)
                    .then_some(set.map(std::ffi::OsString::from))
                    .flatten()
            };
            assert_eq!(runtime_workers(lookup), expected, "with {set:?}");
        }
    }

    #[test]
    fn a_sweep_is_reported_only_when_it_ended_a_saga_naming_each_and_what_was_done() {
        let table = [
            (serde_json::json!({"sagas": []}), None),
            (
                serde_json::json!({"sagas": [{"uuid": "a", "action": "relay", "step": "orders", "outcome": "dry_run"}]}),
                None,
            ),
            (
                serde_json::json!({"sagas": [
                    {"uuid": "a", "action": "relay", "step": "inventory", "outcome": "done"},
                    {"uuid": "b", "action": "compensate", "step": "orders", "reason": "timed_out", "outcome": "done"},
                    {"uuid": "c", "action": "relay", "step": "orders", "outcome": "could not read"},
                ]}),
                Some(
                    "the sweep ended 2 saga(s) past their deadline: a (relayed inventory's message), \
                     b (compensated: orders timed_out)",
                ),
            ),
            (serde_json::json!("not a report"), None),
        ];
        for (report, line) in table {
            assert_eq!(sweep_line(&report).as_deref(), line, "{report}");
        }
    }

    #[test]
    fn each_restart_event_reads_as_one_line_naming_the_service() {
        let table = [
            (
                Event::Exited {
                    status: Ok(ExitStatus::from_raw(9)),
                    restart_in: Duration::from_millis(500),
                },
                "inventory exited (signal 9); restarting in 0.5 s",
            ),
            (
                Event::Exited {
                    status: Ok(ExitStatus::from_raw(1 << 8)),
                    restart_in: Duration::from_secs(2),
                },
                "inventory exited (exit code 1); restarting in 2 s",
            ),
            (
                Event::StartFailed {
                    error: anyhow::anyhow!("no such file"),
                    restart_in: Duration::from_secs(10),
                },
                "inventory could not be started again (no such file); trying again in 10 s",
            ),
            (
                Event::Healthy { pid: Some(4321) },
                "inventory is healthy again (pid 4321)",
            ),
            (Event::Healthy { pid: None }, "inventory is healthy again"),
        ];
        for (event, line) in table {
            assert_eq!(restart_line(Service::Inventory, &event), line);
        }
    }
}
