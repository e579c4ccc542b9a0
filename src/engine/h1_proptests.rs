//! No response panics or hangs the HTTP/1.1 reader: random bytes, and
//! real response heads followed by random bytes, from a loopback server
//! that writes them and closes.

use std::time::Duration;

use http::Request;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Starts of real responses, so that cases reach framing and bodies.
const HEADS: [&[u8]; 5] = [
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// One exchange against a server that answers `reply` and closes.
async fn exchange(reply: Vec<u8>) -> Result<Answer, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = Origin::plain("127.0.0.1", listener.local_addr().expect("addr").port());
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut request = [0u8; 1024];
        let _ = sock.read(&mut request).await;
        let _ = sock.write_all(&reply).await;
    });
    let req = Request::get("/")
        .header("host", "127.0.0.1")
        .body(Bytes::new())
        .expect("a request");
    Connections::default().round_trip(&origin, 64, req).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_response_ends_in_an_answer_or_a_failure(
        head in 0usize..HEADS.len(),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut reply = HEADS[head].to_vec();
        reply.extend_from_slice(&tail);
        let outcome = runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(20), exchange(reply)).await
        });
        // A hang would be the bug here, not a slow machine: the server
        // closes right after writing, so every case ends at once.
        prop_assert!(outcome.is_ok(), "the reader hung");
        if let Ok(Err(failure)) = outcome {
            prop_assert!(!failure.describe().is_empty());
        }
    }

    #[test]
    fn parse_head_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(Some((len, head))) = parse_head(&bytes) {
            prop_assert!(len <= bytes.len());
            let _ = framing(&Method::GET, &head);
            let _ = keeps_alive(&head);
        }
    }
}
