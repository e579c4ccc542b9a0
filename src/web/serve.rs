//! The accept loop under the web UI (and the demo target): hyper's HTTP/1.1
//! server, with what `axum::serve` leaves out: a deadline for each request
//! head (hyper's `header_read_timeout`, which needs a timer axum does not
//! give it) and a cap on open connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{oneshot, watch, Semaphore};

/// Bounds on what clients may hold open; `None` fields are unbounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: Option<usize>,
    /// Time a client has to send each request head, else it is closed.
    pub header_read_timeout: Option<Duration>,
}

impl Limits {
    /// NOTE: the web UI's bounds. A browser holds 2-6 connections; 256
    /// leave room for many operators and scripts, and cost nothing idle.
    /// 10 s per request head is what nginx gives (`client_header_timeout`
    /// defaults to 60 s; 10 s is its commonest hardened value).
    pub const WEB_UI: Limits = Limits {
        max_connections: Some(256),
        header_read_timeout: Some(Duration::from_secs(10)),
    };

    /// None: the demo target serves whatever load a test sends it.
    pub const NONE: Limits = Limits {
        max_connections: None,
        header_read_timeout: None,
    };
}

/// How long connections get to finish after the shutdown signal (an
/// event stream never finishes by itself).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` from a task on `rt` until the returned sender
/// is used or dropped; requests in flight then get [`SHUTDOWN_GRACE`] to
/// finish.
pub fn serve_until_told<L>(
    rt: &tokio::runtime::Handle,
    mut listener: L,
    app: Router,
    limits: Limits,
) -> oneshot::Sender<()>
where
    L: axum::serve::Listener,
{
    let (tx, mut stop) = oneshot::channel::<()>();
    rt.spawn(async move {
        let permits = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let (closing, closing_rx) = watch::channel(false);
        loop {
            let io = tokio::select! {
                (io, _) = listener.accept() => io,
                _ = &mut stop => break,
            };
            let permit = match &permits {
                Some(p) => match p.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    // Full: this one is closed unread.
                    Err(_) => continue,
                },
                None => None,
            };
            let service = TowerToHyperService::new(app.clone());
            let mut closing = closing_rx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut builder = hyper::server::conn::http1::Builder::new();
                if let Some(timeout) = limits.header_read_timeout {
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(timeout);
                }
                let conn = builder.serve_connection(TokioIo::new(io), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = closing.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                    }
                }
            });
        }
        let _ = closing.send(true);
    });
    tx
}
