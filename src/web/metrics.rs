//! `GET /metrics`: the run's statistics for Prometheus, in the OpenMetrics
//! text format (which Prometheus scrapes natively), encoded by the
//! `prometheus-client` crate.
//!
//! Counters and histograms are read off the stats aggregator at each scrape,
//! so they are exactly the statistics every report shows: the sum of
//! `aiotest_requests_total` over its series equals the Aggregated row
//! (itself left out, so that sums do not count it twice). A stats reset (a
//! new run from the web UI) resets them, which Prometheus' `rate()` reads
//! as a counter reset. The run's state, users and workers come from what
//! the Python runner last published ([`Metrics::set_status`]).

use std::sync::Arc;

use crate::export::{RunStatus, SharedStatus};
use crate::stats::{BucketBounds, EntryBuckets, Recorder};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `/metrics` endpoint's state.
pub struct Metrics {
    recorder: Recorder,
    bounds: BucketBounds,
    status: SharedStatus,
}

/// The states `aiotest_run_state` has a series for (OpenMetrics'
/// state-set convention: 1 for the current one, 0 for the others).
const RUN_STATES: [&str; 5] = ["ready", "spawning", "running", "stopping", "stopped"];

impl Metrics {
    /// Metrics of `recorder`'s statistics, with response-time buckets at
    /// `buckets_s` (seconds; see [`BucketBounds::new`]).
    pub fn new(recorder: Recorder, buckets_s: &[f64]) -> Self {
        Self {
            recorder,
            bounds: BucketBounds::new(buckets_s),
            status: SharedStatus::default(),
        }
    }

    /// Replaces the run's status the gauges show.
    pub fn set_status(&self, status: RunStatus) {
        self.status.set(status);
    }

    /// The exposition text, or None when the aggregator has stopped.
    /// Blocks for one round trip to the aggregator.
    pub fn render(&self) -> Option<String> {
        let rows = self.recorder.bucket_counts(self.bounds.micros.clone())?;
        let status = self.status.get();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            rows,
            bounds_s: self.bounds.seconds.clone(),
            status,
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).ok()?;
        Some(text)
    }
}

/// `/metrics` over `metrics`, for any router's state.
pub fn routes<S: Clone + Send + Sync + 'static>(metrics: Arc<Metrics>) -> Router<S> {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(Some(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the statistics have stopped\n",
        )
            .into_response(),
    }
}

/// One scrape's figures, encoded as metric families.
#[derive(Debug)]
struct Scrape {
    rows: Vec<EntryBuckets>,
    bounds_s: Vec<f64>,
    status: RunStatus,
}

type Labels = Vec<(&'static str, String)>;

fn request_labels(row: &EntryBuckets) -> Labels {
    vec![("method", row.method.clone()), ("name", row.name.clone())]
}

impl Scrape {
    /// The rows by (method, name): all but the Aggregated row, which
    /// [`crate::stats::bucket_counts`] puts last.
    fn entries(&self) -> impl Iterator<Item = &EntryBuckets> {
        self.rows
            .split_last()
            .map_or(&[][..], |(_, rest)| rest)
            .iter()
    }

    fn counters(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: fn(&EntryBuckets) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for row in self.entries() {
            let labels = request_labels(row);
            ConstCounter::new(value(row)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn histograms(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "aiotest_response_time_seconds",
            "Response times: issue to last body byte.",
            None,
            MetricType::Histogram,
        )?;
        for row in self.entries() {
            let labels = request_labels(row);
            // prometheus-client takes per-bucket counts and accumulates them.
            let buckets: Vec<(f64, u64)> = self
                .bounds_s
                .iter()
                .copied()
                .chain([f64::MAX]) // the encoder's `+Inf`
                .zip(row.per_bucket())
                .collect();
            let sum_s = row.total_response_time_us as f64 / 1e6;
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum_s, row.num_requests, &buckets, None)?;
        }
        Ok(())
    }

    fn gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let status = &self.status;
        gauge_family(
            encoder,
            ("aiotest_users", "Users running now, by user class."),
            "user_class",
            &status.users_by_class,
        )?;
        gauge_family(
            encoder,
            ("aiotest_workers", "A master's workers, by state."),
            "state",
            &status.workers_by_state,
        )?;
        let mut run = encoder.encode_descriptor(
            "aiotest_run_state",
            "The run's state: 1 for the current one.",
            None,
            MetricType::Gauge,
        )?;
        for state in RUN_STATES {
            let labels: Labels = vec![("state", state.to_owned())];
            let now = i64::from(status.state == state);
            ConstGauge::new(now).encode(run.encode_family(&labels)?)?;
        }
        let cpu = encoder.encode_descriptor(
            "aiotest_cpu_percent",
            "This process's CPU use, percent of one core.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(status.cpu_percent).encode(cpu)
    }
}

/// A gauge family with one series per `(label value, count)`.
fn gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    label: &'static str,
    counts: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, count) in counts {
        let labels: Labels = vec![(label, value.clone())];
        ConstGauge::new(i64::try_from(*count).unwrap_or(i64::MAX))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.counters(
            &mut encoder,
            "aiotest_requests",
            "Requests, failed or not, by method and name.",
            |r| r.num_requests,
        )?;
        self.counters(
            &mut encoder,
            "aiotest_failures",
            "Failed requests, by method and name.",
            |r| r.num_failures,
        )?;
        self.histograms(&mut encoder)?;
        self.gauges(&mut encoder)
    }
}
