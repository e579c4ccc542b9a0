//! HTTP/1.1 on each session's own keep-alive connections (TCP, or TLS over
//! it), the fast path.
//!
//! Each session keeps its idle connections here, per origin, so connections
//! stay per user as in Locust. A request takes an idle connection of its
//! origin (or opens one), writes the request (encoded by `h1_encode.rs`),
//! reads the whole response and puts the connection back when the response
//! allows it. Response heads and chunk sizes are parsed by `httparse` (the
//! parser hyper uses; heads in `h1_head.rs`); bodies are read by the rules
//! of RFC 9112 (sections 6 and 7: which responses have a body,
//! Content-Length, chunked, read-until-close, and section 9.3 for
//! persistence). Proxies and the hops after a redirect go through reqwest
//! instead (`request.rs` decides).
// NOTE: this path first ran on hyper's HTTP/1.1 connection API (14.2k ->
// 21.2k requests/s from reqwest). hyper gives every connection a task of
// its own, a request channel whose first block holds 32 requests (~9 KB),
// an 8 KB write buffer, and a read buffer that a response's header values
// keep alive while the next read reserves another: heaptrack measured 48 KB
// of heap per user at 3,000 users (wait 1 s), 40 KB of it in those
// (2026-11-23). Here an idle connection is its socket alone, a response is
// read into one buffer freed with it, and the request runs in the caller's
// task: no channel, no second task to wake. Alternating runs against the
// hyper build, the same hour: 38.1k/39.3k -> 44.5k/42.3k requests/s
// (50 users, one core, nginx), and 10,000 users at wait 1 s peaked at
// 465 MB RSS -> 93 MB.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::connect;
pub(crate) use super::conn::{Origin, Stream};
pub(crate) use super::h1_encode::Encoded;
use super::h1_head::{framing, keeps_alive, parse_head, Framing};
use super::timings::Timings;

/// The response head: status, version and headers.
pub(crate) type Head = http::response::Parts;

/// How many idle connections a session keeps; more are closed when they
/// come back. A user seldom runs more requests at once than this.
const MAX_IDLE_PER_SESSION: usize = 8;
/// A response's buffer starts as large as the session's previous response
/// (rounded up to a power of two), within these bounds, and grows when the
/// response is larger. Small first: the buffers of all requests in flight
/// are alive at once, e.g. when 10,000 users start together.
const FIRST_READ_BYTES: (usize, usize) = (256, 64 * 1024);
/// A read asks for at least this many bytes.
const MIN_READ_BYTES: usize = 256;
/// A read asks for at most this many bytes ahead of a body's known end.
const MAX_READ_BYTES: usize = 1 << 20;
/// The largest response head accepted, in bytes (hyper allows ~400 KB).
const MAX_HEAD_BYTES: usize = 256 * 1024;
/// The text of a connection closed before a message was complete (hyper's).
const CLOSED_EARLY: &str = "connection closed before message completed";
/// The most informational (1xx) responses taken before the final one: a
/// target sending them forever fails the request instead of holding it
/// for its whole timeout.
const MAX_INFORMATIONAL: usize = 16;

/// Why a request on this path failed, in the words of
/// [`super::describe_error`]: the kind, then the cause.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection could not be opened (DNS, refused, unreachable).
    Connect(io::Error),
    /// The request failed before a whole response head arrived.
    Request(String),
    /// The response head arrived and its body did not.
    Body(String),
}

impl Failure {
    /// The failure text recorded for it, e.g. `ConnectionError: Connection
    /// refused (os error 111)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Connect(e) => format!("ConnectionError: {e}"),
            Self::Request(e) => format!("RequestError: {e}"),
            Self::Body(e) => format!("ResponseError: {e}"),
        }
    }
}

/// How an exchange on one connection failed. On a reused connection, the
/// first two mean the server had closed it while it was idle.
enum Broken {
    /// The request could not be written: the server has not acted on it.
    Unsent(String),
    /// The connection was closed or reset before a byte of the response
    /// arrived.
    Unanswered(String),
    /// Any other failure.
    Failed(Failure),
}

/// One session's idle keep-alive connections.
#[derive(Default)]
pub(crate) struct Connections {
    idle: Mutex<Vec<(Origin, Stream)>>,
    /// The size of the session's last response, in bytes: how large the
    /// next response's buffer starts.
    last_response_bytes: AtomicUsize,
}

impl Connections {
    fn idle(&self) -> MutexGuard<'_, Vec<(Origin, Stream)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Self::round_trip_on`] of an `http::Request`, on an idle or new
    /// connection (the tests' way in).
    #[cfg(test)]
    pub fn round_trip<'a>(
        &'a self,
        origin: &'a Origin,
        max_body_bytes: u64,
        req: http::Request<Bytes>,
    ) -> impl Future<Output = Result<Answer, Failure>> + 'a {
        self.round_trip_on(origin, None, max_body_bytes, Encoded::of(req))
    }

    /// Sends `req` to `origin` and reads the whole response: on `fresh`, a
    /// connection just opened to `origin` (whose ALPN chose HTTP/1.1) with
    /// what opening it took, when given; else on an idle connection, else
    /// on a new one. A request that finds its reused connection closed by
    /// the server (nothing of a response came back) is sent once more on
    /// a new connection when it may be (RFC 9110, 9.2.2: idempotent
    /// methods, or nothing was written).
    ///
    /// # Errors
    /// [`Failure`] says which step failed; the connection is then dropped.
    pub fn round_trip_on<'a>(
        &'a self,
        origin: &'a Origin,
        fresh: Option<(Stream, Timings)>,
        max_body_bytes: u64,
        req: Encoded,
    ) -> impl Future<Output = Result<Answer, Failure>> + 'a {
        let first_read = self
            .last_response_bytes
            .load(Ordering::Relaxed)
            .next_power_of_two()
            .clamp(FIRST_READ_BYTES.0, FIRST_READ_BYTES.1);
        // Only what the exchange needs goes into the future: every byte of
        // it is in each request's task, and 10,000 users may have one in
        // flight at once.
        self.send(
            origin,
            fresh,
            req.head,
            req.body_apart,
            req.method,
            (first_read, max_body_bytes),
        )
    }

    /// [`Self::round_trip`] once the request is encoded. A plain fn around
    /// an async block, for the reason `request::Job::run` gives: the
    /// connection to use is chosen before it, and the block holds only
    /// what the exchange needs.
    fn send<'a>(
        &'a self,
        origin: &'a Origin,
        fresh: Option<(Stream, Timings)>,
        encoded: Vec<u8>,
        body_apart: Option<Bytes>,
        method: Method,
        reads: (usize, u64),
    ) -> impl Future<Output = Result<Answer, Failure>> + 'a {
        // Cleared by a retry, which opens a new connection.
        let mut reused = fresh.is_none();
        let (mut stream, mut opening) = match fresh {
            Some((conn, took)) => (Some(conn), took),
            None => (self.take_idle(origin), Timings::default()),
        };
        reused &= stream.is_some();
        async move {
            let (mut answer, reusable, received) = loop {
                let mut conn = match stream.take() {
                    Some(conn) => conn,
                    None => {
                        let (conn, took) = Box::pin(connect(origin)).await?;
                        opening = took;
                        conn
                    }
                };
                let outcome =
                    exchange(&mut conn, &encoded, body_apart.as_ref(), &method, reads).await;
                let retry = reused
                    && match &outcome {
                        Err(Broken::Unsent(_)) => true,
                        Err(Broken::Unanswered(_)) => method.is_idempotent(),
                        _ => false,
                    };
                if !retry {
                    stream = Some(conn);
                    break outcome.map_err(|broken| match broken {
                        Broken::Unsent(why) | Broken::Unanswered(why) => Failure::Request(why),
                        Broken::Failed(failure) => failure,
                    })?;
                }
                reused = false;
            };
            self.last_response_bytes.store(received, Ordering::Relaxed);
            if let (true, Some(conn)) = (reusable, stream) {
                let mut idle = self.idle();
                if idle.len() < MAX_IDLE_PER_SESSION {
                    // One more slot at a time: most sessions keep one idle
                    // connection, and a Vec's first push makes room for 4.
                    idle.reserve_exact(1);
                    idle.push((origin.clone(), conn));
                }
            }
            answer.timings = opening.then(answer.timings);
            Ok(answer)
        }
    }

    /// An idle connection to `origin` that is still open, if any; closed
    /// ones found on the way are dropped.
    fn take_idle(&self, origin: &Origin) -> Option<Stream> {
        let mut idle = self.idle();
        while let Some(at) = idle.iter().rposition(|(o, _)| o == origin) {
            let (_, mut stream) = idle.swap_remove(at);
            if stream.seems_open() {
                return Some(stream);
            }
        }
        None
    }

    /// Whether an idle connection to `origin` is kept.
    pub fn has_idle(&self, origin: &Origin) -> bool {
        self.idle().iter().any(|(o, _)| o == origin)
    }

    /// How many idle connections the session holds.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

/// Writes one request on `stream` and reads its response, starting with a
/// buffer of `reads.0` bytes and failing a body over `reads.1` bytes: the
/// head, the body, whether the connection can carry another request, and
/// the response's size in bytes.
#[allow(clippy::manual_async_fn)] // see request::Job::run
fn exchange<'a>(
    stream: &'a mut Stream,
    encoded: &'a [u8],
    body_apart: Option<&'a Bytes>,
    method: &'a Method,
    (first_read, max_body_bytes): (usize, u64),
) -> impl Future<Output = Result<(Answer, bool, usize), Broken>> + 'a {
    // A plain fn around an async block, as `Connections::send`.
    async move {
        let mut write = stream.write_all(encoded).await;
        if let (Ok(()), Some(body)) = (&write, body_apart) {
            write = stream.write_all(body).await;
        }
        if write.is_ok() {
            // TLS may hold the last record back until flushed; TCP never does.
            write = stream.flush().await;
        }
        if let Err(e) = write {
            // Nothing of the request was acted on: a server does not answer a
            // request it has not read whole.
            return Err(if is_reset(&e) {
                Broken::Unsent(e.to_string())
            } else {
                Broken::Failed(Failure::Request(e.to_string()))
            });
        }
        let sent = Instant::now();
        let mut reader = Reader {
            stream,
            buf: BytesMut::with_capacity(first_read),
            received: 0,
            first_byte: None,
            scanned: 0,
            max_body_bytes,
        };
        let head = reader.head().await?;
        let (body, whole) = reader.body(method, &head).await.map_err(Broken::Failed)?;
        let timings = Timings::exchange(sent, reader.first_byte.unwrap_or(sent), Instant::now());
        // Bytes after the response belong to no request: the connection is
        // not reused then.
        let reusable = whole && reader.buf.is_empty() && keeps_alive(&head);
        let received = reader.received;
        let answer = Answer {
            head,
            body,
            timings,
        };
        Ok((answer, reusable, received))
    }
}

/// A whole response: its head, its body, and where its time went.
#[derive(Debug)]
pub(crate) struct Answer {
    pub head: Head,
    pub body: Bytes,
    pub timings: Timings,
}

/// The failure text of a response body over `max_body_bytes` (both HTTP
/// paths use it).
pub(crate) fn body_over_limit(max_body_bytes: u64) -> String {
    format!(
        "the response body is over the limit of {max_body_bytes} bytes: raise \
         max_body_bytes for this request or user"
    )
}

/// Reads one response from a connection into one buffer.
struct Reader<'a> {
    stream: &'a mut Stream,
    /// Bytes read and not consumed yet.
    buf: BytesMut,
    /// Bytes read in all.
    received: usize,
    /// When the first of them arrived.
    first_byte: Option<Instant>,
    /// How much of the buffer was searched for the end of a head (or of
    /// trailers) without finding it: the next search starts there, so a
    /// target dripping a head byte by byte costs linear time, not quadratic.
    scanned: usize,
    /// A body longer than this fails the request.
    max_body_bytes: u64,
}

impl Reader<'_> {
    /// Reads at least one more byte into the buffer, asking for `want`
    /// bytes or more; `Ok(false)` at the end of the stream.
    async fn fill(&mut self, want: usize) -> io::Result<bool> {
        let want = want.clamp(MIN_READ_BYTES, MAX_READ_BYTES);
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n > 0 && self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
        self.received += n;
        Ok(n > 0)
    }

    /// Whether the buffer holds a blank line (the end of a head or of
    /// trailers), searching only what was not searched before.
    fn has_blank_line(&mut self) -> bool {
        let from = self.scanned.saturating_sub(2).min(self.buf.len());
        // Line ends found by memchr, a handful a head, rather than every
        // pair of bytes looked at in turn (~1,000 instructions a response).
        let found = memchr::memchr_iter(b'\n', &self.buf[from..]).any(|at| {
            match self.buf.get(from + at + 1) {
                Some(b'\n') => true,
                Some(b'\r') => self.buf.get(from + at + 2) == Some(&b'\n'),
                _ => false,
            }
        });
        self.scanned = if found { 0 } else { self.buf.len() };
        found
    }

    /// The final response head; informational (1xx) responses before it are
    /// skipped, except 101, up to [`MAX_INFORMATIONAL`] of them.
    async fn head(&mut self) -> Result<Head, Broken> {
        let mut informational = 0;
        loop {
            let parsed = if self.has_blank_line() {
                parse_head(&self.buf)
            } else {
                Ok(None)
            };
            match parsed {
                Ok(Some((len, head))) => {
                    self.buf.advance(len);
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        informational += 1;
                        if informational > MAX_INFORMATIONAL {
                            return Err(Broken::Failed(Failure::Request(format!(
                                "more than {MAX_INFORMATIONAL} informational (1xx) responses \
                                 came before the final one"
                            ))));
                        }
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) if self.buf.len() > MAX_HEAD_BYTES => {
                    return Err(Broken::Failed(Failure::Request(format!(
                        "the response head is larger than {MAX_HEAD_BYTES} bytes"
                    ))))
                }
                Ok(None) => {}
                Err(e) => return Err(Broken::Failed(Failure::Request(e))),
            }
            let nothing_yet = self.received == 0;
            match self.fill(self.buf.capacity()).await {
                Ok(true) => {}
                Ok(false) if nothing_yet => {
                    return Err(Broken::Unanswered(CLOSED_EARLY.to_owned()))
                }
                Err(e) if nothing_yet && is_reset(&e) => {
                    return Err(Broken::Unanswered(e.to_string()))
                }
                Ok(false) => return Err(Broken::Failed(Failure::Request(CLOSED_EARLY.to_owned()))),
                Err(e) => return Err(Broken::Failed(Failure::Request(e.to_string()))),
            }
        }
    }

    /// The whole body of the response to `method` with `head`, and whether
    /// it ended where its framing said (false: it ran until the close).
    async fn body(&mut self, method: &Method, head: &Head) -> Result<(Bytes, bool), Failure> {
        match framing(method, head).map_err(Failure::Request)? {
            Framing::Empty => Ok((Bytes::new(), true)),
            Framing::Length(len) if len > self.max_body_bytes => Err(self.too_large()),
            Framing::Length(len) => {
                while (self.buf.len() as u64) < len {
                    let missing =
                        usize::try_from(len - self.buf.len() as u64).unwrap_or(usize::MAX);
                    if !self.fill(missing).await.map_err(body_error)? {
                        return Err(Failure::Body(CLOSED_EARLY.to_owned()));
                    }
                }
                Ok((self.take(len as usize), true))
            }
            Framing::Chunked => self.chunked().await.map(|body| (body, true)),
            Framing::UntilClose => loop {
                if self.buf.len() as u64 > self.max_body_bytes {
                    return Err(self.too_large());
                }
                if !self.fill(self.buf.capacity()).await.map_err(body_error)? {
                    return Ok((self.take(self.buf.len()), false));
                }
            },
        }
    }

    /// The failure of a body over the limit; the text names the limit, not
    /// the size, so that failures group.
    fn too_large(&self) -> Failure {
        Failure::Body(body_over_limit(self.max_body_bytes))
    }

    /// The next `len` bytes of the buffer, without the allocation behind
    /// them when they are a small part of it.
    fn take(&mut self, len: usize) -> Bytes {
        let taken = self.buf.split_to(len);
        if len * 2 < taken.capacity() + self.buf.capacity() {
            Bytes::copy_from_slice(&taken)
        } else {
            taken.freeze()
        }
    }

    /// A chunked body (RFC 9112, section 7.1), decoded; trailers are read
    /// and dropped.
    async fn chunked(&mut self) -> Result<Bytes, Failure> {
        let mut body = BytesMut::new();
        loop {
            let size = match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.buf.advance(used);
                    size
                }
                Ok(httparse::Status::Partial) if self.buf.len() < 4096 => {
                    self.more().await?;
                    continue;
                }
                _ => return Err(Failure::Body("invalid chunk size line".to_owned())),
            };
            if size == 0 {
                return self.trailers().await.map(|()| body.freeze());
            }
            if (body.len() as u64).saturating_add(size) > self.max_body_bytes {
                return Err(self.too_large());
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s < usize::MAX - 2)
                .ok_or_else(|| Failure::Body("chunk size too large".to_owned()))?;
            while self.buf.len() < size + 2 {
                if !self
                    .fill(size + 2 - self.buf.len())
                    .await
                    .map_err(body_error)?
                {
                    return Err(Failure::Body(CLOSED_EARLY.to_owned()));
                }
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(Failure::Body("a chunk does not end with CRLF".to_owned()));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
        }
    }

    /// Reads the trailer section after the last chunk, up to its empty line.
    async fn trailers(&mut self) -> Result<(), Failure> {
        loop {
            if self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
                return Ok(());
            }
            if self.has_blank_line() {
                let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return Err(Failure::Body(
                        "the trailers do not end with CRLF".to_owned(),
                    ));
                };
                self.buf.advance(end + 4);
                return Ok(());
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(Failure::Body("the trailers are too large".to_owned()));
            }
            self.more().await?;
        }
    }

    /// Reads more of the body; the end of the stream is a failure.
    async fn more(&mut self) -> Result<(), Failure> {
        match self.fill(MIN_READ_BYTES).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::Body(CLOSED_EARLY.to_owned())),
            Err(e) => Err(body_error(e)),
        }
    }
}

fn body_error(e: io::Error) -> Failure {
    Failure::Body(e.to_string())
}

/// Whether `e` says the peer closed or reset the connection.
fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "h1_proptests.rs"]
mod proptests;
