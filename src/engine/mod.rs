//! The HTTP engine: a tokio runtime that runs requests for every user of
//! the process, times them, records them, and hands results back through a
//! [`CompletionQueue`].
//!
//! A request's response time runs from issuing it to reading its last body
//! byte, measured here in Rust; Python never times requests.

mod completion;
mod conn;
mod driven;
mod h1;
mod h1_encode;
mod h1_head;
mod h2;
mod request;
mod session;
mod stream;
mod timings;
pub mod tls;
mod tls_io;
mod via_reqwest;

pub use tls::{TlsOptions, Verify};

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::stats::{Aggregator, Recorder};

pub use completion::CompletionQueue;
pub use request::{status_failure, HttpOutcome, RequestSpec};
pub use session::{validate_base_url, HttpSession, HttpVersion, USER_AGENT};
pub use stream::{BodyStream, Read, ReadKind, SseEvent};
pub use timings::Timings;
pub use via_reqwest::describe_error;

/// Errors of the engine itself (not of requests: those are recorded data).
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("invalid host URL '{url}': {detail}")]
    BadUrl { url: String, detail: String },
    #[error("relative URL '{0}' needs a host: set `host` on the user class or pass -H/--host")]
    NoHost(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot start the engine: {0}")]
    Start(String),
}

/// A finished request or read, tagged with the id [`Engine::submit`] or
/// [`Engine::submit_read`] returned.
pub struct Completion {
    pub id: u64,
    pub outcome: Outcome,
}

/// What a [`Completion`] finished.
// Responses are nearly every completion: boxing them would cost an
// allocation per request to save bytes on the rare read.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    /// A request: its response, or its failure.
    Response(HttpOutcome),
    /// A read of a streamed body.
    Read(Read),
}

impl Completion {
    /// The response, when it finished a request.
    pub fn response(&self) -> Option<&HttpOutcome> {
        match &self.outcome {
            Outcome::Response(r) => Some(r),
            Outcome::Read(_) => None,
        }
    }
}

/// The process-wide engine: one tokio runtime, one TLS configuration, one
/// stats aggregator and one completion queue, shared by every user.
pub struct Engine {
    runtime: tokio::runtime::Runtime,
    /// Owns the stats thread, which stops when the engine is dropped.
    _aggregator: Aggregator,
    completions: Arc<CompletionQueue<Completion>>,
    /// Resolved URLs, shared by the engine's sessions.
    urls: Arc<session::UrlCache>,
    next_id: AtomicU64,
    in_flight: Arc<AtomicU64>,
    /// Requests run on `driven` (turned by the Python loop's thread, see
    /// [`Engine::drive`]) rather than on `runtime`'s threads.
    driven_mode: AtomicBool,
    driven: driven::Driven,
    recorder: Recorder,
}

impl Engine {
    /// Starts the runtime with `worker_threads` threads (at least 1).
    ///
    /// # Errors
    /// [`EngineError::Start`] when threads, sockets or the TLS roots cannot
    /// be set up.
    pub fn start(worker_threads: usize) -> Result<Self, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("aiotest-engine")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Start(e.to_string()))?;
        // The platform's trust store, read now so that a broken one is an
        // error at start, not on the first https request.
        tls::client_config(&TlsOptions::default()).map_err(EngineError::Start)?;
        let aggregator = Aggregator::start();
        Ok(Self {
            runtime,
            recorder: aggregator.recorder(),
            _aggregator: aggregator,
            driven_mode: AtomicBool::new(false),
            driven: driven::Driven::new()?,
            completions: Arc::new(
                CompletionQueue::new().map_err(|e| EngineError::Start(e.to_string()))?,
            ),
            urls: Arc::default(),
            next_id: AtomicU64::new(1),
            in_flight: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The engine's tokio runtime, for the cluster link's tasks.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// A handle to this engine's statistics.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    pub fn completions(&self) -> &CompletionQueue<Completion> {
        &self.completions
    }

    /// A new session for one user, with its own cookies and connections,
    /// and `tls` for its https requests.
    ///
    /// # Errors
    /// [`EngineError::BadUrl`] for a malformed host, [`EngineError::Client`]
    /// for TLS files that cannot be read.
    pub fn new_session(
        &self,
        base_url: Option<&str>,
        tls: TlsOptions,
        http_version: HttpVersion,
    ) -> Result<HttpSession, EngineError> {
        let _guard = self.runtime.enter();
        HttpSession::new(base_url, tls, http_version, self.urls.clone())
    }

    /// Starts one request and returns its id at once. Its [`Completion`]
    /// arrives on the completion queue, or, in driven mode, from the
    /// [`Engine::drive`] turn that finishes it; when `spec.record` is set it
    /// is also recorded in the statistics before that.
    pub fn submit(&self, session: &HttpSession, spec: impl Into<Arc<RequestSpec>>) -> u64 {
        let spec = spec.into();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prepared = session
            .resolve(&spec.url)
            .map(|url| (url, session.state.clone()));
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let recorder = spec.stream.then(|| self.recorder.clone());
        let job = request::Job {
            id,
            prepared,
            spec,
            recorder,
        };
        if self.driven_mode.load(Ordering::Acquire) {
            self.driven.submit(driven::Work::Request(job));
            return id;
        }
        let recorder = self.recorder.clone();
        let completions = self.completions.clone();
        let in_flight = self.in_flight.clone();
        let request = job.run();
        self.runtime.spawn(async move {
            let (done, sample) = request.await;
            if let Some(sample) = sample {
                recorder.record(sample);
            }
            completions.push(done);
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        id
    }

    /// Starts reading the next piece of a streamed body and returns its id
    /// at once; the piece arrives as a [`Completion`] as requests do. Reads
    /// are not requests in flight: an event stream may stay quiet for long.
    pub fn submit_read(&self, stream: Arc<BodyStream>, kind: ReadKind) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let job = request::ReadJob { id, stream, kind };
        if self.driven_mode.load(Ordering::Acquire) {
            self.driven.submit(driven::Work::Read(job));
            return id;
        }
        let completions = self.completions.clone();
        self.runtime.spawn(async move {
            completions.push(job.run().await);
        });
        id
    }

    /// Chooses where requests submitted from now on run: on the engine's
    /// threads, their completions announced on [`Engine::completions`]'s
    /// descriptor (`false`, the default), or on the thread that calls
    /// [`Engine::drive`], which then returns them (`true`).
    pub fn set_driven(&self, driven: bool) {
        self.driven_mode.store(driven, Ordering::Release);
    }

    /// One turn of the driven runtime (see `driven.rs`): starts the
    /// requests submitted since the last turn, runs what is ready, and
    /// unless `timeout` is zero waits until a request finishes, `wake_fd`
    /// turns readable or `timeout` passes (`None`: no limit). Returns the
    /// requests finished in this turn; those to record are recorded.
    ///
    /// # Errors
    /// [`EngineError::Start`] when `wake_fd` cannot be watched.
    pub fn drive(
        &self,
        wake_fd: RawFd,
        timeout: Option<Duration>,
    ) -> Result<Vec<Completion>, EngineError> {
        self.driven
            .turn(wake_fd, timeout, &self.recorder, &self.in_flight)
    }

    /// Stops watching the descriptor given to [`Engine::drive`]; call it
    /// before that descriptor is closed.
    pub fn unwatch(&self, wake_fd: RawFd) {
        self.driven.unwatch(wake_fd);
    }

    /// Requests started and not yet completed.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits (blocking) until no request is in flight or `timeout_s` passes.
    /// Returns whether the engine went idle.
    pub fn wait_idle(&self, timeout_s: f64) -> bool {
        let deadline = Instant::now() + Duration::from_secs_f64(timeout_s.max(0.0));
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}
