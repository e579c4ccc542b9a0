//! The `aiotest` command line, parsed with clap. Flag names and defaults
//! follow Locust's (`-f`, `-H`, `-u`, `-r`, `-t`, `--headless`, ...).

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

use super::duration::parse_duration_s;
use super::ConfigError;

/// `aiotest`: load tests scripted in Python, driven by a Rust engine.
#[derive(Debug, Parser, Serialize)]
#[command(
    name = "aiotest",
    version,
    about = "Load tests scripted in Python (Locust-style user classes), run on a Rust HTTP engine.",
    args_override_self = true,
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunOptions,
}

/// Commands other than running a test.
#[derive(Debug, Subcommand, Serialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Command {
    /// Serve the built-in demo target (the endpoints examples/aiotestfile.py uses).
    DemoTarget(DemoTargetOptions),
}

/// Options of `aiotest demo-target`.
#[derive(Debug, clap::Args, Serialize)]
pub struct DemoTargetOptions {
    /// Address to listen on. Loopback by default.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

/// Options of a test run.
#[derive(Debug, clap::Args, Serialize)]
pub struct RunOptions {
    /// Python module that defines the user classes.
    #[arg(
        short = 'f',
        long,
        alias = "locustfile",
        env = "AIOTEST_AIOTESTFILE",
        default_value = "aiotestfile.py",
        value_name = "FILE"
    )]
    pub aiotestfile: String,

    /// A config file in locust.conf's form, read after locust.conf,
    /// aiotest.conf and pyproject.toml: its values win over theirs, and the
    /// environment and the command line win over it (Locust's --config).
    #[arg(long, env = "AIOTEST_CONFIG", value_name = "FILE")]
    pub config: Option<String>,

    /// Host to load test, e.g. http://127.0.0.1:8080. Overrides the classes' `host`.
    #[arg(short = 'H', long, env = "AIOTEST_HOST", value_name = "URL")]
    pub host: Option<String>,

    /// Skip TLS certificate verification for every user, as verify=False
    /// does for one request (for staging servers with self-signed or
    /// private-CA certificates). Prefer verify='ca.pem' or SSL_CERT_FILE.
    #[arg(long, env = "AIOTEST_INSECURE")]
    pub insecure: bool,

    /// HTTP version of every user, over the classes' http_version: auto
    /// (HTTP/2 when a TLS server picks it by ALPN, else HTTP/1.1), 1.1, or 2
    /// (also HTTP/2 with prior knowledge, h2c, over plain http).
    #[arg(long, env = "AIOTEST_HTTP_VERSION", value_parser = ["auto", "1.1", "2"], value_name = "VERSION")]
    pub http_version: Option<String>,

    /// Peak number of concurrent users.
    #[arg(short = 'u', long, env = "AIOTEST_USERS", default_value = "1", value_parser = parse_users, value_name = "N")]
    pub users: u64,

    /// Users started per second during ramp-up.
    #[arg(short = 'r', long, env = "AIOTEST_SPAWN_RATE", default_value = "1", value_parser = parse_rate, value_name = "PER_S")]
    pub spawn_rate: f64,

    /// Stop after this time, e.g. 300s, 20m, 1h30m. Runs until Ctrl-C when absent.
    #[arg(short = 't', long = "run-time", env = "AIOTEST_RUN_TIME", value_parser = parse_duration_s, value_name = "TIME")]
    pub run_time_s: Option<f64>,

    /// Open workload model: start this many task iterations per second (e.g. 500/s, 30/m), each on an idle user of a pool of -u users, whatever the response times; latency is also reported corrected for coordinated omission. Stages RATE:DURATION separated by commas step the rate (e.g. 100/s:30s,500/s:1m); the run ends after the last.
    #[arg(long = "arrival-rate", env = "AIOTEST_ARRIVAL_RATE", value_parser = parse_arrival_plan, value_name = "RATE")]
    pub arrival_rate: Option<ArrivalPlan>,

    /// A stepped load instead of -u/-t: stages USERS[@RATE]:DURATION separated by commas, e.g. 10:30s,50@5:1m (the rate defaults to -r). The run ends after the last stage.
    #[arg(long = "test-plan", env = "AIOTEST_TEST_PLAN", value_parser = super::parse_test_plan, value_name = "PLAN")]
    pub test_plan: Option<super::TestPlan>,

    /// Run without the web UI and start the test at once.
    #[arg(long, env = "AIOTEST_HEADLESS")]
    pub headless: bool,

    /// Address the web UI binds (`*` for every interface, as Locust's default).
    #[arg(
        long,
        env = "AIOTEST_WEB_HOST",
        default_value = "*",
        value_name = "HOST"
    )]
    pub web_host: String,

    /// Port of the web UI [default: 8089]. A headless run serves /healthz, /readyz and /metrics there; a worker serves /healthz and /readyz there only when it is given.
    #[arg(short = 'P', long, env = "AIOTEST_WEB_PORT", value_name = "PORT")]
    pub web_port: Option<u16>,

    /// Serve nothing over HTTP in a headless run or on a worker (no /healthz, /readyz or /metrics).
    #[arg(long, env = "AIOTEST_NO_WEB_SERVER")]
    pub no_web_server: bool,

    /// Push the run's metrics over OTLP/HTTP (protobuf) to this collector every second, e.g. http://otel-collector:4318 (/v1/metrics is appended unless given).
    #[arg(long = "otlp-endpoint", env = "AIOTEST_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Bucket bounds of the aiotest_response_time_seconds histogram on /metrics, in seconds, e.g. 0.005,0.05,0.5 [default: 1 ms to 60 s in 16 steps].
    #[arg(long = "metrics-buckets", env = "AIOTEST_METRICS_BUCKETS", value_delimiter = ',', value_parser = parse_bucket_s, value_name = "SECONDS")]
    pub metrics_buckets_s: Vec<f64>,

    /// Protect the web UI with HTTP basic auth, e.g. admin:s3cret.
    #[arg(
        long,
        env = "AIOTEST_WEB_LOGIN",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    pub web_login: Option<String>,

    /// PEM certificate chain: serve the web UI over HTTPS (with --tls-key).
    #[arg(
        long,
        env = "AIOTEST_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<String>,

    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "AIOTEST_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<String>,

    /// Start the test at once with -u/-r/-t, and keep the web UI up.
    #[arg(long, env = "AIOTEST_AUTOSTART")]
    pub autostart: bool,

    /// With --autostart: quit this many seconds after the run ends (e.g. 0, 30s).
    #[arg(long = "autoquit", env = "AIOTEST_AUTOQUIT", value_parser = parse_duration_s, value_name = "TIME")]
    pub autoquit_s: Option<f64>,

    /// Seconds users may take to finish their current task at stop, e.g. 10s.
    #[arg(short = 's', long = "stop-timeout", env = "AIOTEST_STOP_TIMEOUT", default_value = "0", value_parser = parse_duration_s, value_name = "TIME")]
    pub stop_timeout_s: f64,

    /// Run only tasks with one of these tags.
    #[arg(short = 'T', long, env = "AIOTEST_TAGS", num_args = 0.., value_delimiter = ',', value_name = "TAG")]
    pub tags: Vec<String>,

    /// Skip tasks with any of these tags.
    #[arg(short = 'E', long, env = "AIOTEST_EXCLUDE_TAGS", num_args = 0.., value_delimiter = ',', value_name = "TAG")]
    pub exclude_tags: Vec<String>,

    /// List the user classes and exit.
    #[arg(short = 'l', long)]
    pub list: bool,

    /// Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[arg(short = 'L', long, env = "AIOTEST_LOGLEVEL", default_value = "INFO", value_parser = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], ignore_case = true)]
    pub loglevel: String,

    /// Also write the log to this file.
    #[arg(long, env = "AIOTEST_LOGFILE", value_name = "FILE")]
    pub logfile: Option<String>,

    /// Exit code when the run had failures or user errors.
    #[arg(
        long,
        env = "AIOTEST_EXIT_CODE_ON_ERROR",
        default_value_t = 1,
        value_name = "CODE"
    )]
    pub exit_code_on_error: i32,

    /// Print the final statistics as JSON on stdout.
    #[arg(long, env = "AIOTEST_JSON")]
    pub json: bool,

    /// Write the final statistics as JSON to this file.
    #[arg(long, env = "AIOTEST_JSON_FILE", value_name = "FILE")]
    pub json_file: Option<String>,

    /// Print only the final summary, not the live table.
    #[arg(long, env = "AIOTEST_ONLY_SUMMARY")]
    pub only_summary: bool,

    /// With the web UI, also print the live table in the console (headless runs always do).
    #[arg(long, env = "AIOTEST_PRINT_STATS")]
    pub print_stats: bool,

    /// Reset the statistics once all users have spawned (drops the ramp-up).
    #[arg(long, env = "AIOTEST_RESET_STATS")]
    pub reset_stats: bool,

    /// Write PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv and PREFIX_exceptions.csv.
    #[arg(long = "csv", env = "AIOTEST_CSV", value_name = "PREFIX")]
    pub csv_prefix: Option<String>,

    /// Add a history row per endpoint to PREFIX_stats_history.csv, not only Aggregated.
    #[arg(long, env = "AIOTEST_CSV_FULL_HISTORY")]
    pub csv_full_history: bool,

    /// Distinct request names (stats rows) to keep; requests under further
    /// names count in one "(other names)" row per method. Give requests
    /// whose URLs hold ids a name= instead of raising this.
    #[arg(long, env = "AIOTEST_MAX_NAMES", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub max_names: u64,

    /// Write a self-contained HTML report (opens with no network).
    #[arg(long = "html", env = "AIOTEST_HTML", value_name = "FILE")]
    pub html_file: Option<String>,

    /// Stop after exactly N task executions in total.
    #[arg(short = 'i', long, env = "AIOTEST_ITERATIONS", value_parser = parse_iterations, value_name = "N")]
    pub iterations: Option<u64>,

    /// A pass/fail check on the final statistics, e.g. "p95 < 200ms" or "GET /items: p99 < 500ms"; repeatable. A breach exits with code 3.
    #[arg(
        long = "check",
        env = "AIOTEST_CHECK",
        value_name = "CHECK",
        value_delimiter = ';'
    )]
    pub checks: Vec<String>,

    /// Exit code 3 if the failure ratio is above R (locust-plugins' flag).
    #[arg(long, env = "AIOTEST_CHECK_FAIL_RATIO", value_name = "R")]
    pub check_fail_ratio: Option<f64>,

    /// Exit code 3 if the average requests/s is below N (locust-plugins' flag).
    #[arg(long, env = "AIOTEST_CHECK_RPS", value_name = "N")]
    pub check_rps: Option<f64>,

    /// Exit code 3 if the average response time is above MS milliseconds (locust-plugins' flag).
    #[arg(long, env = "AIOTEST_CHECK_AVG_RESPONSE_TIME", value_name = "MS")]
    pub check_avg_response_time: Option<f64>,

    /// Run as the master of a distributed test: workers run the users.
    #[arg(long, env = "AIOTEST_MASTER", conflicts_with = "worker")]
    pub master: bool,

    /// Address the master binds (`*` for all).
    #[arg(
        long,
        env = "AIOTEST_MASTER_BIND_HOST",
        default_value = "*",
        value_name = "HOST"
    )]
    pub master_bind_host: String,

    /// Port the master binds.
    #[arg(
        long,
        env = "AIOTEST_MASTER_BIND_PORT",
        default_value_t = 5557,
        value_name = "PORT"
    )]
    pub master_bind_port: u16,

    /// Workers the master waits for before starting.
    #[arg(
        long,
        env = "AIOTEST_EXPECT_WORKERS",
        default_value_t = 1,
        value_name = "N"
    )]
    pub expect_workers: u32,

    /// Seconds the master waits for --expect-workers; 0 waits forever.
    #[arg(long = "expect-workers-max-wait", env = "AIOTEST_EXPECT_WORKERS_MAX_WAIT", default_value = "0", value_parser = parse_duration_s, value_name = "TIME")]
    pub expect_workers_max_wait_s: f64,

    /// Run as a worker: take users from a master.
    #[arg(long, env = "AIOTEST_WORKER")]
    pub worker: bool,

    /// The master's address, for --worker.
    #[arg(
        long,
        env = "AIOTEST_MASTER_HOST",
        default_value = "127.0.0.1",
        value_name = "HOST"
    )]
    pub master_host: String,

    /// The master's port, for --worker.
    #[arg(
        long,
        env = "AIOTEST_MASTER_PORT",
        default_value_t = 5557,
        value_name = "PORT"
    )]
    pub master_port: u16,

    /// For --worker: exit when the master's run ends or the master leaves (code 0), or when the master falls silent (code 1), rather than wait for the next master. On Kubernetes this lets a worker Job complete with its master.
    #[arg(long, env = "AIOTEST_WORKER_EXIT_WITH_MASTER")]
    pub worker_exit_with_master: bool,

    /// Fork N local worker processes (-1: one per core); without --worker this process becomes their master.
    #[arg(long, env = "AIOTEST_PROCESSES", value_parser = parse_processes, value_name = "N")]
    pub processes: Option<i64>,

    /// Seconds between heartbeats, both ways.
    #[arg(long = "heartbeat-interval", env = "AIOTEST_HEARTBEAT_INTERVAL", default_value = "1", value_parser = parse_duration_s, value_name = "TIME")]
    pub heartbeat_interval_s: f64,

    /// Missed heartbeats before a peer counts as gone.
    #[arg(long, env = "AIOTEST_HEARTBEAT_LIVENESS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub heartbeat_liveness: u32,

    /// Shared secret of master and workers: every message is signed with HMAC-SHA256 under it, and peers without it are refused. Prefer the AIOTEST_SECRET variable, which `ps` does not show.
    #[arg(
        long,
        env = "AIOTEST_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// User classes to run (all of them when none are named).
    #[arg(value_name = "USER_CLASS")]
    pub user_classes: Vec<String>,

    /// Values of the aiotestfile's own options ([`CustomOption`]), by name:
    /// a string, `true`/`false` for a flag, or null when not given.
    #[arg(skip)]
    pub custom_options: std::collections::BTreeMap<String, serde_json::Value>,
}

/// An option the aiotestfile adds to the command line (Locust's
/// `events.init_command_line_parser`). It parses like a built-in one: from
/// the command line, its environment variable, or a config file.
#[derive(Debug, Clone, Default)]
pub struct CustomOption {
    /// The long name without dashes, e.g. `my-arg`.
    pub long: String,
    pub help: String,
    /// The environment variable that may set it.
    pub env: Option<String>,
    /// A flag takes no value.
    pub flag: bool,
}

impl CustomOption {
    fn arg(&self) -> clap::Arg {
        let arg = clap::Arg::new(self.long.clone())
            .long(self.long.clone())
            .help(self.help.clone())
            .help_heading("Options of the aiotestfile");
        let arg = match &self.env {
            Some(env) => arg.env(env.clone()),
            None => arg,
        };
        if self.flag {
            arg.action(ArgAction::SetTrue)
        } else {
            arg.action(ArgAction::Set).value_name("VALUE")
        }
    }

    fn value(&self, matches: &clap::ArgMatches) -> serde_json::Value {
        if self.flag {
            serde_json::Value::Bool(matches.get_flag(&self.long))
        } else {
            matches
                .get_one::<String>(&self.long)
                .map_or(serde_json::Value::Null, |v| {
                    serde_json::Value::String(v.clone())
                })
        }
    }
}

fn parse_users(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n as u64),
        _ => Err(format!(
            "'{text}' is not a user count: give a whole number of 0 or more, e.g. -u 100"
        )),
    }
}

fn parse_iterations(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n as u64),
        _ => Err(format!(
            "'{text}' is not an iteration count: give a whole number above 0, e.g. -i 1000"
        )),
    }
}

fn parse_otlp_endpoint(text: &str) -> Result<String, String> {
    crate::export::otlp::metrics_url(text).map(|_| text.to_owned())
}

fn parse_bucket_s(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "'{text}' is not a bucket bound: give seconds above 0 (at most a day), e.g. 0.005,0.05,0.5"
        )),
    }
}

fn parse_processes(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n == -1 || n > 0 => Ok(n),
        _ => Err(format!(
            "'{text}' is not a process count: give a number above 0, or -1 for one per core"
        )),
    }
}

/// One step of `--arrival-rate`: iterations per second, held for
/// `duration_s` (the last step may hold until the run ends).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrivalStage {
    pub rate_per_s: f64,
    pub duration_s: Option<f64>,
}

/// `--arrival-rate`: one constant rate, or stages run in turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ArrivalPlan(pub Vec<ArrivalStage>);

fn parse_arrival_plan(text: &str) -> Result<ArrivalPlan, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let (rate, duration) = match part.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (*part, None),
            };
            let duration_s = duration
                .map(|d| match parse_duration_s(d) {
                    Ok(v) if v > 0.0 => Ok(v),
                    _ => Err(format!(
                        "arrival rate stage '{part}': '{d}' is not a duration above 0, e.g. 30s or 2m"
                    )),
                })
                .transpose()?;
            if duration_s.is_none() && i < last {
                return Err(format!(
                    "arrival rate stage '{part}' needs a duration (RATE:DURATION): only the last stage may hold until the run ends"
                ));
            }
            Ok(ArrivalStage {
                rate_per_s: parse_arrival_rate(rate)?,
                duration_s,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(ArrivalPlan)
}

fn parse_arrival_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, per_s) = match t.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 1.0 / 60.0),
        Some(_) => (t, f64::NAN),
        None => (t, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && per_s.is_finite() => Ok(v * per_s),
        _ => Err(format!(
            "'{text}' is not an arrival rate: give iterations per second or minute above 0, e.g. 500/s or 30/m"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "'{text}' is not a spawn rate: give users per second above 0, e.g. -r 10"
        )),
    }
}

/// What parsing the command line led to.
#[derive(Debug)]
pub enum ParseOutcome {
    /// Options to run with.
    Run(Box<Cli>),
    /// Text to print and an exit code, for `--help` and `--version` (code 0).
    Exit { text: String, exit_code: i32 },
}

/// Parses `argv` (program name first) with values from config files.
///
/// `file_values` holds `(source, key, values)` triples read from config files,
/// earliest file first. A key is an option's long name (`spawn-rate` or
/// `spawn_rate`); a flag takes one value, true or false. File values count
/// only where neither the command line nor an `AIOTEST_*` variable set the
/// option.
///
/// # Errors
/// [`ConfigError::Usage`] with clap's message (naming the flag and the fix)
/// and exit code 2; [`ConfigError::UnknownFileOption`] for a file key that
/// names no option.
pub fn parse_options(
    argv: &[String],
    file_values: &[(String, String, Vec<String>)],
    custom: &[CustomOption],
) -> Result<ParseOutcome, ConfigError> {
    let command = custom
        .iter()
        .fold(Cli::command(), |command, option| command.arg(option.arg()));
    let mut full: Vec<String> = argv.iter().take(1).cloned().collect();
    if full.is_empty() {
        full.push("aiotest".into());
    }
    for (source, key, values) in file_values {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .ok_or_else(|| ConfigError::UnknownFileOption {
                key: key.clone(),
                source_name: source.clone(),
            })?;
        let env_set = arg
            .get_env()
            .is_some_and(|name| std::env::var_os(name).is_some());
        if env_set {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            let on = values.first().is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
            });
            if on {
                full.push(format!("--{long}"));
            }
        } else {
            full.push(format!("--{long}"));
            full.extend(values.iter().cloned());
        }
    }
    full.extend(argv.iter().skip(1).cloned());
    match command.try_get_matches_from(&full) {
        Ok(matches) => {
            let mut cli = Cli::from_arg_matches(&matches).map_err(|e| usage(&e))?;
            cli.run.custom_options = custom
                .iter()
                .map(|o| (o.long.replace('-', "_"), o.value(&matches)))
                .collect();
            Ok(ParseOutcome::Run(Box::new(cli)))
        }
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Ok(ParseOutcome::Exit {
                    text: e.render().to_string(),
                    exit_code: 0,
                })
            }
            _ => Err(usage(&e)),
        },
    }
}

fn usage(e: &clap::Error) -> ConfigError {
    ConfigError::Usage {
        message: e.render().to_string(),
        exit_code: 2,
    }
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
