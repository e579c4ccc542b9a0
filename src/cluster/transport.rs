//! The byte transport under the protocol: frames to and from peers. ZeroMQ
//! (ZMTP 3, RFC 23), through the pure-Rust `zeromq` crate (ROUTER on the
//! master, DEALER on each worker), patched to bound frames before reading
//! them (see vendor/zeromq.patch). Authentication and encryption sit one
//! layer up, in `super::secure`.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use zeromq::{Socket, SocketEvent, SocketRecv, SocketSend, ZmqMessage};

use super::protocol::MAX_MESSAGE_BYTES;

/// The largest ZeroMQ message a peer may send, in bytes: a protocol message
/// at its limit, sealed, with room to spare. A peer that declares a longer
/// frame is disconnected before any of it is buffered.
pub const MAX_FRAME_BYTES: usize = MAX_MESSAGE_BYTES + 64 * 1024;

fn socket_options() -> zeromq::SocketOptions {
    let mut options = zeromq::SocketOptions::default();
    options.max_message_size(MAX_FRAME_BYTES);
    options
}

/// Who a frame comes from or goes to: the ROUTER's identity of a worker.
/// Workers have one peer, the master, whose id is empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub Vec<u8>);

/// Transport failures. Receiving garbage is not one: frames are bytes here.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {endpoint}: {detail}")]
    Bind { endpoint: String, detail: String },
    #[error("no master at {endpoint} yet")]
    ConnectTimeout { endpoint: String },
    #[error("cannot connect to {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("transport closed: {0}")]
    Closed(String),
}

/// What arrives from the transport.
#[derive(Debug)]
pub enum Received {
    /// One whole frame (a ZeroMQ message's payload) and who sent it.
    Frame(PeerId, Bytes),
    /// The peer's connection closed (its session, if any, ends).
    Disconnected(PeerId),
}

/// Sends and receives whole frames.
///
/// `recv` must be cancel-safe: the master and workers poll it inside
/// `tokio::select!` next to timers.
pub trait Transport: Send {
    fn send(
        &mut self,
        to: &PeerId,
        frame: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), TransportError>> + Send;
    fn recv(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Received, TransportError>> + Send;
}

/// The master's end: a bound ROUTER socket.
pub struct RouterTransport {
    socket: zeromq::RouterSocket,
    /// The socket's events (connections closing).
    monitor: std::pin::Pin<Box<dyn futures_util::Stream<Item = SocketEvent> + Send>>,
}

impl RouterTransport {
    /// Binds `tcp://host:port` (`*` binds every address).
    ///
    /// # Errors
    /// [`TransportError::Bind`], e.g. the port is in use.
    pub async fn bind(host: &str, port: u16) -> Result<Self, TransportError> {
        let endpoint = format!(
            "tcp://{}:{port}",
            if host == "*" { "0.0.0.0" } else { host }
        );
        let mut socket = zeromq::RouterSocket::with_options(socket_options());
        let monitor = Box::pin(socket.monitor());
        socket
            .bind(&endpoint)
            .await
            .map_err(|e| TransportError::Bind {
                endpoint,
                detail: e.to_string(),
            })?;
        Ok(Self { socket, monitor })
    }
}

impl Transport for RouterTransport {
    async fn send(&mut self, to: &PeerId, frame: Vec<u8>) -> Result<(), TransportError> {
        let mut message = ZmqMessage::from(frame);
        message.push_front(Bytes::from(to.0.clone()));
        self.socket
            .send(message)
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))
    }

    async fn recv(&mut self) -> Result<Received, TransportError> {
        loop {
            let message = tokio::select! {
                message = self.socket.recv() => message,
                Some(event) = self.monitor.next() => match event {
                    SocketEvent::Disconnected(peer) => {
                        return Ok(Received::Disconnected(PeerId(peer.into())));
                    }
                    _ => continue,
                },
            };
            let mut frames = message
                .map_err(|e| TransportError::Closed(e.to_string()))?
                .into_vecdeque();
            // identity, then exactly one payload frame; anything else is noise.
            if frames.len() == 2 {
                let peer = frames.pop_front().expect("two frames");
                let payload = frames.pop_front().expect("two frames");
                return Ok(Received::Frame(PeerId(peer.to_vec()), payload));
            }
        }
    }
}

/// A worker's end: a DEALER socket connected to the master.
pub struct DealerTransport {
    socket: zeromq::DealerSocket,
}

impl DealerTransport {
    /// Connects to `tcp://host:port`, giving up after `timeout` so the
    /// caller can say what it is waiting for and try again.
    ///
    /// # Errors
    /// [`TransportError::ConnectTimeout`] when no master answered in time.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<Self, TransportError> {
        let endpoint = format!("tcp://{host}:{port}");
        let mut options = socket_options();
        options.connect_timeout(timeout);
        let mut socket = zeromq::DealerSocket::with_options(options);
        match socket.connect(&endpoint).await {
            Ok(()) => Ok(Self { socket }),
            Err(zeromq::ZmqError::Other(m)) if m.contains("imed out") => {
                Err(TransportError::ConnectTimeout { endpoint })
            }
            Err(e) => {
                let detail = e.to_string();
                if detail.to_lowercase().contains("timed out")
                    || detail.to_lowercase().contains("timeout")
                {
                    Err(TransportError::ConnectTimeout { endpoint })
                } else {
                    Err(TransportError::Connect { endpoint, detail })
                }
            }
        }
    }
}

impl Transport for DealerTransport {
    async fn send(&mut self, _to: &PeerId, frame: Vec<u8>) -> Result<(), TransportError> {
        self.socket
            .send(ZmqMessage::from(frame))
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))
    }

    async fn recv(&mut self) -> Result<Received, TransportError> {
        loop {
            let message = self
                .socket
                .recv()
                .await
                .map_err(|e| TransportError::Closed(e.to_string()))?;
            let mut frames = message.into_vecdeque();
            if frames.len() == 1 {
                let frame = frames.pop_front().expect("one frame");
                return Ok(Received::Frame(PeerId(Vec::new()), frame));
            }
        }
    }
}
