//! The saga as the benchmark runs it: the five release (or debug) binaries as separate
//! processes on loopback, on emulators started for this benchmark alone, in a project of
//! its own, so nothing else on the machine shares its topics, documents or stock.
//!
//! Pushes reach the workers as `--push` says (see [`crate::delivery`]): by default through
//! the GCP-like deliverer and a Cloud Run front end per worker, with the workers configured
//! as on Cloud Run behind invoker IAM; or by the emulator's own push.
//!
//! Processes are started one at a time, so that the time from spawn to the first healthy
//! answer is each service's own and not five competing for two cores. They run under
//! [`devstack::process`], so they stop with the bench however it ends, SIGKILL included.

use crate::delivery::{self, Push};
use crate::procfs;
use anyhow::{Context as _, bail};
use devstack::gcp_like::{self, GcpLike};
use devstack::process::{self, Output, Probe, Spec};
use devstack::pubsub::Pusher;
use saga::contract::{PUSH_POLICY, Service, collections};
use saga::gcp::store::FirestoreTarget;
use saga::gcp::store::{DocPath, Store};
use saga::runtime::config::env;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a service may take to answer its health check before the benchmark gives up.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a starting service is asked whether it is healthy: fine enough to measure a
/// 50 ms budget.
const HEALTH_POLL: Duration = Duration::from_millis(2);

/// The directory holding the service binaries: the bench's own (`target/release` or
/// `target/debug`), so that a release bench measures release services.
pub fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench binary")?;
    let dir = exe
        .parent()
        .context("the bench binary has no directory")?
        .to_path_buf();
    let missing: Vec<&str> = Service::ALL
        .iter()
        .map(|s| s.name())
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the service binaries {} are not in {} (next to the bench binary): run `cargo build --release --bins` first (or `cargo build --bins` for a debug bench)",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(dir)
}

/// A free loopback port. Released again for the service to take; another process could
/// grab it in between, which shows up as a service that never becomes healthy.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// A project id no earlier run used, so that every run starts with empty subscriptions.
pub fn fresh_project(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The documents a benchmark project starts with: the original's users, and stock.
pub fn seed_documents(widget_and_wotsit: i64, hot: i64) -> Vec<(DocPath, Value)> {
    let mut docs: Vec<(DocPath, Value)> = devstack::seed::seed_documents()
        .into_iter()
        .filter(|(path, _)| !path.as_str().starts_with(collections::INVENTORY))
        .collect();
    for (item, price) in crate::orders::ITEMS {
        docs.push((
            DocPath::new([collections::INVENTORY, item]),
            json!({ "quantity": widget_and_wotsit, "price_per_unit": price }),
        ));
    }
    let (item, price) = crate::orders::HOT_ITEM;
    docs.push((
        DocPath::new([collections::INVENTORY, item]),
        json!({ "quantity": hot, "price_per_unit": price }),
    ));
    docs
}

/// The stock level of `item`.
pub async fn stock(store: &Store, item: &str) -> anyhow::Result<i64> {
    store
        .get(&DocPath::new([collections::INVENTORY, item]))
        .await?
        .and_then(|s| s.integer(saga::engine::records::inventory_fields::QUANTITY))
        .with_context(|| format!("inventory/{item} has no quantity"))
}

/// One service process.
#[derive(Debug)]
pub struct Process {
    /// Which service.
    pub service: Service,
    /// Its process id.
    pub pid: u32,
    /// Its port.
    pub port: u16,
    /// Fork to first healthy answer, for each start (the last one is the running process).
    pub startup: Vec<Duration>,
    /// Size of its binary.
    pub binary_bytes: u64,
    /// Its log file.
    pub log: PathBuf,
    child: process::Child,
}

/// The running saga.
#[derive(Debug)]
pub struct Stack {
    /// The project on the emulators.
    pub project: String,
    /// Firestore of the project, for stock.
    pub store: Store,
    /// The five services, in saga order (of each worker, its first instance).
    pub processes: Vec<Process>,
    /// With GCP-like delivery, each worker's other instances: Cloud Run runs up to
    /// [`gcp_like::INSTANCES`] of it, each a process with its own memory.
    pub more_instances: Vec<Process>,
    /// Where the services' logs are.
    pub log_dir: PathBuf,
    /// `RUST_LOG` of the services.
    service_log: String,
    /// Who delivers the pushes.
    push: Push,
    /// The GCP-like delivery, unless the emulator pushes.
    pub gcp: Option<GcpLike>,
}

/// Where the emulators are.
#[derive(Clone, Debug)]
pub struct EmulatorHosts {
    /// `host:port` of Pub/Sub.
    pub pubsub: String,
    /// `host:port` of Firestore.
    pub firestore: String,
}

impl EmulatorHosts {
    /// `http://` endpoint of Pub/Sub.
    pub fn pubsub_endpoint(&self) -> String {
        format!("http://{}", self.pubsub)
    }
}

impl Stack {
    /// Provisions and seeds a fresh project, starts delivering pushes as `push` says (with
    /// `seed` for the GCP-like deliverer's decisions), then starts the five services, each
    /// `startup_samples` times (all but the last start are stopped again at once).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        hosts: &EmulatorHosts,
        bin_dir: &Path,
        log_dir: &Path,
        docs: &[(DocPath, Value)],
        startup_samples: usize,
        service_log: &str,
        push: Push,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let project = fresh_project("bench");
        let mut ports: BTreeMap<Service, Vec<u16>> = BTreeMap::new();
        for service in Service::ALL {
            let instances = if push == Push::Gcp && service.takes_pushes() {
                gcp_like::INSTANCES
            } else {
                1
            };
            for _ in 0..instances {
                ports.entry(service).or_default().push(free_port()?);
            }
        }
        let url = |port: &u16| format!("http://127.0.0.1:{port}");
        let worker_url = |s: Service| url(&ports[&s][0]);
        let pusher = match push {
            Push::Gcp => Pusher::Pulled,
            Push::Emulator => Pusher::Emulator,
        };
        devstack::pubsub::provision_for(
            &hosts.pubsub_endpoint(),
            &project,
            worker_url,
            &PUSH_POLICY,
            pusher,
        )
        .await
        .context("creating the topics and subscriptions")?;
        let store = Store::connect(&FirestoreTarget {
            project: project.clone(),
            emulator_host: Some(hosts.firestore.clone()),
        })
        .await?;
        devstack::seed::seed(&store, docs).await.context("seeding")?;

        let mut stack = Stack {
            project,
            store,
            processes: Vec::new(),
            more_instances: Vec::new(),
            log_dir: log_dir.to_path_buf(),
            service_log: service_log.to_owned(),
            push,
            gcp: None,
        };
        for service in Service::ALL {
            for (instance, &port) in ports[&service].iter().enumerate() {
                // Start-up is timed on the first instance only.
                let samples = if instance == 0 { startup_samples.max(1) } else { 1 };
                let process = stack
                    .start_service(service, instance, hosts, bin_dir, port, samples)
                    .await?;
                if instance == 0 {
                    stack.processes.push(process);
                } else {
                    stack.more_instances.push(process);
                }
            }
        }
        // Only now that every service holds its port: the front ends take free ports of
        // their own, which could otherwise be one chosen above for a service.
        if push == Push::Gcp {
            stack.gcp = Some(
                GcpLike::start(
                    &hosts.pubsub_endpoint(),
                    &stack.project,
                    |s| ports[&s].iter().map(url).collect(),
                    &PUSH_POLICY,
                    delivery::settings(seed),
                )
                .await
                .context("starting the GCP-like delivery")?,
            );
        }
        Ok(stack)
    }

    async fn start_service(
        &self,
        service: Service,
        instance: usize,
        hosts: &EmulatorHosts,
        bin_dir: &Path,
        port: u16,
        samples: usize,
    ) -> anyhow::Result<Process> {
        let binary = bin_dir.join(service.name());
        let binary_bytes = std::fs::metadata(&binary)
            .with_context(|| format!("reading {}", binary.display()))?
            .len();
        let log_path = self.log_path(service, instance);
        let log = Output::Append(log_path.clone());
        let mut spec = Spec::new(&binary)
            .env(env::PORT, port.to_string())
            .env(env::PROJECT_ID, &self.project)
            .env(env::PUBSUB_EMULATOR_HOST, &hosts.pubsub)
            .env(env::FIRESTORE_EMULATOR_HOST, &hosts.firestore)
            .env(env::LOG_FORMAT, "text")
            .env(env::RUST_LOG, &self.service_log)
            .stdout(log.clone())
            .stderr(log);
        // Settings from the caller's shell that would change what runs (Cloud Run mode,
        // push verification) or where it connects.
        for var in [
            env::K_SERVICE,
            env::GOOGLE_CLOUD_PROJECT,
            env::PUSH_AUDIENCE,
            env::PUSH_SERVICE_ACCOUNT,
            env::PUSH_AUTH,
        ] {
            spec = spec.env_remove(var);
        }
        // Behind a front end, a worker runs as on Cloud Run behind invoker IAM; under the
        // emulator's push, as the devstack runs it.
        spec = spec.env_remove(env::SHARED_WRITE_GAP);
        let extra = match self.push {
            Push::Gcp if service.takes_pushes() => gcp_like::worker_env(&self.project, service),
            Push::Gcp => Vec::new(),
            Push::Emulator => devstack::pubsub::emulator_push_env(service),
        };
        for (var, value) in extra {
            spec = spec.env(var, value);
        }
        // Built before the clock starts, so that only the service's start is timed.
        let probe = Probe::new(format!(
            "http://127.0.0.1:{port}{}",
            saga::runtime::server::HEALTH_PATH
        ))?
        .every(HEALTH_POLL)
        .timeout(HEALTH_TIMEOUT);
        let mut startup = Vec::new();
        for sample in 0..samples {
            let child = spec.spawn()?;
            if let Err(e) = child.wait_healthy(&probe).await {
                bail!("{service}: {e} (its log: {})", log_path.display());
            }
            // From the fork of the service's process, not from the spawn of the shell that
            // ties it to the bench: that shell is the bench's cost, not the service's.
            startup.push(child.started().elapsed());
            if sample + 1 == samples {
                return Ok(Process {
                    service,
                    pid: child.pid().context("the service's pid is unknown")?,
                    port,
                    startup,
                    binary_bytes,
                    log: log_path,
                    child,
                });
            }
            child.kill().await?;
            // The port must be free again before the next start.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        unreachable!("samples is at least 1")
    }

    /// The log file of `service`'s `instance` (counted from 0): `{service}.log` for the
    /// first, `{service}-2.log` and on for the others.
    fn log_path(&self, service: Service, instance: usize) -> PathBuf {
        if instance == 0 {
            self.log_dir.join(format!("{service}.log"))
        } else {
            self.log_dir.join(format!("{service}-{}.log", instance + 1))
        }
    }

    /// Every process: each service's first instance, then the workers' other instances.
    pub fn all_processes(&self) -> impl Iterator<Item = &Process> {
        self.processes.iter().chain(&self.more_instances)
    }

    /// `http://…/order` of the frontend.
    pub fn order_url(&self) -> String {
        let frontend = self
            .processes
            .iter()
            .find(|p| p.service == Service::Frontend)
            .map_or(0, |p| p.port);
        format!("http://127.0.0.1:{frontend}/order")
    }

    /// Each service's pid (of its first instance).
    pub fn pids(&self) -> Vec<(Service, u32)> {
        self.processes.iter().map(|p| (p.service, p.pid)).collect()
    }

    /// Each service's pids, of every instance.
    pub fn all_pids(&self) -> Vec<(Service, Vec<u32>)> {
        Service::ALL
            .into_iter()
            .map(|service| {
                let pids = self
                    .all_processes()
                    .filter(|p| p.service == service)
                    .map(|p| p.pid)
                    .collect();
                (service, pids)
            })
            .collect()
    }

    /// Stops delivering, then stops the services with SIGTERM, as Cloud Run does, and waits
    /// for them (SIGKILL for any still running after the deadline).
    pub async fn stop(mut self) {
        if let Some(gcp) = self.gcp.take() {
            gcp.stop().await;
        }
        futures::future::join_all(self.all_processes().map(|p| p.child.stop(process::STOP_DEADLINE))).await;
    }
}

/// Resident memory of each process, sampled until stopped; the maximum is kept.
#[derive(Debug)]
pub struct RssSampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<BTreeMap<u32, u64>>,
}

impl RssSampler {
    /// Samples `pids` every `every`.
    pub fn start(pids: Vec<u32>, every: Duration) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut max = BTreeMap::new();
            let mut tick = tokio::time::interval(every);
            while !*stopped.borrow() {
                tick.tick().await;
                for &pid in &pids {
                    if let Some(rss) = procfs::rss(pid) {
                        let m = max.entry(pid).or_insert(0);
                        *m = rss.max(*m);
                    }
                }
            }
            max
        });
        RssSampler { stop, task }
    }

    /// Stops sampling; the largest resident size seen per pid.
    pub async fn finish(self) -> BTreeMap<u32, u64> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}
