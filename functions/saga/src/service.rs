//! What every service does around its router: read config, set up logging, build its
//! clients once, listen, and stop cleanly.

use crate::auth::PushVerifier;
use crate::bus::Bus;
use crate::config::{Config, OrderList, PushAuth};
use crate::contract::Service;
use crate::faults::Faults;
use crate::server;
use crate::store::Store;
use crate::telemetry;
use anyhow::Context as _;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The clients a service uses, built once at start-up and shared by every request.
#[derive(Clone, Debug)]
pub struct Clients {
    /// Which service this is.
    pub service: Service,
    /// The project.
    pub project: String,
    /// Firestore.
    pub store: Store,
    /// Publishers for the service's topics.
    pub bus: Bus,
    /// Test hooks (inert unless a test sets them).
    pub faults: Faults,
    /// Checks that pushes come from Pub/Sub; `None` when verification is off.
    pub push_verifier: Option<Arc<PushVerifier>>,
    /// Whether the frontend lists everyone's sagas at `GET /orders`.
    pub order_list: OrderList,
}

impl Clients {
    /// Connects to Firestore and Pub/Sub as `config` says.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let faults = Faults::default();
        let push_verifier = PushVerifier::from_config(&config.push_auth).map(Arc::new);
        match (&config.push_auth, config.service.takes_pushes()) {
            (_, false) => {}
            (PushAuth::Off, true) => tracing::warn!(
                push_auth = "off",
                "push token verification is OFF: any caller can drive this service. Fine for the local \
                 emulators, which send no tokens; on Cloud Run set PUSH_AUTH, PUSH_AUDIENCE and \
                 PUSH_SERVICE_ACCOUNT"
            ),
            (PushAuth::CloudRunIam { expected, .. }, true) => tracing::info!(
                push_auth = "cloud-run-iam",
                audience = %expected.audience,
                service_account = %expected.service_account,
                "push tokens: Cloud Run checks their signature and run.invoker; this worker takes only \
                 tokens Cloud Run stripped, and checks their claims"
            ),
            (PushAuth::Signature { expected, .. }, true) => tracing::info!(
                push_auth = "signature",
                audience = %expected.audience,
                service_account = %expected.service_account,
                "push tokens: this worker verifies their signature against Google's keys, and their claims"
            ),
        }
        Ok(Clients {
            push_verifier,
            order_list: config.order_list,
            service: config.service,
            project: config.project().to_owned(),
            store: Store::connect(&config.firestore).await?,
            bus: Bus::connect(&config.pubsub, config.service, faults.clone()).await?,
            faults,
        })
    }
}

/// Builds a service's router from its clients.
pub type RouterFn = fn(Clients) -> Router;

/// The whole life of a service process: the body of each service's `main`. Stops on
/// SIGTERM or Ctrl-C.
pub async fn main(service: Service, router: RouterFn) -> ExitCode {
    main_until(service, router, server::shutdown_signal()).await
}

/// [`main`], stopping when `shutdown` completes instead.
pub async fn main_until(
    service: Service,
    router: RouterFn,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> ExitCode {
    let config = match Config::from_env(service) {
        Ok(config) => config,
        Err(e) => {
            // Logging is not set up yet: its format is part of the configuration.
            eprintln!("{service}: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(service, config.project(), config.log_format);
    match run_main(config, router, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "service failed");
            ExitCode::FAILURE
        }
    }
}

async fn run_main(
    config: Config,
    router: RouterFn,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let clients = Clients::connect(&config).await?;
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, project = config.project(), "{} listening", config.service);
    server::serve(listener, router(clients), shutdown)
        .await
        .context("serving")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A service running inside the current process, as tests start them.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its clients, for reaching its test hooks.
    pub clients: Clients,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts `router` for `config` on a free loopback port.
    pub async fn start(config: &Config, router: RouterFn) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a loopback port")?;
        Self::start_on(listener, config, router).await
    }

    /// Starts `router` for `config` on `listener`.
    pub async fn start_on(listener: TcpListener, config: &Config, router: RouterFn) -> anyhow::Result<Self> {
        let clients = Clients::connect(config).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(server::serve(listener, router(clients.clone()), shutdown));
        Ok(Running {
            addr,
            clients,
            stop: Some(stop),
            task,
        })
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking requests, waits for those in flight, and returns how serving ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("server task")?.context("serving")
    }
}
