//! The fast path's connections: where one goes ([`Origin`]: host, port and,
//! for https, the TLS config), opening it (TCP, then the TLS handshake with
//! SNI and ALPN), and the byte stream the HTTP/1.1 code reads and writes.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::h1::Failure;
use super::timings::{micros, Timings};
use super::tls::describe_handshake_error;
use super::tls_io::{handshake, TlsConn};

/// Where a connection goes: the URL's host (IPv6 in brackets), port, and
/// for https the TLS config it is opened with (idle connections are reused
/// only by requests of the same config); for http, whether to speak HTTP/2
/// from the first byte (h2c with prior knowledge, RFC 9113 section 3.3).
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<ClientConfig>>,
    pub h2c: bool,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.h2c == other.h2c
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Origin {
    /// The origin of an `http://` URL (`h2c`: with HTTP/2 from the first
    /// byte), or of an `https://` one with its `tls` config; `None` for one
    /// without a host.
    pub fn of(url: &Url, tls: Option<Arc<ClientConfig>>, h2c: bool) -> Option<Self> {
        Some(Self {
            host: url.host_str().filter(|h| !h.is_empty())?.to_owned(),
            port: url.port_or_known_default()?,
            h2c: h2c && tls.is_none(),
            tls,
        })
    }

    /// Whether a new connection here may turn out HTTP/2: TLS that offers
    /// `h2` by ALPN, or h2c.
    pub fn may_speak_h2(&self) -> bool {
        self.h2c
            || self
                .tls
                .as_ref()
                .is_some_and(|c| c.alpn_protocols.iter().any(|p| p == b"h2"))
    }

    /// A plain-http origin (tests).
    #[cfg(test)]
    pub fn plain(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls: None,
            h2c: false,
        }
    }
}

/// A connection: plain TCP, or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

impl Stream {
    /// Whether an idle connection is still open, without waiting. A plain
    /// one is probed (an open, quiet socket has nothing to read, so this
    /// makes no system call). A TLS one is read once without blocking:
    /// rustls takes in what the server sent meanwhile (session tickets
    /// keep it open; a `close_notify` or end of stream, which servers send
    /// when their keep-alive timeout passes, closes it), so that a request
    /// that may not be retried, a POST, does not go out on a dead
    /// connection.
    pub fn seems_open(&mut self) -> bool {
        match self {
            Stream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(tls) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                // Pending: nothing to read, open. Anything else (end of
                // stream, an error, or bytes no request asked for) ends it.
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }

    /// Whether HTTP/2 runs here: the TLS handshake's ALPN chose `h2`, or
    /// the origin is h2c.
    pub fn speaks_h2(&self, origin: &Origin) -> bool {
        match self {
            Stream::Plain(_) => origin.h2c,
            Stream::Tls(tls) => tls.alpn_protocol() == Some(b"h2".as_slice()),
        }
    }
}

/// The most connections the process opens to one origin (host and port)
/// at a time: DNS, TCP connect and TLS handshake. More wait their turn;
/// the wait counts in their response time, as any queueing for a
/// connection does. The same order of limit as a browser's socket pool
/// (Chrome's is 256).
// NOTE: when 5,000 users start in the same instant over TLS 1.3, nginx on
// one core takes ~1.2 s for their handshakes, and each waiting handshake
// holds rustls's state and messages meanwhile. With this limit the peak
// RSS per user went from 10.5 to 9.3 KB (bench/run.py memory-tls,
// 2026-12-02; 1,024: 10.0 KB), and p99 stayed ~1.2 s: the server does the
// handshakes one at a time either way.
pub(crate) const MAX_OPENING_PER_ORIGIN: usize = 256;

/// Past this many origins, the gates of origins that open nothing are
/// dropped.
const MAX_GATES: usize = 1024;

/// A turn to open a connection to `origin`, under
/// [`MAX_OPENING_PER_ORIGIN`]; the turn ends when the permit is dropped.
async fn opening_turn(origin: &Origin) -> Option<OwnedSemaphorePermit> {
    type Gates = Mutex<HashMap<(String, u16), Arc<Semaphore>>>;
    static GATES: OnceLock<Gates> = OnceLock::new();
    let gate = {
        let mut gates = GATES
            .get_or_init(Gates::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if gates.len() >= MAX_GATES {
            gates.retain(|_, gate| gate.available_permits() < MAX_OPENING_PER_ORIGIN);
        }
        gates
            .entry((origin.host.clone(), origin.port))
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_OPENING_PER_ORIGIN)))
            .clone()
    };
    // A gate is never closed, so a turn always comes.
    gate.acquire_owned().await.ok()
}

/// Opens a connection to `origin`: the host's addresses (the system
/// resolver for a name), TCP to each in turn until one answers (no Nagle
/// delay, as reqwest is configured), then for https the TLS handshake,
/// with SNI for a host name; at most [`MAX_OPENING_PER_ORIGIN`] at once.
/// Returns it with the time each phase took (the wait for a turn is in
/// none of them).
///
/// # Errors
/// [`Failure::Connect`] for DNS and TCP, [`Failure::Request`] for the
/// handshake, with its reason in words (`SSLError: ...`).
pub(crate) async fn connect(origin: &Origin) -> Result<(Stream, Timings), Failure> {
    let _turn = opening_turn(origin).await;
    let host = origin.host.trim_start_matches('[').trim_end_matches(']');
    let mut timings = Timings::default();
    let started = Instant::now();
    let addrs: Vec<_> = tokio::net::lookup_host((host, origin.port))
        .await
        .map_err(Failure::Connect)?
        .collect();
    if host.parse::<std::net::IpAddr>().is_err() {
        timings.dns_us = micros(started.elapsed());
    }
    let dialled = Instant::now();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or(Failure::Connect(last))?;
    timings.connect_us = micros(dialled.elapsed());
    let _ = tcp.set_nodelay(true);
    let Some(config) = &origin.tls else {
        return Ok((Stream::Plain(tcp), timings));
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Failure::Request(format!("SSLError: {host} is not a TLS server name: {e}")))?;
    let shaking = Instant::now();
    let tls = handshake(tcp, config.clone(), name)
        .await
        .map_err(|e| Failure::Request(describe_handshake_error(host, &e)))?;
    timings.tls_us = micros(shaking.elapsed());
    Ok((Stream::Tls(tls), timings))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
