//! Deliveries whose decisions share one document (inventory: an item's stock) are decided
//! together: one read of the shared document, the decisions one after the other, one commit.
//!
//! Firestore advises about one sustained write per second per document ("Distributed
//! counters", "Best practices"); a hot item sold one reservation per commit rewrites its
//! stock document once per sale, and concurrent sales keep failing each other's
//! preconditions. Here every delivery of a process for the same shared document joins a
//! queue; a worker task takes what has queued, reads the shared document and every member's
//! own documents in one round trip, and lets the step decide for each member in turn against
//! the document *as the earlier members left it*. Only the last state of the shared document
//! is written, in the same commit as every member's record, domain writes and view, guarded
//! by the shared document's update time as read. Then each member's message is published,
//! and each member answers.
//!
//! **Why it is exact.** Each decision sees exactly the stock that the decisions before it in
//! the batch left, starting from the level read; the commit applies only if the document is
//! still as read. So the batch is equivalent to its members committed one after the other
//! with nothing in between: a reservation never takes stock another took, and an order is
//! refused for stock only if, at that point of that serial order, less than it asked for was
//! left, a level which later sales can only lower. If anything changed the document (another
//! instance's batch, a compensation's increment), the commit fails as a whole, nothing is
//! written, and the worker reads and decides again, after a back-off that grows while the
//! commits keep failing.
//!
//! **How often the shared document is written.** A commit of it starts only once the step's
//! last write of it (as the document records it, [`Step::shared_written_at`], which every
//! instance reads) is the step's gap ([`Step::shared_write_gap`], by default
//! [`SHARED_WRITE_GAP`]) old, so the step writes it at most once per gap, however many
//! instances and steps write it (inventory's sales and the janitor's returns both mark it):
//! a commit guarded by the document as read fails if anyone wrote it since, and writes
//! nothing. Writes outside the saga (an operator's edit) do not move the mark, so they hold
//! nothing back; they only make a commit fail its precondition, and the batch decides
//! again. A batch that must wait for the gap decides, after waiting, on what it read (its
//! guard covers the wait). Deliveries that arrive meanwhile wait and join the next batch,
//! which is what makes the batches large under load; a document last written long ago is
//! committed at once.

use super::deadline::Deadline;
use super::lease::HeldLease;
use super::run::{commit_record, publish_and_mark, record_of, resume_found};
use super::status::{Inbound, record_step};
use super::{Handled, Step, StepError, records};
use crate::contract::Service;
use crate::gcp::Clients;
use crate::gcp::bus::Outgoing;
use crate::gcp::store::{CommitError, DocPath, Snapshot, WriteSet};
use crate::wire::message::SagaMessage;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// The least time between two writes of a shared document, by default: at most four a
/// second. A step may configure its own ([`Step::shared_write_gap`](super::Step::shared_write_gap)).
pub const SHARED_WRITE_GAP: Duration = Duration::from_millis(250);

/// Most members in one batch: each adds its record, its domain writes and its view to the
/// commit (see [`MAX_WRITES`]).
pub const MAX_MEMBERS: usize = 100;

/// Most writes in a batch's commit: Firestore takes at most 500 in one (Firestore "Usage and
/// limits"), and the emulator does not enforce it. A member whose writes would go past it waits for the next round
/// (inventory's members write 3 documents; the janitor's returns up to 7).
pub const MAX_WRITES: usize = 450;

/// Most bytes of members' messages in one batch. Each member's record holds the message it
/// publishes (its own, grown by a few fields), so this keeps a batch's commit well under the
/// store's per-commit byte budget (`MAX_BYTES`, under Firestore's 10 MiB request limit) even
/// when every order is near its size limit. The first member always goes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// One delivery waiting in a batch.
struct Member {
    msg: SagaMessage,
    /// The message's size as it arrived (its JSON), which its record will hold grown.
    bytes: usize,
    inbound: Inbound,
    deadline: Deadline,
    answer: oneshot::Sender<Result<Handled, StepError>>,
}

/// The queue of one shared document of one step, in one instance of the service
/// ([`Clients::instance`]).
type Key = (u64, Service, DocPath);

static QUEUES: LazyLock<Mutex<HashMap<Key, mpsc::UnboundedSender<Member>>>> = LazyLock::new(Mutex::default);

/// When this process last wrote each shared document, kept across workers: a worker ends
/// when its queue is empty, and the next one, started by the next delivery, must wait for
/// the gap before it reads, so that what arrives meanwhile joins its read and nothing waits
/// for a second gap. On the monotonic clock: a wall clock stepped back after a write would
/// otherwise hold the item's worker (and every delivery queued behind it) for the step.
static WRITTEN: LazyLock<Mutex<HashMap<Key, Instant>>> = LazyLock::new(Mutex::default);

fn written() -> std::sync::MutexGuard<'static, HashMap<Key, Instant>> {
    WRITTEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `step` for `msg` as a member of the batch of `shared`, and returns its outcome.
pub(super) async fn join(
    step: Arc<dyn Step>,
    clients: &Clients,
    shared: DocPath,
    msg: &SagaMessage,
    inbound: &Inbound,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let (answer, answered) = oneshot::channel();
    let member = Member {
        bytes: msg.to_json().len(),
        msg: msg.clone(),
        inbound: inbound.clone(),
        deadline,
        answer,
    };
    let key = (clients.instance, step.service(), shared);
    {
        let mut queues = QUEUES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let unsent = match queues.get(&key) {
            Some(queue) => queue
                .send(member)
                .err()
                .map(|mpsc::error::SendError(member)| member),
            None => Some(member),
        };
        if let Some(member) = unsent {
            // No worker, or it just ended: start one with this member.
            let (queue, members) = mpsc::unbounded_channel();
            let _ = queue.send(member);
            queues.insert(key.clone(), queue);
            tokio::spawn(work(step, clients.clone(), key, members));
        }
    }
    answered
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the batch ended without an answer").into()))
}

/// The worker of one shared document: batches until the queue stays empty.
async fn work(step: Arc<dyn Step>, clients: Clients, key: Key, mut members: mpsc::UnboundedReceiver<Member>) {
    let shared = key.2.clone();
    let mut waiting: Vec<Member> = Vec::new();
    let mut conflicts = 0;
    loop {
        while let Ok(member) = members.try_recv() {
            waiting.push(member);
        }
        // Members whose handlers gave up need no answer.
        waiting.retain(|m| !m.answer.is_closed());
        if waiting.is_empty() {
            // Leave the map before ending, unless a member arrived meanwhile.
            let mut queues = QUEUES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Ok(member) = members.try_recv() else {
                queues.remove(&key);
                return;
            };
            waiting.push(member);
            continue;
        }
        let last_written = written().get(&key).copied();
        if let Some(at) = last_written {
            tokio::time::sleep_until((at + step.shared_write_gap()).into()).await;
            while let Ok(member) = members.try_recv() {
                waiting.push(member);
            }
        }
        let take = batch_len(waiting.iter().map(|m| m.bytes));
        let batch: Vec<Member> = waiting.drain(..take).collect();
        match round(step.as_ref(), &clients, &shared, batch).await {
            Ok((outcome, unsettled)) => {
                match outcome {
                    Outcome::Wrote(at) => {
                        written().insert(key.clone(), at);
                        conflicts = 0;
                    }
                    Outcome::Settled => conflicts = 0,
                    // Whatever changed the document may change it again at once (another
                    // instance, a compensation's increment): back off, longer each time.
                    Outcome::Conflict => {
                        conflicts += 1;
                        super::retry::backoff(conflicts).await;
                    }
                }
                // Members that lost this round to a concurrent change go first next time.
                waiting.splice(0..0, unsettled);
            }
            Err((error, batch)) => {
                let why = format!("{error:#}");
                for member in batch {
                    let _ = member.answer.send(Err(anyhow::anyhow!("{why}").into()));
                }
            }
        }
    }
}

/// How many of the waiting members, whose messages have `sizes`, the next batch takes: at
/// most [`MAX_MEMBERS`], and members while their messages fit [`MAX_BATCH_BYTES`] (always
/// at least one, if any wait).
fn batch_len(sizes: impl ExactSizeIterator<Item = usize>) -> usize {
    let waiting = sizes.len();
    let mut bytes = 0;
    sizes
        .take(MAX_MEMBERS)
        .take_while(|size| {
            bytes += size;
            bytes <= MAX_BATCH_BYTES
        })
        .count()
        .max(waiting.min(1))
}

/// When the step may next write its shared document, whose last write by the step is
/// marked `mark`: `None` for now. A mark in the future is another clock's (Firestore's
/// commit time against this machine's): within a gap of now it counts as now, so the step
/// waits one gap; further out it is no mark the step wrote (a hand-edited document), and
/// waiting for it could hold the sales back for ever, so it is ignored and the next write
/// replaces it.
fn next_write(mark: Option<SystemTime>, now: SystemTime, gap: Duration) -> Option<SystemTime> {
    let mark = mark.filter(|m| *m <= now + gap)?;
    let next = mark.min(now) + gap;
    (next > now).then_some(next)
}

/// Whether a member whose decision writes `own` documents fits in a commit that has
/// `queued` writes of `members` members so far, within [`MAX_WRITES`]. The first member
/// always fits.
fn fits(queued: usize, own: usize, members: usize) -> bool {
    // Its record and its view, and the shared document's one write.
    let with_it = queued + own + 2 + 1;
    members == 0 || with_it <= MAX_WRITES
}

async fn sleep_until(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

/// What one round did, and the members left to try again. `Err` for a failure that fails
/// every member of the batch.
type RoundResult = Result<(Outcome, Vec<Member>), (StepError, Vec<Member>)>;

/// How a round ended, for the worker's pacing.
enum Outcome {
    /// It wrote the shared document, at about this time.
    Wrote(Instant),
    /// It wrote nothing of the shared document, or waited for its gap.
    Settled,
    /// Its commit lost to a concurrent change: nothing was written.
    Conflict,
}

/// One read, the decisions, one commit, then the publishes.
async fn round(step: &dyn Step, clients: &Clients, shared: &DocPath, batch: Vec<Member>) -> RoundResult {
    let service = step.service();
    // A second delivery of a message already in this round waits for the next one, where it
    // finds the first one's record: deciding both here would sell the stock twice.
    let mut seen = std::collections::HashSet::new();
    let (mut batch, mut repeats): (Vec<Member>, Vec<Member>) =
        batch.into_iter().partition(|m| seen.insert(m.msg.uuid));
    let plans: Vec<Plan> = batch.iter().map(|m| Plan::new(step, service, &m.msg)).collect();
    let mut paths = vec![shared.clone()];
    for plan in &plans {
        paths.extend(plan.paths());
    }
    let docs = match clients.store.get_all(&paths).await {
        Ok(docs) => docs,
        Err(e) => {
            batch.extend(repeats);
            return Err((e.into(), batch));
        }
    };
    let mut docs = docs.into_iter();
    let shared_doc = docs.next().flatten();
    // The shared document must not be written by the step more often than its gap, whichever
    // instance wrote it last. The batch waits, then decides on what it read: reading again
    // would bill every member's documents twice, and the commit is guarded anyway, so a
    // write made meanwhile fails it and the next round reads that write's mark.
    if let Some(doc) = &shared_doc
        && let Some(next) = next_write(
            step.shared_written_at(doc),
            SystemTime::now(),
            step.shared_write_gap(),
        )
    {
        sleep_until(next).await;
    }
    let mut state = shared_doc;
    let mut writes = WriteSet::new();
    let mut shared_write = WriteSet::new();
    let mut committing: Vec<Committing> = Vec::new();
    for (member, plan) in batch.into_iter().zip(plans) {
        let own: Vec<Option<Snapshot>> = docs.by_ref().take(plan.count()).collect();
        match plan.settle(step, shared, state.as_ref(), own, &member) {
            Settled::Exists(record) => {
                let (clients, member) = (clients.clone(), member);
                tokio::spawn(async move {
                    let Member {
                        deadline,
                        answer,
                        msg,
                        ..
                    } = member;
                    let _ = answer.send(resume_found(&clients, service, msg.uuid, record, deadline).await);
                });
            }
            Settled::Refused(error) => {
                let _ = member.answer.send(Err(error));
            }
            Settled::Nothing(why) => {
                let _ = member.answer.send(Ok(Handled::Ignored(why)));
            }
            Settled::Decided(decision) if !fits(writes.len(), decision.writes.len(), committing.len()) => {
                // Decided on the stock as the members before it left it, which stays so:
                // the next round decides it again from what this one commits.
                repeats.push(member);
            }
            Settled::Decided(mut decision) => {
                let mine = decision.writes.split_off_document(shared);
                if !mine.is_empty() {
                    state = state.map(|s| s.after(&mine));
                    shared_write = mine;
                }
                record_step(
                    &mut decision.writes,
                    service,
                    decision.went_on_with.as_ref().unwrap_or(&member.msg),
                    &member.inbound,
                    decision.topic,
                    &decision.message,
                );
                let outgoing =
                    Outgoing::new(decision.topic, decision.message.to_json()).traced(&member.inbound.trace);
                let record = record_of(service, &member.msg, &decision);
                let (index, lease) = commit_record(&mut writes, &plan.path, record, &outgoing);
                writes.extend(decision.writes);
                committing.push((member, plan.path, outgoing, index, lease));
            }
        }
    }
    if committing.is_empty() {
        return Ok((Outcome::Settled, repeats));
    }
    let wrote_shared = !shared_write.is_empty();
    writes.extend(shared_write);
    commit(clients, shared, writes, committing, wrote_shared, repeats).await
}

/// A decided member waiting for the commit: its record's path and index in the commit,
/// what it publishes, and the lease on its outbox.
type Committing = (Member, DocPath, Outgoing, usize, HeldLease);

/// Commits the round's writes; then publishes each member's message and answers it.
async fn commit(
    clients: &Clients,
    shared: &DocPath,
    writes: WriteSet,
    committing: Vec<Committing>,
    wrote_shared: bool,
    repeats: Vec<Member>,
) -> RoundResult {
    match clients.store.commit(writes).await {
        Ok(times) => {
            for (member, path, outgoing, index, lease) in committing {
                let written_at = times.get(index).copied().unwrap_or_default();
                let clients = clients.clone();
                tokio::spawn(async move {
                    let topic = outgoing.topic;
                    let published =
                        publish_and_mark(&clients, &path, &outgoing, written_at, lease, member.deadline)
                            .await
                            .map(|()| Handled::Published(topic));
                    let _ = member.answer.send(published);
                });
            }
            let outcome = if wrote_shared {
                Outcome::Wrote(Instant::now())
            } else {
                Outcome::Settled
            };
            Ok((outcome, repeats))
        }
        Err(CommitError::Conflict(_)) => {
            tracing::debug!(%shared, "a batch lost its commit to a concurrent change; deciding again");
            let mut again: Vec<Member> = committing.into_iter().map(|(member, ..)| member).collect();
            again.extend(repeats);
            Ok((Outcome::Conflict, again))
        }
        Err(CommitError::Unavailable(e)) => {
            let mut batch: Vec<Member> = committing.into_iter().map(|(member, ..)| member).collect();
            batch.extend(repeats);
            Err((e.into(), batch))
        }
    }
}

/// What a member reads besides the shared document, and where its own record lives.
struct Plan {
    path: DocPath,
    reads: Vec<DocPath>,
}

/// What became of one member in a round.
enum Settled {
    /// Its record exists already (as read): a duplicate, finished apart.
    Exists(Snapshot),
    /// The step refused its message (poison).
    Refused(StepError),
    /// The step has nothing to do for it.
    Nothing(&'static str),
    /// The step decided.
    Decided(Box<super::Decision>),
}

impl Plan {
    fn new(step: &dyn Step, service: Service, msg: &SagaMessage) -> Self {
        Plan {
            path: records::step(msg.uuid, service),
            reads: step.reads(msg),
        }
    }

    /// The member's own documents, in the order [`Plan::settle`] takes them.
    fn paths(&self) -> impl Iterator<Item = DocPath> + '_ {
        std::iter::once(self.path.clone()).chain(self.reads.iter().cloned())
    }

    fn count(&self) -> usize {
        1 + self.reads.len()
    }

    /// Decides the member, the shared document standing as `state`, its own documents
    /// being `own` (in [`Plan::paths`] order).
    fn settle(
        &self,
        step: &dyn Step,
        shared: &DocPath,
        state: Option<&Snapshot>,
        mut own: Vec<Option<Snapshot>>,
        member: &Member,
    ) -> Settled {
        if let Some(record) = own.remove(0) {
            return Settled::Exists(record);
        }
        // The step sees the shared document as the members before it left it.
        let docs: Vec<Option<Snapshot>> = self
            .reads
            .iter()
            .zip(own)
            .map(|(path, doc)| if path == shared { state.cloned() } else { doc })
            .collect();
        if let Err(e) = step.check(&member.msg) {
            return Settled::Refused(e.into());
        }
        if let Some(why) = step.nothing_to_do(&member.msg, &docs) {
            return Settled::Nothing(why);
        }
        match step.decide(&member.msg, &docs) {
            Ok(decision) => Settled::Decided(Box::new(decision)),
            Err(e) => Settled::Refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_document_is_written_a_gap_after_the_last_mark_and_a_bogus_mark_holds_nothing_back() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let gap = Duration::from_millis(250);
        let ms = Duration::from_millis;
        for (what, mark, want) in [
            ("never written by the step", None, None),
            ("written long ago", Some(now - ms(5_000)), None),
            ("written exactly a gap ago", Some(now - gap), None),
            ("written 100 ms ago", Some(now - ms(100)), Some(now + ms(150))),
            ("written just now", Some(now), Some(now + gap)),
            ("another clock, 30 ms ahead", Some(now + ms(30)), Some(now + gap)),
            ("a gap ahead", Some(now + gap), Some(now + gap)),
            (
                "a hand-edited mark, a day ahead",
                Some(now + ms(86_400_000)),
                None,
            ),
        ] {
            assert_eq!(next_write(mark, now, gap), want, "{what}");
        }
        // A mark just ahead is waited for once, then written after: it never stalls.
        let mark = Some(now + ms(30));
        let then = next_write(mark, now, gap).unwrap();
        assert_eq!(next_write(mark, then, gap), Some(now + ms(280)));
        assert_eq!(next_write(mark, now + ms(280), gap), None);
    }

    #[test]
    fn a_member_joins_the_commit_only_while_its_writes_fit_and_the_first_always() {
        for (what, queued, own, members, want) in [
            ("the first, however large", 0, 900, 0, true),
            ("a sale into an empty commit", 0, 2, 0, true),
            ("a sale with room", 300, 2, 100, true),
            ("a return at the edge", MAX_WRITES - 10, 7, 60, true),
            ("a return past it", MAX_WRITES - 9, 7, 60, false),
            ("anything into a full commit", MAX_WRITES, 0, 90, false),
        ] {
            assert_eq!(fits(queued, own, members), want, "{what}");
        }
    }

    #[test]
    fn a_batch_takes_members_up_to_the_count_and_the_byte_limit_and_never_none() {
        let kib = 1024;
        for (sizes, want) in [
            (vec![], 0),
            (vec![kib; 3], 3),
            (vec![kib; MAX_MEMBERS + 7], MAX_MEMBERS),
            (vec![MAX_BATCH_BYTES / 4; 10], 4),
            (vec![MAX_BATCH_BYTES / 4 + 1; 10], 3),
            (vec![MAX_BATCH_BYTES + 1, kib], 1),
            (vec![kib, MAX_BATCH_BYTES, kib], 1),
        ] {
            assert_eq!(
                batch_len(sizes.iter().copied()),
                want,
                "{:?}",
                &sizes[..sizes.len().min(3)]
            );
        }
    }
}
