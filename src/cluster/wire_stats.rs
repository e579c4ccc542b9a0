//! Statistics as they travel from a worker to the master: every counter of a
//! report interval, and each histogram in HdrHistogram's V2 serialization
//! (the format every HdrHistogram port reads), so the master's merge is exact.

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::stats::{new_histogram, ErrorEntry, FailureEntry, Stats, StatsEntry};

/// One [`StatsEntry`] on the wire. Times µs, sizes bytes, timestamps unix s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WireEntry {
    pub method: String,
    pub name: String,
    pub num_requests: u64,
    pub num_failures: u64,
    pub total_response_time_us: u64,
    pub min_response_time_us: Option<u64>,
    pub max_response_time_us: u64,
    pub total_content_bytes: u64,
    /// HdrHistogram V2 serialization of the response times (µs).
    #[serde(with = "serde_bytes")]
    pub histogram_v2: Vec<u8>,
    /// The same for the response times corrected for coordinated omission
    /// (open workload model); empty when there are none.
    #[serde(default, with = "serde_bytes")]
    pub corrected_histogram_v2: Vec<u8>,
    /// (unix second, requests ended in it).
    pub requests_per_s: Vec<(u64, u64)>,
    pub failures_per_s: Vec<(u64, u64)>,
    pub first_request_s: Option<f64>,
    pub last_request_s: Option<f64>,
}

/// A worker's statistics for one report interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WireStats {
    pub entries: Vec<WireEntry>,
    pub failures: Vec<FailureEntry>,
    pub errors: Vec<ErrorEntry>,
}

/// A report that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad stats report: {0}")]
pub struct WireStatsError(pub String);

impl WireEntry {
    /// Encodes one entry.
    pub fn from_entry(e: &StatsEntry) -> Self {
        let encode = |h: &hdrhistogram::Histogram<u64>| {
            let mut bytes = Vec::new();
            if !h.is_empty() {
                V2Serializer::new()
                    .serialize(h, &mut bytes)
                    .expect("serializing a histogram to memory cannot fail");
            }
            bytes
        };
        let histogram_v2 = encode(&e.histogram);
        let corrected_histogram_v2 = encode(&e.corrected_histogram);
        Self {
            method: e.method.clone(),
            name: e.name.clone(),
            num_requests: e.num_requests,
            num_failures: e.num_failures,
            total_response_time_us: e.total_response_time_us,
            min_response_time_us: e.min_response_time_us,
            max_response_time_us: e.max_response_time_us,
            total_content_bytes: e.total_content_bytes,
            histogram_v2,
            corrected_histogram_v2,
            requests_per_s: e.requests_per_s.iter().map(|(k, v)| (*k, *v)).collect(),
            failures_per_s: e.failures_per_s.iter().map(|(k, v)| (*k, *v)).collect(),
            first_request_s: e.first_request_s,
            last_request_s: e.last_request_s,
        }
    }

    /// Decodes one entry.
    ///
    /// # Errors
    /// A histogram that does not deserialize.
    pub fn to_entry(&self) -> Result<StatsEntry, WireStatsError> {
        let decode = |bytes: &[u8]| -> Result<hdrhistogram::Histogram<u64>, WireStatsError> {
            if bytes.is_empty() {
                return Ok(new_histogram());
            }
            let mut h: hdrhistogram::Histogram<u64> = Deserializer::new()
                .deserialize(&mut &bytes[..])
                .map_err(|e| {
                    WireStatsError(format!("histogram of {} {}: {e:?}", self.method, self.name))
                })?;
            h.auto(true);
            Ok(h)
        };
        let histogram = decode(&self.histogram_v2)?;
        let mut e = StatsEntry::new(&self.method, &self.name);
        e.corrected_histogram = decode(&self.corrected_histogram_v2)?;
        e.num_requests = self.num_requests;
        e.num_failures = self.num_failures;
        e.total_response_time_us = self.total_response_time_us;
        e.min_response_time_us = self.min_response_time_us;
        e.max_response_time_us = self.max_response_time_us;
        e.total_content_bytes = self.total_content_bytes;
        e.histogram = histogram;
        e.requests_per_s = self
            .requests_per_s
            .iter()
            .copied()
            .collect::<BTreeMap<_, _>>();
        e.failures_per_s = self
            .failures_per_s
            .iter()
            .copied()
            .collect::<BTreeMap<_, _>>();
        e.first_request_s = self.first_request_s;
        e.last_request_s = self.last_request_s;
        Ok(e)
    }
}

impl WireStats {
    /// Encodes a worker's interval statistics.
    pub fn from_stats(stats: &Stats) -> Self {
        Self {
            entries: stats.entries().map(WireEntry::from_entry).collect(),
            failures: stats.failures().cloned().collect(),
            errors: stats.errors().cloned().collect(),
        }
    }

    /// Decodes into a [`Stats`] ready to [`Stats::merge`]; the Aggregated
    /// row is rebuilt from the entries.
    ///
    /// # Errors
    /// [`WireStatsError`] for a histogram that does not deserialize.
    pub fn to_stats(&self, start_s: f64) -> Result<Stats, WireStatsError> {
        let mut stats = Stats::new(start_s);
        for w in &self.entries {
            stats.insert_entry(w.to_entry()?);
        }
        for f in &self.failures {
            stats.insert_failure(f.clone());
        }
        for e in &self.errors {
            stats.insert_error(e.clone());
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::RequestSample;

    #[test]
    fn merged_reports_equal_one_histogram_over_all_samples() {
        let mut whole = Stats::new(0.0);
        let mut workers = [Stats::new(0.0), Stats::new(0.0), Stats::new(0.0)];
        for i in 0..30_000u64 {
            let s = RequestSample {
                method: "GET".into(),
                name: format!("/{}", i % 4),
                response_time_us: (i * 7919) % 2_000_000 + 1,
                content_bytes: i % 100,
                error: (i % 97 == 0).then(|| "HTTPError: 500 Server Error: x".into()),
                at_s: 1000.0 + (i % 5) as f64,
                intended_lag_us: None,
            };
            whole.record(&s);
            workers[(i % 3) as usize].record(&s);
        }
        let mut master = Stats::new(0.0);
        for w in &workers {
            let bytes = rmp_serde::to_vec_named(&WireStats::from_stats(w)).unwrap();
            let back: WireStats = rmp_serde::from_slice(&bytes).unwrap();
            master.merge(&back.to_stats(0.0).unwrap());
        }
        let (a, b) = (master.snapshot(1010.0), whole.snapshot(1010.0));
        assert_eq!(a.total.percentiles_us, b.total.percentiles_us);
        assert_eq!(a.total.num_requests, 30_000);
        assert_eq!(a.total.num_failures, b.total.num_failures);
        for (x, y) in a.entries.iter().zip(&b.entries) {
            assert_eq!(
                (&x.name, &x.percentiles_us, x.num_requests),
                (&y.name, &y.percentiles_us, y.num_requests)
            );
            assert_eq!(x.max_response_time_us, y.max_response_time_us);
        }
        assert_eq!(a.failures.len(), b.failures.len());
        assert_eq!(a.failures[0].occurrences, b.failures[0].occurrences);
    }

    #[test]
    fn garbage_histograms_are_errors_not_panics() {
        let w = WireEntry {
            corrected_histogram_v2: Vec::new(),
            method: "GET".into(),
            name: "/".into(),
            num_requests: 1,
            num_failures: 0,
            total_response_time_us: 1,
            min_response_time_us: Some(1),
            max_response_time_us: 1,
            total_content_bytes: 0,
            histogram_v2: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            requests_per_s: vec![],
            failures_per_s: vec![],
            first_request_s: None,
            last_request_s: None,
        };
        assert!(w.to_entry().is_err());
    }

    #[test]
    fn corrected_times_travel_and_merge_exactly() {
        let mut whole = Stats::new(0.0);
        let mut workers = [Stats::new(0.0), Stats::new(0.0)];
        for i in 0..5_000u64 {
            let s = RequestSample {
                method: "GET".into(),
                name: "/open".into(),
                response_time_us: 1_000 + i % 97,
                content_bytes: 5,
                error: None,
                at_s: 1.0,
                intended_lag_us: Some((i % 13) * 10_000),
            };
            whole.record(&s);
            workers[(i % 2) as usize].record(&s);
        }
        let mut master = Stats::new(0.0);
        for w in &workers {
            let wire = WireStats::from_stats(w);
            let bytes = rmp_serde::to_vec_named(&wire).unwrap();
            let back: WireStats = rmp_serde::from_slice(&bytes).unwrap();
            master.merge(&back.to_stats(0.0).unwrap());
        }
        let (a, b) = (whole.snapshot(2.0), master.snapshot(2.0));
        let corrected = a.total.corrected_percentiles_us.clone().unwrap();
        assert_eq!(Some(corrected.clone()), b.total.corrected_percentiles_us);
        assert_eq!(a.total.percentiles_us, b.total.percentiles_us);
        // The lag shows in the corrected figures only.
        assert!(corrected[9].1 > 100_000 && a.total.percentiles_us[9].1 < 1_200);
    }
}
