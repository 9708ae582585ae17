//! Group commit and group read: the Firestore calls of concurrent requests share round
//! trips.
//!
//! A call costs Firestore (and its emulator) far more than each document in it: measured on
//! the emulator, ten one-document commits cost three times the CPU of one ten-document
//! commit. So the reads of concurrent requests go out as one `BatchGetDocuments`, and their
//! commits as one `Commit`, whenever they meet. A request never waits for company: with a
//! call slot free it goes out alone at once; only while every slot is busy do the requests
//! arriving meanwhile gather, and they then leave together.
//!
//! A commit is all or nothing, so one request's failed precondition fails the requests
//! grouped with it. Those are then committed one by one, each under its own preconditions,
//! which is exactly what each asked for. Requests that write the same document never share
//! a commit: the later one waits for the next.

use crate::store::{CALL_TIMEOUT, CommitError};
use anyhow::Context as _;
use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1 as fs;
use firestore::gcloud_sdk::prost_types::Timestamp;
use firestore::gcloud_sdk::tonic::Code;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Calls of each kind in flight at once, per process.
const SLOTS: usize = 2;
/// Most requests in one call.
const MAX_JOBS: usize = 64;
/// Most writes in one commit (Firestore takes 500).
const MAX_WRITES: usize = 450;

/// What a commit gives back: each write's new update time, in order.
pub(crate) type CommitResult = Result<Vec<Timestamp>, CommitError>;

/// Found documents by full name.
pub(crate) type Found = HashMap<String, fs::Document>;

struct CommitJob {
    writes: Vec<fs::Write>,
    reply: oneshot::Sender<CommitResult>,
}

/// The document a write changes.
fn doc_of(write: &fs::Write) -> Option<&str> {
    match &write.operation {
        Some(fs::write::Operation::Update(doc)) => Some(doc.name.as_str()),
        Some(fs::write::Operation::Delete(name)) => Some(name.as_str()),
        Some(fs::write::Operation::Transform(t)) => Some(t.document.as_str()),
        None => None,
    }
}

impl CommitJob {
    fn docs(&self) -> impl Iterator<Item = &str> {
        self.writes.iter().filter_map(doc_of)
    }
}

struct ReadJob {
    names: Vec<String>,
    reply: oneshot::Sender<Result<Found, String>>,
}

/// The queues of one Firestore client.
#[derive(Debug, Clone)]
pub(crate) struct Grouper {
    commits: mpsc::UnboundedSender<CommitJob>,
    reads: mpsc::UnboundedSender<ReadJob>,
}

impl Grouper {
    /// Starts the tasks that send the calls of `db`; they end when the last clone of the
    /// returned value is dropped.
    pub(crate) fn spawn(db: &FirestoreDb) -> Grouper {
        let (commits, commit_rx) = mpsc::unbounded_channel();
        let (reads, read_rx) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(db.clone(), commit_rx));
        tokio::spawn(read_loop(db.clone(), read_rx));
        Grouper { commits, reads }
    }

    /// Commits `writes` atomically (possibly in one call with other requests' writes).
    pub(crate) async fn commit(&self, writes: Vec<fs::Write>) -> CommitResult {
        let (reply, answer) = oneshot::channel();
        self.commits
            .send(CommitJob { writes, reply })
            .map_err(|_| CommitError::Unavailable(anyhow::anyhow!("the Firestore client has shut down")))?;
        answer
            .await
            .map_err(|_| CommitError::Unavailable(anyhow::anyhow!("the Firestore client has shut down")))?
    }

    /// Reads the documents named `names` (full names).
    pub(crate) async fn read(&self, names: Vec<String>) -> anyhow::Result<Found> {
        let (reply, answer) = oneshot::channel();
        self.reads
            .send(ReadJob { names, reply })
            .map_err(|_| anyhow::anyhow!("the Firestore client has shut down"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the Firestore client has shut down"))?
            .map_err(anyhow::Error::msg)
    }
}

async fn commit_loop(db: FirestoreDb, mut queue: mpsc::UnboundedReceiver<CommitJob>) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    // Jobs that could not join the last group (they write a document already in it).
    let mut held: VecDeque<CommitJob> = VecDeque::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match held.pop_front() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut docs: HashSet<String> = first.docs().map(str::to_owned).collect();
        let mut writes = first.writes.len();
        let mut group = vec![first];
        let mut wait = VecDeque::new();
        while group.len() < MAX_JOBS {
            let next = match held.pop_front() {
                Some(job) => job,
                None => match queue.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if writes + next.writes.len() > MAX_WRITES || next.docs().any(|d| docs.contains(d)) {
                wait.push_back(next);
                continue;
            }
            docs.extend(next.docs().map(str::to_owned));
            writes += next.writes.len();
            group.push(next);
        }
        wait.extend(held.drain(..));
        held = wait;
        let db = db.clone();
        tokio::spawn(async move {
            commit_group(&db, group).await;
            drop(slot);
        });
    }
}

async fn commit_group(db: &FirestoreDb, mut group: Vec<CommitJob>) {
    if group.len() == 1 {
        let job = group.pop().expect("one job");
        let result = commit_once(db, job.writes).await;
        let _ = job.reply.send(result);
        return;
    }
    let all: Vec<fs::Write> = group.iter().flat_map(|j| j.writes.iter().cloned()).collect();
    match commit_once(db, all).await {
        Ok(times) => {
            let mut times = times.into_iter();
            for job in group {
                let own: Vec<Timestamp> = times.by_ref().take(job.writes.len()).collect();
                let _ = job.reply.send(Ok(own));
            }
        }
        Err(CommitError::Conflict(_)) => {
            futures::future::join_all(group.into_iter().map(|job| async move {
                let result = commit_once(db, job.writes).await;
                let _ = job.reply.send(result);
            }))
            .await;
        }
        Err(CommitError::Unavailable(e)) => {
            // The outcome is unknown, for all of them alike.
            let why = format!("{e:#}");
            for job in group {
                let _ = job
                    .reply
                    .send(Err(CommitError::Unavailable(anyhow::anyhow!(why.clone()))));
            }
        }
    }
}

async fn commit_once(db: &FirestoreDb, writes: Vec<fs::Write>) -> CommitResult {
    let what: Vec<String> = writes.iter().filter_map(doc_of).map(str::to_owned).collect();
    let request = fs::CommitRequest {
        database: db.get_database_path().clone(),
        writes,
        ..Default::default()
    };
    let result = tokio::time::timeout(CALL_TIMEOUT, db.client().get().commit(request))
        .await
        .context("committing to Firestore timed out")?;
    match result {
        Ok(response) => Ok(response
            .into_inner()
            .write_results
            .into_iter()
            .map(|r| r.update_time.unwrap_or_default())
            .collect()),
        Err(status) => match status.code() {
            Code::FailedPrecondition | Code::AlreadyExists | Code::NotFound | Code::Aborted => {
                Err(CommitError::Conflict(status.message().to_owned()))
            }
            _ => Err(CommitError::Unavailable(
                anyhow::Error::new(status).context(format!("committing {}", what.join(", "))),
            )),
        },
    }
}

async fn read_loop(db: FirestoreDb, mut queue: mpsc::UnboundedReceiver<ReadJob>) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_JOBS {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            let names: Vec<String> = group
                .iter()
                .flat_map(|j| j.names.iter().cloned())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            match read_once(&db, names).await {
                Ok(found) => {
                    for job in group {
                        let own = job
                            .names
                            .iter()
                            .filter_map(|n| found.get(n).map(|d| (n.clone(), d.clone())))
                            .collect();
                        let _ = job.reply.send(Ok(own));
                    }
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    for job in group {
                        let _ = job.reply.send(Err(why.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

async fn read_once(db: &FirestoreDb, names: Vec<String>) -> anyhow::Result<Found> {
    let what = names.join(", ");
    let request = fs::BatchGetDocumentsRequest {
        database: db.get_database_path().clone(),
        documents: names,
        ..Default::default()
    };
    let read = async {
        let mut stream = db.client().get().batch_get_documents(request).await?.into_inner();
        let mut found = HashMap::new();
        while let Some(response) = stream.message().await? {
            if let Some(fs::batch_get_documents_response::Result::Found(doc)) = response.result {
                found.insert(doc.name.clone(), doc);
            }
        }
        Ok::<_, firestore::gcloud_sdk::tonic::Status>(found)
    };
    tokio::time::timeout(CALL_TIMEOUT, read)
        .await
        .context("reading from Firestore timed out")?
        .with_context(|| format!("reading {what}"))
}
