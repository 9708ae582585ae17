//! The status view of a saga, `sagas/{uuid}`: where it stands, why it stopped, and when each
//! step happened.
//!
//! It is a projection of the saga's messages (fed by the `status-*-sub` push subscriptions),
//! built so that delivery order and duplicates do not matter: the view is the set of stages
//! seen, each with the time it first happened, and the status is a function of that set.
//! A late "order created" after "failed" adds a timeline entry but never moves the status
//! back; a duplicate adds nothing.

use crate::contract::Topic;
use crate::message::SagaMessage;
use firestore::FirestoreTimestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stage of a saga, in the order a successful saga passes them (failure branches off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The frontend accepted the order.
    Received,
    /// Orders recorded it.
    OrderCreated,
    /// Inventory reserved the stock.
    StockReserved,
    /// Payments charged for it: the saga succeeded.
    Completed,
    /// A step failed.
    Failed,
    /// The janitor undid the earlier steps.
    Compensated,
}

impl Stage {
    /// The stage a message on `topic` reports.
    pub fn of_topic(topic: Topic) -> Option<Stage> {
        match topic {
            Topic::Frontend => Some(Stage::Received),
            Topic::OrderCreated => Some(Stage::OrderCreated),
            Topic::InventoryUpdated => Some(Stage::StockReserved),
            Topic::PaymentCreated => Some(Stage::Completed),
            Topic::Error => Some(Stage::Failed),
            Topic::Compensated => Some(Stage::Compensated),
            Topic::DeadLetter => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::OrderCreated => "order_created",
            Stage::StockReserved => "stock_reserved",
            Stage::Completed => "completed",
            Stage::Failed => "failed",
            Stage::Compensated => "compensated",
        }
    }
}

/// `sagas/{uuid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// The saga.
    pub uuid: String,
    /// Where it stands: derived from `timeline` by [`StatusView::derive_status`].
    pub status: Stage,
    /// Who ordered.
    pub user: String,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
    /// The step that failed, once one did.
    #[serde(default)]
    pub failed_step: Option<String>,
    /// Why (machine-readable), once a step failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// The human-readable text of the failure, or else of the furthest stage.
    #[serde(default)]
    pub status_text: Option<String>,
    /// The invoice, once paid.
    #[serde(default)]
    pub total_invoice: Option<u64>,
    /// When each stage first happened (publish time of its message).
    pub timeline: BTreeMap<Stage, FirestoreTimestamp>,
    /// When the saga was first seen (its earliest stage): recent sagas sort by it.
    pub created: FirestoreTimestamp,
}

impl StatusView {
    /// The status implied by the stages seen. A failed saga stays failed (then
    /// compensated); a paid one is completed even if a stray failure arrives for it,
    /// because the janitor never compensates a paid saga.
    pub fn derive_status(timeline: &BTreeMap<Stage, FirestoreTimestamp>) -> Stage {
        let has = |s| timeline.contains_key(&s);
        if has(Stage::Completed) {
            Stage::Completed
        } else if has(Stage::Compensated) {
            Stage::Compensated
        } else if has(Stage::Failed) {
            Stage::Failed
        } else {
            timeline.keys().copied().max().unwrap_or(Stage::Received)
        }
    }

    /// The view after `stage` was reported at `at` by `msg`, starting from `current` (or
    /// from nothing). `None` if the event changes nothing (a duplicate).
    pub fn merge(
        current: Option<&StatusView>,
        stage: Stage,
        at: FirestoreTimestamp,
        msg: &SagaMessage,
    ) -> Option<StatusView> {
        let mut view = current.cloned().unwrap_or_else(|| StatusView {
            uuid: msg.uuid.to_string(),
            status: stage,
            user: msg.order.user.as_str().to_owned(),
            item: msg.order.item.as_str().to_owned(),
            quantity: msg.order.quantity.get(),
            failed_step: None,
            reason: None,
            status_text: None,
            total_invoice: None,
            timeline: BTreeMap::new(),
            created: at,
        });
        if view.timeline.contains_key(&stage) {
            return None;
        }
        view.timeline.insert(stage, at);
        view.created = view.created.min(at);
        match stage {
            Stage::Failed => {
                view.failed_step = msg.step.map(|s| s.name().to_owned()).or(view.failed_step);
                view.reason = msg.reason.map(|r| r.as_str().to_owned()).or(view.reason);
            }
            Stage::Compensated => {
                // The compensation message repeats the reason; the failure may not be here yet.
                view.reason = view.reason.or_else(|| msg.reason.map(|r| r.as_str().to_owned()));
            }
            Stage::Completed => view.total_invoice = msg.total_invoice.map(crate::message::Money::get),
            _ => {}
        }
        view.status = Self::derive_status(&view.timeline);
        // The text of the failure explains the saga best; otherwise that of the furthest stage.
        let text_stage = if view.timeline.contains_key(&Stage::Failed) && view.status != Stage::Completed {
            Stage::Failed
        } else {
            view.status
        };
        if stage == text_stage || view.status_text.is_none() {
            view.status_text = msg.status.clone().or(view.status_text);
        }
        Some(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Service;
    use crate::message::{Money, Order, Quantity, Reason, SagaId, StatusCode, UserName};

    fn msg() -> SagaMessage {
        SagaMessage::new(
            SagaId::new(),
            Order {
                user: UserName::parse("jack").unwrap(),
                item: crate::message::ItemName::parse("widget").unwrap(),
                quantity: Quantity::new(5).unwrap(),
            },
            serde_json::Map::new(),
        )
    }

    fn at(secs: i64) -> FirestoreTimestamp {
        FirestoreTimestamp(firestore::jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    fn event(stage: Stage, m: &SagaMessage) -> SagaMessage {
        match stage {
            Stage::Failed => m.fail(
                Service::Inventory,
                Reason::InsufficientStock,
                "Order failed: short".into(),
            ),
            Stage::Compensated => {
                let mut c = m.advance(Service::Janitor, StatusCode::Compensated, "Compensated".into());
                c.reason = Some(Reason::InsufficientStock);
                c
            }
            Stage::Completed => {
                let mut c = m.advance(Service::Payments, StatusCode::Completed, "Paid".into());
                c.total_invoice = Money::new(50);
                c
            }
            other => m.advance(Service::Orders, StatusCode::OrderCreated, format!("{other:?}")),
        }
    }

    /// Applies `stages` in order (the i-th at time i) and returns the final view.
    fn apply(stages: &[Stage]) -> StatusView {
        let m = msg();
        let mut view: Option<StatusView> = None;
        for (i, stage) in stages.iter().enumerate() {
            if let Some(next) = StatusView::merge(
                view.as_ref(),
                *stage,
                at(i64::try_from(i).unwrap()),
                &event(*stage, &m),
            ) {
                view = Some(next);
            }
        }
        view.unwrap()
    }

    fn permutations(items: &[Stage]) -> Vec<Vec<Stage>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first);
                out.push(tail);
            }
        }
        out
    }

    #[test]
    fn every_delivery_order_of_a_successful_saga_ends_completed() {
        use Stage::*;
        for order in permutations(&[Received, OrderCreated, StockReserved, Completed]) {
            let view = apply(&order);
            assert_eq!(view.status, Completed, "{order:?}");
            assert_eq!(view.timeline.len(), 4, "{order:?}");
            assert_eq!(view.total_invoice, Some(50), "{order:?}");
        }
    }

    #[test]
    fn every_delivery_order_of_a_failed_saga_ends_compensated_with_its_reason() {
        use Stage::*;
        for order in permutations(&[Received, OrderCreated, Failed, Compensated]) {
            let view = apply(&order);
            assert_eq!(view.status, Compensated, "{order:?}");
            assert_eq!(view.reason.as_deref(), Some("insufficient_stock"), "{order:?}");
            assert_eq!(view.failed_step.as_deref(), Some("inventory"), "{order:?}");
            assert_eq!(
                view.status_text.as_deref(),
                Some("Order failed: short"),
                "{order:?}"
            );
        }
    }

    #[test]
    fn a_late_order_created_never_moves_a_failed_saga_back() {
        use Stage::*;
        assert_eq!(apply(&[Received, Failed, OrderCreated]).status, Failed);
        assert_eq!(
            apply(&[Failed, Compensated, OrderCreated, StockReserved]).status,
            Compensated
        );
    }

    #[test]
    fn duplicates_change_nothing_and_the_timeline_keeps_each_step_once() {
        use Stage::*;
        let m = msg();
        let first = StatusView::merge(None, Received, at(0), &event(Received, &m)).unwrap();
        assert!(StatusView::merge(Some(&first), Received, at(5), &event(Received, &m)).is_none());
        let view = apply(&[
            Received,
            OrderCreated,
            OrderCreated,
            Received,
            StockReserved,
            StockReserved,
        ]);
        assert_eq!(view.timeline.len(), 3);
        assert_eq!(view.timeline[&Received], at(0), "the first time is kept");
        assert_eq!(view.status, StockReserved);
    }

    #[test]
    fn the_view_remembers_when_the_saga_began_even_if_that_arrives_last() {
        use Stage::*;
        let m = msg();
        let late = StatusView::merge(None, OrderCreated, at(10), &event(OrderCreated, &m)).unwrap();
        let view = StatusView::merge(Some(&late), Received, at(3), &event(Received, &m)).unwrap();
        assert_eq!(view.created, at(3));
        assert_eq!(view.status, OrderCreated);
    }

    #[test]
    fn a_stray_failure_does_not_undo_a_paid_saga() {
        use Stage::*;
        assert_eq!(apply(&[Received, Completed, Failed]).status, Completed);
    }
}
