//! The engine as a Python class (`aiotest._core.Engine`), and the
//! functions of the core that Python calls directly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::awaitable::PyRequestAwaitable;
use super::errors::{bad_argument, config_error, dispatch_error, engine_error, os_error, stopped};
use super::request::{
    parse_http_version, tls_options, CertArg, PyRawResponse, PyRequestSpec, PySession, VerifyArg,
};
use super::stats::PyStatsSnapshot;
use crate::config::ConfigError;
use crate::dispatch::{self, ClassSpec};
use crate::engine::{Completion, Engine, Outcome, Read, ReadKind};
use crate::report;
use crate::stats::{unix_now_s, RequestSample};

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

pub(super) fn parse_checks(
    py: Python<'_>,
    checks: &[String],
) -> PyResult<Vec<report::checks::Check>> {
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
