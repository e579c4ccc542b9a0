//! Tests of `engine::request`.

use super::*;

#[cfg(test)]
mod status_tests {
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

#[cfg(test)]
mod plain_path_tests {
    use super::*;
    use crate::engine::HttpSession;
    use crate::target::DemoTarget;

    fn spec(method: Method, url: &str) -> RequestSpec {
        RequestSpec::for_tests(method, url)
    }

    /// Runs `spec` on `session` the way the engine does, on a current-thread
    /// runtime.
    fn run(rt: &tokio::runtime::Runtime, session: &HttpSession, spec: RequestSpec) -> HttpOutcome {
        let prepared = session
            .resolve(&spec.url)
            .map(|u| (u, session.state.clone()));
        let job = Job {
            id: 1,
            prepared,
            spec: spec.into(),
            recorder: None,
        };
        match rt.block_on(job.run()).0.outcome {
            crate::engine::Outcome::Response(r) => r,
            crate::engine::Outcome::Read(r) => panic!("a request finished as a read: {r:?}"),
        }
    }

    fn setup() -> (DemoTarget, tokio::runtime::Runtime, HttpSession) {
        let target = DemoTarget::start("127.0.0.1", 0).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let session = HttpSession::new(
            Some(&format!("http://{}", target.addr)),
            crate::engine::TlsOptions::default(),
            crate::engine::HttpVersion::Auto,
            Arc::default(),
        )
        .unwrap();
        (target, rt, session)
    }

    #[test]
    fn cookies_set_by_a_response_go_with_the_next_requests() {
        let (target, rt, session) = setup();
        let out = run(&rt, &session, spec(Method::GET, "/items"));
        assert_eq!(out.status, 401);
        let mut login = spec(Method::POST, "/login");
        login.headers = vec![("Content-Type".into(), "application/json".into())];
        login.body = Some(Bytes::from_static(
            br#"{"username": "ann", "password": "x"}"#,
        ));
        let out = run(&rt, &session, login);
        assert_eq!(out.status, 200, "{:?}", out.error);
        assert_eq!(out.cookies.len(), 1);
        assert_eq!(out.cookies[0].0, "session");
        assert!(out.cookies[0].1.starts_with("ann-"));
        let out = run(&rt, &session, spec(Method::GET, "/items"));
        assert_eq!(out.status, 200, "{:?}", out.error);
        assert_eq!(out.error, None);
        assert_eq!(out.url, format!("http://{}/items", target.addr));
        // A user-set Cookie header replaces the jar's.
        let mut own = spec(Method::GET, "/items");
        own.headers = vec![("Cookie".into(), "theme=dark".into())];
        assert_eq!(run(&rt, &session, own).status, 401);
    }

    #[test]
    fn redirects_follow_reqwests_rules() {
        let (target, rt, session) = setup();
        let base = format!("http://{}", target.addr);
        // 302 turns a POST into a GET, for every later hop too.
        let mut post = spec(Method::POST, "/redirect/3");
        post.body = Some(Bytes::from_static(b"x=1"));
        let out = run(&rt, &session, post);
        assert_eq!((out.status, out.error.as_deref()), (200, None));
        assert_eq!(out.method, "POST", "recorded under the method sent first");
        assert_eq!(&out.body[..], b"redirected, GET\n");
        assert_eq!(out.url, format!("{base}/redirect/0?code=302"));
        let counts = target.state.counts_json();
        assert_eq!(counts["requests"]["POST /redirect/3"], 1);
        assert_eq!(counts["requests"]["GET /redirect/2"], 1);
        assert_eq!(counts["requests"]["GET /redirect/0"], 1);
        // 307 keeps the method and the body.
        let mut post = spec(Method::POST, "/redirect/1?code=307");
        post.body = Some(Bytes::from_static(b"x=1"));
        let out = run(&rt, &session, post);
        assert_eq!(&out.body[..], b"redirected, POST\n");
        // Not followed when asked not to.
        let mut once = spec(Method::GET, "/redirect/2");
        once.allow_redirects = false;
        let out = run(&rt, &session, once);
        assert_eq!((out.status, out.error.as_deref()), (302, None));
        assert_eq!(
            out.headers.get(header::LOCATION).unwrap(),
            "/redirect/1?code=302"
        );
        // Up to 10 are followed; a longer chain is a failure.
        let out = run(&rt, &session, spec(Method::GET, "/redirect/10"));
        assert_eq!((out.status, out.error.as_deref()), (200, None));
        let out = run(&rt, &session, spec(Method::GET, "/redirect/11"));
        let error = out.error.unwrap();
        assert!(error.starts_with("TooManyRedirects:"), "{error}");
    }

    #[test]
    fn bad_headers_and_statuses_are_failures() {
        let (_target, rt, session) = setup();
        let mut bad = spec(Method::GET, "/hello");
        bad.headers = vec![("bad header".into(), "x".into())];
        let out = run(&rt, &session, bad);
        assert_eq!(out.status, 0);
        assert!(out.error.unwrap().starts_with("InvalidHeader:"));
        let out = run(&rt, &session, spec(Method::GET, "/status/503"));
        assert_eq!(out.status, 503);
        assert_eq!(
            out.error.as_deref(),
            Some("HTTPError: 503 Server Error: Service Unavailable")
        );
        let out = run(&rt, &session, spec(Method::GET, "/hello"));
        assert_eq!((&out.body[..], out.status), (&b"hello"[..], 200));
        assert_eq!(
            session.state.conns.idle_count(),
            1,
            "one kept-alive connection"
        );
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;
    use crate::engine::HttpSession;

    /// The head written straight from a spec (known HTTP/1.1 origins) is
    /// byte for byte the one written from the `http::Request` that may go
    /// on HTTP/2 instead.
    #[test]
    fn both_ways_of_writing_a_request_give_the_same_bytes() {
        let session = HttpSession::new(
            Some("http://127.0.0.1:8080"),
            crate::engine::TlsOptions::default(),
            crate::engine::HttpVersion::Auto,
            Arc::default(),
        )
        .unwrap();
        let state = &session.state;
        let url = Url::parse("http://127.0.0.1:8080/items?page=2").unwrap();
        let cookie = HeaderValue::from_static("session=ann-1; Path=/");
        state.jar().set_cookies(&mut std::iter::once(&cookie), &url);
        let mut spec = RequestSpec::for_tests(Method::POST, "/items?page=2");
        spec.headers = vec![
            ("X-Trace".into(), "abc".into()),
            ("Content-Length".into(), "999".into()),
            ("Accept".into(), "application/json".into()),
        ];
        let body = Bytes::from_static(b"{\"a\": 1}");
        let direct = http1_request(state, &url, &spec, body.clone()).unwrap();
        let built = Encoded::of(any_request(state, &url, &spec, body).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&direct.head),
            String::from_utf8_lossy(&built.head)
        );
        let text = String::from_utf8(direct.head).unwrap();
        assert!(text.starts_with("POST /items?page=2 HTTP/1.1\r\nx-trace: abc\r\n"));
        assert!(text.contains("\r\nhost: 127.0.0.1:8080\r\n"), "{text}");
        assert!(text.contains("\r\ncookie: session=ann-1\r\n"), "{text}");
        assert!(text.contains("\r\ncontent-length: 8\r\n"), "{text}");
        assert!(!text.contains("999") && !text.contains("*/*"), "{text}");
        // A header that cannot be sent fails the same way on both.
        spec.headers = vec![("bad header".into(), "x".into())];
        let direct = http1_request(state, &url, &spec, Bytes::new()).err();
        let built = any_request(state, &url, &spec, Bytes::new()).err();
        assert_eq!(direct, built);
        assert!(direct.unwrap().starts_with("InvalidHeader:"));
    }
}
