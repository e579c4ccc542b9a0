//! The web UI and its JSON API, served by axum on the engine's runtime.
//!
//! The routes keep Locust's names wherever Locust has one (`POST /swarm`,
//! `/stop`, `/stats/requests`, `/stats/reset`, `/stats/report`, the CSV
//! downloads), so scripts that drive Locust's master drive ours; the rest
//! are documented in `docs/web.md`.
//!
//! The split of work: the Python runner publishes its status (state, users,
//! workers) once per stats interval with [`WebUi::publish`], which takes a
//! statistics snapshot, builds the `/stats/requests` document and pushes it
//! to every browser over server-sent events. Commands that change the run
//! (swarm, stop, reset) go the other way: each becomes a [`WebCommand`] on a
//! queue the Python loop drains, and its HTTP response waits for the
//! runner's [`WebUi::reply`]. Reports are rendered here from a fresh
//! snapshot, by the same code as the `--csv` and `--html` files.

mod doc;
mod health;
mod metrics;
mod origin;
mod serve;
mod tls;

pub use health::Health;
pub use metrics::Metrics;
pub use serve::{serve_until_told, Limits};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

pub use doc::stats_document;

use crate::engine::CompletionQueue;
use crate::report::html::{Point, ReportMeta};
use crate::report::{csv, html};
use crate::stats::Recorder;

const INDEX_HTML: &str = include_str!("../../assets/web/index.html");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const APP_CSS: &str = include_str!("../../assets/web/app.css");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");

/// How long an HTTP request that changes the run waits for the runner.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to serve.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Address to bind; `*` or empty for every interface.
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// `user:password` for HTTP basic auth (RFC 7617); None serves anyone.
    pub login: Option<String>,
    /// PEM certificate chain and private key files: serve HTTPS.
    pub tls_cert_path: Option<String>,
    pub tls_key_path: Option<String>,
    /// Serve only the endpoints of a headless run or a worker: `/healthz`
    /// and `/readyz` (and `/metrics` with `serve_metrics`), no page and no
    /// commands.
    pub service_only: bool,
    /// Serve `GET /metrics` (a local run's or a master's, not a worker's).
    pub serve_metrics: bool,
    /// Response-time bucket bounds of `/metrics` (s, ascending; empty for
    /// [`crate::stats::DEFAULT_BUCKETS_S`]).
    pub metrics_buckets_s: Vec<f64>,
}

/// Why the web UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on {addr}: {source}: pick another --web-port or --web-host")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// A request from the browser (or a script) for the runner to act on.
#[derive(Debug, Clone, Serialize)]
pub struct WebCommand {
    /// Pass it back to [`WebUi::reply`].
    pub id: u64,
    /// `swarm`, `stop` or `reset`.
    pub action: String,
    /// The request body (form-encoded or JSON) as sent, for `swarm`.
    pub body: String,
    pub content_type: String,
}

/// The latest published state.
#[derive(Default)]
struct Published {
    /// The `/stats/requests` document, serialized.
    doc: Arc<str>,
    /// What `--html` and the JSON report say about the run.
    meta: Option<ReportMeta>,
    /// The extra fields of the JSON report (`task_runs`, `user_count`).
    report_fields: Value,
    /// Chart points, one per history row, oldest first.
    points: Vec<Point>,
}

struct Shared {
    recorder: Recorder,
    published: RwLock<Published>,
    updates: broadcast::Sender<Arc<str>>,
    commands: Arc<CompletionQueue<WebCommand>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<(u16, String)>>>,
    next_id: AtomicU64,
    /// The exact `Authorization` header value that is let in.
    authorization: Option<String>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// A running web UI; stops serving when dropped.
pub struct WebUi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    scheme: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
}

impl WebUi {
    /// Binds and starts serving on `rt`.
    ///
    /// # Errors
    /// [`WebError::Bind`] when the address is taken or invalid;
    /// [`WebError::Config`] for a bad `--web-login` or unreadable TLS files.
    pub fn start(
        rt: &tokio::runtime::Handle,
        config: &WebConfig,
        recorder: Recorder,
    ) -> Result<Self, WebError> {
        let authorization = basic_authorization(config.login.as_deref())?;
        let tls = match (&config.tls_cert_path, &config.tls_key_path) {
            (Some(cert), Some(key)) => {
                Some(tls::server_config(cert, key).map_err(WebError::Config)?)
            }
            (None, None) => None,
            _ => {
                return Err(WebError::Config(
                    "--tls-cert and --tls-key go together: give both for HTTPS, or neither".into(),
                ))
            }
        };
        let addr_text = bind_address(&config.host, config.port);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(&addr_text))
            .map_err(|source| WebError::Bind {
                addr: addr_text.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WebError::Bind {
            addr: addr_text,
            source,
        })?;
        let recorder_for_metrics = recorder.clone();
        let shared = Arc::new(Shared {
            recorder,
            published: RwLock::new(Published {
                doc: Arc::from(
                    stats_document(
                        &crate::stats::Stats::new(crate::stats::unix_now_s())
                            .snapshot(crate::stats::unix_now_s()),
                        None,
                        &json!({"state": "ready", "user_count": 0}),
                    )
                    .to_string(),
                ),
                ..Published::default()
            }),
            updates: broadcast::channel(16).0,
            commands: Arc::new(
                CompletionQueue::new().map_err(|e| WebError::Config(e.to_string()))?,
            ),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            authorization,
            health: Arc::default(),
            metrics: Arc::new(Metrics::new(
                recorder_for_metrics,
                &config.metrics_buckets_s,
            )),
        });
        let mut app = if config.service_only {
            health::routes(shared.health.clone())
        } else {
            router(shared.clone())
        };
        if config.serve_metrics {
            // Behind the login when the web UI has one: Prometheus sends
            // basic auth (`basic_auth` in its scrape config).
            let scrape = metrics::routes(shared.metrics.clone())
                .layer(middleware::from_fn_with_state(shared.clone(), basic_auth));
            app = app.merge(scrape);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shutdown = match tls {
            Some(tls) => {
                let _guard = rt.enter();
                serve_until_told(
                    rt,
                    tls::TlsListener::new(listener, tls),
                    app,
                    Limits::WEB_UI,
                )
            }
            None => serve_until_told(rt, listener, app, Limits::WEB_UI),
        };
        Ok(Self {
            shared,
            addr,
            scheme,
            shutdown: Some(shutdown),
        })
    }

    /// What `/readyz` answers.
    pub fn health(&self) -> &Health {
        &self.shared.health
    }

    /// What `/metrics` shows besides the statistics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The queue of commands for the runner; its descriptor turns readable
    /// when one waits.
    pub fn commands(&self) -> &CompletionQueue<WebCommand> {
        &self.shared.commands
    }

    /// Answers command `id` with an HTTP status and a JSON body. An unknown
    /// id (already timed out) is ignored.
    /// Whether a client still waits for command `id`'s answer: one that
    /// gave up (503 after 10 s) must not act later.
    pub fn awaited(&self, id: u64) -> bool {
        lock(&self.shared.pending).contains_key(&id)
    }

    pub fn reply(&self, id: u64, status: u16, body_json: String) {
        let waiter = lock(&self.shared.pending).remove(&id);
        if let Some(tx) = waiter {
            let _ = tx.send((status, body_json));
        }
    }

    /// Publishes the runner's `status` (a JSON object merged into the
    /// `/stats/requests` document: `state`, `user_count`, `workers`, ...)
    /// with fresh statistics, and pushes it to every connected browser.
    /// `meta` feeds the HTML report; `report_fields` join the JSON report.
    /// Blocks for one round trip to the stats aggregator.
    pub fn publish(&self, status: &Value, meta: Option<ReportMeta>, report_fields: Value) {
        let Some(snap) = self.shared.recorder.snapshot() else {
            return;
        };
        let seen = read(&self.shared.published).points.len();
        let rows = self.shared.recorder.history_since(seen).unwrap_or_default();
        let new_points: Vec<Point> = rows.iter().map(Point::from_row).collect();
        let last_row = rows.last();
        let doc = stats_document(&snap, last_row, status);
        let doc_text: Arc<str> = Arc::from(doc.to_string());
        {
            let mut p = self
                .shared
                .published
                .write()
                .unwrap_or_else(|e| e.into_inner());
            p.doc = doc_text.clone();
            p.meta = meta;
            p.report_fields = report_fields;
            p.points.extend(new_points.iter().cloned());
        }
        let update = format!(
            "{{\"stats\":{doc_text},\"points\":{}}}",
            serde_json::to_string(&new_points).expect("points serialize")
        );
        // No receiver just means no browser is connected.
        let _ = self.shared.updates.send(Arc::from(update));
    }

    /// Drops the chart points: call it after restarting the recorder for a
    /// new run.
    pub fn clear_history(&self) {
        self.shared
            .published
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .points
            .clear();
    }
}

impl Drop for WebUi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

/// The `Authorization` header value that `--web-login USER:PASSWORD` asks
/// for, or None without a login.
///
/// # Errors
/// [`WebError::Config`] when the login is not `USER:PASSWORD`, both non-empty.
fn basic_authorization(login: Option<&str>) -> Result<Option<String>, WebError> {
    match login {
        None => Ok(None),
        Some(login)
            if login
                .split_once(':')
                .is_some_and(|(u, p)| !u.is_empty() && !p.is_empty()) =>
        {
            Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(login)
            )))
        }
        Some(_) => Err(WebError::Config(
            "--web-login must be USER:PASSWORD, both non-empty".into(),
        )),
    }
}

/// `host:port` to bind (`""` and `*` mean every IPv4 address; an IPv6
/// host gets its brackets).
fn bind_address(host: &str, port: u16) -> String {
    let host = match host {
        "" | "*" => "0.0.0.0",
        h => h,
    };
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn router(shared: Arc<Shared>) -> Router {
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
async fn basic_auth(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
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
