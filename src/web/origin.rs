//! Cross-site request refusal for the web UI's commands (`/swarm`, `/stop`,
//! `/stats/reset`): a page on another site must not be able to start a
//! swarm or wipe the statistics through the operator's browser, which
//! resends cached basic-auth credentials (OWASP's CSRF cheat sheet, "Fetch
//! Metadata headers" and "Verifying origin with standard headers").
//! Clients that are not browsers (curl, Locust's scripts) send neither
//! header and pass.

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a request is refused as cross-site, or None: a `Sec-Fetch-Site`
/// other than `same-origin` or `none` (typed in, a bookmark), or an
/// `Origin` whose `host[:port]` is not the request's `Host`.
pub fn cross_site(headers: &HeaderMap) -> Option<String> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return Some(format!(
                "refused a {site} request: commands come from the web UI's own page, \
                 or from a client outside the browser (curl, a script)"
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        if origin_host != Some(host) {
            return Some(format!(
                "refused a request from the page at {origin}: commands come from the web \
                 UI's own page, or from a client outside the browser (curl, a script)"
            ));
        }
    }
    None
}

/// Middleware: answers 403 with `{"success": false, "message": ...}` for
/// a cross-site request (see [`cross_site`]).
pub async fn same_origin_only(request: Request, next: Next) -> Response {
    match cross_site(request.headers()) {
        Some(message) => (
            StatusCode::FORBIDDEN,
            Json(json!({"success": false, "message": message})),
        )
            .into_response(),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn scripts_and_the_own_page_pass() {
        assert_eq!(cross_site(&headers(&[("host", "127.0.0.1:8089")])), None);
        let own = [
            ("host", "127.0.0.1:8089"),
            ("origin", "http://127.0.0.1:8089"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(cross_site(&headers(&own)), None);
        assert_eq!(cross_site(&headers(&[("sec-fetch-site", "none")])), None);
    }

    #[test]
    fn other_sites_and_ports_are_refused() {
        let cases: [&[(&'static str, &'static str)]; 4] = [
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[
                ("host", "127.0.0.1:8089"),
                ("origin", "http://evil.example"),
            ],
            &[
                ("host", "127.0.0.1:8089"),
                ("origin", "http://127.0.0.1:3000"),
            ],
        ];
        for case in cases {
            assert!(cross_site(&headers(case)).is_some(), "{case:?}");
        }
        let opaque = [("host", "127.0.0.1:8089"), ("origin", "null")];
        assert!(cross_site(&headers(&opaque)).is_some());
    }
}
