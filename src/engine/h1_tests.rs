//! Tests of `engine::h1`.

use std::sync::Arc;

use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::super::request::DEFAULT_MAX_BODY_BYTES;
use super::*;

fn get(origin: &Origin) -> Request<Bytes> {
    Request::get("/x")
        .header("host", format!("{}:{}", origin.host, origin.port))
        .body(Bytes::new())
        .unwrap()
}

/// An "ok" answer for [`scripted`].
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(flavor = "current_thread")]
async fn sequential_requests_share_one_connection() {
    let (origin, seen) = scripted(vec![(OK, 1, false); 20]).await;
    let conns = Connections::default();
    for _ in 0..20 {
        let Answer {
            head: parts, body, ..
        } = conns
            .round_trip(&origin, DEFAULT_MAX_BODY_BYTES, get(&origin))
            .await
            .unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(conns.idle_count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn connections_the_server_closed_are_replaced() {
    let (origin, seen) = scripted(vec![(OK, 1, true); 20]).await;
    let conns = Connections::default();
    for _ in 0..20 {
        let Answer { head: parts, .. } = conns
            .round_trip(&origin, DEFAULT_MAX_BODY_BYTES, get(&origin))
            .await
            .unwrap();
        assert_eq!(parts.status, 200);
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 20);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_open_their_own_connections() {
    let (origin, seen) = scripted(vec![(OK, 1, false); 12]).await;
    let conns = Connections::default();
    let all = futures_util::future::join_all(
        (0..4).map(|_| conns.round_trip(&origin, DEFAULT_MAX_BODY_BYTES, get(&origin))),
    )
    .await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4);
    assert_eq!(conns.idle_count(), 4);
    // They are all reused afterwards.
    for _ in 0..8 {
        conns
            .round_trip(&origin, DEFAULT_MAX_BODY_BYTES, get(&origin))
            .await
            .unwrap();
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connection_is_a_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = Origin::plain("127.0.0.1", listener.local_addr().unwrap().port());
    drop(listener);
    let err = Connections::default()
        .round_trip(&origin, DEFAULT_MAX_BODY_BYTES, get(&origin))
        .await
        .unwrap_err();
    let text = err.describe();
    assert!(text.starts_with("ConnectionError: "), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

/// What the scripted server saw: each request's bytes, and how many
/// connections it accepted.
#[derive(Default)]
struct Seen {
    requests: std::sync::Mutex<Vec<Vec<u8>>>,
    connections: AtomicUsize,
}

/// A server that answers the n-th request it reads (on any connection)
/// with `replies[n]`: the bytes, written `pieces` at a time with a pause
/// between (1 = whole), and whether to close the connection after them.
async fn scripted(replies: Vec<(&'static [u8], usize, bool)>) -> (Origin, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let replies = Arc::new(std::sync::Mutex::new(replies.into_iter()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let (seen, replies) = (shared.clone(), replies.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: the head, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + length {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request: Vec<u8> = buf.drain(..head_end + length).collect();
                    seen.requests.lock().unwrap().push(request);
                    let Some((reply, pieces, close)) = replies.lock().unwrap().next() else {
                        return;
                    };
                    for piece in reply.chunks(reply.len().div_ceil(pieces).max(1)) {
                        if sock.write_all(piece).await.is_err() {
                            return;
                        }
                        if pieces > 1 {
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        }
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    let origin = Origin::plain("127.0.0.1", port);
    (origin, seen)
}

fn request(origin: &Origin, method: Method, body: &'static [u8]) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri("/p?q=1")
        .header("host", format!("{}:{}", origin.host, origin.port))
        .header("content-length", "999")
        .body(Bytes::from_static(body))
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_are_framed_as_rfc_9112_says() {
    const BIG: usize = 3 << 20;
    let big_reply: &'static [u8] = Box::leak(
        [
            format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n").as_bytes(),
            &[b'x'; BIG],
        ]
        .concat()
        .into_boxed_slice(),
    );
    let (origin, seen) = scripted(vec![
        // Chunked, with an extension and a trailer, in small pieces.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
            7,
            false,
        ),
        // HEAD: a length and no body.
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", 1, false),
        // 204 and 304 have no body.
        (b"HTTP/1.1 204 No Content\r\n\r\n", 1, false),
        (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n", 1, false),
        // Informational responses are skipped.
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", 3, false),
        // A large body, and a head dribbled out byte by byte.
        (big_reply, 5, false),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc", 40, false),
        // No length: the body runs to the close.
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", 1, true),
    ])
    .await;
    let conns = Connections::default();
    let Answer { head, body, .. } = conns
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::GET, b""),
        )
        .await
        .unwrap();
    assert_eq!(
        (head.status.as_u16(), &body[..]),
        (200, &b"hello world"[..])
    );
    let Answer { head, body, .. } = conns
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::HEAD, b""),
        )
        .await
        .unwrap();
    assert_eq!((head.status.as_u16(), body.len()), (200, 0));
    assert_eq!(head.headers["content-length"], "100");
    for status in [204, 304] {
        let Answer { head, body, .. } = conns
            .round_trip(
                &origin,
                DEFAULT_MAX_BODY_BYTES,
                request(&origin, Method::GET, b""),
            )
            .await
            .unwrap();
        assert_eq!((head.status.as_u16(), body.len()), (status, 0));
    }
    let Answer { head, body, .. } = conns
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::POST, b"{}"),
        )
        .await
        .unwrap();
    assert_eq!((head.status.as_u16(), &body[..]), (201, &b"ok"[..]));
    let Answer { body, .. } = conns
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::GET, b""),
        )
        .await
        .unwrap();
    assert!(body.len() == BIG && body.iter().all(|b| *b == b'x'));
    let Answer { body, .. } = conns
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::GET, b""),
        )
        .await
        .unwrap();
    assert_eq!(&body[..], b"abc");
    // All of these kept the one connection.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    let Answer { body, .. } = conns
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::GET, b""),
        )
        .await
        .unwrap();
    assert_eq!(&body[..], b"until the end");
    assert_eq!(
        conns.idle_count(),
        0,
        "a body read to the close ends the connection"
    );

    // What went out: our own Content-Length, for bodies and empty POSTs.
    let requests = seen.requests.lock().unwrap();
    let first = String::from_utf8_lossy(&requests[0]);
    assert!(
        first.starts_with("GET /p?q=1 HTTP/1.1\r\nhost: 127.0.0.1:"),
        "{first}"
    );
    assert!(!first.contains("content-length"), "{first}");
    assert!(requests[4].ends_with(b"content-length: 2\r\n\r\n{}"));
}

#[tokio::test(flavor = "current_thread")]
async fn connections_stay_open_only_when_the_response_allows() {
    let (origin, seen) = scripted(vec![
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
            1,
            true,
        ),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", 1, true),
        (
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n",
            1,
            false,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 1, false),
    ])
    .await;
    let conns = Connections::default();
    for expected_idle in [0, 0, 1, 1] {
        conns
            .round_trip(
                &origin,
                DEFAULT_MAX_BODY_BYTES,
                request(&origin, Method::POST, b""),
            )
            .await
            .unwrap();
        assert_eq!(conns.idle_count(), expected_idle);
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    let requests = seen.requests.lock().unwrap();
    assert!(requests[0].ends_with(b"content-length: 0\r\n\r\n"));
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_responses_fail_with_their_reason() {
    let many_fields: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
            "x-a: 1\r\n".repeat(200)
        )
        .into_boxed_str(),
    );
    let fifty_fields: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
            "x-a: 1\r\n".repeat(50)
        )
        .into_boxed_str(),
    );
    let cases: [(&'static [u8], &str); 5] = [
        (
            b"SSH-2.0-OpenSSH\r\n\r\n",
            "RequestError: invalid HTTP response",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nab",
            "RequestError: invalid HTTP response: conflicting",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            "ResponseError: connection closed before message completed",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "ResponseError: invalid chunk size line",
        ),
        (
            many_fields.as_bytes(),
            "RequestError: invalid HTTP response: too many headers",
        ),
    ];
    for (reply, expected) in cases {
        let (origin, _) = scripted(vec![(reply, 1, true)]).await;
        let err = Connections::default()
            .round_trip(
                &origin,
                DEFAULT_MAX_BODY_BYTES,
                request(&origin, Method::GET, b""),
            )
            .await
            .unwrap_err();
        assert!(
            err.describe().starts_with(expected),
            "{} for {:?}",
            err.describe(),
            String::from_utf8_lossy(&reply[..20])
        );
    }
    // 50 fields are more than the first try's room, and fine.
    let (origin, _) = scripted(vec![(fifty_fields.as_bytes(), 1, false)]).await;
    let Answer { head, .. } = Connections::default()
        .round_trip(
            &origin,
            DEFAULT_MAX_BODY_BYTES,
            request(&origin, Method::GET, b""),
        )
        .await
        .unwrap();
    assert_eq!(head.headers.get_all("x-a").iter().count(), 50);
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_responses_fail_with_their_reason_and_never_hang() {
    let endless_1xx: &'static [u8] =
        Box::leak("HTTP/1.1 100 Continue\r\n\r\n".repeat(40).into_boxed_str()).as_bytes();
    let long_chunks: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{}",
            "8\r\n12345678\r\n".repeat(8)
        )
        .into_boxed_str(),
    )
    .as_bytes();
    let cases: [(&'static [u8], &str); 4] = [
        (
            endless_1xx,
            "RequestError: more than 16 informational (1xx) responses",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n",
            "ResponseError: the response body is over the limit of 32 bytes",
        ),
        (
            long_chunks,
            "ResponseError: the response body is over the limit of 32 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n0123456789012345678901234567890123456789",
            "ResponseError: the response body is over the limit of 32 bytes",
        ),
    ];
    for (reply, expected) in cases {
        let (origin, _) = scripted(vec![(reply, 1, true)]).await;
        let err = Connections::default()
            .round_trip(&origin, 32, request(&origin, Method::GET, b""))
            .await
            .unwrap_err();
        assert!(err.describe().starts_with(expected), "{}", err.describe());
    }
    // A response dripped in nine writes is read whole.
    let (origin, _) = scripted(vec![(OK, 9, false)]).await;
    let Answer { head, body, .. } = Connections::default()
        .round_trip(&origin, 32, request(&origin, Method::GET, b""))
        .await
        .unwrap();
    assert_eq!((head.status.as_u16(), &body[..]), (200, &b"ok"[..]));
}

#[test]
fn the_end_of_a_head_is_searched_once_per_byte() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tcp, _accepted) = tokio::join!(
            async { tokio::net::TcpStream::connect(addr).await.unwrap() },
            async { listener.accept().await.unwrap() }
        );
        let mut stream = Stream::Plain(tcp);
        let mut reader = Reader {
            stream: &mut stream,
            buf: BytesMut::new(),
            received: 0,
            first_byte: None,
            scanned: 0,
            max_body_bytes: 1,
        };
        for (i, byte) in b"HTTP/1.1 200 OK\r\nx: y\r\n".iter().enumerate() {
            reader.buf.extend_from_slice(&[*byte]);
            assert!(!reader.has_blank_line());
            assert_eq!(reader.scanned, i + 1);
        }
        reader.buf.extend_from_slice(b"\r");
        assert!(!reader.has_blank_line());
        reader.buf.extend_from_slice(b"\n");
        assert!(reader.has_blank_line() && reader.scanned == 0);
    });
}
