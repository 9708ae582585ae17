//! The `devstack` commands.

use anyhow::Context as _;
use devstack::emulators::{self, Emulators};
use devstack::gcp_like::{self, GcpLike};
use devstack::process::{self, Output, Probe, Spec};
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
            worker_url,
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

    let children = start_services(&args, &emulators).await?;
    let gcp = start_gcp_delivery(&args, &emulators, faults).await?;
    print_banner(&args.project, &emulators, gcp.as_ref());

    let outcome = tokio::select! {
        () = saga::runtime::server::shutdown_signal() => Ok(()),
        (i, exited) = process::first_exit(&children) => {
            let how = exited.map_or_else(|e| e.to_string(), |status| status.to_string());
            Err(anyhow::anyhow!("{} exited unexpectedly ({how})", Service::ALL[i]))
        }
    };
    if let Some(gcp) = gcp {
        gcp.stop().await;
    }
    say("stopping the services");
    futures::future::join_all(children.iter().map(|c| c.stop(process::STOP_DEADLINE))).await;
    if emulators.started {
        say("stopping the emulators");
    }
    tokio::task::spawn_blocking(move || emulators.stop()).await?;
    outcome
}

/// Starts the five services and waits until each is healthy.
async fn start_services(args: &UpArgs, emulators: &Emulators) -> anyhow::Result<Vec<process::Child>> {
    let mut children = Vec::new();
    for (i, service) in Service::ALL.into_iter().enumerate() {
        let behind_front_end = args.push == Push::Gcp && service.takes_pushes();
        let extra = if behind_front_end {
            gcp_like::worker_env(&args.project, service)
        } else {
            Vec::new()
        };
        children.push(spawn_service(
            service,
            &args.project,
            emulators,
            &extra,
            COLOURS[i % COLOURS.len()],
        )?);
    }
    for (service, child) in Service::ALL.into_iter().zip(&children) {
        let probe = Probe::new(format!(
            "http://127.0.0.1:{}{}",
            service.local_port(),
            saga::runtime::server::HEALTH_PATH
        ))?;
        child
            .wait_healthy(&probe)
            .await
            .with_context(|| format!("{service} did not become healthy"))?;
    }
    Ok(children)
}

/// With `--push gcp`: provisions pulled subscriptions and starts the front ends and the
/// deliverer, once the workers listen.
async fn start_gcp_delivery(
    args: &UpArgs,
    emulators: &Emulators,
    faults: Faults,
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
                    worker_url,
                    &PUSH_POLICY,
                    settings,
                )
                .await?,
            )
        }
    })
}

/// Where `service` listens.
fn worker_url(service: Service) -> String {
    format!("http://127.0.0.1:{}", service.local_port())
}

fn spawn_service(
    service: Service,
    project: &str,
    emulators: &Emulators,
    extra_env: &[(&'static str, String)],
    colour: &str,
) -> anyhow::Result<process::Child> {
    let exe = std::env::current_exe().context("finding the devstack binary")?;
    // LOG_FORMAT=json shows the lines Cloud Logging would get, one JSON object per line and
    // unprefixed (each names its service), ready for `jq`; text is the default here.
    let log_format = std::env::var(env::LOG_FORMAT).unwrap_or_else(|_| "text".to_owned());
    let mut spec = Spec::new(exe)
        .arg("serve")
        .arg(service.name())
        .env(env::PORT, service.local_port().to_string())
        .env(env::PROJECT_ID, project)
        .env(env::PUBSUB_EMULATOR_HOST, &emulators.pubsub)
        .env(env::FIRESTORE_EMULATOR_HOST, &emulators.firestore)
        .env(env::LOG_FORMAT, &log_format)
        .stdout(Output::Piped)
        .stderr(Output::Piped);
    for (key, value) in extra_env {
        spec = spec.env(key, value);
    }
    let mut child = spec.spawn().with_context(|| format!("starting {service}"))?;
    let prefix = if log_format == "json" {
        String::new()
    } else if std::io::stderr().is_terminal() {
        format!("{colour}{:<9}|{RESET} ", service.name())
    } else {
        format!("{:<9} | ", service.name())
    };
    if let Some(out) = child.take_stdout() {
        tokio::spawn(relay(tokio::process::ChildStdout::from_std(out)?, prefix.clone()));
    }
    if let Some(err) = child.take_stderr() {
        tokio::spawn(relay(tokio::process::ChildStderr::from_std(err)?, prefix));
    }
    Ok(child)
}

async fn relay(stream: impl AsyncRead + Unpin, prefix: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{prefix}{line}");
    }
}

fn print_banner(project: &str, emulators: &Emulators, gcp: Option<&GcpLike>) {
    let mut lines = vec![String::new(), "the saga is running:".to_owned()];
    for service in Service::ALL {
        let behind = gcp
            .and_then(|g| g.front_end(service))
            .map(|f| format!(" (pushed through its front end at {})", f.url()))
            .unwrap_or_default();
        lines.push(format!(
            "  {:<10} {}{behind}",
            service.name(),
            worker_url(service)
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
        Service::Frontend.local_port()
    ));
    lines.push("read outcomes:".to_owned());
    lines.push(format!(
        "  export CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB=http://{}/ CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true CLOUDSDK_CORE_PROJECT={project}",
        emulators.pubsub
    ));
    lines.push("  gcloud pubsub subscriptions pull payment-created-sub --auto-ack".to_owned());
    lines.push("  gcloud pubsub subscriptions pull error-cli-sub --auto-ack".to_owned());
    lines.push("stop with Ctrl-C".to_owned());
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
