//! Plain-http requests on hyper's HTTP/1.1 connection API: the fast path.
//!
//! Each session keeps its own idle keep-alive connections here, per origin,
//! so connections stay per user as in Locust. A request takes an idle
//! connection of its origin (or opens one), sends on it, reads the whole
//! body, and puts the connection back. https, proxies and the hops after a
//! redirect go through reqwest instead (`request.rs` decides).
// NOTE: reqwest runs every request through its tower stack (cookie layer,
// redirect layer, hyper-util's pool keyed by an `Arc`'d authority, a second
// task that returns the connection to the pool) and moves its large futures
// around. On the one-core throughput scenario of bench/run.py that stack
// was about a fifth of the load core (perf, 2026-11-22); this path keeps
// hyper's connection task and drops the rest: 14.2k -> 21.2k requests/s
// (+49 %) against the reqwest build in alternating runs, the same hour.
// Sessions also stop paying for a reqwest client (about 8 KB each) until
// one needs it: 61.6 -> 53.8 KB per user at 10,000 users (bench/README.md).

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

use super::request::root_cause;

/// The sending half of one keep-alive connection.
type Sender = SendRequest<Full<Bytes>>;

/// How many idle connections a session keeps; more are closed when they
/// come back. A user seldom runs more requests at once than this.
const MAX_IDLE_PER_SESSION: usize = 8;

/// Where a connection goes: the URL's host (IPv6 in brackets) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an `http://` URL; `None` for one without a host.
    pub fn of(url: &Url) -> Option<Self> {
        Some(Self {
            host: url.host_str().filter(|h| !h.is_empty())?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }
}

/// Why a request on this path failed, in the words of
/// [`super::describe_error`]: the kind, then the root cause.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection could not be opened (DNS, refused, unreachable).
    Connect(std::io::Error),
    /// The request failed before a response head arrived.
    Request(hyper::Error),
    /// The response head arrived and its body did not.
    Body(hyper::Error),
}

impl Failure {
    /// The failure text recorded for it, e.g. `ConnectionError: Connection
    /// refused (os error 111)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Connect(e) => format!("ConnectionError: {e}"),
            Self::Request(e) => format!("RequestError: {}", root_cause(e)),
            Self::Body(e) => format!("ResponseError: {}", root_cause(e)),
        }
    }
}

/// One session's idle keep-alive connections.
#[derive(Default)]
pub(crate) struct Connections {
    idle: Mutex<Vec<(Origin, Sender)>>,
}

impl Connections {
    fn idle(&self) -> MutexGuard<'_, Vec<(Origin, Sender)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` (origin-form URI, with its `Host` header) to `origin` on
    /// an idle connection, else on a new one, and reads the whole response.
    /// A request that a reused connection could not even start (the server
    /// closed it while idle) is sent once more on a new connection.
    ///
    /// # Errors
    /// [`Failure`] says which step failed; the connection is then dropped.
    pub async fn round_trip(
        &self,
        origin: &Origin,
        req: Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), Failure> {
        let (mut sender, reused) = match self.take_idle(origin).await {
            Some(sender) => (sender, true),
            None => (Box::pin(connect(origin)).await?, false),
        };
        let resp: Response<Incoming> = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                Some(req) if reused => {
                    sender = Box::pin(connect(origin)).await?;
                    sender.send_request(req).await.map_err(Failure::Request)?
                }
                _ => return Err(Failure::Request(e.into_error())),
            },
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(Failure::Body)?.to_bytes();
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_PER_SESSION && !sender.is_closed() {
            idle.push((origin.clone(), sender));
        }
        Ok((parts, body))
    }

    /// An idle connection to `origin` that can take a request now, if any;
    /// closed ones found on the way are dropped.
    async fn take_idle(&self, origin: &Origin) -> Option<Sender> {
        loop {
            let mut sender = {
                let mut idle = self.idle();
                let at = idle.iter().rposition(|(o, _)| o == origin)?;
                idle.swap_remove(at).1
            };
            // Ready at once unless the connection closed since its last
            // response; hyper then says so here.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// How many idle connections the session holds.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

/// Opens a TCP connection to `origin` (resolving its name if needed, with
/// the system resolver) and starts hyper's HTTP/1.1 task on it.
async fn connect(origin: &Origin) -> Result<Sender, Failure> {
    let host = origin.host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host, origin.port))
        .await
        .map_err(Failure::Connect)?;
    // As reqwest is configured: no Nagle delay on small requests.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(Failure::Request)?;
    tokio::spawn(async move {
        // Its errors reach the request that was using it.
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A keep-alive server on loopback that answers each request with "ok"
    /// and counts connections; with `close_after_each`, it closes every
    /// connection after its answer, without saying so.
    async fn server(close_after_each: bool) -> (Origin, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if sock.write_all(reply).await.is_err() || close_after_each {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let origin = Origin {
            host: "127.0.0.1".into(),
            port,
        };
        (origin, accepted)
    }

    fn get(origin: &Origin) -> Request<Full<Bytes>> {
        Request::get("/x")
            .header("host", format!("{}:{}", origin.host, origin.port))
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sequential_requests_share_one_connection() {
        let (origin, accepted) = server(false).await;
        let conns = Connections::default();
        for _ in 0..20 {
            let (parts, body) = conns.round_trip(&origin, get(&origin)).await.unwrap();
            assert_eq!(parts.status, 200);
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(conns.idle_count(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_the_server_closed_are_replaced() {
        let (origin, accepted) = server(true).await;
        let conns = Connections::default();
        for _ in 0..20 {
            let (parts, _) = conns.round_trip(&origin, get(&origin)).await.unwrap();
            assert_eq!(parts.status, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_requests_open_their_own_connections() {
        let (origin, accepted) = server(false).await;
        let conns = Connections::default();
        let all =
            futures_util::future::join_all((0..4).map(|_| conns.round_trip(&origin, get(&origin))))
                .await;
        assert!(all.iter().all(Result::is_ok));
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert_eq!(conns.idle_count(), 4);
        // They are all reused afterwards.
        for _ in 0..8 {
            conns.round_trip(&origin, get(&origin)).await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connection_is_a_connection_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = Origin {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
        };
        drop(listener);
        let err = Connections::default()
            .round_trip(&origin, get(&origin))
            .await
            .unwrap_err();
        let text = err.describe();
        assert!(text.starts_with("ConnectionError: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
