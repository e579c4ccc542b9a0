//! Turns errors into Python exceptions, in one place: the core's typed
//! errors into the classes of `aiotest.exceptions` (which share the root
//! `AiotestError`), and the bridge's own into builtins (ValueError for a
//! bad argument, OSError for the system, RuntimeError for a stopped part).

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::cluster::transport::TransportError;
use crate::config::ConfigError;
use crate::dispatch::DispatchError;
use crate::engine::EngineError;
use crate::web::WebError;

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

/// The web UI could not start: OSError for the address, ConfigError (exit
/// code 2) for a bad login or TLS files.
pub fn web_error(py: Python<'_>, e: WebError) -> PyErr {
    match e {
        e @ WebError::Bind { .. } => pyo3::exceptions::PyOSError::new_err(e.to_string()),
        WebError::Config(message) => config_error(
            py,
            ConfigError::Usage {
                message,
                exit_code: 2,
            },
        ),
    }
}

/// The master's port could not be bound: OSError, with the fix.
pub fn transport_error(e: TransportError) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("{e}: pick another --master-bind-port"))
}

/// A bad argument from Python: ValueError with `message`.
pub fn bad_argument(message: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(message.into())
}

/// A value of the wrong shape (`what`: the argument), as ValueError.
pub fn bad_shape(what: &str, e: impl std::fmt::Display) -> PyErr {
    bad_argument(format!("{what}: {e}"))
}

/// An OS-level failure (a descriptor that cannot be watched), as OSError.
pub fn os_error(e: impl std::fmt::Display) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(e.to_string())
}

/// A part of the core that has stopped or failed inside, as RuntimeError.
pub fn stopped(what: impl std::fmt::Display) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(what.to_string())
}
