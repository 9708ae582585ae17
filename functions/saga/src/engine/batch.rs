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
//! written, and the batch decides again: on the shared document read again alone, if that
//! is what moved (see [`round`] for why that is as exact), or else on everything read
//! again, after a back-off that grows while the commits keep failing.
//!
//! **How often the shared document is written.** A commit of it starts only once the step's
//! last write of it (as the document records it, [`Step::shared_written_at`], which every
//! instance reads) is the step's gap ([`Step::shared_write_gap`], by default
//! [`SHARED_WRITE_GAP`]) old, so the step writes it at most once per gap, however many
//! instances and steps write it (inventory's sales and the janitor's returns both mark it):
//! a commit guarded by the document as read fails if anyone wrote it since, and writes
//! nothing. A write outside the saga (an operator's edit) long after the step's last one
//! holds nothing back; it only makes a commit fail its precondition, and the batch decides
//! again. A batch that must wait for the gap reads the shared document again after waiting
//! (see below). Deliveries that arrive meanwhile join it, or wait for the next batch, which
//! is what makes the batches large under load; a document last written long ago is
//! committed at once.
//!
//! **Several instances.** Cloud Run runs a service as several instances, each with its own
//! batch of the same item, and every one of them waits for the same next slot. Committing
//! at its start, one wins at random; the others lose the commit, and by chance alone some
//! lose slot after slot. So a process that saw another writer of the document lately
//! ([`CONTENTION_MEMORY`]) lets each slot go by for a while that shrinks as its oldest
//! member's wait grows ([`yield_for`]), then reads the shared document again, with only the
//! documents of members that queued meanwhile, which join the batch: if another writer took
//! the slot meanwhile, the batch decides again on that write at the next slot, without a
//! lost commit and without reading its members' documents again. The batch that waited
//! longest commits first. A process that sees no other writer commits at the start of each
//! slot.

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
use firestore::gcloud_sdk::prost_types::Timestamp;
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
    /// When it joined the queue: the batch whose oldest member has waited longest goes
    /// first when instances contend ([`yield_for`]).
    joined: Instant,
}

/// The queue of one shared document of one step, in one instance of the service
/// ([`Clients::instance`]).
type Key = (u64, Service, DocPath);

static QUEUES: LazyLock<Mutex<HashMap<Key, mpsc::UnboundedSender<Member>>>> = LazyLock::new(Mutex::default);

/// How this process paces its writes of each shared document, kept across workers: a
/// worker ends when its queue is empty, and the next one, started by the next delivery,
/// must still know both.
static PACES: LazyLock<Mutex<HashMap<Key, Pace>>> = LazyLock::new(Mutex::default);

/// What a process knows of the writes of one shared document, on the monotonic clock (a wall
/// clock stepped back would otherwise hold the item's worker, and every delivery queued
/// behind it, for the step).
#[derive(Clone, Copy, Debug, Default)]
struct Pace {
    /// When this process last wrote it. The next worker waits for the gap before it reads,
    /// so that what arrives meanwhile joins its read and nothing waits for a second gap.
    written: Option<Instant>,
    /// When this process last saw another writer take a slot of it (another instance of the
    /// service, or another step such as the janitor's returns).
    others_seen: Option<Instant>,
    /// The update time of this process's last write of it: a slot still to wait for after
    /// the worker waited for `written` is another writer's only if the document changed
    /// since, not when the two clocks disagree by a few milliseconds.
    mine: Option<Timestamp>,
}

impl Pace {
    /// Whether another writer took a slot within [`CONTENTION_MEMORY`] of `now`.
    fn contended(self, now: Instant) -> bool {
        self.others_seen
            .is_some_and(|seen| now.saturating_duration_since(seen) < CONTENTION_MEMORY)
    }
}

/// How long a process goes on yielding slots ([`yield_for`]) after it last saw another
/// writer of the document: long enough to span the pauses of a steady load, short enough
/// that a lone instance soon commits at the start of each slot again.
const CONTENTION_MEMORY: Duration = Duration::from_secs(10);

/// Most slots one round waits for, lost to other writers, before the worker backs off and
/// reads everything again: a bound for a document that keeps changing under the round.
const MAX_SLOTS: u32 = 16;

fn paces() -> std::sync::MutexGuard<'static, HashMap<Key, Pace>> {
    PACES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pace(key: &Key) -> Pace {
    paces().get(key).copied().unwrap_or_default()
}

fn saw_another_writer(key: &Key) {
    paces().entry(key.clone()).or_default().others_seen = Some(Instant::now());
}

/// How long a batch whose oldest member has waited `waited` lets a contended slot go by
/// before it takes it, the gap being `gap`: from half a gap for a batch just formed down to
/// nothing for one that has waited three gaps. Several instances batch the same document on
/// their own and would otherwise all commit at the start of each slot, where one wins at
/// random and the others, losing slot after slot by chance, make the tail. Yielding by age
/// lets the batch that waited longest commit first; the others, reading the document again
/// after their pause, see its write and wait for the next slot without a lost commit.
fn yield_for(waited: Duration, gap: Duration) -> Duration {
    let most = gap / 2;
    let span = gap * 3;
    if span.is_zero() {
        // No gap (the emulator's push): no slot to yield.
        return Duration::ZERO;
    }
    let left = span.saturating_sub(waited);
    most.mul_f64(left.as_secs_f64() / span.as_secs_f64())
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
        bytes: msg.json_len(),
        msg: msg.clone(),
        inbound: inbound.clone(),
        deadline,
        answer,
        joined: Instant::now(),
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
        if let Some(at) = pace(&key).written {
            // What arrives meanwhile joins the round, which takes it from the queue.
            tokio::time::sleep_until((at + step.shared_write_gap()).into()).await;
        }
        match round(step.as_ref(), &clients, &key, &mut waiting, &mut members).await {
            Ok((outcome, unsettled)) => {
                match outcome {
                    Outcome::Wrote(at, mine) => {
                        let mut paces = paces();
                        let pace = paces.entry(key.clone()).or_default();
                        (pace.written, pace.mine) = (Some(at), mine);
                        conflicts = 0;
                    }
                    Outcome::Settled => conflicts = 0,
                    // The shared document did not show what changed (a duplicate's record
                    // written by another instance), the round lost a second commit, or it
                    // ran out of slots: back off, longer each time, then read everything
                    // again.
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
    /// It wrote the shared document, at about this time, with this update time.
    Wrote(Instant, Option<Timestamp>),
    /// It wrote nothing of the shared document.
    Settled,
    /// Its commit lost to a change the shared document did not show, or lost twice, or it
    /// ran out of slots: nothing was written.
    Conflict,
}

/// A member of a round, with what was read for it.
struct Reading {
    member: Member,
    plan: Plan,
    /// Its own documents as read, in [`Plan::paths`] order.
    own: Vec<Option<Snapshot>>,
}

/// A decided member waiting for the commit: what it publishes, its record's index in the
/// commit, and the lease on its outbox.
struct Committing {
    reading: Reading,
    outgoing: Outgoing,
    index: usize,
    lease: HeldLease,
}

/// Moves what queued into `waiting` and takes from it the members that fit a batch that
/// holds members of `held` bytes each already ([`batch_len`]). Members whose handlers gave
/// up need no answer and are dropped.
fn admit(
    waiting: &mut Vec<Member>,
    queue: &mut mpsc::UnboundedReceiver<Member>,
    held: &[usize],
) -> Vec<Member> {
    while let Ok(member) = queue.try_recv() {
        waiting.push(member);
    }
    waiting.retain(|m| !m.answer.is_closed());
    let sizes: Vec<usize> = held
        .iter()
        .copied()
        .chain(waiting.iter().map(|m| m.bytes))
        .collect();
    let take = batch_len(sizes.into_iter())
        .saturating_sub(held.len())
        .min(waiting.len());
    waiting.drain(..take).collect()
}

/// The members of a round and what was read for them.
#[derive(Default)]
struct Round {
    readings: Vec<Reading>,
    /// Held over to the next round.
    repeats: Vec<Member>,
    /// The messages in `readings`.
    seen: std::collections::HashSet<crate::domain::SagaId>,
}

impl Round {
    /// Reads the shared document, and the own documents of `batch`, which join the round, in
    /// one call, and returns the shared document.
    async fn read(
        &mut self,
        step: &dyn Step,
        clients: &Clients,
        shared: &DocPath,
        batch: Vec<Member>,
    ) -> Result<Option<Snapshot>, StepError> {
        // A second delivery of a message already in this round waits for the next one,
        // where it finds the first one's record: deciding both here would sell the stock
        // twice.
        let (batch, repeats): (Vec<Member>, Vec<Member>) =
            batch.into_iter().partition(|m| self.seen.insert(m.msg.uuid));
        self.repeats.extend(repeats);
        let plans: Vec<Plan> = batch
            .iter()
            .map(|m| Plan::new(step, step.service(), &m.msg))
            .collect();
        let mut paths = vec![shared.clone()];
        for plan in &plans {
            paths.extend(plan.paths());
        }
        let docs = match clients.store.get_all(&paths).await {
            Ok(docs) => docs,
            Err(e) => {
                self.repeats.extend(batch);
                return Err(e.into());
            }
        };
        let mut docs = docs.into_iter();
        let shared_doc = docs.next().flatten();
        for (member, plan) in batch.into_iter().zip(plans) {
            let own = docs.by_ref().take(plan.count()).collect();
            self.readings.push(Reading { member, plan, own });
        }
        Ok(shared_doc)
    }

    /// Reads the shared document again, with the own documents of `batch`, which join the
    /// round, and tells whether it moved since `shared_doc`, which it then replaces: another
    /// writer took the slot.
    async fn refresh(
        &mut self,
        step: &dyn Step,
        clients: &Clients,
        key: &Key,
        batch: Vec<Member>,
        shared_doc: &mut Option<Snapshot>,
    ) -> Result<bool, StepError> {
        let fresh = self.read(step, clients, &key.2, batch).await?;
        if !moved(shared_doc.as_ref(), fresh.as_ref()) {
            return Ok(false);
        }
        saw_another_writer(key);
        *shared_doc = fresh;
        Ok(true)
    }

    /// Answers, with a transient error, the members that could no longer publish before
    /// their handlers are cut off ([`Deadline::leaves_time_to_publish`]): decided now, each
    /// would hold what it took while Pub/Sub delivers it again. Members whose handlers gave
    /// up need no answer.
    fn drop_late(&mut self) {
        let (late, on_time) = std::mem::take(&mut self.readings)
            .into_iter()
            .filter(|r| !r.member.answer.is_closed())
            .partition(|r| !r.member.deadline.leaves_time_to_publish());
        self.readings = on_time;
        for reading in late {
            let too_late = anyhow::anyhow!(
                "waited too long for the shared document to publish in time; deciding it on a later delivery"
            );
            let _ = reading.member.answer.send(Err(too_late.into()));
        }
    }

    fn sizes(&self) -> Vec<usize> {
        self.readings.iter().map(|r| r.member.bytes).collect()
    }

    /// When its oldest member joined.
    fn oldest(&self) -> Instant {
        self.readings
            .iter()
            .map(|r| r.member.joined)
            .min()
            .unwrap_or_else(Instant::now)
    }

    /// Every member still to answer.
    fn unanswered(self) -> Vec<Member> {
        self.readings
            .into_iter()
            .map(|r| r.member)
            .chain(self.repeats)
            .collect()
    }
}

/// Whether the shared document changed between two reads of it.
fn moved(before: Option<&Snapshot>, after: Option<&Snapshot>) -> bool {
    before.map(Snapshot::update_time) != after.map(Snapshot::update_time)
}

/// One round of the shared document: members taken from `waiting` (and `queue`), one read
/// of their documents, then, for each slot it waits for: the decisions, one commit, and the
/// publishes.
///
/// A round that must wait for a slot, or that recently saw another writer of the shared
/// document, reads the shared document again once its turn came ([`yield_for`]), with the
/// documents of members that queued meanwhile, which join it. If the shared document moved,
/// another writer took the slot: the round decides again on it at the next slot, with its
/// members' own documents as read. So does a round whose commit lost while the shared
/// document moved. That is as exact as reading everything again: the commit is guarded by
/// the shared document as last read, and a member's record is only created where none
/// exists, so a duplicate of it that committed elsewhere still fails the commit (which
/// then, the shared document unmoved, reads everything again).
async fn round(
    step: &dyn Step,
    clients: &Clients,
    key: &Key,
    waiting: &mut Vec<Member>,
    queue: &mut mpsc::UnboundedReceiver<Member>,
) -> RoundResult {
    let shared = &key.2;
    let gap = step.shared_write_gap();
    let mut round = Round::default();
    let batch = admit(waiting, queue, &[]);
    let mut shared_doc = match round.read(step, clients, shared, batch).await {
        Ok(doc) => doc,
        Err(e) => return Err((e, round.unanswered())),
    };
    let mut lost_a_commit = false;
    for _ in 0..MAX_SLOTS {
        // The shared document must not be written by the step more often than its gap,
        // whichever instance wrote it last.
        let next = shared_doc
            .as_ref()
            .and_then(|doc| next_write(step.shared_written_at(doc), SystemTime::now(), gap));
        let known = pace(key);
        // The worker waited for this process's own last write before it read: a slot still
        // to wait for, of a write not its own, was taken by another writer.
        let theirs = next.is_some() && shared_doc.as_ref().map(Snapshot::update_time) != known.mine;
        if theirs {
            saw_another_writer(key);
        }
        // Without a gap there are no slots to take turns at.
        let contended = !gap.is_zero() && (theirs || known.contended(Instant::now()));
        if next.is_some() || contended {
            if let Some(at) = next {
                sleep_until(at).await;
            }
            if contended {
                tokio::time::sleep(yield_for(round.oldest().elapsed(), gap)).await;
            }
            let batch = admit(waiting, queue, &round.sizes());
            match round.refresh(step, clients, key, batch, &mut shared_doc).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err((e, round.unanswered())),
            }
        }
        round.drop_late();
        let readings = std::mem::take(&mut round.readings);
        let (writes, committing, wrote_shared) = decide(
            step,
            clients,
            shared,
            shared_doc.as_ref(),
            readings,
            &mut round.repeats,
        );
        if committing.is_empty() {
            return Ok((Outcome::Settled, round.repeats));
        }
        let last = writes.len() - 1;
        match clients.store.commit(writes).await {
            Ok(times) => {
                publish(clients, committing, &times);
                let outcome = if wrote_shared {
                    // The shared document's write is the commit's last.
                    let mine = times.get(last).copied();
                    Outcome::Wrote(Instant::now(), mine)
                } else {
                    Outcome::Settled
                };
                return Ok((outcome, round.repeats));
            }
            Err(CommitError::Conflict(_)) => {
                round.readings = committing.into_iter().map(|c| c.reading).collect();
                // Once: a second lost commit may be a member's record written elsewhere,
                // which only reading everything again shows.
                if lost_a_commit {
                    return Ok((Outcome::Conflict, round.unanswered()));
                }
                lost_a_commit = true;
                match round
                    .refresh(step, clients, key, Vec::new(), &mut shared_doc)
                    .await
                {
                    Ok(true) => {
                        tracing::debug!(%shared, "a batch lost its slot to another writer; deciding again");
                    }
                    Ok(false) => {
                        tracing::debug!(%shared, "a batch lost its commit to a concurrent change; reading again");
                        return Ok((Outcome::Conflict, round.unanswered()));
                    }
                    Err(e) => return Err((e, round.unanswered())),
                }
            }
            Err(CommitError::Unavailable(e)) => {
                round.readings = committing.into_iter().map(|c| c.reading).collect();
                return Err((e.into(), round.unanswered()));
            }
        }
    }
    Ok((Outcome::Conflict, round.unanswered()))
}

/// Decides every member in turn, the shared document standing as `shared_doc` and then as
/// the members before it left it; answers those with nothing to commit, holds over to
/// `repeats` those that do not fit the commit, and returns the commit's writes, the members
/// in it, and whether it writes the shared document.
fn decide(
    step: &dyn Step,
    clients: &Clients,
    shared: &DocPath,
    shared_doc: Option<&Snapshot>,
    readings: Vec<Reading>,
    repeats: &mut Vec<Member>,
) -> (WriteSet, Vec<Committing>, bool) {
    let service = step.service();
    let mut state = shared_doc.cloned();
    let mut writes = WriteSet::new();
    let mut shared_write = WriteSet::new();
    let mut committing: Vec<Committing> = Vec::new();
    for reading in readings {
        let Reading { member, plan, own } = &reading;
        match plan.settle(step, shared, state.as_ref(), own.clone(), member) {
            Settled::Exists(record) => {
                let clients = clients.clone();
                tokio::spawn(async move {
                    let Member {
                        deadline,
                        answer,
                        msg,
                        ..
                    } = reading.member;
                    let _ = answer.send(resume_found(&clients, service, msg.uuid, record, deadline).await);
                });
            }
            Settled::Refused(error) => {
                let _ = reading.member.answer.send(Err(error));
            }
            Settled::Nothing(why) => {
                let _ = reading.member.answer.send(Ok(Handled::Ignored(why)));
            }
            Settled::Decided(decision) if !fits(writes.len(), decision.writes.len(), committing.len()) => {
                // Decided on the stock as the members before it left it, which stays so:
                // the next round decides it again from what this one commits.
                repeats.push(reading.member);
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
                committing.push(Committing {
                    reading,
                    outgoing,
                    index,
                    lease,
                });
            }
        }
    }
    let wrote_shared = !shared_write.is_empty();
    writes.extend(shared_write);
    (writes, committing, wrote_shared)
}

/// Publishes each committed member's message and answers it; `times` are the commit's
/// write times.
fn publish(clients: &Clients, committing: Vec<Committing>, times: &[Timestamp]) {
    for Committing {
        reading,
        outgoing,
        index,
        lease,
    } in committing
    {
        let written_at = times.get(index).copied().unwrap_or_default();
        let clients = clients.clone();
        tokio::spawn(async move {
            let Reading { member, plan, .. } = reading;
            let topic = outgoing.topic;
            let published = publish_and_mark(
                &clients,
                &plan.path,
                &outgoing,
                written_at,
                lease,
                member.deadline,
            )
            .await
            .map(|()| Handled::Published(topic));
            let _ = member.answer.send(published);
        });
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
    fn a_contended_slot_is_yielded_for_less_the_longer_the_oldest_member_waited() {
        let gap = Duration::from_millis(250);
        let ms = Duration::from_millis;
        for (what, waited, want_ms) in [
            ("a batch just formed", ms(0), 125),
            ("a batch that waited a gap", ms(250), 83),
            ("half way", ms(375), 62),
            ("almost three gaps", ms(749), 0),
            ("three gaps", ms(750), 0),
            ("a batch that waited long", ms(10_000), 0),
        ] {
            assert_eq!(yield_for(waited, gap).as_millis(), want_ms, "{what}");
        }
        for waited in [ms(0), ms(250), ms(10_000)] {
            assert_eq!(
                yield_for(waited, Duration::ZERO),
                Duration::ZERO,
                "no gap, as the devstack runs under the emulator's push: nothing to yield"
            );
        }
        let yields: Vec<Duration> = (0..100).map(|i| yield_for(ms(i * 10), gap)).collect();
        assert!(
            yields.windows(2).all(|w| w[0] >= w[1]),
            "the longer a batch waited, the sooner it commits"
        );
        assert_eq!(
            yields.iter().max(),
            Some(&(gap / 2)),
            "no batch lets more than half a slot go by"
        );
    }

    /// A member whose message is `bytes` long, and the receiver of its answer.
    fn member(bytes: usize) -> (Member, oneshot::Receiver<Result<Handled, StepError>>) {
        let (answer, answered) = oneshot::channel();
        let msg = SagaMessage::parse(
            serde_json::json!({
                "uuid": uuid::Uuid::new_v4().to_string(),
                "item": "widget",
                "quantity": 1,
                "user": "jack",
            })
            .to_string()
            .as_bytes(),
        )
        .expect("a valid message");
        let member = Member {
            msg,
            bytes,
            inbound: Inbound::default(),
            deadline: Deadline::arrived_at(Instant::now()),
            answer,
            joined: Instant::now(),
        };
        (member, answered)
    }

    #[test]
    fn members_that_queued_join_a_round_while_they_fit_and_those_that_gave_up_are_dropped() {
        let kib = 1024;
        for (what, held, queued, gave_up, want) in [
            ("an empty round takes what waits", vec![], 3, 0, 3),
            ("a round with room takes the rest", vec![kib; 10], 3, 0, 3),
            ("a full round takes none", vec![kib; MAX_MEMBERS], 3, 0, 0),
            (
                "a round near the count takes up to it",
                vec![kib; MAX_MEMBERS - 2],
                5,
                0,
                2,
            ),
            (
                "a round near the byte limit takes none",
                vec![MAX_BATCH_BYTES],
                3,
                0,
                0,
            ),
            ("handlers that gave up are dropped", vec![], 3, 2, 1),
        ] {
            let (sender, mut queue) = mpsc::unbounded_channel();
            let mut answers = Vec::new();
            for n in 0..queued {
                let (member, answered) = member(kib);
                if n >= gave_up {
                    answers.push(answered);
                }
                sender.send(member).expect("the queue is open");
            }
            let mut waiting = Vec::new();
            let taken = admit(&mut waiting, &mut queue, &held);
            assert_eq!(taken.len(), want, "{what}");
            assert_eq!(
                taken.len() + waiting.len(),
                queued - gave_up,
                "{what}: the others still wait"
            );
        }
    }

    #[test]
    fn a_process_yields_slots_only_while_it_saw_another_writer_lately() {
        let now = Instant::now() + Duration::from_mins(1);
        let seen = |ago: u64| Pace {
            written: None,
            mine: None,
            others_seen: now.checked_sub(Duration::from_millis(ago)),
        };
        for (what, pace, want) in [
            ("never saw one", Pace::default(), false),
            ("saw one just now", seen(0), true),
            ("saw one a while ago", seen(9_999), true),
            ("saw one too long ago", seen(10_000), false),
        ] {
            assert_eq!(pace.contended(now), want, "{what}");
        }
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
