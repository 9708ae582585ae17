//! The outbox's publish lease: of several deliveries of one message, only the one holding
//! the lease publishes the stored message, so a duplicate never sends it while the holder
//! may still be sending it.

use crate::gcp::bus::PUBLISH_TIMEOUT;
use firestore::FirestoreTimestamp;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long the delivery that wrote an outbox message (or took it over) holds the sole right
/// to publish it; a duplicate delivery takes over only after. The holder starts a publish
/// only while [`PUBLISH_TIMEOUT`] and [`LEASE_MARGIN`] of it remain, however slow the
/// commit before it was, so a duplicate never publishes while the holder is still waiting
/// for its publish. (The client library may still send a publish the holder stopped
/// waiting for, late: after a publish timeout, a message can go out twice. Every consumer
/// is idempotent; only the pull subscriptions would see the copy.)
pub const PUBLISH_LEASE: Duration = Duration::from_secs(30);

/// Slack at the end of a lease: for a publish the server accepts just after the client
/// stopped waiting, and for the clocks of two instances disagreeing.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How long a duplicate delivery waits, reading again, while another delivery holds the
/// lease, before it answers 5xx. Each 5xx uses up one of the message's few delivery
/// attempts; answering at once would let the duplicates of a holder that died use them all
/// up within its one lease, and the message would be dead-lettered for no reason.
pub const LEASE_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting duplicate reads again. The holder's publish shows as the
/// `published` mark or, for a message a later step consumes, as that step's record once it
/// ran (usually within a push or two); without either, the lease has to run out.
pub(super) const LEASE_POLL: Duration = Duration::from_millis(500);

fn now_plus(d: Duration) -> FirestoreTimestamp {
    let now = FirestoreTimestamp::now();
    let span = firestore::jiff::SignedDuration::try_from(d).unwrap_or_default();
    FirestoreTimestamp(now.0.checked_add(span).unwrap_or(now.0))
}

#[derive(Serialize)]
pub(super) struct Lease {
    pub(super) lease_until: Option<FirestoreTimestamp>,
}

/// A publish lease this delivery took, timed on the local monotonic clock; the stored
/// `lease_until` is what other deliveries see.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeldLease {
    since: Instant,
}

impl HeldLease {
    /// Takes a lease from now on: `lease_until` is the value to store with it.
    pub(super) fn take() -> (Self, FirestoreTimestamp) {
        (
            Self {
                since: Instant::now(),
            },
            now_plus(PUBLISH_LEASE),
        )
    }

    /// Whether a publish started now stops waiting, even at its timeout, before the lease
    /// runs out with a margin to spare.
    pub(super) fn leaves_time_to_publish(self) -> bool {
        lease_leaves_time_to_publish(self.since.elapsed())
    }
}

/// [`HeldLease::leaves_time_to_publish`] for a lease taken `held_for` ago.
fn lease_leaves_time_to_publish(held_for: Duration) -> bool {
    held_for + PUBLISH_TIMEOUT + LEASE_MARGIN <= PUBLISH_LEASE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::HANDLER_TIMEOUT;

    #[test]
    fn a_fresh_lease_leaves_time_to_publish_and_a_late_one_does_not() {
        assert!(lease_leaves_time_to_publish(Duration::ZERO));
        let last_start = PUBLISH_LEASE.saturating_sub(PUBLISH_TIMEOUT + LEASE_MARGIN);
        assert!(lease_leaves_time_to_publish(last_start));
        assert!(!lease_leaves_time_to_publish(
            last_start + Duration::from_millis(1)
        ));
        assert!(!lease_leaves_time_to_publish(PUBLISH_LEASE));
    }

    #[test]
    fn a_handler_cut_off_at_its_timeout_had_stopped_waiting_for_its_publish_inside_the_lease() {
        assert!(HANDLER_TIMEOUT + LEASE_MARGIN <= PUBLISH_LEASE);
    }
}
