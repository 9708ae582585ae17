//! Idempotent `POST /order` on the real emulators: retries with one `Idempotency-Key` start
//! exactly one saga, whether they come one after the other or all at once.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::TestStack;
use saga::contract::Service;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn order_with_key(stack: &TestStack, key: &str, body: &Value) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{}/order", stack.url(Service::Frontend)))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Counts `payment-created` messages per uuid until `quiet` passes with none.
async fn payments(stack: &TestStack, quiet: Duration) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = stack.pull("payment-created-sub", 100, quiet).await;
        if got.is_empty() || tokio::time::Instant::now() > deadline {
            return counts;
        }
        for m in got {
            *counts
                .entry(m.json()["uuid"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_returns_the_same_saga_and_starts_nothing() {
    let stack = TestStack::start("idempotent retry").await;
    let before = stack.stock("widget").await;
    let body = json!({"item":"widget","quantity":4,"user":"jack"});
    let (first, a) = order_with_key(&stack, "order-7f3a", &body).await;
    // The same request, spelled differently: key order and whitespace do not matter.
    let respelled = json!({"user":"jack","quantity":4,"item":"widget"});
    let (second, b) = order_with_key(&stack, "order-7f3a", &respelled).await;
    assert_eq!((first, second), (202, 202), "{a} {b}");
    assert_eq!(a["uuid"], b["uuid"], "the same saga");

    let (other, c) = order_with_key(&stack, "order-8e21", &body).await;
    assert_eq!(other, 202);
    assert_ne!(c["uuid"], a["uuid"], "another key, another saga");

    let counts = payments(&stack, Duration::from_secs(4)).await;
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(
        stack.stock("widget").await,
        before - 8,
        "two sagas of 4, not three"
    );
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_refused() {
    let stack = TestStack::start("idempotent conflict").await;
    let (status, _) =
        order_with_key(&stack, "k1", &json!({"item":"widget","quantity":1,"user":"jack"})).await;
    assert_eq!(status, 202);
    let (status, body) =
        order_with_key(&stack, "k1", &json!({"item":"widget","quantity":2,"user":"jack"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "idempotency_key_reused");
    assert_eq!(body["field"], "Idempotency-Key");

    for bad in ["k".repeat(129), "with space".to_owned()] {
        let (status, body) =
            order_with_key(&stack, &bad, &json!({"item":"widget","quantity":1,"user":"jack"})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_idempotency_key")),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn concurrent_retries_of_one_key_make_exactly_one_saga() {
    let stack = TestStack::start("idempotent concurrent").await;
    let before = stack.stock("wotsit").await;
    let body = json!({"item":"wotsit","quantity":3,"user":"jill"});
    let answers = futures::future::join_all((0..12).map(|_| order_with_key(&stack, "burst-1", &body))).await;
    let uuids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(status, answer)| {
            assert_eq!(*status, 202, "{answer}");
            answer["uuid"].as_str().unwrap()
        })
        .collect();
    assert_eq!(uuids.len(), 1, "one saga for every retry: {uuids:?}");

    let counts = payments(&stack, Duration::from_secs(4)).await;
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [1],
        "one payment-created"
    );
    assert_eq!(stack.stock("wotsit").await, before - 3, "one decrement");
}

#[tokio::test]
async fn a_retry_after_its_saga_ended_answers_where_the_saga_stands_and_starts_nothing() {
    let stack = TestStack::start("idempotent late retry").await;
    let before = stack.stock("widget").await;
    let body = json!({"item":"widget","quantity":2,"user":"jack","payment-error":"declined"});
    let (status, first) = order_with_key(&stack, "late-1", &body).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (202, Some("received")),
        "{first}"
    );
    let uuid = first["uuid"].as_str().unwrap().to_owned();
    let view = stack.finished(&uuid, WAIT).await;
    assert_eq!(view["status"], "compensated");

    let (status, again) = order_with_key(&stack, "late-1", &body).await;
    assert_eq!(
        (status, again["uuid"].as_str(), again["status"].as_str()),
        (202, Some(uuid.as_str()), Some("compensated")),
        "{again}"
    );

    // As if the first attempt's message had never been confirmed (its answer a 503) and a
    // sweep had ended the saga: the retry answers with the ended saga, and starts nothing.
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(frontend::idempotency::HEADER, "late-1".parse().unwrap());
    let key = frontend::idempotency::Key::from_headers(&headers)
        .unwrap()
        .unwrap();
    assert!(stack.doc(key.path().as_str()).await.unwrap()["published"] == true);
    let mut unconfirmed = saga::gcp::store::WriteSet::new();
    unconfirmed.update(
        key.path(),
        &json!({"published": false}),
        Some(&["published"]),
        None,
    );
    stack.store.commit(unconfirmed).await.unwrap();
    let (status, late) = order_with_key(&stack, "late-1", &body).await;
    assert_eq!(
        (status, late["uuid"].as_str(), late["status"].as_str()),
        (202, Some(uuid.as_str()), Some("compensated")),
        "{late}"
    );
    let view = stack.finished(&uuid, WAIT).await;
    assert_eq!(view["status"], "compensated", "{view}");
    assert_eq!(
        stack.stock("widget").await,
        before,
        "the stock came back once, and stays"
    );

    // A view that cannot be read (a hand edit) does not turn every retry into a 503, nor,
    // with the key still unconfirmed, into a new start of a saga that may have moved on.
    let mut broken = saga::gcp::store::WriteSet::new();
    broken.update(
        saga::gcp::store::DocPath::new(["sagas", &uuid]),
        &json!({"timeline": "edited by hand"}),
        Some(&["timeline"]),
        None,
    );
    stack.store.commit(broken).await.unwrap();
    let (status, unread) = order_with_key(&stack, "late-1", &body).await;
    assert_eq!(
        (status, unread["uuid"].as_str(), unread["status"].as_str()),
        (202, Some(uuid.as_str()), Some("received")),
        "{unread}"
    );
    let view = stack.doc(&format!("sagas/{uuid}")).await.unwrap();
    assert_eq!(
        view["timeline"], "edited by hand",
        "the view was not written again: {view}"
    );
}
