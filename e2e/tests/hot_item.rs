//! A flash sale: a thousand orders for one item at GCP-like concurrency, whose stock covers
//! about two thirds of them. It sells out without a false failure, without overselling, and
//! without writing the item's stock document more often than Firestore sustains, though
//! inventory runs as three instances, as on Cloud Run, whose batches of the item race.
//!
//! Alone in its binary, so that the writes recorded by [`e2e::written`] are its own.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::written::{most_in_any_window, writes_of};
use e2e::{Delivery, TestStack};
use futures::StreamExt;
use saga::contract::Service;
use saga::domain::{Reason, Stage};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ORDERS: usize = 1_000;

/// How many units order `i` asks for: 1, 2 or 3, mixed.
fn quantity(i: usize) -> u32 {
    [2, 1, 3, 1, 2, 3, 1][i % 7]
}

#[tokio::test]
async fn a_hot_item_sells_out_at_full_concurrency_with_no_false_failure_no_oversale_and_few_stock_writes() {
    let stack = TestStack::start_in(Delivery::GCP_WITH_DUPLICATES, "hot item").await;
    let demand: i64 = (0..ORDERS).map(|i| i64::from(quantity(i))).sum();
    let initial = demand * 2 / 3;
    stack.set_stock("widget", initial, 1).await;

    let started = Instant::now();
    let placed: Vec<(String, u32)> = futures::stream::iter(0..ORDERS)
        .map(|i| {
            let stack = &stack;
            async move {
                let order = json!({"item": "widget", "quantity": quantity(i), "user": "jack"});
                (stack.place(&order).await, quantity(i))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let views = stack
        .all_finished(placed.iter().map(|(u, _)| u.as_str()), Duration::from_mins(5))
        .await;
    let took = started.elapsed();

    let left = stack.stock("widget").await;
    let mut sold = 0_i64;
    let mut sales = 0_u32;
    let mut refused = Vec::new();
    for (uuid, wanted) in &placed {
        let view = &views[uuid];
        match (view.status(), view.reason.as_deref()) {
            (Stage::Completed, _) => {
                sold += i64::from(*wanted);
                sales += 1;
            }
            (Stage::Compensated, Some(reason)) if reason == Reason::InsufficientStock.as_str() => {
                refused.push((uuid, *wanted));
            }
            other => panic!("{uuid} ended as {other:?}: only a sale or a refusal for stock is expected"),
        }
    }
    assert!(left >= 0, "never oversold: {left} left");
    assert_eq!(left, initial - sold, "final stock = initial − sold");
    assert!(
        !refused.is_empty(),
        "demand exceeded stock, so some orders were refused"
    );
    for (uuid, wanted) in &refused {
        assert!(
            i64::from(*wanted) > left,
            "{uuid} was refused for stock though it asked for {wanted} and {left} were left: a false failure"
        );
    }

    let writes = writes_of(&stack.project, "inventory/widget");
    let busiest = most_in_any_window(&writes, 1_000_000);
    let selling = match (writes.first(), writes.last()) {
        (Some(first), Some(last)) if last > first => Duration::from_micros((last - first).unsigned_abs()),
        _ => took,
    };
    eprintln!(
        "{sales} sales and {} refusals in {took:.1?}; the stock was written {} times over {selling:.1?} \
         ({:.0} sales/s), at most {busiest} times in one second",
        refused.len(),
        writes.len(),
        f64::from(sales) / selling.as_secs_f64().max(0.001),
    );
    let inventory = stack.gcp.as_ref().unwrap().front_end(Service::Inventory).unwrap();
    let by_instance: Vec<u64> = inventory
        .counters()
        .forwarded_by_instance
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    eprintln!("inventory's pushes by instance: {by_instance:?}");
    assert!(
        by_instance.len() > 1 && by_instance.iter().all(|&n| n > 0),
        "every instance of inventory took sales, each batching its own: {by_instance:?}"
    );
    assert!(!writes.is_empty(), "the stock writes were recorded");
    assert!(
        busiest <= 5,
        "inventory/widget was written {busiest} times in one second; Firestore sustains about one"
    );
}
