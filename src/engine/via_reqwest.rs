//! Requests through reqwest: the hops after a redirect, requests while a
//! proxy is set, and streamed responses (`stream=True`), each with the
//! session's cookie jar and TLS configuration. Everything else takes the
//! session's own connections (`request.rs`, `h1.rs`, `h2.rs`).

use std::time::Instant;

use bytes::Bytes;
use reqwest::{Client, Url};

use super::h1::body_over_limit;
use super::request::{
    header_map, request_timeout, status_failure, HttpOutcome, RequestSpec, DEFAULT_MAX_BODY_BYTES,
};
use super::stream::BodyStream;
use super::timings::micros;
use crate::stats::{unix_now_s, Recorder};

/// reqwest's request for `spec` to `url`, without a timeout.
///
/// # Errors
/// An `InvalidHeader` failure text.
fn reqwest_request(
    client: &Client,
    url: Url,
    spec: &RequestSpec,
) -> Result<reqwest::RequestBuilder, String> {
    let mut builder = client
        .request(spec.method.clone(), url)
        .headers(header_map(&spec.headers)?);
    if let Some(body) = &spec.body {
        builder = builder.body(body.clone());
    }
    Ok(builder)
}

/// Fills `out` from a response head.
fn take_head(out: &mut HttpOutcome, resp: &reqwest::Response) {
    out.status = resp.status().as_u16();
    out.reason = resp.status().canonical_reason().unwrap_or("");
    out.version = resp.version();
    out.url = resp.url().to_string();
    if resp.headers().contains_key(reqwest::header::SET_COOKIE) {
        out.cookies = resp
            .cookies()
            .map(|c| (c.name().to_owned(), c.value().to_owned()))
            .collect();
    }
    out.headers = resp.headers().clone();
}

/// Sends `spec` to `url` with reqwest and reads the whole body, timing both.
pub(crate) async fn execute(client: &Client, url: Url, spec: &RequestSpec) -> HttpOutcome {
    let mut out = HttpOutcome::failed_before_sending(spec, String::new());
    out.url = url.to_string();
    let builder = match reqwest_request(client, url, spec) {
        Ok(b) => b.timeout(request_timeout(spec)),
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let started = Instant::now();
    let result = match builder.send().await {
        Ok(resp) => {
            take_head(&mut out, &resp);
            read_limited(resp, spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)).await
        }
        Err(e) => Err(describe_error(&e)),
    };
    out.response_time_us = started.elapsed().as_micros() as u64;
    out.ended_at_s = unix_now_s();
    match result {
        Ok(body) => {
            out.body = body;
            out.error = status_failure(out.status, out.reason);
        }
        Err(e) => out.error = Some(e),
    }
    out
}

/// Sends `spec` to `url` with reqwest and returns at the response head,
/// with the body left to [`BodyStream`]; its time to first byte is the
/// head's arrival. The request's timeout bounds the wait for the head, and
/// then each wait for more of the body (as `requests` applies its read
/// timeout), not the whole stream. When the body ends, `recorder` (if
/// any) records the request.
pub(super) async fn execute_streamed(
    client: &Client,
    url: Url,
    spec: &RequestSpec,
    recorder: Option<Recorder>,
) -> HttpOutcome {
    let mut out = HttpOutcome::failed_before_sending(spec, String::new());
    out.url = url.to_string();
    let builder = match reqwest_request(client, url, spec) {
        Ok(b) => b,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let timeout = request_timeout(spec);
    let started = Instant::now();
    match tokio::time::timeout(timeout, builder.send()).await {
        Err(_) => out.error = Some("Timeout: request timed out".to_owned()),
        Ok(Err(e)) => out.error = Some(describe_error(&e)),
        Ok(Ok(resp)) => {
            take_head(&mut out, &resp);
            out.timings.waiting_us = micros(started.elapsed());
            out.error = status_failure(out.status, out.reason);
            let record = recorder.map(|r| (r, out.sample()));
            out.stream = Some(BodyStream::start(
                resp,
                started,
                out.error.clone(),
                record,
                timeout,
            ));
        }
    }
    out.response_time_us = micros(started.elapsed());
    out.ended_at_s = unix_now_s();
    out
}

/// The whole body of `resp`, failing once it is over `max_body_bytes`
/// (the same limit and text as the plain-http path).
async fn read_limited(mut resp: reqwest::Response, max_body_bytes: u64) -> Result<Bytes, String> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe_error(&e))? {
        if body.len() as u64 + chunk.len() as u64 > max_body_bytes {
            return Err(format!(
                "ResponseError: {}",
                body_over_limit(max_body_bytes)
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
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
    let cause = root_cause(e);
    if e.is_timeout() && cause.contains("timed out") {
        return format!("{kind}: request timed out");
    }
    format!("{kind}: {cause}")
}

/// The text of the innermost error in `e`'s `source()` chain: the cause a
/// failure text names (an OS error, a parse error), without its wrappers.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    root.to_string()
}
