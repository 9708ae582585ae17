//! The saga's shared library: the contract every service keeps, and everything the five
//! services share, written once. Services are thin: each declares its routes and its step's
//! pure decision; the rest is here.
//!
//! The modules follow how a message flows through a service, each using only those above it:
//!
//! ```text
//! contract   names users rely on: services, topics, subscriptions, policies, collections
//!    │
//! domain     values parsed at the edge: SagaId, UserName, ItemName, Quantity, Money, Order,
//!    │       Stage, Reason; FieldError
//! wire       what travels: the saga message (message), the push envelope (envelope), the
//!    │       trace context carried in attributes (trace)
//! gcp        Google Cloud clients, built once: Firestore (store, with group commit), Pub/Sub
//!    │       publishing (bus), push-token checks (auth); Clients holds them
//! engine     the step engine: Step and Decision, run (read, decide, commit with its outbox,
//!    │       publish under a lease), retry rounds, the documents (records), the status view
//! runtime    a service process: config from the environment, the push route and its ack
//!            policy, HTTP serving, telemetry, and `main`
//! ```
//!
//! `faults` holds test hooks, compiled only with the `test-hooks` feature, which
//! production builds never enable.

pub mod contract;
pub mod domain;
pub mod engine;
#[cfg(feature = "test-hooks")]
pub mod faults;
pub mod gcp;
pub mod runtime;
pub mod wire;
