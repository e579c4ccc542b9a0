//! Running one request and describing its outcome.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};

use super::{Completion, EngineError};
use crate::stats::{unix_now_s, RequestSample};

/// Timeout of a request that does not set one, in seconds. Locust's
/// FastHttpUser uses the same 60 s `network_timeout`.
pub const DEFAULT_TIMEOUT_S: f64 = 60.0;

/// What to send. Built by the Python session; read by the engine.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    /// Absolute, or relative to the user's host.
    pub url: String,
    /// The stats name: `name=`, else the URL as given.
    pub name: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_s: Option<f64>,
    pub allow_redirects: bool,
    /// Record in the statistics when done (false for `catch_response=True`,
    /// where user code decides success or failure later).
    pub record: bool,
    /// How late (µs) this request's iteration started in the open workload
    /// model; see [`RequestSample::intended_lag_us`].
    pub intended_lag_us: Option<u64>,
}

/// The result of one request, failed or not.
#[derive(Debug)]
pub struct HttpOutcome {
    pub method: String,
    pub name: String,
    /// 0 when no response arrived (connection error, timeout, bad URL).
    pub status: u16,
    pub reason: String,
    pub headers: HeaderMap,
    /// The final URL, after redirects.
    pub url: String,
    pub body: Bytes,
    /// Cookies the response set, as (name, value).
    pub cookies: Vec<(String, String)>,
    /// Issue to last body byte, in µs.
    pub response_time_us: u64,
    /// `Some` for a failure: Locust's rules (status >= 400, connection
    /// errors, timeouts).
    pub error: Option<String>,
    /// Unix time (s) the request ended.
    pub ended_at_s: f64,
    /// Copied from the request's [`RequestSpec::intended_lag_us`].
    pub intended_lag_us: Option<u64>,
}

impl HttpOutcome {
    pub(crate) fn failed_before_sending(spec: &RequestSpec, error: String) -> Self {
        Self {
            method: spec.method.to_string(),
            name: spec.name.clone(),
            status: 0,
            reason: String::new(),
            headers: HeaderMap::new(),
            url: spec.url.clone(),
            body: Bytes::new(),
            cookies: Vec::new(),
            response_time_us: 0,
            error: Some(error),
            ended_at_s: unix_now_s(),
            intended_lag_us: spec.intended_lag_us,
        }
    }

    /// The sample to record for this outcome, with its own error (if any).
    pub fn sample(&self) -> RequestSample {
        RequestSample {
            method: self.method.clone(),
            name: self.name.clone(),
            response_time_us: self.response_time_us,
            content_bytes: self.body.len() as u64,
            error: self.error.clone(),
            at_s: self.ended_at_s,
            intended_lag_us: self.intended_lag_us,
        }
    }
}

/// A submitted request, resolved against its session, not yet started.
pub(crate) struct Job {
    pub id: u64,
    /// The absolute URL and the session's client, or why there are none.
    pub prepared: Result<(Url, Client), EngineError>,
    pub spec: RequestSpec,
}

impl Job {
    /// Runs the request to its end. Returns its completion and, when
    /// `spec.record` is set, the sample to record. A request that could not
    /// be prepared ends as a failure like any other.
    pub async fn run(self) -> (Completion, Option<RequestSample>) {
        let outcome = match self.prepared {
            Ok((url, client)) => execute(&client, url, &self.spec).await,
            Err(e) => HttpOutcome::failed_before_sending(&self.spec, e.to_string()),
        };
        let sample = self.spec.record.then(|| outcome.sample());
        (
            Completion {
                id: self.id,
                outcome,
            },
            sample,
        )
    }
}

/// Sends `spec` to `url` and reads the whole body, timing both.
pub(crate) async fn execute(client: &Client, url: Url, spec: &RequestSpec) -> HttpOutcome {
    let mut out = HttpOutcome::failed_before_sending(spec, String::new());
    out.url = url.to_string();
    let mut builder = client
        .request(spec.method.clone(), url)
        .timeout(Duration::from_secs_f64(
            spec.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S).max(0.001),
        ));
    let mut headers = HeaderMap::with_capacity(spec.headers.len());
    for (k, v) in &spec.headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => {
                headers.append(k, v);
            }
            _ => {
                out.error = Some(format!(
                    "InvalidHeader: '{k}' cannot be sent as an HTTP header"
                ));
                return out;
            }
        }
    }
    builder = builder.headers(headers);
    if let Some(body) = &spec.body {
        builder = builder.body(body.clone());
    }
    let started = Instant::now();
    let result = match builder.send().await {
        Ok(resp) => {
            out.status = resp.status().as_u16();
            out.reason = resp.status().canonical_reason().unwrap_or("").to_owned();
            out.url = resp.url().to_string();
            if resp.headers().contains_key(reqwest::header::SET_COOKIE) {
                out.cookies = resp
                    .cookies()
                    .map(|c| (c.name().to_owned(), c.value().to_owned()))
                    .collect();
            }
            out.headers = resp.headers().clone();
            resp.bytes().await
        }
        Err(e) => Err(e),
    };
    out.response_time_us = started.elapsed().as_micros() as u64;
    out.ended_at_s = unix_now_s();
    match result {
        Ok(body) => {
            out.body = body;
            out.error = status_failure(out.status, &out.reason);
        }
        Err(e) => out.error = Some(describe_error(&e)),
    }
    out
}

/// Locust's failure text for an HTTP status of 400 or more (as `requests`'
/// `raise_for_status` words it, without the URL so that failures group by
/// name); `None` below 400.
pub fn status_failure(status: u16, reason: &str) -> Option<String> {
    let kind = match status {
        400..=499 => "Client",
        500..=599 => "Server",
        600.. => "Unknown",
        _ => return None,
    };
    Some(format!("HTTPError: {status} {kind} Error: {reason}"))
}

/// A short failure text for a transport error: its kind, then its root cause,
/// e.g. `ConnectionError: Connection refused (os error 111)`.
pub fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "Timeout"
    } else if e.is_connect() {
        "ConnectionError"
    } else if e.is_body() || e.is_decode() {
        "ResponseError"
    } else if e.is_redirect() {
        "TooManyRedirects"
    } else {
        "RequestError"
    };
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    if e.is_timeout() && cause.contains("timed out") {
        return format!("{kind}: request timed out");
    }
    format!("{kind}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_failures_follow_locust_rules() {
        assert_eq!(status_failure(200, "OK"), None);
        assert_eq!(status_failure(302, "Found"), None);
        assert_eq!(
            status_failure(404, "Not Found").unwrap(),
            "HTTPError: 404 Client Error: Not Found"
        );
        assert_eq!(
            status_failure(500, "Internal Server Error").unwrap(),
            "HTTPError: 500 Server Error: Internal Server Error"
        );
    }
}
