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
mod routes;
mod serve;
mod tls;

pub use health::Health;
pub use metrics::Metrics;
pub use serve::{serve_until_told, Limits};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::middleware;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

pub use doc::stats_document;

use crate::engine::CompletionQueue;
use crate::report::html::{Point, ReportMeta};
use crate::stats::Recorder;

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
            routes::router(shared.clone())
        };
        if config.serve_metrics {
            // Behind the login when the web UI has one: Prometheus sends
            // basic auth (`basic_auth` in its scrape config).
            let scrape = metrics::routes(shared.metrics.clone()).layer(
                middleware::from_fn_with_state(shared.clone(), routes::basic_auth),
            );
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
