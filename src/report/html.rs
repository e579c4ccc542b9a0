//! The self-contained HTML report of `--html FILE`: tables rendered here,
//! charts drawn in the browser by the vendored uPlot from the embedded
//! history. Opens with no network.

use minijinja::{context, Environment, Value};
use serde::{Deserialize, Serialize};

use crate::stats::{HistoryRow, StatsSnapshot};

const TEMPLATE: &str = include_str!("../../assets/report.html.j2");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");

/// What the report says about the run besides its statistics.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReportMeta {
    pub host: String,
    /// The aiotestfile's path.
    pub script: String,
    pub user_classes: Vec<String>,
    pub peak_users: u64,
    pub version: String,
}

/// One chart point: a history row's Aggregated figures, compact. The HTML
/// report and the web UI draw the same points.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Unix seconds.
    t: f64,
    users: u64,
    rps: f64,
    fps: f64,
    /// Requests in the window (0: no percentiles).
    n: u64,
    /// p50, p95, p99 of the window, in ms.
    p: [f64; 3],
}

impl Point {
    /// The Aggregated figures of history row `h`, percentiles in ms.
    pub fn from_row(h: &HistoryRow) -> Self {
        let pick = |i: usize| {
            h.total
                .percentiles_us
                .get(i)
                .map_or(0.0, |(_, us)| *us as f64 / 1000.0)
        };
        Point {
            t: h.timestamp_s,
            users: h.user_count,
            rps: h.total.rps,
            fps: h.total.fail_per_s,
            n: h.total.window_requests,
            // PERCENTILES: 50% is index 0, 95% index 5, 99% index 7.
            p: [pick(0), pick(5), pick(7)],
        }
    }
}

/// µs as the report shows ms: 2 decimals below 10 ms, whole above.
fn ms(us: Value) -> String {
    let v = f64::try_from(us).unwrap_or(0.0) / 1000.0;
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a unix time (civil-from-days, proleptic
/// Gregorian; H. Hinnant's algorithm).
pub fn utc_text(unix_s: f64) -> String {
    let secs = unix_s.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn duration_text(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

/// Renders the report for a final snapshot (with history).
///
/// # Errors
/// A template error, which would be a bug in the bundled template.
pub fn render(snap: &StatsSnapshot, meta: &ReportMeta) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.add_filter("ms", ms);
    // The .html name turns on HTML auto-escaping.
    env.add_template("report.html", TEMPLATE)?;
    let points: Vec<Point> = snap.history.iter().map(Point::from_row).collect();
    let mut rows = snap.entries.clone();
    rows.push(snap.total.clone());
    env.get_template("report.html")?.render(context! {
        meta => meta,
        snap => snap,
        rows => rows,
        history => points,
        period => context! {
            start => utc_text(snap.start_s),
            end => utc_text(snap.now_s),
            duration => duration_text(snap.now_s - snap.start_s),
        },
        uplot_js => Value::from_safe_string(UPLOT_JS.to_owned()),
        uplot_css => Value::from_safe_string(UPLOT_CSS.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestSample, Stats};

    #[test]
    fn utc_text_matches_known_dates() {
        assert_eq!(utc_text(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_795_315_243.9), "2026-11-22 02:40:43 UTC");
    }

    #[test]
    fn report_holds_tables_charts_and_escapes_names() {
        let mut s = Stats::new(1_000.0);
        s.record(&RequestSample {
            method: "GET".into(),
            name: "/search?q=<script>".into(),
            response_time_us: 2_500,
            content_bytes: 5,
            error: Some("HTTPError: 500 Server Error: x".into()),
            at_s: 1_001.0,
            intended_lag_us: None,
            ttfb_us: None,
        });
        s.record_error("ValueError: </script>", "tb", "local");
        let mut snap = s.snapshot(1_002.0);
        snap.history = vec![s.tick(1_002.0, 3, false)];
        let meta = ReportMeta {
            host: "http://127.0.0.1:1".into(),
            script: "aiotestfile.py".into(),
            user_classes: vec!["Shopper".into()],
            peak_users: 3,
            version: "0.1.0".into(),
        };
        let html = render(&snap, &meta).unwrap();
        assert!(html.contains("search?q=&lt;script&gt;"));
        assert!(!html.contains("ValueError: </script>"));
        assert!(html.contains("uPlot"));
        assert!(html.contains("chart-response-times"));
        assert!(html.contains("<td>2.50</td>")); // the 2.5 ms response time, in ms
                                                 // Nothing is fetched: no external script, stylesheet or font.
        assert!(!html.contains("<script src") && !html.contains("<link"));
    }
}
