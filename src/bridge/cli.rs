//! `parse_options`: the command line, parsed in Rust by clap.

use pyo3::prelude::*;

use super::errors::config_error;
use crate::config::{self, ParseOutcome};

/// Parses the command line (program name first) with config-file values
/// and the aiotestfile's own options, given as `(long name, help,
/// environment variable, is a flag)`; their values come back under
/// `run.custom_options`.
///
/// Returns `("run", options, 0)`, the options as a dict (`run` and
/// `command`), or, for `--help` and `--version`, `("exit", text, 0)`.
/// Raises `aiotest.exceptions.ConfigError` (with `exit_code` 2) for bad
/// usage. Never exits the process.
#[pyfunction]
#[pyo3(signature = (argv, file_values, custom_options = Vec::new()))]
fn parse_options<'py>(
    py: Python<'py>,
    argv: Vec<String>,
    file_values: Vec<(String, String, Vec<String>)>,
    custom_options: Vec<(String, String, Option<String>, bool)>,
) -> PyResult<(String, Bound<'py, PyAny>, i32)> {
    let custom: Vec<config::CustomOption> = custom_options
        .into_iter()
        .map(|(long, help, env, flag)| config::CustomOption {
            long,
            help,
            env,
            flag,
        })
        .collect();
    match config::parse_options(&argv, &file_values, &custom) {
        Ok(ParseOutcome::Run(cli)) => Ok(("run".into(), pythonize::pythonize(py, &*cli)?, 0)),
        Ok(ParseOutcome::Exit { text, exit_code }) => {
            Ok(("exit".into(), text.into_pyobject(py)?.into_any(), exit_code))
        }
        Err(e) => Err(config_error(py, e)),
    }
}

/// Parses a duration such as `300s`, `20m` or `1h30m` into seconds.
/// Raises `ConfigError` for anything else.
#[pyfunction]
fn parse_duration_s(py: Python<'_>, text: &str) -> PyResult<f64> {
    config::parse_duration_s(text).map_err(|message| {
        config_error(
            py,
            config::ConfigError::Usage {
                message,
                exit_code: 2,
            },
        )
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_options, m)?)?;
    m.add_function(wrap_pyfunction!(parse_duration_s, m)?)?;
    Ok(())
}
