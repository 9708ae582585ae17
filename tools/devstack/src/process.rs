//! Child processes tied to this one: the one way the tools start, health-check and stop the
//! emulators and the services.
//!
//! [`Spec::spawn`] runs the program under a small `sh` wrapper whose standard input is a
//! pipe held by the returned [`Child`]. However this process ends (return, panic, SIGKILL),
//! or when the `Child` is dropped, that pipe closes, and the wrapper sends SIGTERM to the
//! program (and to its process group, if it leads one: gcloud moves itself and its Java
//! server into a group of its own), then SIGKILL after [`STOP_DEADLINE`]. The wrapper exits
//! with the program's status, so a crash shows in [`Child::exited`]. [`Child::pid`] is the
//! program's pid, not the wrapper's, for measuring it through `/proc`, and
//! [`Child::started`] times the program without the wrapper.
//!
//! [`Child::wait_healthy`] polls a URL with [`Probe`] until it answers 200, failing early if
//! the program exits first. [`Child::stop`] sends SIGTERM and, after a deadline, SIGKILL.
//! [`first_exit`] waits for any of several children, and [`Child::spec`] starts one again.
//!
//! [`Supervisor`] keeps one program running: when it exits unasked, it starts it again from
//! its [`Spec`] after a wait that [`Backoff`] decides (a pure schedule), and waits for it to
//! be healthy, reporting each step as an [`Event`]; it stops the program when told to.
//!
//! Linux only: the program's pid is read from `/proc/PID/task/PID/children`.

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a program has between SIGTERM and SIGKILL: beyond Cloud Run's 10 s, so that a
/// service that shuts down in time on Cloud Run does here too.
pub const STOP_DEADLINE: Duration = Duration::from_secs(12);

/// How long [`Spec::spawn`] waits for the wrapper to start the program.
const FORK_TIMEOUT: Duration = Duration::from_secs(5);

/// The wrapper, run as `sh -c WRAPPER devstack-wrapper GRACE PROGRAM ARGS...`, in a process
/// group of its own (so that its `kill 0` reaches no one else).
///
/// - The pipe on stdin moves to fd 3, because sh gives a background job /dev/null as
///   stdin; the program gets neither.
/// - The watcher sleeps in `read` until the pipe closes (only builtins, so no process of
///   its own), then TERM, and KILL after the grace to what is left of the wrapper's group.
///   Its output goes to /dev/null, so that it does not hold the program's pipes open.
/// - The wrapper's own stderr then goes to /dev/null: sh would print `Terminated` into the
///   program's output for a program ended by SIGTERM, as asked.
/// - After the program exits, the wrapper sends TERM to what the program left behind in
///   either group (the watcher included) while ignoring it itself, then ends as the program
///   did: sh reports death by signal N as 128+N, which it turns back into that signal (core
///   dumps off, so that a program's crash leaves no core of the shell).
const WRAPPER: &str = r#"
ulimit -c 0
grace=$1
shift
exec 3<&0 0</dev/null
"$@" 3<&- &
pid=$!
{
    while read -r _ <&3; do :; done
    kill -TERM -"$pid" "$pid"
    sleep "$grace"
    kill -KILL -"$pid" 0
} >/dev/null 2>&1 &
exec 3<&- 2>/dev/null
wait "$pid"
status=$?
trap '' TERM
kill -TERM -"$pid" 0
trap - TERM
if [ "$status" -gt 128 ]; then kill -"$((status - 128))" $$; fi
exit "$status"
"#;

/// The wrapper's `$0`, shown in its error messages (`devstack-wrapper: 1: x: not found`).
const WRAPPER_NAME: &str = "devstack-wrapper";

/// Where a program's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// This process's own.
    Inherit,
    /// Nowhere.
    Null,
    /// A pipe, taken with [`Child::take_stdout`] or [`Child::take_stderr`].
    Piped,
    /// Appended to a file, created if missing. Appending lets stdout and stderr share one.
    Append(PathBuf),
}

impl Output {
    fn stdio(&self) -> anyhow::Result<Stdio> {
        Ok(match self {
            Output::Inherit => Stdio::inherit(),
            Output::Null => Stdio::null(),
            Output::Piped => Stdio::piped(),
            Output::Append(path) => open_log(path, false)
                .with_context(|| format!("opening {}", path.display()))?
                .into(),
        })
    }
}

/// Opens the log at `path` to append to it, created if missing, emptied first if `fresh`;
/// never through a symbolic link (`O_NOFOLLOW`), so that a link planted where a log goes
/// cannot make a process write over the file it points at.
pub fn open_log(path: &Path, fresh: bool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    if fresh {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    options
        .create(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// What to run: a program, its arguments, environment and output. Kept by the [`Child`], so
/// that the same program can be started again.
#[derive(Debug, Clone)]
pub struct Spec {
    program: OsString,
    args: Vec<OsString>,
    /// Set (`Some`) or removed (`None`), in order, over this process's environment.
    env: Vec<(OsString, Option<OsString>)>,
    stdout: Output,
    stderr: Output,
}

impl Spec {
    /// `program` (looked up on `PATH` unless it is a path), with this process's environment
    /// and output.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Spec {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdout: Output::Inherit,
            stderr: Output::Inherit,
        }
    }

    /// One more argument.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable.
    #[must_use]
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Where stdout goes.
    #[must_use]
    pub fn stdout(mut self, output: Output) -> Self {
        self.stdout = output;
        self
    }

    /// Where stderr goes.
    #[must_use]
    pub fn stderr(mut self, output: Output) -> Self {
        self.stderr = output;
        self
    }

    /// The program, for messages.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// Starts the program, tied to this process (see the module doc). Returns once the
    /// program's process exists (a few milliseconds, the wrapper's start), or has exited.
    pub fn spawn(&self) -> anyhow::Result<Child> {
        let program = self.program.to_string_lossy();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg(WRAPPER_NAME)
            .arg(STOP_DEADLINE.as_secs().to_string())
            .arg(&self.program)
            .args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
            .stdin(Stdio::piped())
            .stdout(self.stdout.stdio()?)
            .stderr(self.stderr.stdio()?)
            .process_group(0);
        let mut wrapper = command.spawn().with_context(|| format!("starting {program}"))?;
        let wrapper_pid = wrapper.id();
        let lifeline = wrapper.stdin.take().context("the wrapper has no stdin pipe")?;
        let stdout = wrapper.stdout.take();
        let stderr = wrapper.stderr.take();

        // A thread of its own reaps the wrapper whenever it exits, with or without a
        // runtime, and even after the `Child` is dropped, so no zombie is left.
        let (exit_tx, exit) = watch::channel(None);
        std::thread::Builder::new()
            .name(format!("wait-{wrapper_pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let status = wrapper.wait().map_err(|e| e.to_string());
                exit_tx.send_replace(Some(status));
            })
            .context("starting the thread that waits for the wrapper")?;

        let (pid, started) =
            program_pid(wrapper_pid, &exit).with_context(|| format!("finding the pid of {program}"))?;
        Ok(Child {
            spec: self.clone(),
            wrapper: wrapper_pid,
            pid,
            started,
            exit,
            stdout,
            stderr,
            _lifeline: lifeline,
        })
    }
}

/// The program's pid, once its process exists, and the last moment it did not yet; `None`
/// if the wrapper exited first.
///
/// The program and the watcher are the wrapper's only children, and the kernel lists
/// children in the order they were forked: while both are listed, the program is the first.
/// One alone could be either (the watcher is, for a moment, once the wrapper has reaped a
/// program that exited at once). Nothing about the program's exec is read: /proc reads race
/// with it (a command line can read empty, cut short, or still the wrapper's).
fn program_pid(
    wrapper: u32,
    exit: &watch::Receiver<Option<Result<ExitStatus, String>>>,
) -> anyhow::Result<(Option<u32>, Instant)> {
    let children = format!("/proc/{wrapper}/task/{wrapper}/children");
    let deadline = Instant::now() + FORK_TIMEOUT;
    let mut before_fork = Instant::now();
    loop {
        let now = Instant::now();
        let listed: Vec<u32> = std::fs::read_to_string(&children)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect();
        if listed.is_empty() {
            before_fork = now;
        }
        if let [program, _watcher, ..] = listed[..] {
            return Ok((Some(program), before_fork));
        }
        if exit.borrow().is_some() {
            return Ok((None, before_fork));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the wrapper did not start it within {FORK_TIMEOUT:?} (is {children} missing?)"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A running (or exited) program, started by [`Spec::spawn`]. Dropping it ends the program
/// (SIGTERM, then SIGKILL after [`STOP_DEADLINE`]) without waiting; [`Child::stop`] waits.
#[derive(Debug)]
pub struct Child {
    spec: Spec,
    wrapper: u32,
    pid: Option<u32>,
    started: Instant,
    exit: watch::Receiver<Option<Result<ExitStatus, String>>>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// The write end of the wrapper's stdin, never written: its closing is the signal.
    _lifeline: ChildStdin,
}

impl Child {
    /// The program's pid; `None` if it exited before its pid could be read.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// When the program started: the last moment its process did not exist yet (seen in
    /// `/proc`, at most 0.2 ms early). Timing from here counts its fork and exec, and leaves
    /// out the wrapper's own start (about 2 ms); it never flatters the program.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// What it was started from: `child.spec().spawn()` starts it again.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Its stdout, if [`Output::Piped`] and not taken yet.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Its stderr, if [`Output::Piped`] and not taken yet.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        self.exit.borrow().clone().transpose().map_err(io::Error::other)
    }

    /// Waits for it to exit (without ending it).
    pub async fn exited(&self) -> io::Result<ExitStatus> {
        let mut exit = self.exit.clone();
        let status = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| io::Error::other("the thread waiting for the wrapper is gone"))?
            .clone();
        status
            .unwrap_or_else(|| Err("no status".to_owned()))
            .map_err(io::Error::other)
    }

    /// Sends SIGTERM to the program (to its process group, if it leads one), unless it
    /// has exited.
    pub fn terminate(&self) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        self.signal_program(Signal::SIGTERM)
    }

    /// Sends SIGKILL to the program, its process group if it leads one, and the wrapper's
    /// group (the wrapper, and what the program started there); waits for the exit.
    pub async fn kill(&self) -> io::Result<ExitStatus> {
        // Decided once: the wrapper may exit and be reaped as soon as the program dies, and
        // what the program left in its group must get the SIGKILL all the same. The group
        // id stays taken while any of them lives, so it reaches no one else.
        if self.try_wait()?.is_none() {
            self.signal_program(Signal::SIGKILL)?;
            ignore_gone(killpg(to_pid(self.wrapper)?, Signal::SIGKILL))?;
        }
        self.exited().await
    }

    /// SIGTERM, as Cloud Run stops a container; SIGKILL if it has not exited after
    /// `deadline`. Its exit status.
    pub async fn stop(&self, deadline: Duration) -> io::Result<ExitStatus> {
        self.terminate()?;
        match tokio::time::timeout(deadline, self.exited()).await {
            Ok(status) => status,
            Err(_) => self.kill().await,
        }
    }

    /// Waits until `probe` answers 200, polling at its interval; fails as soon as the
    /// program exits, or after the probe's timeout.
    pub async fn wait_healthy(&self, probe: &Probe) -> Result<(), Unhealthy> {
        let deadline = Instant::now() + probe.timeout;
        let exited = |status: io::Result<ExitStatus>| match status {
            Ok(status) => Unhealthy::Exited {
                url: probe.url.clone(),
                status,
            },
            Err(e) => Unhealthy::Wait(e),
        };
        loop {
            let answer = tokio::select! {
                answer = probe.check() => answer,
                status = self.exited() => return Err(exited(status)),
            };
            let last = match answer {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(Unhealthy::TimedOut {
                    url: probe.url.clone(),
                    after: probe.timeout,
                    last: format!("{last:#}"),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(probe.every) => {}
                status = self.exited() => return Err(exited(status)),
            }
        }
    }

    fn signal_program(&self, signal: Signal) -> io::Result<()> {
        let Some(pid) = self.pid else { return Ok(()) };
        let pid = to_pid(pid)?;
        if getpgid(Some(pid)) == Ok(pid) {
            ignore_gone(killpg(pid, signal))
        } else {
            ignore_gone(kill(pid, signal))
        }
    }
}

fn to_pid(pid: u32) -> io::Result<Pid> {
    Ok(Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?))
}

/// A signal to a process that has just exited is not an error.
fn ignore_gone(result: nix::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits for the first of `children` to exit: its index and status. Never returns for none.
pub async fn first_exit(children: &[Child]) -> (usize, io::Result<ExitStatus>) {
    if children.is_empty() {
        return std::future::pending().await;
    }
    let (status, i, _) = futures::future::select_all(children.iter().map(|c| Box::pin(c.exited()))).await;
    (i, status)
}

/// How a program ended, in a few words: `exit code 3`, `signal 9`.
pub fn exit_reason(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => status.to_string(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}

/// When to start a program again after it exited unasked: `first`, doubled after each exit
/// up to `cap`, and `first` again once the program has been healthy for `reset_after`, so
/// that a program that crashes at once does not spin and one that crashed once an hour ago
/// comes back fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after an exit that comes first, or after a healthy while.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How long a program must have been healthy for its exit to count as a first one.
    pub reset_after: Duration,
}

impl Backoff {
    /// 0.5 s, doubling to 10 s; back to 0.5 s after 30 s healthy.
    pub const DEFAULT: Backoff = Backoff {
        first: Duration::from_millis(500),
        cap: Duration::from_secs(10),
        reset_after: Duration::from_secs(30),
    };

    /// The wait before starting a program again. `last` is the wait before the run that
    /// just ended (`None` for the program's first run), `healthy_for` how long that run had
    /// been healthy when it ended (`None` if it never became healthy).
    pub fn delay(&self, last: Option<Duration>, healthy_for: Option<Duration>) -> Duration {
        match (last, healthy_for) {
            (None, _) => self.first,
            (Some(_), Some(healthy)) if healthy >= self.reset_after => self.first,
            (Some(last), _) => last.saturating_mul(2).min(self.cap).max(self.first),
        }
    }
}

/// What a [`Supervisor`] did, for its owner to report.
#[derive(Debug)]
pub enum Event {
    /// The program exited unasked (or before it became healthy); it is started again after
    /// `restart_in`.
    Exited {
        /// How it exited.
        status: io::Result<ExitStatus>,
        /// The wait before the next start.
        restart_in: Duration,
    },
    /// Starting it again failed; tried again after `restart_in`.
    StartFailed {
        /// Why.
        error: anyhow::Error,
        /// The wait before the next try.
        restart_in: Duration,
    },
    /// Started again, it did not become healthy in time: it was stopped, and is started
    /// again after `restart_in`.
    Unhealthy {
        /// What the probe saw.
        error: Unhealthy,
        /// The wait before the next start.
        restart_in: Duration,
    },
    /// Started again, it answers its probe.
    Healthy {
        /// The new program's pid.
        pid: Option<u32>,
    },
}

/// Keeps one program running (see the module doc). Dropping it stops the program too, in
/// the background; [`Supervisor::stop`] waits.
#[derive(Debug)]
pub struct Supervisor {
    /// `Some(deadline)` once told to stop.
    stop: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

/// One run of a supervised program: the program, and since when it has been healthy.
struct Run {
    child: Child,
    healthy_since: Option<Instant>,
}

/// Why a supervisor's wait ended early: it was told to stop.
struct Stopped;

impl Supervisor {
    /// Supervises `child`, which is running and healthy, from now on. After each start
    /// again, `on_start` gets the new child (to take its output, say) before `probe` checks
    /// its health; `report` gets every [`Event`]. Needs a tokio runtime.
    pub fn start(
        child: Child,
        probe: Probe,
        backoff: Backoff,
        on_start: impl FnMut(&mut Child) -> anyhow::Result<()> + Send + 'static,
        report: impl FnMut(Event) + Send + 'static,
    ) -> Self {
        let (stop, stopped) = watch::channel(None);
        let supervision = Supervision {
            spec: child.spec().clone(),
            probe,
            backoff,
            on_start,
            report,
            stop: stopped,
        };
        let run = Run {
            child,
            healthy_since: Some(Instant::now()),
        };
        let task = tokio::spawn(supervision.run(run));
        Supervisor { stop, task }
    }

    /// Stops the program as [`Child::stop`] does, and supervising; waits for both.
    pub async fn stop(self, deadline: Duration) {
        self.stop.send_replace(Some(deadline));
        // A panic in the task has dropped its child, which ended the program.
        let _ = self.task.await;
    }
}

/// What a supervisor's task holds.
struct Supervision<S, R> {
    spec: Spec,
    probe: Probe,
    backoff: Backoff,
    on_start: S,
    report: R,
    stop: watch::Receiver<Option<Duration>>,
}

impl<S, R> Supervision<S, R>
where
    S: FnMut(&mut Child) -> anyhow::Result<()>,
    R: FnMut(Event),
{
    /// Waits for the program's exit, and starts it again, until told to stop.
    async fn run(mut self, mut run: Run) {
        let mut last = None;
        loop {
            let status = tokio::select! {
                // A stop asked for wins over an exit at the same moment: no restart line then.
                biased;
                deadline = stop_asked(&mut self.stop) => {
                    let _ = run.child.stop(deadline).await;
                    return;
                }
                status = run.child.exited() => status,
            };
            let healthy_for = run.healthy_since.map(|since| since.elapsed());
            // Dropped at once: had only its wrapper died, the wrapper's watcher now ends the
            // program, which would hold the port its successor needs.
            drop(run);
            let restart_in = self.backoff.delay(last, healthy_for);
            (self.report)(Event::Exited { status, restart_in });
            match self.restart(restart_in).await {
                Ok((again, waited)) => (run, last) = (again, Some(waited)),
                Err(Stopped) => return,
            }
        }
    }

    /// Starts the program again after `delay`, as often as it takes to see it healthy: the
    /// healthy run, and the wait before it.
    async fn restart(&mut self, mut delay: Duration) -> Result<(Run, Duration), Stopped> {
        loop {
            tokio::select! {
                biased;
                _ = stop_asked(&mut self.stop) => return Err(Stopped),
                () = tokio::time::sleep(delay) => {}
            }
            let waited = delay;
            delay = self.backoff.delay(Some(waited), None);
            let started = self.spec.spawn().and_then(|mut child| {
                (self.on_start)(&mut child)?;
                Ok(child)
            });
            let child = match started {
                Ok(child) => child,
                Err(error) => {
                    (self.report)(Event::StartFailed {
                        error,
                        restart_in: delay,
                    });
                    continue;
                }
            };
            let healthy = tokio::select! {
                biased;
                deadline = stop_asked(&mut self.stop) => {
                    let _ = child.stop(deadline).await;
                    return Err(Stopped);
                }
                healthy = child.wait_healthy(&self.probe) => healthy,
            };
            let event = match healthy {
                Ok(()) => {
                    (self.report)(Event::Healthy { pid: child.pid() });
                    let run = Run {
                        child,
                        healthy_since: Some(Instant::now()),
                    };
                    return Ok((run, waited));
                }
                Err(Unhealthy::Exited { status, .. }) => Event::Exited {
                    status: Ok(status),
                    restart_in: delay,
                },
                Err(Unhealthy::Wait(e)) => Event::Exited {
                    status: Err(e),
                    restart_in: delay,
                },
                Err(error @ Unhealthy::TimedOut { .. }) => {
                    let _ = child.stop(STOP_DEADLINE).await;
                    Event::Unhealthy {
                        error,
                        restart_in: delay,
                    }
                }
            };
            (self.report)(event);
        }
    }
}

/// Waits until the supervisor is told to stop (or dropped): the deadline to stop with.
async fn stop_asked(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    match stop.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or(STOP_DEADLINE),
        Err(_) => STOP_DEADLINE,
    }
}

/// Why [`Child::wait_healthy`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// The program exited first.
    #[error("exited ({status}) before {url} answered 200")]
    Exited {
        /// What was polled.
        url: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// It did not answer 200 in time.
    #[error("{url} did not answer 200 within {after:?} (last: {last})")]
    TimedOut {
        /// What was polled.
        url: String,
        /// The probe's timeout.
        after: Duration,
        /// The last failure.
        last: String,
    },
    /// Waiting for the exit failed.
    #[error("waiting for the program: {0}")]
    Wait(#[source] io::Error),
}

/// A health check: `GET url` answers 200.
#[derive(Debug, Clone)]
pub struct Probe {
    url: String,
    every: Duration,
    timeout: Duration,
    http: reqwest::Client,
}

impl Probe {
    /// `GET url`, every 100 ms for up to 20 s.
    pub fn new(url: impl Into<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Loopback: a system proxy must not answer for the child.
            .no_proxy()
            // A new connection each time, as a load balancer's check would, and none left
            // open to delay the program's graceful shutdown.
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the health check's HTTP client")?;
        Ok(Probe {
            url: url.into(),
            every: Duration::from_millis(100),
            timeout: Duration::from_secs(20),
            http,
        })
    }

    /// Polls at this interval.
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Gives up after this long.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL checked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One check: whether `GET url` answers 200, and if not, why.
    pub async fn check(&self) -> anyhow::Result<()> {
        let response = self.http.get(&self.url).send().await?;
        anyhow::ensure!(
            response.status() == reqwest::StatusCode::OK,
            "answered {}",
            response.status()
        );
        Ok(())
    }
}

/// Runs `future` to its end from synchronous code, on a thread of its own with a
/// current-thread runtime, so that it works anywhere, inside an async task included (which
/// it blocks meanwhile), and the emulators' code stays synchronous for its callers.
pub fn block_on<F>(future: F) -> io::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(runtime.block_on(future))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    // A failed unwrap in a test is a failed assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::BufRead as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt as _;

    /// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, ...
    fn stat(pid: u32) -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        Some(rest.split_whitespace().map(str::to_owned).collect())
    }

    /// Whether `pid` is gone (or a zombie: it ran its course) within `within`.
    fn gone_within(pid: u32, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match stat(pid) {
                None => return true,
                Some(fields) if fields[0] == "Z" => return true,
                Some(_) => {}
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The one child of `pid`, once it runs `sleep 60`: until its exec, it would take a
    /// SIGTERM with the handler of the shell it was forked from, and live on.
    fn only_child_sleeping(pid: u32) -> u32 {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let children: Vec<u32> = children.split_whitespace().map(|c| c.parse().unwrap()).collect();
        assert_eq!(children.len(), 1, "{children:?}");
        assert!(runs_sleep(children[0]));
        children[0]
    }

    fn sleeper() -> Child {
        Spec::new("sleep").arg("60").spawn().unwrap()
    }

    /// A program in `sh` that has set itself up once it has printed `ready`.
    async fn ready(script: &str) -> Child {
        let mut child = Spec::new("sh")
            .args(["-c", script])
            .stdout(Output::Piped)
            .spawn()
            .unwrap();
        let stdout = child.take_stdout().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(5), line)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line, "ready\n");
        child
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Whether `pid` runs `sleep 60` within a second (`spawn` may return before the exec).
    fn runs_sleep(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x0060\x00") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn the_pid_is_the_programs_and_not_the_wrappers() {
        let child = sleeper();
        let pid = child.pid().unwrap();
        assert_ne!(pid, child.wrapper);
        assert!(runs_sleep(pid));
        assert_eq!(
            stat(pid).unwrap()[1],
            child.wrapper.to_string(),
            "its parent is the wrapper"
        );
    }

    /// /proc reads race with exec, which once made the watcher pass for the program about
    /// one time in 300.
    #[test]
    fn the_pid_is_the_programs_every_time_of_many() {
        for _ in 0..300 {
            let child = sleeper();
            assert!(runs_sleep(child.pid().unwrap()));
        }
    }

    /// Once the wrapper has reaped a program that exited at once, the watcher is its only
    /// child for a moment.
    #[test]
    fn a_program_that_exits_at_once_is_never_taken_for_the_watcher() {
        for _ in 0..300 {
            let mut child = Spec::new("sh")
                .args(["-c", "echo $$"])
                .stdout(Output::Piped)
                .spawn()
                .unwrap();
            let mut printed = String::new();
            std::io::Read::read_to_string(&mut child.take_stdout().unwrap(), &mut printed).unwrap();
            if let Some(pid) = child.pid() {
                assert_eq!(pid.to_string(), printed.trim());
            }
        }
    }

    #[test]
    fn the_program_is_started_between_the_spawn_call_and_its_return() {
        let called = Instant::now();
        let child = sleeper();
        let returned = Instant::now();
        assert!(called <= child.started() && child.started() <= returned);
    }

    #[test]
    fn a_child_is_terminated_when_its_handle_is_dropped() {
        let child = sleeper();
        let (pid, wrapper) = (child.pid().unwrap(), child.wrapper);
        drop(child);
        assert!(gone_within(pid, Duration::from_secs(5)), "the program is gone");
        assert!(
            gone_within(wrapper, Duration::from_secs(5)),
            "the wrapper is gone"
        );
    }

    const PARENT_ENV: &str = "DEVSTACK_PROCESS_TEST_PARENT";

    #[test]
    #[ignore = "the parent process that a_child_is_terminated_when_its_parent_is_killed_with_sigkill starts"]
    fn a_parent_prints_its_childs_pid_and_waits_to_be_killed() {
        if std::env::var_os(PARENT_ENV).is_none() {
            return;
        }
        let child = sleeper();
        println!("program pid {}", child.pid().unwrap());
        std::thread::sleep(Duration::from_mins(1));
    }

    #[test]
    fn a_child_is_terminated_when_its_parent_is_killed_with_sigkill() {
        let mut parent = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::tests::a_parent_prints_its_childs_pid_and_waits_to_be_killed",
                "--ignored",
                "--nocapture",
            ])
            .env(PARENT_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid: u32 = std::io::BufReader::new(parent.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("program pid ").map(|p| p.parse().unwrap()))
            .expect("the parent prints its child's pid");
        assert!(stat(pid).is_some(), "the child runs");
        kill(to_pid(parent.id()).unwrap(), Signal::SIGKILL).unwrap();
        parent.wait().unwrap();
        assert!(gone_within(pid, Duration::from_secs(5)), "the child is gone");
    }

    #[tokio::test]
    async fn stop_escalates_to_sigkill_after_the_deadline_for_a_program_that_ignores_sigterm() {
        let child = ready("trap '' TERM; sleep 60 & echo ready; wait").await;
        let sleep = only_child_sleeping(child.pid().unwrap());
        let started = Instant::now();
        let status = child.stop(Duration::from_millis(300)).await.unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            gone_within(sleep, Duration::from_secs(2)),
            "what the program started, which ignores SIGTERM too, is gone"
        );
    }

    #[tokio::test]
    async fn stop_ends_a_program_that_honours_sigterm_with_the_programs_own_status() {
        let child = ready("trap 'exit 7' TERM; sleep 60 & echo ready; wait").await;
        let sleep = only_child_sleeping(child.pid().unwrap());
        let started = Instant::now();
        let status = child.stop(STOP_DEADLINE).await.unwrap();
        assert_eq!(status.code(), Some(7), "{status}");
        assert!(started.elapsed() < Duration::from_secs(5), "not the deadline");
        assert!(
            gone_within(sleep, Duration::from_secs(2)),
            "what the program left behind is gone"
        );
    }

    #[tokio::test]
    async fn a_program_killed_by_a_signal_shows_as_killed_by_that_signal() {
        let child = Spec::new("sh").args(["-c", "kill -ABRT $$"]).spawn().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(5), child.exited())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGABRT as i32), "{status}");
    }

    #[tokio::test]
    async fn a_program_that_cannot_be_found_exits_with_status_127() {
        let child = Spec::new("no-such-program-here")
            .stderr(Output::Null)
            .spawn()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(5), child.exited())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(127));
    }

    #[tokio::test]
    async fn wait_healthy_fails_fast_naming_the_exit_status_when_the_program_exits_before_answering() {
        let child = Spec::new("sh").args(["-c", "sleep 0.2; exit 3"]).spawn().unwrap();
        let probe = Probe::new(format!("http://127.0.0.1:{}/healthz", closed_port()))
            .unwrap()
            .every(Duration::from_millis(10))
            .timeout(Duration::from_secs(30));
        let started = Instant::now();
        let error = child.wait_healthy(&probe).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "not the timeout");
        assert!(
            matches!(&error, Unhealthy::Exited { status, .. } if status.code() == Some(3)),
            "{error:?}"
        );
        assert!(error.to_string().contains("exit status: 3"), "{error}");
    }

    #[tokio::test]
    async fn wait_healthy_polls_until_the_url_answers_200() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        // Two 503s, then 200s.
        let server = tokio::spawn(async move {
            let mut answered = 0;
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                answered += 1;
                let status = if answered <= 2 {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOk");
                tokio::io::AsyncWriteExt::write_all(&mut socket, answer.as_bytes())
                    .await
                    .unwrap();
            }
        });
        let child = sleeper();
        let probe = Probe::new(&url)
            .unwrap()
            .every(Duration::from_millis(10))
            .timeout(Duration::from_secs(5));
        child.wait_healthy(&probe).await.unwrap();
        server.abort();
    }

    #[tokio::test]
    async fn wait_healthy_times_out_naming_the_url_and_the_last_failure() {
        let child = sleeper();
        let url = format!("http://127.0.0.1:{}/healthz", closed_port());
        let probe = Probe::new(&url)
            .unwrap()
            .every(Duration::from_millis(20))
            .timeout(Duration::from_millis(300));
        let error = child.wait_healthy(&probe).await.unwrap_err();
        assert!(matches!(error, Unhealthy::TimedOut { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&url), "{message}");
        assert!(message.contains("refused"), "{message}");
    }

    #[tokio::test]
    async fn first_exit_names_the_child_that_exited_and_its_spec_starts_it_again() {
        let children = vec![
            sleeper(),
            Spec::new("sh").args(["-c", "sleep 0.1; exit 4"]).spawn().unwrap(),
        ];
        let (i, status) = tokio::time::timeout(Duration::from_secs(5), first_exit(&children))
            .await
            .unwrap();
        assert_eq!(i, 1);
        assert_eq!(status.unwrap().code(), Some(4));
        assert_eq!(children[0].try_wait().unwrap(), None, "the other runs on");

        let again = children[1].spec().spawn().unwrap();
        assert_ne!(again.pid(), children[1].pid());
        let status = tokio::time::timeout(Duration::from_secs(5), again.exited())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(4));
    }

    #[test]
    fn the_backoff_doubles_from_half_a_second_to_ten_and_starts_over_after_a_healthy_while() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        // (the wait before the run that ended, how long it was healthy, the next wait)
        let table = [
            (None, None, ms(500)),
            (None, Some(s(5)), ms(500)),
            (None, Some(s(3600)), ms(500)),
            (Some(ms(500)), None, s(1)),
            (Some(ms(500)), Some(s(29)), s(1)),
            (Some(s(1)), None, s(2)),
            (Some(s(4)), Some(ms(10)), s(8)),
            (Some(s(8)), None, s(10)),
            (Some(s(10)), None, s(10)),
            (Some(s(10)), Some(s(30)), ms(500)),
            (Some(s(8)), Some(s(31)), ms(500)),
            (Some(Duration::MAX), None, s(10)),
        ];
        for (last, healthy_for, expected) in table {
            assert_eq!(
                Backoff::DEFAULT.delay(last, healthy_for),
                expected,
                "after a wait of {last:?} and {healthy_for:?} healthy"
            );
        }
    }

    #[test]
    fn the_backoff_never_waits_less_than_its_first_wait() {
        let backoff = Backoff {
            first: Duration::from_secs(2),
            cap: Duration::from_secs(5),
            reset_after: Duration::from_secs(1),
        };
        assert_eq!(backoff.delay(Some(Duration::ZERO), None), Duration::from_secs(2));
    }

    #[test]
    fn an_exit_reads_as_its_code_or_its_signal() {
        let table = [
            (Ok(ExitStatus::from_raw(0)), "exit code 0"),
            (Ok(ExitStatus::from_raw(3 << 8)), "exit code 3"),
            (Ok(ExitStatus::from_raw(9)), "signal 9"),
            (Ok(ExitStatus::from_raw(15)), "signal 15"),
            (Err(io::Error::other("gone")), "unknown: gone"),
        ];
        for (status, expected) in table {
            assert_eq!(exit_reason(&status), expected);
        }
    }

    /// A health endpoint that answers 200 to everything, for as long as the test runs.
    async fn always_healthy() -> Probe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOk";
                let _ = tokio::io::AsyncWriteExt::write_all(&mut socket, answer.as_bytes()).await;
            }
        });
        Probe::new(url).unwrap().every(Duration::from_millis(10))
    }

    /// A supervisor whose events arrive on the returned channel.
    fn supervised(
        child: Child,
        probe: Probe,
        backoff: Backoff,
        on_start: impl FnMut(&mut Child) -> anyhow::Result<()> + Send + 'static,
    ) -> (Supervisor, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = Supervisor::start(child, probe, backoff, on_start, move |event| {
            let _ = events.send(event);
        });
        (supervisor, received)
    }

    async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the supervisor runs")
    }

    #[tokio::test]
    async fn a_supervised_program_killed_with_sigkill_is_started_again_and_reported_healthy() {
        let child = sleeper();
        let killed = child.pid().unwrap();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        let (supervisor, mut events) =
            supervised(child, always_healthy().await, Backoff::DEFAULT, move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
        kill(to_pid(killed).unwrap(), Signal::SIGKILL).unwrap();

        let Event::Exited { status, restart_in } = next(&mut events).await else {
            panic!("the exit comes first")
        };
        assert_eq!(exit_reason(&status), "signal 9");
        assert_eq!(restart_in, Duration::from_millis(500));
        let Event::Healthy { pid: Some(again) } = next(&mut events).await else {
            panic!("then the new program, healthy")
        };
        assert_ne!(again, killed);
        assert!(runs_sleep(again), "the same program runs again");
        assert_eq!(starts.load(Ordering::Relaxed), 1, "on_start saw the new child");

        supervisor.stop(Duration::from_secs(5)).await;
        assert!(
            gone_within(again, Duration::from_secs(5)),
            "stopping it ends the program"
        );
    }

    #[tokio::test]
    async fn a_program_that_keeps_exiting_before_it_is_healthy_is_started_again_ever_later_up_to_the_cap() {
        let child = Spec::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let never_healthy = Probe::new(format!("http://127.0.0.1:{}/healthz", closed_port()))
            .unwrap()
            .every(Duration::from_millis(10));
        let backoff = Backoff {
            first: Duration::from_millis(10),
            cap: Duration::from_millis(40),
            reset_after: Duration::from_mins(1),
        };
        let (supervisor, mut events) = supervised(child, never_healthy, backoff, |_| Ok(()));
        let mut waits = Vec::new();
        for _ in 0..5 {
            let Event::Exited { status, restart_in } = next(&mut events).await else {
                panic!("only exits")
            };
            assert_eq!(exit_reason(&status), "exit code 3");
            waits.push(restart_in.as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 40, 40]);
        supervisor.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_supervisor_told_to_stop_while_it_waits_to_start_again_stops_at_once() {
        let child = sleeper();
        let pid = child.pid().unwrap();
        let backoff = Backoff {
            first: Duration::from_mins(1),
            ..Backoff::DEFAULT
        };
        let (supervisor, mut events) = supervised(child, always_healthy().await, backoff, |_| Ok(()));
        kill(to_pid(pid).unwrap(), Signal::SIGKILL).unwrap();
        assert!(matches!(next(&mut events).await, Event::Exited { .. }));
        let asked = Instant::now();
        supervisor.stop(STOP_DEADLINE).await;
        assert!(asked.elapsed() < Duration::from_secs(5), "not the wait");
        assert!(events.recv().await.is_none(), "and starts nothing");
    }

    #[tokio::test]
    async fn piped_output_reaches_the_parent_and_ends_when_the_program_exits() {
        let mut child = Spec::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(Output::Piped)
            .stderr(Output::Piped)
            .spawn()
            .unwrap();
        let mut stdout = tokio::process::ChildStdout::from_std(child.take_stdout().unwrap()).unwrap();
        let mut stderr = tokio::process::ChildStderr::from_std(child.take_stderr().unwrap()).unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        tokio::time::timeout(Duration::from_secs(5), async {
            stdout.read_to_string(&mut out).await.unwrap();
            stderr.read_to_string(&mut err).await.unwrap();
        })
        .await
        .expect("end of file once the program exits: the wrapper's watcher holds no copy");
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    }

    #[test]
    fn a_log_is_never_opened_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me\n").unwrap();
        let link = dir.path().join("service.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for fresh in [true, false] {
            assert!(open_log(&link, fresh).is_err(), "fresh: {fresh}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
        let log = dir.path().join("real.log");
        std::fs::write(&log, "old\n").unwrap();
        std::io::Write::write_all(&mut open_log(&log, false).unwrap(), b"more\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "old\nmore\n");
        std::io::Write::write_all(&mut open_log(&log, true).unwrap(), b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "new\n");
    }

    #[test]
    fn output_appended_to_a_file_keeps_what_was_there_and_takes_both_streams() {
        let path = std::env::temp_dir().join(format!("devstack-process-test-{}.log", std::process::id()));
        std::fs::write(&path, "before\n").unwrap();
        let child = Spec::new("sh")
            .args(["-c", "echo a; echo b >&2; echo c"])
            .stdout(Output::Append(path.clone()))
            .stderr(Output::Append(path.clone()))
            .spawn()
            .unwrap();
        let status = block_on(async { tokio::time::timeout(Duration::from_secs(5), child.exited()).await })
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before\na\nb\nc\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn block_on_runs_a_future_from_inside_an_async_task() {
        let answer = block_on(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            42
        })
        .unwrap();
        assert_eq!(answer, 42);
    }
}
