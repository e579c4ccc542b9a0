//! The PyO3 layer: the only code that touches Python. Each file wraps one
//! part of the core and registers it on `aiotest._core`.

mod awaitable;
mod cli;
mod cluster;
mod engine;
mod errors;
mod export;
mod request;
mod stats;
mod target;
mod web;

use pyo3::prelude::*;

/// Adds every class and function of the extension to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    cli::register(m)?;
    cluster::register(m)?;
    engine::register(m)?;
    export::register(m)?;
    target::register(m)?;
    web::register(m)?;
    Ok(())
}
