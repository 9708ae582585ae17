//! The saga's shared library: the contract every service keeps (names, messages, records)
//! and the plumbing they share (push handling, publishing, Firestore, config, logging,
//! serving).
//!
//! Services are thin: each declares its routes and its step logic; everything else is here,
//! written once.

pub mod auth;
pub mod bus;
pub mod config;
pub mod contract;
pub mod faults;
mod grouping;
pub mod handler;
pub mod ledger;
pub mod message;
pub mod push;
pub mod records;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod trace;
