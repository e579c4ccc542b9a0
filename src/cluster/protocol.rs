//! The master/worker protocol: every message, encoded as msgpack with named
//! fields (rmp-serde), so a Python `msgpack` peer can read it. See
//! `docs/protocol.md` for who sends what, and when.
//!
//! Each ZeroMQ message is one frame (after the ROUTER's identity frame):
//! the msgpack map of a [`Message`], tagged by its `type` field.

use serde::{Deserialize, Serialize};

use super::wire_stats::WireStats;

/// Bumped whenever a message changes shape. Master and worker must agree.
pub const PROTOCOL_VERSION: u32 = 1;

/// The aiotest version, which master and worker must also share (they load
/// the same aiotestfile against the same user API).
pub const AIOTEST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The largest message accepted, in bytes: a stats report of a few thousand
/// endpoints fits; anything larger is dropped and logged.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Users of one class, for one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassUsers {
    pub name: String,
    pub users: u64,
    /// The cluster-wide `user_index` of each of these users (`users` of
    /// them, 0 to N-1 over the cluster). A user keeps its index for the run:
    /// the worker stops the users whose index left the list and starts
    /// users for the new ones.
    #[serde(default)]
    pub user_indexes: Vec<u64>,
}

/// The run settings the master's options impose on every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSettings {
    pub host: Option<String>,
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub stop_timeout_s: f64,
    /// This worker's share of `-i/--iterations`, when set.
    pub iterations: Option<u64>,
    /// The master's values of the aiotestfile's own options, by name
    /// (`environment.parsed_options.<name>` on the worker).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, serde_json::Value>,
    /// Open workload model: task iterations this worker starts per second
    /// (its share of `--arrival-rate`, in proportion to its users).
    #[serde(default)]
    pub arrival_rate_per_s: Option<f64>,
    /// The master's `environment.context`: set on every worker before its
    /// users start.
    #[serde(default)]
    pub context: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A worker's machine load, sent with each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Load {
    /// CPU used by the worker process since its last heartbeat, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory of the worker process, in bytes.
    pub memory_bytes: u64,
}

/// Above this a reported CPU share is nonsense (a process on 10,000 cores).
const MAX_CPU_PERCENT: f64 = 1_000_000.0;

impl Load {
    /// What a peer reported, made safe to show: a CPU share that is not a
    /// number, negative or absurd reads 0 (a NaN once broke the master's
    /// worker table before its reports were written).
    pub fn sanitized(self) -> Load {
        let cpu = self.cpu_percent;
        Load {
            cpu_percent: if cpu.is_finite() && (0.0..=MAX_CPU_PERCENT).contains(&cpu) {
                cpu
            } else {
                0.0
            },
            memory_bytes: self.memory_bytes,
        }
    }
}

/// Every message of the protocol. `W→M` is sent by workers, `M→W` by the
/// master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// W→M, on connecting (and again after losing the master): who it is.
    Ready {
        aiotest_version: String,
        protocol_version: u32,
        /// Host name, process id and a random part: unique per process.
        worker_id: String,
    },
    /// M→W: accepted; `worker_index` is stable for the worker's life. The
    /// master's heartbeat timing governs both sides from here on.
    Ack {
        worker_index: u32,
        heartbeat_interval_s: f64,
        heartbeat_liveness: u32,
    },
    /// M→W: not accepted, and why (version or protocol mismatch).
    Refused { reason: String },
    /// M→W: a message came from a worker this master does not know (the
    /// master restarted): send `Ready` again.
    Rejoin,
    /// M→W: run exactly these users (absolute counts per class), spawning
    /// new ones at `spawn_rate_per_s`. Sent at start and on every change.
    Spawn {
        run_id: u64,
        user_classes: Vec<ClassUsers>,
        spawn_rate_per_s: f64,
        settings: RunSettings,
        /// Live workers in the run (`self.worker_count` in user code).
        #[serde(default)]
        worker_count: u32,
    },
    /// W→M: spawning toward `user_count` users.
    Spawning { run_id: u64, user_count: u64 },
    /// W→M: all users of the last `Spawn` are running.
    SpawningComplete { run_id: u64, user_count: u64 },
    /// W→M, every stats interval: everything recorded since the last report.
    Stats {
        run_id: u64,
        stats: WireStats,
        user_count: u64,
        /// Task executions finished since the last report.
        task_runs: u64,
    },
    /// Both ways, every heartbeat interval. Workers report their state, users
    /// and load; the master's heartbeat carries none of it.
    Heartbeat {
        state: String,
        user_count: u64,
        load: Load,
    },
    /// M→W: stop all users (gracefully, within the stop timeout).
    Stop { run_id: u64 },
    /// W→M: all users stopped and the last stats report sent.
    Stopped { run_id: u64 },
    /// Both ways: the sender is leaving for good (master: the worker process
    /// exits; worker: the master forgets it at once).
    Quit,
    /// M→W: this master is going away (its run is over); the worker stops
    /// its users and waits for the next master. Workers are reused.
    Leaving,
    /// W→M: an exception in user code, for the master's log (it is counted
    /// through the stats reports).
    Exception { message: String, traceback: String },
    /// Both ways: a message from user code (`register_message` /
    /// `send_message`); `data` is any JSON value.
    Custom {
        name: String,
        data: serde_json::Value,
    },
}

/// The `type` of a message whose map starts with it, as
/// [`Message::encode`] writes every message; None otherwise (the generic
/// path then decodes it, wherever its tag is).
fn leading_tag(frame: &[u8]) -> Option<&str> {
    let mut rest = frame;
    rmp::decode::read_map_len(&mut rest).ok()?;
    let (key, rest) = rmp::decode::read_str_from_slice(rest).ok()?;
    if key != "type" {
        return None;
    }
    rmp::decode::read_str_from_slice(rest)
        .ok()
        .map(|(kind, _)| kind)
}

/// The fields of [`Message::Stats`], decoded without the enum's buffering.
#[derive(Deserialize)]
struct StatsBody {
    run_id: u64,
    stats: WireStats,
    user_count: u64,
    task_runs: u64,
}

/// The fields of [`Message::Heartbeat`], as [`StatsBody`].
#[derive(Deserialize)]
struct HeartbeatBody {
    state: String,
    user_count: u64,
    load: Load,
}

/// A message that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("undecodable message: {0}")]
    Malformed(String),
    #[error(
        "message failed authentication: master and worker need the same --secret (AIOTEST_SECRET)"
    )]
    BadSignature,
}

impl Message {
    /// Encodes as a msgpack map with named fields.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("every message serializes")
    }

    /// Decodes one frame, refusing oversized ones before parsing.
    ///
    /// # Errors
    /// [`ProtocolError`]; never panics on any input.
    pub fn decode(frame: &[u8]) -> Result<Self, ProtocolError> {
        if frame.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge(frame.len()));
        }
        let malformed = |e: rmp_serde::decode::Error| ProtocolError::Malformed(e.to_string());
        // The two messages every worker sends every second go straight to
        // their fields; serde's path for a tagged enum first copies the
        // whole map into a buffer of its own.
        // NOTE: at 5,000 simulated workers reporting 20 endpoints a second
        // (bench/run.py master-5k), that buffering was a fifth of the
        // master's CPU (perf, 2026-12-02): 66 % of a core in all.
        match leading_tag(frame) {
            Some("stats") => {
                let b: StatsBody = rmp_serde::from_slice(frame).map_err(malformed)?;
                Ok(Message::Stats {
                    run_id: b.run_id,
                    stats: b.stats,
                    user_count: b.user_count,
                    task_runs: b.task_runs,
                })
            }
            Some("heartbeat") => {
                let b: HeartbeatBody = rmp_serde::from_slice(frame).map_err(malformed)?;
                Ok(Message::Heartbeat {
                    state: b.state,
                    user_count: b.user_count,
                    load: b.load,
                })
            }
            _ => rmp_serde::from_slice(frame).map_err(malformed),
        }
    }

    /// The `type` tag, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ready { .. } => "ready",
            Message::Ack { .. } => "ack",
            Message::Refused { .. } => "refused",
            Message::Rejoin => "rejoin",
            Message::Spawn { .. } => "spawn",
            Message::Spawning { .. } => "spawning",
            Message::SpawningComplete { .. } => "spawning_complete",
            Message::Stats { .. } => "stats",
            Message::Heartbeat { .. } => "heartbeat",
            Message::Stop { .. } => "stop",
            Message::Stopped { .. } => "stopped",
            Message::Quit => "quit",
            Message::Leaving => "leaving",
            Message::Exception { .. } => "exception",
            Message::Custom { .. } => "custom",
        }
    }
}

/// Why a worker's `Ready` is refused, or `None` to accept it.
pub fn check_ready(aiotest_version: &str, protocol_version: u32) -> Option<String> {
    if protocol_version != PROTOCOL_VERSION {
        return Some(format!(
            "protocol version {protocol_version} does not match the master's {PROTOCOL_VERSION}: run the same aiotest version on both sides"
        ));
    }
    if aiotest_version != AIOTEST_VERSION {
        return Some(format!(
            "aiotest {aiotest_version} does not match the master's {AIOTEST_VERSION}: install the same version on master and workers"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_load_reads_as_none() {
        for cpu in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
            let load = Load {
                cpu_percent: cpu,
                memory_bytes: 7,
            }
            .sanitized();
            assert_eq!((load.cpu_percent, load.memory_bytes), (0.0, 7), "{cpu}");
        }
        let fine = Load {
            cpu_percent: 180.5,
            memory_bytes: 1,
        };
        assert_eq!(fine.sanitized(), fine);
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Ready {
                aiotest_version: "0.1.0".into(),
                protocol_version: 1,
                worker_id: "h-1-ab".into(),
            },
            Message::Ack {
                worker_index: 3,
                heartbeat_interval_s: 1.0,
                heartbeat_liveness: 3,
            },
            Message::Spawn {
                run_id: 7,
                user_classes: vec![ClassUsers {
                    name: "Shopper".into(),
                    users: 2,
                    user_indexes: vec![4, 9],
                }],
                worker_count: 3,
                spawn_rate_per_s: 2.5,
                settings: RunSettings {
                    host: Some("http://127.0.0.1:1".into()),
                    iterations: Some(10),
                    ..Default::default()
                },
            },
            Message::Stats {
                run_id: 7,
                stats: WireStats {
                    entries: vec![],
                    failures: vec![],
                    errors: vec![],
                },
                user_count: 5,
                task_runs: 9,
            },
            Message::Heartbeat {
                state: "running".into(),
                user_count: 5,
                load: Load {
                    cpu_percent: 12.5,
                    memory_bytes: 1 << 20,
                },
            },
            Message::Quit,
            Message::Custom {
                name: "token".into(),
                data: serde_json::json!({"v": [1, "a"]}),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m, "{}", m.kind());
        }
    }

    #[test]
    fn a_tag_that_is_not_the_first_key_still_decodes() {
        // Another msgpack peer may order the keys its own way.
        #[derive(Serialize)]
        struct Late {
            state: &'static str,
            user_count: u64,
            load: Load,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let late = Late {
            state: "running",
            user_count: 7,
            load: Load::default(),
            kind: "heartbeat",
        };
        let bytes = rmp_serde::to_vec_named(&late).unwrap();
        assert_eq!(leading_tag(&bytes), None);
        assert_eq!(
            Message::decode(&bytes).unwrap(),
            Message::Heartbeat {
                state: "running".into(),
                user_count: 7,
                load: Load::default(),
            }
        );
    }

    #[test]
    fn fields_are_named_for_other_msgpack_peers() {
        let bytes = Message::Ack {
            worker_index: 3,
            heartbeat_interval_s: 1.0,
            heartbeat_liveness: 3,
        }
        .encode();
        // A map of four string keys: "type" -> "ack", "worker_index" -> 3, ...
        assert_eq!(bytes[0], 0x84);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("type") && text.contains("ack") && text.contains("worker_index"));
    }

    #[test]
    fn garbage_and_oversized_frames_are_errors() {
        for junk in [
            &b""[..],
            b"\xff\xff\xff",
            b"GET / HTTP/1.1\r\n\r\n",
            &[0x81, 0xa4, b't', b'y', b'p', b'e', 0xa3, b'b', b'a', b'd'],
        ] {
            assert!(
                matches!(Message::decode(junk), Err(ProtocolError::Malformed(_))),
                "{junk:?}"
            );
        }
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            Message::decode(&big),
            Err(ProtocolError::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
    }

    #[test]
    fn mismatches_are_refused_with_a_fix() {
        assert!(check_ready(AIOTEST_VERSION, PROTOCOL_VERSION).is_none());
        assert!(check_ready("0.0.1", PROTOCOL_VERSION)
            .unwrap()
            .contains("same version"));
        assert!(check_ready(AIOTEST_VERSION, 99)
            .unwrap()
            .contains("protocol version 99"));
    }
}
