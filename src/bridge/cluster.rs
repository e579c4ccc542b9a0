//! The master and worker links, as Python classes. Both run on the engine's
//! runtime; Python sends commands and drains events (dicts with an `event`
//! key, docs/protocol.md) when the wake-up descriptor turns readable.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use serde::Deserialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::engine::PyEngine;
use super::errors::{bad_argument, bad_shape, stopped, transport_error};
use crate::cluster::master::{
    run_master, ClusterEvent, ClusterStatus, Heartbeats, MasterCommand, RunPlan, WorkerStatus,
};
use crate::cluster::plan::ClassPlan;
use crate::cluster::protocol::{Load, RunSettings};
use crate::cluster::secure::ClusterKey;
use crate::cluster::transport::RouterTransport;
use crate::cluster::worker::{run_worker, WorkerCommand, WorkerConfig, WorkerEvent};
use crate::engine::CompletionQueue;

fn heartbeats(interval_s: f64, liveness: u32) -> PyResult<Heartbeats> {
    if !(interval_s.is_finite() && interval_s > 0.0) || liveness == 0 {
        return Err(bad_argument(
            "--heartbeat-interval must be above 0 s and --heartbeat-liveness at least 1",
        ));
    }
    Ok(Heartbeats {
        interval: Duration::from_secs_f64(interval_s),
        liveness,
    })
}

/// Events as Python dicts (their serde form: an `event` key and fields).
fn to_dicts<'py, T: serde::Serialize>(
    py: Python<'py>,
    items: Vec<T>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    items
        .iter()
        .map(|e| Ok(pythonize::pythonize(py, e)?))
        .collect()
}

/// One worker as the master sees it (`aiotest._core.WorkerStatus`).
#[pyclass(name = "WorkerStatus", module = "aiotest._core", frozen, get_all)]
pub struct PyWorkerStatus {
    index: u32,
    worker_id: String,
    /// ready, spawning, running, stopped or missing.
    state: String,
    user_count: u64,
    cpu_percent: f64,
    memory_bytes: u64,
    /// Seconds since anything arrived from it.
    last_heartbeat_s: f64,
}

impl From<WorkerStatus> for PyWorkerStatus {
    fn from(w: WorkerStatus) -> Self {
        Self {
            index: w.index,
            worker_id: w.worker_id,
            state: w.state,
            user_count: w.user_count,
            cpu_percent: w.cpu_percent,
            memory_bytes: w.memory_bytes,
            last_heartbeat_s: w.last_heartbeat_s,
        }
    }
}

/// The cluster at a glance (`aiotest._core.ClusterStatus`); see `_core.pyi`.
#[pyclass(name = "ClusterStatus", module = "aiotest._core", frozen, get_all)]
pub struct PyClusterStatus {
    workers: Vec<Py<PyWorkerStatus>>,
    /// How many workers are in each state, sorted by state.
    workers_by_state: Vec<(String, u64)>,
    live_workers: usize,
    run_id: u64,
    user_count: u64,
    task_runs: u64,
    spawning_complete: bool,
    all_stopped: bool,
}

impl PyClusterStatus {
    /// `st` for Python; its worker rows only `with_workers`.
    fn new(py: Python<'_>, st: ClusterStatus, with_workers: bool) -> PyResult<Self> {
        let mut by_state = std::collections::BTreeMap::<String, u64>::new();
        for w in &st.workers {
            *by_state.entry(w.state.clone()).or_default() += 1;
        }
        let rows = if with_workers { st.workers } else { Vec::new() };
        Ok(Self {
            workers: rows
                .into_iter()
                .map(|w| Py::new(py, PyWorkerStatus::from(w)))
                .collect::<PyResult<_>>()?,
            workers_by_state: by_state.into_iter().collect(),
            live_workers: st.live_workers,
            run_id: st.run_id,
            user_count: st.user_count,
            task_runs: st.task_runs,
            spawning_complete: st.spawning_complete,
            all_stopped: st.all_stopped,
        })
    }
}

fn parse_data(data_json: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(data_json).map_err(|e| bad_shape("message data is not JSON", e))
}

/// The master's link (`aiotest._core.Master`). See `_core.pyi`.
#[pyclass(name = "Master", module = "aiotest._core", frozen)]
pub struct PyMaster {
    commands: UnboundedSender<MasterCommand>,
    events: Arc<CompletionQueue<ClusterEvent>>,
}

#[derive(Deserialize)]
struct PlanDict {
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
            .map_err(transport_error)?;
        let events = Arc::new(CompletionQueue::new()?);
        let (tx, rx) = unbounded_channel();
        rt.spawn(run_master(
            transport,
            cluster_key(secret.as_deref()),
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

    /// Events since the last call, each a dict with an `event` key.
    fn drain_events<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        to_dicts(py, self.events.drain())
    }

    /// The cluster's status now; `workers` is empty unless `with_workers`.
    /// Raises RuntimeError when the master has stopped or does not answer
    /// within 10 s.
    // NOTE: a worker row is a Python object: at 5,000 workers, callers that
    // need only counts (readiness, user count) made 5,000 a call.
    #[pyo3(signature = (*, with_workers = true))]
    fn status(&self, py: Python<'_>, with_workers: bool) -> PyResult<PyClusterStatus> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.commands
            .send(MasterCommand::Status(tx))
            .map_err(|_| stopped("the master has stopped"))?;
        let status = py
            .detach(move || rx.recv_timeout(Duration::from_secs(10)))
            .map_err(|_| stopped("the master did not answer"))?;
        PyClusterStatus::new(py, status, with_workers)
    }

    /// Starts a run, or with `new_run=False` changes the running one (a
    /// load shape's step): `plan` holds `classes` (name, weight,
    /// fixed_count), `users`, `spawn_rate_per_s` and `settings`
    /// (docs/protocol.md, `spawn`). Raises ValueError for a bad plan.
    #[pyo3(signature = (plan, *, new_run = true))]
    fn start(&self, plan: &Bound<'_, PyAny>, new_run: bool) -> PyResult<()> {
        let p: PlanDict = pythonize::depythonize(plan).map_err(|e| bad_shape("run plan", e))?;
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
            key: cluster_key(secret.as_deref()),
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

    /// Events since the last call, each a dict with an `event` key.
    fn drain_events<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        to_dicts(py, self.events.drain())
    }

    /// The worker's state for its heartbeats; `task_runs` is a running total.
    #[pyo3(signature = (*, state, user_count, task_runs, cpu_percent, memory_bytes))]
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
    m.add_class::<PyClusterStatus>()?;
    m.add_class::<PyWorkerStatus>()?;
    m.add_class::<PyWorker>()?;
    Ok(())
}

/// The cluster key of `--secret` (`AIOTEST_SECRET`); none for an empty one.
fn cluster_key(secret: Option<&str>) -> Option<ClusterKey> {
    secret.filter(|s| !s.is_empty()).map(ClusterKey::derive)
}
