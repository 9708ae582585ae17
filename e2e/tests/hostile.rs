//! Hostile input at both doors, on the Pub/Sub emulator's own push. The suite is in
//! `suites/hostile.rs`; `gcp_hostile.rs` runs it again with GCP-like delivery.

/// How this binary's stacks are delivered to.
const DELIVERY: e2e::Delivery = e2e::Delivery::Emulator;

#[path = "suites/hostile.rs"]
mod suite;
