//! The four CSV files of `--csv PREFIX`, with Locust's header lines byte for
//! byte, so dashboards and scripts that parse Locust's files read ours.
//!
//! Times are ms (µs precision, so up to 3 decimals), sizes bytes, rates per
//! second, timestamps unix seconds (the failures' first and last seen: UTC
//! `2026-12-02T04:13:11Z`, as Locust writes them). In `_stats_history.csv` the requests/s
//! and percentile columns cover the last stats window (1 s by default); the
//! `Total ...` columns cover the whole run. Locust fills the percentile
//! columns there with whole-run figures; ours follow the window.

use crate::stats::{EntrySnapshot, HistoryEntry, HistoryRow, StatsSnapshot, AGGREGATED_NAME};

pub const STATS_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";
pub const HISTORY_HEADER: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size";
pub const FAILURES_HEADER: &str = "Method,Name,Error,Occurrences,First Seen,Last Seen";
pub const EXCEPTIONS_HEADER: &str = "Count,Message,Traceback,Nodes";

/// µs as ms, with trailing zeros dropped: 1250 -> "1.25", 54000 -> "54".
pub fn ms(us: u64) -> String {
    trim(format!("{:.3}", us as f64 / 1000.0))
}

fn ms_f(us: f64) -> String {
    trim(format!("{:.3}", us / 1000.0))
}

fn num(v: f64, decimals: usize) -> String {
    trim(format!("{v:.decimals$}"))
}

/// Unix seconds as Locust's `format_utc_timestamp` writes them, whole
/// seconds in UTC: `1796184791.9` -> `2026-12-02T04:13:11Z`.
pub fn utc_timestamp(unix_s: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_s.trunc() as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn trim(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn write_rows(header: &str, rows: Vec<Vec<String>>) -> String {
    let mut w = ::csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    for row in rows {
        w.write_record(&row).expect("writing to memory cannot fail");
    }
    let body = String::from_utf8(w.into_inner().expect("flushing memory cannot fail"))
        .expect("CSV of UTF-8 strings is UTF-8");
    format!("{header}\n{body}")
}

fn label(method: &str, name: &str) -> [String; 2] {
    if name == AGGREGATED_NAME && method.is_empty() {
        [String::new(), AGGREGATED_NAME.to_owned()]
    } else {
        [method.to_owned(), name.to_owned()]
    }
}

fn stats_row(e: &EntrySnapshot) -> Vec<String> {
    let mut row: Vec<String> = label(&e.method, &e.name).into();
    let empty = e.num_requests == 0;
    row.extend([
        e.num_requests.to_string(),
        e.num_failures.to_string(),
        ms(e.median_response_time_us),
        ms_f(e.avg_response_time_us),
        ms(e.min_response_time_us),
        ms(e.max_response_time_us),
        num(e.avg_content_bytes, 2),
        num(e.rps, 6),
        num(e.fail_per_s, 6),
    ]);
    row.extend(
        e.percentiles_us
            .iter()
            .map(|(_, v)| if empty { "N/A".into() } else { ms(*v) }),
    );
    row
}

/// `PREFIX_stats.csv`: one row per (method, name), then Aggregated.
pub fn stats_csv(snap: &StatsSnapshot) -> String {
    let mut rows: Vec<Vec<String>> = snap.entries.iter().map(stats_row).collect();
    rows.push(stats_row(&snap.total));
    write_rows(STATS_HEADER, rows)
}

fn history_row(timestamp_s: f64, user_count: u64, e: &HistoryEntry) -> Vec<String> {
    let mut row = vec![format!("{}", timestamp_s as u64), user_count.to_string()];
    row.extend(label(&e.method, &e.name));
    row.push(num(e.rps, 6));
    row.push(num(e.fail_per_s, 6));
    let empty = e.window_requests == 0;
    row.extend(
        e.percentiles_us
            .iter()
            .map(|(_, v)| if empty { "N/A".into() } else { ms(*v) }),
    );
    row.extend([
        e.total_requests.to_string(),
        e.total_failures.to_string(),
        ms(e.total_median_us),
        ms_f(e.total_avg_us),
        ms(e.total_min_us),
        ms(e.total_max_us),
        num(e.total_avg_content_bytes, 2),
    ]);
    row
}

/// `PREFIX_stats_history.csv`: per history row, each entry's row (with full
/// history) and then the Aggregated row.
pub fn history_csv(history: &[HistoryRow]) -> String {
    history_csv_part(history, true)
}

/// Rows of `PREFIX_stats_history.csv` for `history`, after the header line
/// only when `with_header`: what a run appends to the file each second.
pub fn history_csv_part(history: &[HistoryRow], with_header: bool) -> String {
    let mut rows = Vec::new();
    for h in history {
        for e in &h.entries {
            rows.push(history_row(h.timestamp_s, h.user_count, e));
        }
        rows.push(history_row(h.timestamp_s, h.user_count, &h.total));
    }
    let text = write_rows(HISTORY_HEADER, rows);
    if with_header {
        text
    } else {
        text[HISTORY_HEADER.len() + 1..].to_owned()
    }
}

/// `PREFIX_failures.csv`: one row per (method, name, error).
pub fn failures_csv(snap: &StatsSnapshot) -> String {
    let rows = snap
        .failures
        .iter()
        .map(|f| {
            vec![
                f.method.clone(),
                f.name.clone(),
                f.error.clone(),
                f.occurrences.to_string(),
                utc_timestamp(f.first_seen_s),
                utc_timestamp(f.last_seen_s),
            ]
        })
        .collect();
    write_rows(FAILURES_HEADER, rows)
}

/// `PREFIX_exceptions.csv`: one row per distinct user-code error.
pub fn exceptions_csv(snap: &StatsSnapshot) -> String {
    let rows = snap
        .errors
        .iter()
        .map(|e| {
            vec![
                e.count.to_string(),
                e.message.clone(),
                e.traceback.clone(),
                e.nodes.join(", "),
            ]
        })
        .collect();
    write_rows(EXCEPTIONS_HEADER, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestSample, Stats};

    fn snapshot() -> (StatsSnapshot, Vec<HistoryRow>) {
        let mut s = Stats::new(100.0);
        for (i, rt) in [1250u64, 2500, 54_000].iter().enumerate() {
            s.record(&RequestSample {
                method: "GET".into(),
                name: "/a, \"quoted\"".into(),
                response_time_us: *rt,
                content_bytes: 10,
                error: (i == 2).then(|| "HTTPError: 500 Server Error: x".into()),
                at_s: 101.0,
                intended_lag_us: None,
                ttfb_us: None,
            });
        }
        s.record_error(
            "ValueError: boom",
            "  File \"f.py\", line 3\n    raise",
            "local",
        );
        let h = vec![s.tick(102.0, 5, true)];
        (s.snapshot(102.0), h)
    }

    #[test]
    fn headers_are_locusts() {
        let (snap, history) = snapshot();
        assert_eq!(stats_csv(&snap).lines().next().unwrap(), STATS_HEADER);
        assert_eq!(
            history_csv(&history).lines().next().unwrap(),
            HISTORY_HEADER
        );
        assert_eq!(failures_csv(&snap).lines().next().unwrap(), FAILURES_HEADER);
        assert_eq!(
            exceptions_csv(&snap).lines().next().unwrap(),
            EXCEPTIONS_HEADER
        );
    }

    #[test]
    fn values_are_ms_and_fields_are_quoted() {
        let (snap, history) = snapshot();
        let stats = stats_csv(&snap);
        let mut reader = ::csv::Reader::from_reader(stats.as_bytes());
        let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[0][1], "/a, \"quoted\"");
        assert_eq!(&rows[0][2], "3");
        assert_eq!(&rows[0][3], "1");
        assert_eq!(&rows[0][7], "54");
        assert_eq!(&rows[1][0], "");
        assert_eq!(&rows[1][1], "Aggregated");
        let hist = history_csv(&history);
        assert_eq!(hist.lines().count(), 3);
        assert!(hist.lines().nth(1).unwrap().starts_with("102,5,GET,"));
        assert!(exceptions_csv(&snap).contains("\"  File \"\"f.py\"\", line 3\n    raise\""));
    }

    #[test]
    fn ms_formatting() {
        assert_eq!(ms(1250), "1.25");
        assert_eq!(ms(54_000), "54");
        assert_eq!(ms(731), "0.731");
        assert_eq!(ms(0), "0");
    }

    #[test]
    fn failure_timestamps_are_locusts_utc_seconds() {
        assert_eq!(utc_timestamp(1_796_184_791.9), "2026-12-02T04:13:11Z");
        assert_eq!(utc_timestamp(0.0), "1970-01-01T00:00:00Z");
    }
}
