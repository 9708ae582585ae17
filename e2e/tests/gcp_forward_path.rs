//! The forward path, with push delivered as Google Cloud does it: Terraform's full concurrency
//! (3 instances × 80 requests), an OIDC token per push through a model of Cloud Run's front
//! end to workers behind invoker IAM, and 5 % of messages delivered twice, some after a
//! 2xx. Every invariant the suite checks must hold as it does on the emulator's push.

/// How this binary's stacks are delivered to.
const DELIVERY: e2e::Delivery = e2e::Delivery::GCP_WITH_DUPLICATES;

#[path = "suites/forward_path.rs"]
mod suite;
