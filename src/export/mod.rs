//! The run's metrics for other systems: what both exports show besides the
//! statistics ([`RunStatus`]), and OTLP pushes ([`otlp::OtlpExporter`]).
//! (Prometheus scrapes `GET /metrics` instead: `src/web/metrics.rs`.)

pub mod otlp;

use std::sync::RwLock;

use serde::Deserialize;

/// What the runner publishes about the run, besides the statistics.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunStatus {
    /// `ready`, `spawning`, `running`, `stopping` or `stopped`.
    pub state: String,
    /// Users running now, by class name.
    #[serde(default)]
    pub users_by_class: Vec<(String, u64)>,
    /// A master's workers by state (`ready`, `running`, `missing`, ...).
    #[serde(default)]
    pub workers_by_state: Vec<(String, u64)>,
    /// This process's busy CPU, % of one core.
    #[serde(default)]
    pub cpu_percent: f64,
}

/// The latest [`RunStatus`], set by the runner and read by each scrape or
/// push.
#[derive(Debug, Default)]
pub struct SharedStatus(RwLock<RunStatus>);

impl SharedStatus {
    /// Replaces the status.
    pub fn set(&self, status: RunStatus) {
        if let Ok(mut s) = self.0.write() {
            *s = status;
        }
    }

    /// The status now (the default before the first [`SharedStatus::set`]).
    pub fn get(&self) -> RunStatus {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
}
