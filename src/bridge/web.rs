//! The web UI (`aiotest._core.WebUi`): served from Rust, steered by the
//! Python runner. See `src/web/mod.rs` and `docs/web.md`.

use pyo3::prelude::*;

use super::engine::PyEngine;
use super::errors::{bad_shape, stopped, web_error};
use crate::export::RunStatus;
use crate::report::html::ReportMeta;
use crate::web::{WebConfig, WebUi};

/// The web UI of one master or local run. See `_core.pyi`.
#[pyclass(name = "WebUi", module = "aiotest._core")]
pub struct PyWebUi {
    inner: Option<WebUi>,
}

/// `value` (a dict) as `T`; ValueError naming `what` otherwise (a bug in
/// the Python runner, not user input).
fn parse<T: serde::de::DeserializeOwned>(what: &str, value: &Bound<'_, PyAny>) -> PyResult<T> {
    pythonize::depythonize(value).map_err(|e| bad_shape(what, e))
}

impl PyWebUi {
    fn ui(&self) -> PyResult<&WebUi> {
        self.inner
            .as_ref()
            .ok_or_else(|| stopped("the web UI has stopped"))
    }
}

#[pymethods]
impl PyWebUi {
    /// Binds `host:port` and serves. Raises OSError when the address cannot
    /// be bound, ConfigError for a bad login or unreadable TLS files.
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (engine, *, host, port, login = None, tls_cert = None, tls_key = None, service_only = false, serve_metrics = true, metrics_buckets_s = Vec::new()))]
    fn new(
        py: Python<'_>,
        engine: &PyEngine,
        host: String,
        port: u16,
        login: Option<String>,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        service_only: bool,
        serve_metrics: bool,
        metrics_buckets_s: Vec<f64>,
    ) -> PyResult<Self> {
        let config = WebConfig {
            host,
            port,
            login,
            tls_cert_path: tls_cert,
            tls_key_path: tls_key,
            service_only,
            serve_metrics,
            metrics_buckets_s,
        };
        let rt = engine.inner.runtime().handle().clone();
        let recorder = engine.inner.recorder();
        py.detach(|| WebUi::start(&rt, &config, recorder))
            .map(|ui| Self { inner: Some(ui) })
            .map_err(|e| web_error(py, e))
    }

    /// The bound port (useful with port 0).
    #[getter]
    fn port(&self) -> PyResult<u16> {
        Ok(self.ui()?.local_addr().port())
    }

    /// `http` or `https`.
    #[getter]
    fn scheme(&self) -> PyResult<&'static str> {
        Ok(self.ui()?.scheme())
    }

    /// Readable when commands wait in `drain_commands()`.
    fn wakeup_fd(&self) -> PyResult<i32> {
        Ok(self.ui()?.commands().wakeup_fd())
    }

    /// Commands since the last call, each a dict: `id`, `action` (`swarm`,
    /// `stop`, `reset`), `body` and `content_type`.
    fn drain_commands<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.ui()?
            .commands()
            .drain()
            .iter()
            .map(|c| Ok(pythonize::pythonize(py, c)?))
            .collect()
    }

    /// Whether the client still waits for command `id` (it gives up after
    /// 10 s with a 503; the command must not run after that).
    fn awaited(&self, id: u64) -> PyResult<bool> {
        Ok(self.ui()?.awaited(id))
    }

    /// Answers command `id` with an HTTP status and a JSON-able body (a
    /// dict). Raises ValueError for a body that JSON cannot carry.
    fn reply(&self, id: u64, status: u16, body: &Bound<'_, PyAny>) -> PyResult<()> {
        let body: serde_json::Value = parse("reply body", body)?;
        self.ui()?.reply(id, status, body.to_string());
        Ok(())
    }

    /// Publishes the runner's status (a dict: `state`, `user_count`,
    /// `workers`, ...) with fresh statistics to every browser. `meta`
    /// (host, script, user_classes, peak_users, version) heads the HTML
    /// report; `fields` (user_count, task_runs) joins the JSON report.
    /// Raises ValueError for values not of those shapes.
    #[pyo3(signature = (status, *, meta = None, fields = None))]
    fn publish(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        meta: Option<&Bound<'_, PyAny>>,
        fields: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let status: serde_json::Value = parse("status", status)?;
        let meta: Option<ReportMeta> = meta.map(|m| parse("report meta", m)).transpose()?;
        let fields = match fields {
            Some(f) => parse("report fields", f)?,
            None => serde_json::Value::Null,
        };
        let ui = self.ui()?;
        py.detach(|| ui.publish(&status, meta, fields));
        Ok(())
    }

    /// Sets what `GET /readyz` answers: 200 when `ready`, else 503;
    /// `reason` is the body either way.
    fn set_ready(&self, ready: bool, reason: &str) -> PyResult<()> {
        self.ui()?.health().set(ready, reason);
        Ok(())
    }

    /// Sets what `GET /metrics` shows besides the statistics: a dict with
    /// `state`, `users_by_class` and `workers_by_state` (lists of `(name,
    /// count)`) and `cpu_percent`. Raises ValueError for another shape.
    fn set_status(&self, py: Python<'_>, status: &Bound<'_, PyAny>) -> PyResult<()> {
        let status: RunStatus = parse("the metrics status", status)?;
        let ui = self.ui()?;
        py.detach(|| ui.metrics().set_status(status));
        Ok(())
    }

    /// Drops the chart history (after `Engine.reset_stats(clear_history=True)`).
    fn clear_history(&self) -> PyResult<()> {
        self.ui()?.clear_history();
        Ok(())
    }

    /// Stops serving; idempotent.
    fn stop(&mut self, py: Python<'_>) {
        if let Some(ui) = self.inner.take() {
            py.detach(move || drop(ui));
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWebUi>()
}
