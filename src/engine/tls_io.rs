//! TLS over a TCP stream on rustls's unbuffered API, so that an idle
//! connection holds no buffer at all.
//!
//! rustls's buffered `ClientConnection` keeps a 4 KB record buffer for the
//! whole life of a connection, and tokio-rustls adds none of its own. That
//! was half of what a TLS user cost: 5,000 users at `constant(1)` held
//! 12.6 KB each above the process, against 4.3 KB over plain HTTP. Here a
//! socket read lands in a buffer on the stack, whole records are decrypted
//! straight from it into the caller's buffer, and only what outlives the
//! call is kept on the heap: the start of a record that has not fully
//! arrived, plaintext the caller had no room for, encrypted bytes the socket
//! did not take yet. Each is freed once emptied.
//!
//! The state machine is rustls's (`UnbufferedClientConnection`,
//! `process_tls_records`); this file only moves bytes between it, the
//! socket and the caller.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus,
};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The largest TLS record on the wire: 2^14 bytes of plaintext, 2,048 of
/// expansion and the 5-byte header (RFC 8446 section 5.2, RFC 5246 6.2.3).
const MAX_RECORD_BYTES: usize = 16_384 + 2_048 + 5;

/// The most plaintext one write takes: one full record.
const MAX_WRITE_BYTES: usize = 16_384;

/// The stack buffer one socket read lands in: room for two whole records.
const SCRATCH_BYTES: usize = 2 * MAX_RECORD_BYTES;

/// The most ciphertext carried between reads: a handshake message may span
/// records that must stay together until it is whole (rustls caps those
/// at 64 KB).
const MAX_CARRIED_BYTES: usize = 0x1_0000 + MAX_RECORD_BYTES;

/// Where the TLS state machine stands after the input it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// It needs more bytes from the peer.
    Input,
    /// The handshake is done and nothing is left to read.
    Writable,
    /// The peer sent its `close_notify`: nothing more will come.
    PeerClosed,
}

/// A client TLS connection over TCP (HTTP/1.1 or HTTP/2 runs on it).
pub(crate) struct TlsConn {
    tcp: TcpStream,
    tls: UnbufferedClientConnection,
    /// The received bytes of records not yet whole (empty, unallocated,
    /// between responses).
    carried: Vec<u8>,
    /// Decrypted bytes the caller had no room for: `plain[plain_at..]`.
    plain: Vec<u8>,
    plain_at: usize,
    /// Encrypted bytes for the peer not yet written: `unsent[sent..]`.
    unsent: Vec<u8>,
    sent: usize,
    /// The peer's `close_notify` has come.
    read_closed: bool,
    /// Ours has been queued.
    close_queued: bool,
}

/// Opens TLS over `tcp` to `name` with `config`: the handshake with SNI and
/// ALPN, resuming a session from `config`'s store when it holds one. The
/// connection (~1.2 KB, most of it rustls's state) is on the heap from the
/// start, so the future that opens it stays small: thousands of them are
/// alive at once when as many users start together.
///
/// # Errors
/// The handshake's failure: an `InvalidData` error wrapping the
/// `rustls::Error` (an unknown issuer, an alert from the server), or the
/// socket's error; `UnexpectedEof` when the server closes during it.
pub(crate) async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<Box<TlsConn>> {
    let tls = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    let mut conn = Box::new(TlsConn {
        tcp,
        tls,
        carried: Vec::new(),
        plain: Vec::new(),
        plain_at: 0,
        unsent: Vec::new(),
        sent: 0,
        read_closed: false,
        close_queued: false,
    });
    match poll_fn(|cx| conn.poll_handshake(cx)).await {
        Ok(()) => Ok(conn),
        Err(e) => {
            conn.send_alert();
            Err(e)
        }
    }
}

impl TlsConn {
    /// The protocol the server chose by ALPN (`b"h2"`, `b"http/1.1"`).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// The heap bytes this connection holds for data in passage: zero
    /// between responses.
    #[cfg(test)]
    pub fn buffered_capacity(&self) -> usize {
        self.carried.capacity() + self.plain.capacity() + self.unsent.capacity()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let (_, next) = self.process(&mut [], None)?;
            ready!(self.poll_send(cx))?;
            match next {
                Next::Writable => return Poll::Ready(Ok(())),
                Next::PeerClosed => return Poll::Ready(Err(eof("during the TLS handshake"))),
                Next::Input => {
                    ready!(self.poll_input(cx, None))?;
                }
            }
        }
    }

    /// Sends the alert rustls queued on a failed handshake, if the socket
    /// takes it now (the server then logs why, as with OpenSSL's clients).
    fn send_alert(&mut self) {
        let _ = self.process(&mut [], None);
        if self.sent < self.unsent.len() {
            let _ = self.tcp.try_write(&self.unsent[self.sent..]);
        }
    }

    /// Runs the state machine over `input` (whole records and the start of
    /// one): handshake messages are answered into `unsent`, plaintext goes
    /// to `out` as far as it has room and to `plain` after that. Returns
    /// how many bytes of `input` are done with (the rest is an incomplete
    /// record) and where it stands.
    fn process(
        &mut self,
        input: &mut [u8],
        mut out: Option<&mut ReadBuf<'_>>,
    ) -> io::Result<(usize, Next)> {
        let mut used = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.tls.process_tls_records(&mut input[used..]);
            let next = match state.map_err(tls_error)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        let room = out.as_ref().map_or(0, |o| o.remaining());
                        let (now, later) = record.payload.split_at(room.min(record.payload.len()));
                        if let Some(out) = out.as_mut() {
                            out.put_slice(now);
                        }
                        self.plain.extend_from_slice(later);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.unsent, &mut encode)?;
                    None
                }
                // The bytes are ours to write now; they go before any wait.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Next::Input),
                ConnectionState::WriteTraffic(_) => Some(Next::Writable),
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Next::PeerClosed),
                other => {
                    return Err(io::Error::other(format!("unexpected TLS state {other:?}")));
                }
            };
            used += discard;
            if let Some(next) = next {
                if next == Next::PeerClosed {
                    self.read_closed = true;
                }
                return Ok((used, next));
            }
        }
    }

    /// Encrypts up to one record of `data` into `unsent`; returns how many
    /// bytes of `data` it took. What rustls has queued goes first
    /// (handshake records; plaintext is kept for the next read).
    fn encrypt(&mut self, data: &[u8]) -> io::Result<usize> {
        let data = &data[..data.len().min(MAX_WRITE_BYTES)];
        loop {
            // One look at the state when nothing is queued, as between
            // requests; `process` drains what is, then this looks again.
            let UnbufferedStatus { state, .. } = self.tls.process_tls_records(&mut []);
            if let ConnectionState::WriteTraffic(mut traffic) = state.map_err(tls_error)? {
                append_with(&mut self.unsent, data.len() + 64, |buf| {
                    traffic.encrypt(data, buf).map_err(short_of)
                })?;
                return Ok(data.len());
            }
            let (_, next) = self.process(&mut [], None)?;
            if next != Next::Writable {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("TLS connection cannot send ({next:?})"),
                ));
            }
        }
    }

    /// Writes `unsent` to the socket; frees it once all is written.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.unsent.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.unsent[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.unsent.capacity() > 0 {
            self.unsent = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the socket has and processes it with the bytes carried
    /// from before; plaintext goes to `out` (the rest to `plain`).
    fn poll_input(
        &mut self,
        cx: &mut Context<'_>,
        out: Option<&mut ReadBuf<'_>>,
    ) -> Poll<io::Result<Next>> {
        if self.carried.is_empty() {
            let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH_BYTES];
            let mut input = ReadBuf::uninit(&mut scratch);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut input))?;
            if input.filled().is_empty() {
                return Poll::Ready(Err(self.ended()));
            }
            let filled = input.filled_mut();
            let (used, next) = self.process(filled, out)?;
            self.carried.extend_from_slice(&filled[used..]);
            return Poll::Ready(Ok(next));
        }
        // The start of a record is carried: read on behind it.
        if self.carried.len() >= MAX_CARRIED_BYTES {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS: a handshake message over 64 KB",
            )));
        }
        let at = self.carried.len();
        self.carried.resize(at + MAX_RECORD_BYTES, 0);
        let mut input = ReadBuf::new(&mut self.carried[at..]);
        let read = Pin::new(&mut self.tcp).poll_read(cx, &mut input);
        let n = input.filled().len();
        self.carried.truncate(at + n);
        ready!(read)?;
        if n == 0 {
            return Poll::Ready(Err(self.ended()));
        }
        let mut carried = std::mem::take(&mut self.carried);
        let (used, next) = self.process(&mut carried, out)?;
        if used < carried.len() {
            carried.drain(..used);
            self.carried = carried;
        }
        Poll::Ready(Ok(next))
    }

    /// The error of a socket that ended without the peer's `close_notify`
    /// (rustls's and tokio-rustls's word for it).
    fn ended(&self) -> io::Error {
        if self.tls.is_handshaking() {
            eof("during the TLS handshake")
        } else {
            eof("without sending TLS close_notify")
        }
    }

    /// Moves plaintext kept from before into `out`; whether there was any.
    fn take_plain(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if self.plain_at >= self.plain.len() {
            return false;
        }
        let n = out.remaining().min(self.plain.len() - self.plain_at);
        out.put_slice(&self.plain[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        true
    }
}

/// Appends what `fill` writes to `buf`, giving it `guess` bytes of room
/// first and the size it asks for when that was too little.
fn append_with(
    buf: &mut Vec<u8>,
    guess: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, Option<InsufficientSizeError>>,
) -> io::Result<()> {
    let at = buf.len();
    buf.resize(at + guess, 0);
    let written = match fill(&mut buf[at..]) {
        Ok(n) => n,
        Err(Some(InsufficientSizeError { required_size })) => {
            buf.resize(at + required_size, 0);
            fill(&mut buf[at..]).map_err(|_| io::Error::other("TLS: a record did not fit"))?
        }
        Err(None) => {
            buf.truncate(at);
            return Err(io::Error::other("TLS: the connection's keys are used up"));
        }
    };
    buf.truncate(at + written);
    Ok(())
}

/// Appends a handshake record rustls has ready to `unsent`.
fn encode_into<Data>(unsent: &mut Vec<u8>, encode: &mut EncodeTlsData<'_, Data>) -> io::Result<()> {
    append_with(unsent, 512, |buf| {
        encode.encode(buf).map_err(|e| match e {
            EncodeError::InsufficientSize(s) => Some(s),
            EncodeError::AlreadyEncoded => None,
        })
    })
}

/// How much room an encryption lacked; `None` when more would not help
/// (the connection's keys are used up).
fn short_of(e: EncryptError) -> Option<InsufficientSizeError> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s),
        EncryptError::EncryptExhausted => None,
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn eof(when: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("peer closed connection {when}"),
    )
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.take_plain(buf) || this.read_closed {
                return Poll::Ready(Ok(()));
            }
            // Handshake replies and key updates go before waiting to read.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            let before = buf.filled().len();
            ready!(this.poll_input(cx, Some(buf)))?;
            if buf.filled().len() > before {
                if this.sent < this.unsent.len() {
                    let _ = this.poll_send(cx);
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // What went before is sent first: the peer sets the pace.
        ready!(this.poll_send(cx))?;
        let taken = this.encrypt(data)?;
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            this.close_queued = true;
            let UnbufferedStatus { state, .. } = this.tls.process_tls_records(&mut []);
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
                append_with(&mut this.unsent, 64, |buf| {
                    traffic.queue_close_notify(buf).map_err(short_of)
                })?;
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "tls_io_tests.rs"]
mod tests;
