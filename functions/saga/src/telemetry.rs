//! Logging: readable text on a terminal, Cloud Logging JSON on Cloud Run.

use crate::config::{LogFormat, env};
use crate::contract::Service;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log levels unless `RUST_LOG` says otherwise: the saga at INFO, the chatty client
/// libraries only when something is wrong.
pub const DEFAULT_FILTER: &str =
    "info,firestore=warn,gcloud_sdk=warn,google_cloud_pubsub=warn,h2=warn,hyper=warn,tower_http=warn";

/// The filter to use: `RUST_LOG`, or [`DEFAULT_FILTER`].
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_env(env::RUST_LOG).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber for `service`. Safe to call more than once (later calls
/// do nothing), so tests that start several services in one process can all call it.
pub fn init(service: Service, format: LogFormat) {
    let registry = tracing_subscriber::registry().with(filter());
    let result = match format {
        LogFormat::Json => registry.with(tracing_stackdriver::layer()).try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service = service.name(), "logging initialised");
    }
}
