//! The Firestore documents of the saga: where each lives and what it holds.
//!
//! Domain documents keep the original's collections and fields (`users/{user}/orders/{uuid}`,
//! `inventory/{item}/orders/{uuid}`, `payments/{uuid}`) plus a `status`. Each step also keeps
//! a record in `sagas/{uuid}/steps/{step}`: its outcome and the exact message it publishes
//! (the outbox), so that a redelivery can finish an interrupted publish and a duplicate can
//! be recognised. Nothing is ever deleted: compensation turns records into tombstones.

use crate::contract::{Service, collections};
use crate::domain::{ItemName, Money, Order, SagaId, UserName};
use crate::gcp::bus::Outgoing;
use crate::gcp::store::{DocPath, Precondition, Snapshot, WriteSet};
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};

/// `users/{user}`.
pub fn user(user: &UserName) -> DocPath {
    DocPath::new([collections::USERS, user.as_str()])
}

/// `users/{user}/orders/{uuid}`.
pub fn user_order(user: &UserName, uuid: SagaId) -> DocPath {
    DocPath::new([
        collections::USERS,
        user.as_str(),
        collections::ORDERS,
        &uuid.to_string(),
    ])
}

/// `inventory/{item}`.
pub fn item(item: &ItemName) -> DocPath {
    DocPath::new([collections::INVENTORY, item.as_str()])
}

/// `inventory/{item}/orders/{uuid}`: the stock reservation.
pub fn reservation(item: &ItemName, uuid: SagaId) -> DocPath {
    DocPath::new([
        collections::INVENTORY,
        item.as_str(),
        collections::ORDERS,
        &uuid.to_string(),
    ])
}

/// `payments/{uuid}`.
pub fn payment(uuid: SagaId) -> DocPath {
    DocPath::new([collections::PAYMENTS, &uuid.to_string()])
}

/// `sagas/{uuid}`: the saga's status view.
pub fn saga(uuid: SagaId) -> DocPath {
    DocPath::new([collections::SAGAS, &uuid.to_string()])
}

/// `sagas/{uuid}/steps/{step}`.
pub fn step(uuid: SagaId, step: Service) -> DocPath {
    DocPath::new([
        collections::SAGAS,
        &uuid.to_string(),
        collections::STEPS,
        step.name(),
    ])
}

/// The `inventory/{item}` fields the saga reads.
pub mod inventory_fields {
    /// Units in stock.
    pub const QUANTITY: &str = "quantity";
    /// Price of one unit.
    pub const PRICE_PER_UNIT: &str = "price_per_unit";
    /// When the saga last wrote the level (a sale or a return): Firestore's time of that
    /// commit. The gap between two writes of an item's stock is counted from it, by
    /// inventory and the janitor alike ([`super::stock_gap_start`]).
    pub const WRITTEN_AT: &str = "written_at";
}

#[derive(Serialize)]
struct StockLevel {
    quantity: i64,
}

/// Queues the write of `item`'s stock `level`, as every step of the saga writes it: the
/// level alone, only if the stock is still as read (`stock`), marked with the commit's time.
pub fn set_stock_level(writes: &mut WriteSet, item: &ItemName, stock: &Snapshot, level: i64) {
    writes
        .update(
            self::item(item),
            &StockLevel { quantity: level },
            Some(&[inventory_fields::QUANTITY]),
            Some(Precondition::Unchanged(stock.update_time())),
        )
        .and_request_time(inventory_fields::WRITTEN_AT);
}

/// When the saga last wrote `stock`'s level, if it ever did: what the write gap of the
/// item's stock counts from ([`super::Step::shared_written_at`]). A write of anyone else (a
/// seed, an operator's edit) long after it holds no sale or return back.
pub fn stock_gap_start(stock: &Snapshot) -> Option<std::time::SystemTime> {
    gap_start(stock.time(inventory_fields::WRITTEN_AT), stock.updated_at())
}

/// How long after Firestore takes a commit it may still be applying it.
const COMMIT_SPAN: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the write gap starts, the saga's last write of a stock being marked `mark` and the
/// document last changed at `updated`. The mark ([`inventory_fields::WRITTEN_AT`]) is when
/// Firestore took that commit (its request time); the commit is applied, and the document's
/// update time set, later by the commit's own length, which for a batch of a hundred sales
/// the emulator stretches to a hundred milliseconds and more. A write rate is counted on
/// update times, so an update within [`COMMIT_SPAN`] after the mark (that commit's, or a
/// write just after it) is where the gap starts; a later one is someone else's and holds
/// nothing back.
fn gap_start(
    mark: Option<std::time::SystemTime>,
    updated: Option<std::time::SystemTime>,
) -> Option<std::time::SystemTime> {
    let mark = mark?;
    let applied = updated.filter(|u| u.duration_since(mark).is_ok_and(|after| after <= COMMIT_SPAN));
    Some(applied.unwrap_or(mark))
}

/// Status of a domain document: its `status` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocStatus {
    /// The user's order exists.
    Created,
    /// Stock is held for the order.
    Reserved,
    /// The order is paid.
    Paid,
    /// The order was undone.
    Cancelled,
    /// The held stock went back.
    Released,
}

/// `users/{user}/orders/{uuid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserOrderDoc {
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// The saga.
    pub uuid: String,
    /// `created` or `cancelled`.
    pub status: DocStatus,
    /// When it was recorded.
    pub created: FirestoreTimestamp,
}

/// `inventory/{item}/orders/{uuid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationDoc {
    /// What.
    pub item: String,
    /// How many units are held.
    pub quantity: u32,
    /// For whom.
    pub user: String,
    /// The saga.
    pub uuid: String,
    /// Price of one unit when reserved.
    pub price_per_unit: u64,
    /// `reserved` or `released`.
    pub status: DocStatus,
    /// When it was reserved.
    pub created: FirestoreTimestamp,
}

/// `payments/{uuid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentDoc {
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// Who pays.
    pub user: String,
    /// The saga.
    pub uuid: String,
    /// Price of one unit.
    pub price_per_unit: u64,
    /// `price_per_unit × quantity`.
    pub total_invoice: u64,
    /// `paid`.
    pub status: DocStatus,
    /// When it was paid.
    pub created: FirestoreTimestamp,
}

/// What a step's record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// The step did its work (order created, stock reserved, payment made).
    Done,
    /// The step refused the order; its outbox holds the `error` message.
    Rejected,
    /// The step never succeeded before Pub/Sub gave up; the janitor wrote this record and
    /// its `error` message on the step's behalf.
    Failed,
    /// The step's work was undone by compensation.
    Compensated,
    /// The saga was compensated before this step ran: the step must never run now.
    Tombstone,
}

impl StepState {
    /// Whether the step ended the saga with a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, StepState::Rejected | StepState::Failed)
    }
}

/// `sagas/{uuid}/steps/{step}`: one step's outcome and outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub step: String,
    /// The saga.
    pub uuid: String,
    /// What happened.
    pub state: StepState,
    /// The order, as this step saw it: compensation reads it from here.
    pub user: String,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// Price of one unit, once known.
    #[serde(default)]
    pub price_per_unit: Option<u64>,
    /// Machine-readable failure reason, for failures.
    #[serde(default)]
    pub reason: Option<String>,
    /// The message this step publishes, stored before it is sent.
    #[serde(default)]
    pub outbox: Option<Outgoing>,
    /// Whether Pub/Sub confirmed the outbox message. Only marked for messages that no later
    /// step consumes (`payment-created`, `compensated`); for the others the consuming step's
    /// record proves delivery, which saves a write per step.
    #[serde(default)]
    pub published: bool,
    /// Until when the delivery that wrote the outbox is presumed to be publishing it. A
    /// duplicate delivery leaves the publish to it until then, and takes over after.
    #[serde(default)]
    pub lease_until: Option<FirestoreTimestamp>,
    /// When the record was written.
    pub created: FirestoreTimestamp,
    /// When it last changed state.
    pub updated: FirestoreTimestamp,
}

impl StepRecord {
    /// A record of `step` for `order` in `state`.
    pub fn new(step: Service, uuid: SagaId, order: &Order, state: StepState) -> Self {
        let now = FirestoreTimestamp::now();
        StepRecord {
            step: step.name().to_owned(),
            uuid: uuid.to_string(),
            state,
            user: order.user.as_str().to_owned(),
            item: order.item.as_str().to_owned(),
            quantity: order.quantity.get(),
            price_per_unit: None,
            reason: None,
            outbox: None,
            published: false,
            lease_until: None,
            created: now,
            updated: now,
        }
    }

    /// The order this record is about, if its fields are still valid.
    pub fn order(&self) -> Option<Order> {
        Some(Order {
            user: UserName::parse(&self.user).ok()?,
            item: ItemName::parse(&self.item).ok()?,
            quantity: crate::domain::Quantity::new(u64::from(self.quantity)).ok()?,
        })
    }

    /// The price recorded by inventory.
    pub fn price(&self) -> Option<Money> {
        self.price_per_unit.and_then(Money::new)
    }

    /// The message its outbox holds, if it can be read and is saga `uuid`'s.
    pub fn stored_message(&self, uuid: SagaId) -> Option<crate::wire::message::SagaMessage> {
        let out = self.outbox.as_ref()?;
        crate::wire::message::SagaMessage::parse_any_size(out.data.as_bytes())
            .ok()
            .filter(|m| m.uuid == uuid)
    }
}

/// The fields changed when a step's state changes (a compensation).
#[derive(Serialize)]
pub struct StateChange {
    /// The new state.
    pub state: StepState,
    /// When.
    pub updated: FirestoreTimestamp,
}

impl StateChange {
    /// The fields this change writes.
    pub const MASK: &'static [&'static str] = &["state", "updated"];
}

/// The fields changed when a domain document's status changes.
#[derive(Serialize)]
pub struct StatusChange {
    /// The new status.
    pub status: DocStatus,
    /// When.
    pub updated: FirestoreTimestamp,
}

impl StatusChange {
    /// The fields this change writes.
    pub const MASK: &'static [&'static str] = &["status", "updated"];

    /// A change to `status`, now.
    pub fn now(status: DocStatus) -> Self {
        StatusChange {
            status,
            updated: FirestoreTimestamp::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_write_gap_starts_when_the_sagas_last_commit_was_applied_not_at_anyone_elses_write() {
        let mark = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ms = Duration::from_millis;
        for (what, mark, updated, want) in [
            ("never written by the saga", None, Some(mark), None),
            ("applied as it was taken", Some(mark), Some(mark), Some(mark)),
            (
                "applied 120 ms after it was taken",
                Some(mark),
                Some(mark + ms(120)),
                Some(mark + ms(120)),
            ),
            (
                "an edit within a second of it",
                Some(mark),
                Some(mark + ms(1_000)),
                Some(mark + ms(1_000)),
            ),
            (
                "an edit just over a second after",
                Some(mark),
                Some(mark + ms(1_001)),
                Some(mark),
            ),
            (
                "an operator's edit long after",
                Some(mark),
                Some(mark + ms(60_000)),
                Some(mark),
            ),
            (
                "an update time before the mark",
                Some(mark),
                Some(mark - ms(5)),
                Some(mark),
            ),
            ("no update time", Some(mark), None, Some(mark)),
        ] {
            assert_eq!(gap_start(mark, updated), want, "{what}");
        }
    }
}
