//! Reading outcomes from the pull subscriptions while a run goes on.
//!
//! One task per subscription, each with its own [`Puller`]: a `Puller` holds its lock for
//! the whole of a `pull`, so one shared between subscriptions would read them in turn and
//! delay every message by the others' waits. The tasks run from before the first order to
//! the end of the benchmark and queue what they read; a run takes what has arrived.

use crate::check::{Kind, Outcome, Placed};
use devstack::pubsub::Puller;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long one pull waits before it checks whether it should stop.
const PULL_WAIT: Duration = Duration::from_millis(250);

/// The subscriptions a run reads, and what their messages mean.
pub const SUBSCRIPTIONS: [(&str, Kind); 4] = [
    ("payment-created-sub", Kind::Completed),
    ("error-cli-sub", Kind::Failed),
    ("compensated-sub", Kind::Compensated),
    ("dead-letter-sub", Kind::DeadLetter),
];

/// Readers of a project's pull subscriptions.
#[derive(Debug)]
pub struct Observer {
    queue: mpsc::UnboundedReceiver<anyhow::Result<Outcome>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    earlier: HashSet<String>,
}

/// What a run saw, and whether it could stop waiting in time.
#[derive(Debug)]
pub struct Collected {
    /// Every message read.
    pub outcomes: Vec<Outcome>,
    /// Whether every saga ended (and every failure was compensated) before the timeout.
    pub settled: bool,
}

impl Observer {
    /// Starts reading `SUBSCRIPTIONS` of `project` on the emulator at `endpoint`.
    pub async fn start(endpoint: &str, project: &str) -> anyhow::Result<Self> {
        let (tx, queue) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for (subscription, kind) in SUBSCRIPTIONS {
            let puller = Arc::new(Puller::connect(endpoint, project).await?);
            let tx = tx.clone();
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                while !*stopped.borrow() {
                    match puller.pull(subscription, 1000, PULL_WAIT).await {
                        Ok(messages) => {
                            for m in messages {
                                let _ = tx.send(Ok(Outcome::new(kind, m.data, m.publish_time)));
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            // The stream's task ended; opening it again needs a new Puller,
                            // and a broken emulator will not heal within a run anyway.
                            break;
                        }
                    }
                }
                puller.close().await;
            }));
        }
        Ok(Observer {
            queue,
            stop,
            tasks,
            earlier: HashSet::new(),
        })
    }

    /// Notes sagas a run placed, so that a late message about one of them is not taken
    /// for an outcome of a later run.
    pub fn remember(&mut self, uuids: impl IntoIterator<Item = String>) {
        self.earlier.extend(uuids);
    }

    /// Whether an earlier run placed the saga `uuid`.
    pub fn is_earlier(&self, uuid: &str) -> bool {
        self.earlier.contains(uuid)
    }

    /// Everything read so far.
    pub fn drain(&mut self) -> anyhow::Result<Vec<Outcome>> {
        let mut out = Vec::new();
        while let Ok(item) = self.queue.try_recv() {
            out.push(item?);
        }
        Ok(out)
    }

    /// Reads until every order of `placed` ended and every failure was compensated, or
    /// until nothing new arrived for `idle`. Either way, returns what was read.
    pub async fn collect(&mut self, placed: &[Placed], idle: Duration) -> anyhow::Result<Collected> {
        let mut outcomes = Vec::new();
        let mut last_news = tokio::time::Instant::now();
        let settled = loop {
            let fresh = self.drain()?;
            if !fresh.is_empty() {
                last_news = tokio::time::Instant::now();
                outcomes.extend(fresh);
            }
            if crate::check::settled(placed, &outcomes) {
                break true;
            }
            if last_news.elapsed() > idle {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Collected { outcomes, settled })
    }

    /// Waits `grace` and returns what arrived meanwhile: after a run settled, so that a
    /// second, conflicting outcome of a saga would still be seen.
    pub async fn linger(&mut self, grace: Duration) -> anyhow::Result<Vec<Outcome>> {
        tokio::time::sleep(grace).await;
        self.drain()
    }

    /// Stops the readers, acking what they read.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}
