//! Google's Pub/Sub and Firestore emulators: reuse running ones named by the usual
//! environment variables, or start them with the gcloud CLI.
//!
//! A started emulator is a [`process::Child`]: however this process ends (return, panic,
//! SIGKILL), gcloud's process group, the Java server included, is terminated. No emulator
//! outlives its test run.
//!
//! The Pub/Sub emulator logs every header of every REST call it serves (two lines a header)
//! and every connection it accepts, at `INFO`; gcloud relays each line into the log here and
//! again into its own log. Under load that relay cost about as much CPU as one of the saga's
//! step services (BENCHMARKS.md, "The emulator's log"), so the emulator is started with a
//! `java.util.logging` configuration ([`PUBSUB_LOGGING`]) that keeps those two loggers to
//! warnings and leaves every other line as it was. The configuration is a file the JVM
//! reads at start, so it is written into a fresh directory only this user can enter
//! (another user's file in a shared `/tmp` could make the JVM write anywhere), and removed
//! once the emulator answers.
//!
//! The API is synchronous (callers run it in `spawn_blocking`, or keep the emulators in a
//! static for a whole test binary); the health checks run on [`process::block_on`].

use crate::process::{self, Output, Probe, Spec, Unhealthy};
use anyhow::{Context as _, bail};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to install what the emulators need, shown whenever something is missing.
pub const INSTALL_HELP: &str = "\
The Pub/Sub and Firestore emulators come with the Google Cloud CLI and need a Java runtime (17+):
  - Google Cloud CLI: https://cloud.google.com/sdk/docs/install
    (Debian/Ubuntu: apt-get install google-cloud-cli)
  - the emulators: gcloud components install beta pubsub-emulator cloud-firestore-emulator
    (apt installs: apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator)
  - Java: apt-get install openjdk-17-jre-headless
Or point PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST at emulators that are already running.";

/// The Pub/Sub emulator's `java.util.logging` configuration: the JDK's defaults, but the
/// REST adapter's header lines and the connection router's lines only from `WARNING` up.
/// Push failures, request errors and the start-up lines still reach the log.
pub const PUBSUB_LOGGING: &str = "\
# Written by the devstack for the Pub/Sub emulator (java.util.logging); see emulators.rs.
handlers=java.util.logging.ConsoleHandler
.level=INFO
io.gapi.emulators.grpc.HttpAdapter.level=WARNING
io.gapi.emulators.netty.HttpVersionRoutingHandler.level=WARNING
";

/// The variable the Pub/Sub emulator's start script adds to the JVM's options.
const PUBSUB_JVM_OPTIONS: &str = "CLOUD_PUBSUB_EMULATOR_OPTS";

/// How long an emulator may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The two emulators, running.
#[derive(Debug)]
pub struct Emulators {
    /// `host:port` of the Pub/Sub emulator.
    pub pubsub: String,
    /// `host:port` of the Firestore emulator.
    pub firestore: String,
    /// Whether they were started here (and stop with this value) or reused.
    pub started: bool,
    children: Vec<process::Child>,
}

/// Where to start emulators that are not already running.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pub/Sub port; 0 for any free port.
    pub pubsub_port: u16,
    /// Firestore port; 0 for any free port.
    pub firestore_port: u16,
    /// Where the emulators' own logs go.
    pub log_dir: PathBuf,
    /// Print progress while waiting.
    pub progress: bool,
}

impl Emulators {
    /// The emulators named by `PUBSUB_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST` if both
    /// are set and answer, else new ones started as `options` says.
    pub fn reuse_or_start(options: &Options) -> anyhow::Result<Self> {
        let pubsub = std::env::var(saga::runtime::config::env::PUBSUB_EMULATOR_HOST)
            .ok()
            .filter(|h| !h.is_empty());
        let firestore = std::env::var(saga::runtime::config::env::FIRESTORE_EMULATOR_HOST)
            .ok()
            .filter(|h| !h.is_empty());
        match (pubsub, firestore) {
            (Some(pubsub), Some(firestore)) => {
                for (name, host) in [("Pub/Sub", &pubsub), ("Firestore", &firestore)] {
                    let probe = probe(host)?;
                    if let Err(e) = process::block_on(probe.check())? {
                        bail!(
                            "the {name} emulator at {host} (from the environment) does not answer ({e:#}).\n{INSTALL_HELP}"
                        );
                    }
                }
                Ok(Emulators {
                    pubsub,
                    firestore,
                    started: false,
                    children: Vec::new(),
                })
            }
            (None, None) => Self::start(options),
            _ => bail!(
                "set both PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST to reuse running emulators, or neither to start new ones"
            ),
        }
    }

    /// Starts both emulators.
    ///
    /// A port picked by the OS is released before the emulator takes it, and the JVMs bind
    /// further ports of their own while they start, so an emulator can lose its port to
    /// another process. It then exits saying `Address already in use`, and is started again
    /// on a fresh port (at most [`BIND_ATTEMPTS`] times); a port given by the caller is not
    /// replaced.
    pub fn start(options: &Options) -> anyhow::Result<Self> {
        check_prerequisites()?;
        prepare_log_dir(&options.log_dir)?;
        let kinds = [
            Kind::PubSub.launch(options.pubsub_port, &options.log_dir)?,
            Kind::Firestore.launch(options.firestore_port, &options.log_dir)?,
        ];
        let deadline = Instant::now() + START_TIMEOUT;
        let mut children = Vec::new();
        let mut hosts = Vec::new();
        for mut launch in kinds {
            if options.progress {
                print_progress(&format!(
                    "starting the {} emulator on {} ",
                    launch.kind.name(),
                    launch.host
                ));
            }
            let mut attempt = 1;
            loop {
                match launch.wait_healthy(deadline, options.progress)? {
                    Ok(()) => break,
                    Err(Unhealthy::Exited { .. })
                        if launch.requested_port == 0
                            && attempt < BIND_ATTEMPTS
                            && lost_its_port(&launch.log) =>
                    {
                        attempt += 1;
                        launch = launch.kind.launch(0, &options.log_dir)?;
                        if options.progress {
                            print_progress(&format!(" its port was taken; again on {} ", launch.host));
                        }
                    }
                    Err(Unhealthy::Exited { status, .. }) => bail!(
                        "the {} emulator exited ({status}). Its log, {}:\n{}\n{INSTALL_HELP}",
                        launch.kind.name(),
                        launch.log.display(),
                        tail(&launch.log)
                    ),
                    Err(e) => bail!(
                        "the {} emulator did not start within {START_TIMEOUT:?} ({e}). Its log, {}:\n{}",
                        launch.kind.name(),
                        launch.log.display(),
                        tail(&launch.log)
                    ),
                }
            }
            if options.progress {
                print_progress(" ready\n");
            }
            // The JVM read its logging configuration before it could answer.
            drop(launch.logging);
            hosts.push(launch.host);
            children.push(launch.child);
        }
        let [pubsub, firestore] = <[String; 2]>::try_from(hosts).expect("two emulators");
        Ok(Emulators {
            pubsub,
            firestore,
            started: true,
            children,
        })
    }

    /// `http://` endpoint of the Pub/Sub emulator, as google-cloud-pubsub wants it.
    pub fn pubsub_endpoint(&self) -> String {
        format!("http://{}", self.pubsub)
    }

    /// Stops emulators started here (and waits for them); reused ones are left alone.
    pub fn stop(&mut self) {
        let children = std::mem::take(&mut self.children);
        if children.is_empty() {
            return;
        }
        // Both at once: each may take up to the deadline.
        let _ = process::block_on(futures::future::join_all(
            children.iter().map(|c| c.stop(process::STOP_DEADLINE)),
        ));
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How often an emulator that lost its port to another process is started again.
pub const BIND_ATTEMPTS: u32 = 3;

/// Which emulator.
#[derive(Debug, Clone, Copy)]
enum Kind {
    PubSub,
    Firestore,
}

/// An emulator spawned on a port, not yet known to answer.
struct Launch {
    kind: Kind,
    requested_port: u16,
    host: String,
    log: PathBuf,
    child: process::Child,
    /// The Pub/Sub emulator's logging configuration, kept until the emulator answers (its
    /// JVM has read it by then) and removed with this value. The child's `Spec` still names
    /// it afterwards: an emulator started again needs a new `Launch`, as `start` does.
    logging: Option<PubSubLogging>,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::PubSub => "Pub/Sub",
            Kind::Firestore => "Firestore",
        }
    }

    /// Spawns the emulator on `port` (0: one the OS picks), its output in a fresh log.
    fn launch(self, port: u16, log_dir: &Path) -> anyhow::Result<Launch> {
        let port = pick_port(port)?;
        let host = format!("127.0.0.1:{port}");
        let host_port = format!("--host-port={host}");
        // Named by port: two devstacks (`--port-base`) share the log directory, and must
        // not truncate each other's logs.
        let (args, log, logging): (Vec<&str>, _, _) = match self {
            Kind::PubSub => (
                vec![
                    "beta",
                    "emulators",
                    "pubsub",
                    "start",
                    &host_port,
                    "--project=saga-local",
                    "--quiet",
                ],
                log_dir.join(format!("pubsub-emulator-{port}.log")),
                Some(PubSubLogging::write()?),
            ),
            Kind::Firestore => (
                vec!["emulators", "firestore", "start", &host_port, "--quiet"],
                log_dir.join(format!("firestore-emulator-{port}.log")),
                None,
            ),
        };
        let env = logging
            .as_ref()
            .map(|l| l.jvm_options(std::env::var_os(PUBSUB_JVM_OPTIONS)))
            .transpose()?
            .map(|options| (PUBSUB_JVM_OPTIONS, options));
        let child = spawn(&args, &log, env)?;
        Ok(Launch {
            kind: self,
            requested_port: port,
            host,
            log,
            child,
            logging,
        })
    }
}

impl Launch {
    /// Waits until the emulator answers, printing dots if asked.
    fn wait_healthy(&self, deadline: Instant, progress: bool) -> anyhow::Result<Result<(), Unhealthy>> {
        let probe = probe(&self.host)?
            .every(Duration::from_millis(250))
            .timeout(deadline.saturating_duration_since(Instant::now()));
        Ok(process::block_on(async {
            let dots = async {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if progress {
                        print_progress(".");
                    }
                }
            };
            tokio::select! {
                healthy = self.child.wait_healthy(&probe) => healthy,
                () = dots => unreachable!("the dots go on until the emulator answers"),
            }
        })?)
    }
}

/// Creates the log directory if it is missing (only this user may enter it), and refuses one
/// that another user owns, that others may write into, or that is a symbolic link: in a
/// shared `/tmp` they could put a link where a log is about to be created. (The logs are
/// also opened without following links, [`process::open_log`].)
fn prepare_log_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The mode, not the umask, decides: under umask 000 it would be world-writable.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            std::fs::symlink_metadata(dir)
        }
        found => found,
    }
    .with_context(|| format!("reading {}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    let problem = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_owned()
    } else if !meta.is_dir() {
        "it is not a directory".to_owned()
    } else if meta.uid() != me {
        format!("it belongs to user {}, not to this one ({me})", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!("its mode {:o} lets others write into it", meta.mode() & 0o777)
    } else {
        return Ok(());
    };
    bail!(
        "the emulators' logs cannot safely go in {}: {problem}; remove it or make it yours with mode 700, or set TMPDIR elsewhere",
        dir.display()
    )
}

/// Whether the emulator's log says it could not bind a port.
fn lost_its_port(log: &Path) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.contains("Address already in use") || text.contains("BindException")
}

fn print_progress(s: &str) {
    let mut out = std::io::stderr();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

fn check_prerequisites() -> anyhow::Result<()> {
    for (tool, args) in [("gcloud", "--version"), ("java", "-version")] {
        let found = Command::new(tool)
            .arg(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("`{tool}` was not found on PATH, so the emulators cannot start.\n{INSTALL_HELP}");
        }
    }
    Ok(())
}

fn pick_port(port: u16) -> anyhow::Result<u16> {
    if port != 0 {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!(
                "port {port} is taken: stop what uses it, or set PUBSUB_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST to reuse running emulators"
            );
        }
        return Ok(port);
    }
    // The OS picks a free port; it is released again for the emulator to take. Another
    // process could grab it in between, which would show up as an emulator that fails to
    // start, with the reason in its log.
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// [`PUBSUB_LOGGING`] in a file of its own: in a new directory under the system's temporary
/// directory that only this user can enter, gone when this value is dropped.
struct PubSubLogging {
    dir: tempfile::TempDir,
}

impl PubSubLogging {
    fn write() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("saga-pubsub-logging-")
            .tempdir()
            .context("creating a directory for the Pub/Sub emulator's logging configuration")?;
        let config = dir.path().join("logging.properties");
        std::fs::write(&config, PUBSUB_LOGGING).with_context(|| format!("writing {}", config.display()))?;
        Ok(PubSubLogging { dir })
    }

    /// The emulator's JVM options: ours, then `theirs` (the caller's own, which win).
    fn jvm_options(&self, theirs: Option<OsString>) -> anyhow::Result<OsString> {
        jvm_options(&self.dir.path().join("logging.properties"), theirs)
    }
}

/// `-Djava.util.logging.config.file=CONFIG`, quoted for `sh`, then `theirs` as they were
/// given. The emulator's start script expands the variable unquoted and `eval`s the words,
/// so a path survives only if its whitespace is single spaces; any other is refused rather
/// than turned into a path the JVM would not find (and then log nothing at all).
fn jvm_options(config: &Path, theirs: Option<OsString>) -> anyhow::Result<OsString> {
    let path = config
        .to_str()
        .with_context(|| format!("{} is not UTF-8", config.display()))?;
    if path.contains("  ") || path.chars().any(|c| c.is_whitespace() && c != ' ') {
        bail!(
            "{} has whitespace the Pub/Sub emulator's start script would change; set TMPDIR to a plainer path",
            config.display()
        );
    }
    let mut options =
        OsString::from(shlex::try_quote(&format!("-Djava.util.logging.config.file={path}"))?.as_ref());
    if let Some(theirs) = theirs.filter(|t| !t.to_string_lossy().trim().is_empty()) {
        options.push(" ");
        options.push(theirs);
    }
    Ok(options)
}

/// Starts `gcloud ARGS`, its output in a fresh `log`, with `env` set if given.
fn spawn(args: &[&str], log: &Path, env: Option<(&str, OsString)>) -> anyhow::Result<process::Child> {
    process::open_log(log, true).with_context(|| format!("creating {}", log.display()))?;
    let spec = match env {
        Some((key, value)) => Spec::new("gcloud").env(key, value),
        None => Spec::new("gcloud"),
    };
    spec.args(args)
        .stdout(Output::Append(log.to_path_buf()))
        .stderr(Output::Append(log.to_path_buf()))
        .spawn()
}

/// Both emulators answer `GET /` with 200 `Ok`.
fn probe(host: &str) -> anyhow::Result<Probe> {
    Probe::new(format!("http://{host}/"))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words the emulator's start script makes of `options`: it expands them unquoted in
    /// `eval set -- ...`. Each word comes back in brackets.
    fn as_the_start_script_reads(options: &OsString) -> String {
        let out = Command::new("sh")
            .args(["-c", r#"eval set -- $OPTS; printf '[%s]' "$@""#])
            .env("OPTS", options)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_logging_option_reaches_the_jvm_as_one_word_and_the_callers_options_follow_it() {
        let option = "-Djava.util.logging.config.file=";
        for (path, theirs, words) in [
            (
                "/tmp/x/logging.properties",
                None,
                vec!["/tmp/x/logging.properties"],
            ),
            (
                "/tmp/a b/it's $(id) `id` \\\"/logging.properties",
                None,
                vec!["/tmp/a b/it's $(id) `id` \\\"/logging.properties"],
            ),
            (
                "/tmp/x/logging.properties",
                Some("-Xmx1g  -Dtheirs='a b'"),
                vec!["/tmp/x/logging.properties", "-Xmx1g", "-Dtheirs=a b"],
            ),
            (
                "/tmp/x/logging.properties",
                Some(" \t"),
                vec!["/tmp/x/logging.properties"],
            ),
        ] {
            let options = jvm_options(Path::new(path), theirs.map(OsString::from)).unwrap();
            let want: String = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i == 0 {
                        format!("[{option}{w}]")
                    } else {
                        format!("[{w}]")
                    }
                })
                .collect();
            assert_eq!(as_the_start_script_reads(&options), want, "{path} {theirs:?}");
        }
        for changed_by_the_script in ["/tmp/a  b/l.p", "/tmp/a\tb/l.p", "/tmp/a\nb/l.p"] {
            assert!(
                jvm_options(Path::new(changed_by_the_script), None).is_err(),
                "{changed_by_the_script:?}"
            );
        }
    }

    #[test]
    fn a_log_directory_that_others_may_write_into_or_a_link_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        for (mode, fine) in [
            (0o755, true),
            (0o700, true),
            (0o775, false),
            (0o777, false),
            (0o757, false),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            match prepare_log_dir(&dir) {
                Ok(()) => assert!(fine, "{mode:o} accepted"),
                Err(e) => {
                    assert!(!fine, "{mode:o} refused: {e}");
                    assert!(e.to_string().contains(&format!("mode {mode:o}")), "{e}");
                }
            }
        }
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(prepare_log_dir(&link).is_err(), "a link to a good directory");
        let file = base.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare_log_dir(&file).is_err(), "a file");
    }

    #[test]
    fn a_missing_log_directory_is_made_for_this_user_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a").join("logs");
        prepare_log_dir(&dir).unwrap();
        for made in [&dir, &base.path().join("a")] {
            let mode = std::fs::metadata(made).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", made.display());
        }
        prepare_log_dir(&dir).expect("found as it was made");
    }

    #[test]
    fn a_log_saying_its_port_was_taken_is_told_from_other_failures() {
        let dir = std::env::temp_dir().join(format!("saga-emulator-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("emulator.log");
        for (text, lost) in [
            (
                "[firestore] Exception in thread \"main\" java.net.BindException: Address already in use\n[firestore] \tat java.base/sun.nio.ch.Net.bind(Net.java:555)",
                true,
            ),
            (
                "[firestore] \tat java.base/sun.nio.ch.Net.bind0(Native Method)\n[firestore] java.net.BindException",
                true,
            ),
            (
                "ERROR: (gcloud.emulators.firestore.start) Java is not installed",
                false,
            ),
            ("", false),
        ] {
            std::fs::write(&log, text).unwrap();
            assert_eq!(lost_its_port(&log), lost, "{text}");
        }
        assert!(!lost_its_port(&dir.join("missing.log")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
