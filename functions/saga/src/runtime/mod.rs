//! A service process: its configuration, read once from the environment; the push route and
//! its ack policy; HTTP serving with graceful shutdown; logging; and `main`; and, with the
//! `allocator` feature, the process's allocator.

#[cfg(feature = "allocator")]
mod allocator;
pub mod config;
pub mod push_route;
pub mod server;
pub mod service;
pub mod telemetry;
