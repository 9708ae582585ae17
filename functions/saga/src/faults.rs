//! Fault injection for tests: make the next N publishes, or the next N push requests of a
//! service, fail as a real outage would.
//!
//! The hooks are plain counters, inert (zero) unless a test that runs the service
//! in-process sets them; nothing outside the process can reach them.

use crate::contract::Service;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// Shared fault counters of one service: of every instance of it that runs in the process.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Counters>);

static OF_SERVICE: LazyLock<Mutex<HashMap<(String, Service), Faults>>> = LazyLock::new(Mutex::default);

#[derive(Debug, Default)]
struct Counters {
    publishes: AtomicU32,
    pushes: AtomicU32,
    /// Fail every push until cleared, however many there are.
    all_pushes: std::sync::atomic::AtomicBool,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// The counters of `service` in `project`: one set however many instances of the
    /// service a test runs in its process, as an outage hits every instance.
    pub fn of(project: &str, service: Service) -> Faults {
        OF_SERVICE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((project.to_owned(), service))
            .or_default()
            .clone()
    }

    /// The next `n` publishes fail before reaching Pub/Sub.
    pub fn fail_publishes(&self, n: u32) {
        self.0.publishes.store(n, Ordering::SeqCst);
    }

    /// The next `n` push requests answer 503 before doing any work.
    pub fn fail_pushes(&self, n: u32) {
        self.0.pushes.store(n, Ordering::SeqCst);
    }

    /// Every push request answers 503 until called again with `false`.
    pub fn fail_all_pushes(&self, on: bool) {
        self.0.all_pushes.store(on, Ordering::SeqCst);
    }

    /// How many injected publish failures have not happened yet.
    pub fn publish_failures_left(&self) -> u32 {
        self.0.publishes.load(Ordering::SeqCst)
    }

    /// How many injected push failures have not happened yet.
    pub fn push_failures_left(&self) -> u32 {
        self.0.pushes.load(Ordering::SeqCst)
    }

    /// Whether this publish must fail (and counts it).
    pub(crate) fn take_publish_failure(&self) -> bool {
        take(&self.0.publishes)
    }

    /// Whether this push must fail (and counts it).
    pub(crate) fn take_push_failure(&self) -> bool {
        self.0.all_pushes.load(Ordering::SeqCst) || take(&self.0.pushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_run_down_to_zero_and_stay_there() {
        let f = Faults::default();
        assert!(!f.take_publish_failure());
        f.fail_publishes(2);
        assert!(f.take_publish_failure());
        assert!(f.take_publish_failure());
        assert!(!f.take_publish_failure());
        f.fail_all_pushes(true);
        assert!(f.take_push_failure() && f.take_push_failure());
        f.fail_all_pushes(false);
        assert!(!f.take_push_failure());
    }
}
