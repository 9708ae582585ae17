//! Every document the services of this test process wrote, as the store reports each
//! committed write on `saga::writes` (with Firestore's own update time): the record a test
//! needs to check how often a shared document is written.

use std::fmt;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One committed write of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The database path, `projects/{project}/databases/(default)`.
    pub database: String,
    /// The document, relative to the database.
    pub doc: String,
    /// Firestore's update time of the write, microseconds since the epoch.
    pub at: i64,
}

static WRITTEN: Mutex<Vec<Written>> = Mutex::new(Vec::new());

/// The writes of `doc` in `project`'s database so far, oldest first.
///
/// # Panics
/// If a test panicked while the record was being appended to.
pub fn writes_of(project: &str, doc: &str) -> Vec<i64> {
    let database = format!("projects/{project}/databases/(default)");
    let mut times: Vec<i64> = WRITTEN
        .lock()
        .expect("no panic while recording a write")
        .iter()
        .filter(|w| w.database == database && w.doc == doc)
        .map(|w| w.at)
        .collect();
    times.sort_unstable();
    times
}

/// The most writes in any window of `window_micros` among `times` (sorted).
pub fn most_in_any_window(times: &[i64], window_micros: i64) -> usize {
    let mut start = 0;
    let mut most = 0;
    for (end, t) in times.iter().enumerate() {
        while times[start] <= t - window_micros {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// A layer that records `saga::writes` events; install it with a `saga::writes=debug` filter.
pub struct Recorder;

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "saga::writes" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(database), Some(doc), Some(at)) = (fields.database, fields.doc, fields.at) {
            WRITTEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Written { database, doc, at });
        }
    }
}

#[derive(Default)]
struct Fields {
    database: Option<String>,
    doc: Option<String>,
    at: Option<i64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "database" => self.database = Some(value.to_owned()),
            "doc" => self.doc = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "at" {
            self.at = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::most_in_any_window;

    #[test]
    fn the_busiest_window_counts_writes_less_than_a_window_apart() {
        let cases: &[(&[i64], usize)] = &[
            (&[], 0),
            (&[5], 1),
            (&[0, 999_999], 2),
            (&[0, 1_000_000], 1),
            (&[0, 250_000, 500_000, 750_000, 1_000_000, 1_250_000], 4),
            (&[0, 1, 2, 3, 4, 5, 2_000_000], 6),
        ];
        for (times, most) in cases {
            assert_eq!(most_in_any_window(times, 1_000_000), *most, "{times:?}");
        }
    }
}
