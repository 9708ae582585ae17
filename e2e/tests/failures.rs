//! Failures, compensation, dead letters, on the Pub/Sub emulator's own push. The suite is in
//! `suites/failures.rs`; `gcp_failures.rs` runs it again with GCP-like delivery.

/// How this binary's stacks are delivered to.
const DELIVERY: e2e::Delivery = e2e::Delivery::Emulator;

#[path = "suites/failures.rs"]
mod suite;
