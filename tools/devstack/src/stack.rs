//! The `devstack` commands.

use anyhow::Context as _;
use devstack::emulators::{self, Emulators};
use devstack::{pubsub, router_of, seed};
use saga::contract::{PUSH_POLICY, Service};
use saga::gcp::store::FirestoreTarget;
use saga::gcp::store::Store;
use saga::runtime::config::env;
use std::io::IsTerminal as _;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

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

    say("creating topics and subscriptions");
    pubsub::provision(
        &emulators.pubsub_endpoint(),
        &args.project,
        |service| format!("http://127.0.0.1:{}", service.local_port()),
        &PUSH_POLICY,
    )
    .await?;

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

    let mut children = Vec::new();
    // Each service stops when its stdin closes. The pipes are held here, apart from the
    // `Child` values, because waiting on a `Child` closes its stdin.
    let mut lifelines = Vec::new();
    for (i, service) in Service::ALL.into_iter().enumerate() {
        let mut child = spawn_service(service, &args.project, &emulators, COLOURS[i % COLOURS.len()])?;
        lifelines.push(child.stdin.take());
        children.push(child);
    }
    wait_healthy().await?;
    print_banner(&args.project, &emulators);

    let outcome = tokio::select! {
        () = saga::runtime::server::shutdown_signal() => Ok(()),
        (exited, i, _) = futures::future::select_all(children.iter_mut().map(|c| Box::pin(c.wait()))) => {
            Err(anyhow::anyhow!("{} exited unexpectedly ({:?})", Service::ALL[i], exited))
        }
    };
    say("stopping the services");
    for child in &mut children {
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }
    for child in &mut children {
        if tokio::time::timeout(Duration::from_secs(12), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    if emulators.started {
        say("stopping the emulators");
    }
    tokio::task::spawn_blocking(move || emulators.stop()).await?;
    drop(lifelines);
    outcome
}

fn spawn_service(
    service: Service,
    project: &str,
    emulators: &Emulators,
    colour: &str,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding the devstack binary")?;
    // LOG_FORMAT=json shows the lines Cloud Logging would get, one JSON object per line and
    // unprefixed (each names its service), ready for `jq`; text is the default here.
    let log_format = std::env::var(env::LOG_FORMAT).unwrap_or_else(|_| "text".to_owned());
    let mut child = Command::new(exe)
        .arg("serve")
        .arg(service.name())
        .env(env::PORT, service.local_port().to_string())
        .env(env::PROJECT_ID, project)
        .env(env::PUBSUB_EMULATOR_HOST, &emulators.pubsub)
        .env(env::FIRESTORE_EMULATOR_HOST, &emulators.firestore)
        .env(env::LOG_FORMAT, &log_format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {service}"))?;
    let prefix = if log_format == "json" {
        String::new()
    } else if std::io::stderr().is_terminal() {
        format!("{colour}{:<9}|{RESET} ", service.name())
    } else {
        format!("{:<9} | ", service.name())
    };
    if let Some(out) = child.stdout.take() {
        tokio::spawn(relay(out, prefix.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(relay(err, prefix));
    }
    Ok(child)
}

async fn relay(stream: impl AsyncRead + Unpin, prefix: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{prefix}{line}");
    }
}

async fn wait_healthy() -> anyhow::Result<()> {
    for service in Service::ALL {
        let host = format!("127.0.0.1:{}", service.local_port());
        let mut tries = 0;
        while !tokio::task::spawn_blocking({
            let host = host.clone();
            move || health_ok(&host)
        })
        .await?
        {
            tries += 1;
            anyhow::ensure!(tries < 200, "{service} did not become healthy on {host}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn health_ok(host: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        saga::runtime::server::HEALTH_PATH
    );
    let mut response = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

fn print_banner(project: &str, emulators: &Emulators) {
    let mut lines = vec![String::new(), "the saga is running:".to_owned()];
    for service in Service::ALL {
        lines.push(format!(
            "  {:<10} http://127.0.0.1:{}",
            service.name(),
            service.local_port()
        ));
    }
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

/// `devstack serve SERVICE`: one service, stopped by SIGTERM, Ctrl-C, or its parent's end
/// (stdin closing), so that no service outlives a `devstack` that was killed.
pub async fn serve(service: Service) -> ExitCode {
    // A plain thread, not tokio's stdin: a read blocked in tokio's blocking pool would keep
    // the runtime, and so the process, from ever exiting.
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = gone_tx.send(());
    });
    let parent_gone = async {
        let _ = gone_rx.await;
    };
    let shutdown = async move {
        tokio::select! {
            () = saga::runtime::server::shutdown_signal() => {},
            () = parent_gone => {},
        }
    };
    saga::runtime::service::main_until(service, router_of(service), shutdown).await
}
