//! One virtual user's HTTP session: its own cookie jar and connection pool,
//! sharing the process-wide TLS configuration.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::header::HOST;
use http::{Request, Version};

use reqwest::cookie::Jar;
use reqwest::redirect::Policy;
use reqwest::Client;

use super::conn::{connect, Origin, Stream};
use super::h1::{Answer, Connections, Encoded, Failure};
use super::h2::{self, H2Connections};
use super::timings::Timings;
use super::tls::{client_config, TlsOptions};
use super::EngineError;

/// User-Agent sent unless the request sets its own.
pub const USER_AGENT: &str = concat!("aiotest/", env!("CARGO_PKG_VERSION"));

/// A user's session: keeps cookies and keep-alive connections for that user
/// only, like Locust's per-user `HttpSession`.
pub struct HttpSession {
    /// The user's host, with no trailing slash; relative URLs join it.
    pub base_url: Option<String>,
    pub(crate) state: Arc<SessionState>,
    /// Shared with the engine's other sessions.
    urls: Arc<UrlCache>,
}

/// URLs as given, resolved against their host: most tasks request the same
/// few URLs, and parsing one (host validation included) costs more than a
/// lookup. One cache serves all of an engine's sessions, so 10,000 users of
/// one host share an entry per URL; a map in each session took ~500 bytes
/// a user.
#[derive(Default)]
pub(crate) struct UrlCache {
    inner: Mutex<UrlMap>,
}

#[derive(Default)]
struct UrlMap {
    /// Host (empty for none) -> URL as given -> resolved URL.
    by_base: HashMap<String, HashMap<String, reqwest::Url>>,
    entries: usize,
}

impl UrlCache {
    fn map(&self) -> std::sync::MutexGuard<'_, UrlMap> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, base: &str, url: &str) -> Option<reqwest::Url> {
        self.map().by_base.get(base)?.get(url).cloned()
    }

    /// Keeps `parsed`; starts over once [`RESOLVED_CACHE_ENTRIES`] are kept.
    fn put(&self, base: &str, url: &str, parsed: &reqwest::Url) {
        let mut map = self.map();
        if map.entries >= RESOLVED_CACHE_ENTRIES {
            map.by_base.clear();
            map.entries = 0;
        }
        let urls = map.by_base.entry(base.to_owned()).or_default();
        if urls.insert(url.to_owned(), parsed.clone()).is_none() {
            map.entries += 1;
        }
    }
}

/// What a session's requests share while they run.
pub(crate) struct SessionState {
    jar: Arc<Jar>,
    /// The session's TLS options (the user class's `verify`, `cert` and
    /// `insecure`) and the process-wide config they stand for.
    tls_options: TlsOptions,
    tls: Arc<rustls::ClientConfig>,
    /// reqwest clients, built on first use (plain-http requests need none)
    /// and indexed by [`Redirects`].
    clients: [OnceLock<Client>; 3],
    /// reqwest clients for requests with TLS options of their own
    /// (`verify=`, `cert=`), by config and [`Redirects`]: a handful at most.
    other_clients: Mutex<Vec<(Arc<rustls::ClientConfig>, Redirects, Client)>>,
    /// Idle HTTP/1.1 keep-alive connections of the fast path.
    pub conns: Connections,
    /// HTTP/2 connections of the fast path, one per origin.
    h2: H2Connections,
    /// Plain-http requests speak HTTP/2 with prior knowledge (h2c).
    h2c: bool,
}

/// Which HTTP a session speaks (the user class's `http_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/2 when a TLS server picks it by ALPN, else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// As `Auto` over TLS; HTTP/2 with prior knowledge (h2c) over plain
    /// TCP.
    Http2,
}

/// What a fast-path exchange yields.
type Exchange = Result<Answer, Failure>;

/// A request to send, as [`SessionState::round_trip`] takes it.
pub(crate) enum Outgoing {
    /// Encoded for HTTP/1.1 already: its origin [`SessionState::speaks_http1`].
    Http1(Encoded),
    /// Not encoded yet: it may go on HTTP/2.
    Any(Request<Bytes>),
}

/// How many resolved URLs an engine keeps before it starts over.
const RESOLVED_CACHE_ENTRIES: usize = 4096;

impl HttpSession {
    /// # Errors
    /// [`EngineError::BadUrl`] for a malformed host, and
    /// [`EngineError::Client`] for TLS options whose files cannot be read.
    pub(crate) fn new(
        base_url: Option<&str>,
        mut tls_options: TlsOptions,
        http_version: HttpVersion,
        urls: Arc<UrlCache>,
    ) -> Result<Self, EngineError> {
        let base_url = match base_url {
            Some(b) => Some(validate_base_url(b)?),
            None => None,
        };
        tls_options.offer_h2 = http_version != HttpVersion::Http1;
        let tls = client_config(&tls_options).map_err(EngineError::Client)?;
        Ok(Self {
            base_url,
            state: Arc::new(SessionState {
                jar: Arc::new(Jar::default()),
                tls_options,
                tls,
                clients: Default::default(),
                other_clients: Mutex::default(),
                conns: Connections::default(),
                h2: H2Connections::default(),
                h2c: http_version == HttpVersion::Http2,
            }),
            urls,
        })
    }

    /// Resolves `url` against the user's host. Absolute http(s) URLs pass
    /// through; anything else is appended to the host, as Locust does.
    ///
    /// # Errors
    /// [`EngineError::NoHost`] for a relative URL without a host, and
    /// [`EngineError::BadUrl`] for a result that is not a URL.
    pub fn resolve(&self, url: &str) -> Result<reqwest::Url, EngineError> {
        let base = self.base_url.as_deref().unwrap_or("");
        if let Some(hit) = self.urls.get(base, url) {
            return Ok(hit);
        }
        let parsed = self.parse(url)?;
        self.urls.put(base, url, &parsed);
        Ok(parsed)
    }

    /// [`Self::resolve`] without the cache.
    fn parse(&self, url: &str) -> Result<reqwest::Url, EngineError> {
        let full = if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            let base = self
                .base_url
                .as_deref()
                .ok_or_else(|| EngineError::NoHost(url.to_owned()))?;
            if url.starts_with('/') || url.is_empty() {
                format!("{base}{url}")
            } else {
                format!("{base}/{url}")
            }
        };
        reqwest::Url::parse(&full).map_err(|e| EngineError::BadUrl {
            url: full,
            detail: e.to_string(),
        })
    }
}

impl SessionState {
    /// The reqwest client for a request that needs one, following
    /// `redirects`; built on first use, sharing the cookie jar.
    ///
    /// # Errors
    /// [`EngineError::Client`] when reqwest cannot build it.
    fn client(&self, redirects: Redirects) -> Result<Client, EngineError> {
        let slot = &self.clients[redirects as usize];
        if let Some(c) = slot.get() {
            return Ok(c.clone());
        }
        let c = build_client(&self.tls, &self.jar, redirects)?;
        Ok(slot.get_or_init(|| c).clone())
    }

    /// The reqwest client for a request that needs one, following
    /// `redirects`, its https hops on `tls` (from [`Self::tls_config`]; the
    /// session's own config: the session's client).
    ///
    /// # Errors
    /// [`EngineError::Client`] when reqwest cannot build it.
    pub fn client_with(
        &self,
        redirects: Redirects,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Client, EngineError> {
        if Arc::ptr_eq(tls, &self.tls) {
            return self.client(redirects);
        }
        let mut others = self.other_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, c)) = others
            .iter()
            .find(|(t, r, _)| Arc::ptr_eq(t, tls) && *r == redirects)
        {
            return Ok(c.clone());
        }
        let c = build_client(tls, &self.jar, redirects)?;
        others.push((tls.clone(), redirects, c.clone()));
        Ok(c)
    }

    /// The TLS config for a request to `url` on the fast path: none for
    /// http; for https, [`Self::tls_config`].
    ///
    /// # Errors
    /// A failure text for options whose files cannot be read.
    pub fn tls_for(
        &self,
        url: &reqwest::Url,
        options: Option<&TlsOptions>,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
        if url.scheme() != "https" {
            return Ok(None);
        }
        self.tls_config(options).map(Some)
    }

    /// The TLS config of a request: its own options' (`verify=`, `cert=`),
    /// else the session's.
    ///
    /// # Errors
    /// A failure text for options whose files cannot be read.
    pub fn tls_config(
        &self,
        options: Option<&TlsOptions>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        match options {
            Some(o) => {
                let mut o = o.clone();
                o.offer_h2 = self.tls_options.offer_h2;
                if o == self.tls_options {
                    Ok(self.tls.clone())
                } else {
                    client_config(&o)
                }
            }
            None => Ok(self.tls.clone()),
        }
    }

    /// Whether plain-http requests speak HTTP/2 with prior knowledge.
    pub fn h2c(&self) -> bool {
        self.h2c
    }

    /// Sends `req` (origin-form URI, with its `Host`) to `origin` on this
    /// session's connections and reads the whole response: on its HTTP/2
    /// connection there when it has one, else on a kept HTTP/1.1 one, else
    /// on a new connection, whose ALPN (or h2c) decides which. A request
    /// encoded for HTTP/1.1 already must go to an origin that
    /// [`Self::speaks_http1`].
    ///
    /// # Errors
    /// [`Failure`] says which step failed.
    pub fn round_trip<'a>(
        &'a self,
        origin: &'a Origin,
        max_body_bytes: u64,
        req: Outgoing,
    ) -> Either<
        impl Future<Output = Exchange> + Send + 'a,
        Pin<Box<dyn Future<Output = Exchange> + Send + 'a>>,
    > {
        // HTTP/1.1: the small future of `h1.rs` as it is.
        let http1 = |req| Either::Left(self.conns.round_trip_on(origin, None, max_body_bytes, req));
        match req {
            Outgoing::Http1(req) => http1(req),
            Outgoing::Any(req) if self.speaks_http1(origin) => http1(Encoded::of(req)),
            Outgoing::Any(req) => Either::Right(Box::pin(self.round_trip_maybe_h2(
                origin,
                max_body_bytes,
                req,
            ))),
        }
    }

    /// Whether requests to `origin` go on HTTP/1.1 without asking: plain
    /// http without h2c, or an origin whose ALPN chose HTTP/1.1 before.
    pub fn speaks_http1(&self, origin: &Origin) -> bool {
        !origin.may_speak_h2() || self.h2.is_http1(origin)
    }

    #[allow(clippy::manual_async_fn)] // see request::Job::run
    fn round_trip_maybe_h2<'a>(
        &'a self,
        origin: &'a Origin,
        max_body_bytes: u64,
        req: Request<Bytes>,
    ) -> impl Future<Output = Exchange> + Send + 'a {
        // A plain fn around an async block, for the reason
        // `request::Job::run` gives.
        async move {
            // A request the server did not process, because it was ending
            // the connection, goes once more, on a new one.
            let mut again = true;
            loop {
                let (sender, opening) = match Box::pin(self.h2_route(origin)).await? {
                    Route::H2(sender, opening) => (sender, opening),
                    Route::Http1(fresh) => {
                        return Box::pin(self.conns.round_trip_on(
                            origin,
                            fresh,
                            max_body_bytes,
                            Encoded::of(req),
                        ))
                        .await
                    }
                };
                // Boxed, as are the h1 path and the opening below: what each
                // holds is alive only while it runs, and this future stays
                // small for the many first requests that end up on HTTP/1.1.
                let sent = h2::round_trip(sender, h2_form(h2::copy(&req), origin), max_body_bytes);
                match Box::pin(sent).await {
                    Ok(mut answer) => {
                        answer.timings = opening.then(answer.timings);
                        return Ok(answer);
                    }
                    Err(h2::H2Failure::Unprocessed(_)) if again => again = false,
                    Err(failure) => return Err(failure.into()),
                }
            }
        }
    }

    /// Where a request to `origin` goes: its HTTP/2 connection (a new one
    /// with what opening it took), or HTTP/1.1 (on a connection just
    /// opened when its ALPN chose that). One new connection at a time
    /// learns the origin's protocol.
    async fn h2_route(&self, origin: &Origin) -> Result<Route, Failure> {
        if let Some(sender) = self.h2.get(origin) {
            return Ok(Route::H2(sender, Timings::default()));
        }
        let _gate = self.h2.gate.lock().await;
        if let Some(sender) = self.h2.get(origin) {
            return Ok(Route::H2(sender, Timings::default()));
        }
        if self.conns.has_idle(origin) {
            return Ok(Route::Http1(None));
        }
        // Both boxed: each is alive only while it runs, and this future
        // is in every first request to an origin that may speak HTTP/2.
        let (stream, opening) = Box::pin(connect(origin)).await?;
        if stream.speaks_h2(origin) {
            let sender = Box::pin(self.h2.open(origin, stream)).await?;
            return Ok(Route::H2(sender, opening));
        }
        self.h2.learned_http1(origin);
        Ok(Route::Http1(Some((stream, opening))))
    }

    /// The session's cookies, which both request paths read and update.
    pub fn jar(&self) -> &Jar {
        &self.jar
    }
}

/// `req` as an HTTP/2 request: an absolute URI (its `Host` becomes the
/// `:authority`, RFC 9113 section 8.3.1).
fn h2_form(mut req: Request<Bytes>, origin: &Origin) -> Request<Bytes> {
    let scheme = if origin.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let authority = req
        .headers_mut()
        .remove(HOST)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .unwrap_or_else(|| format!("{}:{}", origin.host, origin.port));
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = format!("{scheme}://{authority}{path}").parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_2;
    req
}

/// Where [`SessionState::h2_route`] sends a request.
enum Route {
    H2(h2::Sender, Timings),
    Http1(Option<(Stream, Timings)>),
}

/// How many redirects a reqwest client follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Redirects {
    /// None: `allow_redirects=False`.
    None = 0,
    /// Up to [`MAX_REDIRECTS`].
    All = 1,
    /// The rest of a chain whose first hop the plain-http path took.
    AfterFirst = 2,
}

/// The longest redirect chain followed: reqwest's default, kept on both
/// request paths (`requests`, under Locust's `HttpUser`, allows 30).
pub(crate) const MAX_REDIRECTS: usize = 10;

fn build_client(
    tls: &rustls::ClientConfig,
    jar: &Arc<Jar>,
    redirects: Redirects,
) -> Result<Client, EngineError> {
    Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .cookie_provider(jar.clone())
        .redirect(match redirects {
            Redirects::None => Policy::none(),
            Redirects::All => Policy::limited(MAX_REDIRECTS),
            Redirects::AfterFirst => Policy::limited(MAX_REDIRECTS - 1),
        })
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| EngineError::Client(e.to_string()))
}

/// Checks a host URL: http or https, with a host name, no query or fragment.
/// Returns it without a trailing slash.
///
/// # Errors
/// [`EngineError::BadUrl`] naming what is wrong and the form expected.
pub fn validate_base_url(url: &str) -> Result<String, EngineError> {
    let bad = |detail: &str| EngineError::BadUrl {
        url: url.to_owned(),
        detail: format!(
            "{detail}; give it as scheme://host[:port][/path], e.g. http://127.0.0.1:8080"
        ),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(&format!(
            "scheme '{}' is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host name"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_urls_are_the_same_from_the_cache() {
        let (tls, v) = (TlsOptions::default(), HttpVersion::Auto);
        let urls = Arc::new(UrlCache::default());
        let session = HttpSession::new(
            Some("http://127.0.0.1:8080/api"),
            tls.clone(),
            v,
            urls.clone(),
        )
        .unwrap();
        // A session of another host shares the cache, not its entries.
        let other = HttpSession::new(Some("http://127.0.0.2:9090"), tls, v, urls.clone()).unwrap();
        for _ in 0..2 {
            assert_eq!(
                other.resolve("/hello").unwrap().as_str(),
                "http://127.0.0.2:9090/hello"
            );
            assert_eq!(
                session.resolve("/hello").unwrap().as_str(),
                "http://127.0.0.1:8080/api/hello"
            );
            assert_eq!(
                session.resolve("x?q=1").unwrap().as_str(),
                "http://127.0.0.1:8080/api/x?q=1"
            );
            assert!(session.resolve("http://[bad").is_err());
        }
        for i in 0..(RESOLVED_CACHE_ENTRIES * 2) {
            let url = session.resolve(&format!("/n/{i}")).unwrap();
            assert!(url.as_str().ends_with(&format!("/n/{i}")));
        }
        assert!(urls.map().entries <= RESOLVED_CACHE_ENTRIES);
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            validate_base_url("https://example.test/api").unwrap(),
            "https://example.test/api"
        );
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "not a url",
            "http://h/?q=1",
        ] {
            assert!(validate_base_url(bad).is_err(), "{bad}");
        }
    }
}
