//! Group commit and group read: the Firestore calls of concurrent requests share round
//! trips.
//!
//! A call costs Firestore (and its emulator) far more than each document in it (measured in
//! BENCHMARKS.md, "What was tried"). So the reads of concurrent requests go out as one `BatchGetDocuments`, and their
//! commits as one `Commit`, whenever they meet. A request never waits for company: with a
//! call slot free it goes out alone at once; only while every slot is busy do the requests
//! arriving meanwhile gather, and they then leave together.
//!
//! A commit is all or nothing, so one request's failed precondition fails the requests
//! grouped with it. Those are then committed one by one, each under its own preconditions,
//! which is exactly what each asked for. Requests that write the same document never share
//! a commit: the later one waits for the next.
//!
//! The queues are bounded: when one is full, a request is answered at once with a
//! transient error (a push handler turns it into 503, and Pub/Sub retries later) instead
//! of waiting behind work it could not outlast. A request whose caller has gone (cut off by
//! the handler timeout, or its connection closed) is dropped before it is sent: nothing
//! of it was written, so nothing is half-done. A commit already sent is never dropped.

use anyhow::Context as _;
use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1 as fs;
use firestore::gcloud_sdk::prost_types::Timestamp;
use firestore::gcloud_sdk::tonic::Code;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Longest a single Firestore call may take before it counts as a transient failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a commit did not apply.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A precondition did not hold: something changed since it was read. Nothing was
    /// written; read again and decide again.
    #[error("a document changed concurrently: {0}")]
    Conflict(String),
    /// Firestore could not be reached or failed; the commit may or may not have applied.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// Calls of each kind in flight at once, per process.
const SLOTS: usize = 2;
/// Most requests in one call.
const MAX_JOBS: usize = 64;
/// Most writes in one commit (Firestore takes 500).
const MAX_WRITES: usize = 450;
/// Most bytes of writes in one commit. Firestore refuses a request over 10 MiB (Firestore
/// "Usage and limits": maximum size of an API request; also of a transaction); the
/// emulator does not, so only this keeps large jobs (orders near their size limit, batches
/// of them) from failing together on Google Cloud. A single larger job still goes alone.
pub(crate) const MAX_BYTES: usize = 8 * 1024 * 1024;
/// Most requests of each kind waiting for a call. Every slot takes up to [`MAX_JOBS`] at a
/// time, so this keeps a few calls' worth ready for when a slot frees; a request that
/// would wait behind more could not expect an answer before its handler is cut off.
const QUEUE_BOUND: usize = 4 * MAX_JOBS * SLOTS;
/// Most commits held back for a later group (they write a document of the group before).
/// While that many are held the queue is read no further, so it fills up and refuses too:
/// without this, commits to one busy document would move from the queue to the held list
/// as fast as they came.
const MAX_HELD: usize = QUEUE_BOUND;

/// What a commit gives back: each write's new update time, in order.
pub(crate) type CommitResult = Result<Vec<Timestamp>, CommitError>;

/// Found documents by full name.
pub(crate) type Found = HashMap<String, fs::Document>;

struct CommitJob {
    writes: Vec<fs::Write>,
    /// The writes' encoded size, as they go out.
    bytes: usize,
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
    fn new(writes: Vec<fs::Write>, reply: oneshot::Sender<CommitResult>) -> Self {
        use firestore::gcloud_sdk::prost::Message as _;
        let bytes = writes.iter().map(fs::Write::encoded_len).sum();
        CommitJob { writes, bytes, reply }
    }

    fn docs(&self) -> impl Iterator<Item = &str> {
        self.writes.iter().filter_map(doc_of)
    }
}

struct ReadJob {
    names: Vec<String>,
    reply: oneshot::Sender<Result<Found, String>>,
}

/// A request waiting in a queue.
trait Job {
    /// Whether its caller has stopped waiting for the answer.
    fn abandoned(&self) -> bool;
}

impl Job for CommitJob {
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

impl Job for ReadJob {
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// The answer to a request that found its queue full: nothing was sent, so it is safe to
/// retry.
fn busy(kind: &str) -> anyhow::Error {
    anyhow::anyhow!("too many Firestore {kind} are waiting in this instance; try again later")
}

fn shut_down() -> anyhow::Error {
    anyhow::anyhow!("the Firestore client has shut down")
}

/// The queues of one Firestore client.
#[derive(Debug, Clone)]
pub(crate) struct Grouper {
    commits: mpsc::Sender<CommitJob>,
    reads: mpsc::Sender<ReadJob>,
}

impl Grouper {
    /// Starts the tasks that send the calls of `db`; they end when the last clone of the
    /// returned value is dropped.
    pub(crate) fn spawn(db: &FirestoreDb) -> Grouper {
        let (grouper, commit_rx, read_rx) = Grouper::queues(QUEUE_BOUND);
        tokio::spawn(commit_loop(db.clone(), commit_rx));
        tokio::spawn(read_loop(db.clone(), read_rx));
        grouper
    }

    /// The queues, each holding up to `bound` requests, and their receiving ends.
    fn queues(bound: usize) -> (Grouper, mpsc::Receiver<CommitJob>, mpsc::Receiver<ReadJob>) {
        let (commits, commit_rx) = mpsc::channel(bound);
        let (reads, read_rx) = mpsc::channel(bound);
        (Grouper { commits, reads }, commit_rx, read_rx)
    }

    /// Commits `writes` atomically (possibly in one call with other requests' writes).
    pub(crate) async fn commit(&self, writes: Vec<fs::Write>) -> CommitResult {
        let (reply, answer) = oneshot::channel();
        self.commits
            .try_send(CommitJob::new(writes, reply))
            .map_err(|e| match e {
                TrySendError::Full(_) => CommitError::Unavailable(busy("commits")),
                TrySendError::Closed(_) => CommitError::Unavailable(shut_down()),
            })?;
        answer.await.map_err(|_| CommitError::Unavailable(shut_down()))?
    }

    /// Reads the documents named `names` (full names).
    pub(crate) async fn read(&self, names: Vec<String>) -> anyhow::Result<Found> {
        let (reply, answer) = oneshot::channel();
        self.reads
            .try_send(ReadJob { names, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => busy("reads"),
                TrySendError::Closed(_) => shut_down(),
            })?;
        answer.await.map_err(|_| shut_down())?.map_err(anyhow::Error::msg)
    }
}

/// The next job still wanted, from `held` first, else from `queue` (waiting for one);
/// `None` once the queue is closed and empty. Abandoned jobs on the way are dropped.
async fn next_wanted<J: Job>(held: &mut VecDeque<J>, queue: &mut mpsc::Receiver<J>) -> Option<J> {
    loop {
        let job = match held.pop_front() {
            Some(job) => job,
            None => queue.recv().await?,
        };
        if !job.abandoned() {
            return Some(job);
        }
        tracing::debug!("dropping a Firestore request whose caller has gone, unsent");
    }
}

/// The group of commits that goes out with `first`: jobs from `held`, then from `queued`,
/// in order, up to [`MAX_JOBS`] jobs and [`MAX_WRITES`] writes, no two writing the same
/// document. Jobs that do not fit are left in `held`, in order, for the next group, and
/// `queued` is not asked for more once [`MAX_HELD`] are; abandoned jobs are dropped.
fn gather_commits(
    first: CommitJob,
    held: &mut VecDeque<CommitJob>,
    mut queued: impl FnMut() -> Option<CommitJob>,
) -> Vec<CommitJob> {
    let mut docs: HashSet<String> = first.docs().map(str::to_owned).collect();
    let mut writes = first.writes.len();
    let mut bytes = first.bytes;
    let mut group = vec![first];
    let mut wait = VecDeque::new();
    while group.len() < MAX_JOBS {
        // `held` empties into `wait` before the queue is read.
        let next = match held.pop_front() {
            Some(job) => job,
            None if wait.len() < MAX_HELD => match queued() {
                Some(job) => job,
                None => break,
            },
            None => break,
        };
        if next.abandoned() {
            tracing::debug!("dropping a Firestore commit whose caller has gone, unsent");
            continue;
        }
        if writes + next.writes.len() > MAX_WRITES
            || bytes + next.bytes > MAX_BYTES
            || next.docs().any(|d| docs.contains(d))
        {
            wait.push_back(next);
            continue;
        }
        docs.extend(next.docs().map(str::to_owned));
        writes += next.writes.len();
        bytes += next.bytes;
        group.push(next);
    }
    wait.extend(held.drain(..));
    *held = wait;
    group
}

/// The group of reads that goes out with `first`: up to [`MAX_JOBS`] jobs from `queued`,
/// dropping abandoned ones.
fn gather_reads(first: ReadJob, mut queued: impl FnMut() -> Option<ReadJob>) -> Vec<ReadJob> {
    let mut group = vec![first];
    while group.len() < MAX_JOBS {
        let Some(job) = queued() else {
            break;
        };
        if job.abandoned() {
            tracing::debug!("dropping a Firestore read whose caller has gone, unsent");
        } else {
            group.push(job);
        }
    }
    group
}

async fn commit_loop(db: FirestoreDb, mut queue: mpsc::Receiver<CommitJob>) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    // Jobs that could not join the last group (they write a document already in it).
    let mut held: VecDeque<CommitJob> = VecDeque::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = next_wanted(&mut held, &mut queue).await else {
            return;
        };
        let group = gather_commits(first, &mut held, || queue.try_recv().ok());
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
        Err(e) if nothing_written(&e) => {
            // Nothing of the group was written, so a job whose caller has gone since can
            // still be dropped whole; each of the others goes alone, so that one job's
            // failure is its own.
            let wanted = group.into_iter().filter(|job| !job.abandoned());
            futures::future::join_all(wanted.map(|job| async move {
                let result = commit_once(db, job.writes).await;
                let _ = job.reply.send(result);
            }))
            .await;
        }
        Err(e) => {
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

/// Whether a failed commit certainly wrote nothing: a precondition failed (a conflict), or
/// Firestore refused the request as invalid, which one job can cause alone (a document
/// over 1 MiB, say: Firestore "Usage and limits"; the emulator accepts it). A timeout or an outage leaves the outcome
/// unknown.
fn nothing_written(error: &CommitError) -> bool {
    match error {
        CommitError::Conflict(_) => true,
        CommitError::Unavailable(e) => e
            .downcast_ref::<firestore::gcloud_sdk::tonic::Status>()
            .is_some_and(|status| status.code() == Code::InvalidArgument),
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

async fn read_loop(db: FirestoreDb, mut queue: mpsc::Receiver<ReadJob>) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    // Reads never wait for a later group; this stays empty.
    let mut held = VecDeque::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = next_wanted(&mut held, &mut queue).await else {
            return;
        };
        let group = gather_reads(first, || queue.try_recv().ok());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A commit job writing one document per name in `docs`, and the receiver its caller
    /// waits on (dropping it is the caller giving up).
    fn commit_job(docs: &[&str]) -> (CommitJob, oneshot::Receiver<CommitResult>) {
        let (reply, answer) = oneshot::channel();
        let writes = docs
            .iter()
            .map(|d| fs::Write {
                operation: Some(fs::write::Operation::Delete((*d).to_owned())),
                ..Default::default()
            })
            .collect();
        (CommitJob::new(writes, reply), answer)
    }

    fn many(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn docs_of<'a>(jobs: impl IntoIterator<Item = &'a CommitJob>) -> Vec<Vec<&'a str>> {
        jobs.into_iter().map(|j| j.docs().collect()).collect()
    }

    #[test]
    fn a_commit_whose_caller_has_gone_is_dropped_before_it_is_sent() {
        let (first, _first) = commit_job(&["a"]);
        let (gone, gone_answer) = commit_job(&["b"]);
        drop(gone_answer);
        let (kept, _kept) = commit_job(&["c"]);
        let mut queue = VecDeque::from([gone, kept]);
        let mut held = VecDeque::new();
        let group = gather_commits(first, &mut held, || queue.pop_front());
        assert_eq!(docs_of(&group), [["a"], ["c"]]);
        assert!(held.is_empty() && queue.is_empty());
    }

    #[tokio::test]
    async fn commits_to_one_document_wait_for_the_next_group_in_order_unless_their_caller_leaves() {
        let (first, _first) = commit_job(&["x"]);
        let (same, same_answer) = commit_job(&["x", "y"]);
        let (later_same, _later) = commit_job(&["x"]);
        let (other, _other) = commit_job(&["z"]);
        let mut queue = VecDeque::from([same, later_same, other]);
        let mut held = VecDeque::new();
        let group = gather_commits(first, &mut held, || queue.pop_front());
        assert_eq!(docs_of(&group), [vec!["x"], vec!["z"]]);
        assert_eq!(docs_of(&held), [vec!["x", "y"], vec!["x"]]);

        // The first held job's caller gives up while it waits: the next group starts with
        // the one after it, and the abandoned one is never sent.
        drop(same_answer);
        let (_sender, mut empty) = mpsc::channel::<CommitJob>(1);
        let next = next_wanted(&mut held, &mut empty).await.expect("a held job");
        let group = gather_commits(next, &mut held, || None);
        assert_eq!(docs_of(&group), [["x"]]);
        assert!(held.is_empty());
    }

    #[test]
    fn a_group_is_split_after_a_failure_that_wrote_nothing_and_only_then() {
        use firestore::gcloud_sdk::tonic::Status;
        let unavailable = |status: Status| {
            CommitError::Unavailable(anyhow::Error::new(status).context("committing sagas/x"))
        };
        for (what, error, split) in [
            ("a conflict", CommitError::Conflict("stale".to_owned()), true),
            (
                "an invalid request",
                unavailable(Status::invalid_argument("too big")),
                true,
            ),
            ("an outage", unavailable(Status::unavailable("down")), false),
            (
                "a deadline",
                unavailable(Status::deadline_exceeded("slow")),
                false,
            ),
            (
                "a timeout of ours",
                CommitError::Unavailable(anyhow::anyhow!("committing to Firestore timed out")),
                false,
            ),
        ] {
            assert_eq!(nothing_written(&error), split, "{what}");
        }
    }

    #[test]
    fn a_group_takes_at_most_max_jobs_and_max_writes_and_leaves_the_rest() {
        let (first, _first) = commit_job(&["first"]);
        let jobs: Vec<_> = many("d", MAX_JOBS + 5)
            .iter()
            .map(|d| commit_job(&[d.as_str()]))
            .collect();
        let (jobs, _answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let mut queue = VecDeque::from(jobs);
        let group = gather_commits(first, &mut VecDeque::new(), || queue.pop_front());
        assert_eq!(group.len(), MAX_JOBS);
        assert_eq!(queue.len(), 6, "what did not fit stays queued");

        let big = MAX_WRITES / 2 - 1;
        let (first, _first) = commit_job(&many("a", big).iter().map(String::as_str).collect::<Vec<_>>());
        let (second, _second) = commit_job(&many("b", big).iter().map(String::as_str).collect::<Vec<_>>());
        let (too_many, _too_many) =
            commit_job(&many("c", big).iter().map(String::as_str).collect::<Vec<_>>());
        let (small, _small) = commit_job(&["s"]);
        let mut queue = VecDeque::from([second, too_many, small]);
        let mut held = VecDeque::new();
        let group = gather_commits(first, &mut held, || queue.pop_front());
        let writes: usize = group.iter().map(|j| j.writes.len()).sum();
        assert_eq!((group.len(), writes), (3, 2 * big + 1));
        assert!(writes <= MAX_WRITES);
        assert_eq!(held.len(), 1, "the job that would pass MAX_WRITES waits");
    }

    #[test]
    fn a_group_stays_under_max_bytes_and_a_job_larger_than_that_goes_alone() {
        let sized = |name: &str, bytes: usize| {
            let (reply, answer) = oneshot::channel();
            let write = fs::Write {
                operation: Some(fs::write::Operation::Update(fs::Document {
                    name: name.to_owned(),
                    fields: HashMap::from([(
                        "data".to_owned(),
                        fs::Value {
                            value_type: Some(fs::value::ValueType::StringValue("x".repeat(bytes))),
                        },
                    )]),
                    ..Default::default()
                })),
                ..Default::default()
            };
            (CommitJob::new(vec![write], reply), answer)
        };
        let third = MAX_BYTES / 3;
        let (first, _a) = sized("a", third);
        let (second, _b) = sized("b", third);
        let (too_much, _c) = sized("c", third);
        let (small, _d) = sized("d", 10);
        let mut queue = VecDeque::from([second, too_much, small]);
        let mut held = VecDeque::new();
        let group = gather_commits(first, &mut held, || queue.pop_front());
        assert_eq!(docs_of(&group), [["a"], ["b"], ["d"]]);
        assert!(group.iter().map(|j| j.bytes).sum::<usize>() <= MAX_BYTES);
        assert_eq!(docs_of(&held), [["c"]], "the job that would pass MAX_BYTES waits");

        let (huge, _e) = sized("e", MAX_BYTES + 1);
        let (next, _f) = sized("f", 10);
        let mut queue = VecDeque::from([next]);
        let mut held = VecDeque::new();
        let group = gather_commits(huge, &mut held, || queue.pop_front());
        assert_eq!(docs_of(&group), [["e"]], "alone");
        assert_eq!(docs_of(&held), [["f"]]);
    }

    #[test]
    fn commits_held_back_for_one_busy_document_stop_the_queue_being_read_at_max_held() {
        let (first, _first) = commit_job(&["hot"]);
        let (jobs, _answers): (Vec<_>, Vec<_>) = (0..MAX_HELD + 10).map(|_| commit_job(&["hot"])).unzip();
        let mut queue = VecDeque::from(jobs);
        let mut held = VecDeque::new();
        let group = gather_commits(first, &mut held, || queue.pop_front());
        assert_eq!(group.len(), 1);
        assert_eq!((held.len(), queue.len()), (MAX_HELD, 10));
    }

    #[test]
    fn a_read_whose_caller_has_gone_is_dropped_before_it_is_sent() {
        let job = |name: &str| {
            let (reply, answer) = oneshot::channel();
            (
                ReadJob {
                    names: vec![name.to_owned()],
                    reply,
                },
                answer,
            )
        };
        let (first, _first) = job("a");
        let (gone, gone_answer) = job("b");
        drop(gone_answer);
        let (kept, _kept) = job("c");
        let mut queue = VecDeque::from([gone, kept]);
        let group = gather_reads(first, || queue.pop_front());
        let names: Vec<&str> = group.iter().map(|j| j.names[0].as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[tokio::test]
    async fn a_request_that_finds_its_queue_full_is_refused_at_once_with_a_transient_error() {
        // Nobody reads these queues: the first request of each kind fills them.
        let (grouper, _commits, _reads) = Grouper::queues(1);
        let (waiting, _waiting) = commit_job(&["a"]);
        assert!(grouper.commits.try_send(waiting).is_ok());
        let (reply, _read_waiting) = oneshot::channel();
        let read = ReadJob {
            names: vec!["a".to_owned()],
            reply,
        };
        assert!(grouper.reads.try_send(read).is_ok());

        let at_once = Duration::from_secs(1);
        let commit = tokio::time::timeout(at_once, grouper.commit(Vec::new()))
            .await
            .expect("answered without waiting");
        assert!(
            matches!(&commit, Err(CommitError::Unavailable(e)) if e.to_string().contains("too many")),
            "{commit:?}"
        );
        let read = tokio::time::timeout(at_once, grouper.read(vec!["b".to_owned()]))
            .await
            .expect("answered without waiting");
        assert!(
            read.as_ref().is_err_and(|e| e.to_string().contains("too many")),
            "{read:?}"
        );
    }
}
