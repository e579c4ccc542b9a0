//! HTTP/2 on the fast path: the h2 crate's client (its framing, HPACK and
//! flow control; none of our own), on a TLS connection whose ALPN chose
//! `h2`, or on plain TCP with prior knowledge (h2c) when the user opts in.
//! Each session keeps one multiplexed connection per origin: requests a
//! user runs at once (`asyncio.gather`) share it as streams.
// NOTE: this ran on hyper's client connection API over h2 first. hyper
// hands each request to the connection's task through a channel, spawns a
// task per response to send it back, and wraps the body twice; perf put
// its dispatch at ~4 % of the load core (50 users, h2 over TLS,
// 2026-12-02). Here the request's own task sends its stream and reads the
// response, and only the connection's I/O runs in a task of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::header::{CONNECTION, CONTENT_LENGTH, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, HeaderValue, Request};

use super::conn::{Origin, Stream};
use super::h1::{body_over_limit, Answer, Failure};
use super::h1_encode::needs_content_length;
use super::timings::Timings;

/// A connection's handle for new streams, and whether its task has ended.
#[derive(Clone)]
pub(crate) struct Sender {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

/// The receive windows offered to the server, hyper's defaults: large
/// enough that a body of a few MB is not paced by WINDOW_UPDATE round
/// trips (the protocol's own default is 64 KB, RFC 9113 section 6.9.2).
const STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 5 * 1024 * 1024;

/// A session's HTTP/2 connections, one per origin, and what it learned of
/// origins that answered with HTTP/1.1.
#[derive(Default)]
pub(crate) struct H2Connections {
    senders: Mutex<Vec<(Origin, Sender)>>,
    /// Held while a new connection learns its protocol, so that requests
    /// started together (a `gather`) wait for it instead of each opening
    /// a connection of its own.
    pub gate: tokio::sync::Mutex<()>,
    /// Origins whose ALPN chose HTTP/1.1: their requests skip the gate.
    http1: Mutex<Vec<Origin>>,
}

impl H2Connections {
    fn senders(&self) -> MutexGuard<'_, Vec<(Origin, Sender)>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open connection to `origin`, if any (closed ones are dropped).
    pub fn get(&self, origin: &Origin) -> Option<Sender> {
        let mut senders = self.senders();
        senders.retain(|(_, s)| !s.is_closed());
        senders
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, s)| s.clone())
    }

    /// Whether `origin` answered a new connection with HTTP/1.1 before.
    pub fn is_http1(&self, origin: &Origin) -> bool {
        self.http1
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(origin)
    }

    /// Remembers that `origin` speaks HTTP/1.1 (ALPN chose it).
    pub fn learned_http1(&self, origin: &Origin) {
        let mut known = self.http1.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains(origin) {
            // One more slot at a time, as the idle connections of h1.rs.
            known.reserve_exact(1);
            known.push(origin.clone());
        }
    }

    /// Starts HTTP/2 on `stream` (the connection's I/O runs in a task of
    /// its own) and keeps it for `origin`'s next requests.
    ///
    /// # Errors
    /// [`Failure::Request`] when the handshake fails.
    pub async fn open(&self, origin: &Origin, stream: Stream) -> Result<Sender, Failure> {
        let (send, conn) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| Failure::Request(format!("HTTP/2 handshake: {e}")))?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        tokio::spawn(async move {
            // Ends when the server closes or every sender is dropped.
            let _ = conn.await;
            ended.store(true, Ordering::Release);
        });
        let sender = Sender { send, closed };
        let mut senders = self.senders();
        senders.retain(|(o, s)| o != origin && !s.is_closed());
        senders.reserve_exact(1);
        senders.push((origin.clone(), sender.clone()));
        Ok(sender)
    }
}

/// How an HTTP/2 exchange failed.
pub(crate) enum H2Failure {
    /// Before its response head, on a connection the server is ending
    /// (GOAWAY, as nginx sends after `keepalive_requests`) or that refused
    /// its stream: the server did not process it (RFC 9113 sections 6.8
    /// and 8.7), and it may go again on a new connection.
    Unprocessed(Failure),
    /// Any other failure.
    Failed(Failure),
}

impl From<H2Failure> for Failure {
    fn from(f: H2Failure) -> Self {
        match f {
            H2Failure::Unprocessed(f) | H2Failure::Failed(f) => f,
        }
    }
}

/// Sends `req` (absolute URI; no `Host`, which becomes `:authority`) as one
/// stream of the connection and reads the whole body, failing one over
/// `max_body_bytes`.
///
/// # Errors
/// [`H2Failure`]: [`Failure::Request`] before the response head (marked
/// unprocessed when the server is ending the connection, which is then no
/// longer handed out), [`Failure::Body`] after.
pub(crate) async fn round_trip(
    sender: Sender,
    req: Request<Bytes>,
    max_body_bytes: u64,
) -> Result<Answer, H2Failure> {
    let idempotent = req.method().is_idempotent();
    // Nothing went out yet: any connection-level refusal leaves it unsent.
    let unsent = |e: h2::Error| sender.refused(e, true);
    let mut send = sender.send.clone().ready().await.map_err(unsent)?;
    let (head, body) = req.into_parts();
    let head = h2_head(head, &body);
    let sent = Instant::now();
    let (response, mut outgoing) = send
        .send_request(Request::from_parts(head, ()), body.is_empty())
        .map_err(unsent)?;
    if !body.is_empty() {
        // Buffered by h2 and sent as the server's window allows.
        outgoing
            .send_data(body, true)
            .map_err(|e| sender.refused(e, idempotent))?;
    }
    let response = response.await.map_err(|e| sender.refused(e, idempotent))?;
    let first_byte = Instant::now();
    let (head, mut incoming) = response.into_parts();
    let mut buf = BytesMut::new();
    while let Some(data) = incoming.data().await {
        let data = data.map_err(|e| H2Failure::Failed(Failure::Body(e.to_string())))?;
        let _ = incoming.flow_control().release_capacity(data.len());
        if (buf.len() + data.len()) as u64 > max_body_bytes {
            return Err(H2Failure::Failed(Failure::Body(body_over_limit(
                max_body_bytes,
            ))));
        }
        buf.extend_from_slice(&data);
    }
    Ok(Answer {
        head,
        body: buf.freeze(),
        timings: Timings::exchange(sent, first_byte, Instant::now()),
    })
}

impl Sender {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The failure of a request before its response head. A GOAWAY ends
    /// the connection for new streams: it is marked closed. A stream the
    /// server refused (REFUSED_STREAM) was not processed; one cut by a
    /// GOAWAY may have been, so it counts as unprocessed only when
    /// `may_repeat` (nothing was sent, or the method is idempotent).
    fn refused(&self, e: h2::Error, may_repeat: bool) -> H2Failure {
        let failure = Failure::Request(e.to_string());
        if e.is_go_away() {
            self.closed.store(true, Ordering::Release);
        }
        let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM);
        if refused || (e.is_go_away() && may_repeat) {
            H2Failure::Unprocessed(failure)
        } else {
            H2Failure::Failed(failure)
        }
    }
}

/// A copy of `req` (its body's bytes shared), for a request that may have
/// to go again.
pub(crate) fn copy(req: &Request<Bytes>) -> Request<Bytes> {
    let mut out = Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    out
}

/// A request head fit for HTTP/2: without the fields of HTTP/1.1's
/// connection management, which RFC 9113 section 8.2.2 forbids (`TE` is
/// kept when it says `trailers`), and with a `Content-Length` for a body,
/// as HTTP/1.1 requests get one.
fn h2_head(mut head: http::request::Parts, body: &Bytes) -> http::request::Parts {
    let headers = &mut head.headers;
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(HeaderName::from_static(name));
    }
    if headers.get(TE).is_some_and(|v| v != "trailers") {
        headers.remove(TE);
    }
    if needs_content_length(&head.method, body) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    head
}
