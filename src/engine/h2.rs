//! HTTP/2 on the fast path: hyper's client connection API over the h2
//! crate (no framing or HPACK of our own), on a TLS connection whose ALPN
//! chose `h2`, or on plain TCP with prior knowledge (h2c) when the user
//! opts in. Each session keeps one multiplexed connection per origin:
//! requests a user runs at once (`asyncio.gather`) share it as streams.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::conn::{Origin, Stream};
use super::h1::{body_over_limit, Answer, Failure};
use super::timings::Timings;

type Sender = SendRequest<Full<Bytes>>;

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
            known.push(origin.clone());
        }
    }

    /// Starts HTTP/2 on `stream` (the connection task runs on its own) and
    /// keeps it for `origin`'s next requests.
    ///
    /// # Errors
    /// [`Failure::Request`] when the server's preface does not come.
    pub async fn open(&self, origin: &Origin, stream: Stream) -> Result<Sender, Failure> {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Request(format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            // Ends when the server closes or every sender is dropped.
            let _ = conn.await;
        });
        let mut senders = self.senders();
        senders.retain(|(o, s)| o != origin && !s.is_closed());
        senders.push((origin.clone(), sender.clone()));
        Ok(sender)
    }
}

/// Sends `req` (absolute URI; no `Host`, which becomes `:authority`) as one
/// stream of the connection and reads the whole body, failing one over
/// `max_body_bytes`.
///
/// # Errors
/// [`Failure::Request`] before the response head, [`Failure::Body`] after.
pub(crate) async fn round_trip(
    mut sender: Sender,
    req: Request<Bytes>,
    max_body_bytes: u64,
) -> Result<Answer, Failure> {
    sender
        .ready()
        .await
        .map_err(|e| Failure::Request(e.to_string()))?;
    let sent = Instant::now();
    let response = sender
        .send_request(req.map(Full::new))
        .await
        .map_err(|e| Failure::Request(e.to_string()))?;
    let first_byte = Instant::now();
    let (head, mut body) = response.into_parts();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > max_body_bytes {
                return Err(Failure::Body(body_over_limit(max_body_bytes)));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Answer {
        head,
        body: buf.freeze(),
        timings: Timings::exchange(sent, first_byte, Instant::now()),
    })
}
