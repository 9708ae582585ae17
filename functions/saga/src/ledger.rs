//! The step engine: how every step turns one delivery into exactly one outcome.
//!
//! 1. Read the step's record and whatever the step needs, in one round trip.
//! 2. If the record exists, this delivery is a duplicate (or a redelivery after a crash):
//!    publish the stored message if nothing shows it was delivered, otherwise do nothing.
//!    What shows delivery is the record of the step that consumes the message (read in the
//!    same round trip), or, for a message no step consumes, a `published` mark.
//! 3. Otherwise decide (a pure function of the message and the documents read) and commit
//!    the record, its outbox message and the step's domain writes in one atomic write,
//!    guarded by preconditions. If a precondition fails, something changed concurrently:
//!    go back to 1.
//! 4. Publish the outbox message (and mark the record published if no later step's record
//!    will prove it).
//!
//! The answer to Pub/Sub is 2xx only after 4 succeeded, so a crash anywhere means a
//! redelivery, which step 2 finishes without doing the work twice.

use crate::bus::{Outgoing, PUBLISH_TIMEOUT};
use crate::contract::{Service, Topic, consumer_step};
use crate::message::{FieldError, Reason, SagaMessage};
use crate::push::EnvelopeError;
use crate::records::{self, StepRecord, StepState};
use crate::service::Clients;
use crate::store::{CommitError, DocPath, Precondition, Snapshot, WriteSet};
use crate::trace::TraceContext;
use firestore::FirestoreTimestamp;
use firestore::gcloud_sdk::prost_types::Timestamp;
use rand::Rng as _;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// How long the delivery that wrote an outbox message (or took it over) holds the sole right
/// to publish it; a duplicate delivery takes over only after. The holder starts a publish
/// only while [`PUBLISH_TIMEOUT`] and [`LEASE_MARGIN`] of it remain, however slow the
/// commit before it was, so a duplicate never publishes while the holder is still waiting
/// for its publish. (The client library may still send a publish the holder stopped
/// waiting for, late: after a publish timeout, a message can go out twice. Every consumer
/// is idempotent; only the pull subscriptions would see the copy.)
pub const PUBLISH_LEASE: Duration = Duration::from_secs(30);

/// Slack at the end of a lease: for a publish the server accepts just after the client
/// stopped waiting, and for the clocks of two instances disagreeing.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How long a duplicate delivery waits, reading again, while another delivery holds the
/// lease, before it answers 5xx. Each 5xx uses up one of the message's few delivery
/// attempts; answering at once would let the duplicates of a holder that died use them all
/// up within its one lease, and the message would be dead-lettered for no reason.
pub const LEASE_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting duplicate reads again. The holder's publish shows as the
/// `published` mark or, for a message a later step consumes, as that step's record once it
/// ran (usually within a push or two); without either, the lease has to run out.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// What a delivery allows for the work before and after a publish (reads, the lease
/// commit), when it decides whether the publish still fits before its handler is cut off.
const DEADLINE_SLACK: Duration = Duration::from_secs(2);

/// Most read-decide-commit rounds one delivery tries before it gives up for now (and
/// Pub/Sub redelivers it later).
pub const MAX_ROUNDS: u32 = 8;

/// What a delivery achieved; every variant is answered 2xx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The step ran and published to the topic.
    Published(Topic),
    /// The step had run before; its unconfirmed message was published again.
    Republished(Topic),
    /// The step had run and published before: nothing to do.
    Duplicate,
    /// A view was brought up to date.
    Recorded,
    /// Nothing to do, for the reason given.
    Ignored(&'static str),
}

impl Handled {
    /// A short word for logs and response bodies.
    pub fn word(&self) -> &'static str {
        match self {
            Handled::Published(_) => "published",
            Handled::Republished(_) => "republished",
            Handled::Duplicate => "duplicate",
            Handled::Recorded => "recorded",
            Handled::Ignored(_) => "ignored",
        }
    }
}

/// What is wrong with a poison message, in words that never quote it: made only from the
/// parsers' errors, whose descriptions leave the input out (see [`JsonProblem`]), so that
/// it may be logged and put in dead-letter attributes.
///
/// [`JsonProblem`]: crate::message::JsonProblem
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoisonDetail(String);

impl PoisonDetail {
    /// The words.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoisonDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StepError {
    /// A message that does not match the record of `step` of saga `uuid`, for the reason
    /// given ([`UNMATCHED`]). The words name the step and the saga, never the message.
    pub fn unmatched(step: Service, uuid: crate::message::SagaId, why: &str) -> Self {
        StepError::Poison {
            code: UNMATCHED,
            detail: PoisonDetail(format!(
                "the message does not match the {step} step of saga {uuid}: {why}"
            )),
        }
    }
}

impl From<&FieldError> for PoisonDetail {
    fn from(e: &FieldError) -> Self {
        PoisonDetail(e.to_string())
    }
}

impl From<&EnvelopeError> for PoisonDetail {
    fn from(e: &EnvelopeError) -> Self {
        PoisonDetail(e.to_string())
    }
}

/// Why a delivery was not handled.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The message can never be processed: it goes to the dead-letter topic.
    #[error("{detail}")]
    Poison {
        /// Machine-readable reason.
        code: &'static str,
        /// What is wrong, naming the field.
        detail: PoisonDetail,
    },
    /// Something failed that may work later: answer 5xx so that Pub/Sub retries.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl From<FieldError> for StepError {
    fn from(e: FieldError) -> Self {
        StepError::Poison {
            code: e.code(),
            detail: PoisonDetail::from(&e),
        }
    }
}

/// The poison code of a message that does not match the saga's own records: not the saga's
/// message (a forgery, or a stray from another producer). The janitor never compensates a
/// saga for such a message: it would let anyone who can publish end a saga that is fine.
pub const UNMATCHED: &str = "unmatched_record";

/// The record of the step before, as a step needs it to trust what it acts on: it must exist,
/// be done (not failed, compensated or a tombstone), and be about the same order as `msg`.
/// `doc` is that record as read in the step's round trip. Anything else means the message is
/// not this saga's: poison ([`UNMATCHED`]).
pub fn earlier_step(
    doc: Option<&Snapshot>,
    step: Service,
    msg: &SagaMessage,
) -> Result<StepRecord, StepError> {
    let unmatched = |why: &str| StepError::unmatched(step, msg.uuid, why);
    let record: StepRecord = doc
        .ok_or_else(|| unmatched("that step never ran"))?
        .decode()
        .map_err(|_| unmatched("its record is unreadable"))?;
    if record.state != StepState::Done {
        return Err(unmatched(&format!("that step is {:?}, not done", record.state)));
    }
    if record.order().as_ref() != Some(&msg.order) {
        return Err(unmatched("it was about another order"));
    }
    Ok(record)
}

/// A step's decision for one message.
#[derive(Debug)]
pub struct Decision {
    /// The step's outcome.
    pub state: StepState,
    /// Why it failed, if it did.
    pub reason: Option<Reason>,
    /// The price, once known (inventory sets it).
    pub price_per_unit: Option<u64>,
    /// Where the outgoing message goes.
    pub topic: Topic,
    /// The outgoing message.
    pub message: SagaMessage,
    /// Domain writes that commit together with the step's record.
    pub writes: WriteSet,
}

/// A forward step of the saga.
pub trait Step: Send + Sync {
    /// Which step this is.
    fn service(&self) -> Service;

    /// Refuses a message this step can never process, before any I/O.
    fn check(&self, _msg: &SagaMessage) -> Result<(), FieldError> {
        Ok(())
    }

    /// The documents to read besides the step's record.
    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath>;

    /// Decides what to do, given the documents of [`Step::reads`], in the same order.
    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError>;
}

fn now_plus(d: Duration) -> FirestoreTimestamp {
    let now = FirestoreTimestamp::now();
    let span = firestore::jiff::SignedDuration::try_from(d).unwrap_or_default();
    FirestoreTimestamp(now.0.checked_add(span).unwrap_or(now.0))
}

#[derive(Serialize)]
struct Lease {
    lease_until: Option<FirestoreTimestamp>,
}

/// A publish lease this delivery took, timed on the local monotonic clock; the stored
/// `lease_until` is what other deliveries see.
#[derive(Clone, Copy, Debug)]
struct HeldLease {
    since: Instant,
}

impl HeldLease {
    /// Takes a lease from now on: `lease_until` is the value to store with it.
    fn take() -> (Self, FirestoreTimestamp) {
        (
            Self {
                since: Instant::now(),
            },
            now_plus(PUBLISH_LEASE),
        )
    }

    /// Whether a publish started now stops waiting, even at its timeout, before the lease
    /// runs out with a margin to spare.
    fn leaves_time_to_publish(self) -> bool {
        lease_leaves_time_to_publish(self.since.elapsed())
    }
}

/// When the handler serving this delivery is cut off: [`HANDLER_TIMEOUT`] after its request
/// arrived, less a slack. It starts at arrival, as the server's timeout does, so that what
/// runs before the engine (the token check, which may queue, and reading the body) counts.
///
/// [`HANDLER_TIMEOUT`]: crate::contract::HANDLER_TIMEOUT
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of a delivery whose request arrived at `arrived`.
    pub fn arrived_at(arrived: Instant) -> Self {
        Deadline(arrived + crate::contract::HANDLER_TIMEOUT.saturating_sub(DEADLINE_SLACK))
    }

    /// How much of the handler's time a publish started now may still take, after the
    /// slack for what comes around it.
    fn left_for_publish(self) -> Duration {
        self.left_for_publish_at(Instant::now())
    }

    /// [`Deadline::left_for_publish`] for a publish started at `now`.
    fn left_for_publish_at(self, now: Instant) -> Duration {
        self.0
            .saturating_duration_since(now)
            .saturating_sub(DEADLINE_SLACK)
    }

    /// Whether a publish started now gets its full timeout before the handler is cut off;
    /// a publish that cannot would only be dropped half-way, wasting the attempt.
    fn leaves_time_to_publish(self) -> bool {
        self.left_for_publish() >= PUBLISH_TIMEOUT
    }
}

/// [`HeldLease::leaves_time_to_publish`] for a lease taken `held_for` ago.
fn lease_leaves_time_to_publish(held_for: Duration) -> bool {
    held_for + PUBLISH_TIMEOUT + LEASE_MARGIN <= PUBLISH_LEASE
}

#[derive(Serialize)]
struct PublishedMark {
    published: bool,
    published_at: FirestoreTimestamp,
}

/// The records that prove a message of `service` was delivered: for each topic it
/// publishes to, the record of the step that consumes that topic.
fn evidence_paths(uuid: crate::message::SagaId, service: Service) -> Vec<(Topic, DocPath)> {
    service
        .publishes()
        .iter()
        .filter_map(|&topic| consumer_step(topic).map(|consumer| (topic, records::step(uuid, consumer))))
        .collect()
}

/// Runs `step` for `msg`: the whole engine described at the top of this module.
/// `trace` is the span of this delivery; the outgoing message carries it on. `deadline` is
/// when the handler of this delivery is cut off.
pub async fn run(
    step: &dyn Step,
    clients: &Clients,
    msg: &SagaMessage,
    trace: &TraceContext,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    step.check(msg)?;
    let service = step.service();
    let record_path = records::step(msg.uuid, service);
    let reads = step.reads(msg);
    let evidence = evidence_paths(msg.uuid, service);
    let mut paths = vec![record_path.clone()];
    paths.extend(reads.iter().cloned());
    paths.extend(evidence.iter().map(|(_, p)| p.clone()));

    // A step that reads nothing can decide without a read: its first commit is guarded by
    // the record's absence anyway, and only if that fails is there anything to read.
    let mut optimistic = reads.is_empty();
    for round in 0..MAX_ROUNDS {
        if round > 0 {
            backoff(round).await;
        }
        let docs = if optimistic {
            optimistic = false;
            Vec::new()
        } else {
            let mut docs = timed("read", clients.store.get_all(&paths)).await?;
            let proofs = docs.split_off(1 + reads.len());
            if let Some(record) = docs.remove(0) {
                let found = Found::new(record, &evidence, proofs);
                return resume(clients, &record_path, &evidence, found, deadline).await;
            }
            docs
        };

        let decision = step.decide(msg, &docs)?;
        let mut record = StepRecord::new(service, msg.uuid, &msg.order, decision.state);
        record.reason = decision.reason.map(|r| r.as_str().to_owned());
        record.price_per_unit = decision.price_per_unit;
        let outgoing = Outgoing::new(decision.topic, decision.message.to_json()).traced(trace);
        if let Some(handled) =
            commit_and_publish(clients, &record_path, record, outgoing, decision.writes, deadline).await?
        {
            return Ok(handled);
        }
        tracing::debug!(round, "commit conflict; reading again");
    }
    Err(contention())
}

/// The error for a delivery that lost every round to concurrent writers.
pub fn contention() -> StepError {
    anyhow::anyhow!("documents kept changing concurrently for {MAX_ROUNDS} rounds").into()
}

/// Commits `record` (created at `path`, which must not exist yet) with `outgoing` as its
/// outbox, together with `writes`; then publishes and marks it, if that fits before
/// `deadline`. `None` if a precondition failed and nothing was written: the caller reads
/// again.
pub async fn commit_and_publish(
    clients: &Clients,
    path: &DocPath,
    mut record: StepRecord,
    outgoing: Outgoing,
    writes: WriteSet,
    deadline: Deadline,
) -> Result<Option<Handled>, StepError> {
    let topic = Topic::from_name(&outgoing.topic)
        .ok_or_else(|| anyhow::anyhow!("unknown topic `{}`", outgoing.topic))?;
    record.outbox = Some(outgoing.clone());
    let (lease, lease_until) = HeldLease::take();
    record.lease_until = Some(lease_until);
    let mut all = WriteSet::new();
    all.create(path.clone(), &record);
    all.extend(writes);
    match timed("commit", clients.store.commit(all)).await {
        Ok(times) => {
            let written_at = times.first().copied().unwrap_or_default();
            publish_and_mark(clients, path, &outgoing, written_at, lease, deadline).await?;
            Ok(Some(Handled::Published(topic)))
        }
        Err(CommitError::Conflict(_)) => Ok(None),
        Err(CommitError::Unavailable(e)) => Err(e.into()),
    }
}

/// Awaits `call`, one Firestore read, commit, publish or `published` mark on a step's way,
/// and logs how long it took, for `RUST_LOG=saga::timing=debug` (the bench reads these to
/// split a hop into its parts).
async fn timed<T>(phase: &'static str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    tracing::debug!(
        target: "saga::timing",
        phase,
        ms = started.elapsed().as_secs_f64() * 1000.0
    );
    out
}

/// Pauses before another read-decide-commit round, longer each round, with jitter so that
/// competing deliveries spread out.
pub async fn backoff(round: u32) {
    let base = 5u64 << round.min(6);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// A step's record as read, with the records that would prove its message delivered: for
/// each topic the step publishes to, the record of the step consuming it (see
/// [`evidence_paths`]).
#[derive(Debug)]
pub struct Found {
    record: Snapshot,
    proofs: Vec<(Topic, Option<Snapshot>)>,
}

impl Found {
    /// `proofs` are the documents read at the paths of `evidence`, in the same order.
    pub fn new(record: Snapshot, evidence: &[(Topic, DocPath)], proofs: Vec<Option<Snapshot>>) -> Self {
        let proofs = evidence.iter().map(|(topic, _)| *topic).zip(proofs).collect();
        Found { record, proofs }
    }

    async fn read(
        clients: &Clients,
        path: &DocPath,
        evidence: &[(Topic, DocPath)],
    ) -> Result<Self, StepError> {
        let mut paths = vec![path.clone()];
        paths.extend(evidence.iter().map(|(_, p)| p.clone()));
        let mut docs = clients.store.get_all(&paths).await?;
        let proofs = docs.split_off(1);
        let record = docs
            .remove(0)
            .ok_or_else(|| anyhow::anyhow!("record {path} is gone; records are never deleted"))?;
        Ok(Found::new(record, evidence, proofs))
    }
}

/// Finishes a step whose record already exists: a duplicate or a redelivery. `evidence`
/// are the paths [`Found`]'s proofs were read from, to read them again while another
/// delivery holds the publish lease (for at most [`LEASE_WAIT`], and only while a publish
/// would still fit before `deadline`).
pub async fn resume(
    clients: &Clients,
    path: &DocPath,
    evidence: &[(Topic, DocPath)],
    mut found: Found,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let waiting_since = Instant::now();
    loop {
        let look_again_in = match try_resume(clients, path, &found, deadline).await? {
            Resumed::Handled(handled) => return Ok(handled),
            Resumed::LookAgain(after) => after,
        };
        let patience = LEASE_WAIT
            .saturating_sub(waiting_since.elapsed())
            .min(deadline.left_for_publish().saturating_sub(PUBLISH_TIMEOUT));
        if patience.is_zero() {
            // Pub/Sub retries this delivery shortly; by then the holder has published, or
            // its lease ran out and that delivery takes over.
            return Err(anyhow::anyhow!("another delivery of this message holds its publish lease").into());
        }
        tokio::time::sleep(look_again_in.min(LEASE_POLL).min(patience)).await;
        found = Found::read(clients, path, evidence).await?;
    }
}

/// What one look at an existing record came to.
enum Resumed {
    Handled(Handled),
    /// Another delivery holds the lease (for at most this long), or just took it over or
    /// confirmed the message: read again.
    LookAgain(Duration),
}

async fn try_resume(
    clients: &Clients,
    path: &DocPath,
    found: &Found,
    deadline: Deadline,
) -> Result<Resumed, StepError> {
    let record: StepRecord = found.record.decode()?;
    let Some(outgoing) = record.outbox.as_ref() else {
        return Ok(Resumed::Handled(Handled::Ignored(
            "the saga was compensated before this step ran",
        )));
    };
    if record.published {
        return Ok(Resumed::Handled(Handled::Duplicate));
    }
    let topic = Topic::from_name(&outgoing.topic).ok_or_else(|| {
        anyhow::anyhow!(
            "record {path} holds a message for unknown topic `{}`",
            outgoing.topic
        )
    })?;
    if found
        .proofs
        .iter()
        .any(|(t, proof)| *t == topic && proof.is_some())
    {
        // The step that reads the message has run (or was closed by compensation): the
        // message was delivered, or is no longer needed.
        return Ok(Resumed::Handled(Handled::Duplicate));
    }
    let now = FirestoreTimestamp::now();
    if let Some(until) = record.lease_until.filter(|until| *until > now) {
        // Most likely the delivery that holds it is publishing right now; publishing here
        // too would duplicate the message.
        let left = Duration::try_from(until.0.duration_since(now.0)).unwrap_or_default();
        return Ok(Resumed::LookAgain(left));
    }
    // Take the lease, so that of several late duplicates only one publishes.
    let (lease, lease_until) = HeldLease::take();
    let mut writes = WriteSet::new();
    writes.update(
        path.clone(),
        &Lease {
            lease_until: Some(lease_until),
        },
        Some(&["lease_until"]),
        Some(Precondition::Unchanged(found.record.update_time())),
    );
    let leased_at = match clients.store.commit(writes).await {
        Ok(times) => times.first().copied().unwrap_or_default(),
        // The record changed since it was read: another delivery took the lease over, marked
        // the message published, or compensation closed the step. The next read tells.
        Err(CommitError::Conflict(_)) => return Ok(Resumed::LookAgain(Duration::ZERO)),
        Err(CommitError::Unavailable(e)) => return Err(e.into()),
    };
    tracing::warn!(topic = %topic, "publishing a stored message that was never confirmed");
    publish_and_mark(clients, path, outgoing, leased_at, lease, deadline).await?;
    Ok(Resumed::Handled(Handled::Republished(topic)))
}

/// Publishes the outbox message of the record at `path` under `lease`, then marks it
/// published, unless a later step consumes the message: that step's record proves
/// delivery, and the write is saved. `written_at` is the record's update time, which the
/// lease release is conditioned on.
async fn publish_and_mark(
    clients: &Clients,
    path: &DocPath,
    outgoing: &Outgoing,
    written_at: Timestamp,
    lease: HeldLease,
    deadline: Deadline,
) -> Result<(), StepError> {
    if !lease.leaves_time_to_publish() || !deadline.leaves_time_to_publish() {
        release_lease(clients, path, written_at).await;
        return Err(anyhow::anyhow!(
            "the write took so long that the publish might not finish in time; \
             a redelivery publishes instead"
        )
        .into());
    }
    if let Err(e) = timed("publish", clients.bus.publish(outgoing)).await {
        release_lease(clients, path, written_at).await;
        return Err(e.into());
    }
    if Topic::from_name(&outgoing.topic)
        .and_then(consumer_step)
        .is_some()
    {
        return Ok(());
    }
    let mut writes = WriteSet::new();
    writes.update(
        path.clone(),
        &PublishedMark {
            published: true,
            published_at: FirestoreTimestamp::now(),
        },
        Some(&["published", "published_at"]),
        Some(Precondition::Exists),
    );
    if let Err(e) = timed("mark", clients.store.commit(writes)).await {
        // The message is out, which is what the ack promises. Left unmarked, the record
        // only makes a later duplicate delivery publish the same message once more.
        tracing::warn!(error = %e, "published, but could not mark the record published");
    }
    Ok(())
}

/// Gives the lease back so that a redelivery can publish at once instead of waiting for it
/// to run out. Best effort: if this fails too, the lease simply runs out. Conditioned on
/// the record being as this delivery wrote it, so a lease taken over since stays.
async fn release_lease(clients: &Clients, path: &DocPath, written_at: Timestamp) {
    let mut writes = WriteSet::new();
    writes.update(
        path.clone(),
        &Lease { lease_until: None },
        Some(&["lease_until"]),
        Some(Precondition::Unchanged(written_at)),
    );
    if let Err(release) = clients.store.commit(writes).await {
        tracing::debug!(error = %release, "could not release the publish lease");
    }
}

/// The record a step would have left, read without the engine: for the janitor and tests.
pub async fn read_record(
    clients: &Clients,
    uuid: crate::message::SagaId,
    step: Service,
) -> anyhow::Result<Option<(StepRecord, Snapshot)>> {
    match clients.store.get(&records::step(uuid, step)).await? {
        Some(s) => Ok(Some((s.decode()?, s))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::HANDLER_TIMEOUT;

    #[test]
    fn a_fresh_lease_leaves_time_to_publish_and_a_late_one_does_not() {
        assert!(lease_leaves_time_to_publish(Duration::ZERO));
        let last_start = PUBLISH_LEASE.saturating_sub(PUBLISH_TIMEOUT + LEASE_MARGIN);
        assert!(lease_leaves_time_to_publish(last_start));
        assert!(!lease_leaves_time_to_publish(
            last_start + Duration::from_millis(1)
        ));
        assert!(!lease_leaves_time_to_publish(PUBLISH_LEASE));
    }

    #[test]
    fn a_handler_cut_off_at_its_timeout_had_stopped_waiting_for_its_publish_inside_the_lease() {
        assert!(HANDLER_TIMEOUT + LEASE_MARGIN <= PUBLISH_LEASE);
    }

    #[test]
    fn a_fresh_delivery_has_time_to_wait_for_a_lease_and_still_publish() {
        let deadline = Deadline::arrived_at(Instant::now());
        assert!(deadline.leaves_time_to_publish());
        assert!(
            deadline.left_for_publish() > PUBLISH_TIMEOUT,
            "some patience is left"
        );
    }

    #[test]
    fn a_delivery_near_its_handler_timeout_does_not_start_a_publish() {
        let deadline = Deadline(Instant::now() + PUBLISH_TIMEOUT);
        assert!(!deadline.leaves_time_to_publish());
    }

    #[test]
    fn a_deadline_taken_at_arrival_has_less_left_by_the_time_spent_since() {
        let arrived = Instant::now();
        let deadline = Deadline::arrived_at(arrived);
        let fresh = deadline.left_for_publish_at(arrived);
        assert_eq!(fresh, HANDLER_TIMEOUT.saturating_sub(DEADLINE_SLACK * 2));
        let waited = Duration::from_secs(3);
        assert_eq!(
            deadline.left_for_publish_at(arrived + waited),
            fresh.saturating_sub(waited)
        );
        assert!(fresh > waited);
        assert_eq!(
            deadline.left_for_publish_at(arrived + HANDLER_TIMEOUT),
            Duration::ZERO
        );
    }

    #[test]
    fn a_delivery_that_queued_at_the_token_check_may_have_no_time_left_to_publish() {
        let arrived = Instant::now();
        let deadline = Deadline::arrived_at(arrived);
        // Had the deadline started when the engine did, after the wait, it would still
        // have seemed to leave the publish its full timeout.
        let queued = HANDLER_TIMEOUT.saturating_sub(PUBLISH_TIMEOUT);
        let engine_starts = arrived + queued;
        assert!(Deadline::arrived_at(engine_starts).left_for_publish_at(engine_starts) >= PUBLISH_TIMEOUT);
        assert!(deadline.left_for_publish_at(engine_starts) < PUBLISH_TIMEOUT);
    }
}
