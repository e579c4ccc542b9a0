//! The demo target, startable from Python (the `aiotest demo-target` command
//! and the tests).

use pyo3::prelude::*;

use crate::target::DemoTarget;

/// The built-in demo HTTP server, serving on its own threads.
#[pyclass(name = "DemoTarget", module = "aiotest._core")]
pub struct PyDemoTarget {
    inner: Option<DemoTarget>,
    host: String,
    port: u16,
}

#[pymethods]
impl PyDemoTarget {
    /// Starts serving on `bind:port`; port 0 picks a free port.
    /// Raises `OSError` when the address cannot be bound.
    #[new]
    #[pyo3(signature = (*, bind = "127.0.0.1".to_string(), port = 0))]
    fn new(bind: String, port: u16) -> PyResult<Self> {
        let inner = DemoTarget::start(&bind, port)?;
        let port = inner.addr.port();
        Ok(Self {
            inner: Some(inner),
            host: bind,
            port,
        })
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, e.g. `http://127.0.0.1:8080`.
    #[getter]
    fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// `{"total": n, "requests": {"GET /path": n}}` as JSON text.
    fn counts_json(&self) -> String {
        self.inner
            .as_ref()
            .map(|t| t.state.counts_json().to_string())
            .unwrap_or_else(|| "{}".into())
    }

    /// Stops serving; idempotent.
    fn stop(&mut self, py: Python<'_>) {
        if let Some(t) = self.inner.take() {
            py.detach(move || drop(t));
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDemoTarget>()
}
