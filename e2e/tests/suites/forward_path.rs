//! The forward path on the real emulators: orders travel frontend → orders → inventory →
//! payments over real push delivery, and the frontend refuses bad input without a trace.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{Refused, TestStack, eventually, refused};
use saga::contract::{Service, Topic};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn an_order_travels_the_whole_saga_and_is_paid_exactly() {
    let stack = TestStack::start_in(super::DELIVERY, "happy path").await;
    let before = stack.stock("widget").await;

    let uuid = stack
        .place(&json!({"item": "widget", "quantity": 50, "user": "jack", "gift-wrap": {"colour": "red"}}))
        .await;

    let outcomes = stack
        .outcomes("payment-created-sub", std::slice::from_ref(&uuid), WAIT)
        .await;
    let paid = &outcomes[&uuid];
    assert_eq!(paid.len(), 1, "exactly one payment-created: {paid:?}");
    let paid = &paid[0];
    assert_eq!(paid["item"], "widget");
    assert_eq!(paid["quantity"], 50);
    assert_eq!(paid["user"], "jack");
    assert_eq!(paid["price_per_unit"], 10);
    assert_eq!(paid["total_invoice"], 500);
    assert_eq!(paid["status_code"], "completed");
    assert_eq!(paid["step"], "payments");
    assert_eq!(
        paid["gift-wrap"],
        json!({"colour": "red"}),
        "extra fields pass through"
    );
    assert!(paid["status"].as_str().is_some_and(|s| !s.is_empty()));

    assert_eq!(
        stack.stock("widget").await,
        before - 50,
        "stock lowered exactly once"
    );
    let payment = stack
        .doc(&format!("payments/{uuid}"))
        .await
        .expect("payment written");
    assert_eq!(
        (payment["total_invoice"].as_i64(), payment["status"].as_str()),
        (Some(500), Some("paid"))
    );
    let order = stack
        .doc(&format!("users/jack/orders/{uuid}"))
        .await
        .expect("order written");
    assert_eq!(
        (order["status"].as_str(), order["quantity"].as_i64()),
        (Some("created"), Some(50))
    );
    let reservation = stack
        .doc(&format!("inventory/widget/orders/{uuid}"))
        .await
        .expect("reservation written");
    assert_eq!(reservation["status"], "reserved");
    assert_eq!(reservation["price_per_unit"], 10);
    assert_eq!(reservation["user"], "jack");

    for step in [Service::Orders, Service::Inventory, Service::Payments] {
        // Only the last step's message has no later step whose record proves it went out,
        // so only its record is marked; the mark is written after the publish the test has
        // seen, hence the wait.
        let marked = step == Service::Payments;
        let record = eventually(WAIT, || async {
            let record = stack.step(&uuid, step).await?;
            (!marked || record["published"] == true).then_some(record)
        })
        .await
        .expect("each step keeps a record, the last one marked published");
        assert_eq!(record["state"], "done", "{step}");
        assert_eq!(record["published"], marked, "{step}");
        assert!(
            record["outbox"]["data"]
                .as_str()
                .is_some_and(|d| d.contains(&uuid)),
            "{step}"
        );
    }
    assert!(
        stack
            .pull("error-cli-sub", 1, Duration::from_secs(2))
            .await
            .is_empty(),
        "no error"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_orders_never_oversell() {
    let stack = TestStack::start_in(super::DELIVERY, "concurrent orders").await;
    stack.set_stock("widget", 500, 10).await;

    let orders = (0..100).map(|i| {
        let user = if i % 2 == 0 { "jack" } else { "jill" };
        let body = json!({"item": "widget", "quantity": 10, "user": user});
        let stack = &stack;
        async move { stack.place(&body).await }
    });
    let uuids: Vec<String> = futures::future::join_all(orders).await;

    let mut paid = std::collections::HashMap::new();
    let mut failed = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
    while paid.len() + failed.len() < uuids.len() && tokio::time::Instant::now() < deadline {
        for m in stack
            .pull("payment-created-sub", 1000, Duration::from_millis(500))
            .await
        {
            *paid
                .entry(m.json()["uuid"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
        for m in stack
            .pull("error-cli-sub", 1000, Duration::from_millis(500))
            .await
        {
            let json = m.json();
            assert_eq!(json["reason"], "insufficient_stock", "{json}");
            *failed
                .entry(json["uuid"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(paid.len(), 50, "exactly 50 succeed");
    assert_eq!(failed.len(), 50, "exactly 50 fail");
    assert!(
        paid.values().chain(failed.values()).all(|n| *n == 1),
        "each ends once"
    );
    assert!(
        uuids
            .iter()
            .all(|u| paid.contains_key(u) ^ failed.contains_key(u))
    );
    assert_eq!(stack.stock("widget").await, 0, "final stock 0, never negative");
}

#[allow(
    clippy::too_many_lines,
    reason = "a table of cases, one per line before rustfmt"
)]
fn bad_orders() -> Vec<Refused> {
    let order = |field: &str, value: &str| -> Vec<u8> {
        let mut obj = json!({"item": "widget", "quantity": 1, "user": "jack"});
        obj[field] = serde_json::from_str(value).unwrap();
        obj.to_string().into_bytes()
    };
    let without = |field: &str| -> Vec<u8> {
        let mut obj = json!({"item": "widget", "quantity": 1, "user": "jack"});
        obj.as_object_mut().unwrap().remove(field);
        obj.to_string().into_bytes()
    };
    let long = format!("\"{}\"", "w".repeat(129));
    let huge = format!(
        r#"{{"item":"widget","quantity":1,"user":"jack","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    vec![
        refused("malformed JSON", "{\"item\":", 400, "malformed_json", None),
        refused("not an object", "[1,2,3]", 400, "malformed_json", None),
        Refused {
            content_type: "text/plain",
            ..refused(
                "wrong content type",
                order("item", "\"widget\""),
                415,
                "unsupported_media_type",
                None,
            )
        },
        refused(
            "missing item",
            without("item"),
            422,
            "missing_field",
            Some("item"),
        ),
        refused(
            "missing quantity",
            without("quantity"),
            422,
            "missing_field",
            Some("quantity"),
        ),
        refused(
            "missing user",
            without("user"),
            422,
            "missing_field",
            Some("user"),
        ),
        refused(
            "quantity as a string",
            order("quantity", "\"ten\""),
            422,
            "wrong_type",
            Some("quantity"),
        ),
        refused(
            "user as a number",
            order("user", "7"),
            422,
            "wrong_type",
            Some("user"),
        ),
        refused(
            "quantity zero",
            order("quantity", "0"),
            422,
            "invalid_value",
            Some("quantity"),
        ),
        refused(
            "quantity too large",
            order("quantity", "1000001"),
            422,
            "invalid_value",
            Some("quantity"),
        ),
        refused(
            "quantity negative",
            order("quantity", "-1"),
            422,
            "invalid_value",
            Some("quantity"),
        ),
        refused(
            "quantity fractional",
            order("quantity", "1.5"),
            422,
            "wrong_type",
            Some("quantity"),
        ),
        refused(
            "empty item",
            order("item", "\"\""),
            422,
            "invalid_value",
            Some("item"),
        ),
        refused(
            "item too long",
            order("item", &long),
            422,
            "invalid_value",
            Some("item"),
        ),
        refused("body over 64 KiB", huge, 413, "payload_too_large", None),
    ]
}

#[tokio::test]
async fn each_bad_order_gets_a_clear_error_and_publishes_nothing() {
    let stack = TestStack::start_in(super::DELIVERY, "frontend validation").await;
    stack.tap(Topic::Frontend, "frontend-tap").await;

    for case in bad_orders() {
        case.assert_refused_by(&stack).await;
    }
    assert!(
        stack
            .pull("frontend-tap", 10, Duration::from_secs(3))
            .await
            .is_empty(),
        "no bad order reached the frontend topic"
    );

    // The tap does see a good one, so the emptiness above means something.
    stack
        .place(&json!({"item": "widget", "quantity": 1, "user": "jack"}))
        .await;
    assert_eq!(
        stack.pull("frontend-tap", 1, Duration::from_secs(10)).await.len(),
        1
    );
}

#[tokio::test]
async fn the_frontend_answers_503_with_json_when_pubsub_fails() {
    let stack = TestStack::start_in(super::DELIVERY, "frontend publish failure").await;
    stack.faults(Service::Frontend).fail_publishes(1);
    let (status, answer) = stack
        .order(&json!({"item": "widget", "quantity": 1, "user": "jack"}))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "unavailable");
    // The client's retry works.
    stack
        .place(&json!({"item": "widget", "quantity": 1, "user": "jack"}))
        .await;
}
