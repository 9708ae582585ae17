//! The status view on the real emulators: `GET /orders/{uuid}` follows each saga to its end,
//! whatever order Pub/Sub delivers its messages in.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{TestStack, new_uuid, saga_message};
use saga::contract::{PUSH_POLICY, Service, Topic};
use saga::runtime::config::OrderList;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn stages(view: &Value) -> Vec<&str> {
    view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_successful_order_is_followed_to_completed_with_each_step_once() {
    let stack = TestStack::start("status success").await;
    let (code, accepted) = stack
        .order(&json!({"item":"widget","quantity":3,"user":"jack"}))
        .await;
    assert_eq!(code, 202);
    let uuid = accepted["uuid"].as_str().unwrap();
    assert_eq!(accepted["status_url"], format!("/orders/{uuid}"));

    let view = stack.finished(uuid, WAIT).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["total_invoice"], 30);
    assert_eq!(
        stages(&view),
        ["received", "order_created", "stock_reserved", "completed"]
    );
    let times: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times follow the steps: {times:?}"
    );
    assert_eq!(
        (
            view["item"].as_str(),
            view["user"].as_str(),
            view["quantity"].as_u64()
        ),
        (Some("widget"), Some("jack"), Some(3))
    );
}

#[tokio::test]
async fn failed_orders_show_the_step_the_reason_and_the_compensation() {
    let stack = TestStack::start("status failures").await;
    let declined = stack
        .place(&json!({"item":"wotsit","quantity":8,"user":"jill","payment-error":"null"}))
        .await;
    let unknown = stack
        .place(&json!({"item":"widget","quantity":25,"user":"jimbo"}))
        .await;

    let view = stack.finished(&declined, WAIT).await;
    assert_eq!(view["status"], "compensated");
    assert_eq!(view["failed_step"], "payments");
    assert_eq!(view["reason"], "payment_declined");
    assert!(
        view["status_text"].as_str().unwrap().contains("payment declined"),
        "{view}"
    );
    assert_eq!(
        stages(&view),
        [
            "received",
            "order_created",
            "stock_reserved",
            "failed",
            "compensated"
        ]
    );

    let view = stack.finished(&unknown, WAIT).await;
    assert_eq!(
        (view["status"].as_str(), view["failed_step"].as_str()),
        (Some("compensated"), Some("orders"))
    );
    assert_eq!(view["reason"], "unknown_user");
    assert!(view["status_text"].as_str().unwrap().contains("jimbo"), "{view}");

    // A late (or forged) order-created for the unknown user's saga finds inventory's
    // tombstone, left by the compensation, and does nothing; the view, written only in the
    // steps' commits, never shows it, and a duplicate failure changes nothing at all.
    let tombstone = stack.step(&unknown, Service::Inventory).await;
    assert_eq!(
        tombstone.as_ref().map(|t| t["state"].clone()),
        Some(json!("tombstone")),
        "{tombstone:?}"
    );
    stack
        .publish(
            Topic::OrderCreated,
            saga_message(&unknown, "widget", 25, "jimbo")
                .to_string()
                .as_bytes(),
            &[],
        )
        .await;
    let error = stack.step(&unknown, Service::Orders).await.unwrap()["outbox"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.publish(Topic::Error, error.as_bytes(), &[]).await;
    // Both are handled within milliseconds; nothing signals that they were, by design.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.step(&unknown, Service::Inventory).await, tombstone);
    let (_, late) = stack.get(&format!("/orders/{unknown}")).await;
    assert_eq!(stages(&late), ["received", "failed", "compensated"], "{late}");
    assert_eq!(late, view, "nothing moved");
}

#[tokio::test]
async fn unknown_and_malformed_uuids_are_told_apart_and_recent_orders_are_listed() {
    let stack = TestStack::start("status lookups").await;
    let (code, body) = stack.get(&format!("/orders/{}", new_uuid())).await;
    assert_eq!((code, body["error"].as_str()), (404, Some("not_found")), "{body}");
    // What Terraform's uptime check asks, and the answer it looks for.
    let (code, body) = stack.get(saga::contract::uptime::PATH).await;
    assert_eq!(code, saga::contract::uptime::STATUS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains(saga::contract::uptime::NOT_FOUND)),
        "{body}"
    );
    let (code, body) = stack.get("/orders/not-a-uuid").await;
    assert_eq!(
        (code, body["error"].as_str(), body["field"].as_str()),
        (400, Some("invalid_uuid"), Some("uuid"))
    );

    let first = stack
        .place(&json!({"item":"widget","quantity":1,"user":"jack"}))
        .await;
    let second = stack
        .place(&json!({"item":"wotsit","quantity":1,"user":"jill"}))
        .await;
    stack.finished(&first, WAIT).await;
    stack.finished(&second, WAIT).await;
    let (code, list) = stack.get("/orders?limit=10").await;
    assert_eq!(code, 200);
    let uuids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids, [second.as_str(), first.as_str()], "newest first");
    // axum's own words name what is wrong, instead of a bare "Bad Request".
    for (path, named) in [
        ("/orders?limit=lots", "limit"),
        ("/orders?limit=-1", "limit"),
        ("/orders/%FF", "UTF-8"),
    ] {
        let (code, body) = stack.get(path).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (400, Some("bad_request")),
            "{path}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{path}: {body}");
    }
}

#[tokio::test]
async fn with_the_list_turned_off_get_orders_answers_404_saying_so_and_each_order_is_followed_by_its_uuid() {
    let stack = TestStack::start_configured(
        e2e::Delivery::Emulator,
        "status list off",
        &PUSH_POLICY,
        |config| {
            config.order_list = OrderList::Off;
        },
    )
    .await;
    let uuid = stack
        .place(&json!({"item":"widget","quantity":1,"user":"jack"}))
        .await;
    let view = stack.finished(&uuid, WAIT).await;
    assert_eq!(view["status"], "completed");

    // Whatever the query string: the list is off before anything is read of it.
    for path in ["/orders", "/orders?limit=10", "/orders?limit=lots"] {
        let (code, body) = stack.get(path).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (404, Some("order_list_disabled")),
            "{path}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("GET /orders/{uuid}"), "{message}");
        assert!(!body.to_string().contains(&uuid), "{path} shows no order: {body}");
    }
}
