//! The web UI (`aiotest._core.WebUi`): served from Rust, steered by the
//! Python runner. See `src/web/mod.rs` and `docs/web.md`.

use pyo3::prelude::*;

use super::engine::PyEngine;
use super::errors::config_error;
use crate::config::ConfigError;
use crate::report::html::ReportMeta;
use crate::web::{WebConfig, WebError, WebUi};

/// The web UI of one master or local run. See `_core.pyi`.
#[pyclass(name = "WebUi", module = "aiotest._core")]
pub struct PyWebUi {
    inner: Option<WebUi>,
}

/// `text` as JSON of type `T`; ValueError naming `what` otherwise (a bug
/// in the Python runner, not user input).
fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> PyResult<T> {
    serde_json::from_str(text).map_err(|e| {
        pyo3::exceptions::PyValueError::new_err(format!("{what} is not valid JSON: {e}"))
    })
}

impl PyWebUi {
    fn ui(&self) -> PyResult<&WebUi> {
        self.inner
            .as_ref()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the web UI has stopped"))
    }
}

#[pymethods]
impl PyWebUi {
    /// Binds `host:port` and serves. Raises OSError when the address cannot
    /// be bound, ConfigError for a bad login or unreadable TLS files.
    #[new]
    #[pyo3(signature = (engine, *, host, port, login = None, tls_cert = None, tls_key = None))]
    fn new(
        py: Python<'_>,
        engine: &PyEngine,
        host: String,
        port: u16,
        login: Option<String>,
        tls_cert: Option<String>,
        tls_key: Option<String>,
    ) -> PyResult<Self> {
        let config = WebConfig {
            host,
            port,
            login,
            tls_cert_path: tls_cert,
            tls_key_path: tls_key,
        };
        let rt = engine.inner.runtime().handle().clone();
        let recorder = engine.inner.recorder();
        match py.detach(|| WebUi::start(&rt, &config, recorder)) {
            Ok(ui) => Ok(Self { inner: Some(ui) }),
            Err(e @ WebError::Bind { .. }) => {
                Err(pyo3::exceptions::PyOSError::new_err(e.to_string()))
            }
            Err(WebError::Config(message)) => Err(config_error(
                py,
                ConfigError::Usage {
                    message,
                    exit_code: 2,
                },
            )),
        }
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

    /// Commands since the last call, each JSON: `id`, `action` (`swarm`,
    /// `stop`, `reset`), `body` and `content_type`.
    fn drain_commands(&self) -> PyResult<Vec<String>> {
        Ok(self
            .ui()?
            .commands()
            .drain()
            .iter()
            .map(|c| serde_json::to_string(c).expect("commands serialize"))
            .collect())
    }

    /// Answers command `id` with an HTTP status and a JSON body.
    fn reply(&self, id: u64, status: u16, body_json: String) -> PyResult<()> {
        self.ui()?.reply(id, status, body_json);
        Ok(())
    }

    /// Publishes the runner's status (a JSON object: `state`, `user_count`,
    /// `workers`, ...) with fresh statistics to every browser. `meta_json`
    /// (host, script, user_classes, peak_users, version) heads the HTML
    /// report; `fields_json` (user_count, task_runs) joins the JSON report.
    /// Raises ValueError for text that is not such JSON.
    #[pyo3(signature = (status_json, *, meta_json = None, fields_json = None))]
    fn publish(
        &self,
        py: Python<'_>,
        status_json: &str,
        meta_json: Option<&str>,
        fields_json: Option<&str>,
    ) -> PyResult<()> {
        let status: serde_json::Value = parse("status", status_json)?;
        let meta: Option<ReportMeta> = meta_json.map(|t| parse("report meta", t)).transpose()?;
        let fields = match fields_json {
            Some(text) => parse("report fields", text)?,
            None => serde_json::Value::Null,
        };
        let ui = self.ui()?;
        py.detach(|| ui.publish(&status, meta, fields));
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
