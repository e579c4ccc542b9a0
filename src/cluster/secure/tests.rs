use super::*;

fn ready() -> Message {
    Message::Ready {
        aiotest_version: "0.1.0".into(),
        protocol_version: 1,
        worker_id: "w-1".into(),
    }
}

fn peer(name: &str) -> PeerId {
    PeerId(name.as_bytes().to_vec())
}

/// A worker and a master channel that completed the handshake.
fn joined(secret: &str) -> (WorkerChannel, MasterChannels) {
    let key = ClusterKey::derive(secret);
    let mut worker = WorkerChannel::new(Some(key.clone()), "w-1".into());
    let mut master = MasterChannels::new(Some(key));
    let hello = worker.join(&ready());
    let Inbound::Reply(challenge) = master.open(&peer("a"), &hello) else {
        panic!("no challenge")
    };
    let WorkerInbound::Authenticated { proof } = worker.open(&challenge) else {
        panic!("the master's proof did not verify")
    };
    assert!(matches!(
        master.open(&peer("a"), &proof),
        Inbound::Authenticated
    ));
    (worker, master)
}

#[test]
fn a_handshake_then_sealed_messages_both_ways() {
    let (mut worker, mut master) = joined("s3cret");
    let frame = worker.join(&ready());
    assert!(is_sealed(&frame));
    // Encrypted: the worker id is not in the clear.
    assert!(!frame.windows(3).any(|w| w == b"w-1"));
    assert!(matches!(
        master.open(&peer("a"), &frame),
        Inbound::Message(Message::Ready { .. })
    ));
    let back = master.seal(&peer("a"), &Message::Rejoin).expect("session");
    assert!(matches!(
        worker.open(&back),
        WorkerInbound::Message(Message::Rejoin)
    ));
    // Nothing is sealed for a peer without a session.
    assert!(master.seal(&peer("b"), &Message::Quit).is_none());
}

#[test]
fn replays_are_refused_on_the_same_and_on_a_new_connection() {
    let (mut worker, mut master) = joined("s3cret");
    let frame = worker.seal(&Message::Quit).expect("session");
    assert!(matches!(
        master.open(&peer("a"), &frame),
        Inbound::Message(Message::Quit)
    ));
    match master.open(&peer("a"), &frame) {
        Inbound::Dropped { reason, first } => {
            assert!(reason.contains("replayed") && first, "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Logged once per peer.
    assert!(matches!(
        master.open(&peer("a"), &frame),
        Inbound::Dropped { first: false, .. }
    ));
    assert!(matches!(
        master.open(&peer("b"), &frame),
        Inbound::Unknown { first: true, .. }
    ));
    assert!(matches!(
        master.open(&peer("b"), &frame),
        Inbound::Unknown { first: false, .. }
    ));
    // The handshake replayed from a new connection gets a fresh challenge,
    // and the old proof does not answer it.
    let (mut w2, _) = joined("s3cret");
    w2.reset();
    let hello = w2.join(&ready());
    let Inbound::Reply(_) = master.open(&peer("c"), &hello) else {
        panic!()
    };
    let (mut w3, mut m3) = (
        WorkerChannel::new(Some(ClusterKey::derive("s3cret")), "x".into()),
        MasterChannels::new(Some(ClusterKey::derive("s3cret"))),
    );
    let Inbound::Reply(challenge) = m3.open(&peer("z"), &w3.join(&ready())) else {
        panic!()
    };
    let WorkerInbound::Authenticated { proof } = w3.open(&challenge) else {
        panic!()
    };
    assert!(matches!(
        master.open(&peer("c"), &proof),
        Inbound::Refuse { .. }
    ));
}

#[test]
fn a_reflected_or_tampered_frame_does_not_open() {
    let (mut worker, mut master) = joined("s3cret");
    let to_worker = master.seal(&peer("a"), &Message::Quit).expect("session");
    // Each direction has its own key: the master's frame sent back to it fails.
    assert!(matches!(
        master.open(&peer("a"), &to_worker),
        Inbound::Dropped { .. }
    ));
    let mut frame = worker.seal(&Message::Quit).expect("session");
    let last = frame.len() - 1;
    frame[last] ^= 1;
    match master.open(&peer("a"), &frame) {
        Inbound::Dropped { reason, .. } => assert!(reason.contains("--secret"), "{reason}"),
        other => panic!("{other:?}"),
    }
    for junk in [&b""[..], &[0u8; 3], &[0u8; 40]] {
        assert!(matches!(
            master.open(&peer("a"), junk),
            Inbound::Dropped { .. }
        ));
    }
}

#[test]
fn different_secrets_fail_on_both_sides_with_the_fix() {
    let mut worker = WorkerChannel::new(Some(ClusterKey::derive("wrong")), "w-9".into());
    let mut master = MasterChannels::new(Some(ClusterKey::derive("right")));
    let Inbound::Reply(challenge) = master.open(&peer("a"), &worker.join(&ready())) else {
        panic!()
    };
    let WorkerInbound::MasterUnproven { proof, reason } = worker.open(&challenge) else {
        panic!("a master with another secret was believed")
    };
    assert!(reason.contains("same --secret"));
    match master.open(&peer("a"), &proof) {
        Inbound::Refuse {
            worker_id, reason, ..
        } => {
            assert_eq!(worker_id, "w-9");
            assert!(reason.contains("--secret"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_peers_meet_secret_holders_with_a_reason() {
    // A worker without a secret, a master with one.
    let mut master = MasterChannels::new(Some(ClusterKey::derive("s")));
    match master.open(&peer("a"), &ready().encode()) {
        Inbound::Refuse {
            worker_id,
            reason,
            reply,
            ..
        } => {
            assert_eq!(worker_id, "w-1");
            assert!(reason.contains("requires the shared secret"));
            assert!(matches!(
                Message::decode(&reply),
                Ok(Message::Refused { .. })
            ));
        }
        other => panic!("{other:?}"),
    }
    // A worker with a secret, a master without: the master says why, and
    // the worker does not take an unauthenticated refusal as an order.
    let mut plain = MasterChannels::new(None);
    let mut worker = WorkerChannel::new(Some(ClusterKey::derive("s")), "w-1".into());
    let Inbound::Refuse { reply, reason, .. } = plain.open(&peer("a"), &worker.join(&ready()))
    else {
        panic!()
    };
    assert!(reason.contains("no shared secret"));
    assert!(matches!(
        worker.open(&reply),
        WorkerInbound::Dropped { first: true, .. }
    ));
    // Nor an unauthenticated order.
    let spawn = Message::Stop { run_id: 1 }.encode();
    assert!(matches!(
        worker.open(&spawn),
        WorkerInbound::Dropped { first: false, .. }
    ));
    assert!(matches!(
        worker.open(&Message::Rejoin.encode()),
        WorkerInbound::Rejoin
    ));
}

#[test]
fn a_repeated_hello_gets_the_same_challenge() {
    let key = ClusterKey::derive("s");
    let mut worker = WorkerChannel::new(Some(key.clone()), "w".into());
    let mut master = MasterChannels::new(Some(key));
    let hello = worker.join(&ready());
    assert_eq!(
        worker.join(&ready()),
        hello,
        "the same hello until answered"
    );
    let Inbound::Reply(first) = master.open(&peer("a"), &hello) else {
        panic!()
    };
    let Inbound::Reply(second) = master.open(&peer("a"), &hello) else {
        panic!()
    };
    assert_eq!(first, second);
    let WorkerInbound::Authenticated { proof } = worker.open(&second) else {
        panic!()
    };
    assert!(matches!(
        master.open(&peer("a"), &proof),
        Inbound::Authenticated
    ));
    assert!(matches!(worker.open(&first), WorkerInbound::Dropped { .. }));
}

#[test]
fn unauthenticated_peers_are_bounded() {
    let mut master = MasterChannels::new(Some(ClusterKey::derive("s")));
    for i in 0..(MAX_UNAUTHENTICATED_PEERS + 10) {
        master.open(&peer(&format!("p{i}")), b"\xc1garbage");
    }
    assert!(master.peer_count() <= MAX_UNAUTHENTICATED_PEERS);
    let (_, mut with_session) = joined("s");
    for i in 0..(MAX_UNAUTHENTICATED_PEERS + 10) {
        with_session.open(&peer(&format!("p{i}")), b"\xc1garbage");
    }
    // The authenticated peer survives the purge.
    assert!(with_session.seal(&peer("a"), &Message::Quit).is_some());
}

#[test]
fn without_a_secret_frames_are_plain_msgpack() {
    let mut master = MasterChannels::new(None);
    let mut worker = WorkerChannel::new(None, "w".into());
    assert_eq!(worker.join(&ready()), ready().encode());
    assert!(matches!(
        master.open(&peer("a"), &ready().encode()),
        Inbound::Message(_)
    ));
    assert_eq!(
        master.seal(&peer("a"), &Message::Quit),
        Some(Message::Quit.encode())
    );
    assert!(matches!(
        master.open(&peer("a"), b"\xc1"),
        Inbound::Dropped { first: true, .. }
    ));
}
