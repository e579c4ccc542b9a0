//! The web UI's routes: the pages and assets, Locust's JSON API and
//! downloads, the server-sent stats stream, and the Basic authentication
//! in front of them all.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

use super::{health, lock, origin, read, Shared, WebCommand, REPLY_TIMEOUT};
use crate::report::html::ReportMeta;
use crate::report::{csv, html};

const INDEX_HTML: &str = include_str!("../../assets/web/index.html");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const APP_CSS: &str = include_str!("../../assets/web/app.css");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");

/// The web UI's routes over `shared` (the paths are listed in
/// `docs/web.md`); the caller adds the Basic authentication layer.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css", APP_CSS) }),
        )
        .route(
            "/assets/uPlot.iife.min.js",
            get(|| async { asset("text/javascript", UPLOT_JS) }),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| async { asset("text/css", UPLOT_CSS) }),
        )
        // Commands: refused when a browser sends them from another site.
        .route(
            "/swarm",
            axum::routing::post(swarm).layer(middleware::from_fn(origin::same_origin_only)),
        )
        .route(
            "/stop",
            get(stop)
                .post(stop)
                .layer(middleware::from_fn(origin::same_origin_only)),
        )
        .route(
            "/stats/reset",
            get(reset)
                .post(reset)
                .layer(middleware::from_fn(origin::same_origin_only)),
        )
        .route("/stats/requests", get(stats_requests))
        .route("/stats/requests/csv", get(download_csv))
        .route("/stats/requests_full_history/csv", get(download_csv))
        .route("/stats/failures/csv", get(download_csv))
        .route("/exceptions/csv", get(download_csv))
        .route("/exceptions", get(exceptions))
        .route("/stats/report", get(report_html))
        .route("/stats/report.json", get(report_json))
        .route("/api/state", get(state))
        .route("/api/events", get(events))
        .layer(middleware::from_fn_with_state(shared.clone(), basic_auth))
        // After the login's layer: probes carry no credentials.
        .merge(health::routes(shared.health.clone()))
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// HTTP basic auth (RFC 7617) over every route, when `--web-login` is set.
pub(super) async fn basic_auth(
    State(s): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &s.authorization {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"aiotest\", charset=\"UTF-8\"",
                )],
                "login required: the master was started with --web-login\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Compares without an early exit, so response times do not leak how much
/// of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter().cycle()) {
        diff |= x ^ y;
    }
    diff == 0 && !b.is_empty()
}

/// Hands a command to the runner and waits for its answer.
async fn ask(s: &Shared, action: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    lock(&s.pending).insert(id, tx);
    s.commands.push(WebCommand {
        id,
        action: action.into(),
        body: String::from_utf8_lossy(&body).into_owned(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    });
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok((status, body))) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        _ => {
            lock(&s.pending).remove(&id);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    json!({"success": false, "message": "the runner did not answer within 10 s"}),
                ),
            )
                .into_response()
        }
    }
}

async fn swarm(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    ask(&s, "swarm", &headers, body).await
}

async fn stop(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    ask(&s, "stop", &headers, Bytes::new()).await
}

async fn reset(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    ask(&s, "reset", &headers, Bytes::new()).await
}

fn json_text(text: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text.into(),
    )
        .into_response()
}

async fn stats_requests(State(s): State<Arc<Shared>>) -> Response {
    json_text(read(&s.published).doc.to_string())
}

async fn exceptions(State(s): State<Arc<Shared>>) -> Response {
    let doc: Value = serde_json::from_str(&read(&s.published).doc).unwrap_or_default();
    json_text(json!({"exceptions": doc["exceptions"]}).to_string())
}

/// `/api/state`: the latest document plus every chart point so far; what a
/// page loads before it follows `/api/events`.
async fn state(State(s): State<Arc<Shared>>) -> Response {
    let p = read(&s.published);
    json_text(format!(
        "{{\"stats\":{},\"points\":{}}}",
        p.doc,
        serde_json::to_string(&p.points).expect("points serialize")
    ))
}

/// `/api/events`: server-sent events, one `update` per publish, carrying the
/// document and the new chart points.
async fn events(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let updates = futures_util::stream::unfold(s.updates.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(update) => {
                    let event = Event::default().event("update").data(&*update);
                    return Some((Ok::<_, std::convert::Infallible>(event), rx));
                }
                // A slow browser missed some; the next update is complete.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
struct DownloadQuery {
    download: Option<String>,
}

fn attachment(content_type: &str, filename: &str, body: String, download: bool) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response();
    if download {
        let value = format!("attachment; filename=\"{filename}\"");
        if let Ok(v) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}

async fn fresh_snapshot(s: &Arc<Shared>) -> Result<crate::stats::StatsSnapshot, Response> {
    let recorder = s.recorder.clone();
    tokio::task::spawn_blocking(move || recorder.snapshot_with_history())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the stats aggregator has stopped\n",
            )
                .into_response()
        })
}

async fn download_csv(State(s): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    let snap = match fresh_snapshot(&s).await {
        Ok(snap) => snap,
        Err(r) => return r,
    };
    let (file, body) = match uri.path() {
        "/stats/requests/csv" => ("aiotest_stats.csv", csv::stats_csv(&snap)),
        "/stats/requests_full_history/csv" => {
            ("aiotest_stats_history.csv", csv::history_csv(&snap.history))
        }
        "/stats/failures/csv" => ("aiotest_failures.csv", csv::failures_csv(&snap)),
        _ => ("aiotest_exceptions.csv", csv::exceptions_csv(&snap)),
    };
    attachment("text/csv; charset=utf-8", file, body, true)
}

fn report_meta(s: &Shared) -> ReportMeta {
    read(&s.published)
        .meta
        .clone()
        .unwrap_or_else(|| ReportMeta {
            host: String::new(),
            script: String::new(),
            user_classes: Vec::new(),
            peak_users: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        })
}

async fn report_html(State(s): State<Arc<Shared>>, Query(q): Query<DownloadQuery>) -> Response {
    let snap = match fresh_snapshot(&s).await {
        Ok(snap) => snap,
        Err(r) => return r,
    };
    match html::render(&snap, &report_meta(&s)) {
        Ok(page) => attachment(
            "text/html; charset=utf-8",
            "aiotest_report.html",
            page,
            q.download.is_some(),
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("report: {e}\n")).into_response(),
    }
}

async fn report_json(State(s): State<Arc<Shared>>, Query(q): Query<DownloadQuery>) -> Response {
    let snap = match fresh_snapshot(&s).await {
        Ok(snap) => snap,
        Err(r) => return r,
    };
    let fields = read(&s.published).report_fields.clone();
    let doc = crate::report::json_report(&snap, &report_meta(&s), &fields);
    attachment(
        "application/json",
        "aiotest_report.json",
        serde_json::to_string_pretty(&doc).expect("report serializes") + "\n",
        q.download.is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_needs_the_exact_value() {
        assert!(constant_time_eq(b"Basic YTpi", b"Basic YTpi"));
        assert!(!constant_time_eq(b"Basic YTpj", b"Basic YTpi"));
        assert!(!constant_time_eq(b"Basic YTp", b"Basic YTpi"));
        assert!(!constant_time_eq(b"", b"Basic YTpi"));
    }
}
