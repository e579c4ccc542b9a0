//! Health endpoints for orchestrators, in the conventions of Kubernetes'
//! probes: `GET /healthz` answers 200 while the process serves at all
//! (liveness), `GET /readyz` 200 once it is ready and 503 with the reason
//! until then (readiness). Neither asks for the web UI's login: a probe
//! carries no credentials, and neither says more than a state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Whether the process is ready, and if not, why. Python sets it: a local
/// run is ready at once, a master once `--expect-workers` workers joined, a
/// worker while it is joined to its master.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    reason: RwLock<String>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
            reason: RwLock::new("starting".to_owned()),
        }
    }
}

impl Health {
    /// Sets the readiness; `reason` is what `/readyz` answers (a word or a
    /// sentence, e.g. "waiting for workers: 3 of 8 connected").
    pub fn set(&self, ready: bool, reason: &str) {
        if let Ok(mut r) = self.reason.write() {
            reason.clone_into(&mut r);
        }
        self.ready.store(ready, Ordering::Release);
    }

    /// The readiness and its reason.
    pub fn get(&self) -> (bool, String) {
        let reason = self.reason.read().map(|r| r.clone()).unwrap_or_default();
        (self.ready.load(Ordering::Acquire), reason)
    }
}

/// `/healthz` and `/readyz` over `health`, for any router's state.
pub fn routes<S: Clone + Send + Sync + 'static>(health: Arc<Health>) -> Router<S> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { text(StatusCode::OK, "ok".to_owned()) }),
        )
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    let (ready, reason) = health.get();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, reason)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body + "\n",
    )
        .into_response()
}
