//! HTTPS for the web UI (`--tls-cert`, `--tls-key`): rustls with the ring
//! provider, as the HTTP client uses. Handshakes run in their own tasks, so
//! a slow or silent client never holds up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::engine::tls::{load_identity, provider, IdentityError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server config for a PEM certificate chain and private key.
///
/// # Errors
/// A message naming the file and the problem, for the user.
pub fn server_config(cert_path: &str, key_path: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let (certs, key) = load_identity(cert_path, key_path).map_err(|e| match e {
        IdentityError::Chain(e) => {
            format!("--tls-cert {cert_path}: cannot read a PEM certificate chain: {e}")
        }
        IdentityError::NoCertificate => format!(
            "--tls-cert {cert_path}: no CERTIFICATE block found: give a PEM certificate chain"
        ),
        IdentityError::Key(e) => {
            format!("--tls-key {key_path}: cannot read a PEM private key: {e}")
        }
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: the key does not fit the certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// A listener whose connections arrive with their TLS handshake done.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (call inside the runtime).
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let addr = tcp.local_addr().expect("a bound listener has an address");
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(_) => {
                        // Out of descriptors, most likely: back off briefly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Self { ready, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
