//! Models of the Google Cloud behaviours that the local emulators lack, small enough to
//! read in one sitting, for the tests, the local stack and the benchmark.
//!
//! The Pub/Sub emulator sends pushes without a token, and nothing stands between it and a
//! worker the way Cloud Run's front end does in a deployment. A green test on the bare
//! emulators therefore says nothing about push authentication. These models fill the gap:
//!
//! ```text
//!   emulator ──pull──▶ pubsub_push::Deliverer ──POST + token──▶ cloud_run::FrontEnd ──▶ worker
//!   (retry and        (many in flight, duplicates,  minted by   (verifies, checks invokers,
//!    dead-letter       delays, deliveryAttempt)    oidc::Issuer  strips the signature, limits)
//!    policies)
//! ```
//!
//! - [`oidc`]: a local stand-in for Google's OIDC issuer: a key pair, its JWKS on loopback,
//!   and tokens with the claims Pub/Sub puts in a push token.
//! - [`cloud_run`]: a reverse proxy that does what Cloud Run's front end does for a private
//!   service: token verification, the `run.invoker` check, signature stripping, the request
//!   timeout, and spreading requests over the service's instances within their concurrency
//!   limit.
//! - [`pubsub_push`]: push delivery as Google's Pub/Sub does it, for subscriptions on the
//!   emulator: many requests in flight, a token per push, `deliveryAttempt`, duplicates
//!   (also after a 2xx), delays and lost answers, seeded so a run can be replayed.
//!
//! Each module's docs name the Google documentation pages it follows, and what it leaves out.

pub mod cloud_run;
pub mod oidc;
pub mod pubsub_push;
