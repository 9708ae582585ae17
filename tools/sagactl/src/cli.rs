//! The command line: the arguments (clap), the exit codes, and [`run`], which connects,
//! runs one command and writes its report, as text for people or as one JSON document
//! (`--json`) for scripts.

use crate::{connect, discard, format, letters, redrive, show, stock, stuck, sweep};
use clap::{Parser, Subcommand};
use saga::domain::{ItemName, SagaId};
use saga::runtime::config::Config;
use serde::Serialize;
use std::fmt::Display;
use std::io::Write;
use std::time::Duration;

/// How `sagactl` ends: its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done; nothing needs attention.
    Ok = 0,
    /// Pub/Sub or Firestore could not be reached, or refused a call (or a redrive's publish
    /// or ack, or a discard's ack, failed, or the sweep could not list the open sagas).
    Error = 1,
    /// The command line is wrong (clap's own code for it).
    Usage = 2,
    /// Something needs a person: stuck sagas, dead letters waiting, letters a redrive
    /// refused or did not find, letters a discard did not find, a stock change refused,
    /// sagas a sweep could not end.
    Attention = 3,
    /// `show`: no such saga; `stock`: no such item.
    NotFound = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// The exit codes, as `--help` lists them (docs/operations.md says the same).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done; nothing needs attention
  1  Pub/Sub or Firestore could not be reached or refused a call (or a redrive's publish
     or ack, or a discard's ack, failed, or the sweep could not list the open sagas)
  2  usage error (reported on stderr, also with --json)
  3  something needs a person: `stuck` found stuck sagas, `dead-letters` found letters,
     `redrive` refused or did not find some of the letters asked for (left on dead-letter-sub),
     `discard` did not find some of the letters asked for, `stock` refused a change (or
     found no integer level),
     `sweep` could not end some of the sagas it found (the next sweep tries again)
  4  `show`: no such saga; `stock`: no such item

Connects to the emulators when PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST are set,
and to Google Cloud with Application Default Credentials when neither is.";

/// `sagactl`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "sagactl",
    version,
    about = "The saga operator's command: look into sagas and dead letters, redrive or discard them, change stock, sweep",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The Google Cloud project (on the emulators, the project the stack runs in).
    #[arg(long, env = "PROJECT_ID", global = true)]
    pub project: Option<String>,
    /// Write one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A saga: its timeline, each step's record and whether its message went out, and the
    /// messages stored. Exits 4 if there is no such saga.
    Show {
        /// The saga's uuid.
        #[arg(value_parser = parse_uuid)]
        uuid: SagaId,
    },
    /// Unfinished sagas begun more than --older-than ago: where each stopped, and for how
    /// long. Exits 3 if there are any.
    Stuck {
        /// How long ago a saga must have begun to count (90s, 10m, 1h30m, 2d); by default
        /// the default saga deadline, longer than Pub/Sub's retries of one message.
        #[arg(long, default_value = "10m", value_parser = format::parse_duration)]
        older_than: Duration,
        /// Look at no more than this many open sagas: the oldest begun before the cutoff.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// The letters waiting on dead-letter-sub, each left there: why, from where, which saga,
    /// how old. Exits 3 if there are any.
    DeadLetters {
        /// Read no more than this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Stop reading when none came for this long.
        #[arg(long, default_value = "3s", value_parser = format::parse_duration)]
        wait: Duration,
    },
    /// Send dead letters back to the topic they came from, then take them off
    /// dead-letter-sub. Letters whose origin cannot be told are refused and left there
    /// (exit 3). Safe to repeat: every step is idempotent.
    Redrive {
        /// The letters to redrive, by message id (as `dead-letters` lists them).
        #[arg(long = "message-id", value_name = "ID", num_args = 1.., required_unless_present = "all", conflicts_with = "all")]
        message_ids: Vec<String>,
        /// Every letter read.
        #[arg(long)]
        all: bool,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read no more than this many letters.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Stop reading when none came for this long.
        #[arg(long, default_value = "3s", value_parser = format::parse_duration)]
        wait: Duration,
    },
    /// Take dead letters off dead-letter-sub for good, once read: those nothing should be
    /// done with (a forgery, a letter published there by hand). Changes no saga: the
    /// janitor acted on its own copy. Exits 3 if a letter asked for was not found.
    Discard {
        /// The letters to discard, by message id (as `dead-letters` lists them).
        #[arg(long = "message-id", value_name = "ID", num_args = 1.., required = true)]
        message_ids: Vec<String>,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read no more than this many letters.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Stop reading when none came for this long.
        #[arg(long, default_value = "3s", value_parser = format::parse_duration)]
        wait: Duration,
    },
    /// An item's stock level, or a change to it made safely while sales go on: `--add N`
    /// units, or `--remove N` (never below zero). Never type a level into the Firestore
    /// console: a sale that lands meanwhile is undone and its units sold twice. Exits 4 if
    /// there is no such item, 3 if the change was refused or the level is not an integer.
    Stock(StockArgs),
    /// Run the janitor's sweep now: end the open sagas past their deadline, each the safe
    /// way (relay its last message, or compensate it), as Cloud Scheduler's call to
    /// POST /sweep does every minute. Exits 3 if it could not end some of them.
    Sweep {
        /// Decide, and report, but change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long a saga may run before the sweep ends it: the janitor's `SAGA_DEADLINE`
        /// (8m or more).
        #[arg(long, env = "SAGA_DEADLINE", default_value = "10m", value_parser = parse_deadline)]
        deadline: Duration,
        /// Look at no more than this many sagas, going on from where the last sweep stopped
        /// (then from the oldest); the next sweep takes the rest.
        #[arg(long, default_value_t = saga::contract::sweep::MOST, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
}

/// `stock`'s arguments.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("change").args(["add", "remove"]))]
pub struct StockArgs {
    /// The item (the id of its `inventory/{item}` document).
    #[arg(value_parser = parse_item)]
    pub item: ItemName,
    /// Units to add.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub add: Option<u32>,
    /// Units to take away.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub remove: Option<u32>,
    /// Why, kept with the change in `inventory/{item}/stock-changes/{id}`.
    #[arg(long, requires = "change", value_parser = parse_reason)]
    pub reason: Option<String>,
    /// Run again a change whose commit failed without saying whether it applied (the id
    /// its error printed): made only if it was not.
    #[arg(long, value_name = "ID", requires = "change", value_parser = parse_change_id)]
    pub change_id: Option<uuid::Uuid>,
    /// Say what the change would do; change nothing.
    #[arg(long, requires = "change")]
    pub dry_run: bool,
}

impl StockArgs {
    /// What the arguments ask of the stock; a change without `--change-id` gets a new id.
    fn request(self) -> stock::Request {
        stock::Request {
            item: self.item,
            change: self
                .add
                .map(stock::Change::Add)
                .or(self.remove.map(stock::Change::Remove)),
            reason: self.reason,
            id: self.change_id.unwrap_or_else(uuid::Uuid::new_v4),
            dry_run: self.dry_run,
        }
    }
}

/// A saga deadline: as `--older-than` reads durations, or as the janitor reads
/// `SAGA_DEADLINE` (`600s`, `10min`), so that the janitor's own setting is always taken.
fn parse_deadline(text: &str) -> Result<Duration, String> {
    let deadline =
        format::parse_duration(text).or_else(|e| humantime::parse_duration(text.trim()).map_err(|_| e))?;
    if deadline < saga::contract::sweep::MIN_DEADLINE {
        return Err(format!(
            "`{text}` is shorter than Pub/Sub's retries of one message ({} minutes): the sweep would end sagas that are still running",
            saga::contract::sweep::MIN_DEADLINE.as_secs() / 60
        ));
    }
    Ok(deadline)
}

fn parse_item(text: &str) -> Result<ItemName, String> {
    ItemName::parse(text).map_err(|e| e.to_string())
}

fn parse_reason(text: &str) -> Result<String, String> {
    let most = stock::MAX_REASON_CHARS;
    if text.chars().count() > most || text.chars().any(char::is_control) {
        return Err(format!("a reason is one line of at most {most} characters"));
    }
    Ok(text.to_owned())
}

fn parse_change_id(text: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(text).map_err(|_| format!("`{text}` is not a change id (a uuid)"))
}

fn parse_uuid(text: &str) -> Result<SagaId, String> {
    SagaId::parse(text).ok_or_else(|| format!("`{text}` is not a saga uuid"))
}

/// Runs the command `cli` names, writing its report to `out`; errors go to stderr (and, with
/// `--json`, to `out` as `{"error": ...}`, so that a script always gets one document).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Exit {
    let Some(project) = cli.project.filter(|p| !p.trim().is_empty()) else {
        eprintln!("sagactl: name the project with --project or PROJECT_ID");
        return Exit::Usage;
    };
    let config = match connect::config(&project, |key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sagactl: {e}");
            return Exit::Usage;
        }
    };
    let json = cli.json;
    dispatch(cli.command, &config, json, out)
        .await
        .unwrap_or_else(|e: anyhow::Error| {
            let error = format!("{}: {e:#}", connect::describe(&config));
            eprintln!("sagactl: {error}");
            if json {
                emit(out, &serde_json::json!({ "error": error }).to_string());
            }
            Exit::Error
        })
}

/// Runs `command` against `config`, writing its report to `out`: the exit code, or the error
/// that kept it from running.
async fn dispatch(
    command: Command,
    config: &Config,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    match command {
        Command::Show { uuid } => {
            let shown = show::show(&connect::store(config).await?, uuid).await?;
            let exit = if shown.found { Exit::Ok } else { Exit::NotFound };
            Ok(write(out, json, &shown, exit))
        }
        Command::Stuck { older_than, limit } => {
            let options = stuck::Options { older_than, limit };
            let now = saga::engine::status::now_micros();
            let report = stuck::stuck(&connect::store(config).await?, options, now).await?;
            let exit = verdict(false, !report.stuck.is_empty());
            Ok(write(out, json, &report, exit))
        }
        Command::DeadLetters { limit, wait } => {
            let options = letters::Options {
                limit: usize::try_from(limit)?,
                wait,
            };
            let puller = connect::puller(config).await?;
            let report = letters::list(&puller, config.project(), options).await?;
            let exit = verdict(false, !report.letters.is_empty());
            Ok(write(out, json, &report, exit))
        }
        Command::Redrive {
            message_ids,
            all,
            dry_run,
            limit,
            wait,
        } => {
            let options = redrive::Options {
                selection: if all {
                    letters::Selection::All
                } else {
                    letters::Selection::Ids(message_ids)
                },
                dry_run,
                limit: usize::try_from(limit)?,
                wait,
            };
            let (puller, bus) = (connect::puller(config).await?, connect::bus(config).await?);
            let report = redrive::redrive(&puller, &bus, config.project(), &options).await?;
            let exit = verdict(report.failed(), report.left_for_people());
            Ok(write(out, json, &report, exit))
        }
        Command::Discard {
            message_ids,
            dry_run,
            limit,
            wait,
        } => {
            let options = discard::Options {
                message_ids,
                dry_run,
                limit: usize::try_from(limit)?,
                wait,
            };
            let puller = connect::puller(config).await?;
            let report = discard::discard(&puller, config.project(), &options).await?;
            let exit = verdict(report.failed(), report.left_for_people());
            Ok(write(out, json, &report, exit))
        }
        Command::Stock(args) => {
            let report = stock::stock(&connect::store(config).await?, &args.request()).await?;
            let exit = if report.outcome == stock::Outcome::NotFound {
                Exit::NotFound
            } else {
                verdict(false, report.needs_a_person())
            };
            Ok(write(out, json, &report, exit))
        }
        Command::Sweep {
            dry_run,
            deadline,
            limit,
        } => {
            let options = janitor::sweep::Options {
                deadline,
                dry_run,
                limit,
                ..janitor::sweep::Options::new(deadline)
            };
            let report = sweep::sweep(&connect::clients(config).await?, &options).await?;
            let exit = verdict(false, sweep::needs_attention(&report));
            Ok(write(out, json, &report, exit))
        }
    }
}

/// The exit code of a command that `failed` (a call refused), or found something that
/// `needs_a_person`.
fn verdict(failed: bool, needs_a_person: bool) -> Exit {
    if failed {
        Exit::Error
    } else if needs_a_person {
        Exit::Attention
    } else {
        Exit::Ok
    }
}

/// Writes `report` as `json` says, and ends with `exit`.
fn write<T: Display + Serialize>(out: &mut dyn Write, json: bool, report: &T, exit: Exit) -> Exit {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => emit(out, &text),
            Err(e) => {
                eprintln!("sagactl: writing the report as JSON: {e}");
                return Exit::Error;
            }
        }
    } else {
        emit(out, report.to_string().trim_end());
    }
    exit
}

fn emit(out: &mut dyn Write, text: &str) {
    // A closed stdout (`sagactl ... | head`) is no reason to change the exit code.
    let _ = writeln!(out, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_command_line_reads_as_documented() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["sagactl"], args].concat());
        let cases: &[(&[&str], bool)] = &[
            (&["show", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"], true),
            (&["show", "not-a-uuid"], false),
            (&["stuck"], true),
            (
                &["stuck", "--older-than", "1h30m", "--limit", "5", "--json"],
                true,
            ),
            (&["stuck", "--older-than", "soon"], false),
            (&["stuck", "--limit", "0"], false),
            (&["dead-letters", "--limit", "10", "--project", "p"], true),
            (&["redrive", "--message-id", "1", "2"], true),
            (
                &["redrive", "--message-id", "1", "--message-id", "2", "--dry-run"],
                true,
            ),
            (&["redrive", "--all"], true),
            (&["redrive"], false),
            (&["redrive", "--all", "--message-id", "1"], false),
            (&["discard", "--message-id", "1", "2", "--dry-run"], true),
            (
                &["discard", "--message-id", "1", "--limit", "10", "--wait", "1s"],
                true,
            ),
            (&["discard"], false),
            (&["discard", "--all"], false),
            (&["discard", "--message-id"], false),
            (&["stock", "widget"], true),
            (&["stock", "widget", "--add", "50", "--dry-run"], true),
            (&["stock", "widget", "--remove", "3", "--json"], true),
            (&["stock", "widget", "--add", "1", "--remove", "1"], false),
            (&["stock", "widget", "--add", "0"], false),
            (&["stock", "widget", "--add", "-3"], false),
            (&["stock", "widget", "--dry-run"], false),
            (
                &[
                    "stock",
                    "widget",
                    "--add",
                    "5",
                    "--reason",
                    "delivery 42",
                    "--change-id",
                    "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                ],
                true,
            ),
            (&["stock", "widget", "--reason", "why"], false),
            (&["stock", "widget", "--add", "5", "--change-id", "x"], false),
            (
                &["stock", "widget", "--add", "5", "--reason", "two\nlines"],
                false,
            ),
            (&["stock", "a/b"], false),
            (&["stock"], false),
            (&["sweep"], true),
            (&["sweep", "--dry-run", "--deadline", "10m", "--limit", "5"], true),
            (&["sweep", "--deadline", "10min"], true),
            (&["sweep", "--deadline", "30s"], false),
            (&["sweep", "--deadline", "7m"], false),
            (&["sweep", "--deadline", "479s"], false),
            (&["sweep", "--deadline", "480s"], true),
            (&["sweep", "--deadline", "soon"], false),
            (&["sweep", "--limit", "0"], false),
            (&["swept"], false),
        ];
        for (args, ok) in cases {
            assert_eq!(parse(args).is_ok(), *ok, "{args:?}");
        }
        let Ok(Cli {
            command: Command::Redrive { message_ids, all, .. },
            ..
        }) = parse(&["redrive", "--message-id", "1", "2"])
        else {
            panic!("redrive parses");
        };
        assert_eq!((message_ids, all), (vec!["1".to_owned(), "2".to_owned()], false));
    }

    #[test]
    fn each_exit_code_is_its_documented_number() {
        for (exit, code) in [
            (Exit::Ok, 0),
            (Exit::Error, 1),
            (Exit::Usage, 2),
            (Exit::Attention, 3),
            (Exit::NotFound, 4),
        ] {
            assert_eq!(exit as u8, code);
            assert!(
                EXIT_CODES.contains(&format!("  {code}  ")),
                "{code} is documented"
            );
        }
    }

    #[test]
    fn sweep_and_stuck_default_to_the_janitors_default_deadline() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["sagactl"], args].concat());
        if std::env::var_os("SAGA_DEADLINE").is_none() {
            let Ok(Cli {
                command: Command::Sweep { deadline, .. },
                ..
            }) = parse(&["sweep"])
            else {
                panic!("sweep parses");
            };
            assert_eq!(
                deadline,
                saga::contract::sweep::DEFAULT_DEADLINE,
                "the janitor's default"
            );
        }
        let Ok(Cli {
            command: Command::Stuck { older_than, .. },
            ..
        }) = parse(&["stuck"])
        else {
            panic!("stuck parses");
        };
        assert_eq!(
            older_than,
            saga::contract::sweep::DEFAULT_DEADLINE,
            "stuck means past the default deadline"
        );
    }
}
