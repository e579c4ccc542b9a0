//! No input panics the cluster's decoders: random bytes, and valid frames
//! with bytes flipped, through the protocol decoder and both sides'
//! channels, with and without a secret.

use proptest::prelude::*;

use super::protocol::{ClassUsers, Load, Message, RunSettings};
use super::secure::{ClusterKey, Inbound, MasterChannels, WorkerChannel};
use super::transport::PeerId;

fn valid_frames() -> Vec<Vec<u8>> {
    let messages = [
        Message::Ready {
            aiotest_version: "0.1.0".into(),
            protocol_version: 1,
            worker_id: "w".into(),
        },
        Message::Spawn {
            run_id: 3,
            user_classes: vec![ClassUsers {
                name: "A".into(),
                users: 2,
                user_indexes: vec![0, 1],
            }],
            spawn_rate_per_s: 1.0,
            settings: RunSettings::default(),
            worker_count: 1,
        },
        Message::Heartbeat {
            state: "running".into(),
            user_count: 1,
            load: Load::default(),
        },
        Message::Custom {
            name: "n".into(),
            data: serde_json::json!({"a": [1, 2.5, "x", null]}),
        },
    ];
    messages.iter().map(Message::encode).collect()
}

fn key() -> ClusterKey {
    static KEY: std::sync::OnceLock<ClusterKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| ClusterKey::derive("proptest")).clone()
}

/// Every reader of frames, fed the same frame.
fn read_everywhere(frame: &[u8]) {
    let _ = Message::decode(frame);
    let peer = PeerId(b"p".to_vec());
    for k in [None, Some(key())] {
        let mut master = MasterChannels::new(k.clone());
        if let Inbound::Message(m) = master.open(&peer, frame) {
            let _ = m.kind();
        }
        let mut worker = WorkerChannel::new(k, "w".into());
        let _ = worker.join(&Message::Quit);
        let _ = worker.open(frame);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_everywhere(&frame);
    }

    #[test]
    fn damaged_frames_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = valid_frames()[which].clone();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        read_everywhere(&frame);
        read_everywhere(&frame[..cut.index(frame.len() + 1)]);
    }
}
