//! `sagactl sweep`: the janitor's sweep on demand, for an operator who will not wait for
//! Cloud Scheduler's next minute, or who wants to see first what it would do (`--dry-run`).
//!
//! It is the janitor's own [`janitor::sweep::sweep`], called in-process with clients built
//! as the janitor builds its own ([`crate::connect::clients`]), so a sweep run here and one
//! run by the scheduler decide and act alike; every action is idempotent, so the two may
//! race. Its report is the janitor's (`POST /sweep` answers the same JSON).

use janitor::sweep::{Options, Report};
use saga::engine::Deadline;
use saga::gcp::Clients;
use std::time::Instant;

/// Sweeps once with `options`, for as long as one sweep by the scheduler may take (the
/// handler's timeout): what is left is the next sweep's.
///
/// # Errors
/// When Firestore cannot be queried for the open sagas.
pub async fn sweep(clients: &Clients, options: &Options) -> anyhow::Result<Report> {
    janitor::sweep::sweep(clients, options, Deadline::arrived_at(Instant::now())).await
}

/// Whether the sweep left a saga it meant to end for a person (or the next sweep) to look
/// at: one it could not read, act on, or reach in time. Its outcome is then what went wrong.
pub fn needs_attention(report: &Report) -> bool {
    report.sagas.iter().any(|s| !s.ended())
}

#[cfg(test)]
mod tests {
    use super::*;
    use janitor::sweep::{Action, Swept};
    use saga::contract::Service;
    use saga::domain::Reason;

    fn swept(outcome: &str) -> Swept {
        Swept {
            uuid: "u".to_owned(),
            age_secs: 400,
            stage: "order_created",
            action: Some(Action::Compensate {
                step: Service::Inventory,
                reason: Reason::TimedOut,
            }),
            outcome: outcome.to_owned(),
        }
    }

    #[test]
    fn a_sweep_needs_attention_only_when_a_saga_it_found_was_not_ended() {
        let report = |outcomes: &[&str]| Report {
            dry_run: false,
            examined: outcomes.len(),
            sagas: outcomes.iter().map(|o| swept(o)).collect(),
        };
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["done"], false),
            (&["dry_run", "dry_run"], false),
            (&["done", "left for the next sweep"], true),
            (&["could not read its records: unavailable"], true),
            (&["its view names no valid uuid"], true),
        ];
        for (outcomes, attention) in cases {
            assert_eq!(needs_attention(&report(outcomes)), *attention, "{outcomes:?}");
        }
    }
}
