//! `StatsSnapshot`: the run's statistics, frozen, as Python reads them.

use pyo3::prelude::*;

use super::engine::parse_checks;
use super::errors::{bad_shape, stopped};
use crate::report;
use crate::stats::{console, EntrySnapshot, StatsSnapshot, OTHER_NAMES};

/// One evaluated check as Python sees it: (check, passed, actual).
type CheckRow = (String, bool, String);

/// Frozen statistics of the run.
#[pyclass(name = "StatsSnapshot", module = "aiotest._core", frozen)]
pub struct PyStatsSnapshot {
    pub(super) inner: StatsSnapshot,
}

#[pymethods]
impl PyStatsSnapshot {
    /// The snapshot as JSON (times µs, rates per second); see docs/json.md.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(stopped)
    }
    /// The JSON report (`--json`, docs/json.md), indented: `meta` as for
    /// `html_report`, and the run's `task_runs`. Raises ValueError for bad
    /// metadata.
    fn json_report(&self, meta: &Bound<'_, PyAny>, task_runs: u64) -> PyResult<String> {
        let meta: report::html::ReportMeta =
            pythonize::depythonize(meta).map_err(|e| bad_shape("report metadata", e))?;
        let fields = serde_json::json!({ "user_count": meta.peak_users, "task_runs": task_runs });
        serde_json::to_string_pretty(&report::json_report(&self.inner, &meta, &fields))
            .map_err(stopped)
    }
    /// Locust's request table; `current` uses last-10-s rates.
    #[pyo3(signature = (current = false))]
    fn stats_table(&self, current: bool) -> String {
        console::stats_table(&self.inner, current)
    }
    fn percentile_table(&self) -> String {
        console::percentile_table(&self.inner)
    }
    /// The percentile table corrected for coordinated omission; "" when
    /// the run had no open-model iterations.
    fn corrected_percentile_table(&self) -> String {
        console::corrected_percentile_table(&self.inner)
    }
    fn failures_and_errors(&self) -> String {
        console::failures_and_errors(&self.inner)
    }
    /// `PREFIX_stats.csv` text, Locust's columns (ms).
    fn csv_stats(&self) -> String {
        report::csv::stats_csv(&self.inner)
    }
    /// `PREFIX_stats_history.csv` text (needs `with_history`).
    fn csv_history(&self) -> String {
        report::csv::history_csv(&self.inner.history)
    }
    fn csv_failures(&self) -> String {
        report::csv::failures_csv(&self.inner)
    }
    fn csv_exceptions(&self) -> String {
        report::csv::exceptions_csv(&self.inner)
    }
    /// The self-contained HTML report. `meta` (a dict) holds `host`,
    /// `script`, `user_classes`, `peak_users` and `version`. Raises
    /// ValueError for bad metadata.
    fn html_report(&self, meta: &Bound<'_, PyAny>) -> PyResult<String> {
        let meta: report::html::ReportMeta =
            pythonize::depythonize(meta).map_err(|e| bad_shape("report metadata", e))?;
        report::html::render(&self.inner, &meta).map_err(stopped)
    }
    /// Evaluates checks such as `"p95 < 200ms"`; returns the printed table
    /// and `(check, passed, actual)` per check. Raises ConfigError for a
    /// check that does not parse.
    fn evaluate_checks(
        &self,
        py: Python<'_>,
        checks: Vec<String>,
    ) -> PyResult<(String, Vec<CheckRow>)> {
        let parsed = parse_checks(py, &checks)?;
        let results = report::checks::evaluate(&parsed, &self.inner);
        let table = report::checks::results_table(&results);
        Ok((
            table,
            results
                .into_iter()
                .map(|r| (r.check, r.passed, r.actual))
                .collect(),
        ))
    }
    #[getter]
    fn num_requests(&self) -> u64 {
        self.inner.total.num_requests
    }
    #[getter]
    fn num_failures(&self) -> u64 {
        self.inner.total.num_failures
    }
    /// Requests counted in the `(other names)` rows: past the limit on
    /// distinct names, here or on a worker.
    #[getter]
    fn folded_requests(&self) -> u64 {
        let other = |e: &&EntrySnapshot| e.name == OTHER_NAMES;
        self.inner
            .entries
            .iter()
            .filter(other)
            .map(|e| e.num_requests)
            .sum()
    }
    /// The limit on distinct rows the statistics kept.
    #[getter]
    fn max_names(&self) -> usize {
        self.inner.max_names
    }
    /// Exceptions raised in user code, counted with repeats.
    #[getter]
    fn num_errors(&self) -> u64 {
        self.inner.errors.iter().map(|e| e.count).sum()
    }
}
