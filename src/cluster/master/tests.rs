//! The master through a fake transport: workers joining, rebalancing, a
//! worker lost and back, and the milestones pushed to Python.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{run_master, ClusterEvent, ClusterStatus, Heartbeats, MasterCommand, RunPlan};
use crate::cluster::plan::ClassPlan;
use crate::cluster::protocol::{Load, Message, RunSettings, AIOTEST_VERSION, PROTOCOL_VERSION};
use crate::cluster::transport::{PeerId, Received, Transport, TransportError};
use crate::cluster::wire_stats::WireStats;
use crate::engine::CompletionQueue;
use crate::stats::{Aggregator, Stats};

/// Frames in from the test, frames out to the test.
struct FakeTransport {
    inbound: UnboundedReceiver<(PeerId, Bytes)>,
    outbound: UnboundedSender<(PeerId, Vec<u8>)>,
}

impl Transport for FakeTransport {
    async fn send(&mut self, to: &PeerId, frame: Vec<u8>) -> Result<(), TransportError> {
        let _ = self.outbound.send((to.clone(), frame));
        Ok(())
    }

    async fn recv(&mut self) -> Result<Received, TransportError> {
        let (peer, frame) = self
            .inbound
            .recv()
            .await
            .ok_or_else(|| TransportError::Closed("test over".into()))?;
        Ok(Received::Frame(peer, frame))
    }
}

struct Cluster {
    to_master: UnboundedSender<(PeerId, Bytes)>,
    from_master: UnboundedReceiver<(PeerId, Vec<u8>)>,
    commands: UnboundedSender<MasterCommand>,
    events: Arc<CompletionQueue<ClusterEvent>>,
    _aggregator: Aggregator,
}

const BEAT: Duration = Duration::from_millis(40);

impl Cluster {
    fn start() -> Self {
        let aggregator = Aggregator::start();
        let (to_master, inbound) = unbounded_channel();
        let (outbound, from_master) = unbounded_channel();
        let (commands, rx) = unbounded_channel();
        let events = Arc::new(CompletionQueue::new().expect("queue"));
        tokio::spawn(run_master(
            FakeTransport { inbound, outbound },
            None,
            Heartbeats {
                interval: BEAT,
                liveness: 2,
            },
            aggregator.recorder(),
            events.clone(),
            rx,
        ));
        Self {
            to_master,
            from_master,
            commands,
            events,
            _aggregator: aggregator,
        }
    }

    fn say(&self, worker: &str, message: &Message) {
        let frame = Bytes::from(message.encode());
        self.to_master
            .send((PeerId(worker.as_bytes().to_vec()), frame))
            .expect("master alive");
    }

    fn join(&self, worker: &str) {
        self.say(
            worker,
            &Message::Ready {
                aiotest_version: AIOTEST_VERSION.into(),
                protocol_version: PROTOCOL_VERSION,
                worker_id: worker.into(),
            },
        );
    }

    /// The next frame to `worker` that `pick` accepts, skipping heartbeats.
    async fn next_to<T>(&mut self, worker: &str, pick: impl Fn(Message) -> Option<T>) -> T {
        let peer = PeerId(worker.as_bytes().to_vec());
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let (to, frame) = self.from_master.recv().await.expect("master alive");
                if to != peer {
                    continue;
                }
                if let Some(found) = pick(Message::decode(&frame).expect("valid frame")) {
                    return found;
                }
            }
        })
        .await
        .expect("the master answered in time")
    }

    /// The user indexes of the next `spawn` to `worker`, per class.
    async fn spawn_to(&mut self, worker: &str) -> (u64, Vec<u64>) {
        self.next_to(worker, |m| match m {
            Message::Spawn {
                run_id,
                user_classes,
                ..
            } => Some((
                run_id,
                user_classes
                    .iter()
                    .flat_map(|c| c.user_indexes.clone())
                    .collect(),
            )),
            _ => None,
        })
        .await
    }

    /// Waits for the first event that `pick` accepts.
    async fn event<T>(&self, pick: impl Fn(&ClusterEvent) -> Option<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(found) = self.events.drain().iter().find_map(&pick) {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the event came in time")
    }

    /// The master's status, asked as Python asks it.
    async fn status(&self) -> ClusterStatus {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.commands.send(MasterCommand::Status(tx));
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(status) = rx.try_recv() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the master answered")
    }

    fn run(&self, users: u64, iterations: Option<u64>) {
        let plan = RunPlan {
            classes: vec![ClassPlan {
                name: "U".into(),
                weight: 1.0,
                fixed_count: 0,
            }],
            users,
            spawn_rate_per_s: 100.0,
            settings: RunSettings {
                iterations,
                ..RunSettings::default()
            },
        };
        let _ = self.commands.send(MasterCommand::Start(plan));
    }
}

fn beat() -> Message {
    Message::Heartbeat {
        state: "running".into(),
        user_count: 0,
        load: Load::default(),
    }
}

#[tokio::test]
async fn rebalancing_keeps_user_indexes_unique_when_a_worker_is_lost_and_back() {
    lost_and_back("b", "a").await;
}

/// The lost worker held the lowest indexes, which the other keeps when the
/// users split again. Before lost workers' indexes were released, it came
/// back still owning them: two users shared indexes 0 and 1.
#[tokio::test]
async fn a_returning_worker_does_not_keep_the_indexes_it_lost() {
    lost_and_back("a", "b").await;
}

/// Two workers split 4 users; `lost` falls silent past the liveness time
/// while `kept` beats, then speaks again on the same connection.
async fn lost_and_back(lost: &str, kept: &str) {
    let mut c = Cluster::start();
    c.join("a");
    c.run(4, None);
    let (run_id, a) = c.spawn_to("a").await;
    assert_eq!((run_id, a.len()), (1, 4));

    c.join("b");
    let (_, a) = c.spawn_to("a").await;
    let (_, b) = c.spawn_to("b").await;
    assert_eq!((a.len(), b.len()), (2, 2));
    let all: BTreeSet<u64> = a.iter().chain(&b).copied().collect();
    assert_eq!(all, (0..4).collect());

    // `lost` falls silent past the liveness time while `kept` keeps beating.
    let missing = async {
        c.event(|e| match e {
            ClusterEvent::WorkerMissing { index, .. } => Some(*index),
            _ => None,
        })
        .await
    };
    let beating = async {
        for _ in 0..10 {
            c.say(kept, &beat());
            tokio::time::sleep(BEAT / 2).await;
        }
    };
    let (index, ()) = tokio::join!(missing, beating);
    assert_eq!(index, u32::from(lost == "b"));
    let (_, all) = c.spawn_to(kept).await;
    let all: BTreeSet<u64> = all.into_iter().collect();
    assert_eq!(
        all,
        (0..4).collect(),
        "one worker runs every user meanwhile"
    );

    // It speaks again: taken back, the users split again, still unique.
    c.say(lost, &beat());
    // In the order the master sends them (by peer id): `next_to` skips
    // frames to others.
    let (_, mine) = c.spawn_to("a").await;
    let (_, theirs) = c.spawn_to("b").await;
    let all: Vec<u64> = mine.iter().chain(&theirs).copied().collect();
    assert_eq!(all.len(), 4, "{mine:?} and {theirs:?}");
    assert_eq!(
        all.iter().copied().collect::<BTreeSet<u64>>().len(),
        4,
        "{mine:?} and {theirs:?}"
    );
}

#[tokio::test]
async fn milestones_are_pushed_once_each() {
    let mut c = Cluster::start();
    c.join("a");
    c.join("b");
    c.run(2, Some(10));
    let (run_id, _) = c.spawn_to("a").await;
    c.spawn_to("b").await;

    c.say(
        "a",
        &Message::SpawningComplete {
            run_id,
            user_count: 1,
        },
    );
    c.say(
        "b",
        &Message::SpawningComplete {
            run_id,
            user_count: 1,
        },
    );
    let spawned = c
        .event(|e| match e {
            ClusterEvent::SpawningComplete { run_id, user_count } => Some((*run_id, *user_count)),
            _ => None,
        })
        .await;
    assert_eq!(spawned, (1, 2));

    let stats = |task_runs| Message::Stats {
        run_id,
        stats: WireStats::from_stats(&Stats::new(0.0)),
        user_count: 1,
        task_runs,
    };
    c.say("a", &stats(4));
    c.say("b", &stats(6));
    let reached = c
        .event(|e| match e {
            ClusterEvent::IterationsReached { task_runs, .. } => Some(*task_runs),
            _ => None,
        })
        .await;
    assert_eq!(reached, 10);

    let _ = c.commands.send(MasterCommand::Stop);
    c.next_to("a", |m| matches!(m, Message::Stop { .. }).then_some(()))
        .await;
    c.say("a", &Message::Stopped { run_id });
    c.say("b", &Message::Stopped { run_id });
    c.event(|e| matches!(e, ClusterEvent::AllStopped { run_id: 1 }).then_some(()))
        .await;
    // Nothing is told twice, and no user ended by itself while running.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let late = c.events.drain();
    assert!(
        !late.iter().any(|e| matches!(
            e,
            ClusterEvent::SpawningComplete { .. }
                | ClusterEvent::IterationsReached { .. }
                | ClusterEvent::AllStopped { .. }
                | ClusterEvent::AllUsersStopped { .. }
        )),
        "{late:?}"
    );
}

#[tokio::test]
async fn all_users_stopped_when_every_user_ends_by_itself() {
    let mut c = Cluster::start();
    c.join("a");
    c.run(3, None);
    let (run_id, _) = c.spawn_to("a").await;
    c.say(
        "a",
        &Message::SpawningComplete {
            run_id,
            user_count: 3,
        },
    );
    c.event(|e| matches!(e, ClusterEvent::SpawningComplete { .. }).then_some(()))
        .await;
    c.say(
        "a",
        &Message::Heartbeat {
            state: "running".into(),
            user_count: 0,
            load: Load::default(),
        },
    );
    c.event(|e| matches!(e, ClusterEvent::AllUsersStopped { run_id: 1 }).then_some(()))
        .await;
}

/// Before, every worker id that ever joined kept a slot: a worker back on
/// a new connection had two, and lost workers stayed forever.
#[tokio::test]
async fn the_worker_table_keeps_no_stale_or_long_missing_workers() {
    let c = Cluster::start();
    c.join("a");
    // The same worker on a new connection: its old slot goes.
    c.say(
        "a2",
        &Message::Ready {
            aiotest_version: AIOTEST_VERSION.into(),
            protocol_version: PROTOCOL_VERSION,
            worker_id: "a".into(),
        },
    );
    c.join("b");
    c.event(|e| match e {
        ClusterEvent::WorkerJoined { worker_id, .. } if worker_id == "b" => Some(()),
        _ => None,
    })
    .await;
    let ids = |s: &ClusterStatus| -> Vec<String> {
        s.workers.iter().map(|w| w.worker_id.clone()).collect()
    };
    let status = c.status().await;
    assert_eq!(ids(&status), vec!["a".to_string(), "b".to_string()]);
    // Both fall silent: missing, then, ten timeouts on, gone.
    let left = c
        .event(|e| match e {
            ClusterEvent::WorkerLeft { index } => Some(*index),
            _ => None,
        })
        .await;
    assert!(left <= 1);
    tokio::time::sleep(BEAT * 30).await;
    assert!(c.status().await.workers.is_empty());
}

/// A report of another run (late, or replayed) is not merged.
#[tokio::test]
async fn stats_of_another_run_are_not_merged() {
    let mut c = Cluster::start();
    c.join("a");
    c.run(1, Some(100));
    let (run_id, _) = c.spawn_to("a").await;
    c.say(
        "a",
        &Message::Stats {
            run_id: run_id + 1,
            stats: WireStats {
                entries: vec![],
                failures: vec![],
                errors: vec![],
            },
            user_count: 1,
            task_runs: 7,
        },
    );
    let reason = c
        .event(|e| match e {
            ClusterEvent::MessageDropped { reason } if reason.contains("stats of run") => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("not merged"), "{reason}");
    assert_eq!(c.status().await.task_runs, 0);
}
