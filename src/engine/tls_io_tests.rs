//! Tests of `engine::tls_io`: a rustls server (tokio-rustls) on loopback.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{handshake, TlsConn};
use crate::engine::tls::{client_config, provider, TlsOptions, Verify};

/// A self-signed P-256 certificate for localhost, valid until 2126, made
/// with `openssl req -x509` for these tests alone.
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIUP6wLrzn/wx2HDcoYl14axXa9XXwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMjE3MjAyNFoYDzIxMjYxMTA4
MTcyMDI0WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATZGuRKLZxl3/Zsdxz0etin/quYmsmj+KMoaUuKF6arr7MXtc+JEtqF
koqMfDiH8uJrwCwZMQAERnAbL40Ebra+o28wbTAdBgNVHQ4EFgQUdbCpEobQYeJz
ynuM21uD0N30JFQwHwYDVR0jBBgwFoAUdbCpEobQYeJzynuM21uD0N30JFQwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSQAwRgIhAKhO01K1P8Nm/IQ29roV5RL/+gH4Gk+GASdjcykVqGzDAiEA
3kXRYwkzMtnXLNSjmzi6tDLQO5eo51AtWNnRmMyQI4c=
-----END CERTIFICATE-----
";

const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqTCsKIsHD4/YJK3q
+ftuw7OdQEAClaPsV8kT9eNYROihRANCAATZGuRKLZxl3/Zsdxz0etin/quYmsmj
+KMoaUuKF6arr7MXtc+JEtqFkoqMfDiH8uJrwCwZMQAERnAbL40Ebra+
-----END PRIVATE KEY-----
";

/// A TLS server on loopback whose chain repeats the certificate
/// `chain_len` times (a long chain makes a handshake message span records),
/// running `serve` on its one connection.
async fn serve_once<F, Fut>(chain_len: usize, serve: F) -> std::net::SocketAddr
where
    F: FnOnce(TlsStream<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let cert = CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert; chain_len], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve(acceptor.accept(tcp).await.unwrap()).await;
    });
    addr
}

async fn open(addr: std::net::SocketAddr) -> std::io::Result<Box<TlsConn>> {
    let options = TlsOptions {
        verify: Verify::Off,
        ..TlsOptions::default()
    };
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    handshake(tcp, client_config(&options).unwrap(), name).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_chain_and_300_kb_each_way_arrive_whole() {
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let len = sent.len();
    let addr = serve_once(60, move |mut tls| async move {
        let mut got = vec![0; len];
        tls.read_exact(&mut got).await.unwrap();
        tls.write_all(&got).await.unwrap();
        tls.shutdown().await.unwrap();
    })
    .await;
    let mut conn = open(addr).await.unwrap();
    conn.write_all(&sent).await.unwrap();
    conn.flush().await.unwrap();
    let mut back = Vec::new();
    // A clean end: the server's close_notify.
    conn.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), sent.len());
    assert!(back == sent, "the echo differs from what was sent");
}

#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_holds_no_buffer() {
    let addr = serve_once(1, |mut tls| async move {
        let mut request = [0u8; 5];
        tls.read_exact(&mut request).await.unwrap();
        tls.write_all(b"hello").await.unwrap();
        tls.flush().await.unwrap();
        let _ = tls.read(&mut request).await;
    })
    .await;
    let mut conn = open(addr).await.unwrap();
    conn.write_all(b"GET /").await.unwrap();
    conn.flush().await.unwrap();
    let mut answer = [0u8; 5];
    conn.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"hello");
    assert_eq!(conn.buffered_capacity(), 0);
    assert_eq!(conn.alpn_protocol(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_update_from_the_server_is_followed() {
    let addr = serve_once(1, |mut tls| async move {
        tls.get_mut().1.refresh_traffic_keys().unwrap();
        tls.write_all(b"after the update").await.unwrap();
        tls.flush().await.unwrap();
        let mut reply = [0u8; 5];
        tls.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.unwrap();
    })
    .await;
    let mut conn = open(addr).await.unwrap();
    let mut first = [0u8; 16];
    conn.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"after the update");
    conn.write_all(b"reply").await.unwrap();
    conn.flush().await.unwrap();
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"ok");
}

#[tokio::test(flavor = "current_thread")]
async fn an_end_without_close_notify_is_an_unexpected_eof() {
    let addr = serve_once(1, |mut tls| async move {
        tls.write_all(b"partial").await.unwrap();
        tls.flush().await.unwrap();
        // Dropped without shutdown: TCP ends, TLS never said so.
    })
    .await;
    let mut conn = open(addr).await.unwrap();
    let mut got = Vec::new();
    let e = conn.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(got, b"partial");
}
