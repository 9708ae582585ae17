//! Hostile input at both doors, with push delivered as Google Cloud does it: Terraform's full concurrency
//! (3 instances × 80 requests), an OIDC token per push through a model of Cloud Run's front
//! end to workers behind invoker IAM, 5 % of messages delivered twice (some after a 2xx),
//! every push held up to 30 ms (so messages overtake each other) and 2 % of answers lost
//! (`e2e::Delivery::GCP_WITH_FAULTS`). Every invariant the suite checks must hold as it does on the emulator's push.

/// How this binary's stacks are delivered to.
const DELIVERY: e2e::Delivery = e2e::Delivery::GCP_WITH_FAULTS;

#[path = "suites/hostile.rs"]
mod suite;
