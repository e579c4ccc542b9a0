//! The master and worker links, as Python classes. Both run on the engine's
//! runtime; Python sends commands and drains events (JSON objects) when the
//! wake-up descriptor turns readable.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use serde::Deserialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::engine::PyEngine;
use crate::cluster::master::{run_master, ClusterEvent, Heartbeats, MasterCommand, RunPlan};
use crate::cluster::plan::ClassPlan;
use crate::cluster::protocol::{Codec, Load, RunSettings};
use crate::cluster::transport::RouterTransport;
use crate::cluster::worker::{run_worker, WorkerCommand, WorkerConfig, WorkerEvent};
use crate::engine::CompletionQueue;

fn heartbeats(interval_s: f64, liveness: u32) -> PyResult<Heartbeats> {
    if !(interval_s.is_finite() && interval_s > 0.0) || liveness == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "--heartbeat-interval must be above 0 s and --heartbeat-liveness at least 1",
        ));
    }
    Ok(Heartbeats {
        interval: Duration::from_secs_f64(interval_s),
        liveness,
    })
}

fn to_json<T: serde::Serialize>(items: Vec<T>) -> Vec<String> {
    items
        .iter()
        .map(|e| serde_json::to_string(e).expect("events serialize"))
        .collect()
}

fn parse_data(data_json: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(data_json).map_err(|e| {
        pyo3::exceptions::PyValueError::new_err(format!("message data is not JSON: {e}"))
    })
}

/// The master's link (`aiotest._core.Master`). See `_core.pyi`.
#[pyclass(name = "Master", module = "aiotest._core", frozen)]
pub struct PyMaster {
    commands: UnboundedSender<MasterCommand>,
    events: Arc<CompletionQueue<ClusterEvent>>,
}

#[derive(Deserialize)]
struct PlanJson {
    classes: Vec<ClassPlan>,
    users: u64,
    spawn_rate_per_s: f64,
    settings: RunSettings,
}

#[pymethods]
impl PyMaster {
    #[new]
    #[pyo3(signature = (engine, *, bind_host, bind_port, heartbeat_interval_s, heartbeat_liveness, secret = None))]
    fn new(
        py: Python<'_>,
        engine: &PyEngine,
        bind_host: String,
        bind_port: u16,
        heartbeat_interval_s: f64,
        heartbeat_liveness: u32,
        secret: Option<String>,
    ) -> PyResult<Self> {
        let beats = heartbeats(heartbeat_interval_s, heartbeat_liveness)?;
        let rt = engine.inner.runtime().handle().clone();
        let transport = py
            .detach(|| rt.block_on(RouterTransport::bind(&bind_host, bind_port)))
            .map_err(|e| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "{e}: pick another --master-bind-port"
                ))
            })?;
        let events = Arc::new(CompletionQueue::new()?);
        let (tx, rx) = unbounded_channel();
        rt.spawn(run_master(
            transport,
            Codec::new(secret.as_deref()),
            beats,
            engine.inner.recorder(),
            events.clone(),
            rx,
        ));
        Ok(Self {
            commands: tx,
            events,
        })
    }

    fn wakeup_fd(&self) -> i32 {
        self.events.wakeup_fd()
    }

    /// Events since the last call, each a JSON object with an `event` key.
    fn drain_events(&self) -> Vec<String> {
        to_json(self.events.drain())
    }

    /// The cluster's status as JSON (see `ClusterStatus`).
    fn status(&self, py: Python<'_>) -> PyResult<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.commands
            .send(MasterCommand::Status(tx))
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("the master has stopped"))?;
        let status = py
            .detach(move || rx.recv_timeout(Duration::from_secs(10)))
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("the master did not answer"))?;
        Ok(serde_json::to_string(&status).expect("status serializes"))
    }

    /// Starts a run, or with `new_run=False` changes the running one (a
    /// load shape's step): `plan_json` holds `classes` (name, weight,
    /// fixed_count), `users`, `spawn_rate_per_s` and `settings`. Raises
    /// ValueError for a bad plan.
    #[pyo3(signature = (plan_json, *, new_run = true))]
    fn start(&self, plan_json: &str, new_run: bool) -> PyResult<()> {
        let p: PlanJson = serde_json::from_str(plan_json)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("run plan: {e}")))?;
        let plan = RunPlan {
            classes: p.classes,
            users: p.users,
            spawn_rate_per_s: p.spawn_rate_per_s,
            settings: p.settings,
        };
        let command = if new_run {
            MasterCommand::Start(plan)
        } else {
            MasterCommand::Update(plan)
        };
        let _ = self.commands.send(command);
        Ok(())
    }

    fn stop(&self) {
        let _ = self.commands.send(MasterCommand::Stop);
    }

    /// Sends a `custom` message (`data_json`: any JSON text) to the worker
    /// with `worker_index`, or to every live worker when it is None. Raises
    /// ValueError for text that is not JSON.
    #[pyo3(signature = (name, data_json, worker_index = None))]
    fn send_message(
        &self,
        name: String,
        data_json: &str,
        worker_index: Option<u32>,
    ) -> PyResult<()> {
        let data = parse_data(data_json)?;
        let _ = self.commands.send(MasterCommand::Custom {
            worker_index,
            name,
            data,
        });
        Ok(())
    }

    /// Tells every worker this master is leaving (they wait for the next
    /// one) and ends the link; returns once that is sent (2 s at most).
    fn quit(&self, py: Python<'_>) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.commands.send(MasterCommand::Quit(tx)).is_ok() {
            let _ = py.detach(move || rx.recv_timeout(Duration::from_secs(2)));
        }
    }
}

/// A worker's link (`aiotest._core.Worker`). See `_core.pyi`.
#[pyclass(name = "Worker", module = "aiotest._core", frozen)]
pub struct PyWorker {
    commands: UnboundedSender<WorkerCommand>,
    events: Arc<CompletionQueue<WorkerEvent>>,
}

#[pymethods]
impl PyWorker {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (engine, *, master_host, master_port, worker_id, heartbeat_interval_s, heartbeat_liveness, stats_interval_s = 1.0, connect_timeout_s = 3.0, secret = None))]
    fn new(
        engine: &PyEngine,
        master_host: String,
        master_port: u16,
        worker_id: String,
        heartbeat_interval_s: f64,
        heartbeat_liveness: u32,
        stats_interval_s: f64,
        connect_timeout_s: f64,
        secret: Option<String>,
    ) -> PyResult<Self> {
        let config = WorkerConfig {
            master_host,
            master_port,
            worker_id,
            heartbeats: heartbeats(heartbeat_interval_s, heartbeat_liveness)?,
            stats_interval: Duration::from_secs_f64(stats_interval_s.max(0.05)),
            connect_timeout: Duration::from_secs_f64(connect_timeout_s.max(0.1)),
            codec: Codec::new(secret.as_deref()),
        };
        let events = Arc::new(CompletionQueue::new()?);
        let (tx, rx) = unbounded_channel();
        engine.inner.runtime().spawn(run_worker(
            config,
            engine.inner.recorder(),
            events.clone(),
            rx,
        ));
        Ok(Self {
            commands: tx,
            events,
        })
    }

    fn wakeup_fd(&self) -> i32 {
        self.events.wakeup_fd()
    }

    /// Events since the last call, each a JSON object with an `event` key.
    fn drain_events(&self) -> Vec<String> {
        to_json(self.events.drain())
    }

    /// The worker's state for its heartbeats; `task_runs` is a running total.
    fn progress(
        &self,
        state: String,
        user_count: u64,
        task_runs: u64,
        cpu_percent: f64,
        memory_bytes: u64,
    ) {
        let load = Load {
            cpu_percent,
            memory_bytes,
        };
        let _ = self.commands.send(WorkerCommand::Progress {
            state,
            user_count,
            task_runs,
            load,
        });
    }

    fn spawning_complete(&self, run_id: u64, user_count: u64) {
        let _ = self
            .commands
            .send(WorkerCommand::SpawningComplete { run_id, user_count });
    }

    /// Users stopped: sends the last stats report, then `stopped`.
    fn stopped(&self, run_id: u64) {
        let _ = self.commands.send(WorkerCommand::Stopped { run_id });
    }

    fn exception(&self, message: String, traceback: String) {
        let _ = self
            .commands
            .send(WorkerCommand::Exception { message, traceback });
    }

    /// Sends a `custom` message (`data_json`: any JSON text) to the master.
    /// Raises ValueError for text that is not JSON.
    fn send_message(&self, name: String, data_json: &str) -> PyResult<()> {
        let data = parse_data(data_json)?;
        let _ = self.commands.send(WorkerCommand::Custom { name, data });
        Ok(())
    }

    /// Sends the last stats report and `quit`, and ends the link.
    fn quit(&self) {
        let _ = self.commands.send(WorkerCommand::Quit);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMaster>()?;
    m.add_class::<PyWorker>()?;
    Ok(())
}
