//! Payments, the saga's last forward step: charges for the order.
//!
//! Creates `payments/{uuid}` with `total_invoice = price_per_unit × quantity` (overflow
//! checked) and publishes `payment-created`, the saga's success. The price is the one
//! inventory recorded when it reserved the stock, read from its step record in the same round
//! trip as payments' own; whatever price a message carries is ignored, and a message that
//! does not match a completed reservation of the same order is poison, never a payment. An
//! order whose message carries the key `payment-error` (any value) is declined, as in the
//! original, and the failure goes to `error`; the key is read from the message inventory
//! published, as its record stores it, not from the delivered copy.

use axum::Router;
use firestore::FirestoreTimestamp;
use saga::contract::{Service, Topic, push_path};
use saga::domain::{Money, Reason};
use saga::engine::records;
use saga::engine::records::{DocStatus, PaymentDoc};
use saga::engine::{Decision, Step, StepError, earlier_step};
use saga::gcp::Clients;
use saga::gcp::store::{DocPath, Snapshot, WriteSet};
use saga::runtime::config::Config;
use saga::runtime::push_route::step_route;
use saga::wire::envelope::MAX_PUSH_BYTES;
use saga::wire::message::SagaMessage;

/// The payments step.
#[derive(Clone, Copy, Debug)]
pub struct Payments;

impl Step for Payments {
    fn service(&self) -> Service {
        Service::Payments
    }

    /// Inventory's record of the reservation: the price comes from it, never from the
    /// message, and a message that does not match it is not the saga's (see
    /// [`earlier_step`]) and pays nothing.
    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath> {
        vec![records::step(msg.uuid, Service::Inventory)]
    }

    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        let (reserved, published) =
            earlier_step(docs.first().and_then(Option::as_ref), Service::Inventory, msg)?;
        let price = reserved
            .price()
            .ok_or_else(|| StepError::unmatched(Service::Inventory, msg.uuid, "its record holds no price"))?;
        // The saga goes on with the message inventory published and the reservation's
        // price, whatever the delivered copy claims.
        let msg = SagaMessage {
            price_per_unit: Some(price),
            ..published
        };
        Ok(charge(&msg, price).going_on_with(msg))
    }
}

/// Charges for `msg`'s order at `price` a unit, or declines it.
fn charge(msg: &SagaMessage, price: Money) -> Decision {
    if msg.wants_payment_error() {
        return Decision::rejected(Service::Payments, msg, Reason::PaymentDeclined);
    }
    let Some(total) = price.times(msg.order.quantity) else {
        return Decision::rejected(Service::Payments, msg, Reason::InvoiceOverflow);
    };
    let mut writes = WriteSet::new();
    writes.create(
        records::payment(msg.uuid),
        &PaymentDoc {
            item: msg.order.item.as_str().to_owned(),
            quantity: msg.order.quantity.get(),
            user: msg.order.user.as_str().to_owned(),
            uuid: msg.uuid.to_string(),
            price_per_unit: price.get(),
            total_invoice: total.get(),
            status: DocStatus::Paid,
            created: FirestoreTimestamp::now(),
        },
    );
    Decision::done(Topic::PaymentCreated, msg.paid(price, total), writes)
}

/// The payments service's routes.
pub fn router(clients: Clients, _config: &Config) -> Router {
    let routes = Router::new()
        .route(push_path(Topic::InventoryUpdated), step_route(Payments))
        .with_state(clients);
    saga::runtime::server::standard(routes, MAX_PUSH_BYTES)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::unnecessary_wraps)]

    use super::*;
    use saga::domain::Money;
    use saga::domain::{Order, SagaId};
    use saga::engine::records::StepRecord;
    use saga::engine::records::StepState;
    use serde_json::json;

    fn message(extra: &serde_json::Value) -> SagaMessage {
        let mut obj = json!({
            "item": "widget", "quantity": 3, "user": "jack",
            "uuid": SagaId::new().to_string(), "price_per_unit": 1
        });
        obj.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        SagaMessage::parse(obj.to_string().as_bytes()).unwrap()
    }

    /// Inventory's record for `msg`'s saga, in `state`, of `order`, at `price`.
    fn reservation(
        msg: &SagaMessage,
        state: StepState,
        order: &Order,
        price: Option<u64>,
    ) -> Option<Snapshot> {
        let mut record = StepRecord::new(Service::Inventory, msg.uuid, order, state);
        record.price_per_unit = price;
        record.outbox = Some(saga::gcp::bus::Outgoing::new(
            Topic::InventoryUpdated,
            msg.to_json(),
        ));
        Some(Snapshot::of(&records::step(msg.uuid, Service::Inventory), &record, 1).unwrap())
    }

    #[test]
    fn the_price_is_the_reservations_and_the_invoice_is_computed_here() {
        let msg = message(&json!({"total_invoice": 1}));
        let docs = [reservation(&msg, StepState::Done, &msg.order, Some(10))];
        let d = Payments.decide(&msg, &docs).unwrap();
        assert_eq!((d.state, d.topic), (StepState::Done, Topic::PaymentCreated));
        assert_eq!(d.message.price_per_unit, Money::new(10), "not the message's 1");
        assert_eq!(d.message.total_invoice, Money::new(30));
        assert_eq!(d.message.price_per_unit, Money::new(10));
        assert_eq!(d.writes.documents().len(), 1, "the payment");
    }

    #[test]
    fn a_message_that_does_not_match_a_completed_reservation_of_its_order_pays_nothing() {
        let msg = message(&json!({}));
        let mut other = msg.order.clone();
        other.quantity = saga::domain::Quantity::new(4).unwrap();
        let cases = [
            ("no reservation", None),
            (
                "a compensated one",
                reservation(&msg, StepState::Compensated, &msg.order, Some(10)),
            ),
            (
                "a tombstone",
                reservation(&msg, StepState::Tombstone, &msg.order, None),
            ),
            (
                "a refused one",
                reservation(&msg, StepState::Rejected, &msg.order, None),
            ),
            (
                "another quantity",
                reservation(&msg, StepState::Done, &other, Some(10)),
            ),
            ("no price", reservation(&msg, StepState::Done, &msg.order, None)),
        ];
        for (what, doc) in cases {
            match Payments.decide(&msg, &[doc]) {
                Err(StepError::Poison { code, .. }) => assert_eq!(code, saga::engine::UNMATCHED, "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_payment_error_key_with_any_value_declines_without_a_payment() {
        for value in [json!(null), json!("null"), json!(false)] {
            let msg = message(&json!({"payment-error": value}));
            let docs = [reservation(&msg, StepState::Done, &msg.order, Some(10))];
            let d = Payments.decide(&msg, &docs).unwrap();
            assert_eq!(
                (d.state, d.topic, d.message.reason),
                (StepState::Rejected, Topic::Error, Some(Reason::PaymentDeclined))
            );
            assert!(d.writes.is_empty(), "no payment document");
        }
    }

    #[test]
    fn the_message_inventory_published_decides_not_the_copy_delivered() {
        let published = message(&json!({"note": "the client's"}));
        let altered = |extra: serde_json::Value| {
            let mut obj: serde_json::Value = serde_json::from_str(&published.to_json()).unwrap();
            obj.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            SagaMessage::parse(obj.to_string().as_bytes()).unwrap()
        };
        let docs = [reservation(
            &published,
            StepState::Done,
            &published.order,
            Some(10),
        )];
        for copy in [
            altered(json!({"payment-error": true})),
            altered(json!({"note": "forged"})),
        ] {
            let d = Payments.decide(&copy, &docs).unwrap();
            assert_eq!(
                d.state,
                StepState::Done,
                "paid: the published message asked for no error"
            );
            assert_eq!(d.message.extra.get("note"), Some(&json!("the client's")));
        }

        let declined = message(&json!({"payment-error": 1}));
        let docs = [reservation(&declined, StepState::Done, &declined.order, Some(10))];
        let mut copy = declined.clone();
        copy.extra.remove("payment-error");
        let d = Payments.decide(&copy, &docs).unwrap();
        assert_eq!(
            d.message.reason,
            Some(Reason::PaymentDeclined),
            "the client asked for it"
        );

        let mut record = StepRecord::new(
            Service::Inventory,
            declined.uuid,
            &declined.order,
            StepState::Done,
        );
        record.price_per_unit = Some(10);
        let doc = Snapshot::of(&records::step(declined.uuid, Service::Inventory), &record, 1).unwrap();
        assert!(
            matches!(Payments.decide(&declined, &[Some(doc)]), Err(StepError::Poison { code, .. }) if code == saga::engine::UNMATCHED),
            "a reservation without the message it published pays nothing"
        );
    }

    #[test]
    fn an_invoice_that_does_not_fit_fails_the_saga_instead_of_wrapping() {
        let msg = message(&json!({}));
        let docs = [reservation(&msg, StepState::Done, &msg.order, Some(Money::MAX))];
        let d = Payments.decide(&msg, &docs).unwrap();
        assert_eq!(
            (d.state, d.message.reason),
            (StepState::Rejected, Some(Reason::InvoiceOverflow))
        );
        assert!(d.writes.is_empty());
    }
}
