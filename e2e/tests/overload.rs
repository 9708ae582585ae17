//! A deployment under more load than it was sized for: Pub/Sub's push window lets it send
//! more than the services take at once (Google's grows past 3,000 messages; Terraform's
//! services take 240), so what they cannot take waits at Cloud Run's front end and, when no
//! slot frees in time, is refused with 429, which Pub/Sub counts as a failed delivery.
//! Modelled with services that take 6 requests at once (2 per instance) and refuse after
//! 100 ms of waiting, under a burst of orders.
//!
//! The 429s must cost nothing but time and, for a message refused on every one of its 5
//! deliveries, its order (failed as `retries_exhausted` and compensated, as
//! docs/deploy.md says): every saga still ends exactly once, and the stock is exact.
//!
//! Alone in its binary: it loads the machine's emulators for a minute.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use devstack::gcp_like::Capacity;
use e2e::{Delivery, TestStack};
use saga::contract::Service;
use saga::domain::{Reason, Stage};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

const ORDERS: usize = 150;

#[tokio::test]
async fn pushes_an_overloaded_service_refuses_with_429_are_retried_and_every_saga_still_ends_once() {
    let small = Capacity {
        requests: 6,
        pending_timeout: Duration::from_millis(100),
    };
    let stack = TestStack::start_in(Delivery::Overloaded(small), "overload").await;
    let initial = 1_000;
    stack.set_stock("widget", initial, 1).await;

    let order = json!({"item": "widget", "quantity": 1, "user": "jack"});
    let uuids = futures::future::join_all((0..ORDERS).map(|_| stack.place(&order))).await;
    let views = stack
        .all_finished(uuids.iter().map(String::as_str), Duration::from_mins(4))
        .await;

    let mut sold = 0;
    let mut exhausted = 0;
    for uuid in &uuids {
        let view = &views[uuid];
        match (view.status(), view.reason.as_deref()) {
            (Stage::Completed, _) => sold += 1,
            (Stage::Compensated, Some(reason)) if reason == Reason::RetriesExhausted.as_str() => {
                exhausted += 1;
            }
            other => panic!("{uuid} ended as {other:?}: only a sale, or a delivery given up on, is expected"),
        }
    }
    let left = stack.stock("widget").await;
    assert_eq!(
        left,
        initial - sold,
        "final stock = initial − sold: nothing held or taken twice"
    );
    let completed: Vec<String> = uuids
        .iter()
        .filter(|u| views[*u].status() == Stage::Completed)
        .cloned()
        .collect();
    let paid = stack
        .outcomes("payment-created-sub", &completed, Duration::from_secs(30))
        .await;
    for uuid in &completed {
        assert_eq!(paid.get(uuid).map(Vec::len), Some(1), "{uuid}: paid exactly once");
    }

    let gcp = stack.gcp.as_ref().unwrap();
    let refused: Vec<(Service, u64)> = [
        Service::Orders,
        Service::Inventory,
        Service::Payments,
        Service::Janitor,
    ]
    .into_iter()
    .map(|s| {
        let counters = gcp.front_end(s).unwrap().counters();
        (s, counters.refused_busy.load(Ordering::Relaxed))
    })
    .collect();
    eprintln!(
        "{sold} of {ORDERS} sold, {exhausted} failed as retries_exhausted; refused with 429 by service: {refused:?}"
    );
    assert!(
        refused.iter().any(|(_, n)| *n > 0),
        "the burst met Cloud Run's limit: some pushes were refused with 429: {refused:?}"
    );
    let refusals: u64 = refused.iter().map(|(_, n)| n).sum();
    assert!(
        gcp.deliverer().counters().nacked.load(Ordering::Relaxed) >= refusals,
        "every push refused with 429 was a failed delivery, to be retried"
    );
    // Each message has 5 deliveries, backoff between them, and the window narrowing on
    // each failure: a burst that only waits should lose few orders, if any, to 429s (none in
    // the runs so far).
    assert!(
        exhausted * 10 < ORDERS,
        "{exhausted} of {ORDERS} orders were lost to 429s: retries no longer absorb a burst"
    );
}
