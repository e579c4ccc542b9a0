//! A worker's link to the master: joins, relays the master's orders to
//! Python as [`WorkerEvent`]s, sends its statistics every stats interval,
//! and heartbeats both ways. When the master falls silent it tells Python to
//! stop the users, then waits for a master and joins again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::master::Heartbeats;
use super::protocol::{ClassUsers, Load, Message, RunSettings, AIOTEST_VERSION, PROTOCOL_VERSION};
use super::secure::{ClusterKey, WorkerChannel, WorkerInbound};
use super::transport::{DealerTransport, PeerId, Received, Transport, TransportError};
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
    /// The key of the shared secret: the master must prove it holds it,
    /// and every frame is sealed under it. `None`: plain frames.
    pub key: Option<ClusterKey>,
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
    /// A heartbeat came from the master (Locust's `heartbeat_received`).
    HeartbeatReceived,
}

enum Ending {
    Quit,
    MasterLost,
}

struct Link {
    channel: WorkerChannel,
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
    /// Heartbeats, at the master's interval once acknowledged.
    beat: tokio::time::Interval,
}

/// The first wait after a failed connection attempt (a name that does not
/// resolve, a refused port); each further one doubles, up to the connect
/// timeout.
const FIRST_RETRY: Duration = Duration::from_millis(250);

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
        let mut retry_in = FIRST_RETRY;
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
                    let timed_out = matches!(e, TransportError::ConnectTimeout { .. });
                    let detail = if timed_out {
                        format!("no answer within {:?}", config.connect_timeout)
                    } else {
                        // A name that does not resolve yet (the master's
                        // Service before its pod is up), a refused port.
                        format!("{e}; retrying in {:.2} s", retry_in.as_secs_f64())
                    };
                    events.push(WorkerEvent::Waiting {
                        endpoint: endpoint.clone(),
                        detail,
                    });
                    if !timed_out {
                        tokio::time::sleep(retry_in).await;
                        retry_in = (retry_in * 2).min(config.connect_timeout.max(FIRST_RETRY));
                    }
                }
            }
        };
        let mut link = Link {
            channel: WorkerChannel::new(config.key.clone(), config.worker_id.clone()),
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
            beat: ticker(tokio::time::Instant::now(), config.heartbeats.interval),
        };
        link.join(&config).await;
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
        // Nothing goes out before the handshake completed.
        if let Some(frame) = self.channel.seal(message) {
            self.send_frame(frame).await;
        }
    }

    async fn send_frame(&mut self, frame: Vec<u8>) {
        // A lost master shows up as silence; the heartbeat check handles it.
        let _ = self.transport.send(&PeerId(Vec::new()), frame).await;
    }

    /// Says `Ready`, or the handshake's hello before the master is proven.
    async fn join(&mut self, config: &WorkerConfig) {
        let frame = self.channel.join(&ready(config));
        self.send_frame(frame).await;
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
        self.beat = ticker(start, config.heartbeats.interval);
        let mut report = ticker(start, config.stats_interval);
        let ctx = Context {
            config,
            recorder,
            events,
        };
        loop {
            let ending = tokio::select! {
                received = self.transport.recv() => match received {
                    Ok(Received::Frame(_, frame)) => self.on_frame(&ctx, &frame).await,
                    Ok(Received::Disconnected(_)) => None,
                    Err(_) => Some(self.master_lost(events)),
                },
                command = commands.recv() => self.on_command(recorder, command).await,
                _ = report.tick() => {
                    self.report_stats(recorder).await;
                    None
                }
                _ = self.beat.tick() => self.on_beat(&ctx).await,
            };
            if let Some(ending) = ending {
                return ending;
            }
        }
    }

    fn master_lost(&self, events: &CompletionQueue<WorkerEvent>) -> Ending {
        let silent_s = self.last_heard.elapsed().as_secs_f64();
        events.push(WorkerEvent::MasterLost { silent_s });
        Ending::MasterLost
    }

    /// A frame from the master; `Some` ends this connection's service.
    async fn on_frame(&mut self, ctx: &Context<'_>, frame: &[u8]) -> Option<Ending> {
        self.last_heard = Instant::now();
        let events = ctx.events;
        let message = match self.channel.open(frame) {
            WorkerInbound::Message(m) => m,
            WorkerInbound::Authenticated { proof } => {
                self.send_frame(proof).await;
                self.join(ctx.config).await;
                return None;
            }
            WorkerInbound::MasterUnproven { proof, reason } => {
                // Our proof goes anyway, so that the master can say why too.
                self.send_frame(proof).await;
                events.push(WorkerEvent::Refused { reason });
                return Some(Ending::Quit);
            }
            WorkerInbound::Rejoin => {
                self.joined = false;
                self.channel.reset();
                self.join(ctx.config).await;
                return None;
            }
            WorkerInbound::Dropped { reason, first } => {
                if first {
                    events.push(WorkerEvent::MessageDropped { reason });
                }
                return None;
            }
        };
        match message {
            Message::Ack {
                worker_index,
                heartbeat_interval_s,
                heartbeat_liveness,
            } => self.on_ack(
                events,
                worker_index,
                heartbeat_interval_s,
                heartbeat_liveness,
            ),
            Message::Refused { reason } => {
                events.push(WorkerEvent::Refused { reason });
                return Some(Ending::Quit);
            }
            Message::Rejoin => {
                self.joined = false;
                self.join(ctx.config).await;
            }
            Message::Spawn {
                run_id,
                user_classes,
                spawn_rate_per_s,
                settings,
                worker_count,
            } => {
                if let Some(reason) = spawn_problem(&user_classes, spawn_rate_per_s) {
                    events.push(WorkerEvent::MessageDropped { reason });
                    return None;
                }
                if run_id != self.run_id {
                    // A new run: what was recorded before belongs to no run.
                    let _ = ctx.recorder.take();
                    self.run_id = run_id;
                    self.task_runs_reported = self.task_runs_total;
                }
                let user_count = user_classes.iter().map(|c| c.users).sum();
                self.send(&Message::Spawning { run_id, user_count }).await;
                events.push(WorkerEvent::Spawn {
                    run_id,
                    user_classes,
                    spawn_rate_per_s,
                    settings,
                    worker_count,
                });
            }
            Message::Stop { run_id } => events.push(WorkerEvent::Stop { run_id }),
            Message::Quit => {
                events.push(WorkerEvent::Quit);
                return Some(Ending::Quit);
            }
            Message::Leaving => {
                events.push(WorkerEvent::MasterLeft);
                return Some(Ending::MasterLost);
            }
            Message::Heartbeat { .. } => events.push(WorkerEvent::HeartbeatReceived),
            Message::Custom { name, data } => events.push(WorkerEvent::Custom { name, data }),
            other => events.push(WorkerEvent::MessageDropped {
                reason: format!("the master may not send '{}'", other.kind()),
            }),
        }
        None
    }

    /// Joined: the master's heartbeat timing governs from here on, when it
    /// is one a clock can keep (a hostile or broken master's is refused).
    fn on_ack(
        &mut self,
        events: &CompletionQueue<WorkerEvent>,
        worker_index: u32,
        interval_s: f64,
        liveness: u32,
    ) {
        self.joined = true;
        if (MIN_HEARTBEAT_S..=MAX_HEARTBEAT_S).contains(&interval_s) && liveness > 0 {
            self.heartbeats = Heartbeats {
                interval: Duration::from_secs_f64(interval_s),
                liveness,
            };
            self.beat = ticker(tokio::time::Instant::now(), self.heartbeats.interval);
        } else {
            events.push(WorkerEvent::MessageDropped {
                reason: format!(
                    "the master's heartbeat interval {interval_s} s (liveness {liveness}) is \
                     outside {MIN_HEARTBEAT_S}-{MAX_HEARTBEAT_S} s: keeping this worker's"
                ),
            });
        }
        events.push(WorkerEvent::Joined { worker_index });
    }

    /// A command from Python; `Some` ends the link.
    async fn on_command(
        &mut self,
        recorder: &Recorder,
        command: Option<WorkerCommand>,
    ) -> Option<Ending> {
        match command {
            Some(WorkerCommand::Progress {
                state,
                user_count,
                task_runs,
                load,
            }) => {
                self.state = state;
                self.user_count = user_count;
                self.task_runs_total = task_runs;
                self.load = load;
            }
            Some(WorkerCommand::SpawningComplete { run_id, user_count }) => {
                self.user_count = user_count;
                self.send(&Message::SpawningComplete { run_id, user_count })
                    .await;
            }
            Some(WorkerCommand::Stopped { run_id }) => {
                self.user_count = 0;
                self.report_stats(recorder).await;
                self.send(&Message::Stopped { run_id }).await;
            }
            Some(WorkerCommand::Exception { message, traceback }) => {
                self.send(&Message::Exception { message, traceback }).await;
            }
            Some(WorkerCommand::Custom { name, data }) => {
                self.send(&Message::Custom { name, data }).await;
            }
            Some(WorkerCommand::Quit) | None => {
                self.report_stats(recorder).await;
                self.send(&Message::Quit).await;
                return Some(Ending::Quit);
            }
        }
        None
    }

    /// A heartbeat is due: the master's silence ends the link; else say
    /// `Ready` again until acknowledged, and beat.
    async fn on_beat(&mut self, ctx: &Context<'_>) -> Option<Ending> {
        if self.last_heard.elapsed() > self.heartbeats.timeout() {
            return Some(self.master_lost(ctx.events));
        }
        if !self.joined {
            self.join(ctx.config).await;
        }
        let beat = Message::Heartbeat {
            state: self.state.clone(),
            user_count: self.user_count,
            load: self.load,
        };
        self.send(&beat).await;
        None
    }
}

/// The most users one worker process takes: at about 4 KB each, a
/// million users already need 4 GB. More is a broken or hostile master.
const MAX_USERS_PER_WORKER: u64 = 1_000_000;

/// The fastest spawn rate a worker takes, in users per second.
const MAX_SPAWN_RATE_PER_S: f64 = 1_000_000.0;

/// Why a `spawn` cannot be obeyed, or `None`.
fn spawn_problem(classes: &[ClassUsers], spawn_rate_per_s: f64) -> Option<String> {
    let users = classes
        .iter()
        .try_fold(0u64, |sum, c| sum.checked_add(c.users));
    let fits = users.is_some_and(|n| n <= MAX_USERS_PER_WORKER)
        && classes
            .iter()
            .all(|c| c.user_indexes.is_empty() || c.user_indexes.len() as u64 == c.users);
    if !fits {
        return Some(format!(
            "a spawn of {} users (at most {MAX_USERS_PER_WORKER} a worker, one index each): refused",
            users.map_or("too many".to_string(), |n| n.to_string())
        ));
    }
    if !(spawn_rate_per_s > 0.0 && spawn_rate_per_s <= MAX_SPAWN_RATE_PER_S) {
        return Some(format!(
            "a spawn rate of {spawn_rate_per_s} users/s (above 0, at most \
             {MAX_SPAWN_RATE_PER_S}): refused"
        ));
    }
    None
}

/// What every handler of one connection reads.
struct Context<'a> {
    config: &'a WorkerConfig,
    recorder: &'a Recorder,
    events: &'a CompletionQueue<WorkerEvent>,
}

/// The heartbeat intervals a worker accepts from its master, in seconds:
/// below, the beats would flood the link; above, a lost master would go
/// unnoticed for hours (and far above, no clock can hold the interval).
const MIN_HEARTBEAT_S: f64 = 0.01;
const MAX_HEARTBEAT_S: f64 = 3600.0;

/// An interval whose first tick is one `period` after `start`; a late tick
/// is not made up for.
fn ticker(start: tokio::time::Instant, period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(start + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}
