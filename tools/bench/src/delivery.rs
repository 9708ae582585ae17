//! How pushes reach the handlers in a benchmark run.
//!
//! By default as on Google Cloud ([`Push::Gcp`]): the subscriptions keep their retry and
//! dead-letter policies but have no push endpoint, and `devstack::gcp_like` pulls their
//! messages and pushes them, many at a time and each with an OIDC token, through a model of
//! Cloud Run's front end per worker, as Terraform deploys them (3 instances × 80 requests,
//! invoker IAM). The workers run as on Cloud Run behind invoker IAM
//! (`devstack::gcp_like::worker_env`). The deliverer and the front ends run inside the bench
//! process, so their CPU is counted as the bench's.
//!
//! The emulator's own push ([`Push::Emulator`]) is kept for comparison with the earlier
//! tables: at most two requests in flight per subscription, each loop sleeping 100 ms when
//! its backlog is empty (see `BENCHMARKS.md`, "Where the time goes").

use devstack::gcp_like::GcpLike;
use gcp_models::pubsub_push::Settings;
use saga::contract::{PUSH_POLICY, Service};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who delivers the pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Push {
    /// As Google Cloud would: `devstack::gcp_like` (pulled by a model of Pub/Sub push,
    /// through models of Cloud Run's front ends).
    Gcp,
    /// The Pub/Sub emulator's own push.
    Emulator,
}

/// How the GCP-like deliverer delivers: Terraform's deployment, the contract's ack deadline,
/// no injected faults, decisions seeded with `seed`.
pub fn settings(seed: u64) -> Settings {
    Settings::like_the_deployment(PUSH_POLICY.ack_deadline, seed)
}

/// What the deliverer and the front ends of one stack did, summed over the front ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Push requests sent (duplicates included).
    pub pushes: u64,
    /// Messages acked.
    pub acked: u64,
    /// Messages nacked: answered with an error, or not in time; the emulator redelivers them.
    pub nacked: u64,
    /// Extra deliveries of a message.
    pub duplicates: u64,
    /// Answers thrown away as if late.
    pub lost_answers: u64,
    /// Bytes of message data pushed.
    pub bytes: u64,
    /// Requests the front ends passed on to the workers.
    pub forwarded: u64,
    /// Requests refused for their token or caller (401, 403).
    pub refused_auth: u64,
    /// Requests refused because every slot was taken (429).
    pub refused_busy: u64,
    /// Requests the workers did not answer in time (504).
    pub timed_out: u64,
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counts {
    /// What `gcp` did so far.
    pub fn of(gcp: &GcpLike) -> Counts {
        let d = gcp.deliverer().counters();
        let mut counts = Counts {
            pushes: load(&d.pushes),
            acked: load(&d.acked),
            nacked: load(&d.nacked),
            duplicates: load(&d.duplicates),
            lost_answers: load(&d.lost_answers),
            bytes: load(&d.bytes),
            ..Counts::default()
        };
        for front_end in Service::ALL.into_iter().filter_map(|s| gcp.front_end(s)) {
            let c = front_end.counters();
            counts.forwarded += load(&c.forwarded);
            counts.refused_auth += load(&c.refused_auth);
            counts.refused_busy += load(&c.refused_busy);
            counts.timed_out += load(&c.timed_out);
        }
        counts
    }

    /// What was done between `before` and `self`.
    #[must_use]
    pub fn since(self, before: Counts) -> Counts {
        Counts {
            pushes: self.pushes.saturating_sub(before.pushes),
            acked: self.acked.saturating_sub(before.acked),
            nacked: self.nacked.saturating_sub(before.nacked),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            lost_answers: self.lost_answers.saturating_sub(before.lost_answers),
            bytes: self.bytes.saturating_sub(before.bytes),
            forwarded: self.forwarded.saturating_sub(before.forwarded),
            refused_auth: self.refused_auth.saturating_sub(before.refused_auth),
            refused_busy: self.refused_busy.saturating_sub(before.refused_busy),
            timed_out: self.timed_out.saturating_sub(before.timed_out),
        }
    }
}

/// The most requests each worker's front end had in flight at once since it started.
pub fn peak_in_flight(gcp: &GcpLike) -> BTreeMap<String, u64> {
    Service::ALL
        .into_iter()
        .filter_map(|s| {
            Some((
                s.name().to_owned(),
                load(&gcp.front_end(s)?.counters().peak_in_flight),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_since_an_earlier_snapshot_are_the_differences_and_never_negative() {
        let before = Counts {
            pushes: 10,
            acked: 9,
            nacked: 1,
            forwarded: 10,
            ..Counts::default()
        };
        let after = Counts {
            pushes: 25,
            acked: 23,
            nacked: 2,
            forwarded: 24,
            ..Counts::default()
        };
        assert_eq!(
            after.since(before),
            Counts {
                pushes: 15,
                acked: 14,
                nacked: 1,
                forwarded: 14,
                ..Counts::default()
            }
        );
        assert_eq!(before.since(after), Counts::default());
    }
}
