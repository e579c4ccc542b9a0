//! Pushing the run's metrics to other systems: OTLP over HTTP
//! ([`otlp::OtlpExporter`]). (Prometheus scrapes `GET /metrics` instead:
//! `src/web/metrics.rs`.)

pub mod otlp;
