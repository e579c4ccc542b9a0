//! The byte transport under the protocol: frames to and from peers. ZeroMQ
//! today, through the pure-Rust `zeromq` crate (ROUTER on the master, DEALER
//! on each worker), behind this small trait so that another implementation
//! (for CURVE or high-water marks, which the crate lacks) can replace it.

use std::time::Duration;

use bytes::Bytes;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

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
    ) -> impl std::future::Future<Output = Result<(PeerId, Bytes), TransportError>> + Send;
}

/// The master's end: a bound ROUTER socket.
pub struct RouterTransport {
    socket: zeromq::RouterSocket,
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
        let mut socket = zeromq::RouterSocket::new();
        socket
            .bind(&endpoint)
            .await
            .map_err(|e| TransportError::Bind {
                endpoint,
                detail: e.to_string(),
            })?;
        Ok(Self { socket })
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

    async fn recv(&mut self) -> Result<(PeerId, Bytes), TransportError> {
        loop {
            let message = self
                .socket
                .recv()
                .await
                .map_err(|e| TransportError::Closed(e.to_string()))?;
            let mut frames = message.into_vecdeque();
            // identity, then exactly one payload frame; anything else is noise.
            if frames.len() == 2 {
                let peer = frames.pop_front().expect("two frames");
                let payload = frames.pop_front().expect("two frames");
                return Ok((PeerId(peer.to_vec()), payload));
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
        let mut options = zeromq::SocketOptions::default();
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

    async fn recv(&mut self) -> Result<(PeerId, Bytes), TransportError> {
        loop {
            let message = self
                .socket
                .recv()
                .await
                .map_err(|e| TransportError::Closed(e.to_string()))?;
            let mut frames = message.into_vecdeque();
            if frames.len() == 1 {
                return Ok((PeerId(Vec::new()), frames.pop_front().expect("one frame")));
            }
        }
    }
}
