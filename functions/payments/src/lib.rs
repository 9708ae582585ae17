//! Payments, the saga's last forward step: charges for the order.
//!
//! Creates `payments/{uuid}` with `total_invoice = price_per_unit × quantity` (overflow
//! checked) and publishes `payment-created`, the saga's success. A message carrying the key
//! `payment-error` (any value) is declined, as in the original, and the failure goes to
//! `error`.

use axum::Router;
use firestore::FirestoreTimestamp;
use saga::contract::{Service, Topic, push_path};
use saga::handler::step_route;
use saga::ledger::{Decision, Step, StepError};
use saga::message::{FieldError, Reason, SagaMessage, StatusCode};
use saga::push::MAX_PUSH_BYTES;
use saga::records::{self, DocStatus, PaymentDoc, StepState};
use saga::service::Clients;
use saga::store::{DocPath, Snapshot, WriteSet};

/// The payments step.
#[derive(Clone, Copy, Debug)]
pub struct Payments;

fn reject(msg: &SagaMessage, reason: Reason, status: String) -> Decision {
    Decision {
        state: StepState::Rejected,
        reason: Some(reason),
        price_per_unit: msg.price_per_unit.map(saga::message::Money::get),
        topic: Topic::Error,
        message: msg.fail(Service::Payments, reason, status),
        writes: WriteSet::new(),
    }
}

impl Step for Payments {
    fn service(&self) -> Service {
        Service::Payments
    }

    fn check(&self, msg: &SagaMessage) -> Result<(), FieldError> {
        msg.price_per_unit
            .map(|_| ())
            .ok_or(FieldError::Missing("price_per_unit"))
    }

    fn reads(&self, _msg: &SagaMessage) -> Vec<DocPath> {
        Vec::new()
    }

    fn decide(&self, msg: &SagaMessage, _docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        let price = msg.price_per_unit.ok_or(FieldError::Missing("price_per_unit"))?;
        if msg.wants_payment_error() {
            return Ok(reject(
                msg,
                Reason::PaymentDeclined,
                "Order failed: payment declined".to_owned(),
            ));
        }
        let Some(total) = price.times(msg.order.quantity) else {
            return Ok(reject(
                msg,
                Reason::InvoiceOverflow,
                "Order failed: the invoice total is too large".to_owned(),
            ));
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
        let mut message = msg.advance(
            Service::Payments,
            StatusCode::Completed,
            format!("Payment processed: total invoice {total}"),
        );
        message.total_invoice = Some(total);
        Ok(Decision {
            state: StepState::Done,
            reason: None,
            price_per_unit: Some(price.get()),
            topic: Topic::PaymentCreated,
            message,
            writes,
        })
    }
}

/// The payments service's routes.
pub fn router(clients: Clients) -> Router {
    let routes = Router::new()
        .route(push_path(Topic::InventoryUpdated), step_route(Payments))
        .with_state(clients);
    saga::server::standard(routes, MAX_PUSH_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use saga::message::{Money, SagaId};

    fn message(extra: &serde_json::Value) -> SagaMessage {
        let mut obj = serde_json::json!({
            "item": "widget", "quantity": 3, "user": "jack",
            "uuid": SagaId::new().to_string(), "price_per_unit": 10
        });
        obj.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        SagaMessage::parse(obj.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_invoice_is_computed_here_whatever_the_message_claims() {
        let d = Payments
            .decide(&message(&serde_json::json!({"total_invoice": 1})), &[])
            .unwrap();
        assert_eq!((d.state, d.topic), (StepState::Done, Topic::PaymentCreated));
        assert_eq!(d.message.total_invoice, Money::new(30));
        assert!(!d.writes.is_empty());
    }

    #[test]
    fn a_payment_error_key_with_any_value_declines_without_a_payment() {
        for value in [
            serde_json::json!(null),
            serde_json::json!("null"),
            serde_json::json!(false),
        ] {
            let d = Payments
                .decide(&message(&serde_json::json!({"payment-error": value})), &[])
                .unwrap();
            assert_eq!(
                (d.state, d.topic, d.reason),
                (StepState::Rejected, Topic::Error, Some(Reason::PaymentDeclined))
            );
            assert!(d.writes.is_empty(), "no payment document");
        }
    }

    #[test]
    fn an_invoice_that_does_not_fit_fails_the_saga_instead_of_wrapping() {
        let mut m = message(&serde_json::json!({}));
        m.price_per_unit = Money::new(Money::MAX);
        let d = Payments.decide(&m, &[]).unwrap();
        assert_eq!(d.reason, Some(Reason::InvoiceOverflow));
    }

    #[test]
    fn a_message_without_a_price_is_poison() {
        let mut m = message(&serde_json::json!({}));
        m.price_per_unit = None;
        assert_eq!(Payments.check(&m), Err(FieldError::Missing("price_per_unit")));
    }
}
