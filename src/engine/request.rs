//! Running one request and describing its outcome.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::cookie::CookieStore;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::h1::{Answer, Origin};
use super::h1_encode::{Encoded, HeadWriter};
use super::session::{Outgoing, Redirects, SessionState, USER_AGENT};
use super::stream::{BodyStream, ReadKind};
use super::timings::Timings;
use super::tls::TlsOptions;
use super::{via_reqwest, Completion, EngineError, Outcome};
use crate::stats::{unix_now_s, Recorder, RequestSample};

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
    pub body: Option<Bytes>,
    pub timeout_s: Option<f64>,
    pub allow_redirects: bool,
    /// Record in the statistics when done (false for `catch_response=True`,
    /// where user code decides success or failure later).
    pub record: bool,
    /// How late (µs) this request's iteration started in the open workload
    /// model; see [`RequestSample::intended_lag_us`].
    pub intended_lag_us: Option<u64>,
    /// A longer response body fails the request; None for
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: Option<u64>,
    /// TLS options of this request (`verify=`, `cert=`); None for the
    /// session's.
    pub tls: Option<TlsOptions>,
    /// Return at the response head and leave the body to be read as it
    /// arrives (`stream=True`, see `stream.rs`).
    pub stream: bool,
}

/// The response body a request accepts unless it says otherwise: a
/// target that never stops sending fails the request at this size rather
/// than growing the process for the whole timeout.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The result of one request, failed or not.
#[derive(Debug)]
pub struct HttpOutcome {
    pub method: String,
    pub name: String,
    /// 0 when no response arrived (connection error, timeout, bad URL).
    pub status: u16,
    /// The status's canonical reason phrase (as reqwest gives it, whatever
    /// the server wrote); empty without a response.
    pub reason: &'static str,
    pub headers: HeaderMap,
    /// The final URL, after redirects.
    pub url: String,
    pub body: Bytes,
    /// Cookies the response set, as (name, value).
    pub cookies: Vec<(String, String)>,
    /// Issue to last body byte, in µs.
    pub response_time_us: u64,
    /// The HTTP version that answered (HTTP/1.1 when none did).
    pub version: http::Version,
    /// Where the time went, phase by phase (zeros on reqwest's path, which
    /// does not say).
    pub timings: Timings,
    /// `Some` for a failure: Locust's rules (status >= 400, connection
    /// errors, timeouts).
    pub error: Option<String>,
    /// Unix time (s) the request ended.
    pub ended_at_s: f64,
    /// Copied from the request's [`RequestSpec::intended_lag_us`].
    pub intended_lag_us: Option<u64>,
    /// The body still to read, for a `stream=True` request that got a
    /// response head; `body` is then empty.
    pub stream: Option<Arc<BodyStream>>,
}

impl HttpOutcome {
    pub(crate) fn failed_before_sending(spec: &RequestSpec, error: String) -> Self {
        Self::of(spec, spec.url.clone(), Some(error))
    }

    /// The outcome of `spec` sent to `url`, with no response yet.
    fn of(spec: &RequestSpec, url: String, error: Option<String>) -> Self {
        Self {
            method: spec.method.as_str().to_owned(),
            name: spec.name.clone(),
            status: 0,
            reason: "",
            headers: HeaderMap::new(),
            url,
            body: Bytes::new(),
            cookies: Vec::new(),
            response_time_us: 0,
            version: http::Version::HTTP_11,
            timings: Timings::default(),
            error,
            ended_at_s: unix_now_s(),
            intended_lag_us: spec.intended_lag_us,
            stream: None,
        }
    }

    /// The time to first byte recorded for it (µs): None without a
    /// response, and on reqwest's path, which does not time the phases
    /// (streamed requests aside: their head's arrival is timed).
    pub fn ttfb_us(&self) -> Option<u64> {
        (self.status > 0 && self.timings.waiting_us > 0).then_some(self.timings.waiting_us)
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
            ttfb_us: self.ttfb_us(),
        }
    }
}

/// A submitted request, resolved against its session, not yet started.
pub(crate) struct Job {
    pub id: u64,
    /// The absolute URL and the session, or why there are none.
    pub prepared: Result<(Url, Arc<SessionState>), EngineError>,
    /// Shared with the Python `RequestSpec` it came from: a spec used
    /// again is not copied.
    pub spec: Arc<RequestSpec>,
    /// Where a streamed request records itself when its body ends.
    pub recorder: Option<Recorder>,
}

/// A submitted read of a streamed body.
pub(crate) struct ReadJob {
    pub id: u64,
    pub stream: Arc<BodyStream>,
    pub kind: ReadKind,
}

impl ReadJob {
    /// Waits for the piece and returns it as a completion.
    pub async fn run(self) -> Completion {
        Completion {
            id: self.id,
            outcome: Outcome::Read(self.stream.read(self.kind).await),
        }
    }
}

impl Job {
    /// Runs the request to its end. Returns its completion and, when
    /// `spec.record` is set, the sample to record. A request that could not
    /// be prepared ends as a failure like any other.
    ///
    /// http and https requests take the session's own HTTP/1.1 connections
    /// (`h1.rs`, over TLS for https); requests while a proxy for their
    /// scheme is set in the environment go through the session's reqwest
    /// client.
    // NOTE: a plain fn around an `async move` block rather than an async
    // fn, and the URL and session borrowed rather than moved out: rustc
    // keeps an async fn's arguments twice in its future (captured, and
    // again as locals), and a value moved out of a captured one takes
    // space of its own beside it. Every request in flight holds this
    // future: 2,600 bytes before, measured with `-Zprint-type-sizes`
    // (rustc 1.95, 2026-12-02), against 1,464 now.
    #[allow(clippy::manual_async_fn)]
    pub fn run(self) -> impl Future<Output = (Completion, Option<RequestSample>)> + Send {
        let Job {
            id,
            prepared,
            spec,
            recorder,
        } = self;
        async move {
            let outcome = match &prepared {
                Ok((url, session)) if spec.stream => {
                    match reqwest_client(session, &spec, redirects_of(&spec)) {
                        Ok(client) => {
                            let recorder = recorder.filter(|_| spec.record);
                            let url = url.clone();
                            Box::pin(via_reqwest::execute_streamed(&client, url, &spec, recorder))
                                .await
                        }
                        Err(e) => HttpOutcome::failed_before_sending(&spec, e),
                    }
                }
                Ok((url, session)) if !proxy_set(url.scheme()) => {
                    match session.tls_for(url, spec.tls.as_ref()) {
                        Ok(tls) => execute_plain(session, url, tls, &spec).await,
                        Err(e) => HttpOutcome::failed_before_sending(&spec, e),
                    }
                }
                Ok((url, session)) => {
                    match reqwest_client(session, &spec, redirects_of(&spec)) {
                        // Boxed, like the redirect hop of `execute_plain`:
                        // reqwest's future is several times the size of the
                        // plain path's, and every spawn moves it.
                        Ok(client) => {
                            Box::pin(via_reqwest::execute(&client, url.clone(), &spec)).await
                        }
                        Err(e) => HttpOutcome::failed_before_sending(&spec, e),
                    }
                }
                Err(e) => HttpOutcome::failed_before_sending(&spec, e.to_string()),
            };
            // A streamed body records its request when it ends.
            let sample = (spec.record && outcome.stream.is_none()).then(|| outcome.sample());
            (
                Completion {
                    id,
                    outcome: Outcome::Response(outcome),
                },
                sample,
            )
        }
    }
}

/// The session's reqwest client for `spec`, following `redirects`, on the
/// request's own TLS options (`verify=`, `cert=`) when it has them.
///
/// # Errors
/// A failure text: options whose files cannot be read, or a client reqwest
/// cannot build.
fn reqwest_client(
    session: &SessionState,
    spec: &RequestSpec,
    redirects: Redirects,
) -> Result<reqwest::Client, String> {
    let tls = session.tls_config(spec.tls.as_ref())?;
    session
        .client_with(redirects, &tls)
        .map_err(|e| e.to_string())
}

/// The redirects `spec` follows (`allow_redirects`).
fn redirects_of(spec: &RequestSpec) -> Redirects {
    if spec.allow_redirects {
        Redirects::All
    } else {
        Redirects::None
    }
}

/// Whether the environment names a proxy for URLs of `scheme`
/// (`HTTP_PROXY` or `HTTPS_PROXY`, or `ALL_PROXY`, either case), as reqwest
/// reads them: such requests then go through reqwest, which honours it and
/// `NO_PROXY`. Other schemes answer true (reqwest says what is wrong).
fn proxy_set(scheme: &str) -> bool {
    static HTTP: OnceLock<bool> = OnceLock::new();
    static HTTPS: OnceLock<bool> = OnceLock::new();
    let any = |names: [&str; 4]| {
        names
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
    };
    match scheme {
        "http" => *HTTP.get_or_init(|| any(["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])),
        "https" => {
            *HTTPS.get_or_init(|| any(["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]))
        }
        _ => true,
    }
}

/// The request's own headers, checked.
///
/// # Errors
/// An `InvalidHeader` failure text naming the header that cannot be sent.
pub(super) fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len() + 4);
    for (k, v) in headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => {
                map.append(k, v);
            }
            _ => return Err(invalid_header(k)),
        }
    }
    Ok(map)
}

/// How long `spec` may take in all: its own timeout, else
/// [`DEFAULT_TIMEOUT_S`]; at least 1 ms.
pub(super) fn request_timeout(spec: &RequestSpec) -> Duration {
    Duration::from_secs_f64(spec.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S).max(0.001))
}

/// Sends `spec` to the plain-http `url` on the session's own connections
/// and reads the whole body, timing both. It sends the headers reqwest
/// would (`Host`, `User-Agent`, `Accept: */*` and the session's cookies,
/// unless the request sets them). When the response redirects, the next
/// hops go through reqwest, by the rules of its redirect policy, and the
/// response time covers them all.
#[allow(clippy::manual_async_fn)] // see Job::run
fn execute_plain<'a>(
    session: &'a SessionState,
    url: &'a Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    spec: &'a RequestSpec,
) -> impl Future<Output = HttpOutcome> + Send + 'a {
    // A plain fn around an async block, for the reason `Job::run` gives.
    async move {
        let body = spec.body.clone().unwrap_or_default();
        let (origin, req) = match plain_request(session, url, tls, spec, body.clone()) {
            Ok(prepared) => prepared,
            Err(e) => {
                let mut out = HttpOutcome::failed_before_sending(spec, e);
                out.url = url.as_str().to_owned();
                return out;
            }
        };
        let timeout = request_timeout(spec);
        let started = Instant::now();
        let max_body_bytes = spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        // The redirect hop, if any, is awaited after this block, so that
        // the first response is not kept in the future while it runs.
        let hop = 'first: {
            let exchange = session.round_trip(&origin, max_body_bytes, req);
            let first = match tokio::time::timeout(timeout, exchange).await {
                Err(_) => Err("Timeout: request timed out".to_owned()),
                Ok(Err(failure)) => Err(failure.describe()),
                Ok(Ok(answer)) => Ok(answered(session, url, spec, body, answer)),
            };
            let mut out = match first {
                Err(failure) => HttpOutcome::of(spec, url.as_str().to_owned(), Some(failure)),
                Ok(Answered::Done(out)) => out,
                Ok(Answered::Redirect(mut follow, next)) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    follow.timeout_s = Some(left.as_secs_f64());
                    break 'first Box::pin(redirect_hop(session, spec, follow, next));
                }
            };
            out.response_time_us = started.elapsed().as_micros() as u64;
            out.ended_at_s = unix_now_s();
            return out;
        };
        let mut out = hop.await;
        out.method = spec.method.as_str().to_owned();
        out.response_time_us = started.elapsed().as_micros() as u64;
        out
    }
}

/// What the first response to a request makes of it.
enum Answered {
    /// Its outcome.
    Done(HttpOutcome),
    /// It redirects: the request to send next, and where.
    Redirect(RequestSpec, Url),
}

/// What the first response to `spec` at `url` makes of the request. Keeps
/// the cookies it sets.
fn answered(
    session: &SessionState,
    url: &Url,
    spec: &RequestSpec,
    body: Bytes,
    answer: Answer,
) -> Answered {
    let Answer {
        head: parts,
        body: resp_body,
        timings,
    } = answer;
    let sets_cookies = parts.headers.contains_key(header::SET_COOKIE);
    if sets_cookies {
        let mut values = parts.headers.get_all(header::SET_COOKIE).iter();
        session.jar().set_cookies(&mut values, url);
    }
    if let Some(next) = redirect_target(spec, parts.status, &parts.headers, url) {
        return Answered::Redirect(follow_up(spec, body, parts.status, url, &next), next);
    }
    let mut out = HttpOutcome::of(spec, url.as_str().to_owned(), None);
    if sets_cookies {
        out.cookies = set_cookie_pairs(&parts.headers);
    }
    out.timings = timings;
    out.status = parts.status.as_u16();
    out.reason = parts.status.canonical_reason().unwrap_or("");
    out.version = parts.version;
    out.headers = parts.headers;
    out.body = resp_body;
    out.error = status_failure(out.status, out.reason);
    Answered::Done(out)
}

/// The redirect hops after the first response, `follow` to `next`,
/// through the session's reqwest client (its redirect policy, on the TLS
/// options of `spec`).
async fn redirect_hop(
    session: &SessionState,
    spec: &RequestSpec,
    follow: RequestSpec,
    next: Url,
) -> HttpOutcome {
    match reqwest_client(session, spec, Redirects::AfterFirst) {
        Ok(client) => via_reqwest::execute(&client, next, &follow).await,
        Err(e) => HttpOutcome::failed_before_sending(&follow, e),
    }
}

/// The request for `spec` to `url`, in origin form, and where to send it:
/// encoded for HTTP/1.1 straight from the spec when the origin is known to
/// speak it, else as an `http::Request`, which may go on HTTP/2.
///
/// # Errors
/// A failure text for a header that cannot be sent or a URL that cannot be
/// requested.
fn plain_request(
    session: &SessionState,
    url: &Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    spec: &RequestSpec,
    body: Bytes,
) -> Result<(Origin, Outgoing), String> {
    let origin = Origin::of(url, tls, session.h2c()).ok_or_else(|| bad_url(url))?;
    let req = if session.speaks_http1(&origin) {
        Outgoing::Http1(http1_request(session, url, spec, body)?)
    } else {
        Outgoing::Any(any_request(session, url, spec, body)?)
    };
    Ok((origin, req))
}

fn bad_url(url: &Url) -> String {
    format!("InvalidURL: '{url}' cannot be requested")
}

fn invalid_header(name: &str) -> String {
    format!("InvalidHeader: '{name}' cannot be sent as an HTTP header")
}

/// The path and query of `url`: its request target in origin form.
fn origin_form(url: &Url) -> &str {
    &url[url::Position::BeforePath..url::Position::AfterQuery]
}

/// `spec` to `url` as an `http::Request`: its own headers, then the ones
/// reqwest would add (`Host`, `User-Agent`, `Accept: */*` and the session's
/// cookies) unless it sets them.
fn any_request(
    session: &SessionState,
    url: &Url,
    spec: &RequestSpec,
    body: Bytes,
) -> Result<http::Request<Bytes>, String> {
    let mut headers = header_map(&spec.headers)?;
    if !headers.contains_key(header::HOST) {
        let host = url.host_str().unwrap_or_default();
        let value = match url.port() {
            Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
            None => HeaderValue::from_str(host),
        };
        headers.insert(header::HOST, value.map_err(|_| bad_url(url))?);
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    if !headers.contains_key(header::COOKIE) {
        if let Some(cookies) = session.jar().cookies(url) {
            headers.insert(header::COOKIE, cookies);
        }
    }
    let mut req = http::Request::new(body);
    *req.method_mut() = spec.method.clone();
    *req.uri_mut() = origin_form(url).parse().map_err(|_| bad_url(url))?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// `spec` to `url` encoded for HTTP/1.1 with no `HeaderMap`, `Uri` or
/// `http::Request` in between: the header fields of [`any_request`] in the
/// same order (a name given twice is sent where given, not grouped).
// NOTE: building those three cost ~3,400 instructions a request, and this
// ~1,000 (callgrind, 50 users over TLS, GET with no headers of its own,
// 2026-12-02).
fn http1_request(
    session: &SessionState,
    url: &Url,
    spec: &RequestSpec,
    body: Bytes,
) -> Result<Encoded, String> {
    let given = |name: &str| {
        spec.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let fields: usize = spec
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    let mut head = HeadWriter::new(&spec.method, origin_form(url), fields, body.len());
    for (name, value) in &spec.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(invalid_header(name));
        };
        // The body's framing is the engine's (see `HeadWriter::finish`).
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            head.field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !given("host") {
        let host = url.host_str().unwrap_or_default().as_bytes();
        match url.port() {
            Some(port) => {
                let mut digits = itoa::Buffer::new();
                head.field_parts(b"host", &[host, b":", digits.format(port).as_bytes()]);
            }
            None => head.field(b"host", host),
        }
    }
    if !given("user-agent") {
        head.field(b"user-agent", USER_AGENT.as_bytes());
    }
    if !given("accept") {
        head.field(b"accept", b"*/*");
    }
    if !given("cookie") {
        if let Some(cookies) = session.jar().cookies(url) {
            head.field(b"cookie", cookies.as_bytes());
        }
    }
    Ok(head.finish(spec.method.clone(), body))
}

/// The cookies a response sets, as (name, value), as reqwest's
/// `Response::cookies` gives them; malformed ones are skipped.
fn set_cookie_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| {
            let pair = v.to_str().ok()?.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// Where a response sends the request next, when redirects are followed:
/// a 301, 302, 303, 307 or 308 with a `Location` that resolves to an http
/// or https URL against `from`.
fn redirect_target(
    spec: &RequestSpec,
    status: StatusCode,
    headers: &HeaderMap,
    from: &Url,
) -> Option<Url> {
    if !spec.allow_redirects || !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    from.join(location)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

/// Headers a redirect turned into a GET drops with its body.
const PAYLOAD_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
];
/// Headers never sent on to another origin.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "cookie",
    "cookie2",
    "proxy-authorization",
    "www-authenticate",
];

/// The request of a redirect's next hop, by the rules reqwest follows
/// (tower-http's `FollowRedirect`, RFC 9110 §15.4): 301 and 302 turn POST
/// into GET and 303 turns anything but HEAD into GET, without a body or its
/// headers; 307 and 308 resend as they are. Credentials are not sent to
/// another origin.
fn follow_up(
    spec: &RequestSpec,
    body: Bytes,
    status: StatusCode,
    from: &Url,
    to: &Url,
) -> RequestSpec {
    let drop_headers = |headers: &mut Vec<(String, String)>, names: &[&str]| {
        headers.retain(|(k, _)| !names.iter().any(|h| k.eq_ignore_ascii_case(h)));
    };
    let mut next = spec.clone();
    next.url = to.to_string();
    next.body = (!body.is_empty()).then_some(body);
    let to_get = match status.as_u16() {
        301 | 302 => spec.method == Method::POST,
        303 => true,
        _ => false,
    };
    if to_get {
        if spec.method != Method::HEAD {
            next.method = Method::GET;
        }
        next.body = None;
        drop_headers(&mut next.headers, &PAYLOAD_HEADERS);
    }
    let same_origin = from.host_str() == to.host_str()
        && from.port_or_known_default() == to.port_or_known_default()
        && from.scheme() == to.scheme();
    if !same_origin {
        drop_headers(&mut next.headers, &CREDENTIAL_HEADERS);
    }
    next
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

#[cfg(test)]
impl RequestSpec {
    /// A recorded request without headers or body, named by its URL, with a
    /// 10 s timeout: the common case of the engine's tests.
    pub(crate) fn for_tests(method: Method, url: &str) -> Self {
        Self {
            method,
            url: url.to_owned(),
            name: url.to_owned(),
            headers: Vec::new(),
            body: None,
            timeout_s: Some(10.0),
            allow_redirects: true,
            record: true,
            intended_lag_us: None,
            max_body_bytes: None,
            tls: None,
            stream: false,
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
