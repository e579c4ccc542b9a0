//! Tests of `engine::conn`: real sockets on loopback.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::*;
use crate::engine::tls::{client_config, TlsOptions, Verify};

/// A server that accepts TCP and never answers a TLS handshake: each
/// connection being opened to it keeps its turn, so the server sees how
/// many are opened at once.
#[tokio::test(flavor = "current_thread")]
async fn connections_to_one_origin_open_at_most_the_limit_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = TlsOptions {
        verify: Verify::Off,
        ..TlsOptions::default()
    };
    let origin = Origin {
        host: "127.0.0.1".to_owned(),
        port: listener.local_addr().unwrap().port(),
        tls: Some(client_config(&options).unwrap()),
        h2c: false,
    };
    let mut opening = JoinSet::new();
    for _ in 0..MAX_OPENING_PER_ORIGIN + 20 {
        let origin = origin.clone();
        opening.spawn(async move { connect(&origin).await.map(|_| ()) });
    }
    let patience = Duration::from_secs(20);
    let mut held = Vec::new();
    while held.len() < MAX_OPENING_PER_ORIGIN {
        let accepted = tokio::time::timeout(patience, listener.accept()).await;
        held.push(accepted.expect("the first turns dial at once").unwrap().0);
    }
    let beyond = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(beyond.is_err(), "a connection beyond the limit was dialled");
    // The server ends one handshake: its turn goes to a waiting connection.
    drop(held.pop());
    let next = tokio::time::timeout(patience, listener.accept()).await;
    assert!(
        next.is_ok(),
        "no waiting connection was dialled when a turn came free"
    );
    opening.abort_all();
}
