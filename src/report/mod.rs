//! Results for people and machines: Locust-compatible CSV files and
//! pass/fail checks, all computed from one [`StatsSnapshot`](crate::stats::StatsSnapshot).

pub mod checks;
pub mod csv;
pub mod html;

use serde_json::{json, Value};

/// The JSON report (`--json`, `--json-file`, the web UI's download) as in
/// `docs/json.md`: `meta`'s host, classes and version, `fields`'
/// `user_count` and `task_runs`, and the snapshot under `stats`.
pub fn json_report(
    snap: &crate::stats::StatsSnapshot,
    meta: &html::ReportMeta,
    fields: &Value,
) -> Value {
    json!({
        "aiotest_version": meta.version,
        "host": meta.host,
        "user_classes": meta.user_classes,
        "user_count": fields.get("user_count").cloned().unwrap_or(json!(meta.peak_users)),
        "task_runs": fields.get("task_runs").cloned().unwrap_or(json!(0)),
        "stats": snap,
    })
}
