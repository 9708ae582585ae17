//! Where a step's time goes: the `saga::timing` events the services log at debug level
//! (`--service-log warn,saga::timing=debug`), one per Firestore read, commit, publish and
//! `published` mark, summarised per service and phase for one run.

use crate::stats::{self, Summary};
use saga::contract::Service;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one kind of call took in one service during a run.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    /// The service.
    pub service: String,
    /// `read`, `commit`, `publish` or `mark`.
    pub phase: String,
    /// Its durations.
    pub times: Summary,
}

/// The phases in `logs` (each service's log text of one run, see [`crate::logs`]), per
/// service in saga order; empty unless the services log `saga::timing` events.
pub fn summarize(logs: &[(Service, String)]) -> Vec<PhaseReport> {
    let mut out = Vec::new();
    for (service, text) in logs {
        let mut by_phase: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        for (phase, ms) in text.lines().filter_map(parse) {
            by_phase
                .entry(phase)
                .or_default()
                .push(Duration::from_secs_f64(ms / 1000.0));
        }
        for phase in ["read", "commit", "publish", "mark"] {
            if let Some(times) = by_phase.get(phase).and_then(|t| stats::summarize(t)) {
                out.push(PhaseReport {
                    service: service.name().to_owned(),
                    phase: phase.to_owned(),
                    times,
                });
            }
        }
    }
    out
}

/// `(phase, milliseconds)` of a text-format log line `… phase="read" ms=1.234`.
fn parse(line: &str) -> Option<(&str, f64)> {
    let (_, rest) = line.split_once("phase=\"")?;
    let (phase, rest) = rest.split_once('"')?;
    let (_, rest) = rest.split_once(" ms=")?;
    let ms: f64 = rest.split_whitespace().next()?.parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then_some((phase, ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timing_event_is_read_as_its_phase_and_milliseconds() {
        let line = r#"2026-11-26T16:35:12.857866Z DEBUG saga::timing: phase="read" ms=1.5"#;
        assert_eq!(parse(line), Some(("read", 1.5)));
    }

    #[test]
    fn other_log_lines_are_not_timing_events() {
        assert_eq!(
            parse("2026-11-26T16:35:12Z DEBUG request http_request.status=200"),
            None
        );
        assert_eq!(parse(r#"x phase="read" ms=soon"#), None);
        assert_eq!(parse(r#"x phase="read" ms=-1"#), None);
    }
}
