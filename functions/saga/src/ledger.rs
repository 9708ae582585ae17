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

use crate::bus::Outgoing;
use crate::contract::{Service, Topic, consumer_step};
use crate::message::{FieldError, Reason, SagaMessage};
use crate::records::{self, StepRecord, StepState};
use crate::service::Clients;
use crate::store::{CommitError, DocPath, Precondition, Snapshot, WriteSet};
use crate::trace::TraceContext;
use firestore::FirestoreTimestamp;
use firestore::gcloud_sdk::prost_types::Timestamp;
use rand::Rng as _;
use serde::Serialize;
use std::time::Duration;

/// How long the delivery that wrote an outbox message has to publish it before a duplicate
/// delivery takes over. Longer than a publish may take ([`crate::bus::PUBLISH_TIMEOUT`]).
pub const PUBLISH_LEASE: Duration = Duration::from_secs(15);

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

/// Why a delivery was not handled.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The message can never be processed: it goes to the dead-letter topic.
    #[error("{detail}")]
    Poison {
        /// Machine-readable reason.
        code: &'static str,
        /// What is wrong, naming the field.
        detail: String,
    },
    /// Something failed that may work later: answer 5xx so that Pub/Sub retries.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl From<FieldError> for StepError {
    fn from(e: FieldError) -> Self {
        StepError::Poison {
            code: e.code(),
            detail: e.to_string(),
        }
    }
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
/// `trace` is the span of this delivery; the outgoing message carries it on.
pub async fn run(
    step: &dyn Step,
    clients: &Clients,
    msg: &SagaMessage,
    trace: &TraceContext,
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
            let mut docs = clients.store.get_all(&paths).await?;
            let proofs: Vec<(Topic, Option<Snapshot>)> = evidence
                .iter()
                .map(|(topic, _)| *topic)
                .zip(docs.split_off(1 + reads.len()))
                .collect();
            if let Some(snapshot) = docs.remove(0) {
                return resume(clients, &record_path, &snapshot, &proofs).await;
            }
            docs
        };

        let decision = step.decide(msg, &docs)?;
        let mut record = StepRecord::new(service, msg.uuid, &msg.order, decision.state);
        record.reason = decision.reason.map(|r| r.as_str().to_owned());
        record.price_per_unit = decision.price_per_unit;
        let outgoing = Outgoing::new(decision.topic, decision.message.to_json()).traced(trace);
        if let Some(handled) =
            commit_and_publish(clients, &record_path, record, outgoing, decision.writes).await?
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
/// outbox, together with `writes`; then publishes and marks it. `None` if a precondition
/// failed and nothing was written: the caller reads again.
pub async fn commit_and_publish(
    clients: &Clients,
    path: &DocPath,
    mut record: StepRecord,
    outgoing: Outgoing,
    writes: WriteSet,
) -> Result<Option<Handled>, StepError> {
    let topic = Topic::from_name(&outgoing.topic)
        .ok_or_else(|| anyhow::anyhow!("unknown topic `{}`", outgoing.topic))?;
    record.outbox = Some(outgoing.clone());
    record.lease_until = Some(now_plus(PUBLISH_LEASE));
    let mut all = WriteSet::new();
    all.create(path.clone(), &record);
    all.extend(writes);
    match clients.store.commit(all).await {
        Ok(times) => {
            let written_at = times.first().copied().unwrap_or_default();
            publish_and_mark(clients, path, &outgoing, written_at).await?;
            Ok(Some(Handled::Published(topic)))
        }
        Err(CommitError::Conflict(_)) => Ok(None),
        Err(CommitError::Unavailable(e)) => Err(e.into()),
    }
}

/// Pauses before another read-decide-commit round, longer each round, with jitter so that
/// competing deliveries spread out.
pub async fn backoff(round: u32) {
    let base = 5u64 << round.min(6);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// Finishes a step whose record already exists: a duplicate or a redelivery. `proofs` are
/// the records of the steps that consume this step's messages, by topic, as read.
pub async fn resume(
    clients: &Clients,
    path: &DocPath,
    snapshot: &Snapshot,
    proofs: &[(Topic, Option<Snapshot>)],
) -> Result<Handled, StepError> {
    let record: StepRecord = snapshot.decode()?;
    let Some(outgoing) = record.outbox.as_ref() else {
        return Ok(Handled::Ignored("the saga was compensated before this step ran"));
    };
    if record.published {
        return Ok(Handled::Duplicate);
    }
    let topic = Topic::from_name(&outgoing.topic).ok_or_else(|| {
        anyhow::anyhow!(
            "record {path} holds a message for unknown topic `{}`",
            outgoing.topic
        )
    })?;
    if proofs.iter().any(|(t, proof)| *t == topic && proof.is_some()) {
        // The step that reads the message has run (or was closed by compensation): the
        // message was delivered, or is no longer needed.
        return Ok(Handled::Duplicate);
    }
    if record
        .lease_until
        .is_some_and(|until| until > FirestoreTimestamp::now())
    {
        // Most likely the delivery that wrote the record is publishing right now; publishing
        // here too would duplicate the message. Pub/Sub retries this delivery shortly.
        return Err(anyhow::anyhow!("another delivery of this message is publishing it").into());
    }
    // Take the lease, so that of several late duplicates only one publishes.
    let mut writes = WriteSet::new();
    writes.update(
        path.clone(),
        &Lease {
            lease_until: Some(now_plus(PUBLISH_LEASE)),
        },
        Some(&["lease_until"]),
        Some(Precondition::Unchanged(snapshot.update_time())),
    );
    let leased_at = match clients.store.commit(writes).await {
        Ok(times) => times.first().copied().unwrap_or_default(),
        Err(CommitError::Conflict(_)) => {
            return Err(anyhow::anyhow!("another delivery took over publishing this message").into());
        }
        Err(CommitError::Unavailable(e)) => return Err(e.into()),
    };
    tracing::warn!(topic = %topic, "publishing a stored message that was never confirmed");
    publish_and_mark(clients, path, outgoing, leased_at).await?;
    Ok(Handled::Republished(topic))
}

/// Publishes the outbox message of the record at `path`, then marks it published, unless a
/// later step consumes the message: that step's record proves delivery, and the write is
/// saved. `written_at` is the record's update time, which the lease release is conditioned
/// on.
async fn publish_and_mark(
    clients: &Clients,
    path: &DocPath,
    outgoing: &Outgoing,
    written_at: Timestamp,
) -> Result<(), StepError> {
    if let Err(e) = clients.bus.publish(outgoing).await {
        // Give the lease back so that the redelivery can publish at once instead of waiting
        // for it to expire. Best effort: if this fails too, the lease simply runs out.
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
    if let Err(e) = clients.store.commit(writes).await {
        // The message is out, which is what the ack promises. Left unmarked, the record
        // only makes a later duplicate delivery publish the same message once more.
        tracing::warn!(error = %e, "published, but could not mark the record published");
    }
    Ok(())
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
