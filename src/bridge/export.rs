//! `aiotest._core.OtlpExporter`: pushes the run's metrics over OTLP/HTTP
//! (`src/export/otlp.rs`), steered by the Python runner.

use std::time::Duration;

use pyo3::prelude::*;

use super::engine::PyEngine;
use super::errors::{bad_argument, bad_shape};
use crate::export::otlp::OtlpExporter;
use crate::export::RunStatus;

/// The OTLP push of one local run or master. See `_core.pyi`.
#[pyclass(name = "OtlpExporter", module = "aiotest._core")]
pub struct PyOtlpExporter {
    inner: OtlpExporter,
}

#[pymethods]
impl PyOtlpExporter {
    /// Starts pushing `engine`'s statistics to `endpoint` every
    /// `interval_s`. Raises ValueError for an endpoint that is not an
    /// http(s) URL or an interval that is not above 0.
    #[new]
    #[pyo3(signature = (engine, *, endpoint, interval_s = 1.0, buckets_s = Vec::new()))]
    fn new(
        engine: &PyEngine,
        endpoint: &str,
        interval_s: f64,
        buckets_s: Vec<f64>,
    ) -> PyResult<Self> {
        if !(interval_s.is_finite() && interval_s > 0.0) {
            return Err(bad_argument(format!(
                "interval_s={interval_s}: give seconds above 0"
            )));
        }
        let rt = engine.inner.runtime().handle().clone();
        OtlpExporter::start(
            &rt,
            endpoint,
            Duration::from_secs_f64(interval_s),
            engine.inner.recorder(),
            &buckets_s,
        )
        .map(|inner| Self { inner })
        .map_err(bad_argument)
    }

    /// The URL it posts to (`endpoint` with `/v1/metrics`).
    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }

    /// Sets what the gauges show, as `WebUi.set_status` takes it. Raises
    /// ValueError for another shape.
    fn set_status(&self, status: &Bound<'_, PyAny>) -> PyResult<()> {
        let status: RunStatus =
            pythonize::depythonize(status).map_err(|e| bad_shape("the metrics status", e))?;
        self.inner.set_status(status);
        Ok(())
    }

    /// Pushes the final figures and stops (blocks, without the GIL, for at
    /// most the push timeout). Idempotent.
    fn stop(&mut self, py: Python<'_>) {
        let inner = &mut self.inner;
        py.detach(|| inner.stop());
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyOtlpExporter>()
}
