//! The forward path, on the Pub/Sub emulator's own push. The suite is in
//! `suites/forward_path.rs`; `gcp_forward_path.rs` runs it again with GCP-like delivery.

/// How this binary's stacks are delivered to.
const DELIVERY: e2e::Delivery = e2e::Delivery::Emulator;

#[path = "suites/forward_path.rs"]
mod suite;
