//! Inventory, the saga's second step: reserves stock for the order.
//!
//! The check and the reservation are one atomic commit: the stock level is written with a
//! precondition that `inventory/{item}` has not changed since it was read, together with
//! the reservation `inventory/{item}/orders/{uuid}` (which must not exist) and the step's
//! record. Two orders racing for the last units cannot both win: the loser's commit fails,
//! and it reads the new level and decides again. Stock never goes negative.

use axum::Router;
use firestore::FirestoreTimestamp;
use saga::contract::{Service, Topic, push_path};
use saga::handler::step_route;
use saga::ledger::{Decision, Step, StepError};
use saga::message::{Money, Reason, SagaMessage, StatusCode};
use saga::push::MAX_PUSH_BYTES;
use saga::records::{self, DocStatus, ReservationDoc, StepState, inventory_fields};
use saga::service::Clients;
use saga::store::{DocPath, Precondition, Snapshot, WriteSet};
use serde::Serialize;

/// The inventory step.
#[derive(Clone, Copy, Debug)]
pub struct Inventory;

#[derive(Serialize)]
struct StockLevel {
    quantity: i64,
}

fn reject(msg: &SagaMessage, reason: Reason, status: String) -> Decision {
    Decision {
        state: StepState::Rejected,
        reason: Some(reason),
        price_per_unit: None,
        topic: Topic::Error,
        message: msg.fail(Service::Inventory, reason, status),
        writes: WriteSet::new(),
    }
}

impl Step for Inventory {
    fn service(&self) -> Service {
        Service::Inventory
    }

    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath> {
        vec![records::item(&msg.order.item)]
    }

    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        let item = &msg.order.item;
        let wanted = msg.order.quantity;
        let Some(Some(stock)) = docs.first() else {
            return Ok(reject(
                msg,
                Reason::UnknownItem,
                format!("Order failed: item '{item}' does not exist"),
            ));
        };
        let level = stock.integer(inventory_fields::QUANTITY);
        let price = stock
            .integer(inventory_fields::PRICE_PER_UNIT)
            .and_then(|p| u64::try_from(p).ok())
            .and_then(Money::new);
        let (Some(level), Some(price)) = (level, price) else {
            return Ok(reject(
                msg,
                Reason::InvalidInventoryRecord,
                format!("Order failed: item '{item}' has no valid quantity and price_per_unit"),
            ));
        };
        if level < i64::from(wanted) {
            return Ok(reject(
                msg,
                Reason::InsufficientStock,
                format!("Order failed: not enough '{item}' in stock for {wanted}"),
            ));
        }

        let mut writes = WriteSet::new();
        writes.update(
            records::item(item),
            &StockLevel {
                quantity: level - i64::from(wanted),
            },
            Some(&[inventory_fields::QUANTITY]),
            Some(Precondition::Unchanged(stock.update_time())),
        );
        writes.create(
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
        );
        let mut message = msg.advance(
            Service::Inventory,
            StatusCode::StockReserved,
            format!("Stock reserved: {wanted} '{item}' at {price} each"),
        );
        message.price_per_unit = Some(price);
        Ok(Decision {
            state: StepState::Done,
            reason: None,
            price_per_unit: Some(price.get()),
            topic: Topic::InventoryUpdated,
            message,
            writes,
        })
    }
}

/// The inventory service's routes.
pub fn router(clients: Clients) -> Router {
    let routes = Router::new()
        .route(push_path(Topic::OrderCreated), step_route(Inventory))
        .with_state(clients);
    saga::server::standard(routes, MAX_PUSH_BYTES)
}
