//! What travels between the services: the saga message, the push envelope Pub/Sub wraps
//! it in, and the trace context carried in its attributes.

pub mod envelope;
pub mod message;
pub mod trace;
