//! Orders, the saga's first step: records the order for its user.
//!
//! A message on `frontend` (pushed by `frontend-sub`) for an existing `users/{user}` creates
//! `users/{user}/orders/{uuid}` and publishes `order-created`; for an unknown user it
//! publishes the saga's failure to `error`.

use axum::Router;
use firestore::FirestoreTimestamp;
use saga::contract::{Service, Topic, push_path};
use saga::domain::Reason;
use saga::engine::records;
use saga::engine::records::{DocStatus, UserOrderDoc};
use saga::engine::{Decision, Step, StepError};
use saga::gcp::Clients;
use saga::gcp::store::{DocPath, Snapshot, WriteSet};
use saga::runtime::config::Config;
use saga::runtime::push_route::step_route;
use saga::wire::envelope::MAX_PUSH_BYTES;
use saga::wire::message::SagaMessage;

/// The orders step.
#[derive(Clone, Copy, Debug)]
pub struct Orders;

impl Step for Orders {
    fn service(&self) -> Service {
        Service::Orders
    }

    fn reads(&self, msg: &SagaMessage) -> Vec<DocPath> {
        vec![records::user(&msg.order.user)]
    }

    fn decide(&self, msg: &SagaMessage, docs: &[Option<Snapshot>]) -> Result<Decision, StepError> {
        let user = &msg.order.user;
        if docs.first().is_none_or(Option::is_none) {
            return Ok(Decision::rejected(Service::Orders, msg, Reason::UnknownUser));
        }
        let mut writes = WriteSet::new();
        writes.create(
            records::user_order(user, msg.uuid),
            &UserOrderDoc {
                item: msg.order.item.as_str().to_owned(),
                quantity: msg.order.quantity.get(),
                uuid: msg.uuid.to_string(),
                status: DocStatus::Created,
                created: FirestoreTimestamp::now(),
            },
        );
        Ok(Decision::done(Topic::OrderCreated, msg.order_created(), writes))
    }
}

/// The orders service's routes.
pub fn router(clients: Clients, _config: &Config) -> Router {
    let routes = Router::new()
        .route(push_path(Topic::Frontend), step_route(Orders))
        .with_state(clients);
    saga::runtime::server::standard(routes, MAX_PUSH_BYTES)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use saga::domain::SagaId;
    use saga::engine::records::StepState;
    use saga::gcp::store::Precondition;
    use serde_json::json;

    fn message() -> SagaMessage {
        let obj = json!({"item": "widget", "quantity": 2, "user": "jack", "uuid": SagaId::new().to_string()});
        SagaMessage::parse(obj.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn an_existing_user_gets_the_order_recorded_once() {
        let msg = message();
        let user = Snapshot::of(&records::user(&msg.order.user), &json!({"name": "Jack"}), 1).unwrap();
        let d = Orders.decide(&msg, &[Some(user)]).unwrap();
        assert_eq!(
            (d.state, d.topic, d.message.reason),
            (StepState::Done, Topic::OrderCreated, None)
        );
        let order = format!("users/jack/orders/{}", msg.uuid);
        assert_eq!(
            d.writes.documents(),
            vec![(order.as_str(), Some(Precondition::Absent))]
        );
        assert_eq!(d.message.status.as_deref(), Some("Order created for user 'jack'"));
    }

    #[test]
    fn an_unknown_user_fails_the_saga_without_writing() {
        let d = Orders.decide(&message(), &[None]).unwrap();
        assert_eq!(
            (d.state, d.topic, d.message.reason),
            (StepState::Rejected, Topic::Error, Some(Reason::UnknownUser))
        );
        assert!(d.writes.is_empty());
    }
}
