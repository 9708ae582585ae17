//! The `sagactl` binary: parses the command line and hands it to [`sagactl::cli::run`].

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs only when asked for: the report is the output.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = sagactl::cli::Cli::parse();
    sagactl::cli::run(cli, &mut std::io::stdout().lock()).await.into()
}
