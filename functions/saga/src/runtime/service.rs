//! What every service does around its router: read config, set up logging, build its
//! clients once, listen, and stop cleanly.

use crate::contract::Service;
use crate::gcp::Clients;
use crate::runtime::config::Config;
use crate::runtime::server;
use crate::runtime::telemetry;
use anyhow::Context as _;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::net::TcpListener;

/// Builds a service's router from its clients and its configuration.
pub type RouterFn = fn(Clients, &Config) -> Router;

/// Builds the clients `config` asks for.
async fn connect(config: &Config) -> anyhow::Result<Clients> {
    Clients::connect(
        config.service,
        &config.pubsub,
        &config.firestore,
        &config.push_auth,
    )
    .await
}

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
    let clients = connect(&config).await?;
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, project = config.project(), "{} listening", config.service);
    server::serve(listener, router(clients, &config), shutdown)
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
        let clients = connect(config).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(server::serve(listener, router(clients.clone(), config), shutdown));
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
