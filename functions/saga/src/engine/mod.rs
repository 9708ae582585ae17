//! The step engine: how every step turns one delivery into exactly one outcome, and the
//! documents it keeps.
//!
//! 1. Read the step's record and whatever the step needs, in one round trip.
//! 2. If the record exists, this delivery is a duplicate (or a redelivery after a crash):
//!    publish the stored message if nothing shows it was delivered, otherwise do nothing.
//!    What shows delivery is the record of the step that consumes the message (read only
//!    then: a first delivery never needs it), or, for a message no step consumes, a
//!    `published` mark.
//! 3. Otherwise decide (a pure function of the message and the documents read) and commit
//!    the record, its outbox message and the step's domain writes in one atomic write,
//!    guarded by preconditions. If a precondition fails, something changed concurrently:
//!    go back to 1.
//! 4. Publish the outbox message (and mark the record published if no later step's record
//!    will prove it).
//!
//! The answer to Pub/Sub is 2xx only after 4 succeeded, so a crash anywhere means a
//! redelivery, which step 2 finishes without doing the work twice.

//!
//! - [`Step`]: what a step declares (what it reads, its pure decision); [`Decision`].
//! - [`run()`]: the engine itself; [`retry`]: the read-decide-commit rounds; the outbox's
//!   publish lease and the delivery's [`Deadline`].
//! - [`records`]: where each document lives and what it holds; [`status`]: the status view.

mod batch;
mod deadline;
mod lease;
pub mod records;
pub mod retry;
mod run;
pub mod status;

pub use batch::{MAX_MEMBERS, SHARED_WRITE_GAP};
pub use deadline::Deadline;
pub use lease::{LEASE_MARGIN, LEASE_WAIT, PUBLISH_LEASE};
pub use run::{relay, run};
pub use status::Inbound;

use crate::contract::{Service, Topic};
use crate::domain::{FieldError, Reason};
use crate::gcp::store::{DocPath, Snapshot, WriteSet};
use crate::wire::envelope::EnvelopeError;
use crate::wire::message::SagaMessage;
use records::{StepRecord, StepState};
use std::fmt;

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
/// [`JsonProblem`]: crate::domain::JsonProblem
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
    pub fn unmatched(step: Service, uuid: crate::domain::SagaId, why: &str) -> Self {
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

impl From<retry::Contention> for StepError {
    fn from(e: retry::Contention) -> Self {
        StepError::Transient(e.into())
    }
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
/// be done (not failed, compensated or a tombstone), and be about the same order as `msg`;
/// and the message that step published, as its record stores it (its outbox), which the
/// step goes on with instead of `msg`. So a copy altered on the way (another producer's
/// `payment-error` or passed-through fields) decides nothing. `doc` is that record as read
/// in the step's round trip. Anything else means the message is not this saga's: poison
/// ([`UNMATCHED`]).
pub fn earlier_step(
    doc: Option<&Snapshot>,
    step: Service,
    msg: &SagaMessage,
) -> Result<(StepRecord, SagaMessage), StepError> {
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
    let published = record
        .stored_message(msg.uuid)
        .filter(|published| published.order == msg.order)
        .ok_or_else(|| unmatched("its record holds no readable message of this order"))?;
    Ok((record, published))
}

/// A step's decision for one message: its outcome, the message it publishes, and the domain
/// writes that commit together with its record. The record's reason and price are the
/// message's own, so they cannot disagree.
#[derive(Debug)]
pub struct Decision {
    /// The step's outcome.
    pub state: StepState,
    /// Where the outgoing message goes.
    pub topic: Topic,
    /// The outgoing message.
    pub message: SagaMessage,
    /// Domain writes that commit together with the step's record.
    pub writes: WriteSet,
    /// The message the step went on with, when it is not the delivered copy but the one the
    /// saga's records hold ([`earlier_step`], a compensated failure): the status view
    /// records the arrival of this one.
    pub went_on_with: Option<SagaMessage>,
}

impl Decision {
    /// The step did its work: `message` goes to `topic`, with `writes`.
    pub fn done(topic: Topic, message: SagaMessage, writes: WriteSet) -> Self {
        Decision {
            state: StepState::Done,
            topic,
            message,
            writes,
            went_on_with: None,
        }
    }

    /// `step` refused the order for `reason`: the saga fails, with nothing written but the
    /// record.
    pub fn rejected(step: Service, msg: &SagaMessage, reason: Reason) -> Self {
        Decision {
            state: StepState::Rejected,
            topic: Topic::Error,
            message: msg.fail(step, reason),
            writes: WriteSet::new(),
            went_on_with: None,
        }
    }

    /// `step` never managed the message (the janitor decides this on its behalf): the saga
    /// fails for `reason`. The message leaves out the passed-through fields if they would not
    /// fit, since the step's own message may have been refused for its size.
    pub fn failed(step: Service, msg: &SagaMessage, reason: Reason) -> Self {
        Decision {
            state: StepState::Failed,
            topic: Topic::Error,
            message: msg.fail(step, reason).fitted(),
            writes: WriteSet::new(),
            went_on_with: None,
        }
    }

    /// This decision, made on `msg` as the saga's records hold it rather than on the
    /// delivered copy.
    #[must_use]
    pub fn going_on_with(self, msg: SagaMessage) -> Self {
        Decision {
            went_on_with: Some(msg),
            ..self
        }
    }
}

/// A forward step of the saga.
pub trait Step: Send + Sync + 'static {
    /// Which step this is.
    fn service(&self) -> Service;

    /// Refuses a message this step can never process, before any I/O.
    fn check(&self, _msg: &SagaMessage) -> Result<(), FieldError> {
        Ok(())
    }

    /// The documents to read besides the step's record.
    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath>;

    /// The document this step's decisions for different sagas share (inventory: the item's
    /// stock), if any. Concurrent deliveries that share one are decided together, one after
    /// the other, in one commit (see the engine's `batch` module); `decide` then sees that
    /// document, in its place among [`Step::reads`], as the decisions before it left it.
    fn shared_document(&self, _msg: &SagaMessage) -> Option<DocPath> {
        None
    }

    /// The least time between two writes of a [`Step::shared_document`]
    /// ([`SHARED_WRITE_GAP`] unless configured otherwise).
    fn shared_write_gap(&self) -> std::time::Duration {
        SHARED_WRITE_GAP
    }

    /// When this step's decisions last wrote `shared` (its [`Step::shared_document`]), as
    /// read: the next write waits until [`Step::shared_write_gap`] after it. By default the
    /// document's update time, which any write moves; a step whose shared document is
    /// written by others too records its own mark (the stock's, [`records::stock_gap_start`]).
    fn shared_written_at(&self, shared: &Snapshot) -> Option<std::time::SystemTime> {
        shared.updated_at()
    }

    /// Why there is nothing to do for `msg`, if so, given what [`Step::decide`] would be
    /// given: the delivery is answered as ignored and nothing is written, not even the
    /// step's record (the janitor, for a saga that was paid). Asked before every decision.
    fn nothing_to_do(&self, _msg: &SagaMessage, _docs: &[Option<Snapshot>]) -> Option<&'static str> {
        None
    }

    /// Decides what to do, given the documents of [`Step::reads`], in the same order.
    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Money;

    fn message(extra_bytes: usize) -> SagaMessage {
        let obj = serde_json::json!({
            "item": "widget", "quantity": 2, "user": "jack",
            "uuid": crate::domain::SagaId::new().to_string(), "pad": "x".repeat(extra_bytes)
        });
        SagaMessage::parse_any_size(obj.to_string().as_bytes()).expect("a saga message")
    }

    #[test]
    fn the_constructors_derive_state_topic_and_text_from_what_happened() {
        let msg = message(0).stock_reserved(Money::new(7).expect("an amount"));
        let rejected = Decision::rejected(Service::Payments, &msg, Reason::PaymentDeclined);
        assert_eq!(
            (rejected.state, rejected.topic),
            (StepState::Rejected, Topic::Error)
        );
        assert_eq!(rejected.message.reason, Some(Reason::PaymentDeclined));
        assert_eq!(
            rejected.message.price_per_unit,
            Money::new(7),
            "the price goes on"
        );
        assert_eq!(rejected.message.step, Some(Service::Payments));
        assert!(rejected.writes.is_empty());

        let failed = Decision::failed(Service::Inventory, &msg, Reason::RetriesExhausted);
        assert_eq!((failed.state, failed.topic), (StepState::Failed, Topic::Error));
        assert_eq!(
            failed.message.status.as_deref(),
            Some("Order failed: inventory gave up after repeated delivery attempts")
        );

        let done = Decision::done(Topic::OrderCreated, msg.order_created(), WriteSet::new());
        assert_eq!((done.state, done.message.reason), (StepState::Done, None));
    }

    #[test]
    fn a_failure_decided_for_a_step_leaves_out_fields_that_would_not_fit() {
        let big = message(crate::wire::message::MAX_MESSAGE_BYTES);
        let failed = Decision::failed(Service::Payments, &big, Reason::Undeliverable);
        assert!(failed.message.extra.is_empty());
        assert!(failed.message.to_json().len() <= crate::wire::message::MAX_MESSAGE_BYTES);
        let small = message(10);
        let kept = Decision::failed(Service::Payments, &small, Reason::Undeliverable);
        assert_eq!(kept.message.extra, small.extra);
    }
}
