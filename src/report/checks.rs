//! Pass/fail checks on the final statistics, for CI.
//!
//! Grammar: `[[METHOD] NAME:] METRIC OP VALUE`, for example `p95 < 200ms`,
//! `GET /items: p99 < 500ms`, `rps > 1000`, `fail_ratio < 0.01`.
//!
//! - METRIC: `p50` `p66` `p75` `p80` `p90` `p95` `p98` `p99` `p99.9`
//!   `p99.99` `p100`, `avg`, `median`, `min`, `max` (times; VALUE takes `us`,
//!   `ms` (the default) or `s`); `rps`; `fail_ratio` (VALUE may be `1%`);
//!   `failures` and `requests` (counts).
//! - OP: `<`, `<=`, `>`, `>=`, `==`.
//! - Without a scope the check reads the Aggregated row.
//!
//! locust-plugins' `--check-fail-ratio R`, `--check-rps N` and
//! `--check-avg-response-time MS` are `fail_ratio <= R`, `rps >= N` and
//! `avg <= MS ms` (a breach is a ratio above R, and so on).

use serde::Serialize;
use thiserror::Error;

use crate::stats::{EntrySnapshot, StatsSnapshot, PERCENTILES};

/// A check that does not parse; the message shows the accepted form.
#[derive(Debug, Error, PartialEq)]
#[error("bad check '{text}': {detail}; write it as [[METHOD] NAME:] METRIC OP VALUE, e.g. \"p95 < 200ms\" or \"GET /items: p99 < 500ms\"")]
pub struct CheckError {
    pub text: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    /// Quantile in 0..=1, one of [`PERCENTILES`].
    Percentile(f64),
    Avg,
    Median,
    Min,
    Max,
    Rps,
    FailRatio,
    Failures,
    Requests,
}

impl Metric {
    fn is_time(self) -> bool {
        matches!(
            self,
            Metric::Percentile(_) | Metric::Avg | Metric::Median | Metric::Min | Metric::Max
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => (actual - limit).abs() < 1e-9,
        }
    }
}

/// A parsed check. Time limits are held in µs.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub text: String,
    method: Option<String>,
    name: Option<String>,
    metric: Metric,
    op: Op,
    limit: f64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub passed: bool,
    /// The measured value as text, with its unit (`12.3 ms`, `512.4/s`).
    pub actual: String,
}

/// Parses one check.
///
/// # Errors
/// [`CheckError`] naming what is wrong.
pub fn parse_check(text: &str) -> Result<Check, CheckError> {
    let err = |detail: &str| CheckError {
        text: text.to_owned(),
        detail: detail.to_owned(),
    };
    let (scope, expr) = match text.rsplit_once(':') {
        Some((s, e)) => (Some(s.trim()), e.trim()),
        None => (None, text.trim()),
    };
    let (method, name) = match scope {
        None => (None, None),
        Some("") => return Err(err("the part before ':' is empty")),
        Some(s) => match s.split_once(' ') {
            Some((m, n)) if !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase()) => {
                (Some(m.to_owned()), Some(n.trim().to_owned()))
            }
            _ => (None, Some(s.to_owned())),
        },
    };
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (pos, op_text, op) = ops
        .iter()
        .filter_map(|&(t, op)| expr.find(t).map(|p| (p, t, op)))
        .min_by_key(|&(p, t, _)| (p, usize::MAX - t.len()))
        .ok_or_else(|| err("no comparison (<, <=, >, >=, ==)"))?;
    let metric_text = expr[..pos].trim();
    let value_text = expr[pos + op_text.len()..].trim();
    let metric = match metric_text {
        "avg" => Metric::Avg,
        "median" => Metric::Median,
        "min" => Metric::Min,
        "max" => Metric::Max,
        "rps" => Metric::Rps,
        "fail_ratio" => Metric::FailRatio,
        "failures" => Metric::Failures,
        "requests" => Metric::Requests,
        p if p.starts_with('p') => {
            let q = p[1..].parse::<f64>().map_err(|_| err(&format!("unknown metric '{p}'")))? / 100.0;
            if !PERCENTILES.iter().any(|&x| (x - q).abs() < 1e-12) {
                return Err(err(&format!(
                    "'{p}' is not a reported percentile: use p50, p66, p75, p80, p90, p95, p98, p99, p99.9, p99.99 or p100"
                )));
            }
            Metric::Percentile(q)
        }
        other => {
            return Err(err(&format!(
                "unknown metric '{other}': use pNN, avg, median, min, max, rps, fail_ratio, failures or requests"
            )))
        }
    };
    let limit = parse_value(metric, value_text)
        .ok_or_else(|| err(&format!("'{value_text}' is not a value for {metric_text}")))?;
    Ok(Check {
        text: text.trim().to_owned(),
        method,
        name,
        metric,
        op,
        limit,
    })
}

fn parse_value(metric: Metric, text: &str) -> Option<f64> {
    let number = |t: &str| t.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    if metric.is_time() {
        for (suffix, to_us) in [("ms", 1000.0), ("us", 1.0), ("µs", 1.0), ("s", 1_000_000.0)] {
            if let Some(n) = text.strip_suffix(suffix) {
                return number(n).map(|v| v * to_us);
            }
        }
        return number(text).map(|v| v * 1000.0);
    }
    match metric {
        Metric::Rps => number(text.strip_suffix("/s").unwrap_or(text)),
        Metric::FailRatio => match text.strip_suffix('%') {
            Some(p) => number(p).map(|v| v / 100.0),
            None => number(text),
        },
        _ => number(text),
    }
}

fn find_entry<'a>(snap: &'a StatsSnapshot, c: &Check) -> Result<&'a EntrySnapshot, String> {
    let Some(name) = &c.name else {
        return Ok(&snap.total);
    };
    let matches: Vec<&EntrySnapshot> = snap
        .entries
        .iter()
        .filter(|e| &e.name == name && c.method.as_ref().is_none_or(|m| &e.method == m))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no requests named '{name}'")),
        _ => Err(format!("'{name}' has several methods: put one before it")),
    }
}

/// Evaluates every check on the final statistics.
pub fn evaluate(checks: &[Check], snap: &StatsSnapshot) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|c| match find_entry(snap, c) {
            Err(why) => CheckResult {
                check: c.text.clone(),
                passed: false,
                actual: why,
            },
            Ok(e) => {
                let (value, shown) = match c.metric {
                    Metric::Percentile(q) => {
                        let v = e
                            .percentiles_us
                            .iter()
                            .zip(PERCENTILES)
                            .find(|(_, p)| (*p - q).abs() < 1e-12)
                            .map_or(0, |((_, v), _)| *v);
                        (v as f64, format!("{:.3} ms", v as f64 / 1000.0))
                    }
                    Metric::Avg => (
                        e.avg_response_time_us,
                        format!("{:.3} ms", e.avg_response_time_us / 1000.0),
                    ),
                    Metric::Median => (
                        e.median_response_time_us as f64,
                        format!("{:.3} ms", e.median_response_time_us as f64 / 1000.0),
                    ),
                    Metric::Min => (
                        e.min_response_time_us as f64,
                        format!("{:.3} ms", e.min_response_time_us as f64 / 1000.0),
                    ),
                    Metric::Max => (
                        e.max_response_time_us as f64,
                        format!("{:.3} ms", e.max_response_time_us as f64 / 1000.0),
                    ),
                    Metric::Rps => (e.rps, format!("{:.2}/s", e.rps)),
                    Metric::FailRatio => (e.fail_ratio, format!("{:.4}", e.fail_ratio)),
                    Metric::Failures => (e.num_failures as f64, e.num_failures.to_string()),
                    Metric::Requests => (e.num_requests as f64, e.num_requests.to_string()),
                };
                CheckResult {
                    check: c.text.clone(),
                    passed: c.op.holds(value, c.limit),
                    actual: shown,
                }
            }
        })
        .collect()
}

/// The checks table printed at the end of a run.
pub fn results_table(results: &[CheckResult]) -> String {
    let width = results
        .iter()
        .map(|r| r.check.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("Checks\n{:<6} {:<width$}  actual\n", "result", "check");
    for r in results {
        out.push_str(&format!(
            "{:<6} {:<width$}  {}\n",
            if r.passed { "PASS" } else { "FAIL" },
            r.check,
            r.actual
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestSample, Stats};

    fn snap() -> StatsSnapshot {
        let mut s = Stats::new(0.0);
        for i in 1..=100u64 {
            for (method, name) in [("GET", "/items"), ("POST", "/items"), ("GET", "/fast")] {
                s.record(&RequestSample {
                    method: method.into(),
                    name: name.into(),
                    response_time_us: i * 1000,
                    content_bytes: 1,
                    error: (i % 50 == 0).then(|| "x".into()),
                    at_s: 5.0,
                    intended_lag_us: None,
                    ttfb_us: None,
                });
            }
        }
        s.snapshot(10.0)
    }

    fn passes(text: &str) -> bool {
        let r = evaluate(&[parse_check(text).unwrap()], &snap());
        r[0].passed
    }

    #[test]
    fn parses_and_evaluates_the_documented_forms() {
        assert!(passes("p95 < 200ms"));
        assert!(!passes("p95 < 50ms"));
        assert!(passes("p50 <= 0.051s"));
        assert!(!passes("p50 < 0.049s"));
        assert!(passes("GET /items: p99 < 500ms"));
        assert!(passes("/fast: max == 100"));
        assert!(passes("rps > 29"));
        assert!(!passes("rps > 31/s"));
        assert!(passes("fail_ratio < 0.03"));
        assert!(passes("fail_ratio <= 2%"));
        assert!(passes("requests == 300"));
        assert!(passes("failures >= 6"));
    }

    #[test]
    fn scope_problems_fail_the_check_with_a_reason() {
        let r = evaluate(
            &[
                parse_check("/nope: p95 < 1s").unwrap(),
                parse_check("/items: p95 < 1s").unwrap(),
            ],
            &snap(),
        );
        assert!(!r[0].passed && r[0].actual.contains("no requests named"));
        assert!(!r[1].passed && r[1].actual.contains("several methods"));
    }

    #[test]
    fn bad_checks_are_errors() {
        for bad in [
            "p97 < 1s",
            "speed > 3",
            "p95 200ms",
            "p95 < fast",
            ": p95 < 1",
        ] {
            let e = parse_check(bad).unwrap_err();
            assert!(e.to_string().contains("METRIC OP VALUE"), "{bad}: {e}");
        }
    }
}
