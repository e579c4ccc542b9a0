//! Streamed response bodies (`stream=True`): the request returns at the
//! response head, and the body is read piece by piece as it arrives, as
//! chunks or as server-sent events.
//!
//! A pump task reads the body off the connection as soon as the head is
//! in, stamps each chunk with its arrival time (µs since the request was
//! issued) and queues it for the reader, [`BUFFERED_CHUNKS`] at most: a
//! user that reads late still sees when each piece arrived, and one that
//! stops reading stops the pump, so the server is slowed by TCP's window,
//! not by our memory. The request is recorded once, when its last body
//! byte arrives (its response time keeps its meaning), or when the user
//! closes the body early, at that moment. Closing or dropping a body that
//! is still arriving drops the response, and with it the connection
//! (HTTP/1.1) or the stream (HTTP/2, `RST_STREAM`): an unread body never
//! holds a connection.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventsource_stream::{EventStream, EventStreamError, Eventsource};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::mpsc;

use super::timings::micros;
use super::via_reqwest::describe_error;
use crate::stats::{unix_now_s, Recorder, RequestSample};

/// Chunks the pump reads ahead of the user.
// NOTE: hyper hands over a body in reads of up to 8-16 KB, so 64 chunks
// hold at most ~1 MB per streamed request; an LLM token stream sends one
// event per chunk, a few hundred bytes each.
const BUFFERED_CHUNKS: usize = 64;

/// What a read of a streamed body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// The next chunk, as it came off the connection.
    Chunk,
    /// The next server-sent event (WHATWG HTML, "Server-sent events").
    Event,
}

/// One server-sent event; fields the server left out are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the server gave none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field.
    pub id: String,
    /// The `retry:` field, in ms.
    pub retry_ms: Option<u64>,
}

/// What one read of a streamed body gives. `at_us` is when the piece
/// arrived, in µs after the request was issued (for an event: the arrival
/// of the chunk that completed it).
#[derive(Debug)]
pub enum Read {
    Chunk {
        data: Bytes,
        at_us: u64,
    },
    Event {
        event: SseEvent,
        at_us: u64,
    },
    /// The body ended, was closed, or broke (the request's error says
    /// why).
    End,
    /// A read the body cannot serve: events asked of a body read as
    /// chunks, or the other way round.
    Refused(String),
}

/// A chunk and when it arrived.
struct Arrived {
    data: Bytes,
    at_us: u64,
}

type Events = Pin<
    Box<dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<Infallible>>> + Send>,
>;

/// The reading end: the chunks, until the first read asks for events,
/// which hands them to the parser for good.
#[derive(Default)]
struct Reader {
    chunks: Option<mpsc::Receiver<Arrived>>,
    events: Option<SseReader>,
    /// What the first read asked for; later reads must ask the same.
    read_as: Option<ReadKind>,
}

/// Chunks parsed as server-sent events.
struct SseReader {
    events: Events,
    /// Arrival of the last chunk the parser took.
    last_at_us: Arc<AtomicU64>,
}

impl ReadKind {
    fn plural(self) -> &'static str {
        match self {
            ReadKind::Chunk => "chunks",
            ReadKind::Event => "events",
        }
    }
}

/// What the pump and the reader share.
struct Shared {
    /// When the request was issued.
    started: Instant,
    progress: Mutex<Progress>,
}

struct Progress {
    body_bytes: u64,
    /// When the body ended or was closed, µs after `started`.
    end_us: Option<u64>,
    /// The request's failure: its status, or why its body broke.
    error: Option<String>,
    /// Where to record the request when it ends, and what; None once
    /// recorded, or when user code records it (`catch_response`).
    record: Option<(Recorder, RequestSample)>,
}

fn lock(m: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Ends the body (once): notes when and why, and records the request.
    fn finish(&self, error: Option<String>) {
        let mut p = lock(&self.progress);
        if p.end_us.is_some() {
            return;
        }
        let end_us = micros(self.started.elapsed());
        p.end_us = Some(end_us);
        if error.is_some() {
            p.error = error;
        }
        if let Some((recorder, mut sample)) = p.record.take() {
            sample.response_time_us = end_us;
            sample.content_bytes = p.body_bytes;
            sample.error.clone_from(&p.error);
            sample.at_s = unix_now_s();
            drop(p);
            recorder.record(sample);
        }
    }
}

/// A response body read as it arrives. Dropping it closes it.
pub struct BodyStream {
    shared: Arc<Shared>,
    reader: tokio::sync::Mutex<Reader>,
    pump: tokio::task::AbortHandle,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("body_bytes", &self.body_bytes())
            .field("end_us", &self.end_us())
            .finish_non_exhaustive()
    }
}

impl BodyStream {
    /// Starts pumping `resp`'s body on the current tokio runtime. `started`
    /// is when the request was issued; `error` its failure so far (its
    /// status); `record` where and what to record when the body ends. A
    /// body that sends nothing for `idle_timeout` fails with a timeout.
    pub(crate) fn start(
        resp: reqwest::Response,
        started: Instant,
        error: Option<String>,
        record: Option<(Recorder, RequestSample)>,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        let shared = Arc::new(Shared {
            started,
            progress: Mutex::new(Progress {
                body_bytes: 0,
                end_us: None,
                error,
                record,
            }),
        });
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        let pump = tokio::spawn(pump(resp, tx, shared.clone(), idle_timeout)).abort_handle();
        Arc::new(Self {
            shared,
            reader: tokio::sync::Mutex::new(Reader {
                chunks: Some(rx),
                ..Reader::default()
            }),
            pump,
        })
    }

    /// Body bytes that arrived so far.
    pub fn body_bytes(&self) -> u64 {
        lock(&self.shared.progress).body_bytes
    }

    /// When the body ended or was closed, µs after the request was issued;
    /// None while it is still arriving.
    pub fn end_us(&self) -> Option<u64> {
        lock(&self.shared.progress).end_us
    }

    /// The response time to report now: to the body's end once it ended,
    /// else to this moment.
    pub fn response_time_us(&self) -> u64 {
        self.end_us()
            .unwrap_or_else(|| micros(self.shared.started.elapsed()))
    }

    /// The request's failure: its status, or why its body broke.
    pub fn error(&self) -> Option<String> {
        lock(&self.shared.progress).error.clone()
    }

    /// Stops reading: drops the response (and so its connection, or its
    /// HTTP/2 stream) and records the request with the time of now, unless
    /// it ended before. Returns whether this call ended it.
    pub fn close(&self) -> bool {
        self.pump.abort();
        let open = self.end_us().is_none();
        self.shared.finish(None);
        open
    }

    /// The next piece, as `kind` asks: waits until it arrives or the body
    /// ends. The first read chooses: a body read as chunks cannot then be
    /// read as events, nor the other way round.
    pub async fn read(&self, kind: ReadKind) -> Read {
        let mut guard = self.reader.lock().await;
        let reader = &mut *guard;
        let first = *reader.read_as.get_or_insert(kind);
        if first != kind {
            return Read::Refused(format!(
                "this body is being read as {}: it cannot be read as {} too",
                first.plural(),
                kind.plural()
            ));
        }
        if kind == ReadKind::Chunk {
            let Some(rx) = reader.chunks.as_mut() else {
                return Read::End;
            };
            return match rx.recv().await {
                Some(Arrived { data, at_us }) => Read::Chunk { data, at_us },
                None => Read::End,
            };
        }
        if reader.events.is_none() {
            reader.events = reader.chunks.take().map(events_of);
        }
        let Some(SseReader { events, last_at_us }) = reader.events.as_mut() else {
            return Read::End;
        };
        match events.next().await {
            Some(Ok(e)) => Read::Event {
                event: SseEvent {
                    event: e.event,
                    data: e.data,
                    id: e.id,
                    retry_ms: e.retry.map(|r| micros(r) / 1000),
                },
                at_us: last_at_us.load(Ordering::Relaxed),
            },
            Some(Err(e)) => {
                self.pump.abort();
                self.shared.finish(Some(format!(
                    "ResponseError: the body is not a valid event stream: {e}"
                )));
                Read::End
            }
            None => Read::End,
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// `rx` parsed as an event stream (the `eventsource-stream` crate's
/// WHATWG parser), noting each chunk's arrival as the parser takes it.
fn events_of(rx: mpsc::Receiver<Arrived>) -> SseReader {
    let last_at_us = Arc::new(AtomicU64::new(0));
    let noted = last_at_us.clone();
    let bytes = stream::unfold(rx, move |mut rx| {
        let noted = noted.clone();
        async move {
            let Arrived { data, at_us } = rx.recv().await?;
            noted.store(at_us, Ordering::Relaxed);
            Some((Ok::<Bytes, Infallible>(data), rx))
        }
    });
    let events: EventStream<_> = bytes.eventsource();
    SseReader {
        events: Box::pin(events),
        last_at_us,
    }
}

/// Reads `resp`'s body into `tx` until it ends, breaks, goes quiet for
/// `idle_timeout` or the reader goes away; then ends the body.
async fn pump(
    mut resp: reqwest::Response,
    tx: mpsc::Sender<Arrived>,
    shared: Arc<Shared>,
    idle_timeout: Duration,
) {
    let error = loop {
        let data = match tokio::time::timeout(idle_timeout, resp.chunk()).await {
            Err(_) => {
                break Some(format!(
                    "Timeout: the streamed body sent nothing for {:.3} s",
                    idle_timeout.as_secs_f64()
                ))
            }
            Ok(Err(e)) => break Some(describe_error(&e)),
            Ok(Ok(None)) => break None,
            Ok(Ok(Some(data))) => data,
        };
        let at_us = micros(shared.started.elapsed());
        lock(&shared.progress).body_bytes += data.len() as u64;
        if tx.send(Arrived { data, at_us }).await.is_err() {
            break None;
        }
    };
    shared.finish(error);
}
