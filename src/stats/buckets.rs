//! Cumulative bucket counts of each row's response times, for histogram
//! formats with fixed bucket bounds (Prometheus' and OpenMetrics' classic
//! histograms): exact counts read off the HDR histograms, so that a row's
//! `+Inf` bucket equals its request count.

use super::{Stats, StatsEntry};

/// Response-time bucket bounds (s) unless the user sets their own
/// (`--metrics-buckets`): from 1 ms to 60 s, the spread of Prometheus'
/// defaults with the sub-5 ms bounds a fast target needs.
pub const DEFAULT_BUCKETS_S: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Histogram bucket bounds: in seconds for the exposition formats, and in
/// µs for [`bucket_counts`]. Ascending, without repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketBounds {
    pub seconds: Vec<f64>,
    pub micros: Vec<u64>,
}

impl BucketBounds {
    /// `buckets_s` (seconds, in any order) sorted and without repeats;
    /// [`DEFAULT_BUCKETS_S`] when empty.
    pub fn new(buckets_s: &[f64]) -> Self {
        let mut seconds = if buckets_s.is_empty() {
            DEFAULT_BUCKETS_S.to_vec()
        } else {
            buckets_s.to_vec()
        };
        seconds.sort_by(f64::total_cmp);
        seconds.dedup();
        let micros = seconds.iter().map(|s| (s * 1e6).round() as u64).collect();
        Self { seconds, micros }
    }
}

/// One (method, name) row, or the Aggregated row, as counters and
/// cumulative buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryBuckets {
    pub method: String,
    pub name: String,
    pub num_requests: u64,
    pub num_failures: u64,
    /// The sum of the response times, µs.
    pub total_response_time_us: u64,
    /// Requests with a response time of at most each bound (µs, as given,
    /// ascending), then all of them (the `+Inf` bucket).
    pub cumulative: Vec<u64>,
}

impl EntryBuckets {
    /// `entry`'s counters and cumulative counts at `bounds_us`.
    pub fn of(entry: &StatsEntry, bounds_us: &[u64]) -> Self {
        let h = &entry.histogram;
        let mut cumulative: Vec<u64> = bounds_us
            .iter()
            .map(|&b| {
                if h.is_empty() {
                    0
                } else {
                    h.count_between(0, b)
                }
            })
            .collect();
        cumulative.push(h.len());
        Self {
            method: entry.method.clone(),
            name: entry.name.clone(),
            num_requests: entry.num_requests,
            num_failures: entry.num_failures,
            total_response_time_us: entry.total_response_time_us,
            cumulative,
        }
    }
}

impl EntryBuckets {
    /// The requests in each bucket (not cumulative), the `+Inf` one last:
    /// what the histogram encoders of OTLP and `prometheus-client` take.
    pub fn per_bucket(&self) -> Vec<u64> {
        let mut below = 0;
        self.cumulative
            .iter()
            .map(|&c| {
                let n = c.saturating_sub(below);
                below = c;
                n
            })
            .collect()
    }
}

/// Every row of `stats` (sorted by name, then method) and the Aggregated
/// row last, at `bounds_us` (ascending µs).
pub fn bucket_counts(stats: &Stats, bounds_us: &[u64]) -> Vec<EntryBuckets> {
    let mut rows: Vec<EntryBuckets> = stats
        .entries()
        .map(|e| EntryBuckets::of(e, bounds_us))
        .collect();
    rows.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
    rows.push(EntryBuckets::of(stats.total(), bounds_us));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::RequestSample;

    fn sample(name: &str, response_time_us: u64, error: bool) -> RequestSample {
        RequestSample {
            method: "GET".into(),
            name: name.into(),
            response_time_us,
            content_bytes: 1,
            error: error.then(|| "boom".to_owned()),
            at_s: 1.0,
            intended_lag_us: None,
            ttfb_us: None,
        }
    }

    #[test]
    fn buckets_are_exact_and_cumulative() {
        let mut stats = Stats::new(0.0);
        for t in [100, 900, 1_000, 1_001, 5_000, 250_000] {
            stats.record(&sample("/a", t, false));
        }
        stats.record(&sample("/b", 2_000, true));
        let rows = bucket_counts(&stats, &[1_000, 10_000, 100_000]);
        let a = &rows[0];
        assert_eq!((a.name.as_str(), a.num_requests), ("/a", 6));
        // Exact at this scale: 1,001 us is above the 1 ms bound.
        assert_eq!(a.cumulative, vec![3, 5, 5, 6]);
        assert_eq!(a.total_response_time_us, 258_001);
        let total = rows.last().unwrap();
        assert_eq!(total.name, crate::stats::AGGREGATED_NAME);
        assert_eq!((total.num_requests, total.num_failures), (7, 1));
        assert_eq!(total.cumulative, vec![3, 6, 6, 7]);
        assert_eq!(total.per_bucket(), vec![3, 3, 0, 1]);
    }

    #[test]
    fn bounds_are_sorted_once_in_both_units() {
        let b = BucketBounds::new(&[0.1, 0.005, 0.1]);
        assert_eq!(
            (b.seconds, b.micros),
            (vec![0.005, 0.1], vec![5_000, 100_000])
        );
        assert_eq!(BucketBounds::new(&[]).seconds, DEFAULT_BUCKETS_S.to_vec());
    }
}
