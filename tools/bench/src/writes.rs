//! How hard the hottest shared document is written: Firestore sustains about one write per
//! second on a single document (Firestore "Best practices"), so a document that every saga
//! writes limits the whole system long before the emulator shows it.
//!
//! A document is *shared* when it is written on behalf of more than one saga: a path with
//! no segment that is a saga's uuid (`inventory/{item}`, for example). A path that names a
//! saga (`sagas/{uuid}/…`, `users/{u}/orders/{uuid}`, `inventory/{item}/orders/{uuid}`,
//! `payments/{uuid}`) belongs to that saga alone. For each shared document the report gives
//! its writes per second as the most writes within any one second of the run (a sliding
//! window, not clock seconds), from the `saga::writes` lines of [`crate::logs`], each timed
//! by Firestore's update time where the line carries it.

use serde::Serialize;
use std::collections::BTreeMap;

/// One second in microseconds: a window is `[t, t + 1 s)`.
const SECOND_US: i64 = 1_000_000;

/// Writes to one shared document in one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocumentWrites {
    /// Its path.
    pub doc: String,
    /// Writes in the run.
    pub writes: usize,
    /// The most writes within any one second of the run.
    pub max_per_s: usize,
}

/// Whether `doc` is written on behalf of more than one saga: none of its segments is a
/// saga's uuid (`is_saga`).
pub fn is_shared(doc: &str, is_saga: impl Fn(&str) -> bool) -> bool {
    !doc.split('/').any(is_saga)
}

/// The most of `times` (microseconds, ascending) that fall within one second of each other.
pub fn busiest_second(times: &[i64]) -> usize {
    let mut first = 0;
    let mut most = 0;
    for (last, &t) in times.iter().enumerate() {
        while t - times[first] >= SECOND_US {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Every shared document written in `writes` (`(microseconds, path)`, in any order), the
/// hottest first (most writes within a second, then most writes, then by name).
pub fn shared<'a>(
    writes: impl IntoIterator<Item = (i64, &'a str)>,
    is_saga: impl Fn(&str) -> bool,
) -> Vec<DocumentWrites> {
    let mut by_doc: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (at, doc) in writes {
        if is_shared(doc, &is_saga) {
            by_doc.entry(doc).or_default().push(at);
        }
    }
    let mut out: Vec<DocumentWrites> = by_doc
        .into_iter()
        .map(|(doc, mut times)| {
            times.sort_unstable();
            DocumentWrites {
                doc: doc.to_owned(),
                writes: times.len(),
                max_per_s: busiest_second(&times),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.max_per_s
            .cmp(&a.max_per_s)
            .then(b.writes.cmp(&a.writes))
            .then(a.doc.cmp(&b.doc))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAGA: &str = "6d8930d3-863b-434b-b8d2-0a7453493c94";

    fn is_saga(segment: &str) -> bool {
        segment == SAGA
    }

    #[test]
    fn a_document_that_names_a_saga_belongs_to_it_and_any_other_is_shared() {
        for own in [
            format!("sagas/{SAGA}"),
            format!("sagas/{SAGA}/steps/orders"),
            format!("users/jack/orders/{SAGA}"),
            format!("inventory/widget/orders/{SAGA}"),
            format!("payments/{SAGA}"),
        ] {
            assert!(!is_shared(&own, is_saga), "{own}");
        }
        assert!(is_shared("inventory/widget", is_saga));
        assert!(
            is_shared(
                "inventory/widget/batches/0f0e0d0c-0000-4000-8000-000000000000",
                is_saga
            ),
            "a uuid that is no saga's does not make a document private"
        );
    }

    #[test]
    fn the_busiest_second_counts_writes_within_any_second_not_only_within_clock_seconds() {
        // Two writes late in one clock second and two early in the next: four within 1 s.
        let times = [900_000, 950_000, 1_050_000, 1_100_000];
        assert_eq!(busiest_second(&times), 4);
        // Exactly one second apart is the next window.
        assert_eq!(busiest_second(&[0, 1_000_000]), 1);
        assert_eq!(busiest_second(&[0, 999_999]), 2);
        assert_eq!(busiest_second(&[]), 0);
    }

    #[test]
    fn the_busiest_second_is_the_maximum_over_the_whole_run() {
        let mut times: Vec<i64> = (0..10).map(|i| i * 500_000).collect();
        times.extend((0..7).map(|i| 20_000_000 + i * 10_000));
        assert_eq!(busiest_second(&times), 7);
    }

    #[test]
    fn shared_documents_come_hottest_first_and_private_ones_not_at_all() {
        let own = format!("sagas/{SAGA}");
        let writes = vec![
            (0, "inventory/widget"),
            (1, "inventory/widget"),
            (2_000_000, "inventory/widget"),
            (0, "inventory/wotsit"),
            (10, own.as_str()),
            (20, own.as_str()),
            (30, own.as_str()),
        ];
        let found = shared(writes, is_saga);
        assert_eq!(
            found,
            vec![
                DocumentWrites {
                    doc: "inventory/widget".to_owned(),
                    writes: 3,
                    max_per_s: 2
                },
                DocumentWrites {
                    doc: "inventory/wotsit".to_owned(),
                    writes: 1,
                    max_per_s: 1
                },
            ]
        );
    }
}
