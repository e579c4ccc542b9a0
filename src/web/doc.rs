//! The statistics document of `GET /stats/requests` and of the web UI's live
//! updates, in the shape of Locust's `/stats/requests` (locust/web.py), so
//! scripts written against Locust's master read ours.
//!
//! As in Locust, times here are milliseconds (floats) and rates per second;
//! the Aggregated entry comes last in `stats`.

use serde_json::{json, Map, Value};

use crate::stats::{EntrySnapshot, HistoryRow, StatsSnapshot};

/// Locust caps both lists at 500 rows; so do we.
const MAX_ROWS: usize = 500;

/// µs as ms, rounded to whole µs (3 decimals).
fn ms(us: f64) -> f64 {
    (us / 1000.0 * 1000.0).round() / 1000.0
}

fn percentile_ms(e: &EntrySnapshot, label: &str) -> f64 {
    e.percentiles_us
        .iter()
        .find(|(l, _)| l == label)
        .map_or(0.0, |(_, us)| ms(*us as f64))
}

/// `"50%"` -> `"response_time_percentile_0.5"`, Locust's key.
fn percentile_key(label: &str) -> String {
    let pct: f64 = label.trim_end_matches('%').parse().unwrap_or(0.0);
    format!("response_time_percentile_{}", pct / 100.0)
}

fn entry(e: &EntrySnapshot) -> Value {
    let mut row = json!({
        "method": e.method,
        "name": e.name,
        "safe_name": e.name,
        "num_requests": e.num_requests,
        "num_failures": e.num_failures,
        "avg_response_time": ms(e.avg_response_time_us),
        "min_response_time": ms(e.min_response_time_us as f64),
        "max_response_time": ms(e.max_response_time_us as f64),
        "median_response_time": ms(e.median_response_time_us as f64),
        "ninetieth_response_time": percentile_ms(e, "90%"),
        "ninety_ninth_response_time": percentile_ms(e, "99%"),
        "current_rps": e.current_rps,
        "current_fail_per_sec": e.current_fail_per_s,
        "total_rps": e.rps,
        "total_fail_per_sec": e.fail_per_s,
        "avg_content_length": e.avg_content_bytes,
    });
    let map = row.as_object_mut().expect("an object");
    for (label, us) in &e.percentiles_us {
        map.insert(percentile_key(label), json!(ms(*us as f64)));
    }
    row
}

/// The document for `snap`, with `status` (state, user_count, workers, ...
/// as the runner publishes them) merged in at the top level, and the
/// current-window percentiles taken from `last_row`, the newest history row.
pub fn stats_document(
    snap: &StatsSnapshot,
    last_row: Option<&HistoryRow>,
    status: &Value,
) -> Value {
    let mut stats: Vec<Value> = snap.entries.iter().take(MAX_ROWS).map(entry).collect();
    stats.push(entry(&snap.total));
    let errors: Vec<Value> = snap
        .failures
        .iter()
        .take(MAX_ROWS)
        .map(|f| {
            json!({
                "method": f.method,
                "name": f.name,
                "error": f.error,
                "occurrences": f.occurrences,
            })
        })
        .collect();
    let exceptions: Vec<Value> = snap
        .errors
        .iter()
        .take(MAX_ROWS)
        .map(|e| json!({"count": e.count, "msg": e.message, "traceback": e.traceback, "nodes": e.nodes.join(", ")}))
        .collect();
    let window = |label: &str| {
        last_row
            .and_then(|r| r.total.percentiles_us.iter().find(|(l, _)| l == label))
            .map_or(0.0, |(_, us)| ms(*us as f64))
    };
    let mut doc = Map::new();
    if let Value::Object(fields) = status {
        doc.extend(fields.clone());
    }
    doc.insert("stats".into(), Value::Array(stats));
    doc.insert("errors".into(), Value::Array(errors));
    doc.insert("exceptions".into(), Value::Array(exceptions));
    doc.insert("total_rps".into(), json!(snap.total.current_rps));
    doc.insert(
        "total_fail_per_sec".into(),
        json!(snap.total.current_fail_per_s),
    );
    doc.insert("fail_ratio".into(), json!(snap.total.fail_ratio));
    doc.insert(
        "total_avg_response_time".into(),
        json!(ms(snap.total.avg_response_time_us)),
    );
    doc.insert(
        "current_response_time_percentiles".into(),
        json!({
            "response_time_percentile_0.5": window("50%"),
            "response_time_percentile_0.95": window("95%"),
        }),
    );
    doc.insert("start_s".into(), json!(snap.start_s));
    doc.insert("now_s".into(), json!(snap.now_s));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestSample, Stats};

    #[test]
    fn document_has_locusts_keys_and_aggregated_last() {
        let mut s = Stats::new(100.0);
        for (i, name) in ["/a", "/b"].iter().enumerate() {
            s.record(&RequestSample {
                method: "GET".into(),
                name: (*name).into(),
                response_time_us: 1_500 * (i as u64 + 1),
                content_bytes: 5,
                error: (i == 1).then(|| "HTTPError: 500".into()),
                at_s: 100.5,
                intended_lag_us: None,
                ttfb_us: None,
            });
        }
        let row = s.tick(101.0, 2, false);
        let doc = stats_document(
            &s.snapshot(101.0),
            Some(&row),
            &json!({"state": "running", "user_count": 2}),
        );
        let stats = doc["stats"].as_array().unwrap();
        assert_eq!(stats.len(), 3);
        assert_eq!(stats[2]["name"], "Aggregated");
        assert_eq!(stats[2]["num_requests"], 2);
        assert_eq!(stats[0]["avg_response_time"], 1.5);
        assert_eq!(stats[1]["response_time_percentile_0.5"], 3.0);
        assert_eq!(doc["errors"][0]["occurrences"], 1);
        assert_eq!(doc["state"], "running");
        assert_eq!(doc["user_count"], 2);
        assert_eq!(doc["fail_ratio"], 0.5);
        assert_eq!(
            doc["current_response_time_percentiles"]["response_time_percentile_0.95"],
            3.0
        );
    }
}
