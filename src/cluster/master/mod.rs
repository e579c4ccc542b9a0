//! The master: accepts workers, tells each which users to run, merges their
//! statistics into its own, and watches their heartbeats. It runs no users.
//!
//! Python drives it with [`MasterCommand`]s and learns what happened from
//! [`ClusterEvent`]s on a [`CompletionQueue`] (one wake-up per batch).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

mod progress;
#[cfg(test)]
mod tests;

use progress::Milestones;

use super::plan::{assign_users, split_iterations, ClassPlan};
use super::protocol::{check_ready, Load, Message, RunSettings};
use super::secure::{ClusterKey, Inbound, MasterChannels};
use super::transport::{PeerId, Received, Transport};
use crate::dispatch::assign_user_indexes;
use crate::engine::CompletionQueue;
use crate::stats::Recorder;

/// Heartbeat timing, shared by master and workers (Locust's
/// `--heartbeat-interval` and `--heartbeat-liveness`).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeats {
    pub interval: Duration,
    /// Missed intervals before a peer counts as gone.
    pub liveness: u32,
}

impl Heartbeats {
    /// How long a silent peer stays alive.
    pub fn timeout(&self) -> Duration {
        self.interval * self.liveness.max(1)
    }
}

/// A test to run over the cluster.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub classes: Vec<ClassPlan>,
    pub users: u64,
    /// For the whole cluster; each worker gets its share.
    pub spawn_rate_per_s: f64,
    /// `settings.iterations` is the cluster total; workers get exact shares.
    pub settings: RunSettings,
}

/// What Python asks of the master.
pub enum MasterCommand {
    Start(RunPlan),
    /// Changes the running test (users, spawn rate, classes) without
    /// starting a new run: a load shape's next step.
    Update(RunPlan),
    Stop,
    /// Ends the master: workers are told it is leaving (they stay up). The
    /// sender hears back once that is sent.
    Quit(std::sync::mpsc::Sender<()>),
    Status(std::sync::mpsc::Sender<ClusterStatus>),
    /// A user-code message to one worker (by index) or, with `None`, to
    /// every live worker.
    Custom {
        worker_index: Option<u32>,
        name: String,
        data: serde_json::Value,
    },
}

/// What Python hears from the master.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ClusterEvent {
    WorkerJoined {
        index: u32,
        worker_id: String,
    },
    WorkerMissing {
        index: u32,
        silent_s: f64,
    },
    WorkerLeft {
        index: u32,
    },
    WorkerRefused {
        worker_id: String,
        reason: String,
    },
    Exception {
        index: u32,
        message: String,
        traceback: String,
    },
    MessageDropped {
        reason: String,
    },
    Custom {
        index: u32,
        name: String,
        data: serde_json::Value,
    },
    Fatal {
        reason: String,
    },
    /// A heartbeat went to these workers (Locust's `heartbeat_sent`).
    HeartbeatSent {
        worker_ids: Vec<String>,
    },
    /// Every live worker runs all its users of the run's current step.
    SpawningComplete {
        run_id: u64,
        user_count: u64,
    },
    /// After spawning completed, every user ended by itself.
    AllUsersStopped {
        run_id: u64,
    },
    /// The workers reported the run's `iterations` task executions.
    IterationsReached {
        run_id: u64,
        task_runs: u64,
    },
    /// After a stop, every live worker confirmed it.
    AllStopped {
        run_id: u64,
    },
}

/// One worker, as the master sees it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub index: u32,
    pub worker_id: String,
    /// ready, spawning, running, stopped or missing.
    pub state: String,
    pub user_count: u64,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// Seconds since anything arrived from it.
    pub last_heartbeat_s: f64,
}

/// The cluster at a glance, for the console and for Python's waits.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub workers: Vec<WorkerStatus>,
    /// Workers connected and not missing.
    pub live_workers: usize,
    pub run_id: u64,
    pub user_count: u64,
    /// Task executions reported by workers in this run.
    pub task_runs: u64,
    /// Every live worker reported all users spawned for this run.
    pub spawning_complete: bool,
    /// Every live worker reported stopping this run.
    pub all_stopped: bool,
}

struct Slot {
    index: u32,
    worker_id: String,
    state: String,
    user_count: u64,
    load: Load,
    last_seen: Instant,
    missing: bool,
    spawned_run: u64,
    stopped_run: u64,
    /// This worker's share of the run's iterations, and what it reported.
    iterations: Option<u64>,
    task_runs: u64,
    /// The `user_index`es it runs, per class of the run's plan.
    user_indexes: Vec<Vec<u64>>,
}

struct Master<T: Transport> {
    transport: T,
    channels: MasterChannels,
    heartbeats: Heartbeats,
    recorder: Recorder,
    events: Arc<CompletionQueue<ClusterEvent>>,
    slots: BTreeMap<PeerId, Slot>,
    /// worker_id -> index, so a worker keeps its index when it reconnects.
    indexes: HashMap<String, u32>,
    next_index: u32,
    /// Task executions of this run reported by workers no longer in the
    /// table (they quit, or were replaced or forgotten).
    retired_task_runs: u64,
    run: Option<RunPlan>,
    run_id: u64,
    stopping: bool,
    told: Milestones,
    /// Something a milestone depends on changed since the last check.
    dirty: bool,
}

/// Runs the master until [`MasterCommand::Quit`] or until its command
/// channel closes.
pub async fn run_master<T: Transport>(
    transport: T,
    key: Option<ClusterKey>,
    heartbeats: Heartbeats,
    recorder: Recorder,
    events: Arc<CompletionQueue<ClusterEvent>>,
    mut commands: UnboundedReceiver<MasterCommand>,
) {
    let mut m = Master {
        transport,
        channels: MasterChannels::new(key),
        heartbeats,
        recorder,
        events,
        slots: BTreeMap::new(),
        indexes: HashMap::new(),
        next_index: 0,
        retired_task_runs: 0,
        run: None,
        run_id: 0,
        stopping: false,
        told: Milestones::default(),
        dirty: false,
    };
    let mut beat = tokio::time::interval(heartbeats.interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // NOTE: milestones are checked at most every 20 ms, not after every
    // message: a check walks every worker, and 5,000 workers send 5,000
    // reports a second.
    let mut milestones = tokio::time::interval(MILESTONE_CHECK_INTERVAL);
    milestones.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = m.transport.recv() => match received {
                Ok(Received::Frame(peer, frame)) => m.on_frame(peer, &frame).await,
                Ok(Received::Disconnected(peer)) => m.channels.forget(&peer),
                Err(e) => {
                    m.events.push(ClusterEvent::Fatal { reason: e.to_string() });
                    return;
                }
            },
            command = commands.recv() => match command {
                Some(MasterCommand::Start(plan)) => m.start(plan).await,
                Some(MasterCommand::Update(plan)) => {
                    // Spawning is complete again only once every worker
                    // has reached the new step.
                    for slot in m.slots.values_mut() {
                        slot.spawned_run = 0;
                    }
                    m.told.spawned = false;
                    m.told.users_gone = false;
                    m.dirty = true;
                    m.run = Some(plan);
                    m.rebalance().await;
                }
                Some(MasterCommand::Stop) => m.stop().await,
                Some(MasterCommand::Status(reply)) => {
                    let _ = reply.send(m.status());
                }
                Some(MasterCommand::Custom { worker_index, name, data }) => {
                    m.send_custom(worker_index, Message::Custom { name, data }).await;
                }
                Some(MasterCommand::Quit(done)) => {
                    // Workers outlive a master: they wait for the next one.
                    m.broadcast(&Message::Leaving).await;
                    let _ = done.send(());
                    return;
                }
                None => {
                    m.broadcast(&Message::Leaving).await;
                    return;
                }
            },
            _ = beat.tick() => m.on_heartbeat_tick().await,
            _ = milestones.tick(), if m.dirty => m.push_milestones(),
        }
    }
}

/// How long a missing worker stays in the table (at least ten heartbeat
/// timeouts): Locust shows missing workers too, but not forever.
#[cfg(not(test))]
const FORGET_MISSING_AFTER: Duration = Duration::from_secs(60);
/// In tests, ten heartbeat timeouts alone.
#[cfg(test)]
const FORGET_MISSING_AFTER: Duration = Duration::ZERO;

/// Worker names remembered (to give a returning worker its index back).
const MAX_REMEMBERED_WORKERS: usize = 100_000;

/// How often the master looks for a run's milestones, at most.
const MILESTONE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

impl<T: Transport> Master<T> {
    async fn send(&mut self, peer: &PeerId, message: &Message) {
        // A worker that went away is found by its heartbeats, not here.
        if let Some(frame) = self.channels.seal(peer, message) {
            let _ = self.transport.send(peer, frame).await;
        }
    }

    async fn send_custom(&mut self, worker_index: Option<u32>, message: Message) {
        let peers: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.missing && worker_index.is_none_or(|i| i == s.index))
            .map(|(p, _)| p.clone())
            .collect();
        for peer in peers {
            self.send(&peer, &message).await;
        }
    }

    async fn broadcast(&mut self, message: &Message) {
        let peers: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.missing)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in peers {
            self.send(&peer, message).await;
        }
    }

    async fn on_frame(&mut self, peer: PeerId, frame: &[u8]) {
        self.dirty = true;
        let message = match self.channels.open(&peer, frame) {
            Inbound::Message(m) => m,
            Inbound::Authenticated => return,
            Inbound::Reply(reply) => {
                let _ = self.transport.send(&peer, reply).await;
                return;
            }
            Inbound::Refuse {
                worker_id,
                reason,
                reply,
                first,
            } => {
                // Refused in the clear: the peer cannot open a sealed frame,
                // but it can say why it was turned away.
                let _ = self.transport.send(&peer, reply).await;
                if first {
                    self.events
                        .push(ClusterEvent::WorkerRefused { worker_id, reason });
                }
                return;
            }
            Inbound::Unknown {
                reason,
                reply,
                first,
            } => {
                let _ = self.transport.send(&peer, reply).await;
                return self.dropped(first, reason);
            }
            Inbound::Dropped { reason, first } => return self.dropped(first, reason),
        };
        if let Message::Ready {
            aiotest_version,
            protocol_version,
            worker_id,
        } = message
        {
            return self
                .on_ready(peer, aiotest_version, protocol_version, worker_id)
                .await;
        }
        let Some(slot) = self.slots.get_mut(&peer) else {
            // Not ours: we restarted since it joined. Ask it to join again.
            if !matches!(message, Message::Quit) {
                self.send(&peer, &Message::Rejoin).await;
            }
            return;
        };
        slot.last_seen = Instant::now();
        // A worker thought lost spoke again: take it back, and still handle
        // what it said (it may be a stats report that must not be lost).
        let returned = std::mem::replace(&mut slot.missing, false);
        let index = slot.index;
        if returned {
            slot.state = "running".into();
            // Its share is sent anew; it has not started it yet.
            slot.spawned_run = 0;
            let worker_id = slot.worker_id.clone();
            self.events
                .push(ClusterEvent::WorkerJoined { index, worker_id });
        }
        self.on_message(&peer, index, message).await;
        if returned {
            self.rebalance().await;
        }
    }

    /// Logs a refused message, once per peer (a flood costs one line).
    fn dropped(&mut self, first: bool, reason: String) {
        if first {
            self.events.push(ClusterEvent::MessageDropped {
                reason: format!("{reason} (further ones from this peer are not logged)"),
            });
        }
    }

    async fn on_message(&mut self, peer: &PeerId, index: u32, message: Message) {
        let Some(slot) = self.slots.get_mut(peer) else {
            return;
        };
        match message {
            Message::Heartbeat {
                state,
                user_count,
                load,
            } => {
                slot.state = state;
                slot.user_count = user_count;
                slot.load = load.sanitized();
            }
            Message::Stats {
                run_id,
                stats,
                user_count,
                task_runs,
            } => {
                slot.user_count = user_count;
                if run_id != self.run_id {
                    // A report of another run (late, or replayed) would
                    // count samples twice or into the wrong run.
                    return self.events.push(ClusterEvent::MessageDropped {
                        reason: format!(
                            "stats of run {run_id} from worker {index} during run {}: not merged",
                            self.run_id
                        ),
                    });
                }
                slot.task_runs += task_runs;
                match stats.into_sparse() {
                    Ok(s) => self.recorder.merge_sparse(s),
                    Err(e) => self.events.push(ClusterEvent::MessageDropped {
                        reason: e.to_string(),
                    }),
                }
            }
            Message::Spawning { user_count, .. } => {
                slot.state = "spawning".into();
                slot.user_count = user_count;
            }
            Message::SpawningComplete { run_id, user_count } => {
                slot.state = "running".into();
                slot.user_count = user_count;
                slot.spawned_run = run_id;
            }
            Message::Stopped { run_id } => {
                slot.state = "stopped".into();
                slot.user_count = 0;
                slot.stopped_run = run_id;
            }
            Message::Exception { message, traceback } => {
                self.events.push(ClusterEvent::Exception {
                    index,
                    message,
                    traceback,
                });
            }
            Message::Custom { name, data } => {
                self.events.push(ClusterEvent::Custom { index, name, data })
            }
            Message::Quit => {
                self.retire(peer);
                self.events.push(ClusterEvent::WorkerLeft { index });
                self.rebalance().await;
            }
            other => self.events.push(ClusterEvent::MessageDropped {
                reason: format!("a worker may not send '{}'", other.kind()),
            }),
        }
    }

    async fn on_ready(&mut self, peer: PeerId, version: String, protocol: u32, worker_id: String) {
        if let Some(reason) = check_ready(&version, protocol) {
            self.send(
                &peer,
                &Message::Refused {
                    reason: reason.clone(),
                },
            )
            .await;
            self.events
                .push(ClusterEvent::WorkerRefused { worker_id, reason });
            return;
        }
        if let Some(slot) = self.slots.get_mut(&peer) {
            if slot.worker_id == worker_id && !slot.missing {
                // A repeated Ready (our Ack crossed it): acknowledge again.
                slot.last_seen = Instant::now();
                let index = slot.index;
                let ack = self.ack(index);
                self.send(&peer, &ack).await;
                return;
            }
        }
        // The same worker on a new connection: its old slot goes.
        let stale: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(p, s)| **p != peer && s.worker_id == worker_id)
            .map(|(p, _)| p.clone())
            .collect();
        for old in stale {
            self.retire(&old);
        }
        let index = *self.indexes.entry(worker_id.clone()).or_insert_with(|| {
            self.next_index += 1;
            self.next_index - 1
        });
        self.slots.insert(
            peer.clone(),
            Slot {
                index,
                worker_id: worker_id.clone(),
                state: "ready".into(),
                user_count: 0,
                load: Load::default(),
                last_seen: Instant::now(),
                missing: false,
                spawned_run: 0,
                stopped_run: 0,
                iterations: None,
                task_runs: 0,
                user_indexes: Vec::new(),
            },
        );
        let ack = self.ack(index);
        self.send(&peer, &ack).await;
        self.events
            .push(ClusterEvent::WorkerJoined { index, worker_id });
        self.rebalance().await;
    }

    /// Workers missing for [`FORGET_MISSING_AFTER`] leave the table, so
    /// that it does not grow with every worker that ever came and went.
    fn forget_long_missing(&mut self) {
        let limit = FORGET_MISSING_AFTER.max(self.heartbeats.timeout() * 10);
        let gone: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.missing && s.last_seen.elapsed() > limit)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in gone {
            if let Some(index) = self.retire(&peer) {
                self.events.push(ClusterEvent::WorkerLeft { index });
            }
        }
        if self.indexes.len() > MAX_REMEMBERED_WORKERS {
            let live: std::collections::HashSet<&String> =
                self.slots.values().map(|s| &s.worker_id).collect();
            self.indexes.retain(|id, _| live.contains(id));
        }
    }

    /// Takes a worker out of the table, keeping what it counted; its index.
    fn retire(&mut self, peer: &PeerId) -> Option<u32> {
        self.channels.forget(peer);
        let slot = self.slots.remove(peer)?;
        self.retired_task_runs += slot.task_runs;
        Some(slot.index)
    }

    fn ack(&self, worker_index: u32) -> Message {
        Message::Ack {
            worker_index,
            heartbeat_interval_s: self.heartbeats.interval.as_secs_f64(),
            heartbeat_liveness: self.heartbeats.liveness,
        }
    }

    async fn on_heartbeat_tick(&mut self) {
        self.dirty = true;
        let timeout = self.heartbeats.timeout();
        let mut lost = Vec::new();
        for slot in self.slots.values_mut() {
            if !slot.missing && slot.last_seen.elapsed() > timeout {
                slot.missing = true;
                slot.state = "missing".into();
                slot.user_count = 0;
                // Its users are given to the others now; should it come
                // back, it gets indexes anew (else two users would share one).
                slot.user_indexes.clear();
                lost.push((slot.index, slot.last_seen.elapsed().as_secs_f64()));
            }
        }
        self.forget_long_missing();
        for (index, silent_s) in &lost {
            self.events.push(ClusterEvent::WorkerMissing {
                index: *index,
                silent_s: *silent_s,
            });
        }
        if !lost.is_empty() {
            self.rebalance().await;
        }
        let beat = Message::Heartbeat {
            state: "master".into(),
            user_count: 0,
            load: Load::default(),
        };
        self.broadcast(&beat).await;
        let worker_ids: Vec<String> = self
            .slots
            .values()
            .filter(|slot| !slot.missing)
            .map(|slot| slot.worker_id.clone())
            .collect();
        if !worker_ids.is_empty() {
            self.events.push(ClusterEvent::HeartbeatSent { worker_ids });
        }
    }

    async fn start(&mut self, plan: RunPlan) {
        self.run_id += 1;
        self.retired_task_runs = 0;
        self.stopping = false;
        self.told = Milestones::default();
        self.dirty = true;
        for slot in self.slots.values_mut() {
            slot.task_runs = 0;
            slot.iterations = None;
            slot.user_indexes.clear();
        }
        self.run = Some(plan);
        self.assign_iterations();
        self.rebalance().await;
    }

    /// Gives each live worker its share of the iterations not yet reported,
    /// once at start and again whenever workers come or go.
    fn assign_iterations(&mut self) {
        let Some(total) = self.run.as_ref().and_then(|r| r.settings.iterations) else {
            return;
        };
        let done: u64 =
            self.retired_task_runs + self.slots.values().map(|s| s.task_runs).sum::<u64>();
        let live: Vec<&mut Slot> = self.slots.values_mut().filter(|s| !s.missing).collect();
        let shares = split_iterations(total.saturating_sub(done), live.len());
        for (slot, share) in live.into_iter().zip(shares) {
            slot.iterations = Some(slot.task_runs + share);
        }
    }

    /// Sends every live worker its users for the current run (absolute
    /// counts), after workers joined or were lost.
    async fn rebalance(&mut self) {
        let Some(plan) = self.run.clone() else { return };
        if self.stopping {
            return;
        }
        self.assign_iterations();
        let live: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.missing)
            .map(|(p, _)| p.clone())
            .collect();
        if live.is_empty() {
            return;
        }
        let rows = match assign_users(&plan.classes, plan.users, live.len()) {
            Ok(rows) => rows,
            Err(e) => {
                self.events.push(ClusterEvent::Fatal {
                    reason: e.to_string(),
                });
                return;
            }
        };
        let owned: Vec<Vec<Vec<u64>>> = live
            .iter()
            .map(|p| {
                self.slots
                    .get(p)
                    .map_or_else(Vec::new, |s| s.user_indexes.clone())
            })
            .collect();
        let counts: Vec<Vec<u64>> = rows
            .iter()
            .map(|row| row.iter().map(|c| c.users).collect())
            .collect();
        let indexes = assign_user_indexes(&owned, &counts);
        let rate = plan.spawn_rate_per_s / live.len() as f64;
        let worker_count = live.len() as u32;
        for ((peer, mut row), row_indexes) in live.iter().zip(rows).zip(indexes) {
            for (class, class_indexes) in row.iter_mut().zip(&row_indexes) {
                class.user_indexes = class_indexes.clone();
            }
            let mut settings = plan.settings.clone();
            let Some(slot) = self.slots.get_mut(peer) else {
                continue;
            };
            settings.iterations = slot.iterations;
            if let Some(total) = plan.settings.arrival_rate_per_s {
                let mine: u64 = row.iter().map(|c| c.users).sum();
                settings.arrival_rate_per_s = Some(total * mine as f64 / plan.users.max(1) as f64);
            }
            slot.user_indexes = row_indexes;
            let message = Message::Spawn {
                run_id: self.run_id,
                user_classes: row,
                spawn_rate_per_s: rate,
                settings,
                worker_count,
            };
            self.send(peer, &message).await;
        }
    }

    async fn stop(&mut self) {
        self.stopping = true;
        self.dirty = true;
        let run_id = self.run_id;
        self.broadcast(&Message::Stop { run_id }).await;
    }
}
