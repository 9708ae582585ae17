//! `devstack`: the whole saga on this machine, on Google's Pub/Sub and Firestore emulators.
//!
//! `cargo run -p devstack` starts (or reuses) the emulators, creates the topics and
//! subscriptions, seeds the original's data, starts the five services with their logs
//! prefixed by name, starts again a service that exits (after a short backoff, on the same
//! port), and stops everything it started on Ctrl-C or SIGTERM.
//! `devstack seed` seeds a project, `devstack serve SERVICE` runs one service.

mod stack;

use clap::{Parser, Subcommand};
use saga::contract::Service;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Run the saga locally on the Pub/Sub and Firestore emulators")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    up: stack::UpArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write the original's seed data to Firestore, keeping documents that exist: the
    /// emulator named by `FIRESTORE_EMULATOR_HOST`, or else the real project with
    /// Application Default Credentials.
    Seed {
        /// The Google Cloud project.
        #[arg(long, env = "PROJECT_ID")]
        project: String,
    },
    /// Run one service in this process (what `up` starts each service with).
    Serve {
        /// frontend, orders, inventory, payments or janitor.
        #[arg(value_parser = parse_service)]
        service: Service,
    },
}

fn parse_service(s: &str) -> Result<Service, String> {
    Service::from_name(s).ok_or_else(|| format!("unknown service `{s}`"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => stack::up(cli.up).await,
        Some(Command::Seed { project }) => stack::seed_project(&project).await,
        Some(Command::Serve { service }) => stack::serve(service).await,
    }
}
