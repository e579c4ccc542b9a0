//! `--otlp-endpoint`: the run's metrics pushed every interval over OTLP/HTTP
//! with protobuf bodies (OpenTelemetry Protocol specification, "OTLP/HTTP"),
//! in the message types the OpenTelemetry project generates
//! (`opentelemetry-proto`).
//!
//! The figures are those of `GET /metrics` (`src/web/metrics.rs`), read off
//! the same aggregator: `aiotest.requests` and `aiotest.failures` as
//! cumulative monotonic sums per (method, name), `aiotest.response_time` as
//! a cumulative histogram in seconds, and gauges of users, workers and CPU.
//! Cumulative temporality from the statistics' start, so a collector that
//! misses a push loses nothing; the last push goes out when the exporter
//! stops.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use tokio::sync::oneshot;

use super::{RunStatus, SharedStatus};
use crate::engine::tls::{client_config, TlsOptions};
use crate::stats::{unix_now_s, BucketBounds, EntryBuckets, Recorder};

/// A push that takes longer fails (and the next one tries again).
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Pushes the metrics of one run until stopped.
pub struct OtlpExporter {
    status: Arc<SharedStatus>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    /// Where it pushes, for logs.
    pub url: String,
}

/// What each push reads.
struct Source {
    recorder: Recorder,
    status: Arc<SharedStatus>,
    bounds: BucketBounds,
    url: String,
}

/// `endpoint` as the URL to post metrics to: as given when it ends in
/// `/v1/metrics`, else with that path appended, as the OpenTelemetry SDKs
/// treat `OTEL_EXPORTER_OTLP_ENDPOINT`.
///
/// # Errors
/// A text naming the problem, for anything but an http(s) URL.
pub fn metrics_url(endpoint: &str) -> Result<String, String> {
    let parsed = url::Url::parse(endpoint).map_err(|e| {
        format!(
            "--otlp-endpoint {endpoint:?}: {e}: give an http(s) URL, e.g. http://collector:4318"
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "--otlp-endpoint {endpoint:?}: give an http(s) URL, e.g. http://collector:4318"
        ));
    }
    let trimmed = endpoint.trim_end_matches('/');
    Ok(if trimmed.ends_with("/v1/metrics") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/metrics")
    })
}

impl OtlpExporter {
    /// Starts pushing `recorder`'s figures to `endpoint` every `interval`
    /// on `rt`, with response-time buckets at `buckets_s` (s; the
    /// defaults of `/metrics` when empty).
    ///
    /// # Errors
    /// A text naming the problem: a bad endpoint, or no TLS roots.
    pub fn start(
        rt: &tokio::runtime::Handle,
        endpoint: &str,
        interval: Duration,
        recorder: Recorder,
        buckets_s: &[f64],
    ) -> Result<Self, String> {
        let url = metrics_url(endpoint)?;
        let tls = client_config(&TlsOptions::default())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(PUSH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the OTLP client: {e}"))?;
        let status = Arc::new(SharedStatus::default());
        let source = Source {
            recorder,
            status: status.clone(),
            bounds: BucketBounds::new(buckets_s),
            url: url.clone(),
        };
        let (stop, stopped) = oneshot::channel();
        rt.spawn(push_every(client, source, interval, stopped));
        Ok(Self {
            status,
            stop: Some(stop),
            url,
        })
    }

    /// Replaces the run's status the gauges show.
    pub fn set_status(&self, status: RunStatus) {
        self.status.set(status);
    }

    /// Pushes once more and stops; blocks until that push is done (at most
    /// the push timeout). Idempotent.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let (done, wait) = oneshot::channel();
            if stop.send(done).is_ok() {
                let _ = wait.blocking_recv();
            }
        }
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        // Not the final push: that is stop()'s, from a thread that may block.
        self.stop.take();
    }
}

async fn push_every(
    client: reqwest::Client,
    source: Source,
    interval: Duration,
    mut stopped: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let start_ns = nanos(unix_now_s());
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            done = &mut stopped => {
                push(&client, &source, start_ns, &mut failing).await;
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
        push(&client, &source, start_ns, &mut failing).await;
    }
}

/// One push; a failure is logged when pushes start failing, and again when
/// they recover.
async fn push(client: &reqwest::Client, source: &Source, start_ns: u64, failing: &mut bool) {
    let recorder = source.recorder.clone();
    let bounds_us = source.bounds.micros.clone();
    let Ok(Some(rows)) =
        tokio::task::spawn_blocking(move || recorder.bucket_counts(bounds_us)).await
    else {
        return;
    };
    let status = source.status.get();
    let body = request(
        &rows,
        &source.bounds.seconds,
        &status,
        start_ns,
        nanos(unix_now_s()),
    )
    .encode_to_vec();
    let sent = client
        .post(&source.url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await;
    let problem = match sent {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("the collector answered {}", resp.status())),
        Err(e) => Some(crate::engine::describe_error(&e)),
    };
    match problem {
        Some(why) if !*failing => {
            *failing = true;
            eprintln!(
                "warning: OTLP metrics to {} failed: {why}; retrying every interval",
                source.url
            );
        }
        None if *failing => {
            *failing = false;
            eprintln!("OTLP metrics to {} go through again", source.url);
        }
        _ => {}
    }
}

fn nanos(unix_s: f64) -> u64 {
    (unix_s * 1e9) as u64
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The export request for one push: `rows` from
/// [`crate::stats::bucket_counts`] (the Aggregated row last, left out),
/// response-time buckets at `bounds_s`.
pub fn request(
    rows: &[EntryBuckets],
    bounds_s: &[f64],
    status: &RunStatus,
    start_ns: u64,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    let entries = rows.split_last().map_or(&[][..], |(_, rest)| rest);
    let point = |row: &EntryBuckets, value: u64| NumberDataPoint {
        attributes: vec![text("method", &row.method), text("name", &row.name)],
        start_time_unix_nano: start_ns,
        time_unix_nano: now_ns,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(value).unwrap_or(i64::MAX),
        )),
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let counter = |name: &str, description: &str, value: fn(&EntryBuckets) -> u64| Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: "{request}".to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: entries.iter().map(|r| point(r, value(r))).collect(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "aiotest.response_time".to_owned(),
        description: "Response times: issue to last body byte.".to_owned(),
        unit: "s".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: entries
                .iter()
                .map(|row| HistogramDataPoint {
                    attributes: vec![text("method", &row.method), text("name", &row.name)],
                    start_time_unix_nano: start_ns,
                    time_unix_nano: now_ns,
                    count: row.num_requests,
                    sum: Some(row.total_response_time_us as f64 / 1e6),
                    bucket_counts: row.per_bucket(),
                    explicit_bounds: bounds_s.to_vec(),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: cumulative,
        })),
        ..Default::default()
    };
    let gauge = |name: &str, description: &str, unit: &str, points: Vec<(KeyValue, f64)>| Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points
                .into_iter()
                .map(|(label, value)| NumberDataPoint {
                    attributes: vec![label],
                    time_unix_nano: now_ns,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    };
    let labelled = |key: &str, counts: &[(String, u64)]| -> Vec<(KeyValue, f64)> {
        counts
            .iter()
            .map(|(v, n)| (text(key, v), *n as f64))
            .collect()
    };
    let metrics = vec![
        counter("aiotest.requests", "Requests, failed or not.", |r| {
            r.num_requests
        }),
        counter("aiotest.failures", "Failed requests.", |r| r.num_failures),
        histogram,
        gauge(
            "aiotest.users",
            "Users running now.",
            "{user}",
            labelled("user_class", &status.users_by_class),
        ),
        gauge(
            "aiotest.workers",
            "A master's workers, by state.",
            "{worker}",
            labelled("state", &status.workers_by_state),
        ),
        gauge(
            "aiotest.cpu",
            "This process's CPU use, percent of one core.",
            "%",
            vec![(text("process", "aiotest"), status.cpu_percent)],
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![text("service.name", "aiotest")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "aiotest".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_the_metrics_path_once() {
        assert_eq!(
            metrics_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("https://c.example/otlp/v1/metrics/").unwrap(),
            "https://c.example/otlp/v1/metrics"
        );
        assert!(metrics_url("collector:4318").is_err());
        assert!(metrics_url("ftp://collector").is_err());
    }

    #[test]
    fn the_request_holds_the_rows_without_the_aggregated_one() {
        let row = |name: &str, n: u64| EntryBuckets {
            method: "GET".into(),
            name: name.into(),
            num_requests: n,
            num_failures: 1,
            total_response_time_us: 2_500_000,
            cumulative: vec![1, n - 1, n],
        };
        let rows = [row("/a", 4), row("/b", 6), row("Aggregated", 10)];
        let req = request(&rows, &[0.01, 0.1], &RunStatus::default(), 1, 2);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("requests is a sum");
        };
        assert!(sum.is_monotonic && sum.data_points.len() == 2);
        let Some(metric::Data::Histogram(h)) = &metrics[2].data else {
            panic!("response_time is a histogram");
        };
        let b = &h.data_points[1];
        assert_eq!((b.count, b.bucket_counts.clone()), (6, vec![1, 4, 1]));
        assert_eq!(b.explicit_bounds, vec![0.01, 0.1]);
        // It encodes and decodes as the same message.
        let bytes = req.encode_to_vec();
        assert_eq!(
            ExportMetricsServiceRequest::decode(&bytes[..]).unwrap(),
            req
        );
    }
}
