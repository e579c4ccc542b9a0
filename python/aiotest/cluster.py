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
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._core import ClusterStatus, Engine, Master, Worker, WorkerStatus
from .data import reset_all as reset_feeders
from .env import Environment
from .lifecycle import Backend, StopReason
from .messages import hub
from .options import RunOptions
from .runner import LocalRunner
from .shape import LoadStep
from .user import User

log = logging.getLogger("aiotest.cluster")

#: Seconds between a worker's progress reports (half the stats interval).
PROGRESS_INTERVAL_S = 0.5
#: Seconds between "waiting for ..." log lines.
WAITING_LOG_INTERVAL_S = 5.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _pump_events(link: Any, handle: Callable[[dict[str, Any]], None]) -> None:
    """Calls ``handle`` with each event of ``link`` (a ``Master`` or
    ``Worker``) as it arrives, on the running loop."""

    def drain() -> None:
        for event in link.drain_events():
            handle(event)

    asyncio.get_running_loop().add_reader(link.wakeup_fd(), drain)


class _Load:
    """This process's CPU (% of one core since the last call) and RSS."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def sample(self) -> tuple[float, int]:
        cpu, wall = time.process_time(), time.monotonic()
        percent = 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        self._cpu, self._wall = cpu, wall
        try:
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            rss = 0
        return percent, rss


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
    """One worker as the web UI's ``/stats/requests`` lists it (docs/web.md)."""
    return {
        "index": w.index,
        "worker_id": w.worker_id,
        "state": w.state,
        "user_count": w.user_count,
        "cpu_percent": w.cpu_percent,
        "memory_bytes": w.memory_bytes,
        "last_heartbeat_s": w.last_heartbeat_s,
    }


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
        _pump_events(master, self._on_event)
        hub.connect(master.send_message, "master")

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

    def cluster(self) -> ClusterStatus:
        """The cluster's status now (see ``Master.status``)."""
        return self.master.status()

    # -- what the link tells

    def _on_event(self, e: dict[str, Any]) -> None:
        kind = e["event"]
        if kind in ("spawning_complete", "all_users_stopped", "iterations_reached", "all_stopped"):
            if e["run_id"] == self._run_id:
                self._on_milestone(kind, e)
        elif kind == "worker_joined":
            log.info("Worker %d joined (%s)", e["index"], e["worker_id"])
        elif kind == "worker_missing":
            log.warning(
                "Worker %d is missing: silent for %.1fs; its users move to the others",
                e["index"],
                e["silent_s"],
            )
        elif kind == "worker_left":
            log.info("Worker %d left", e["index"])
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

    async def ready(self, stop: asyncio.Event) -> int | None:
        """Waits for ``--expect-workers`` workers (at most
        ``--expect-workers-max-wait``); exit code 1 when too few came, 0
        when stopped while waiting, 2 when ``environment.context`` is not
        JSON."""
        opts = self.opts
        started = time.monotonic()
        last_log = None
        while (live := self.cluster().live_workers) < opts.expect_workers:
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
        if self.cluster().live_workers == 0:
            return "no worker is connected yet: start workers with --worker, then retry"
        return None

    def where(self, env: Environment) -> str:
        return f"over {self.cluster().live_workers} workers"

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
                "options": dict(opts.custom_options),
                "context": env.context,
                "arrival_rate_per_s": arrival_rate_per_s,
            },
        }
        self._run_id += 1
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
        return self.cluster().user_count

    @property
    def task_runs(self) -> int:
        return self.cluster().task_runs

    def status(self) -> dict[str, Any]:
        st = self.cluster()
        return {
            "state": self._state,
            "user_count": st.user_count,
            "task_runs": st.task_runs,
            "worker_count": st.live_workers,
            "workers": [worker_dict(w) for w in st.workers],
        }

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
    ]


# ---------------------------------------------------------------- worker


class WorkerProcess:
    """A worker: serves master after master until told to quit (Ctrl-C,
    SIGTERM, or the ``quit`` message). Runs the users each ``spawn`` asks
    for, stops them on ``stop``, when the master leaves or falls silent,
    and then waits for the next master. One handler per link event.

    Args:
        classes: The aiotestfile's user classes.
        opts: The worker's options.
    """

    def __init__(self, classes: list[type[User]], opts: RunOptions) -> None:
        self.opts = opts
        self.engine = Engine()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.link = Worker(
            self.engine,
            master_host=opts.master_host,
            master_port=opts.master_port,
            worker_id=self.worker_id,
            heartbeat_interval_s=opts.heartbeat_interval_s,
            heartbeat_liveness=opts.heartbeat_liveness,
            secret=opts.secret,
        )
        self.by_name = {c.__name__: c for c in classes}
        # One environment for the worker's life: `events.init` listeners run
        # once, and what they keep on it lasts across runs.
        self.env = Environment(
            user_classes=classes, parsed_options=opts, engine=self.engine, require_host=False
        )
        self.runner: LocalRunner | None = None
        self.run_id = 0
        self.index: int | None = None
        self._spawn: asyncio.Task[None] | None = None
        self._task_runs_done = 0
        self._load = _Load()
        self._last_waiting = 0.0
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._exit_code: int | None = None

    async def serve(self) -> int:
        """Serves until told to quit; returns the exit code."""
        loop = asyncio.get_running_loop()
        _pump_events(self.link, self._events.put_nowait)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: self._events.put_nowait({"event": "interrupted"}))
        self.env.events.init.fire(environment=self.env)
        hub.connect(
            lambda name, data_json, _index: self.link.send_message(name, data_json), "worker"
        )
        progress = asyncio.create_task(self._report_progress())
        try:
            while self._exit_code is None:
                event = await self._events.get()
                log.debug("from the master link: %s", event)
                handler = getattr(self, f"on_{event['event']}", None)
                if handler is not None:
                    await handler(event)
            return self._exit_code
        finally:
            hub.connect(None)
            progress.cancel()
            loop.remove_reader(self.link.wakeup_fd())
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    # -- progress

    def task_runs(self) -> int:
        """Task executions over every run this worker served."""
        return self._task_runs_done + (self.runner.task_runs if self.runner else 0)

    def send_progress(self) -> None:
        """Sends the state, user count, task count, CPU and memory."""
        runner = self.runner
        cpu, rss = self._load.sample()
        self.link.progress(
            state=runner.state if runner else "ready",
            user_count=runner.user_count if runner else 0,
            task_runs=self.task_runs(),
            cpu_percent=cpu,
            memory_bytes=rss,
        )

    async def _report_progress(self) -> None:
        while True:
            self.send_progress()
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    async def stop_users(self) -> None:
        """Stops the spawning and every user of the current run."""
        if self._spawn is not None:
            self._spawn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._spawn
            self._spawn = None
        if self.runner is not None:
            await self.runner.stop()

    # -- link events

    async def on_waiting(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last_waiting >= WAITING_LOG_INTERVAL_S - 0.5:
            log.info("Waiting for the master at %s (%s)", event["endpoint"], event["detail"])
            self._last_waiting = now

    async def on_joined(self, event: dict[str, Any]) -> None:
        self.index = event["worker_index"]
        log.info("Joined the master as worker %d", self.index)

    async def on_refused(self, event: dict[str, Any]) -> None:
        print(f"error: the master refused this worker: {event['reason']}", file=sys.stderr)
        self._exit_code = 2

    async def on_spawn(self, event: dict[str, Any]) -> None:
        if event["run_id"] != self.run_id or self.runner is None:
            await self._new_run(event)
        runner = self.runner
        assert runner is not None
        settings = event["settings"]
        runner.iterations = settings.get("iterations")
        runner.use_arrival_rate(settings.get("arrival_rate_per_s"))
        runner.worker_index = self.index or 0
        runner.worker_count = event["worker_count"]
        indexes = {c["name"]: c["user_indexes"] for c in event["user_classes"]}
        wanted = [indexes.get(cls.__name__, []) for cls in runner.user_classes]
        if self._spawn is not None:
            self._spawn.cancel()
        self._spawn = asyncio.create_task(
            self._ramp(runner, wanted, event["spawn_rate_per_s"], event["run_id"])
        )

    async def _ramp(
        self, runner: LocalRunner, wanted: list[list[int]], rate: float, run_id: int
    ) -> None:
        await runner.start_indexed(wanted, rate)
        self.link.spawning_complete(run_id, runner.user_count)

    async def _new_run(self, event: dict[str, Any]) -> None:
        """Sets the environment up for the master's new run."""
        await self.stop_users()
        if self.runner is not None:
            self._task_runs_done += self.runner.task_runs
        settings = event["settings"]
        unknown = [c["name"] for c in event["user_classes"] if c["name"] not in self.by_name]
        if unknown:
            log.error(
                "the master asked for user classes this aiotestfile lacks: %s", ", ".join(unknown)
            )
        env = self.env
        env.configure(
            user_classes=[
                self.by_name[c["name"]] for c in event["user_classes"] if c["name"] in self.by_name
            ],
            host=settings.get("host"),
            tags=settings.get("tags"),
            exclude_tags=settings.get("exclude_tags"),
            stop_timeout_s=settings.get("stop_timeout_s", 0.0),
        )
        reset_feeders()
        # The master's values of the aiotestfile's own options govern, and
        # its context is in place before any user starts.
        env.parsed_options = self.opts.replace(custom_options=settings.get("options") or {})
        env.context.clear()
        env.context.update(settings.get("context") or {})
        self.run_id = event["run_id"]
        self.runner = env.create_local_runner(iterations=settings.get("iterations"))
        self.runner.on_new_error = self.link.exception
        self.runner.node = self.worker_id

    async def on_stop(self, event: dict[str, Any]) -> None:
        await self.stop_users()
        self.send_progress()  # the final task count goes with the last report
        self.link.stopped(event["run_id"])

    async def on_master_lost(self, event: dict[str, Any]) -> None:
        log.warning(
            "The master was silent for %.1fs: stopping users, waiting for a master",
            event["silent_s"],
        )
        await self.stop_users()

    async def on_master_left(self, _event: dict[str, Any]) -> None:
        log.info("The master left: waiting for the next one")
        await self.stop_users()

    async def on_quit(self, _event: dict[str, Any]) -> None:
        await self.stop_users()
        log.info("Quitting (the master said so)")
        self._exit_code = 0

    async def on_interrupted(self, _event: dict[str, Any]) -> None:
        await self.stop_users()
        self.link.quit()
        log.info("Quitting (interrupted)")
        self._exit_code = 0

    async def on_custom(self, event: dict[str, Any]) -> None:
        hub.deliver(self.env, event["name"], event["data"], None)

    async def on_message_dropped(self, event: dict[str, Any]) -> None:
        log.warning("Dropped a message from the master: %s", event["reason"])
