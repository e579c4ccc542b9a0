//! A request and its response as Python classes: `RequestSpec` (what to
//! send), `HttpSession` (one user's cookies and connections) and
//! `RawResponse` (what came back).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::bad_argument;
use crate::engine::{HttpOutcome, HttpSession, HttpVersion, RequestSpec, TlsOptions, Verify};

/// `verify=` as `requests` takes it: a flag, or a CA bundle's path.
#[derive(FromPyObject)]
pub enum VerifyArg {
    Flag(bool),
    CaFile(String),
}

/// `cert=` as `requests` takes it: `(cert_file, key_file)`, or one file
/// that holds both.
#[derive(FromPyObject)]
pub enum CertArg {
    Pair((String, String)),
    Both(String),
}

/// The TLS options of `verify` and `cert`; None when neither is given.
pub(super) fn tls_options(verify: Option<VerifyArg>, cert: Option<CertArg>) -> Option<TlsOptions> {
    if verify.is_none() && cert.is_none() {
        return None;
    }
    Some(TlsOptions {
        verify: match verify {
            None | Some(VerifyArg::Flag(true)) => Verify::Platform,
            Some(VerifyArg::Flag(false)) => Verify::Off,
            Some(VerifyArg::CaFile(path)) => Verify::CaFile(path),
        },
        client_cert: cert.map(|c| match c {
            CertArg::Pair(pair) => pair,
            CertArg::Both(path) => (path.clone(), path),
        }),
        // The session's HTTP version decides.
        offer_h2: true,
    })
}

/// `http_version=`: "auto", "1.1" or "2".
pub(super) fn parse_http_version(text: &str) -> PyResult<HttpVersion> {
    match text {
        "auto" => Ok(HttpVersion::Auto),
        "1.1" => Ok(HttpVersion::Http1),
        "2" => Ok(HttpVersion::Http2),
        other => Err(bad_argument(format!(
            "http_version={other:?}: give \"auto\" (HTTP/2 when a TLS server offers it), \"1.1\" or \"2\" (also h2c over plain http)"
        ))),
    }
}

/// What to send (`aiotest._core.RequestSpec`): built once per request by
/// the Python session, checked when built. See `_core.pyi`.
#[pyclass(name = "RequestSpec", module = "aiotest._core", frozen)]
pub struct PyRequestSpec {
    pub(super) inner: Arc<RequestSpec>,
}

#[pymethods]
impl PyRequestSpec {
    /// Raises ValueError for an unknown method or a timeout that is not a
    /// number of seconds above 0.
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, method, url, name, headers, body = None, timeout_s = None, allow_redirects = true, record = true, intended_lag_us = None, max_body_bytes = None, verify = None, cert = None, stream = false))]
    fn new(
        method: &str,
        url: String,
        name: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout_s: Option<f64>,
        allow_redirects: bool,
        record: bool,
        intended_lag_us: Option<u64>,
        max_body_bytes: Option<u64>,
        verify: Option<VerifyArg>,
        cert: Option<CertArg>,
        stream: bool,
    ) -> PyResult<Self> {
        Self::build(RequestSpec {
            method: parse_method(method)?,
            url,
            name,
            headers,
            body: body.map(bytes::Bytes::from),
            timeout_s,
            allow_redirects,
            record,
            intended_lag_us,
            max_body_bytes,
            tls: tls_options(verify, cert),
            stream,
        })
    }

    #[getter]
    fn method(&self) -> &str {
        self.inner.method.as_str()
    }
    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }
    /// Whether the engine records it (False for `catch_response=True`).
    #[getter]
    fn record(&self) -> bool {
        self.inner.record
    }
    /// The headers this request adds, as `(name, value)` pairs.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers.clone()
    }
    /// The body, or None.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.body.as_deref().map(|b| PyBytes::new(py, b))
    }
}

impl PyRequestSpec {
    /// Checks what Python cannot: a timeout that is a number of seconds.
    fn build(inner: RequestSpec) -> PyResult<Self> {
        if let Some(t) = inner.timeout_s {
            if !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_S) {
                return Err(bad_argument(format!(
                    "timeout={t}: give seconds above 0 and at most {MAX_TIMEOUT_S}"
                )));
            }
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

fn parse_method(method: &str) -> PyResult<reqwest::Method> {
    reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad_argument(format!("'{method}' is not an HTTP method")))
}

/// The longest request timeout, in seconds (a day): longer ones overflow
/// no clock, but they are a mistake.
const MAX_TIMEOUT_S: f64 = 86_400.0;

/// One user's session: its own cookies and connections.
#[pyclass(name = "HttpSession", module = "aiotest._core", frozen)]
pub struct PySession {
    pub(super) inner: HttpSession,
}

/// A finished request as the engine saw it.
#[pyclass(name = "RawResponse", module = "aiotest._core", frozen)]
pub struct PyRawResponse {
    pub(super) outcome: HttpOutcome,
}

#[pymethods]
impl PySession {
    /// The user's host without a trailing slash, or None.
    #[getter]
    fn base_url(&self) -> Option<String> {
        self.inner.base_url.clone()
    }

    /// A request of this session, as `RequestSpec(...)` takes it.
    // NOTE: the same as `RequestSpec(...)`, but a method call takes its
    // keywords without building a dict (vectorcall), where a class's
    // constructor cannot: 326 ns a request against 538 ns (timeit, release
    // build, 2026-12-02), about 1 % of a request's CPU.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, method, url, name, headers, body = None, timeout_s = None, allow_redirects = true, record = true, intended_lag_us = None, max_body_bytes = None, verify = None, cert = None, stream = false))]
    fn prepare(
        &self,
        method: &str,
        url: String,
        name: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout_s: Option<f64>,
        allow_redirects: bool,
        record: bool,
        intended_lag_us: Option<u64>,
        max_body_bytes: Option<u64>,
        verify: Option<VerifyArg>,
        cert: Option<CertArg>,
        stream: bool,
    ) -> PyResult<PyRequestSpec> {
        PyRequestSpec::new(
            method,
            url,
            name,
            headers,
            body,
            timeout_s,
            allow_redirects,
            record,
            intended_lag_us,
            max_body_bytes,
            verify,
            cert,
            stream,
        )
    }
}

#[pymethods]
impl PyRawResponse {
    /// HTTP status; 0 when no response arrived.
    #[getter]
    fn status(&self) -> u16 {
        self.outcome.status
    }
    /// Where the time went, in µs: `dns_us`, `connect_us`, `tls_us`,
    /// `waiting_us` (time to first byte), `receiving_us`; a kept connection
    /// shows zeros for the phases it skipped.
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let t = self.outcome.timings;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("dns_us", t.dns_us)?;
        d.set_item("connect_us", t.connect_us)?;
        d.set_item("tls_us", t.tls_us)?;
        d.set_item("waiting_us", t.waiting_us)?;
        d.set_item("receiving_us", t.receiving_us)?;
        Ok(d)
    }
    /// The time to first byte it is recorded with (µs), or None.
    #[getter]
    fn ttfb_us(&self) -> Option<u64> {
        self.outcome.ttfb_us()
    }
    /// The HTTP version that answered: "HTTP/1.1", "HTTP/2" or "HTTP/1.0".
    #[getter]
    fn http_version(&self) -> &'static str {
        match self.outcome.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_3 => "HTTP/3",
            http::Version::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        }
    }
    #[getter]
    fn reason(&self) -> &str {
        self.outcome.reason
    }
    /// requests' and Locust's name for `status`.
    #[getter]
    fn status_code(&self) -> u16 {
        self.outcome.status
    }
    /// The body (requests' `content`).
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.outcome.body)
    }
    /// The body as UTF-8 text, undecodable bytes replaced.
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.outcome.body).into_owned()
    }
    #[getter]
    fn url(&self) -> &str {
        &self.outcome.url
    }
    #[getter]
    fn method(&self) -> &str {
        &self.outcome.method
    }
    #[getter]
    fn name(&self) -> &str {
        &self.outcome.name
    }
    /// Issue to last body byte, µs; for a streamed body still arriving,
    /// issue to now.
    #[getter]
    fn response_time_us(&self) -> u64 {
        match &self.outcome.stream {
            Some(s) => s.response_time_us(),
            None => self.outcome.response_time_us,
        }
    }
    /// How late its iteration started (open workload model), or None.
    #[getter]
    fn intended_lag_us(&self) -> Option<u64> {
        self.outcome.intended_lag_us
    }
    /// Body bytes: of a streamed body, those that arrived so far.
    #[getter]
    fn content_bytes(&self) -> u64 {
        match &self.outcome.stream {
            Some(s) => s.body_bytes(),
            None => self.outcome.body.len() as u64,
        }
    }
    /// The failure text (Locust's rules; for a streamed body, also why it
    /// broke), or None.
    #[getter]
    fn error(&self) -> Option<String> {
        match &self.outcome.stream {
            Some(s) => s.error(),
            None => self.outcome.error.clone(),
        }
    }
    /// Whether the body is streamed (`stream=True`): read it with
    /// `Engine.read`, and `close()` it.
    #[getter]
    fn streamed(&self) -> bool {
        self.outcome.stream.is_some()
    }
    /// Whether the streamed body has ended (or was closed); True for a
    /// body that is not streamed.
    #[getter]
    fn body_ended(&self) -> bool {
        self.outcome
            .stream
            .as_ref()
            .is_none_or(|s| s.end_us().is_some())
    }
    /// Closes a streamed body: its connection (or HTTP/2 stream) is let go
    /// and the request is recorded as of now, unless it ended before.
    /// Returns whether this call ended it; False for a body not streamed.
    fn close(&self) -> bool {
        self.outcome.stream.as_ref().is_some_and(|s| s.close())
    }
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.outcome.body)
    }
    /// Response headers as (name, value) pairs, names lower-case.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.outcome
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }
    /// Cookies this response set, as (name, value) pairs.
    #[getter]
    fn cookies(&self) -> Vec<(String, String)> {
        self.outcome.cookies.clone()
    }
}
