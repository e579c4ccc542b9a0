//! The engine, sessions, responses and stats snapshots, as Python classes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::awaitable::PyRequestAwaitable;
use super::errors::{
    bad_argument, bad_shape, config_error, dispatch_error, engine_error, os_error, stopped,
};
use crate::config::ConfigError;
use crate::dispatch::{self, ClassSpec};
use crate::engine::{
    Completion, Engine, HttpOutcome, HttpSession, HttpVersion, Outcome, Read, ReadKind,
    RequestSpec, TlsOptions, Verify,
};
use crate::report;
use crate::stats::{console, unix_now_s, EntrySnapshot, RequestSample, StatsSnapshot, OTHER_NAMES};

/// One evaluated check as Python sees it: (check, passed, actual).
type CheckRow = (String, bool, String);

/// `verify=` as `requests` takes it: a flag, or a CA bundle's path.
#[derive(FromPyObject)]
pub enum VerifyArg {
    Flag(bool),
    CaFile(String),
}

/// `cert=` as `requests` takes it: `(cert_file, key_file)`, or one file
/// that holds both.
#[derive(FromPyObject)]
pub enum CertArg {
    Pair((String, String)),
    Both(String),
}

/// The TLS options of `verify` and `cert`; None when neither is given.
fn tls_options(verify: Option<VerifyArg>, cert: Option<CertArg>) -> Option<TlsOptions> {
    if verify.is_none() && cert.is_none() {
        return None;
    }
    Some(TlsOptions {
        verify: match verify {
            None | Some(VerifyArg::Flag(true)) => Verify::Platform,
            Some(VerifyArg::Flag(false)) => Verify::Off,
            Some(VerifyArg::CaFile(path)) => Verify::CaFile(path),
        },
        client_cert: cert.map(|c| match c {
            CertArg::Pair(pair) => pair,
            CertArg::Both(path) => (path.clone(), path),
        }),
        // The session's HTTP version decides.
        offer_h2: true,
    })
}

/// `http_version=`: "auto", "1.1" or "2".
fn parse_http_version(text: &str) -> PyResult<HttpVersion> {
    match text {
        "auto" => Ok(HttpVersion::Auto),
        "1.1" => Ok(HttpVersion::Http1),
        "2" => Ok(HttpVersion::Http2),
        other => Err(bad_argument(format!(
            "http_version={other:?}: give \"auto\" (HTTP/2 when a TLS server offers it), \"1.1\" or \"2\" (also h2c over plain http)"
        ))),
    }
}

/// The process's HTTP engine (`aiotest._core.Engine`). See `_core.pyi`.
#[pyclass(name = "Engine", module = "aiotest._core", frozen)]
pub struct PyEngine {
    pub(crate) inner: Arc<Engine>,
    /// What each request in flight resolves, by request id.
    pending: Mutex<IdMap<Py<PyRequestAwaitable>>>,
}

/// A map keyed by the engine's request ids.
type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hashes a request id with one multiplication (Fibonacci hashing, Knuth,
/// TAOCP vol. 3, 6.4): the ids are the engine's own sequential numbers, so
/// SipHash's resistance to chosen keys buys nothing here.
// NOTE: SipHash cost ~1,000 instructions a request in this map (an insert
// at submit, a remove when it finishes): callgrind, 50 users over TLS,
// 2026-12-02, of ~72,000 in all.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What to send (`aiotest._core.RequestSpec`): built once per request by
/// the Python session, checked when built. See `_core.pyi`.
#[pyclass(name = "RequestSpec", module = "aiotest._core", frozen)]
pub struct PyRequestSpec {
    inner: Arc<RequestSpec>,
}

#[pymethods]
impl PyRequestSpec {
    /// Raises ValueError for an unknown method or a timeout that is not a
    /// number of seconds above 0.
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, method, url, name, headers, body = None, timeout_s = None, allow_redirects = true, record = true, intended_lag_us = None, max_body_bytes = None, verify = None, cert = None, stream = false))]
    fn new(
        method: &str,
        url: String,
        name: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout_s: Option<f64>,
        allow_redirects: bool,
        record: bool,
        intended_lag_us: Option<u64>,
        max_body_bytes: Option<u64>,
        verify: Option<VerifyArg>,
        cert: Option<CertArg>,
        stream: bool,
    ) -> PyResult<Self> {
        Self::build(RequestSpec {
            method: parse_method(method)?,
            url,
            name,
            headers,
            body: body.map(bytes::Bytes::from),
            timeout_s,
            allow_redirects,
            record,
            intended_lag_us,
            max_body_bytes,
            tls: tls_options(verify, cert),
            stream,
        })
    }

    #[getter]
    fn method(&self) -> &str {
        self.inner.method.as_str()
    }
    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    /// Whether the engine records it (False for `catch_response=True`).
    #[getter]
    fn record(&self) -> bool {
        self.inner.record
    }
    /// The headers this request adds, as `(name, value)` pairs.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers.clone()
    }
    /// The body, or None.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.body.as_deref().map(|b| PyBytes::new(py, b))
    }
}

impl PyRequestSpec {
    /// Checks what Python cannot: a timeout that is a number of seconds.
    fn build(inner: RequestSpec) -> PyResult<Self> {
        if let Some(t) = inner.timeout_s {
            if !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_S) {
                return Err(bad_argument(format!(
                    "timeout={t}: give seconds above 0 and at most {MAX_TIMEOUT_S}"
                )));
            }
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

fn parse_method(method: &str) -> PyResult<reqwest::Method> {
    reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad_argument(format!("'{method}' is not an HTTP method")))
}

/// The longest request timeout, in seconds (a day): longer ones overflow
/// no clock, but they are a mistake.
const MAX_TIMEOUT_S: f64 = 86_400.0;

/// One user's session: its own cookies and connections.
#[pyclass(name = "HttpSession", module = "aiotest._core", frozen)]
pub struct PySession {
    inner: HttpSession,
}

/// A finished request as the engine saw it.
#[pyclass(name = "RawResponse", module = "aiotest._core", frozen)]
pub struct PyRawResponse {
    outcome: HttpOutcome,
}

/// Frozen statistics of the run.
#[pyclass(name = "StatsSnapshot", module = "aiotest._core", frozen)]
pub struct PyStatsSnapshot {
    inner: StatsSnapshot,
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (*, worker_threads = None))]
    fn new(py: Python<'_>, worker_threads: Option<usize>) -> PyResult<Self> {
        let threads = worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let engine = Engine::start(threads).map_err(|e| engine_error(py, e))?;
        Ok(Self {
            inner: Arc::new(engine),
            pending: Mutex::new(IdMap::default()),
        })
    }

    /// The descriptor that turns readable when completions wait in `drain()`.
    fn wakeup_fd(&self) -> i32 {
        self.inner.completions().wakeup_fd()
    }

    /// A session for one user; `verify` and `cert` are its TLS options
    /// (see `_core.pyi`).
    #[pyo3(signature = (base_url = None, *, verify = None, cert = None, http_version = "auto"))]
    fn new_session(
        &self,
        py: Python<'_>,
        base_url: Option<&str>,
        verify: Option<VerifyArg>,
        cert: Option<CertArg>,
        http_version: &str,
    ) -> PyResult<PySession> {
        let tls = tls_options(verify, cert).unwrap_or_default();
        let version = parse_http_version(http_version)?;
        let inner = self
            .inner
            .new_session(base_url, tls, version)
            .map_err(|e| engine_error(py, e))?;
        Ok(PySession { inner })
    }

    /// Starts the request `spec` for `session`; returns what to await on
    /// `event_loop`. Its response arrives from `drive()` in driven mode,
    /// else from `drain()`, which resolve it.
    fn submit(
        &self,
        py: Python<'_>,
        session: &PySession,
        spec: &PyRequestSpec,
        event_loop: Py<PyAny>,
    ) -> PyResult<Py<PyRequestAwaitable>> {
        let waiter = Py::new(py, PyRequestAwaitable::new(event_loop, spec.inner.record))?;
        let id = self.inner.submit(&session.inner, Arc::clone(&spec.inner));
        self.pending
            .lock()
            .expect("pending requests")
            .insert(id, waiter.clone_ref(py));
        Ok(waiter)
    }

    /// Starts reading the next piece of `raw`'s streamed body: `kind` is
    /// "chunk" or "event". Returns what to await on `event_loop`: it
    /// resolves to `(bytes, at_us)` for a chunk, `(event, data, id,
    /// retry_ms, at_us)` for a server-sent event, or None once the body
    /// ended; `at_us` is when the piece arrived, in µs after the request
    /// was issued. Raises ValueError for a body that is not streamed, an
    /// unknown kind, or a kind other than the body's first read's.
    fn read(
        &self,
        py: Python<'_>,
        raw: &PyRawResponse,
        kind: &str,
        event_loop: Py<PyAny>,
    ) -> PyResult<Py<PyRequestAwaitable>> {
        let Some(stream) = &raw.outcome.stream else {
            return Err(bad_argument(
                "this response's body is not streamed: request it with stream=True",
            ));
        };
        let kind = match kind {
            "chunk" => ReadKind::Chunk,
            "event" => ReadKind::Event,
            other => {
                return Err(bad_argument(format!(
                    "read kind {other:?}: give \"chunk\" or \"event\""
                )))
            }
        };
        let waiter = Py::new(py, PyRequestAwaitable::new(event_loop, true))?;
        let id = self.inner.submit_read(stream.clone(), kind);
        self.pending
            .lock()
            .expect("pending requests")
            .insert(id, waiter.clone_ref(py));
        Ok(waiter)
    }

    /// What the requests in flight resolve, oldest first.
    fn pending(&self, py: Python<'_>) -> Vec<Py<PyRequestAwaitable>> {
        let pending = self.pending.lock().expect("pending requests");
        let mut ids: Vec<&u64> = pending.keys().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| pending[id].clone_ref(py))
            .collect()
    }

    /// Every finished request since the last call, as
    /// `(RequestAwaitable, RawResponse)` (the threaded path).
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<Finished>> {
        self.finished(py, self.inner.completions().drain())
    }

    /// Runs requests submitted from now on on the thread that calls
    /// `drive()` (True) or on the engine's own threads (False, the default).
    fn set_driven(&self, driven: bool) {
        self.inner.set_driven(driven);
    }

    /// One turn of the driven engine, without the GIL: starts the requests
    /// submitted since the last turn and runs what is ready; unless
    /// `timeout_s` is 0, then waits until a request finishes, `wake_fd`
    /// turns readable or `timeout_s` passes (None: no limit). Returns
    /// `(resolved, finished)`: with `resolve`, the turn resolves each
    /// finished request's awaitable itself (its task steps at once) and
    /// counts them in `resolved`, and `finished` holds only the requests
    /// whose user was cancelled before a `catch_response` decision, for
    /// Python to record; without it, `resolved` is 0 and `finished` holds
    /// every finished request as `(RequestAwaitable, RawResponse)`. Raises
    /// OSError when `wake_fd` cannot be watched.
    #[pyo3(signature = (wake_fd, timeout_s = None, resolve = false))]
    fn drive(
        &self,
        py: Python<'_>,
        wake_fd: i32,
        timeout_s: Option<f64>,
        resolve: bool,
    ) -> PyResult<(usize, Vec<Finished>)> {
        let timeout = timeout_s.map(|t| Duration::from_secs_f64(t.clamp(0.0, 1e9)));
        let engine = self.inner.clone();
        let done = py
            .detach(move || engine.drive(wake_fd, timeout))
            .map_err(os_error)?;
        let finished = self.finished(py, done)?;
        if !resolve {
            return Ok((0, finished));
        }
        // NOTE: the loop in Python (EngineBridge.deliver) cost ~700
        // instructions a request more, with its tuple unpacking and getter
        // calls (callgrind, 50 users over TLS, 2026-12-02).
        let mut resolved = 0;
        let mut left = Vec::new();
        for (waiter, raw) in finished {
            let recorded = waiter.bind(py).borrow().recorded();
            let value = raw.clone_ref(py).into_any();
            if PyRequestAwaitable::resolve(waiter.bind(py).clone(), value) || recorded {
                resolved += 1;
            } else {
                left.push((waiter, raw));
            }
        }
        Ok((resolved, left))
    }

    /// Stops watching `wake_fd`; call it before closing that descriptor.
    fn unwatch(&self, wake_fd: i32) {
        self.inner.unwatch(wake_fd);
    }

    /// Records one timed action (µs, bytes); `error` makes it a failure;
    /// `intended_lag_us` (open workload model) also records it corrected
    /// for coordinated omission; `ttfb_us` is its time to first byte.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, method, name, response_time_us, content_bytes, error = None, intended_lag_us = None, ttfb_us = None))]
    fn record(
        &self,
        method: String,
        name: String,
        response_time_us: u64,
        content_bytes: u64,
        error: Option<String>,
        intended_lag_us: Option<u64>,
        ttfb_us: Option<u64>,
    ) {
        self.inner.recorder().record(RequestSample {
            method,
            name,
            response_time_us,
            content_bytes,
            error,
            at_s: unix_now_s(),
            intended_lag_us,
            ttfb_us,
        });
    }

    /// Records one exception from user code.
    fn record_error(&self, message: String, traceback: String, node: String) {
        self.inner.recorder().record_error(message, traceback, node);
    }

    /// The statistics as of now, including everything recorded before;
    /// with `with_history`, also every history row (for the final reports).
    #[pyo3(signature = (*, with_history = false))]
    fn snapshot(&self, py: Python<'_>, with_history: bool) -> PyResult<PyStatsSnapshot> {
        let recorder = self.inner.recorder();
        py.detach(move || {
            if with_history {
                recorder.snapshot_with_history()
            } else {
                recorder.snapshot()
            }
        })
        .map(|inner| PyStatsSnapshot { inner })
        .ok_or_else(|| stopped("the stats aggregator has stopped"))
    }

    /// Closes the stats window: appends a history row with `user_count`.
    #[pyo3(signature = (user_count, *, full_history = false))]
    fn tick(&self, user_count: u64, full_history: bool) {
        self.inner.recorder().tick(user_count, full_history);
    }

    /// `PREFIX_stats_history.csv` text for the history rows from
    /// `from_row` on (with the header line when `from_row` is 0), and the
    /// number of rows there are now: a run appends it to the file each
    /// second, so that a killed process keeps its history.
    fn history_csv_since(&self, py: Python<'_>, from_row: usize) -> PyResult<(String, usize)> {
        let recorder = self.inner.recorder();
        let rows = py
            .detach(move || recorder.history_since(from_row))
            .ok_or_else(|| stopped("the stats aggregator has stopped"))?;
        let text = report::csv::history_csv_part(&rows, from_row == 0);
        Ok((text, from_row + rows.len()))
    }

    /// Keeps at most `max_names` distinct (method, name) rows; requests
    /// under further names count in one `(other names)` row per method.
    /// Raises ValueError for 0.
    fn set_max_names(&self, max_names: usize) -> PyResult<()> {
        if max_names == 0 {
            return Err(bad_argument("max_names=0: keep at least 1 row"));
        }
        self.inner.recorder().set_max_names(max_names);
        Ok(())
    }

    /// Clears the statistics (Locust's reset); with `clear_history`, the
    /// history rows too (a new run in the same process).
    #[pyo3(signature = (*, clear_history = false))]
    fn reset_stats(&self, clear_history: bool) {
        if clear_history {
            self.inner.recorder().restart();
        } else {
            self.inner.recorder().reset();
        }
    }

    /// Requests started and not yet finished.
    fn in_flight(&self) -> u64 {
        self.inner.in_flight()
    }

    /// Blocks (without the GIL) until no request is in flight or the timeout
    /// passes; returns whether all finished.
    fn wait_idle(&self, py: Python<'_>, timeout_s: f64) -> bool {
        let engine = self.inner.clone();
        py.detach(move || engine.wait_idle(timeout_s))
    }
}

/// A finished request as Python sees it: what its user awaits, and the response.
type Finished = (Py<PyRequestAwaitable>, Py<PyRawResponse>);

impl PyEngine {
    /// Pairs each finished request with its awaitable, which leaves the
    /// pending map, for Python to deliver. Finished reads of streamed
    /// bodies are resolved here, once the map is let go (their waiters
    /// run user code, which may read again).
    fn finished(&self, py: Python<'_>, done: Vec<Completion>) -> PyResult<Vec<Finished>> {
        let mut responses = Vec::with_capacity(done.len());
        let mut reads = Vec::new();
        {
            let mut pending = self.pending.lock().expect("pending requests");
            for c in done {
                let Some(waiter) = pending.remove(&c.id) else {
                    continue;
                };
                match c.outcome {
                    Outcome::Response(outcome) => responses.push((waiter, outcome)),
                    Outcome::Read(read) => reads.push((waiter, read)),
                }
            }
        }
        for (waiter, read) in reads {
            let waiter = waiter.into_bound(py);
            match read_value(py, read)? {
                Ok(value) => {
                    PyRequestAwaitable::resolve(waiter, value);
                }
                Err(refused) => {
                    PyRequestAwaitable::fail(
                        waiter,
                        refused.into_value(py).into_bound(py).into_any(),
                    )?;
                }
            }
        }
        responses
            .into_iter()
            .map(|(waiter, outcome)| Ok((waiter, Py::new(py, PyRawResponse { outcome })?)))
            .collect()
    }
}

/// A read's result as `Engine.read` documents it, or for a refused read
/// the ValueError its waiter raises.
fn read_value(py: Python<'_>, read: Read) -> PyResult<Result<Py<PyAny>, PyErr>> {
    Ok(Ok(match read {
        Read::Chunk { data, at_us } => (PyBytes::new(py, &data), at_us)
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Read::Event { event, at_us } => (event.event, event.data, event.id, event.retry_ms, at_us)
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Read::End => py.None(),
        Read::Refused(why) => return Ok(Err(bad_argument(why))),
    }))
}

#[pymethods]
impl PySession {
    /// The user's host without a trailing slash, or None.
    #[getter]
    fn base_url(&self) -> Option<String> {
        self.inner.base_url.clone()
    }

    /// A request of this session, as `RequestSpec(...)` takes it.
    // NOTE: the same as `RequestSpec(...)`, but a method call takes its
    // keywords without building a dict (vectorcall), where a class's
    // constructor cannot: 326 ns a request against 538 ns (timeit, release
    // build, 2026-12-02), about 1 % of a request's CPU.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, method, url, name, headers, body = None, timeout_s = None, allow_redirects = true, record = true, intended_lag_us = None, max_body_bytes = None, verify = None, cert = None, stream = false))]
    fn prepare(
        &self,
        method: &str,
        url: String,
        name: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout_s: Option<f64>,
        allow_redirects: bool,
        record: bool,
        intended_lag_us: Option<u64>,
        max_body_bytes: Option<u64>,
        verify: Option<VerifyArg>,
        cert: Option<CertArg>,
        stream: bool,
    ) -> PyResult<PyRequestSpec> {
        PyRequestSpec::new(
            method,
            url,
            name,
            headers,
            body,
            timeout_s,
            allow_redirects,
            record,
            intended_lag_us,
            max_body_bytes,
            verify,
            cert,
            stream,
        )
    }
}

#[pymethods]
impl PyRawResponse {
    /// HTTP status; 0 when no response arrived.
    #[getter]
    fn status(&self) -> u16 {
        self.outcome.status
    }
    /// Where the time went, in µs: `dns_us`, `connect_us`, `tls_us`,
    /// `waiting_us` (time to first byte), `receiving_us`; a kept connection
    /// shows zeros for the phases it skipped.
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let t = self.outcome.timings;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("dns_us", t.dns_us)?;
        d.set_item("connect_us", t.connect_us)?;
        d.set_item("tls_us", t.tls_us)?;
        d.set_item("waiting_us", t.waiting_us)?;
        d.set_item("receiving_us", t.receiving_us)?;
        Ok(d)
    }
    /// The time to first byte it is recorded with (µs), or None.
    #[getter]
    fn ttfb_us(&self) -> Option<u64> {
        self.outcome.ttfb_us()
    }
    /// The HTTP version that answered: "HTTP/1.1", "HTTP/2" or "HTTP/1.0".
    #[getter]
    fn http_version(&self) -> &'static str {
        match self.outcome.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_3 => "HTTP/3",
            http::Version::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        }
    }
    #[getter]
    fn reason(&self) -> &str {
        self.outcome.reason
    }
    /// requests' and Locust's name for `status`.
    #[getter]
    fn status_code(&self) -> u16 {
        self.outcome.status
    }
    /// The body (requests' `content`).
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.outcome.body)
    }
    /// The body as UTF-8 text, undecodable bytes replaced.
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.outcome.body).into_owned()
    }
    #[getter]
    fn url(&self) -> &str {
        &self.outcome.url
    }
    #[getter]
    fn method(&self) -> &str {
        &self.outcome.method
    }
    #[getter]
    fn name(&self) -> &str {
        &self.outcome.name
    }
    /// Issue to last body byte, µs; for a streamed body still arriving,
    /// issue to now.
    #[getter]
    fn response_time_us(&self) -> u64 {
        match &self.outcome.stream {
            Some(s) => s.response_time_us(),
            None => self.outcome.response_time_us,
        }
    }
    /// How late its iteration started (open workload model), or None.
    #[getter]
    fn intended_lag_us(&self) -> Option<u64> {
        self.outcome.intended_lag_us
    }
    /// Body bytes: of a streamed body, those that arrived so far.
    #[getter]
    fn content_bytes(&self) -> u64 {
        match &self.outcome.stream {
            Some(s) => s.body_bytes(),
            None => self.outcome.body.len() as u64,
        }
    }
    /// The failure text (Locust's rules; for a streamed body, also why it
    /// broke), or None.
    #[getter]
    fn error(&self) -> Option<String> {
        match &self.outcome.stream {
            Some(s) => s.error(),
            None => self.outcome.error.clone(),
        }
    }
    /// Whether the body is streamed (`stream=True`): read it with
    /// `Engine.read`, and `close()` it.
    #[getter]
    fn streamed(&self) -> bool {
        self.outcome.stream.is_some()
    }
    /// Whether the streamed body has ended (or was closed); True for a
    /// body that is not streamed.
    #[getter]
    fn body_ended(&self) -> bool {
        self.outcome
            .stream
            .as_ref()
            .is_none_or(|s| s.end_us().is_some())
    }
    /// Closes a streamed body: its connection (or HTTP/2 stream) is let go
    /// and the request is recorded as of now, unless it ended before.
    /// Returns whether this call ended it; False for a body not streamed.
    fn close(&self) -> bool {
        self.outcome.stream.as_ref().is_some_and(|s| s.close())
    }
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.outcome.body)
    }
    /// Response headers as (name, value) pairs, names lower-case.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.outcome
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }
    /// Cookies this response set, as (name, value) pairs.
    #[getter]
    fn cookies(&self) -> Vec<(String, String)> {
        self.outcome.cookies.clone()
    }
}

#[pymethods]
impl PyStatsSnapshot {
    /// The snapshot as JSON (times µs, rates per second); see docs/json.md.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(stopped)
    }
    /// The JSON report (`--json`, docs/json.md), indented: `meta` as for
    /// `html_report`, and the run's `task_runs`. Raises ValueError for bad
    /// metadata.
    fn json_report(&self, meta: &Bound<'_, PyAny>, task_runs: u64) -> PyResult<String> {
        let meta: report::html::ReportMeta =
            pythonize::depythonize(meta).map_err(|e| bad_shape("report metadata", e))?;
        let fields = serde_json::json!({ "user_count": meta.peak_users, "task_runs": task_runs });
        serde_json::to_string_pretty(&report::json_report(&self.inner, &meta, &fields))
            .map_err(stopped)
    }
    /// Locust's request table; `current` uses last-10-s rates.
    #[pyo3(signature = (current = false))]
    fn stats_table(&self, current: bool) -> String {
        console::stats_table(&self.inner, current)
    }
    fn percentile_table(&self) -> String {
        console::percentile_table(&self.inner)
    }
    /// The percentile table corrected for coordinated omission; "" when
    /// the run had no open-model iterations.
    fn corrected_percentile_table(&self) -> String {
        console::corrected_percentile_table(&self.inner)
    }
    fn failures_and_errors(&self) -> String {
        console::failures_and_errors(&self.inner)
    }
    /// `PREFIX_stats.csv` text, Locust's columns (ms).
    fn csv_stats(&self) -> String {
        report::csv::stats_csv(&self.inner)
    }
    /// `PREFIX_stats_history.csv` text (needs `with_history`).
    fn csv_history(&self) -> String {
        report::csv::history_csv(&self.inner.history)
    }
    fn csv_failures(&self) -> String {
        report::csv::failures_csv(&self.inner)
    }
    fn csv_exceptions(&self) -> String {
        report::csv::exceptions_csv(&self.inner)
    }
    /// The self-contained HTML report. `meta` (a dict) holds `host`,
    /// `script`, `user_classes`, `peak_users` and `version`. Raises
    /// ValueError for bad metadata.
    fn html_report(&self, meta: &Bound<'_, PyAny>) -> PyResult<String> {
        let meta: report::html::ReportMeta =
            pythonize::depythonize(meta).map_err(|e| bad_shape("report metadata", e))?;
        report::html::render(&self.inner, &meta).map_err(stopped)
    }
    /// Evaluates checks such as `"p95 < 200ms"`; returns the printed table
    /// and `(check, passed, actual)` per check. Raises ConfigError for a
    /// check that does not parse.
    fn evaluate_checks(
        &self,
        py: Python<'_>,
        checks: Vec<String>,
    ) -> PyResult<(String, Vec<CheckRow>)> {
        let parsed = parse_checks(py, &checks)?;
        let results = report::checks::evaluate(&parsed, &self.inner);
        let table = report::checks::results_table(&results);
        Ok((
            table,
            results
                .into_iter()
                .map(|r| (r.check, r.passed, r.actual))
                .collect(),
        ))
    }
    #[getter]
    fn num_requests(&self) -> u64 {
        self.inner.total.num_requests
    }
    #[getter]
    fn num_failures(&self) -> u64 {
        self.inner.total.num_failures
    }
    /// Requests counted in the `(other names)` rows: past the limit on
    /// distinct names, here or on a worker.
    #[getter]
    fn folded_requests(&self) -> u64 {
        let other = |e: &&EntrySnapshot| e.name == OTHER_NAMES;
        self.inner
            .entries
            .iter()
            .filter(other)
            .map(|e| e.num_requests)
            .sum()
    }
    /// The limit on distinct rows the statistics kept.
    #[getter]
    fn max_names(&self) -> usize {
        self.inner.max_names
    }
    /// Exceptions raised in user code, counted with repeats.
    #[getter]
    fn num_errors(&self) -> u64 {
        self.inner.errors.iter().map(|e| e.count).sum()
    }
}

/// Users per class for `total` users: fixed counts first, then by weight
/// (largest remainder). Raises `ConfigError` for a bad weight.
#[pyfunction]
fn user_counts(
    py: Python<'_>,
    weights: Vec<f64>,
    fixed_counts: Vec<u64>,
    total: u64,
) -> PyResult<Vec<u64>> {
    let specs: Vec<ClassSpec> = weights
        .iter()
        .zip(fixed_counts.iter().chain(std::iter::repeat(&0)))
        .map(|(&weight, &fixed_count)| ClassSpec {
            weight,
            fixed_count,
        })
        .collect();
    dispatch::user_counts(&specs, total).map_err(|e| dispatch_error(py, e))
}

/// Percentiles (`[("50%", µs), ...]`, Locust's columns) of one histogram
/// holding exactly `samples_us`: the reference a merge must equal.
#[pyfunction]
fn percentiles_of(samples_us: Vec<u64>) -> Vec<(String, u64)> {
    let mut entry = crate::stats::StatsEntry::new("", "");
    for v in samples_us {
        entry.record(v, 0, false, 0.0);
    }
    entry.snapshot(0.0, 1.0).percentiles_us
}

/// Cluster-wide user indexes for new counts, keeping those users already
/// have: `owned[w][c]` and `counts[w][c]` per worker and class; returns the
/// new `owned` (see `dispatch::assign_user_indexes`).
#[pyfunction]
fn assign_user_indexes(
    owned: Vec<Vec<Vec<u64>>>,
    counts: Vec<Vec<u64>>,
) -> PyResult<Vec<Vec<Vec<u64>>>> {
    if owned.len() < counts.len() {
        return Err(bad_argument("owned needs a row for every row of counts"));
    }
    Ok(dispatch::assign_user_indexes(&owned, &counts))
}

/// The spawn order (class indexes) that keeps every prefix in proportion.
#[pyfunction]
fn spawn_order(counts: Vec<u64>) -> Vec<usize> {
    dispatch::spawn_order(&counts)
}

fn parse_checks(py: Python<'_>, checks: &[String]) -> PyResult<Vec<report::checks::Check>> {
    checks
        .iter()
        .map(|c| {
            report::checks::parse_check(c).map_err(|e| {
                config_error(
                    py,
                    ConfigError::Usage {
                        message: e.to_string(),
                        exit_code: 2,
                    },
                )
            })
        })
        .collect()
}

/// Checks that every check parses; raises ConfigError naming the first bad one.
#[pyfunction]
fn validate_checks(py: Python<'_>, checks: Vec<String>) -> PyResult<()> {
    parse_checks(py, &checks).map(|_| ())
}

/// Checks a host URL; returns it without a trailing slash or raises ConfigError.
#[pyfunction]
fn validate_host(py: Python<'_>, url: &str) -> PyResult<String> {
    crate::engine::validate_base_url(url).map_err(|e| engine_error(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add_class::<PyRequestSpec>()?;
    m.add_class::<PyRequestAwaitable>()?;
    m.add_class::<PySession>()?;
    m.add_class::<PyRawResponse>()?;
    m.add_class::<PyStatsSnapshot>()?;
    m.add_function(wrap_pyfunction!(user_counts, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_order, m)?)?;
    m.add_function(wrap_pyfunction!(assign_user_indexes, m)?)?;
    m.add_function(wrap_pyfunction!(percentiles_of, m)?)?;
    m.add_function(wrap_pyfunction!(validate_host, m)?)?;
    m.add_function(wrap_pyfunction!(validate_checks, m)?)?;
    Ok(())
}
