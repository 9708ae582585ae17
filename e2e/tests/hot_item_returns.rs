//! A flash sale in which many payments are declined: the janitor gives the units of every
//! declined order back to the one hot item while its sales go on, at GCP-like concurrency.
//! Returns are batched like sales and share the item's write gap, so the stock document is
//! still written no more often than Firestore sustains, and every unit is accounted for.
//!
//! Alone in its binary, so that the writes recorded by [`e2e::written`] are its own.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::written::{most_in_any_window, writes_of};
use e2e::{Delivery, TestStack};
use futures::StreamExt;
use saga::domain::{Reason, Stage};
use serde_json::json;
use std::time::Duration;

const ORDERS: usize = 400;

/// Order `i`: how many units it asks for, and whether its payment is declined (every
/// third).
fn order(i: usize) -> (u32, bool) {
    ([2, 1, 3, 1, 2][i % 5], i.is_multiple_of(3))
}

#[tokio::test]
async fn returns_of_declined_orders_keep_a_hot_items_stock_exact_and_within_its_write_budget() {
    let stack = TestStack::start_in(Delivery::GCP_WITH_DUPLICATES, "hot item returns").await;
    let initial: i64 = 10_000;
    stack.set_stock("widget", initial, 1).await;

    let placed: Vec<(String, u32, bool)> = futures::stream::iter(0..ORDERS)
        .map(|i| {
            let stack = &stack;
            async move {
                let (quantity, declined) = order(i);
                let mut body = json!({"item": "widget", "quantity": quantity, "user": "jack"});
                if declined {
                    body["payment-error"] = json!("null");
                }
                (stack.place(&body).await, quantity, declined)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let views = stack
        .all_finished(placed.iter().map(|(u, ..)| u.as_str()), Duration::from_mins(5))
        .await;

    let mut sold = 0_i64;
    let mut returned = 0;
    for (uuid, quantity, declined) in &placed {
        let view = &views[uuid];
        match (view.status(), view.reason.as_deref(), declined) {
            (Stage::Completed, _, false) => sold += i64::from(*quantity),
            (Stage::Compensated, Some(reason), true) if reason == Reason::PaymentDeclined.as_str() => {
                returned += 1;
                let reservation = stack
                    .doc(&format!("inventory/widget/orders/{uuid}"))
                    .await
                    .unwrap();
                assert_eq!(reservation["status"], "released", "{uuid}: {reservation}");
            }
            other => panic!("{uuid} ended as {other:?}"),
        }
    }
    assert_eq!(
        stack.stock("widget").await,
        initial - sold,
        "every declined order's units came back, once"
    );

    let writes = writes_of(&stack.project, "inventory/widget");
    let busiest = most_in_any_window(&writes, 1_000_000);
    eprintln!(
        "{} sales and {returned} returns; the stock was written {} times, at most {busiest} in one second",
        placed.len() - returned,
        writes.len()
    );
    assert!(returned > 100, "{returned} returns");
    assert!(
        busiest <= 5,
        "inventory/widget was written {busiest} times in one second, sales and returns together"
    );
}
