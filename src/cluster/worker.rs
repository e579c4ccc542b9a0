//! A worker's link to the master: joins, relays the master's orders to
//! Python as [`WorkerEvent`]s, sends its statistics every stats interval,
//! and heartbeats both ways. When the master falls silent it tells Python to
//! stop the users, then waits for a master and joins again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::master::Heartbeats;
use super::protocol::{
    ClassUsers, Codec, Load, Message, ProtocolError, RunSettings, AIOTEST_VERSION, PROTOCOL_VERSION,
};
use super::transport::{DealerTransport, PeerId, Transport, TransportError};
use super::wire_stats::WireStats;
use crate::engine::CompletionQueue;
use crate::stats::Recorder;

/// Where the master is, and how this worker names itself.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub master_host: String,
    pub master_port: u16,
    pub worker_id: String,
    pub heartbeats: Heartbeats,
    /// Seconds between stats reports (1 s by default).
    pub stats_interval: Duration,
    /// How long one connection attempt waits before saying so again.
    pub connect_timeout: Duration,
    /// Signs and checks every frame (the shared secret).
    pub codec: Codec,
}

/// What Python tells the worker link.
pub enum WorkerCommand {
    /// The worker's state for heartbeats; `task_runs` is the running total.
    Progress {
        state: String,
        user_count: u64,
        task_runs: u64,
        load: Load,
    },
    SpawningComplete {
        run_id: u64,
        user_count: u64,
    },
    /// Users stopped: send the last stats report, then `Stopped`.
    Stopped {
        run_id: u64,
    },
    Exception {
        message: String,
        traceback: String,
    },
    Custom {
        name: String,
        data: serde_json::Value,
    },
    Quit,
}

/// What the worker link tells Python.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Still no master; said every `connect_timeout`.
    Waiting {
        endpoint: String,
        detail: String,
    },
    Joined {
        worker_index: u32,
    },
    Refused {
        reason: String,
    },
    Spawn {
        run_id: u64,
        user_classes: Vec<ClassUsers>,
        spawn_rate_per_s: f64,
        settings: RunSettings,
        worker_count: u32,
    },
    Stop {
        run_id: u64,
    },
    /// The master was silent for the heartbeat timeout: stop the users.
    MasterLost {
        silent_s: f64,
    },
    /// The master finished and left: stop the users, wait for the next one.
    MasterLeft,
    Quit,
    Custom {
        name: String,
        data: serde_json::Value,
    },
    MessageDropped {
        reason: String,
    },
}

enum Ending {
    Quit,
    MasterLost,
}

struct Link {
    codec: Codec,
    /// The master's timing once acknowledged; the worker's own before.
    heartbeats: Heartbeats,
    transport: DealerTransport,
    joined: bool,
    last_heard: Instant,
    run_id: u64,
    state: String,
    user_count: u64,
    load: Load,
    task_runs_total: u64,
    task_runs_reported: u64,
}

/// Runs the worker link until Python sends [`WorkerCommand::Quit`], the
/// master says quit or refuses this worker, or the command channel closes.
pub async fn run_worker(
    config: WorkerConfig,
    recorder: Recorder,
    events: Arc<CompletionQueue<WorkerEvent>>,
    mut commands: UnboundedReceiver<WorkerCommand>,
) {
    let endpoint = format!("tcp://{}:{}", config.master_host, config.master_port);
    let mut state = ("ready".to_string(), 0u64, 0u64, Load::default());
    loop {
        let transport = loop {
            match DealerTransport::connect(
                &config.master_host,
                config.master_port,
                config.connect_timeout,
            )
            .await
            {
                Ok(t) => break t,
                Err(e) => {
                    let detail = match &e {
                        TransportError::ConnectTimeout { .. } => {
                            format!("no answer within {:?}", config.connect_timeout)
                        }
                        other => other.to_string(),
                    };
                    events.push(WorkerEvent::Waiting {
                        endpoint: endpoint.clone(),
                        detail,
                    });
                    if !matches!(e, TransportError::ConnectTimeout { .. }) {
                        tokio::time::sleep(config.connect_timeout).await;
                    }
                }
            }
        };
        let mut link = Link {
            codec: config.codec.clone(),
            heartbeats: config.heartbeats,
            transport,
            joined: false,
            last_heard: Instant::now(),
            run_id: 0,
            state: state.0.clone(),
            user_count: state.1,
            load: state.3,
            task_runs_total: state.2,
            task_runs_reported: state.2,
        };
        link.send(&ready(&config)).await;
        match link.serve(&config, &recorder, &events, &mut commands).await {
            Ending::Quit => return,
            Ending::MasterLost => {
                state = (link.state, link.user_count, link.task_runs_total, link.load);
            }
        }
    }
}

fn ready(config: &WorkerConfig) -> Message {
    Message::Ready {
        aiotest_version: AIOTEST_VERSION.into(),
        protocol_version: PROTOCOL_VERSION,
        worker_id: config.worker_id.clone(),
    }
}

impl Link {
    async fn send(&mut self, message: &Message) {
        // A lost master shows up as silence; the heartbeat check handles it.
        let _ = self
            .transport
            .send(&PeerId(Vec::new()), self.codec.encode(message))
            .await;
    }

    async fn report_stats(&mut self, recorder: &Recorder) {
        if !self.joined {
            return;
        }
        let Some(stats) = recorder.take() else { return };
        let task_runs = self.task_runs_total - self.task_runs_reported;
        self.task_runs_reported = self.task_runs_total;
        let message = Message::Stats {
            run_id: self.run_id,
            stats: WireStats::from_stats(&stats),
            user_count: self.user_count,
            task_runs,
        };
        self.send(&message).await;
    }

    async fn serve(
        &mut self,
        config: &WorkerConfig,
        recorder: &Recorder,
        events: &CompletionQueue<WorkerEvent>,
        commands: &mut UnboundedReceiver<WorkerCommand>,
    ) -> Ending {
        // First ticks one period from now: the Ready just sent needs no echo.
        let start = tokio::time::Instant::now();
        let mut beat = tokio::time::interval_at(
            start + config.heartbeats.interval,
            config.heartbeats.interval,
        );
        let mut report =
            tokio::time::interval_at(start + config.stats_interval, config.stats_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.transport.recv() => {
                    let Ok((_, frame)) = received else {
                        events.push(WorkerEvent::MasterLost { silent_s: self.last_heard.elapsed().as_secs_f64() });
                        return Ending::MasterLost;
                    };
                    self.last_heard = Instant::now();
                    let message = match self.codec.decode(&frame) {
                        Ok(m) => m,
                        // The master refuses unauthenticated peers in the clear.
                        Err(ProtocolError::BadSignature) => match Message::decode(&frame) {
                            Ok(refusal @ Message::Refused { .. }) => refusal,
                            _ => {
                                events.push(WorkerEvent::MessageDropped { reason: ProtocolError::BadSignature.to_string() });
                                continue;
                            }
                        },
                        Err(e) => {
                            events.push(WorkerEvent::MessageDropped { reason: e.to_string() });
                            continue;
                        }
                    };
                    match message {
                        Message::Ack { worker_index, heartbeat_interval_s, heartbeat_liveness } => {
                            self.joined = true;
                            if heartbeat_interval_s.is_finite() && heartbeat_interval_s > 0.0 && heartbeat_liveness > 0 {
                                self.heartbeats = Heartbeats {
                                    interval: Duration::from_secs_f64(heartbeat_interval_s),
                                    liveness: heartbeat_liveness,
                                };
                                beat = tokio::time::interval_at(
                                    tokio::time::Instant::now() + self.heartbeats.interval,
                                    self.heartbeats.interval,
                                );
                            }
                            events.push(WorkerEvent::Joined { worker_index });
                        }
                        Message::Refused { reason } => {
                            events.push(WorkerEvent::Refused { reason });
                            return Ending::Quit;
                        }
                        Message::Rejoin => {
                            self.joined = false;
                            self.send(&ready(config)).await;
                        }
                        Message::Spawn { run_id, user_classes, spawn_rate_per_s, settings, worker_count } => {
                            if run_id != self.run_id {
                                // A new run: what was recorded before belongs to no run.
                                let _ = recorder.take();
                                self.run_id = run_id;
                                self.task_runs_reported = self.task_runs_total;
                            }
                            let user_count = user_classes.iter().map(|c| c.users).sum();
                            self.send(&Message::Spawning { run_id, user_count }).await;
                            events.push(WorkerEvent::Spawn { run_id, user_classes, spawn_rate_per_s, settings, worker_count });
                        }
                        Message::Stop { run_id } => events.push(WorkerEvent::Stop { run_id }),
                        Message::Quit => {
                            events.push(WorkerEvent::Quit);
                            return Ending::Quit;
                        }
                        Message::Leaving => {
                            events.push(WorkerEvent::MasterLeft);
                            return Ending::MasterLost;
                        }
                        Message::Heartbeat { .. } => {}
                        Message::Custom { name, data } => events.push(WorkerEvent::Custom { name, data }),
                        other => events.push(WorkerEvent::MessageDropped {
                            reason: format!("the master may not send '{}'", other.kind()),
                        }),
                    }
                }
                command = commands.recv() => match command {
                    Some(WorkerCommand::Progress { state, user_count, task_runs, load }) => {
                        self.state = state;
                        self.user_count = user_count;
                        self.task_runs_total = task_runs;
                        self.load = load;
                    }
                    Some(WorkerCommand::SpawningComplete { run_id, user_count }) => {
                        self.user_count = user_count;
                        self.send(&Message::SpawningComplete { run_id, user_count }).await;
                    }
                    Some(WorkerCommand::Stopped { run_id }) => {
                        self.user_count = 0;
                        self.report_stats(recorder).await;
                        self.send(&Message::Stopped { run_id }).await;
                    }
                    Some(WorkerCommand::Exception { message, traceback }) => {
                        self.send(&Message::Exception { message, traceback }).await;
                    }
                    Some(WorkerCommand::Custom { name, data }) => self.send(&Message::Custom { name, data }).await,
                    Some(WorkerCommand::Quit) | None => {
                        self.report_stats(recorder).await;
                        self.send(&Message::Quit).await;
                        return Ending::Quit;
                    }
                },
                _ = report.tick() => self.report_stats(recorder).await,
                _ = beat.tick() => {
                    let silent = self.last_heard.elapsed();
                    if silent > self.heartbeats.timeout() {
                        events.push(WorkerEvent::MasterLost { silent_s: silent.as_secs_f64() });
                        return Ending::MasterLost;
                    }
                    if !self.joined {
                        self.send(&ready(config)).await;
                    }
                    let beat = Message::Heartbeat { state: self.state.clone(), user_count: self.user_count, load: self.load };
                    self.send(&beat).await;
                }
            }
        }
    }
}
