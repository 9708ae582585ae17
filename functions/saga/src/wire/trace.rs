//! Trace context: one trace per saga, carried from the client's request through every
//! message of the saga.
//!
//! The frontend takes the W3C `traceparent` header (or Google's `X-Cloud-Trace-Context`),
//! or starts a new trace. Every published message carries the context in its `traceparent`
//! attribute; every push handler continues it with a span of its own and passes it on. Log
//! lines then name the trace as Cloud Logging expects
//! (`logging.googleapis.com/trace` = `projects/P/traces/TRACE_ID`).

use rand::Rng as _;
use std::fmt;

/// The message attribute (and HTTP header) that carries the context.
pub const TRACEPARENT: &str = "traceparent";

/// Google's own trace header, accepted from clients as a fallback.
pub const CLOUD_TRACE_CONTEXT: &str = "x-cloud-trace-context";

/// A position in a trace: which trace, which span within it, and whether it is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

impl TraceContext {
    /// A new trace, with a root span.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        TraceContext {
            trace_id: rng.random_range(1..=u128::MAX),
            span_id: rng.random_range(1..=u64::MAX),
            sampled: true,
        }
    }

    /// A new span in the same trace.
    #[must_use]
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: rand::rng().random_range(1..=u64::MAX),
            ..*self
        }
    }

    /// Parses a W3C `traceparent`: `00-<32 hex trace>-<16 hex span>-<2 hex flags>`.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let value = value.trim();
        // Only lowercase hex is valid, and it keeps the parsing below unambiguous.
        if !value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
        {
            return None;
        }
        let mut parts = value.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version ff is invalid; later versions may append fields, which are ignored.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|s| *s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// Parses Google's `X-Cloud-Trace-Context`: `TRACE_ID/SPAN_ID;o=OPTIONS`, the span id
    /// in decimal and optional.
    pub fn from_cloud_trace_context(value: &str) -> Option<Self> {
        let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
        let (trace, span) = ids.split_once('/').unwrap_or((ids, ""));
        if trace.len() != 32 {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = span
            .parse::<u64>()
            .ok()
            .filter(|s| *s != 0)
            .unwrap_or_else(|| rand::rng().random_range(1..=u64::MAX));
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: options.trim() != "o=0",
        })
    }

    /// The W3C `traceparent` form.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id, 16 lowercase hex digits (the form Cloud Logging's `spanId` takes).
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.sampled
    }
}

/// A new root: what a message that carries no context starts.
impl Default for TraceContext {
    fn default() -> Self {
        Self::new_root()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::from_traceparent(value).unwrap();
        assert_eq!(ctx.to_traceparent(), value);
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id(), "00f067aa0ba902b7");
        assert!(ctx.sampled());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_cloud_trace_context_is_accepted_with_or_without_its_span() {
        let ctx = TraceContext::from_cloud_trace_context("105445aa7843bc8bf206b12000100000/1;o=1").unwrap();
        assert_eq!(ctx.trace_id(), "105445aa7843bc8bf206b12000100000");
        assert_eq!(ctx.span_id(), "0000000000000001");
        let bare = TraceContext::from_cloud_trace_context("105445aa7843bc8bf206b12000100000").unwrap();
        assert_eq!(bare.trace_id(), ctx.trace_id());
        assert!(!TraceContext::from_cloud_trace_context("abc/1;o=0").is_some_and(|c| c.sampled()));
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_its_own_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_eq!(
            TraceContext::from_traceparent(&child.to_traceparent()),
            Some(child)
        );
    }
}
