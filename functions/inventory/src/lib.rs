//! Inventory, the saga's second step: reserves stock for the order.
//!
//! The check and the reservation are one atomic commit: the stock level is written with a
//! precondition that `inventory/{item}` has not changed since it was read, together with
//! the reservation `inventory/{item}/orders/{uuid}` and the step's record (which must not
//! exist: that makes the reservation once). Two orders racing for the last units cannot
//! both win: the loser's commit fails, and it reads the new level and decides again. Stock
//! never goes negative.
//!
//! The item's stock is the step's shared document: the sales of one item that arrive
//! together are decided one after the other against the level the earlier ones left, and
//! committed at once, writing the stock document once, at most four times a second however
//! hot the item (`saga::engine`'s batches, whose docs say why that stays exact). The
//! janitor's returns of stock are batched the same way and count against the same gap.

use axum::Router;
use firestore::FirestoreTimestamp;
use saga::contract::{Service, Topic, push_path};
use saga::domain::{Money, Reason};
use saga::engine::records;
use saga::engine::records::{DocStatus, ReservationDoc, inventory_fields};
use saga::engine::{Decision, Step, StepError, earlier_step};
use saga::gcp::Clients;
use saga::gcp::store::{DocPath, Snapshot, WriteSet};
use saga::runtime::config::Config;
use saga::runtime::push_route::step_route;
use saga::wire::envelope::MAX_PUSH_BYTES;
use saga::wire::message::SagaMessage;

/// The inventory step.
#[derive(Clone, Copy, Debug)]
pub struct Inventory {
    /// The least time between two writes of an item's stock (`SHARED_WRITE_GAP`).
    pub write_gap: std::time::Duration,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory {
            write_gap: saga::engine::SHARED_WRITE_GAP,
        }
    }
}

impl Step for Inventory {
    fn service(&self) -> Service {
        Service::Inventory
    }

    /// The item, and the orders step's record: stock is reserved only for an order that
    /// orders recorded (a message on `order-created` is not trusted on its own).
    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath> {
        vec![
            records::item(&msg.order.item),
            records::step(msg.uuid, Service::Orders),
        ]
    }

    /// The item's stock: every sale of an item is decided with the others that arrive
    /// meanwhile, in one commit that writes the stock once (see the module doc).
    fn shared_document(&self, msg: &SagaMessage) -> Option<DocPath> {
        Some(records::item(&msg.order.item))
    }

    fn shared_write_gap(&self) -> std::time::Duration {
        self.write_gap
    }

    /// The saga's own mark, which the janitor's returns set too: both count the gap from
    /// the last write of either. A stock the saga has not written yet (seeded) waits for
    /// nothing.
    fn shared_written_at(&self, shared: &Snapshot) -> Option<std::time::SystemTime> {
        records::stock_gap_start(shared)
    }

    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        let [stock, ordered] = docs else {
            return Err(anyhow::anyhow!("inventory reads two documents, got {}", docs.len()).into());
        };
        // Goes on with the message orders published, not the delivered copy.
        let (_, published) = earlier_step(ordered.as_ref(), Service::Orders, msg)?;
        Ok(reserve(&published, stock.as_ref()).going_on_with(published))
    }
}

/// Reserves `msg`'s units from `stock` (the item's document as read), or refuses the order.
fn reserve(msg: &SagaMessage, stock: Option<&Snapshot>) -> Decision {
    let item = &msg.order.item;
    let wanted = msg.order.quantity;
    let Some(stock) = stock else {
        return Decision::rejected(Service::Inventory, msg, Reason::UnknownItem);
    };
    let level = stock.integer(inventory_fields::QUANTITY);
    let price = stock
        .integer(inventory_fields::PRICE_PER_UNIT)
        .and_then(|p| u64::try_from(p).ok())
        .and_then(Money::new);
    let (Some(level), Some(price)) = (level, price) else {
        return Decision::rejected(Service::Inventory, msg, Reason::InvalidInventoryRecord);
    };
    if level < i64::from(wanted) {
        return Decision::rejected(Service::Inventory, msg, Reason::InsufficientStock);
    }

    let mut writes = WriteSet::new();
    records::set_stock_level(&mut writes, item, stock, level - i64::from(wanted));
    // Unconditional: the step's record, created only if absent in the same commit, is
    // what makes the reservation happen once. A document already there (the original's
    // data, a restore) would otherwise fail every commit of the item's batch for ever.
    writes.update(
        records::reservation(item, msg.uuid),
        &ReservationDoc {
            item: item.as_str().to_owned(),
            quantity: wanted.get(),
            user: msg.order.user.as_str().to_owned(),
            uuid: msg.uuid.to_string(),
            price_per_unit: price.get(),
            status: DocStatus::Reserved,
            created: FirestoreTimestamp::now(),
        },
        None,
        None,
    );
    Decision::done(Topic::InventoryUpdated, msg.stock_reserved(price), writes)
}

/// The inventory service's routes.
pub fn router(clients: Clients, config: &Config) -> Router {
    let step = Inventory {
        write_gap: config.shared_write_gap,
    };
    let routes = Router::new()
        .route(push_path(Topic::OrderCreated), step_route(step))
        .with_state(clients);
    saga::runtime::server::standard(routes, MAX_PUSH_BYTES)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::unnecessary_wraps)]

    use super::*;
    use saga::domain::{Order, Quantity, SagaId};
    use saga::engine::records::StepRecord;
    use saga::engine::records::StepState;
    use saga::gcp::store::Precondition;
    use serde_json::json;

    fn message(quantity: u32) -> SagaMessage {
        let obj = json!({
            "item": "widget", "quantity": quantity, "user": "jack", "uuid": SagaId::new().to_string()
        });
        SagaMessage::parse(obj.to_string().as_bytes()).unwrap()
    }

    fn item(msg: &SagaMessage, fields: &serde_json::Value) -> Option<Snapshot> {
        Some(Snapshot::of(&records::item(&msg.order.item), fields, 7).unwrap())
    }

    fn ordered(msg: &SagaMessage, state: StepState, order: &Order) -> Option<Snapshot> {
        let mut record = StepRecord::new(Service::Orders, msg.uuid, order, state);
        record.outbox = Some(saga::gcp::bus::Outgoing::new(Topic::OrderCreated, msg.to_json()));
        Some(Snapshot::of(&records::step(msg.uuid, Service::Orders), &record, 1).unwrap())
    }

    fn decide(msg: &SagaMessage, stock: Option<Snapshot>) -> Result<Decision, StepError> {
        Inventory::default().decide(msg, &[stock, ordered(msg, StepState::Done, &msg.order)])
    }

    #[test]
    fn the_message_orders_published_goes_on_not_the_copy_delivered() {
        let published = message(2);
        let stock = item(&published, &json!({"quantity": 10, "price_per_unit": 3}));
        let mut copy = published.clone();
        copy.extra.insert("payment-error".to_owned(), json!(true));
        let d = Inventory::default()
            .decide(
                &copy,
                &[stock, ordered(&published, StepState::Done, &published.order)],
            )
            .unwrap();
        assert_eq!(d.state, StepState::Done);
        assert!(
            !d.message.wants_payment_error(),
            "the forged key does not travel on"
        );
    }

    #[test]
    fn the_write_gap_counts_from_the_sagas_last_write_of_the_level_not_from_anyone_elses() {
        use std::time::{Duration, SystemTime};
        let step = Inventory::default();
        let msg = message(2);
        let seeded = item(&msg, &json!({"quantity": 9, "price_per_unit": 3})).unwrap();
        assert_eq!(
            step.shared_written_at(&seeded),
            None,
            "a stock no sale wrote waits for nothing"
        );

        // A sale marks the stock with its time, in the same write as the level.
        let before = SystemTime::now();
        let mut d = decide(&msg, Some(seeded.clone())).unwrap();
        let sold = seeded.after(&d.writes.split_off_document(&records::item(&msg.order.item)));
        let marked = step.shared_written_at(&sold).expect("the sale's mark");
        assert!(
            marked >= before - Duration::from_millis(1),
            "{marked:?} {before:?}"
        );
        assert_eq!(sold.integer(inventory_fields::QUANTITY), Some(7));

        // An operator adds units with an increment of the level alone: the saga's mark does
        // not move (the janitor's returns set it, as sales do: `records::set_stock_level`).
        // This snapshot keeps its old update time; how an update time within a second of
        // the mark counts is `records::gap_start`'s table.
        let mut increment = WriteSet::new();
        increment.increment(
            records::item(&msg.order.item),
            inventory_fields::QUANTITY,
            2,
            None,
        );
        let compensated = sold.after(&increment);
        assert_eq!(compensated.integer(inventory_fields::QUANTITY), Some(9));
        assert_eq!(step.shared_written_at(&compensated), Some(marked));
    }

    #[test]
    fn stock_is_reserved_to_the_last_unit_and_the_level_is_guarded_by_its_read() {
        let msg = message(5);
        let d = decide(&msg, item(&msg, &json!({"quantity": 5, "price_per_unit": 3}))).unwrap();
        assert_eq!((d.state, d.topic), (StepState::Done, Topic::InventoryUpdated));
        assert_eq!(d.message.price_per_unit, Money::new(3));
        assert_eq!(d.message.price_per_unit, Money::new(3));
        let writes = d.writes.documents();
        let stamp = Snapshot::of(&records::item(&msg.order.item), &json!({}), 7)
            .unwrap()
            .update_time();
        assert_eq!(
            writes[0],
            ("inventory/widget", Some(Precondition::Unchanged(stamp)))
        );
        assert_eq!(
            writes[1],
            (records::reservation(&msg.order.item, msg.uuid).as_str(), None),
            "the reservation, written whatever is there: the step's record makes it once"
        );
    }

    #[test]
    fn each_reason_to_refuse_an_order_is_told_apart() {
        let msg = message(5);
        let cases = [
            ("unknown item", None, Reason::UnknownItem),
            (
                "one unit short",
                item(&msg, &json!({"quantity": 4, "price_per_unit": 3})),
                Reason::InsufficientStock,
            ),
            (
                "no price",
                item(&msg, &json!({"quantity": 9})),
                Reason::InvalidInventoryRecord,
            ),
            (
                "a negative price",
                item(&msg, &json!({"quantity": 9, "price_per_unit": -1})),
                Reason::InvalidInventoryRecord,
            ),
            (
                "a text quantity",
                item(&msg, &json!({"quantity": "9", "price_per_unit": 3})),
                Reason::InvalidInventoryRecord,
            ),
        ];
        for (what, stock, reason) in cases {
            let d = decide(&msg, stock).unwrap();
            assert_eq!(
                (d.state, d.topic, d.message.reason),
                (StepState::Rejected, Topic::Error, Some(reason)),
                "{what}"
            );
            assert!(d.writes.is_empty(), "{what}: nothing reserved");
            assert_eq!(d.message.reason, Some(reason), "{what}");
        }
    }

    #[test]
    fn stock_is_reserved_only_for_an_order_the_orders_step_recorded() {
        let msg = message(5);
        let stock = item(&msg, &json!({"quantity": 9, "price_per_unit": 3}));
        let mut other = msg.order.clone();
        other.quantity = Quantity::new(6).unwrap();
        let cases = [
            ("no orders record", None),
            ("a refused order", ordered(&msg, StepState::Rejected, &msg.order)),
            ("a tombstone", ordered(&msg, StepState::Tombstone, &msg.order)),
            ("another quantity", ordered(&msg, StepState::Done, &other)),
        ];
        for (what, record) in cases {
            match Inventory::default().decide(&msg, &[stock.clone(), record]) {
                Err(StepError::Poison { code, .. }) => assert_eq!(code, saga::engine::UNMATCHED, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
