//! The built-in demo target: a small HTTP server with the endpoints that
//! `examples/aiotestfile.py` and the tests use, counting every request it
//! serves so that tests can compare the load generator's totals with what the
//! server saw.
//!
//! | route | behaviour |
//! |---|---|
//! | `GET /`, `GET /hello` | a short text body (`/hello` is 5 bytes) |
//! | `POST /login` | JSON or form `username`/`password`; sets a `session` cookie; `password=wrong` gives 401 |
//! | `GET /items`, `GET /items/{id}` | JSON, needs the cookie (401 without); ids 1000+ give 404 |
//! | `POST /cart` | JSON `{"item_id": n}`, needs the cookie |
//! | `GET /slow?ms=N`, `GET /delay/{ms}` | answers after N ms (at most 10 s) |
//! | `GET /status/{code}` | answers with that status |
//! | any method `/redirect/{n}?code=C` | redirects (status C, default 302) to `/redirect/{n-1}`; `/redirect/0` answers 200 with the method it got |
//! | `GET /error` | 500 |
//! | `GET /__stats` | JSON counts of every request served, by "METHOD path" |
//! | `POST /__reset` | zeroes the counts |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// Counts of the requests the demo target served.
#[derive(Default)]
pub struct TargetState {
    total: AtomicU64,
    by_route: Mutex<HashMap<String, u64>>,
    next_session: AtomicU64,
}

impl TargetState {
    /// `{"total": n, "requests": {"GET /hello": n, ...}}`.
    pub fn counts_json(&self) -> Value {
        let map = self.by_route.lock().unwrap_or_else(|p| p.into_inner());
        json!({ "total": self.total.load(Ordering::SeqCst), "requests": *map })
    }

    fn reset(&self) {
        self.total.store(0, Ordering::SeqCst);
        self.by_route
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The demo target's routes over `state`.
pub fn router(state: Arc<TargetState>) -> Router {
    Router::new()
        .route("/", get(|| async { "aiotest demo target\n" }))
        .route("/hello", get(|| async { "hello" }))
        .route("/login", post(login))
        .route("/items", get(items))
        .route("/items/{id}", get(item))
        .route("/cart", post(cart))
        .route("/slow", get(slow))
        .route("/delay/{ms}", get(delay))
        .route("/status/{code}", get(status))
        .route("/redirect/{n}", any(redirect))
        .route(
            "/error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n") }),
        )
        .route(
            "/__stats",
            get(|State(s): State<Arc<TargetState>>| async move { Json(s.counts_json()) }),
        )
        .route(
            "/__reset",
            post(|State(s): State<Arc<TargetState>>| async move {
                s.reset();
                StatusCode::NO_CONTENT
            }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(s): State<Arc<TargetState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/__") {
        let key = format!("{} {}", req.method(), path);
        s.total.fetch_add(1, Ordering::SeqCst);
        *s.by_route
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(State(s): State<Arc<TargetState>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let creds: Option<Credentials> = if is_json {
        serde_json::from_slice(&body).ok()
    } else {
        serde_urlencoded_form(&body)
    };
    let Some(creds) = creds.filter(|c| !c.username.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "send username and password"})),
        )
            .into_response();
    };
    if creds.password == "wrong" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad password"})),
        )
            .into_response();
    }
    let token = format!(
        "{}-{}",
        creds.username,
        s.next_session.fetch_add(1, Ordering::Relaxed)
    );
    let cookie = format!("session={token}; Path=/; HttpOnly");
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": creds.username, "token": token})),
    )
        .into_response()
}

/// Parses `a=b&c=d` bodies for the two fields the login reads.
fn serde_urlencoded_form(body: &[u8]) -> Option<Credentials> {
    let text = std::str::from_utf8(body).ok()?;
    let mut creds = Credentials {
        username: String::new(),
        password: String::new(),
    };
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = v.replace('+', " ");
        match k {
            "username" => creds.username = v,
            "password" => creds.password = v,
            _ => {}
        }
    }
    Some(creds)
}

fn logged_in(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|c| c.trim().starts_with("session=")))
}

fn login_first() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "log in first: POST /login"})),
    )
        .into_response()
}

fn item_json(id: u64) -> Value {
    json!({"id": id, "name": format!("item {id}"), "price_cents": 100 + (id * 37) % 900})
}

async fn items(headers: HeaderMap) -> Response {
    if !logged_in(&headers) {
        return login_first();
    }
    Json(Value::Array((1..=20).map(item_json).collect())).into_response()
}

async fn item(headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if !logged_in(&headers) {
        return login_first();
    }
    if id >= 1000 {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such item"})),
        )
            .into_response();
    }
    Json(item_json(id)).into_response()
}

async fn cart(headers: HeaderMap, body: Bytes) -> Response {
    if !logged_in(&headers) {
        return login_first();
    }
    match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("item_id").and_then(Value::as_u64))
    {
        Some(id) => Json(json!({"ok": true, "item_id": id})).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "send {\"item_id\": n}"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: Option<u64>,
}

async fn slow(Query(q): Query<SlowQuery>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(q.ms.unwrap_or(250).min(10_000))).await;
    "slow\n"
}

async fn delay(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
    "delayed\n"
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(s) => (s, format!("status {code}\n")).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "status must be 100-999\n").into_response(),
    }
}

#[derive(Deserialize)]
struct RedirectQuery {
    code: Option<u16>,
}

async fn redirect(
    method: axum::http::Method,
    Path(n): Path<u32>,
    Query(q): Query<RedirectQuery>,
) -> Response {
    if n == 0 {
        return format!("redirected, {method}\n").into_response();
    }
    let code = q.code.unwrap_or(302);
    if !matches!(code, 301 | 302 | 303 | 307 | 308) {
        return (
            StatusCode::BAD_REQUEST,
            "code must be 301, 302, 303, 307 or 308\n",
        )
            .into_response();
    }
    let location = format!("/redirect/{}?code={code}", n - 1);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    (status, [(header::LOCATION, location)]).into_response()
}

/// A running demo target on its own small runtime; stops when dropped.
pub struct DemoTarget {
    pub addr: SocketAddr,
    pub state: Arc<TargetState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DemoTarget {
    /// Binds `bind:port` (port 0 picks a free one) and starts serving.
    ///
    /// # Errors
    /// The bind error, e.g. the port is in use.
    pub fn start(bind: &str, port: u16) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aiotest-target")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind((bind, port)))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(TargetState::default());
        let app = router(state.clone());
        let shutdown =
            crate::web::serve_until_told(runtime.handle(), listener, app, crate::web::Limits::NONE);
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        })
    }
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
