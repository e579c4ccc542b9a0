//! aiotest's core: the HTTP engine, the statistics, user dispatch, the
//! command line and the demo target, plus (with the `python` feature) the
//! PyO3 bridge that exposes them as `aiotest._core`.

pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod report;
pub mod stats;
pub mod target;
pub mod web;

#[cfg(feature = "python")]
mod bridge;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _core(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    bridge::register(m)
}
