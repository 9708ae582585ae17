//! Failures on the real emulators: compensation, tombstones, duplicates, crash safety,
//! poison messages and dead letters. Each test names the flaw of the original
//! (`../shared/ORIGINAL.md`) that it shows gone.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{TestStack, eventually, new_uuid, saga_message};
use saga::contract::{PUSH_POLICY, Service, Topic};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(3);

/// Waits for the saga's failure on `error-cli-sub` and its compensation on
/// `compensated-sub`, and returns both.
async fn failed_and_compensated(stack: &TestStack, uuid: &str) -> (Value, Value) {
    let uuids = [uuid.to_owned()];
    let mut errors = stack.outcomes("error-cli-sub", &uuids, WAIT).await;
    let mut compensated = stack.outcomes("compensated-sub", &uuids, WAIT).await;
    let error = errors.remove(uuid).expect("the failure reaches error-cli-sub");
    let done = compensated.remove(uuid).expect("the compensation is published");
    assert_eq!(error.len(), 1, "the saga fails exactly once: {error:?}");
    assert_eq!(done.len(), 1, "the saga is compensated exactly once: {done:?}");
    (error[0].clone(), done[0].clone())
}

#[tokio::test]
async fn each_failure_of_the_original_readme_is_compensated_exactly() {
    // Flaws gone: the janitor's non-transactional read-add-write of stock, and its deleting
    // of records (they are tombstones now).
    let stack = TestStack::start_in(super::DELIVERY, "original failures").await;
    let wotsit = stack.stock("wotsit").await;
    let widget = stack.stock("widget").await;

    let payment = stack
        .place(&json!({"item":"wotsit","quantity":80,"user":"jill","payment-error":"null"}))
        .await;
    let inventory = stack
        .place(&json!({"item":"wotsit","quantity":500_000,"user":"jill"}))
        .await;
    let orders = stack
        .place(&json!({"item":"widget","quantity":25,"user":"jimbo"}))
        .await;

    for (uuid, step, reason, user, released, cancelled) in [
        (&payment, "payments", "payment_declined", "jill", 80, true),
        (&inventory, "inventory", "insufficient_stock", "jill", 0, true),
        (&orders, "orders", "unknown_user", "jimbo", 0, false),
    ] {
        let (error, done) = failed_and_compensated(&stack, uuid).await;
        assert_eq!(error["step"], step, "{error}");
        assert_eq!(error["reason"], reason, "{error}");
        assert_eq!(error["status_code"], "failed", "{error}");
        assert!(
            error["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("Order failed")),
            "{error}"
        );
        assert_eq!(done["status_code"], "compensated", "{done}");
        assert_eq!(done["reason"], reason, "{done}");
        assert!(
            stack.doc(&format!("payments/{uuid}")).await.is_none(),
            "no payment for {step}"
        );
        let order = stack.doc(&format!("users/{user}/orders/{uuid}")).await;
        if cancelled {
            assert_eq!(order.unwrap()["status"], "cancelled", "{step}: order cancelled");
        } else {
            assert!(order.is_none(), "{step}: no order was ever created");
        }
        let reservation = stack.doc(&format!("inventory/wotsit/orders/{uuid}")).await;
        if released > 0 {
            let reservation = reservation.unwrap();
            assert_eq!(reservation["status"], "released", "{step}: kept as a tombstone");
            assert_eq!(reservation["quantity"], released);
        }
        // The janitor marks its record after the publish the test has seen.
        let marked = eventually(WAIT, || async {
            let janitor = stack.step(uuid, Service::Janitor).await?;
            (janitor["published"] == true).then_some(())
        })
        .await;
        assert!(
            marked.is_some(),
            "{step}: the janitor's record is marked published"
        );
    }
    assert_eq!(
        stack.stock("wotsit").await,
        wotsit,
        "wotsit stock restored exactly"
    );
    assert_eq!(stack.stock("widget").await, widget, "widget stock untouched");
    // Steps after the failing one were tombstoned, so they can never run.
    assert_eq!(
        stack.step(&orders, Service::Inventory).await.unwrap()["state"],
        "tombstone"
    );
    assert_eq!(
        stack.step(&orders, Service::Payments).await.unwrap()["state"],
        "tombstone"
    );
    assert_eq!(
        stack.step(&inventory, Service::Payments).await.unwrap()["state"],
        "tombstone"
    );
    assert_eq!(
        stack.step(&payment, Service::Inventory).await.unwrap()["state"],
        "compensated"
    );
}

#[tokio::test]
async fn the_same_frontend_message_published_three_times_takes_stock_once() {
    // Flaw gone: a redelivered message is a duplicate, never a second decrement or payment.
    let stack = TestStack::start_in(super::DELIVERY, "duplicate frontend").await;
    let before = stack.stock("widget").await;
    let uuid = new_uuid();
    let message = saga_message(&uuid, "widget", 7, "jack").to_string();

    stack.publish(Topic::Frontend, message.as_bytes(), &[]).await;
    futures::future::join(
        stack.publish(Topic::Frontend, message.as_bytes(), &[]),
        stack.publish(Topic::Frontend, message.as_bytes(), &[]),
    )
    .await;

    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(paid[&uuid].len(), 1);
    let more = stack.pull("payment-created-sub", 10, QUIET).await;
    assert!(more.is_empty(), "a second payment-created: {more:?}");
    assert_eq!(stack.stock("widget").await, before - 7, "one decrement");
    assert_eq!(
        stack.doc(&format!("payments/{uuid}")).await.unwrap()["total_invoice"],
        70
    );
    assert!(
        stack
            .pull("error-cli-sub", 1, Duration::from_millis(500))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_late_order_created_after_compensation_changes_nothing() {
    // Flaw gone: the janitor deleted records, so a late message re-created them and took
    // stock again. Records are tombstones now, even for steps that had not run.
    let stack = TestStack::start_in(super::DELIVERY, "late order created").await;
    stack.tap(Topic::InventoryUpdated, "inventory-updated-tap").await;
    let before = stack.stock("wotsit").await;

    // A saga that reserved stock, then failed at payment and was compensated.
    let uuid = stack
        .place(&json!({"item":"wotsit","quantity":30,"user":"jill","payment-error":true}))
        .await;
    failed_and_compensated(&stack, &uuid).await;
    assert_eq!(stack.pull("inventory-updated-tap", 1, WAIT).await.len(), 1);

    // A saga compensated before inventory ever ran: orders refused its unknown user.
    let early = stack
        .place(&json!({"item":"wotsit","quantity":40,"user":"jimbo"}))
        .await;
    failed_and_compensated(&stack, &early).await;

    // Late order-created messages for both.
    let late = stack.step(&uuid, Service::Orders).await.unwrap()["outbox"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.publish(Topic::OrderCreated, late.as_bytes(), &[]).await;
    let early_late = saga_message(&early, "wotsit", 40, "jimbo").to_string();
    stack
        .publish(Topic::OrderCreated, early_late.as_bytes(), &[])
        .await;

    // The janitor closed the inventory step of the saga it never reached.
    let released = eventually(WAIT, || async {
        let record = stack.step(&early, Service::Inventory).await?;
        (record["state"] == "tombstone").then_some(record)
    })
    .await;
    assert!(released.is_some(), "the janitor tombstoned the inventory step");
    // The same late messages pushed to inventory directly, so that its answers show: each
    // is taken as settled, not as work to do.
    for (saga, data, answer) in [(&uuid, &late, "duplicate"), (&early, &early_late, "ignored")] {
        let answer_of = stack
            .push(Service::Inventory, Topic::OrderCreated, data.as_bytes())
            .await;
        assert_eq!(
            (
                answer_of.status,
                answer_of.outcome.as_deref(),
                answer_of.body.as_str()
            ),
            (204, Some(answer), ""),
            "saga {saga}: {answer_of:?}"
        );
    }
    assert!(
        stack.pull("inventory-updated-tap", 5, QUIET).await.is_empty(),
        "nothing re-reserved"
    );
    assert!(
        stack
            .pull("error-cli-sub", 5, Duration::from_millis(500))
            .await
            .is_empty(),
        "no new failure"
    );
    assert_eq!(stack.stock("wotsit").await, before, "no stock taken again");
    assert_eq!(
        stack
            .doc(&format!("inventory/wotsit/orders/{uuid}"))
            .await
            .unwrap()["status"],
        "released"
    );
    assert!(
        stack
            .doc(&format!("inventory/wotsit/orders/{early}"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_publish_that_fails_after_the_commit_is_finished_on_redelivery() {
    // Flaw gone: a crash between the write and the publish stalled the saga for ever,
    // because the redelivery saw the record and did nothing.
    let stack = TestStack::start_in(super::DELIVERY, "publish after commit").await;
    let before = stack.stock("widget").await;
    stack.faults(Service::Inventory).fail_publishes(1);

    let uuid = stack
        .place(&json!({"item":"widget","quantity":3,"user":"jack"}))
        .await;

    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(paid[&uuid].len(), 1);
    assert_eq!(
        stack.faults(Service::Inventory).publish_failures_left(),
        0,
        "the fault fired"
    );
    assert!(
        stack.pull("payment-created-sub", 5, QUIET).await.is_empty(),
        "no duplicate"
    );
    assert_eq!(stack.stock("widget").await, before - 3, "one decrement");
    let record = stack.step(&uuid, Service::Inventory).await.unwrap();
    assert_eq!(
        record["state"], "done",
        "stock was taken once, by the first delivery"
    );
    assert!(
        stack.step(&uuid, Service::Payments).await.is_some(),
        "its message arrived"
    );
}

#[tokio::test]
async fn a_janitor_message_delivered_twice_restores_stock_once() {
    // Flaw gone: a retried compensation could restore stock twice.
    let stack = TestStack::start_in(super::DELIVERY, "janitor twice").await;
    let before = stack.stock("wotsit").await;
    let janitor = stack.faults(Service::Janitor);
    janitor.fail_all_pushes(true);

    let uuid = stack
        .place(&json!({"item":"wotsit","quantity":12,"user":"jill","payment-error":1}))
        .await;
    let first = stack
        .outcomes("error-cli-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(first[&uuid].len(), 1, "payments published the failure");
    let error = stack.step(&uuid, Service::Payments).await.unwrap();
    assert_eq!(
        stack.stock("wotsit").await,
        before - 12,
        "held while the janitor is down"
    );

    // A second copy of the same failure, so that two deliveries are pending at once.
    let data = error["outbox"]["data"].as_str().unwrap().to_owned();
    stack.publish(Topic::Error, data.as_bytes(), &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    janitor.fail_all_pushes(false);

    let done = compensation(&stack, &uuid).await;
    assert_eq!(done["step"], "janitor");
    assert!(
        stack.pull("compensated-sub", 5, QUIET).await.is_empty(),
        "compensated once"
    );
    let failures = stack.pull("error-cli-sub", 5, QUIET).await;
    assert_eq!(
        failures.len(),
        1,
        "the copy of the failure; the original was read above; one compensation for both"
    );
    // Pub/Sub's back-off may hold the copy's retry past the quiet read above, so the stock
    // check below may come before it; one more copy is pushed directly, where the janitor's
    // answer shows that a copy after the compensation changes nothing.
    let answer = stack.push(Service::Janitor, Topic::Error, data.as_bytes()).await;
    assert_eq!(
        (answer.status, answer.outcome.as_deref(), answer.body.as_str()),
        (204, Some("duplicate"), ""),
        "{answer:?}"
    );
    assert_eq!(stack.stock("wotsit").await, before, "restored exactly once");
}

#[tokio::test]
async fn poison_pushes_are_acked_dead_lettered_and_the_saga_keeps_working() {
    // Flaw gone: a missing field or a string quantity crashed a worker and was retried for ever.
    let stack = TestStack::start_in(super::DELIVERY, "poison").await;

    // Pub/Sub always base64-encodes, so broken envelopes can only come as a direct push.
    let push = "/push/frontend";
    let (status, answer) = stack
        .post(
            Service::Orders,
            push,
            "application/json",
            b"not an envelope".to_vec(),
        )
        .await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("dead_lettered")),
        "{answer}"
    );
    let bad_base64 = br#"{"message":{"data":"%%%","messageId":"x1"},"subscription":"projects/p/subscriptions/frontend-sub"}"#;
    let (status, answer) = stack
        .post(Service::Orders, push, "application/json", bad_base64.to_vec())
        .await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("bad_base64")),
        "{answer}"
    );

    // The rest travel through Pub/Sub like any other producer's messages.
    stack.publish(Topic::Frontend, b"this is not json", &[]).await;
    stack
        .publish(
            Topic::Frontend,
            br#"{"item":"widget","quantity":1,"user":"jack"}"#,
            &[("origin", "test")],
        )
        .await;
    let ten = json!({"item":"widget","quantity":"ten","user":"jack","uuid": new_uuid()});
    stack
        .publish(Topic::Frontend, ten.to_string().as_bytes(), &[])
        .await;

    let letters = stack.dead_letters(5, WAIT, QUIET).await;
    assert_eq!(letters.len(), 5, "one letter per poison message: {letters:?}");
    let reasons: HashMap<String, &devstack::pubsub::Received> = letters
        .iter()
        .map(|m| (m.attributes["saga_dead_letter_reason"].clone(), m))
        .collect();
    for reason in [
        "bad_envelope",
        "bad_base64",
        "malformed_json",
        "missing_field",
        "wrong_type",
    ] {
        let letter = reasons
            .get(reason)
            .unwrap_or_else(|| panic!("no {reason} in {letters:?}"));
        assert_eq!(letter.attributes["saga_dead_letter_service"], "orders");
        assert!(!letter.attributes["saga_dead_letter_detail"].is_empty());
    }
    assert_eq!(
        reasons["missing_field"].attributes["origin"], "test",
        "attributes are kept"
    );
    assert!(reasons["missing_field"].attributes["saga_dead_letter_detail"].contains("uuid"));
    assert!(reasons["wrong_type"].attributes["saga_dead_letter_detail"].contains("quantity"));
    assert_eq!(
        reasons["malformed_json"].data, b"this is not json",
        "the payload is kept"
    );

    let uuid = stack
        .place(&json!({"item":"widget","quantity":1,"user":"jack"}))
        .await;
    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(paid[&uuid].len(), 1, "a valid order still completes");
}

#[tokio::test]
async fn a_step_that_keeps_failing_is_dead_lettered_and_its_saga_compensated() {
    // Flaw gone: no retry policy and no dead-letter topic, so a failing message was retried
    // for ever and its saga never ended.
    let stack = TestStack::start_in(super::DELIVERY, "dead letter").await;
    let before = stack.stock("widget").await;
    stack.faults(Service::Inventory).fail_all_pushes(true);

    let uuid = stack
        .place(&json!({"item":"widget","quantity":4,"user":"jack"}))
        .await;

    let errors = stack
        .outcomes(
            "error-cli-sub",
            std::slice::from_ref(&uuid),
            Duration::from_secs(90),
        )
        .await;
    let error = &errors[&uuid][0];
    assert_eq!(error["reason"], "retries_exhausted", "{error}");
    assert_eq!(error["step"], "inventory", "{error}");
    let done = compensation(&stack, &uuid).await;
    assert_eq!(done["status_code"], "compensated");

    let letters = stack.pull("dead-letter-sub", 1, WAIT).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].attributes["CloudPubSubDeadLetterSourceSubscription"],
        "order-created-sub"
    );
    assert_eq!(letters[0].json()["uuid"], uuid.as_str());

    assert_eq!(stack.stock("widget").await, before, "no stock taken");
    assert_eq!(
        stack.doc(&format!("users/jack/orders/{uuid}")).await.unwrap()["status"],
        "cancelled"
    );
    assert!(stack.doc(&format!("payments/{uuid}")).await.is_none());
    assert_eq!(
        stack.step(&uuid, Service::Inventory).await.unwrap()["state"],
        "failed"
    );
}

#[tokio::test]
async fn a_step_whose_message_never_got_out_after_its_commit_is_finished_by_the_janitor() {
    // Flaw gone: a step that committed but could not publish on any delivery was
    // dead-lettered, and nothing could send its stored message: the saga stalled for ever
    // with its stock reserved.
    let stack = TestStack::start_in(super::DELIVERY, "publish never succeeds").await;
    let before = stack.stock("widget").await;
    stack.faults(Service::Inventory).fail_publishes(u32::MAX);

    let uuid = stack
        .place(&json!({"item":"widget","quantity":3,"user":"jack"}))
        .await;

    let paid = stack
        .outcomes(
            "payment-created-sub",
            std::slice::from_ref(&uuid),
            Duration::from_mins(2),
        )
        .await;
    assert_eq!(paid[&uuid].len(), 1, "{paid:?}");
    let failed_publishes = u32::MAX - stack.faults(Service::Inventory).publish_failures_left();
    // GCP-like delivery may deliver the message once more than Pub/Sub counts attempts.
    if super::DELIVERY == e2e::Delivery::Emulator {
        assert_eq!(
            failed_publishes, PUSH_POLICY.max_delivery_attempts,
            "each delivery to inventory tried to publish, and failed"
        );
    } else {
        assert!(
            failed_publishes >= PUSH_POLICY.max_delivery_attempts,
            "each delivery to inventory tried to publish, and failed: {failed_publishes}"
        );
    }
    let letters = stack.pull("dead-letter-sub", 1, WAIT).await;
    assert_eq!(letters.len(), 1, "Pub/Sub gave up on inventory");
    assert_eq!(
        letters[0].attributes["CloudPubSubDeadLetterSourceSubscription"],
        "order-created-sub"
    );
    assert_eq!(stack.stock("widget").await, before - 3, "one decrement");
    assert_eq!(
        stack.step(&uuid, Service::Inventory).await.unwrap()["state"],
        "done",
        "the step's own decision stands"
    );
    assert!(
        stack
            .outcomes("error-cli-sub", std::slice::from_ref(&uuid), QUIET)
            .await
            .is_empty(),
        "the saga did not fail"
    );
    assert!(
        stack.pull("payment-created-sub", 5, QUIET).await.is_empty(),
        "no duplicate"
    );
}

/// The one compensation of `uuid`.
async fn compensation(stack: &TestStack, uuid: &str) -> Value {
    let mut compensated = stack.outcomes("compensated-sub", &[uuid.to_owned()], WAIT).await;
    let done = compensated.remove(uuid).expect("the compensation is published");
    assert_eq!(done.len(), 1, "compensated exactly once: {done:?}");
    done[0].clone()
}

#[tokio::test]
async fn two_hundred_orders_for_a_hundred_units_never_oversell_and_each_ends_once() {
    // Flaw gone: stock was read, checked and written in separate calls, so concurrent
    // orders oversold.
    let stack = TestStack::start_in(super::DELIVERY, "mixed load").await;
    stack.set_stock("widget", 100, 10).await;

    let orders: Vec<(u32, bool)> = (0..200u32).map(|i| (1 + i % 3, i % 4 == 0)).collect();
    let placed = futures::future::join_all(orders.iter().enumerate().map(|(i, (quantity, declined))| {
        let mut body =
            json!({"item":"widget","quantity":quantity,"user": if i % 2 == 0 { "jack" } else { "jill" }});
        if *declined {
            body["payment-error"] = json!("null");
        }
        let stack = &stack;
        async move { stack.place(&body).await }
    }))
    .await;
    let by_uuid: HashMap<&String, (u32, bool)> = placed.iter().zip(orders.iter().copied()).collect();

    let mut ends: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(3);
    while ends.len() < placed.len() && tokio::time::Instant::now() < deadline {
        for sub in ["payment-created-sub", "error-cli-sub"] {
            for m in stack.pull(sub, 1000, Duration::from_millis(300)).await {
                let json = m.json();
                ends.entry(json["uuid"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(json);
            }
        }
    }
    assert_eq!(ends.len(), placed.len(), "every order ended");
    assert!(ends.values().all(|e| e.len() == 1), "each exactly once");

    let mut sold = 0;
    let mut failed = std::collections::BTreeSet::new();
    for (uuid, end) in &ends {
        let (quantity, declined) = by_uuid[uuid];
        let end = &end[0];
        match end["status_code"].as_str() {
            Some("completed") => {
                assert!(!declined, "a payment-error order was paid: {end}");
                sold += i64::from(quantity);
            }
            Some("failed") => {
                let reason = end["reason"].as_str().unwrap();
                assert!(
                    reason == "insufficient_stock" || (declined && reason == "payment_declined"),
                    "{end}"
                );
                failed.insert(uuid.clone());
            }
            other => panic!("unexpected end {other:?}: {end}"),
        }
    }
    // Every failure is compensated before the stock is final, once, and nothing else is.
    let mut compensated: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    let mut wait = Duration::from_millis(500);
    loop {
        let all = failed.iter().all(|u| compensated.contains_key(u));
        if all {
            // Whatever comes now is a second compensation.
            wait = QUIET;
        }
        for m in stack.pull("compensated-sub", 1000, wait).await {
            let uuid = m.json()["uuid"].as_str().unwrap_or_default().to_owned();
            *compensated.entry(uuid).or_default() += 1;
        }
        if all || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    assert_eq!(
        compensated.keys().collect::<std::collections::BTreeSet<_>>(),
        failed.iter().collect(),
        "every failure compensated, and nothing else"
    );
    assert!(
        compensated.values().all(|&n| n == 1),
        "each failure compensated once: {compensated:?}"
    );
    let failures = failed.len();
    let left = stack.stock("widget").await;
    assert!(left >= 0, "oversold: {left}");
    assert_eq!(
        left,
        100 - sold,
        "final stock = initial - sum of successful quantities"
    );
    assert!(sold > 0 && failures > 0, "the run exercised both outcomes");
}

#[tokio::test]
async fn a_late_duplicate_of_a_finished_saga_publishes_nothing_again() {
    // The record of the step that consumes a message proves it was delivered, so a step
    // that sees its own message again after the saga moved on neither works nor publishes.
    let stack = TestStack::start_in(super::DELIVERY, "late duplicate").await;
    let uuid = new_uuid();
    let message = saga_message(&uuid, "widget", 2, "jack").to_string();
    stack.publish(Topic::Frontend, message.as_bytes(), &[]).await;
    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(paid[&uuid].len(), 1);
    let before = stack.stock("widget").await;

    stack.tap(Topic::OrderCreated, "order-created-tap").await;
    stack.tap(Topic::InventoryUpdated, "inventory-updated-tap").await;
    stack.publish(Topic::Frontend, message.as_bytes(), &[]).await;
    let order_created = stack.step(&uuid, Service::Orders).await.unwrap()["outbox"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    stack
        .publish(Topic::OrderCreated, order_created.as_bytes(), &[])
        .await;

    assert_eq!(
        stack.pull("order-created-tap", 5, QUIET).await.len(),
        1,
        "only the test's own copy: orders did not publish again"
    );
    assert!(
        stack.pull("inventory-updated-tap", 5, QUIET).await.is_empty(),
        "inventory did not publish again"
    );
    assert!(stack.pull("payment-created-sub", 5, QUIET).await.is_empty());
    assert_eq!(stack.stock("widget").await, before, "no second decrement");
}
