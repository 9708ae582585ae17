//! When the handler serving a delivery is cut off, and whether a publish still fits before.

use crate::gcp::bus::PUBLISH_TIMEOUT;
use std::time::{Duration, Instant};

/// What a delivery allows for the work before and after a publish (reads, the lease
/// commit), when it decides whether the publish still fits before its handler is cut off.
const DEADLINE_SLACK: Duration = Duration::from_secs(2);

/// When the handler serving this delivery is cut off: [`HANDLER_TIMEOUT`] after its request
/// arrived, less a slack. It starts at arrival, as the server's timeout does, so that what
/// runs before the engine (the token check, which may queue, and reading the body) counts.
///
/// [`HANDLER_TIMEOUT`]: crate::contract::HANDLER_TIMEOUT
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of a delivery whose request arrived at `arrived`.
    pub fn arrived_at(arrived: Instant) -> Self {
        Deadline(arrived + crate::contract::HANDLER_TIMEOUT.saturating_sub(DEADLINE_SLACK))
    }

    /// How much of the handler's time a publish started now may still take, after the
    /// slack for what comes around it.
    pub(super) fn left_for_publish(self) -> Duration {
        self.left_for_publish_at(Instant::now())
    }

    /// [`Deadline::left_for_publish`] for a publish started at `now`.
    fn left_for_publish_at(self, now: Instant) -> Duration {
        self.0
            .saturating_duration_since(now)
            .saturating_sub(DEADLINE_SLACK)
    }

    /// Whether a publish started now gets its full timeout before the handler is cut off;
    /// a publish that cannot would only be dropped half-way, wasting the attempt.
    pub fn leaves_time_to_publish(self) -> bool {
        self.left_for_publish() >= PUBLISH_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::HANDLER_TIMEOUT;

    #[test]
    fn a_fresh_delivery_has_time_to_wait_for_a_lease_and_still_publish() {
        let deadline = Deadline::arrived_at(Instant::now());
        assert!(deadline.leaves_time_to_publish());
        assert!(
            deadline.left_for_publish() > PUBLISH_TIMEOUT,
            "some patience is left"
        );
    }

    #[test]
    fn a_delivery_near_its_handler_timeout_does_not_start_a_publish() {
        let deadline = Deadline(Instant::now() + PUBLISH_TIMEOUT);
        assert!(!deadline.leaves_time_to_publish());
    }

    #[test]
    fn a_deadline_taken_at_arrival_has_less_left_by_the_time_spent_since() {
        let arrived = Instant::now();
        let deadline = Deadline::arrived_at(arrived);
        let fresh = deadline.left_for_publish_at(arrived);
        assert_eq!(fresh, HANDLER_TIMEOUT.saturating_sub(DEADLINE_SLACK * 2));
        let waited = Duration::from_secs(3);
        assert_eq!(
            deadline.left_for_publish_at(arrived + waited),
            fresh.saturating_sub(waited)
        );
        assert!(fresh > waited);
        assert_eq!(
            deadline.left_for_publish_at(arrived + HANDLER_TIMEOUT),
            Duration::ZERO
        );
    }

    #[test]
    fn a_delivery_that_queued_at_the_token_check_may_have_no_time_left_to_publish() {
        let arrived = Instant::now();
        let deadline = Deadline::arrived_at(arrived);
        // Had the deadline started when the engine did, after the wait, it would still
        // have seemed to leave the publish its full timeout.
        let queued = HANDLER_TIMEOUT.saturating_sub(PUBLISH_TIMEOUT);
        let engine_starts = arrived + queued;
        assert!(Deadline::arrived_at(engine_starts).left_for_publish_at(engine_starts) >= PUBLISH_TIMEOUT);
        assert!(deadline.left_for_publish_at(engine_starts) < PUBLISH_TIMEOUT);
    }
}
