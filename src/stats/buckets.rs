//! Cumulative bucket counts of each row's response times, for histogram
//! formats with fixed bucket bounds (Prometheus' and OpenMetrics' classic
//! histograms): exact counts read off the HDR histograms, so that a row's
//! `+Inf` bucket equals its request count.

use super::{Stats, StatsEntry};

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
    }
}
