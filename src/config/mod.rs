//! Command-line and configuration options.
//!
//! Precedence, as in Locust: command line, then `AIOTEST_<OPTION>`
//! environment variables, then a config file (`aiotest.conf` or
//! `[tool.aiotest]` in `pyproject.toml`), then the default.

mod cli;
mod duration;
mod test_plan;

pub use cli::{
    parse_options, Cli, Command, CustomOption, DemoTargetOptions, ParseOutcome, RunOptions,
};
pub use duration::parse_duration_s;
pub use test_plan::{parse_test_plan, Stage, TestPlan};

use thiserror::Error;

/// A bad option, from the command line, the environment or a config file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// clap's own message (already naming the flag) and the exit code it asks for.
    #[error("{message}")]
    Usage { message: String, exit_code: i32 },
    /// A key in a config file that names no option.
    #[error("unknown option '{key}' in {source_name}: run `aiotest --help` for the option names")]
    UnknownFileOption { key: String, source_name: String },
}
