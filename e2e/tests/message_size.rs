//! Every message every step can publish for an order the frontend accepts fits
//! `MAX_MESSAGE_BYTES`: a property over generated orders, run through the steps' own
//! decisions (no emulator needed), with the documents that make each step write its longest
//! message (the largest price Firestore holds, every reason to refuse).
//!
//! The frontend's bound is `SagaMessage::largest_successor_len`, computed from the builders
//! the steps use; this test does not trust that: it runs the steps.

// A failed unwrap in a test is a failed assertion; `Option` is what a read returns.
#![allow(clippy::unwrap_used, clippy::unnecessary_wraps)]

use inventory::Inventory;
use orders::Orders;
use payments::Payments;
use proptest::prelude::*;
use saga::contract::{Service, Topic};
use saga::domain::{Money, Order, Reason, SagaId};
use saga::engine::records;
use saga::engine::records::{StepRecord, StepState};
use saga::engine::{Decision, Step};
use saga::gcp::store::Snapshot;
use saga::wire::message::{MAX_MESSAGE_BYTES, SagaMessage};
use serde_json::{Value, json};

fn snapshot(path: &saga::gcp::store::DocPath, fields: &impl serde::Serialize) -> Option<Snapshot> {
    Some(Snapshot::of(path, fields, 1).unwrap())
}

/// `step`'s record of having published `msg` (its outbox), at `price`.
fn record(msg: &SagaMessage, step: Service, price: Option<Money>) -> Option<Snapshot> {
    let mut record = StepRecord::new(step, msg.uuid, &msg.order, StepState::Done);
    record.price_per_unit = price.map(Money::get);
    let topic = match step {
        Service::Orders => Topic::OrderCreated,
        _ => Topic::InventoryUpdated,
    };
    record.outbox = Some(saga::gcp::bus::Outgoing::new(topic, msg.to_json()));
    snapshot(&records::step(msg.uuid, step), &record)
}

/// Every decision each forward step can make for `first`'s saga, in the worst case for size.
fn decisions(first: &SagaMessage) -> Vec<Decision> {
    let max = Money::new(Money::MAX).unwrap();
    let user = snapshot(&records::user(&first.order.user), &json!({"address": "x"}));
    let mut out = vec![
        Orders.decide(first, &[user]).unwrap(),
        Orders.decide(first, &[None]).unwrap(),
    ];
    let created = out[0].message.clone();
    let item = |fields: Value| snapshot(&records::item(&created.order.item), &fields);
    let ordered = record(&created, Service::Orders, None);
    for stock in [
        item(json!({"quantity": i64::MAX, "price_per_unit": i64::MAX})),
        item(json!({"quantity": 0, "price_per_unit": i64::MAX})),
        item(json!({"quantity": 1})),
        None,
    ] {
        out.push(
            Inventory::default()
                .decide(&created, &[stock, ordered.clone()])
                .unwrap(),
        );
    }
    let reserved = out[2].message.clone();
    let held = record(&reserved, Service::Inventory, Some(max));
    out.push(Payments.decide(&reserved, &[held]).unwrap());
    let mut declined = reserved.clone();
    declined.extra.insert("payment-error".into(), json!(null));
    let held = record(&declined, Service::Inventory, Some(max));
    out.push(Payments.decide(&declined, &[held]).unwrap());
    let small = record(&reserved, Service::Inventory, Some(Money::new(1).unwrap()));
    out.push(Payments.decide(&reserved, &[small]).unwrap());
    out
}

/// Orders whose extra numbers grow when re-written, around the size where the messages reach
/// the limit, with the longest names in the widest characters.
fn orders() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("jack".to_owned()),
        Just("𝄞".repeat(128)),
        Just("\"".repeat(128))
    ];
    (name.clone(), name, 17_000..19_600usize, any::<bool>()).prop_map(|(user, item, count, declined)| {
        let mut order = json!({"item": item, "quantity": 1_000_000, "user": user});
        if declined {
            order["payment-error"] = json!("null");
        }
        let text = order.to_string();
        let numbers = vec!["1e15"; count / 5].join(",");
        format!("{},\"n\":[{numbers}]}}", &text[..text.len() - 1])
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_message_each_step_can_publish_for_an_accepted_order_fits_the_message_limit(body in orders()) {
        let (order, extra): (Order, _) = Order::parse_request(body.as_bytes()).unwrap();
        let Ok(first) = SagaMessage::start(SagaId::new(), order, extra) else {
            return Ok(());
        };
        let decisions = decisions(&first);
        let mut messages: Vec<SagaMessage> = decisions.iter().map(|d| d.message.clone()).collect();
        // The janitor's: a step given up on, and every compensation, from the largest failure.
        let reserved = &decisions[2].message;
        for reason in [Reason::RetriesExhausted, Reason::Undeliverable] {
            messages.push(reserved.fail(Service::Payments, reason).fitted());
        }
        let failures: Vec<SagaMessage> = messages.iter().filter(|m| m.reason.is_some()).cloned().collect();
        messages.extend(failures.iter().map(|f| f.compensated(f.order.quantity.get(), true)));
        for m in &messages {
            let bytes = m.to_bytes();
            prop_assert!(
                bytes.len() <= MAX_MESSAGE_BYTES,
                "a {}-byte order became a {}-byte {:?} message",
                body.len(), bytes.len(), m.status_code
            );
            let read = SagaMessage::parse(&bytes);
            prop_assert_eq!(read.as_ref(), Ok(m));
        }
    }
}

/// The property means something only if its generator reaches both sides of the bound.
#[test]
fn the_generated_orders_reach_both_sides_of_the_frontends_bound() {
    use proptest::strategy::ValueTree as _;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = orders();
    let mut seen = [0u32; 2];
    for _ in 0..200 {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        let (order, extra) = Order::parse_request(body.as_bytes()).unwrap();
        seen[usize::from(SagaMessage::start(SagaId::new(), order, extra).is_ok())] += 1;
    }
    assert!(
        seen[0] >= 20 && seen[1] >= 20,
        "refused {}, accepted {}",
        seen[0],
        seen[1]
    );
}
