//! Models of the Google Cloud behaviours that the local emulators lack, small enough to
//! read in one sitting, for the tests, the local stack and the benchmark.
//!
//! The Pub/Sub emulator sends pushes without a token, and nothing stands between it and a
//! worker the way Cloud Run's front end does in a deployment. A green test on the bare
//! emulators therefore says nothing about push authentication. These models fill the gap:
//!
//! ```text
//!   oidc::Issuer ──mints a token as Pub/Sub does──▶ cloud_run::FrontEnd ──stripped──▶ worker
//!   (Google's keys, served as a JWKS)                (verifies, checks invokers,
//!                                                     strips the signature, limits)
//! ```
//!
//! - [`oidc`]: a local stand-in for Google's OIDC issuer: a key pair, its JWKS on loopback,
//!   and tokens with the claims Pub/Sub puts in a push token.
//! - [`cloud_run`]: a reverse proxy that does what Cloud Run's front end does for a private
//!   service: token verification, the `run.invoker` check, signature stripping, the request
//!   timeout and the concurrency limit.
//!
//! Each module's docs name the Google documentation pages it follows, and what it leaves out.

pub mod cloud_run;
pub mod oidc;
