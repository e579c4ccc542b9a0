//! All the statistics of a run: request entries, failures and user errors.

use std::collections::HashMap;

use serde::Serialize;

use super::entry::{EntrySnapshot, HistoryEntry, SparseEntry, StatsEntry};

/// Name of the row that sums every entry, as in Locust.
pub const AGGREGATED_NAME: &str = "Aggregated";

/// One finished request (or any timed action reported through
/// `events.request.fire`). Produced by the engine, consumed by [`Stats`].
#[derive(Debug, Clone)]
pub struct RequestSample {
    /// The request type: an HTTP method, or any label for non-HTTP work.
    pub method: String,
    /// The stats name: the `name=` argument, else the URL as given.
    pub name: String,
    /// From issuing the request to its last body byte, in µs.
    pub response_time_us: u64,
    pub content_bytes: u64,
    /// `Some(text)` makes this a failure, grouped by that text.
    pub error: Option<String>,
    /// Unix time (s) when the request ended.
    pub at_s: f64,
    /// In the open workload model: how late (µs) the request's iteration
    /// started after its intended start. The sample then also counts as
    /// Time to first byte (µs), when the request had a response head.
    pub ttfb_us: Option<u64>,
    /// `response_time_us + intended_lag_us` in the corrected histogram
    /// (coordinated-omission correction, as wrk2 does). None elsewhere.
    pub intended_lag_us: Option<u64>,
}

/// Occurrences of one failure: (method, name, error text).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FailureEntry {
    pub method: String,
    pub name: String,
    pub error: String,
    pub occurrences: u64,
    pub first_seen_s: f64,
    pub last_seen_s: f64,
}

/// Occurrences of one distinct exception raised in user code.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ErrorEntry {
    pub message: String,
    pub traceback: String,
    pub count: u64,
    /// Where it happened: "local", or worker ids in distributed mode.
    pub nodes: Vec<String>,
}

/// Distinct (method, name) rows a run keeps by default (`--max-names`).
///
/// NOTE: the commonest scripting mistake is a URL with an id in it and no
/// `name=`: 20 users requesting `/hello?id=<n>` made 153,464 rows in 10 s,
/// at about 60 KB each (9.2 GB), and the run and its reports never ended.
pub const DEFAULT_MAX_NAMES: usize = 2_000;

/// The row, per method, that counts the requests under names past the
/// limit: totals stay exact, and the reports stay bounded.
pub const OTHER_NAMES: &str = "(other names)";

/// The statistics of one run (or, on a worker, of one report interval).
///
/// Fed by [`Stats::record`] and [`Stats::record_error`]; combined across
/// workers by [`Stats::merge_sparse`]. Plain data: the aggregator thread owns it.
#[derive(Debug, Clone)]
pub struct Stats {
    entries: Rows,
    total: StatsEntry,
    failures: HashMap<(String, String, String), FailureEntry>,
    errors: HashMap<(String, String), ErrorEntry>,
    /// Unix time (s) the statistics started (run start, or last reset).
    pub start_s: f64,
    /// Unix time (s) of the last history tick (or the start).
    last_tick_s: f64,
    /// Rows kept before new names count in [`OTHER_NAMES`].
    max_names: usize,
}

/// The request rows, by method and then name: found from borrowed text,
/// with nothing allocated for a row that exists.
// NOTE: keyed by an owned (method, name) pair before, each request made and
// freed three Strings to find its row (callgrind, 2026-12-02).
#[derive(Debug, Clone, Default)]
struct Rows {
    /// Each row's place in `rows`.
    index: HashMap<String, HashMap<String, usize>>,
    rows: Vec<StatsEntry>,
}

impl Rows {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn get(&self, method: &str, name: &str) -> Option<&StatsEntry> {
        let at = *self.index.get(method)?.get(name)?;
        Some(&self.rows[at])
    }

    fn get_or_insert(&mut self, method: &str, name: &str) -> &mut StatsEntry {
        if let Some(&at) = self.index.get(method).and_then(|names| names.get(name)) {
            return &mut self.rows[at];
        }
        let at = self.rows.len();
        self.rows.push(StatsEntry::new(method, name));
        self.index
            .entry(method.to_owned())
            .or_default()
            .insert(name.to_owned(), at);
        &mut self.rows[at]
    }

    fn values(&self) -> impl Iterator<Item = &StatsEntry> {
        self.rows.iter()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut StatsEntry> {
        self.rows.iter_mut()
    }
}

/// A worker's report decoded for merging ([`Stats::merge_sparse`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseStats {
    pub entries: Vec<SparseEntry>,
    pub failures: Vec<FailureEntry>,
    pub errors: Vec<ErrorEntry>,
}

/// One row of the statistics history, taken every stats interval: the
/// Aggregated entry, plus every entry when full history is on
/// (`--csv-full-history`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    pub timestamp_s: f64,
    pub user_count: u64,
    /// Length of the window the rates and percentiles cover, in seconds.
    pub window_s: f64,
    pub total: HistoryEntry,
    pub entries: Vec<HistoryEntry>,
}

impl Stats {
    pub fn new(start_s: f64) -> Self {
        Self {
            entries: Rows::default(),
            total: StatsEntry::new("", AGGREGATED_NAME),
            failures: HashMap::new(),
            errors: HashMap::new(),
            start_s,
            last_tick_s: start_s,
            max_names: DEFAULT_MAX_NAMES,
        }
    }

    /// These statistics, keeping at most `max_names` distinct rows (at
    /// least 1).
    pub fn with_max_names(mut self, max_names: usize) -> Self {
        self.max_names = max_names.max(1);
        self
    }

    /// The row a request named `(method, name)` counts in: its own, or
    /// [`OTHER_NAMES`] once `max_names` rows exist and it has none. Made
    /// when missing.
    fn row(&mut self, method: &str, name: &str) -> &mut StatsEntry {
        let name =
            if self.entries.len() < self.max_names || self.entries.get(method, name).is_some() {
                name
            } else {
                OTHER_NAMES
            };
        self.entries.get_or_insert(method, name)
    }

    /// Closes the current window at `now_s` and returns its history row.
    /// Every entry's window restarts, whether or not `full_history` keeps its
    /// row.
    pub fn tick(&mut self, now_s: f64, user_count: u64, full_history: bool) -> HistoryRow {
        let window_s = (now_s - self.last_tick_s).max(1e-3);
        self.last_tick_s = now_s;
        let mut entries: Vec<HistoryEntry> = self
            .entries
            .values_mut()
            .map(|e| e.take_window(window_s))
            .collect();
        if full_history {
            entries.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        } else {
            entries.clear();
        }
        HistoryRow {
            timestamp_s: now_s,
            user_count,
            window_s,
            total: self.total.take_window(window_s),
            entries,
        }
    }

    pub fn record(&mut self, s: &RequestSample) {
        let failed = s.error.is_some();
        let entry = self.row(&s.method, &s.name);
        entry.record(s.response_time_us, s.content_bytes, failed, s.at_s);
        if let Some(ttfb_us) = s.ttfb_us {
            entry.record_ttfb(ttfb_us);
        }
        if let Some(lag_us) = s.intended_lag_us {
            entry.record_corrected(s.response_time_us.saturating_add(lag_us));
        }
        let name = failed.then(|| entry.name.clone());
        self.total
            .record(s.response_time_us, s.content_bytes, failed, s.at_s);
        if let Some(ttfb_us) = s.ttfb_us {
            self.total.record_ttfb(ttfb_us);
        }
        if let Some(lag_us) = s.intended_lag_us {
            self.total
                .record_corrected(s.response_time_us.saturating_add(lag_us));
        }
        if let (Some(error), Some(name)) = (&s.error, name) {
            let f = self
                .failures
                .entry((s.method.clone(), name.clone(), error.clone()))
                .or_insert_with(|| FailureEntry {
                    method: s.method.clone(),
                    name,
                    error: error.clone(),
                    occurrences: 0,
                    first_seen_s: s.at_s,
                    last_seen_s: s.at_s,
                });
            f.occurrences += 1;
            f.first_seen_s = f.first_seen_s.min(s.at_s);
            f.last_seen_s = f.last_seen_s.max(s.at_s);
        }
    }

    /// Counts one exception from user code; equal (message, traceback) pairs
    /// are one error with a count, so each distinct cause is shown once.
    pub fn record_error(&mut self, message: &str, traceback: &str, node: &str) {
        let e = self
            .errors
            .entry((message.to_owned(), traceback.to_owned()))
            .or_insert_with(|| ErrorEntry {
                message: message.to_owned(),
                traceback: traceback.to_owned(),
                count: 0,
                nodes: Vec::new(),
            });
        e.count += 1;
        if !e.nodes.iter().any(|n| n == node) {
            e.nodes.push(node.to_owned());
        }
    }

    fn merge_failure(&mut self, f: &FailureEntry) {
        let key = (f.method.clone(), f.name.clone(), f.error.clone());
        match self.failures.get_mut(&key) {
            Some(mine) => {
                mine.occurrences += f.occurrences;
                mine.first_seen_s = mine.first_seen_s.min(f.first_seen_s);
                mine.last_seen_s = mine.last_seen_s.max(f.last_seen_s);
            }
            None => {
                self.failures.insert(key, f.clone());
            }
        }
    }

    fn merge_error(&mut self, e: &ErrorEntry) {
        let mine = self
            .errors
            .entry((e.message.clone(), e.traceback.clone()))
            .or_insert_with(|| ErrorEntry {
                nodes: Vec::new(),
                count: 0,
                ..e.clone()
            });
        mine.count += e.count;
        for node in &e.nodes {
            if !mine.nodes.contains(node) {
                mine.nodes.push(node.clone());
            }
        }
    }

    /// Adds a worker's decoded report: each entry into its own row and
    /// into the Aggregated row, then its failures and errors.
    pub fn merge_sparse(&mut self, other: &SparseStats) {
        for e in &other.entries {
            self.total.merge_sparse(e);
            self.row(&e.method, &e.name).merge_sparse(e);
        }
        for f in &other.failures {
            if self.entries.get(&f.method, &f.name).is_some() {
                self.merge_failure(f);
            } else {
                let folded = FailureEntry {
                    name: OTHER_NAMES.to_owned(),
                    ..f.clone()
                };
                self.merge_failure(&folded);
            }
        }
        for e in &other.errors {
            self.merge_error(e);
        }
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &StatsEntry> {
        self.entries.values()
    }

    pub fn failures(&self) -> impl Iterator<Item = &FailureEntry> {
        self.failures.values()
    }

    pub fn errors(&self) -> impl Iterator<Item = &ErrorEntry> {
        self.errors.values()
    }

    /// The sum of all entries (Locust's "Aggregated" row).
    pub fn total(&self) -> &StatsEntry {
        &self.total
    }

    pub fn entry(&self, method: &str, name: &str) -> Option<&StatsEntry> {
        self.entries.get(method, name)
    }

    /// Freezes everything into a snapshot, with entries sorted by (name, method)
    /// and failures and errors by occurrences, most first.
    pub fn snapshot(&self, now_s: f64) -> StatsSnapshot {
        let mut entries: Vec<EntrySnapshot> = self
            .entries
            .values()
            .map(|e| e.snapshot(self.start_s, now_s))
            .collect();
        entries.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        let mut failures: Vec<FailureEntry> = self.failures.values().cloned().collect();
        failures.sort_by(|a, b| {
            b.occurrences
                .cmp(&a.occurrences)
                .then_with(|| (&a.method, &a.name, &a.error).cmp(&(&b.method, &b.name, &b.error)))
        });
        let mut errors: Vec<ErrorEntry> = self.errors.values().cloned().collect();
        errors.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.message.cmp(&b.message))
        });
        StatsSnapshot {
            start_s: self.start_s,
            now_s,
            entries,
            total: self.total.snapshot(self.start_s, now_s),
            failures,
            errors,
            history: Vec::new(),
            max_names: self.max_names,
        }
    }
}

/// A frozen view of all statistics: what the console, the reports and the
/// Python API read. Times are µs, rates per second, timestamps unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub start_s: f64,
    pub now_s: f64,
    pub entries: Vec<EntrySnapshot>,
    pub total: EntrySnapshot,
    pub failures: Vec<FailureEntry>,
    pub errors: Vec<ErrorEntry>,
    /// History rows, oldest first; only in final snapshots (see
    /// [`Recorder::snapshot_with_history`](super::Recorder::snapshot_with_history)).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryRow>,
    /// The limit on distinct rows ([`DEFAULT_MAX_NAMES`] unless set).
    #[serde(skip)]
    pub max_names: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named_sample(name: &str, failed: bool) -> RequestSample {
        RequestSample {
            method: "GET".into(),
            name: name.into(),
            response_time_us: 1000,
            content_bytes: 1,
            error: failed.then(|| "boom".into()),
            at_s: 1.0,
            intended_lag_us: None,
            ttfb_us: None,
        }
    }

    #[test]
    fn names_past_the_limit_fold_into_one_row_and_totals_stay_exact() {
        let mut stats = Stats::new(0.0).with_max_names(3);
        for i in 0..1000 {
            stats.record(&named_sample(&format!("/item?id={i}"), i % 10 == 0));
        }
        stats.record(&named_sample("/item?id=1", false)); // kept: its row exists
        let snap = stats.snapshot(2.0);
        let names: Vec<&str> = snap.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["(other names)", "/item?id=0", "/item?id=1", "/item?id=2"]
        );
        assert_eq!(snap.total.num_requests, 1001);
        assert_eq!(snap.entries[0].num_requests, 997);
        assert_eq!(snap.entries[2].num_requests, 2);
        let folded_failures: u64 = snap
            .failures
            .iter()
            .filter(|f| f.name == OTHER_NAMES)
            .map(|f| f.occurrences)
            .sum();
        assert_eq!(folded_failures, 99); // 100 failures, one of them /item?id=0's
    }

    fn sample(name: &str, rt: u64, error: Option<&str>) -> RequestSample {
        RequestSample {
            method: "GET".into(),
            name: name.into(),
            response_time_us: rt,
            content_bytes: 100,
            error: error.map(str::to_owned),
            at_s: 10.0,
            intended_lag_us: None,
            ttfb_us: None,
        }
    }

    #[test]
    fn failures_group_by_method_name_and_error() {
        let mut s = Stats::new(0.0);
        s.record(&sample("/a", 10, Some("500 Server Error")));
        s.record(&sample("/a", 10, Some("500 Server Error")));
        s.record(&sample("/a", 10, Some("timeout")));
        s.record(&sample("/b", 10, None));
        let snap = s.snapshot(20.0);
        assert_eq!(snap.total.num_requests, 4);
        assert_eq!(snap.total.num_failures, 3);
        assert_eq!(snap.failures.len(), 2);
        assert_eq!(snap.failures[0].occurrences, 2);
        assert_eq!(snap.entries.len(), 2);
        assert_eq!(snap.entries[0].name, "/a");
    }

    #[test]
    fn tick_reports_the_window_and_restarts_it() {
        let mut s = Stats::new(0.0);
        s.record(&sample("/a", 10, None));
        s.record(&sample("/b", 10, Some("x")));
        let row = s.tick(2.0, 7, true);
        assert_eq!((row.user_count, row.window_s), (7, 2.0));
        assert_eq!(
            (
                row.total.window_requests,
                row.total.rps,
                row.total.fail_per_s
            ),
            (2, 1.0, 0.5)
        );
        assert_eq!(row.entries.len(), 2);
        let quiet = s.tick(3.0, 7, false);
        assert_eq!(quiet.total.window_requests, 0);
        assert_eq!(quiet.total.total_requests, 2);
        assert!(quiet.entries.is_empty());
    }

    #[test]
    fn errors_count_once_per_distinct_cause_and_merge_nodes() {
        let mut a = Stats::new(0.0);
        a.record_error("ValueError: x", "tb1", "w0");
        a.record_error("ValueError: x", "tb1", "w0");
        let mut b = Stats::new(0.0);
        b.record_error("ValueError: x", "tb1", "w1");
        b.record_error("KeyError: y", "tb2", "w1");
        a.merge_sparse(&SparseStats {
            errors: b.snapshot(1.0).errors,
            ..SparseStats::default()
        });
        let snap = a.snapshot(1.0);
        assert_eq!(snap.errors.len(), 2);
        assert_eq!(snap.errors[0].count, 3);
        assert_eq!(snap.errors[0].nodes, ["w0", "w1"]);
    }
}
