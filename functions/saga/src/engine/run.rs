//! [`run`]: the engine described in the module docs of [`crate::engine`], and the
//! finishing of a step whose record exists ([`resume`]).

use super::deadline::Deadline;
use super::lease::{HeldLease, LEASE_POLL, LEASE_WAIT, Lease};
use super::records::{self, StepRecord};
use super::retry::until_committed;
use super::status::{Inbound, record_step};
use super::{Decision, Handled, Step, StepError};
use crate::contract::{Service, Topic, consumer_step};
use crate::domain::Money;
use crate::gcp::Clients;
use crate::gcp::bus::{Outgoing, PUBLISH_TIMEOUT};
use crate::gcp::store::{CommitError, DocPath, Precondition, Snapshot, WriteSet};
use crate::wire::message::SagaMessage;
use firestore::FirestoreTimestamp;
use firestore::gcloud_sdk::prost_types::Timestamp;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct PublishedMark {
    published: bool,
    published_at: FirestoreTimestamp,
}

/// The records that prove a message of `service` was delivered: for each topic it
/// publishes to, the record of the step that consumes that topic.
pub(super) fn evidence_paths(uuid: crate::domain::SagaId, service: Service) -> Vec<(Topic, DocPath)> {
    service
        .publishes()
        .iter()
        .filter_map(|&topic| consumer_step(topic).map(|consumer| (topic, records::step(uuid, consumer))))
        .collect()
}

/// Runs `step` for `msg`: the whole engine described at the top of this module.
/// `inbound` is what the delivery tells: the span the outgoing message carries on, and when
/// the message was published. `deadline` is when the handler of this delivery is cut off.
pub async fn run(
    step: Arc<dyn Step>,
    clients: &Clients,
    msg: &SagaMessage,
    inbound: &Inbound,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    step.check(msg)?;
    if let Some(shared) = step.shared_document(msg) {
        return super::batch::join(step, clients, shared, msg, inbound, deadline).await;
    }
    let step = step.as_ref();
    let service = step.service();
    let record_path = records::step(msg.uuid, service);
    let reads = step.reads(msg);
    let mut paths = vec![record_path.clone()];
    paths.extend(reads.iter().cloned());

    until_committed(|round| {
        let (paths, record_path) = (&paths, &record_path);
        let reads = reads.len();
        async move {
            // A step that reads nothing can decide without a read: its first commit is
            // guarded by the record's absence anyway, and only if that fails is there
            // anything to read.
            let docs = if round == 0 && reads == 0 {
                Vec::new()
            } else {
                let mut docs = timed("read", clients.store.get_all(paths)).await?;
                if let Some(record) = docs.remove(0) {
                    return resume_found(clients, service, msg.uuid, record, deadline)
                        .await
                        .map(Some);
                }
                docs
            };
            if let Some(why) = step.nothing_to_do(msg, &docs) {
                return Ok(Some(Handled::Ignored(why)));
            }
            let mut decision = step.decide(msg, &docs)?;
            record_step(
                &mut decision.writes,
                service,
                decision.went_on_with.as_ref().unwrap_or(msg),
                inbound,
                decision.topic,
                &decision.message,
            );
            let record = record_of(service, msg, &decision);
            let outgoing = Outgoing::new(decision.topic, decision.message.to_json()).traced(&inbound.trace);
            commit_and_publish(clients, record_path, record, outgoing, decision.writes, deadline).await
        }
    })
    .await
}

/// The record of `service`'s decision on `msg`: its state, and the reason and price of the
/// message it publishes.
pub(super) fn record_of(service: Service, msg: &SagaMessage, decision: &Decision) -> StepRecord {
    let mut record = StepRecord::new(service, msg.uuid, &msg.order, decision.state);
    record.reason = decision.message.reason.map(|r| r.as_str().to_owned());
    record.price_per_unit = decision.message.price_per_unit.map(Money::get);
    record
}

/// Commits `record` (created at `path`, which must not exist yet) with `outgoing` as its
/// outbox, together with `writes`; then publishes and marks it, if that fits before
/// `deadline`. `None` if a precondition failed and nothing was written: the caller reads
/// again.
pub(super) async fn commit_and_publish(
    clients: &Clients,
    path: &DocPath,
    record: StepRecord,
    outgoing: Outgoing,
    writes: WriteSet,
    deadline: Deadline,
) -> Result<Option<Handled>, StepError> {
    let topic = outgoing.topic;
    let mut all = WriteSet::new();
    let (index, lease) = commit_record(&mut all, path, record, &outgoing);
    all.extend(writes);
    match timed("commit", clients.store.commit(all)).await {
        Ok(times) => {
            let written_at = times.get(index).copied().unwrap_or_default();
            publish_and_mark(clients, path, &outgoing, written_at, lease, deadline).await?;
            Ok(Some(Handled::Published(topic)))
        }
        Err(CommitError::Conflict(_)) => Ok(None),
        Err(CommitError::Unavailable(e)) => Err(e.into()),
    }
}

/// Queues the creation of `record` at `path` with `outgoing` as its outbox, under a publish
/// lease taken now: the write's index in `writes` (to find its update time in the commit's
/// answer), and the lease.
pub(super) fn commit_record(
    writes: &mut WriteSet,
    path: &DocPath,
    mut record: StepRecord,
    outgoing: &Outgoing,
) -> (usize, HeldLease) {
    record.outbox = Some(outgoing.clone());
    let (lease, lease_until) = HeldLease::take();
    record.lease_until = Some(lease_until);
    let index = writes.documents().len();
    writes.create(path.clone(), &record);
    (index, lease)
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

/// A step's record as read, with the records that would prove its message delivered: for
/// each topic the step publishes to, the record of the step consuming it (see
/// `evidence_paths`).
///
/// A first delivery finds no record and never needs the proofs, so they are read only once
/// a record has been found (`Found::with_proofs`): a completed saga's steps skip five
/// reads of documents that do not exist yet, each billed as a read. Reading them after the
/// record is safe because a proof only ever appears (records are never deleted): one seen
/// later proves delivery as well, and none seen later means none when the record was read.
#[derive(Debug)]
struct Found {
    record: Snapshot,
    proofs: Vec<(Topic, Option<Snapshot>)>,
}

impl Found {
    /// `proofs` are the documents read at the paths of `evidence`, in the same order.
    fn new(record: Snapshot, evidence: &[(Topic, DocPath)], proofs: Vec<Option<Snapshot>>) -> Self {
        let proofs = evidence.iter().map(|(topic, _)| *topic).zip(proofs).collect();
        Found { record, proofs }
    }

    /// `record` as read already, with its proofs read now from the paths of `evidence`.
    async fn with_proofs(
        clients: &Clients,
        record: Snapshot,
        evidence: &[(Topic, DocPath)],
    ) -> Result<Self, StepError> {
        let paths: Vec<DocPath> = evidence.iter().map(|(_, p)| p.clone()).collect();
        let proofs = if paths.is_empty() {
            Vec::new()
        } else {
            clients.store.get_all(&paths).await?
        };
        Ok(Found::new(record, evidence, proofs))
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

/// Publishes the stored message of `service`'s record of saga `uuid` unless something
/// proves it delivered: what a duplicate delivery of the message that step read would do,
/// for a caller that has no such message (the sweep).
pub async fn relay(
    clients: &Clients,
    uuid: crate::domain::SagaId,
    service: Service,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let path = records::step(uuid, service);
    let evidence = evidence_paths(uuid, service);
    let found = Found::read(clients, &path, &evidence).await?;
    resume(clients, &path, &evidence, found, deadline).await
}

/// Finishes `service`'s step of saga `uuid`, whose record was just read as `record`: a
/// duplicate or a redelivery. Reads the proofs of delivery first (see [`Found`]).
pub(super) async fn resume_found(
    clients: &Clients,
    service: Service,
    uuid: crate::domain::SagaId,
    record: Snapshot,
    deadline: Deadline,
) -> Result<Handled, StepError> {
    let path = records::step(uuid, service);
    let evidence = evidence_paths(uuid, service);
    let found = Found::with_proofs(clients, record, &evidence).await?;
    resume(clients, &path, &evidence, found, deadline).await
}

/// Finishes a step whose record already exists: a duplicate or a redelivery. `evidence`
/// are the paths [`Found`]'s proofs were read from, to read them again while another
/// delivery holds the publish lease (for at most [`LEASE_WAIT`], and only while a publish
/// would still fit before `deadline`).
async fn resume(
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
    let topic = outgoing.topic;
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
pub(super) async fn publish_and_mark(
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
    if consumer_step(outgoing.topic).is_some() {
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
    // A message no step reads is the saga's last: once it is out, nothing is left to do.
    if let Some(view) = path.parent() {
        super::status::mark_ended(&mut writes, view);
    }
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
