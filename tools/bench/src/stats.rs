//! Percentiles and summaries of measured durations.
//!
//! Percentiles use the nearest-rank method: the p-th percentile is a sample that was
//! actually measured (the smallest one at or above p% of all samples), never an
//! interpolation between two, so a p99 of 1,000 samples is the 990th fastest.

use serde::Serialize;
use std::time::Duration;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted`, which must be in ascending order.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = (p / 100.0 * as_f64(sorted.len())).ceil();
    // rank is in 1..=len by construction; the float round trip is exact for any length a
    // benchmark produces.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = (rank as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

/// `n` as a float: counts in a benchmark are far below 2^52, where the conversion is exact.
#[allow(clippy::cast_precision_loss)]
pub fn as_f64(n: usize) -> f64 {
    n as f64
}

/// `n` as a float; see [`as_f64`].
#[allow(clippy::cast_precision_loss)]
pub fn u64_as_f64(n: u64) -> f64 {
    n as f64
}

/// Milliseconds, rounded to a tenth.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The distribution of a set of durations, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Summarises `samples` (in any order); `None` if there are none.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let total: Duration = sorted.iter().sum();
    let count = u32::try_from(sorted.len()).ok()?;
    Some(Summary {
        n: sorted.len(),
        p50_ms: ms(percentile(&sorted, 50.0)?),
        p95_ms: ms(percentile(&sorted, 95.0)?),
        p99_ms: ms(percentile(&sorted, 99.0)?),
        max_ms: ms(*sorted.last()?),
        mean_ms: ms(total / count),
    })
}

#[cfg(test)]
// A failed unwrap in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_the_ranks_themselves() {
        let sorted = millis(1..=100);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn a_percentile_is_always_a_measured_sample_never_an_interpolation() {
        let sorted = millis([10, 20, 30, 40]);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&sorted, 51.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(40)));
        assert_eq!(percentile(&sorted, 1.0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn the_p99_of_a_thousand_samples_is_the_990th() {
        let sorted = millis(1..=1000);
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(990)));
    }

    #[test]
    fn there_is_no_percentile_of_nothing_or_out_of_range() {
        assert_eq!(percentile(&[], 50.0), None);
        let sorted = millis([1]);
        assert_eq!(percentile(&sorted, 0.0), None);
        assert_eq!(percentile(&sorted, 101.0), None);
        assert_eq!(percentile(&sorted, f64::NAN), None);
        assert_eq!(percentile(&sorted, 0.1), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_summary_sorts_its_samples_and_reports_milliseconds() {
        let summary = summarize(&millis([30, 10, 20])).unwrap();
        assert_eq!(summary.n, 3);
        assert!((summary.p50_ms - 20.0).abs() < f64::EPSILON);
        assert!((summary.p99_ms - 30.0).abs() < f64::EPSILON);
        assert!((summary.max_ms - 30.0).abs() < f64::EPSILON);
        assert!((summary.mean_ms - 20.0).abs() < f64::EPSILON);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn milliseconds_keep_one_decimal() {
        assert!((ms(Duration::from_micros(12_345)) - 12.3).abs() < 1e-9);
        assert!((ms(Duration::from_micros(12_351)) - 12.4).abs() < 1e-9);
    }
}
