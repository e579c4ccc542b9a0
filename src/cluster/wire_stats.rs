//! Statistics as they travel from a worker to the master: every counter of a
//! report interval, and each histogram in HdrHistogram's V2 serialization
//! (the format every HdrHistogram port reads), so the master's merge is exact.

use hdrhistogram::serialization::{Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::stats::{ErrorEntry, FailureEntry, SparseEntry, SparseStats, Stats, StatsEntry};

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
    /// The same for the times to first byte; empty when there are none.
    #[serde(default, with = "serde_bytes")]
    pub ttfb_histogram_v2: Vec<u8>,
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
        let ttfb_histogram_v2 = encode(&e.ttfb_histogram);
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
            ttfb_histogram_v2,
            requests_per_s: e.requests_per_s.iter().map(|(k, v)| (*k, *v)).collect(),
            failures_per_s: e.failures_per_s.iter().map(|(k, v)| (*k, *v)).collect(),
            first_request_s: e.first_request_s,
            last_request_s: e.last_request_s,
        }
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
}

/// The cookie of an uncompressed HdrHistogram V2 serialization.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_HEADER_BYTES: usize = 40;

/// The (value, count) pairs of every non-empty bucket of a histogram in the
/// HdrHistogram V2 encoding (HdrHistogram's `EncodableHistogram` format, as
/// hdrhistogram's `V2Serializer` writes it: a 40-byte big-endian header,
/// then the counts array as ZigZag LEB128 varints in which a negative number
/// is a run of that many empty buckets). Values are each bucket's lowest
/// equivalent value, so recording them again lands in the same buckets: the
/// merge stays exact.
///
/// Costs O(encoded bytes); the histogram's full counts array is never
/// materialized, which is what lets a master merge a thousand workers'
/// reports a second (`bench/run.py master`).
///
/// # Errors
/// A bad cookie, a truncated payload, or parameters aiotest never writes
/// (a normalizing offset, a double ratio other than 1).
pub fn sparse_counts(bytes: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < V2_HEADER_BYTES {
        return Err(format!(
            "histogram of {} bytes is shorter than its header",
            bytes.len()
        ));
    }
    let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    if u32_at(0) != V2_COOKIE {
        return Err(format!(
            "not an uncompressed V2 histogram (cookie {:#x})",
            u32_at(0)
        ));
    }
    let payload_len = u32_at(4) as usize;
    let (normalizing_offset, digits, lowest) = (u32_at(8), u32_at(12), u64_at(16));
    let ratio = f64::from_bits(u64_at(32));
    if normalizing_offset != 0 || ratio != 1.0 || !(1..=5).contains(&digits) || lowest == 0 {
        return Err("unsupported histogram parameters".into());
    }
    let payload = bytes
        .get(V2_HEADER_BYTES..V2_HEADER_BYTES + payload_len)
        .ok_or("truncated histogram payload")?;
    // Bucket layout, as in HdrHistogram: unit resolution up to 2 × 10^digits.
    let unit_magnitude = 63 - lowest.leading_zeros();
    let half_magnitude = (2 * 10u32.pow(digits)).next_power_of_two().trailing_zeros() - 1;
    let half_count = 1u64 << half_magnitude;
    let value_at = |index: u64| -> Option<u64> {
        let (bucket, sub_bucket) = match (index >> half_magnitude).checked_sub(1) {
            Some(bucket) => (bucket, (index & (half_count - 1)) + half_count),
            None => (0, index & (half_count - 1)),
        };
        let shift = u32::try_from(bucket).ok()? + unit_magnitude;
        (shift < 64 && sub_bucket.leading_zeros() >= shift).then(|| sub_bucket << shift)
    };
    let mut pairs = Vec::new();
    let mut index: u64 = 0;
    let mut at = 0;
    while at < payload.len() {
        // One LEB128 varint (at most 9 bytes; the 9th is used whole).
        let mut raw: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *payload.get(at).ok_or("truncated varint")?;
            at += 1;
            if shift == 56 {
                raw |= u64::from(b) << 56;
                break;
            }
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let count = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
        if count < 0 {
            index = index
                .checked_add(count.unsigned_abs())
                .ok_or("zero run overflows")?;
        } else {
            if count > 0 {
                let value = value_at(index).ok_or("bucket index out of range")?;
                pairs.push((value, count as u64));
            }
            index += 1;
        }
    }
    Ok(pairs)
}

impl WireStats {
    /// Decodes the report for [`Stats::merge_sparse`], histograms as
    /// (value, count) pairs.
    ///
    /// # Errors
    /// A histogram that does not decode.
    pub fn into_sparse(self) -> Result<SparseStats, WireStatsError> {
        let entries = self
            .entries
            .into_iter()
            .map(|w| {
                let bad = |e: String| {
                    WireStatsError(format!("histogram of {} {}: {e}", w.method, w.name))
                };
                let counts = sparse_counts(&w.histogram_v2).map_err(bad)?;
                let corrected_counts = sparse_counts(&w.corrected_histogram_v2).map_err(bad)?;
                let ttfb_counts = sparse_counts(&w.ttfb_histogram_v2).map_err(bad)?;
                Ok(SparseEntry {
                    counts,
                    corrected_counts,
                    ttfb_counts,
                    method: w.method,
                    name: w.name,
                    num_requests: w.num_requests,
                    num_failures: w.num_failures,
                    total_response_time_us: w.total_response_time_us,
                    min_response_time_us: w.min_response_time_us,
                    max_response_time_us: w.max_response_time_us,
                    total_content_bytes: w.total_content_bytes,
                    requests_per_s: w.requests_per_s,
                    failures_per_s: w.failures_per_s,
                    first_request_s: w.first_request_s,
                    last_request_s: w.last_request_s,
                })
            })
            .collect::<Result<Vec<_>, WireStatsError>>()?;
        Ok(SparseStats {
            entries,
            failures: self.failures,
            errors: self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, RequestSample, OTHER_NAMES};

    #[test]
    fn sparse_counts_rebuild_the_same_histogram() {
        let mut h = new_histogram();
        for i in 0..50_000u64 {
            // From 1 µs to about an hour, and the same values many times.
            h.record((i * 7919) % 3_600_000_000 + 1).unwrap();
            h.record(i % 37 + 1).unwrap();
        }
        h.record_n(123_456, 1_000_000).unwrap();
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&h, &mut bytes).unwrap();
        let pairs = sparse_counts(&bytes).unwrap();
        let mut back = new_histogram();
        for (v, n) in &pairs {
            back.record_n(*v, *n).unwrap();
        }
        assert_eq!(back.len(), h.len());
        assert_eq!(back, h);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q));
        }
        assert!(sparse_counts(&bytes[..30]).is_err());
        assert!(sparse_counts(&[0u8; 40]).is_err());
        assert_eq!(sparse_counts(&[]).unwrap(), []);
    }

    #[test]
    fn sparse_merge_equals_one_registry_over_all_samples() {
        let mut whole = Stats::new(0.0);
        let mut workers = [Stats::new(0.0), Stats::new(0.0)];
        for i in 0..10_000u64 {
            let s = RequestSample {
                method: "GET".into(),
                name: format!("/{}", i % 3),
                response_time_us: (i * 104_729) % 900_000 + 1,
                content_bytes: 7,
                error: (i % 50 == 0).then(|| "HTTPError: 503".into()),
                at_s: 500.0 + (i % 4) as f64,
                intended_lag_us: None,
                ttfb_us: None,
            };
            whole.record(&s);
            workers[(i % 2) as usize].record(&s);
        }
        let mut merged = Stats::new(0.0);
        for w in &workers {
            merged.merge_sparse(&WireStats::from_stats(w).into_sparse().unwrap());
        }
        let (a, b) = (whole.snapshot(600.0), merged.snapshot(600.0));
        assert_eq!(a.total.num_requests, 10_000);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
        assert_eq!(whole.total().histogram, merged.total().histogram);
    }

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
                ttfb_us: None,
            };
            whole.record(&s);
            workers[(i % 3) as usize].record(&s);
        }
        let mut master = Stats::new(0.0);
        for w in &workers {
            let bytes = rmp_serde::to_vec_named(&WireStats::from_stats(w)).unwrap();
            let back: WireStats = rmp_serde::from_slice(&bytes).unwrap();
            master.merge_sparse(&back.into_sparse().unwrap());
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
            ttfb_histogram_v2: Vec::new(),
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
        let report = WireStats {
            entries: vec![w],
            failures: vec![],
            errors: vec![],
        };
        assert!(report.into_sparse().is_err());
    }

    #[test]
    fn corrected_times_and_times_to_first_byte_travel_and_merge_exactly() {
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
                // Half the requests got no response head: no time to first byte.
                ttfb_us: (i % 2 == 0).then_some(300 + i % 89),
            };
            whole.record(&s);
            workers[(i % 2) as usize].record(&s);
        }
        let mut master = Stats::new(0.0);
        for w in &workers {
            let wire = WireStats::from_stats(w);
            let bytes = rmp_serde::to_vec_named(&wire).unwrap();
            let back: WireStats = rmp_serde::from_slice(&bytes).unwrap();
            master.merge_sparse(&back.into_sparse().unwrap());
        }
        let (a, b) = (whole.snapshot(2.0), master.snapshot(2.0));
        let corrected = a.total.corrected_percentiles_us.clone().unwrap();
        assert_eq!(Some(corrected.clone()), b.total.corrected_percentiles_us);
        assert_eq!(a.total.percentiles_us, b.total.percentiles_us);
        // The lag shows in the corrected figures only.
        assert!(corrected[9].1 > 100_000 && a.total.percentiles_us[9].1 < 1_200);
        // Times to first byte travel and merge as exactly.
        let ttfb = a.total.ttfb_percentiles_us.clone().unwrap();
        assert_eq!(Some(ttfb.clone()), b.total.ttfb_percentiles_us);
        assert!(ttfb[9].1 < 400, "{ttfb:?}");
    }

    #[test]
    fn a_merged_report_folds_names_past_the_masters_limit() {
        let mut worker = Stats::new(0.0);
        for i in 0..5 {
            worker.record(&RequestSample {
                method: "GET".into(),
                name: format!("/w{i}"),
                response_time_us: 1000,
                content_bytes: 1,
                error: Some("boom".into()),
                at_s: 1.0,
                intended_lag_us: None,
                ttfb_us: None,
            });
        }
        let mut master = Stats::new(0.0).with_max_names(2);
        master.merge_sparse(&WireStats::from_stats(&worker).into_sparse().unwrap());
        let snap = master.snapshot(1.0);
        assert_eq!(snap.total.num_requests, 5);
        let other = snap.entries.iter().find(|e| e.name == OTHER_NAMES).unwrap();
        assert_eq!((other.num_requests, snap.entries.len()), (3, 3));
        let folded = snap
            .failures
            .iter()
            .find(|f| f.name == OTHER_NAMES)
            .unwrap();
        assert_eq!(folded.occurrences, 3);
    }
}
