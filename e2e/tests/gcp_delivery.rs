//! The GCP-like delivery itself, on the real emulators: it pushes many requests at once
//! (its push window opening from a slow start), each with a token that the model of Cloud
//! Run's front end checks, and delivers some messages twice, as Google's Pub/Sub does;
//! every saga still ends exactly once.

// A failed unwrap in a test is a failed assertion.
#![allow(clippy::unwrap_used)]

use e2e::{Delivery, TestStack};
use gcp_models::pubsub_push::{Faults, START_WINDOW};
use saga::contract::Service;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn many_pushes_are_in_flight_at_once_some_twice_and_every_saga_ends_exactly_once() {
    let often_twice = Delivery::GcpLike(Faults {
        duplicate: 0.5,
        lost_answer: 0.1,
        max_delay: Duration::from_millis(200),
    });
    let stack = TestStack::start_in(often_twice, "gcp delivery").await;
    let widgets = stack.stock("widget").await;
    let order = json!({"item": "widget", "quantity": 1, "user": "jack"});
    let uuids = futures::future::join_all((0..40).map(|_| stack.place(&order))).await;

    let paid = stack
        .outcomes("payment-created-sub", &uuids, Duration::from_mins(1))
        .await;
    for uuid in &uuids {
        assert_eq!(paid.get(uuid).map(Vec::len), Some(1), "{uuid}: paid exactly once");
    }
    assert_eq!(stack.stock("widget").await, widgets - 40, "nothing taken twice");

    let gcp = stack.gcp.as_ref().unwrap();
    let delivered = gcp.deliverer().counters();
    assert!(
        delivered.duplicates.load(Ordering::Relaxed) > 0,
        "some messages came twice"
    );
    assert!(
        delivered.lost_answers.load(Ordering::Relaxed) > 0,
        "some answers were lost"
    );
    assert!(
        delivered.widest_window.load(Ordering::Relaxed) > START_WINDOW as u64,
        "the push window opened past its slow start"
    );
    let inventory = gcp.front_end(Service::Inventory).unwrap().counters();
    assert!(
        inventory.peak_in_flight.load(Ordering::Relaxed) > 2,
        "more than the emulator's two pushes in flight: {}",
        inventory.peak_in_flight.load(Ordering::Relaxed)
    );
    let by_instance: Vec<u64> = inventory
        .forwarded_by_instance
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    assert!(
        by_instance.len() == devstack::gcp_like::INSTANCES && by_instance.iter().all(|&n| n > 0),
        "the pushes spread over Cloud Run's instances: {by_instance:?}"
    );
    assert_eq!(
        inventory.refused_auth.load(Ordering::Relaxed),
        0,
        "every push carried a good token"
    );
}
