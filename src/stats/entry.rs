//! One row of the statistics: every request recorded under one (method, name).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles reported everywhere: the console, the CSV columns and the JSON.
/// Matches the percentile columns of Locust's `_stats.csv`.
pub const PERCENTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// Seconds of per-second counters kept for the "current" requests/s figure.
const RATE_WINDOW_S: u64 = 20;

/// Significant digits of every response-time histogram.
const HISTOGRAM_SIGFIG: u8 = 3;

/// A new, empty response-time histogram: µs, 3 significant digits, growing
/// as larger values arrive.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(HISTOGRAM_SIGFIG).expect("3 significant digits is a valid HDR precision")
}

/// Counters and a response-time histogram for one (method, name) pair.
///
/// Response times are in µs and recorded with 3 significant digits, so every
/// percentile is exact to 0.1 % (Locust rounds into coarse buckets instead).
#[derive(Debug, Clone)]
pub struct StatsEntry {
    pub method: String,
    pub name: String,
    pub num_requests: u64,
    pub num_failures: u64,
    pub total_response_time_us: u64,
    pub min_response_time_us: Option<u64>,
    pub max_response_time_us: u64,
    pub total_content_bytes: u64,
    pub histogram: Histogram<u64>,
    /// Response times corrected for coordinated omission (µs), recorded
    /// only in the open workload model; empty otherwise.
    pub corrected_histogram: Histogram<u64>,
    /// Times to first byte (µs: the request sent to the first response
    /// byte, k6's `http_req_waiting`) of the requests that had one.
    pub ttfb_histogram: Histogram<u64>,
    /// Requests ended in each unix second, trimmed to the last 20 s.
    pub requests_per_s: BTreeMap<u64, u64>,
    /// Failures in each unix second, trimmed to the last 20 s.
    pub failures_per_s: BTreeMap<u64, u64>,
    /// Unix time (s) of the first and last request recorded here.
    pub first_request_s: Option<f64>,
    pub last_request_s: Option<f64>,
    /// What arrived since the last history tick (see [`StatsEntry::take_window`]).
    pub window: Window,
}

/// Samples since the last history tick: the source of the per-window
/// requests/s and percentiles in `_stats_history.csv` and the report charts.
#[derive(Debug, Clone)]
pub struct Window {
    pub histogram: Histogram<u64>,
    pub requests: u64,
    pub failures: u64,
    /// The exact largest response time in the window (µs).
    pub max_us: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            histogram: new_histogram(),
            requests: 0,
            failures: 0,
            max_us: 0,
        }
    }
}

/// A stats entry in transit, its histograms as (value µs, count) pairs, one
/// per non-empty bucket: what the master merges from a worker's report
/// (`cluster::wire_stats`) without building histograms for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseEntry {
    pub method: String,
    pub name: String,
    pub num_requests: u64,
    pub num_failures: u64,
    pub total_response_time_us: u64,
    pub min_response_time_us: Option<u64>,
    pub max_response_time_us: u64,
    pub total_content_bytes: u64,
    /// (response time µs, samples) of every non-empty histogram bucket.
    pub counts: Vec<(u64, u64)>,
    /// The same for response times corrected for coordinated omission.
    pub corrected_counts: Vec<(u64, u64)>,
    /// The same for times to first byte.
    pub ttfb_counts: Vec<(u64, u64)>,
    /// (unix second, requests ended in it).
    pub requests_per_s: Vec<(u64, u64)>,
    pub failures_per_s: Vec<(u64, u64)>,
    pub first_request_s: Option<f64>,
    pub last_request_s: Option<f64>,
}

/// Records `n` samples of `value_us`; auto-resizing histograms only refuse
/// values past u64's range.
fn record_n(h: &mut Histogram<u64>, value_us: u64, n: u64) {
    if h.record_n(value_us, n).is_err() {
        h.saturating_record_n(value_us, n);
    }
}

impl StatsEntry {
    pub fn new(method: &str, name: &str) -> Self {
        Self {
            method: method.to_owned(),
            name: name.to_owned(),
            num_requests: 0,
            num_failures: 0,
            total_response_time_us: 0,
            min_response_time_us: None,
            max_response_time_us: 0,
            total_content_bytes: 0,
            histogram: new_histogram(),
            corrected_histogram: new_histogram(),
            ttfb_histogram: new_histogram(),
            requests_per_s: BTreeMap::new(),
            failures_per_s: BTreeMap::new(),
            first_request_s: None,
            last_request_s: None,
            window: Window::default(),
        }
    }

    /// Records one request that ended at unix time `at_s`.
    pub fn record(&mut self, response_time_us: u64, content_bytes: u64, failed: bool, at_s: f64) {
        self.num_requests += 1;
        self.total_response_time_us += response_time_us;
        self.min_response_time_us = Some(
            self.min_response_time_us
                .map_or(response_time_us, |m| m.min(response_time_us)),
        );
        self.max_response_time_us = self.max_response_time_us.max(response_time_us);
        self.total_content_bytes += content_bytes;
        // An auto-resizing histogram only refuses values past u64's range.
        if self.histogram.record(response_time_us).is_err() {
            self.histogram.saturating_record(response_time_us);
        }
        let second = at_s as u64;
        *self.requests_per_s.entry(second).or_default() += 1;
        if failed {
            self.num_failures += 1;
            *self.failures_per_s.entry(second).or_default() += 1;
        }
        self.first_request_s = Some(self.first_request_s.map_or(at_s, |t| t.min(at_s)));
        self.last_request_s = Some(self.last_request_s.map_or(at_s, |t| t.max(at_s)));
        if self.window.histogram.record(response_time_us).is_err() {
            self.window.histogram.saturating_record(response_time_us);
        }
        self.window.requests += 1;
        self.window.failures += u64::from(failed);
        self.window.max_us = self.window.max_us.max(response_time_us);
        self.trim_rates(second);
    }

    /// Records one response time corrected for coordinated omission: the
    /// response time plus how late its iteration started (µs).
    pub fn record_corrected(&mut self, corrected_us: u64) {
        record_n(&mut self.corrected_histogram, corrected_us, 1);
    }

    /// Records one time to first byte (µs).
    pub fn record_ttfb(&mut self, ttfb_us: u64) {
        record_n(&mut self.ttfb_histogram, ttfb_us, 1);
    }

    /// Adds every sample of `other` to this entry. Percentiles of the result
    /// equal those of one histogram that saw both sets of samples.
    /// Adds every sample of `other` (a worker's report, its histograms as
    /// (value, count) pairs) to this entry. Percentiles of the result equal
    /// those of one histogram that saw both sets of samples. Costs one
    /// `record_n` per non-empty bucket, not a pass over every bucket, and
    /// builds no histogram for the incoming report.
    pub fn merge_sparse(&mut self, other: &SparseEntry) {
        self.num_requests += other.num_requests;
        self.num_failures += other.num_failures;
        self.total_response_time_us += other.total_response_time_us;
        self.min_response_time_us = match (self.min_response_time_us, other.min_response_time_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_response_time_us = self.max_response_time_us.max(other.max_response_time_us);
        self.total_content_bytes += other.total_content_bytes;
        for (s, n) in &other.requests_per_s {
            *self.requests_per_s.entry(*s).or_default() += n;
        }
        for (s, n) in &other.failures_per_s {
            *self.failures_per_s.entry(*s).or_default() += n;
        }
        self.first_request_s = min_opt(self.first_request_s, other.first_request_s);
        self.last_request_s = max_opt(self.last_request_s, other.last_request_s);
        if let Some(&newest) = self.requests_per_s.keys().next_back() {
            self.trim_rates(newest);
        }
        self.window.requests += other.num_requests;
        self.window.failures += other.num_failures;
        self.window.max_us = self.window.max_us.max(other.max_response_time_us);
        for &(value_us, n) in &other.counts {
            record_n(&mut self.histogram, value_us, n);
            record_n(&mut self.window.histogram, value_us, n);
        }
        for &(value_us, n) in &other.corrected_counts {
            record_n(&mut self.corrected_histogram, value_us, n);
        }
        for &(value_us, n) in &other.ttfb_counts {
            record_n(&mut self.ttfb_histogram, value_us, n);
        }
    }

    /// Ends the current window: returns its history row (`window_s` long,
    /// ending at `now_s`) and starts a new, empty window.
    pub fn take_window(&mut self, window_s: f64) -> HistoryEntry {
        let w = std::mem::take(&mut self.window);
        let span = window_s.max(1e-3);
        let n = self.num_requests;
        let at = |q: f64| -> u64 {
            if w.histogram.is_empty() {
                0
            } else {
                w.histogram.value_at_quantile(q).min(w.max_us)
            }
        };
        HistoryEntry {
            method: self.method.clone(),
            name: self.name.clone(),
            rps: w.requests as f64 / span,
            fail_per_s: w.failures as f64 / span,
            window_requests: w.requests,
            percentiles_us: PERCENTILES
                .iter()
                .map(|&q| (format_quantile(q), at(q)))
                .collect(),
            total_requests: n,
            total_failures: self.num_failures,
            total_median_us: self.response_time_at_quantile_us(0.5),
            total_avg_us: if n == 0 {
                0.0
            } else {
                self.total_response_time_us as f64 / n as f64
            },
            total_min_us: self.min_response_time_us.unwrap_or(0),
            total_max_us: self.max_response_time_us,
            total_avg_content_bytes: if n == 0 {
                0.0
            } else {
                self.total_content_bytes as f64 / n as f64
            },
        }
    }

    fn trim_rates(&mut self, newest_s: u64) {
        let oldest_kept = newest_s.saturating_sub(RATE_WINDOW_S);
        while let Some((&s, _)) = self.requests_per_s.first_key_value() {
            if s >= oldest_kept {
                break;
            }
            self.requests_per_s.pop_first();
        }
        while let Some((&s, _)) = self.failures_per_s.first_key_value() {
            if s >= oldest_kept {
                break;
            }
            self.failures_per_s.pop_first();
        }
    }

    /// Response time (µs) at quantile `q` in 0..=1. `q == 1.0` gives the exact
    /// maximum rather than the histogram bucket's upper edge.
    pub fn response_time_at_quantile_us(&self, q: f64) -> u64 {
        if self.num_requests == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max_response_time_us;
        }
        self.histogram
            .value_at_quantile(q)
            .min(self.max_response_time_us)
    }

    /// Freezes this entry into a snapshot. `run_start_s` and `now_s` are unix
    /// times used for the whole-run rates; "current" rates average the last
    /// 10 complete seconds, as Locust's `current_rps` does.
    pub fn snapshot(&self, run_start_s: f64, now_s: f64) -> EntrySnapshot {
        let n = self.num_requests;
        let elapsed_s = (now_s - run_start_s).max(1e-3);
        let (current_rps, current_fail_per_s) = self.current_rates(run_start_s, now_s);
        EntrySnapshot {
            method: self.method.clone(),
            name: self.name.clone(),
            num_requests: n,
            num_failures: self.num_failures,
            avg_response_time_us: if n == 0 {
                0.0
            } else {
                self.total_response_time_us as f64 / n as f64
            },
            min_response_time_us: self.min_response_time_us.unwrap_or(0),
            max_response_time_us: self.max_response_time_us,
            median_response_time_us: self.response_time_at_quantile_us(0.5),
            avg_content_bytes: if n == 0 {
                0.0
            } else {
                self.total_content_bytes as f64 / n as f64
            },
            total_content_bytes: self.total_content_bytes,
            rps: n as f64 / elapsed_s,
            fail_per_s: self.num_failures as f64 / elapsed_s,
            current_rps,
            current_fail_per_s,
            fail_ratio: if n == 0 {
                0.0
            } else {
                self.num_failures as f64 / n as f64
            },
            percentiles_us: PERCENTILES
                .iter()
                .map(|&q| (format_quantile(q), self.response_time_at_quantile_us(q)))
                .collect(),
            first_request_s: self.first_request_s,
            last_request_s: self.last_request_s,
            corrected_percentiles_us: percentiles_of(&self.corrected_histogram),
            ttfb_percentiles_us: percentiles_of(&self.ttfb_histogram),
        }
    }

    fn current_rates(&self, run_start_s: f64, now_s: f64) -> (f64, f64) {
        // The second in progress is incomplete; average the 10 before it,
        // or fewer in a run's first seconds (as Locust does), so that the
        // rate is not diluted by seconds before the start.
        let end = now_s as u64;
        let start = end
            .saturating_sub(10)
            .max(run_start_s.ceil() as u64)
            .min(end);
        let span = (end - start).max(1) as f64;
        let sum = |m: &BTreeMap<u64, u64>| m.range(start..end).map(|(_, n)| *n).sum::<u64>() as f64;
        (
            sum(&self.requests_per_s) / span,
            sum(&self.failures_per_s) / span,
        )
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// One entry of one history row: rates and percentiles over the last window
/// (µs), next to the whole-run totals at that moment.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub method: String,
    pub name: String,
    /// Requests and failures per second over the window.
    pub rps: f64,
    pub fail_per_s: f64,
    pub window_requests: u64,
    /// `("50%", µs)` pairs over the window only; 0 for an empty window.
    pub percentiles_us: Vec<(String, u64)>,
    pub total_requests: u64,
    pub total_failures: u64,
    pub total_median_us: u64,
    pub total_avg_us: f64,
    pub total_min_us: u64,
    pub total_max_us: u64,
    pub total_avg_content_bytes: f64,
}

/// "0.5" -> "50%", "0.999" -> "99.9%": the labels of Locust's CSV columns.
pub fn format_quantile(q: f64) -> String {
    let pct = q * 100.0;
    let text = format!("{pct:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A frozen, serialisable view of one [`StatsEntry`].
///
/// Times are µs, sizes are bytes, rates are per second. `percentiles_us` holds
/// `("50%", value)` pairs in the order of [`PERCENTILES`].
#[derive(Debug, Clone, Serialize)]
pub struct EntrySnapshot {
    pub method: String,
    pub name: String,
    pub num_requests: u64,
    pub num_failures: u64,
    pub avg_response_time_us: f64,
    pub min_response_time_us: u64,
    pub max_response_time_us: u64,
    pub median_response_time_us: u64,
    pub avg_content_bytes: f64,
    pub total_content_bytes: u64,
    pub rps: f64,
    pub fail_per_s: f64,
    pub current_rps: f64,
    pub current_fail_per_s: f64,
    pub fail_ratio: f64,
    pub percentiles_us: Vec<(String, u64)>,
    pub first_request_s: Option<f64>,
    pub last_request_s: Option<f64>,
    /// Percentiles corrected for coordinated omission (open workload
    /// model only; None otherwise), Locust's columns.
    pub corrected_percentiles_us: Option<Vec<(String, u64)>>,
    /// Percentiles of the time to first byte, Locust's columns; None when
    /// no request had one (all failed before a response, or went through a
    /// proxy, whose client does not say).
    pub ttfb_percentiles_us: Option<Vec<(String, u64)>>,
}

/// The [`PERCENTILES`] of `h` (its exact maximum at 100 %); None when empty.
fn percentiles_of(h: &Histogram<u64>) -> Option<Vec<(String, u64)>> {
    (!h.is_empty()).then(|| {
        PERCENTILES
            .iter()
            .map(|&q| {
                let v = if q >= 1.0 {
                    h.max()
                } else {
                    h.value_at_quantile(q)
                };
                (format_quantile(q), v)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_labels_match_locust_columns() {
        let labels: Vec<String> = PERCENTILES.iter().map(|&q| format_quantile(q)).collect();
        assert_eq!(
            labels,
            ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
        );
    }

    #[test]
    fn percentiles_are_exact_to_three_digits() {
        let mut e = StatsEntry::new("GET", "/");
        for v in 1..=1000u64 {
            e.record(v * 1000, 10, false, 100.0);
        }
        // 1..1000 ms: the median is 500 ms, within 0.1 %.
        let p50 = e.response_time_at_quantile_us(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 <= 0.001, "p50 = {p50}");
        let p99 = e.response_time_at_quantile_us(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 <= 0.001, "p99 = {p99}");
        assert_eq!(e.response_time_at_quantile_us(1.0), 1_000_000);
        assert_eq!(e.min_response_time_us, Some(1000));
    }

    #[test]
    fn merge_equals_one_histogram_over_all_samples() {
        let mut whole = StatsEntry::new("GET", "/a");
        let mut parts = [StatsEntry::new("GET", "/a"), StatsEntry::new("GET", "/a")];
        for i in 0..5000u64 {
            let v = (i * 7919) % 100_000 + 1;
            whole.record(v, 1, i % 10 == 0, 50.0 + (i % 3) as f64);
            parts[(i % 2) as usize].record(v, 1, i % 10 == 0, 50.0 + (i % 3) as f64);
        }
        let mut merged = StatsEntry::new("GET", "/a");
        for part in &parts {
            merged.merge_sparse(&SparseEntry {
                num_requests: part.num_requests,
                num_failures: part.num_failures,
                total_response_time_us: part.total_response_time_us,
                min_response_time_us: part.min_response_time_us,
                max_response_time_us: part.max_response_time_us,
                counts: part
                    .histogram
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect(),
                requests_per_s: part.requests_per_s.iter().map(|(s, n)| (*s, *n)).collect(),
                ..SparseEntry::default()
            });
        }
        for &q in &PERCENTILES {
            assert_eq!(
                merged.response_time_at_quantile_us(q),
                whole.response_time_at_quantile_us(q)
            );
        }
        assert_eq!(merged.num_requests, 5000);
        assert_eq!(merged.num_failures, 500);
        assert_eq!(merged.requests_per_s, whole.requests_per_s);
    }

    #[test]
    fn windows_hold_only_what_came_since_the_last_tick() {
        let mut e = StatsEntry::new("GET", "/");
        for v in [1000, 2000, 3000] {
            e.record(v, 1, false, 1.0);
        }
        let first = e.take_window(1.0);
        assert_eq!(first.window_requests, 3);
        assert_eq!(first.percentiles_us.last().unwrap().1, 3000);
        e.record(500_000, 1, true, 2.0);
        let second = e.take_window(2.0);
        assert_eq!(
            (second.window_requests, second.rps, second.fail_per_s),
            (1, 0.5, 0.5)
        );
        // The window's p50 is the one new sample; the totals cover all four.
        assert!((second.percentiles_us[0].1 as f64 - 500_000.0).abs() <= 500.0);
        assert_eq!((second.total_requests, second.total_max_us), (4, 500_000));
        assert_eq!(e.take_window(1.0).window_requests, 0);
    }

    #[test]
    fn current_rate_averages_the_last_complete_seconds() {
        let mut e = StatsEntry::new("GET", "/");
        for s in 0..30u64 {
            for _ in 0..5 {
                e.record(1, 0, false, 1000.0 + s as f64);
            }
        }
        let snap = e.snapshot(1000.0, 1030.5);
        assert!(
            (snap.current_rps - 5.0).abs() < 1e-9,
            "{}",
            snap.current_rps
        );
        assert!(e.requests_per_s.len() <= 21);
        // Two complete seconds into a run: their average, not a tenth of it.
        let young = e.snapshot(1027.5, 1030.5);
        assert!(
            (young.current_rps - 5.0).abs() < 1e-9,
            "{}",
            young.current_rps
        );
    }
}
