"""Distributed mode: the master's backend and the worker process.

The Rust links (``Master``, ``Worker``) speak the protocol of
docs/protocol.md; this module does what only Python can: on a worker, spawn
and stop the users each ``spawn`` asks for; on the master, turn the link's
events into a run's milestones for the :class:`~aiotest.lifecycle.RunDriver`
and into logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable
from typing import Any

from . import data as feeders
from ._bridge import pump_events
from ._core import ClusterStatus, Engine, Master, WorkerStatus
from .env import Environment
from .lifecycle import Backend, StopReason
from .messages import REPORT_TO_MASTER, hub
from .options import RunOptions
from .runner import Runner
from .shape import LoadStep

log = logging.getLogger("aiotest.cluster")

#: Seconds between "waiting for ..." log lines.
WAITING_LOG_INTERVAL_S = 5.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------- master


def workers_table(status: ClusterStatus) -> str:
    """The master's console table of its workers."""
    lines = [f"Workers: {status.live_workers} connected, {status.user_count} users"]
    lines.append(f"  {'#':>3}  {'state':<9} {'users':>6} {'cpu %':>6} {'mem MB':>7}  id")
    for w in sorted(status.workers, key=lambda w: w.index):
        lines.append(
            f"  {w.index:>3}  {w.state:<9} {w.user_count:>6} {w.cpu_percent:>6.1f} "
            f"{w.memory_bytes / 1e6:>7.1f}  {w.worker_id}"
        )
    return "\n".join(lines)


def worker_dict(w: WorkerStatus) -> dict[str, Any]:
    """One worker as the web UI's ``/stats/requests`` lists it (docs/web.md):
    Locust's keys (``id``, ``state``, ``user_count``, ``cpu_usage`` in %,
    ``memory_usage`` in bytes) and ours."""
    return {
        "id": w.worker_id,
        "cpu_usage": w.cpu_percent,
        "memory_usage": w.memory_bytes,
        "index": w.index,
        "worker_id": w.worker_id,
        "state": w.state,
        "user_count": w.user_count,
        "cpu_percent": w.cpu_percent,
        "memory_bytes": w.memory_bytes,
        "last_heartbeat_s": w.last_heartbeat_s,
    }


class MasterRunner(Runner):
    """The master's ``environment.runner`` (Locust's ``MasterRunner``): the
    cluster's state, users and workers, and messages to them. It runs no
    users itself.

    Attributes:
        backend: The cluster backend, once the master's port is bound.
    """

    role = "master"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.backend: ClusterBackend | None = None

    @property
    def state(self) -> str:  # type: ignore[override]
        return self.backend.state if self.backend is not None else "ready"

    @property
    def user_count(self) -> int:
        return self.backend.user_count if self.backend is not None else 0

    @property
    def client_id(self) -> str:
        return "master"

    @property
    def worker_count(self) -> int:  # type: ignore[override]
        """Workers connected now."""
        return (
            self.backend.cluster(with_workers=False).live_workers if self.backend is not None else 0
        )

    @property
    def clients(self) -> dict[str, WorkerStatus]:
        """The connected workers by id (``index``, ``state``, ``user_count``,
        ``cpu_percent``, ``memory_bytes``)."""
        if self.backend is None:
            return {}
        return {w.worker_id: w for w in self.backend.cluster().workers if w.state != "missing"}

    def send_message(self, name: str, data: Any = None, client_id: Any = None) -> None:
        """Sends to the worker with id (or index) ``client_id``, or to
        every worker when None.

        Raises:
            ValueError: No connected worker has that id.
            TypeError: ``data`` is not JSON-serialisable.
        """
        index: int | None = None
        if isinstance(client_id, int):
            index = client_id
        elif client_id is not None:
            worker = self.clients.get(str(client_id))
            if worker is None:
                raise ValueError(f"send_message: no connected worker has the id {client_id!r}")
            index = worker.index
        hub.send(self.environment, name, data, index)


def _on_worker_report(environment: Environment, msg: Any, **_: Any) -> None:
    """A worker's ``report_to_master`` data: fires ``worker_report`` with
    the worker's id."""
    runner = environment.runner
    workers = (
        runner.backend.cluster().workers
        if isinstance(runner, MasterRunner) and runner.backend
        else []
    )
    worker = next((w for w in workers if w.index == msg.node_id), None)
    client_id = worker.worker_id if worker is not None else str(msg.node_id)
    environment.events.worker_report.fire(client_id=client_id, data=msg.data)


class ClusterBackend(Backend):
    """Runs the users on the workers of a master link; its engine holds the
    merged statistics. Make it with :meth:`open`, and :meth:`close` it.

    Args:
        env: The run object (its events fire on the master too).
        opts: The master's options (heartbeats, stop timeout, settings).
        master: The bound ``Master``.
        engine: The master's engine (statistics only: it runs no users).
    """

    distributed = True

    def __init__(self, env: Environment, opts: RunOptions, master: Master, engine: Engine) -> None:
        super().__init__(engine)
        self.env, self.opts, self.master = env, opts, master
        self._run_id = 0
        self._state = "ready"
        self._plan: dict[str, Any] = {}
        self._all_stopped = asyncio.Event()
        runner = env.runner if isinstance(env.runner, MasterRunner) else MasterRunner(env)
        runner.backend = self
        env.runner = self.runner = runner
        pump_events(master, self._on_event)
        hub.connect(master.send_message, "master")
        if not hub.has_handler(REPORT_TO_MASTER):
            hub.register(REPORT_TO_MASTER, _on_worker_report)

    @classmethod
    def open(cls, env: Environment, opts: RunOptions) -> ClusterBackend:
        """Binds the master's port and starts its link.

        Raises:
            OSError: The port cannot be bound (the message says to pick another).
        """
        engine = Engine(worker_threads=2)
        master = Master(
            engine,
            bind_host=opts.master_bind_host,
            bind_port=opts.master_bind_port,
            heartbeat_interval_s=opts.heartbeat_interval_s,
            heartbeat_liveness=opts.heartbeat_liveness,
            secret=opts.secret,
        )
        env.use_engine(engine)
        if not opts.secret and opts.master_bind_host not in _LOOPBACK:
            log.warning(
                "The master listens on %s without a shared secret: any host that reaches port %d can join",
                opts.master_bind_host,
                opts.master_bind_port,
            )
        return cls(env, opts, master, engine)

    def close(self) -> None:
        """Tells the workers this master leaves, and ends the link."""
        hub.connect(None)
        self.master.quit()
        asyncio.get_running_loop().remove_reader(self.master.wakeup_fd())

    def cluster(self, *, with_workers: bool = True) -> ClusterStatus:
        """The cluster's status now (see ``Master.status``); its
        ``workers`` only ``with_workers``."""
        return self.master.status(with_workers=with_workers)

    # -- what the link tells

    def _on_event(self, e: dict[str, Any]) -> None:
        kind = e["event"]
        if kind in ("spawning_complete", "all_users_stopped", "iterations_reached", "all_stopped"):
            if e["run_id"] == self._run_id:
                self._on_milestone(kind, e)
        elif kind == "worker_joined":
            log.info("Worker %d joined (%s)", e["index"], e["worker_id"])
            feeders.worker_joined(self.env, e["index"])
            self.env.events.worker_connect.fire(client_id=e["worker_id"])
        elif kind == "worker_missing":
            log.warning(
                "Worker %d is missing: silent for %.1fs; its users move to the others",
                e["index"],
                e["silent_s"],
            )
            feeders.worker_lost(e["index"])
        elif kind == "worker_left":
            log.info("Worker %d left", e["index"])
            feeders.worker_lost(e["index"])
        elif kind == "worker_refused":
            log.error("Refused worker %s: %s", e["worker_id"], e["reason"])
        elif kind == "exception":
            log.error(
                "Worker %d: error in user code: %s\n%s", e["index"], e["message"], e["traceback"]
            )
        elif kind == "custom":
            hub.deliver(self.env, e["name"], e["data"], e["index"])
        elif kind == "message_dropped":
            log.warning("Dropped a message: %s", e["reason"])
        elif kind == "heartbeat_sent":
            now = time.time()
            for worker_id in e["worker_ids"]:
                self.env.events.heartbeat_sent.fire(client_id=worker_id, timestamp=now)
        elif kind == "fatal":
            log.error("Master link failed: %s", e["reason"])
            self.fatal.set()
            self.end(StopReason.STOPPED)

    def _on_milestone(self, kind: str, e: dict[str, Any]) -> None:
        if kind == "spawning_complete":
            if self._state == "spawning":
                self._state = "running"
            self.env.events.spawning_complete.fire(user_count=e["user_count"])
            self.on_spawned()
        elif kind == "all_users_stopped":
            self.end(StopReason.ALL_USERS_STOPPED)
        elif kind == "iterations_reached":
            self.end(StopReason.ITERATIONS)
        elif kind == "all_stopped":
            self._all_stopped.set()

    # -- the Backend interface

    def readiness(self) -> tuple[bool, str]:
        """Ready once ``--expect-workers`` workers are connected; not
        while fewer are."""
        live, expected = self.cluster(with_workers=False).live_workers, self.opts.expect_workers
        if live >= expected:
            return True, f"ready: {live} workers connected"
        return False, f"waiting for workers: {live} of {expected} connected"

    async def ready(self, stop: asyncio.Event) -> int | None:
        """Waits for ``--expect-workers`` workers (at most
        ``--expect-workers-max-wait``); exit code 1 when too few came, 0
        when stopped while waiting, 2 when ``environment.context`` is not
        JSON."""
        opts = self.opts
        started = time.monotonic()
        last_log = None
        while (live := self.cluster(with_workers=False).live_workers) < opts.expect_workers:
            waited = time.monotonic() - started
            if opts.expect_workers_max_wait_s and waited >= opts.expect_workers_max_wait_s:
                print(
                    f"error: only {live} of {opts.expect_workers} workers connected within "
                    f"{opts.expect_workers_max_wait_s:g}s: start more workers or lower --expect-workers",
                    file=sys.stderr,
                )
                return 1
            if last_log is None or waited - last_log >= WAITING_LOG_INTERVAL_S:
                log.info("Waiting for workers: %d of %d connected", live, opts.expect_workers)
                last_log = waited
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)
            if stop.is_set():
                return 0
        try:
            json.dumps(self.env.context)
        except (TypeError, ValueError) as exc:
            print(
                f"error: environment.context must hold JSON values (str, numbers, lists, dicts): {exc}",
                file=sys.stderr,
            )
            return 2
        return None

    def can_start(self) -> str | None:
        if self.cluster(with_workers=False).live_workers == 0:
            return "no worker is connected yet: start workers with --worker, then retry"
        return None

    def where(self, env: Environment) -> str:
        return f"over {self.cluster(with_workers=False).live_workers} workers"

    async def start(self, step: LoadStep, *, arrival_rate_per_s: float | None) -> None:
        opts, env = self.opts, self.env
        self._plan = {
            **self._step_plan(step),
            "settings": {
                "host": env.host or opts.host,
                "tags": sorted(env.tags),
                "exclude_tags": sorted(env.exclude_tags),
                "stop_timeout_s": env.stop_timeout_s,
                "iterations": opts.iterations,
                # The web UI's start form may have changed them for this run.
                "options": dict((env.parsed_options or opts).custom_options),
                "context": env.context,
                "arrival_rate_per_s": arrival_rate_per_s,
            },
        }
        self._run_id += 1
        self.runner.target_user_count = step.users
        self._state = "spawning"
        self._all_stopped.clear()
        self.master.start(self._plan)

    def _step_plan(self, step: LoadStep) -> dict[str, Any]:
        """The part of the run plan a load step changes."""
        return {
            "classes": [
                {"name": c.__name__, "weight": float(c.weight), "fixed_count": int(c.fixed_count)}
                for c in self.env.user_classes
                if step.classes is None or c in step.classes
            ],
            "users": step.users,
            "spawn_rate_per_s": step.spawn_rate,
        }

    def set_load(self, step: LoadStep) -> None:
        self._plan.update(self._step_plan(step))
        self.runner.target_user_count = step.users
        self._state = "spawning"
        self.master.start(self._plan, new_run=False)

    def set_arrival_rate(self, rate_per_s: float) -> None:
        settings = self._plan["settings"]
        if settings["arrival_rate_per_s"] != rate_per_s:
            settings["arrival_rate_per_s"] = rate_per_s
            self.master.start(self._plan, new_run=False)

    async def stop(self, reason: StopReason) -> None:
        """Stops the workers' users; waits for all of them to confirm at
        most the stop timeout plus a heartbeat timeout plus 10 s."""
        opts = self.opts
        log.info("Stopping the workers (%s)", reason.value)
        self._state = "stopping"
        self.master.stop()
        grace_s = opts.stop_timeout_s + opts.heartbeat_interval_s * opts.heartbeat_liveness + 10
        try:
            await asyncio.wait_for(self._all_stopped.wait(), timeout=grace_s)
        except asyncio.TimeoutError:
            log.warning("Not every worker confirmed stopping; reporting what arrived")
        self._state = "stopped"

    @property
    def state(self) -> str:
        return self._state

    @property
    def user_count(self) -> int:
        return self.cluster(with_workers=False).user_count

    @property
    def task_runs(self) -> int:
        return self.cluster(with_workers=False).task_runs

    def status(self) -> dict[str, Any]:
        st = self.cluster()
        return {
            "state": self._state,
            "user_count": st.user_count,
            "task_runs": st.task_runs,
            "worker_count": st.live_workers,
            "workers": [worker_dict(w) for w in st.workers],
        }

    def metrics_status(self) -> dict[str, Any]:
        status = super().metrics_status()
        status["workers_by_state"] = self.cluster(with_workers=False).workers_by_state
        return status

    def describe(self) -> str:
        return workers_table(self.cluster())


class LocalWorkers:
    """``--processes N``: N worker processes on this machine, stopped when
    the block ends.

    Args:
        opts: This process's options; the children connect to its
            ``--master-bind-port`` (to ``--master-port`` with ``--worker``).
    """

    def __init__(self, opts: RunOptions) -> None:
        self.count = (os.cpu_count() or 1) if opts.processes == -1 else int(opts.processes or 1)
        if opts.worker:
            self.master_options = opts
            port = opts.master_port
        else:
            bind = "127.0.0.1" if opts.master_bind_host == "*" else opts.master_bind_host
            self.master_options = opts.replace(
                master_bind_host=bind, expect_workers=max(opts.expect_workers, self.count)
            )
            port = opts.master_bind_port
        self._argv = _worker_argv(opts, port)
        # The secret goes through the environment, where `ps` does not show it.
        self._env = {**os.environ, "AIOTEST_SECRET": opts.secret} if opts.secret else None
        self.children: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> LocalWorkers:
        for _ in range(self.count):
            self.children.append(await asyncio.create_subprocess_exec(*self._argv, env=self._env))
        return self

    async def __aexit__(self, *_: object) -> None:
        for c in self.children:
            if c.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.terminate()
        for c in self.children:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(c.wait(), timeout=10)

    async def wait(self) -> int:
        """Waits for every child to exit; returns the highest exit code."""
        codes = await asyncio.gather(*(c.wait() for c in self.children))
        return max(codes, default=0)

    async def supervise(self, master: Awaitable[int]) -> int:
        """Runs ``master`` (the master's whole run); exit code 1 when every
        child exits first (workers outlive runs, so they failed)."""
        run = asyncio.ensure_future(master)
        gone = asyncio.ensure_future(self.wait())
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            print(
                "error: every local worker exited before the run ended; see their errors above",
                file=sys.stderr,
            )
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
            return 1
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        return run.result()


def _worker_argv(opts: RunOptions, master_port: int) -> list[str]:
    """The command line of a local worker for ``--processes``."""
    return [
        sys.executable,
        "-m",
        "aiotest",
        "-f",
        opts.aiotestfile,
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(master_port),
        "--heartbeat-interval",
        str(opts.heartbeat_interval_s),
        "--heartbeat-liveness",
        str(opts.heartbeat_liveness),
        "-L",
        opts.loglevel,
        # The parent serves the endpoints; children would fight for its port.
        "--no-web-server",
    ]
