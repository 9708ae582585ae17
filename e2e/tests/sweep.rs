//! The sweep, on the emulators: sagas that stopped where no retry reaches (their messages
//! lost with their subscriptions) are ended past their deadline, each the safe way, exactly
//! once however many sweeps race; a dry run changes nothing; and behind Cloud Run only the
//! scheduler's account may call it.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{Delivery, TestStack, eventually};
use janitor::sweep::{self, Options, Report};
use saga::contract::{PUSH_POLICY, Service, sweep::PATH};
use saga::engine::Deadline;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// The saga deadline of these tests: short, so that sagas are past it at once.
const DEADLINE: Duration = Duration::from_secs(2);

async fn start(name: &str) -> TestStack {
    TestStack::start_configured(Delivery::Emulator, name, &PUSH_POLICY, |c| {
        c.saga_deadline = DEADLINE;
    })
    .await
}

/// Sweeps in-process, as `sagactl sweep` does, with the given saga deadline.
async fn sweep_with(stack: &TestStack, deadline: Duration, dry_run: bool) -> Report {
    let options = Options {
        deadline,
        dry_run,
        ..Options::new(deadline)
    };
    let janitor = &stack.services[&Service::Janitor].clients;
    sweep::sweep(janitor, &options, Deadline::arrived_at(Instant::now()))
        .await
        .unwrap()
}

/// The sweep's entry for `uuid`.
fn entry(report: &Value, uuid: &str) -> Value {
    report["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uuid"] == uuid)
        .cloned()
        .unwrap_or_else(|| panic!("{uuid} is not in the report: {report}"))
}

/// Waits until the saga's view says `stage` (at most [`WAIT`]).
async fn reaches(stack: &TestStack, uuid: &str, stage: &str) -> Value {
    eventually(WAIT, || async {
        let (_, view) = stack.get(&format!("/orders/{uuid}")).await;
        (view["status"] == stage).then_some(view)
    })
    .await
    .unwrap_or_else(|| panic!("{uuid} never reached {stage}"))
}

/// A saga of 4 widgets whose reservation's message is lost with its subscription, so that it
/// waits after inventory for ever: the stock before it, and its uuid.
async fn stranded_after_reservation(stack: &TestStack) -> (i64, String) {
    let before = stack.stock("widget").await;
    stack.drop_subscription("inventory-updated-sub").await;
    let uuid = stack
        .place(&json!({"item":"widget","quantity":4,"user":"jack"}))
        .await;
    reaches(stack, &uuid, "stock_reserved").await;
    assert_eq!(stack.stock("widget").await, before - 4);
    (before, uuid)
}

#[tokio::test]
async fn a_forward_message_lost_after_its_commit_is_relayed_by_the_sweep_and_the_saga_is_paid() {
    let stack = start("sweep relays").await;
    let before = stack.stock("widget").await;
    // Inventory commits, but its message never gets out, and then the message it read is
    // lost with its subscription: nothing but the sweep can move this saga now.
    stack.faults(Service::Inventory).fail_publishes(u32::MAX);
    let uuid = stack
        .place(&json!({"item":"widget","quantity":3,"user":"jack"}))
        .await;
    eventually(WAIT, || async { stack.step(&uuid, Service::Inventory).await })
        .await
        .unwrap();
    stack.drop_subscription("order-created-sub").await;
    stack.faults(Service::Inventory).fail_publishes(0);
    tokio::time::sleep(DEADLINE).await;
    assert_eq!(reaches(&stack, &uuid, "stock_reserved").await["finished"], false);

    let (status, report) = stack.post_json(Service::Janitor, PATH, &json!({})).await;
    assert_eq!(status, 200, "{report}");
    let swept = entry(&report, &uuid);
    assert_eq!(
        (&swept["action"], &swept["step"]),
        (&json!("relay"), &json!("inventory")),
        "{report}"
    );
    assert_eq!(swept["outcome"], "done", "{report}");

    let paid = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(paid[&uuid].len(), 1, "paid once: {paid:?}");
    let view = reaches(&stack, &uuid, "completed").await;
    assert_eq!(view["reason"], Value::Null, "paid, not compensated: {view}");
    assert!(
        stack.step(&uuid, Service::Janitor).await.is_none(),
        "never compensated"
    );
    assert_eq!(stack.stock("widget").await, before - 3);

    // Ended: the next sweep does not look at it.
    let again = sweep_with(&stack, DEADLINE, false).await;
    assert!(again.sagas.iter().all(|s| s.uuid != uuid), "{again}");
}

#[tokio::test]
async fn a_saga_stranded_before_its_first_step_is_compensated_as_timed_out_with_stock_untouched() {
    let stack = start("sweep stranded before orders").await;
    let before = stack.stock("widget").await;
    stack.drop_subscription("frontend-sub").await;
    let uuid = stack
        .place(&json!({"item":"widget","quantity":2,"user":"jack"}))
        .await;
    let (status, view) = stack.get(&format!("/orders/{uuid}")).await;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("received")),
        "in the view before any step: {view}"
    );
    tokio::time::sleep(DEADLINE).await;

    let (status, report) = stack.post_json(Service::Janitor, PATH, &json!({})).await;
    assert_eq!(status, 200, "{report}");
    let swept = entry(&report, &uuid);
    assert_eq!(
        (
            &swept["action"],
            &swept["step"],
            &swept["reason"],
            &swept["outcome"]
        ),
        (
            &json!("compensate"),
            &json!("orders"),
            &json!("timed_out"),
            &json!("done")
        ),
        "{report}"
    );
    let view = reaches(&stack, &uuid, "compensated").await;
    assert_eq!(
        (&view["reason"], &view["failed_step"]),
        (&json!("timed_out"), &json!("orders")),
        "{view}"
    );
    assert_eq!(
        stack.step(&uuid, Service::Orders).await.unwrap()["state"],
        "failed",
        "the step that timed out failed on its record, and can never run now"
    );
    for step in [Service::Inventory, Service::Payments] {
        assert_eq!(
            stack.step(&uuid, step).await.unwrap()["state"],
            "tombstone",
            "{step} can never run now"
        );
    }
    let compensated = stack
        .outcomes("compensated-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(compensated[&uuid].len(), 1);
    assert_eq!(stack.stock("widget").await, before, "stock untouched");
    assert!(stack.doc(&format!("users/jack/orders/{uuid}")).await.is_none());
}

#[tokio::test]
async fn a_sweep_reads_page_after_page_and_ends_every_saga_past_its_deadline() {
    let stack = start("sweep pages").await;
    stack.drop_subscription("frontend-sub").await;
    let mut uuids = Vec::new();
    for quantity in 1..=5 {
        uuids.push(
            stack
                .place(&json!({"item":"widget","quantity":quantity,"user":"jack"}))
                .await,
        );
    }
    tokio::time::sleep(DEADLINE).await;

    let options = Options {
        page: 2,
        ..Options::new(DEADLINE)
    };
    let janitor = &stack.services[&Service::Janitor].clients;
    let report = sweep::sweep(janitor, &options, Deadline::arrived_at(Instant::now()))
        .await
        .unwrap();
    let report = serde_json::to_value(&report).unwrap();
    assert_eq!(report["examined"], 5, "three pages of at most 2: {report}");
    for uuid in &uuids {
        assert_eq!(entry(&report, uuid)["outcome"], "done", "{report}");
    }
    let compensated = stack.outcomes("compensated-sub", &uuids, WAIT).await;
    assert!(uuids.iter().all(|u| compensated[u].len() == 1), "{compensated:?}");

    let again = sweep::sweep(janitor, &options, Deadline::arrived_at(Instant::now()))
        .await
        .unwrap();
    assert_eq!(again.examined, 0, "every saga ended: {again}");
}

#[tokio::test]
async fn a_saga_stranded_after_its_reservation_gets_its_stock_back_once_though_two_sweeps_race() {
    let stack = start("sweep stranded after inventory").await;
    let (before, uuid) = stranded_after_reservation(&stack).await;

    // Within twice the deadline the sweep relays inventory's message (which goes nowhere);
    // past it, it compensates. Two sweeps at once: the stock comes back once.
    tokio::time::sleep(DEADLINE * 2).await;
    let dry = sweep_with(&stack, DEADLINE, true).await;
    let planned = dry.sagas.iter().find(|s| s.uuid == uuid).unwrap();
    assert_eq!(
        serde_json::to_value(planned).unwrap()["action"],
        "compensate",
        "{dry}"
    );
    assert_eq!(planned.outcome, "dry_run");
    assert_eq!(
        stack.stock("widget").await,
        before - 4,
        "a dry run changes nothing"
    );
    assert!(
        stack.step(&uuid, Service::Janitor).await.is_none(),
        "a dry run changes nothing"
    );
    assert_eq!(reaches(&stack, &uuid, "stock_reserved").await["finished"], false);

    let (one, two) = tokio::join!(
        sweep_with(&stack, DEADLINE, false),
        sweep_with(&stack, DEADLINE, false)
    );
    for report in [&one, &two] {
        let swept = report.sagas.iter().find(|s| s.uuid == uuid).unwrap();
        assert_eq!(swept.outcome, "done", "{report}");
    }
    let view = reaches(&stack, &uuid, "compensated").await;
    assert_eq!(
        (&view["reason"], &view["failed_step"]),
        (&json!("timed_out"), &json!("payments")),
        "{view}"
    );
    assert_eq!(
        stack.stock("widget").await,
        before,
        "the stock came back exactly once"
    );
    assert_eq!(
        stack
            .doc(&format!("inventory/widget/orders/{uuid}"))
            .await
            .unwrap()["status"],
        "released"
    );
    assert_eq!(
        stack.doc(&format!("users/jack/orders/{uuid}")).await.unwrap()["status"],
        "cancelled"
    );
    assert_eq!(
        stack.step(&uuid, Service::Payments).await.unwrap()["state"],
        "failed",
        "the step that timed out failed on its record, and can never run now"
    );
    let compensated = stack
        .outcomes("compensated-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    assert_eq!(compensated[&uuid].len(), 1, "{compensated:?}");
}

/// Makes the saga `uuid` one the sweep cannot end: inventory's record no longer says how
/// many units it took, and nobody may guess.
async fn break_reservation_record(stack: &TestStack, uuid: &str) {
    let mut broken = saga::gcp::store::WriteSet::new();
    broken.update(
        saga::gcp::store::DocPath::new(["sagas", uuid, "steps", "inventory"]),
        &json!({"quantity": 0}),
        Some(&["quantity"]),
        None,
    );
    stack.store.commit(broken).await.unwrap();
}

#[tokio::test]
async fn a_saga_the_sweep_cannot_end_is_reported_as_not_ended_and_keeps_its_stock() {
    let stack = start("sweep cannot end").await;
    let (before, uuid) = stranded_after_reservation(&stack).await;
    break_reservation_record(&stack, &uuid).await;

    tokio::time::sleep(DEADLINE * 2).await;
    let report = sweep_with(&stack, DEADLINE, false).await;
    let swept = report.sagas.iter().find(|s| s.uuid == uuid).unwrap();
    assert!(!swept.ended(), "{report}");
    assert!(swept.outcome.contains("unreadable"), "{report}");
    assert!(
        stack.step(&uuid, Service::Janitor).await.is_none(),
        "not compensated"
    );
    assert_eq!(
        stack.stock("widget").await,
        before - 4,
        "held for a person to decide"
    );
}

#[tokio::test]
async fn sagas_a_sweep_cannot_end_do_not_hold_back_the_ones_behind_them_once_its_limit_is_spent_on_them() {
    let stack = start("sweep goes on where it stopped").await;
    let (before, first) = stranded_after_reservation(&stack).await;
    // Three stranded sagas the sweep cannot end, the oldest, then one it can.
    let mut broken = vec![first];
    for _ in 0..2 {
        let uuid = stack
            .place(&json!({"item":"widget","quantity":4,"user":"jack"}))
            .await;
        reaches(&stack, &uuid, "stock_reserved").await;
        broken.push(uuid);
    }
    for uuid in &broken {
        break_reservation_record(&stack, uuid).await;
    }
    let endable = stack
        .place(&json!({"item":"widget","quantity":1,"user":"jack"}))
        .await;
    reaches(&stack, &endable, "stock_reserved").await;
    tokio::time::sleep(DEADLINE * 2).await;

    // Each sweep may look at three: the first spends them all on the sagas it cannot end.
    let options = Options {
        limit: 3,
        ..Options::new(DEADLINE)
    };
    let janitor = &stack.services[&Service::Janitor].clients;
    let sweep_once = || async {
        sweep::sweep(janitor, &options, Deadline::arrived_at(Instant::now()))
            .await
            .unwrap()
    };
    let one = sweep_once().await;
    let looked_at: Vec<&str> = one.sagas.iter().map(|s| s.uuid.as_str()).collect();
    assert_eq!(looked_at.len(), 3, "{one}");
    assert!(
        broken.iter().all(|u| looked_at.contains(&u.as_str())),
        "the oldest first: {one}"
    );
    assert!(one.sagas.iter().all(|s| !s.ended()), "{one}");

    // The next goes on from where the first stopped, and only then back to the oldest; a
    // dry run starts there too, and moves nothing.
    let dry = sweep::sweep(
        janitor,
        &Options {
            dry_run: true,
            ..options.clone()
        },
        Deadline::arrived_at(Instant::now()),
    )
    .await
    .unwrap();
    assert_eq!(
        dry.sagas.first().map(|s| s.uuid.as_str()),
        Some(endable.as_str()),
        "{dry}"
    );
    let two = sweep_once().await;
    let swept = two.sagas.iter().find(|s| s.uuid == endable);
    assert_eq!(swept.map(|s| s.outcome.as_str()), Some("done"), "{two}");
    assert_eq!(two.examined, 3, "the one behind, then two from the oldest: {two}");
    assert_eq!(
        reaches(&stack, &endable, "compensated").await["reason"],
        "timed_out"
    );
    assert_eq!(
        stack.stock("widget").await,
        before - 12,
        "its unit came back; the others hold theirs for a person to decide"
    );

    // Round and round: the next sweeps keep looking at every saga still open.
    let three = sweep_once().await;
    assert_eq!(three.examined, 3, "{three}");
    assert!(
        broken.iter().all(|u| three.sagas.iter().any(|s| &s.uuid == u)),
        "{three}"
    );
}

#[tokio::test]
async fn behind_cloud_run_only_the_schedulers_account_may_sweep() {
    let stack = TestStack::start_configured(
        Delivery::GCP_WITH_DUPLICATES,
        "sweep behind cloud run",
        &PUSH_POLICY,
        |c| c.saga_deadline = DEADLINE,
    )
    .await;
    let gcp = stack.gcp.as_ref().unwrap();
    let front_end = gcp.front_end(Service::Janitor).unwrap().url();
    let call = |authorization: Option<String>| {
        let mut request = stack.http.post(format!("{front_end}{PATH}"));
        if let Some(header) = authorization {
            request = request.header("authorization", header);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, body) = call(None).await;
    assert_eq!(status, 403, "Cloud Run refuses a call without a token: {body}");
    let (status, body) = call(Some(gcp.authorization(Service::Janitor))).await;
    assert_eq!(
        status, 403,
        "the push account may invoke the janitor, but not sweep: {body}"
    );
    assert!(body.contains("sweep's service account"), "{body}");
    let (status, body) = call(Some(gcp.sweep_authorization())).await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["dry_run"], false, "{report}");

    // And the scheduler's token drives nothing else of the janitor.
    let push = stack
        .http
        .post(format!(
            "{front_end}{}",
            saga::contract::push_path(saga::contract::Topic::Error)
        ))
        .header("authorization", gcp.sweep_authorization())
        .header("content-type", "application/json")
        .body(r#"{"message":{"data":"e30=","messageId":"1"},"subscription":"s"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(push.status().as_u16(), 403, "a sweep token is not a push token");
}
