//! Turns core errors into the Python exceptions of `aiotest.exceptions`,
//! in one place. Those classes share the root `AiotestError`.

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::config::ConfigError;
use crate::dispatch::DispatchError;
use crate::engine::EngineError;

/// An instance of `aiotest.exceptions.<class_name>(message)`, with
/// `exit_code` set when given.
fn aiotest_exception(
    py: Python<'_>,
    class_name: &str,
    message: String,
    exit_code: Option<i32>,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("aiotest.exceptions")?.getattr(class_name)?;
        let cls = cls.cast_into::<PyType>()?;
        let err = PyErr::from_type(cls, (message.clone(),));
        if let Some(code) = exit_code {
            err.value(py).setattr("exit_code", code)?;
        }
        Ok(err)
    })();
    made.unwrap_or_else(|e| e)
}

pub fn config_error(py: Python<'_>, e: ConfigError) -> PyErr {
    let code = match &e {
        ConfigError::Usage { exit_code, .. } => *exit_code,
        ConfigError::UnknownFileOption { .. } => 2,
    };
    aiotest_exception(
        py,
        "ConfigError",
        e.to_string().trim_end().to_owned(),
        Some(code),
    )
}

pub fn engine_error(py: Python<'_>, e: EngineError) -> PyErr {
    let class = match e {
        EngineError::BadUrl { .. } | EngineError::NoHost(_) => "ConfigError",
        EngineError::Client(_) | EngineError::Start(_) => "AiotestError",
    };
    aiotest_exception(py, class, e.to_string(), None)
}

pub fn dispatch_error(py: Python<'_>, e: DispatchError) -> PyErr {
    aiotest_exception(py, "ConfigError", e.to_string(), Some(2))
}
