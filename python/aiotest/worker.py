"""The worker process: serves master after master, running the users each
``spawn`` asks for (docs/protocol.md). The Rust link (``_core.Worker``)
speaks the protocol; this module spawns and stops the users."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from typing import Any

from . import health
from ._bridge import pump_events
from ._core import Engine, Worker
from .data import drop_held_rows
from .data import reset_all as reset_feeders
from .env import Environment
from .messages import REPORT_TO_MASTER, hub
from .options import RunOptions
from .runner import LocalRunner, ProcessLoad, monitor_usage
from .user import User

log = logging.getLogger("aiotest.worker")

#: Seconds between a worker's progress reports (half the stats interval).
PROGRESS_INTERVAL_S = 0.5
#: Seconds between "waiting for the master" log lines.
WAITING_LOG_INTERVAL_S = 5.0
#: Seconds between ``report_to_master`` events (Locust's WORKER_REPORT_INTERVAL).
REPORT_INTERVAL_S = 3.0


class WorkerProcess:
    """A worker: serves master after master until told to quit (Ctrl-C,
    SIGTERM, or the ``quit`` message). Runs the users each ``spawn`` asks
    for, stops them on ``stop``, when the master leaves or falls silent,
    and then waits for the next master, or with ``--worker-exit-with-master``
    exits (0 when the run ended or the master left, 1 when it fell silent).
    One handler per link event.

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
        # The runner exists before `init` fires, and serves every run.
        self.runner: LocalRunner = self.env.create_local_runner()
        self.runner.role = "worker"
        self.runner.node = self.worker_id
        self.runner.on_new_error = self.link.exception
        self._in_run = False
        self.run_id = 0
        self.index: int | None = None
        self._spawn: asyncio.Task[None] | None = None
        self._task_runs_done = 0
        self._load = ProcessLoad()
        self._last_waiting = 0.0
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: What ``/readyz`` answers: ready while joined to a master.
        self._readiness = (False, "connecting to the master")
        self._exit_code: int | None = None

    async def serve(self) -> int:
        """Serves until told to quit; returns the exit code (2 when
        ``--web-port`` is given and cannot be bound)."""
        endpoints = None
        if self.opts.web_port_given:
            try:
                endpoints = health.open_endpoints(
                    self.engine, self.opts, required=True, metrics=False
                )
            except OSError as exc:
                print(f"error: the health endpoints: {exc}", file=sys.stderr)
                return 2
        try:
            async with health.following(endpoints, lambda: self._readiness):
                return await self._serve()
        finally:
            if endpoints is not None:
                endpoints.stop()

    async def _serve(self) -> int:
        loop = asyncio.get_running_loop()
        pump_events(self.link, self._events.put_nowait)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: self._events.put_nowait({"event": "interrupted"}))
        self.env.events.init.fire(environment=self.env)
        hub.connect(
            lambda name, data_json, _index: self.link.send_message(name, data_json), "worker"
        )
        progress = asyncio.create_task(self._report_progress())
        monitor = asyncio.create_task(monitor_usage(self.env, self._load))
        asked = asyncio.create_task(self._obey_test_code())
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
            monitor.cancel()
            asked.cancel()
            loop.remove_reader(self.link.wakeup_fd())
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _obey_test_code(self) -> None:
        """``runner.stop()`` in the aiotestfile stops this worker's users;
        ``runner.quit()`` also ends the worker (its master is told), as a
        Locust worker does."""
        env = self.env
        while True:
            await env.stop_requested.wait()
            env.stop_requested.clear()
            if env.quit_requested:
                self._events.put_nowait({"event": "interrupted"})
                return
            await self.stop_users()
            # Stopped during the ramp, the worker still tells that it is done
            # spawning (no user now), so the master can see every user gone.
            self.link.spawning_complete(self.run_id, 0)
            self.send_progress()

    # -- progress

    def task_runs(self) -> int:
        """Task executions over every run this worker served."""
        return self._task_runs_done + self.runner.task_runs

    def send_progress(self) -> None:
        """Sends the state, user count, task count, CPU and memory."""
        runner = self.runner
        cpu, rss = self._load.sample()
        self.link.progress(
            state=runner.state,
            user_count=runner.user_count,
            task_runs=self.task_runs(),
            cpu_percent=cpu,
            memory_bytes=rss,
        )

    def report_to_master(self) -> None:
        """Fires ``report_to_master``; what its listeners put in ``data``
        goes to the master, whose ``worker_report`` listeners get it."""
        data: dict[str, Any] = {}
        self.env.events.report_to_master.fire(client_id=self.worker_id, data=data)
        if data:
            try:
                hub.send(self.env, REPORT_TO_MASTER, data, None)
            except TypeError as exc:
                log.error("report_to_master data must be JSON values: %s", exc)

    async def _report_progress(self) -> None:
        last_report = time.monotonic()
        while True:
            self.send_progress()
            if self._in_run and time.monotonic() - last_report >= REPORT_INTERVAL_S:
                last_report = time.monotonic()
                self.report_to_master()
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    async def stop_users(self) -> None:
        """Stops the spawning and every user of the current run; fires
        ``test_stopping`` and ``test_stop`` when a run was going."""
        in_run, self._in_run = self._in_run, False
        if in_run:
            self.env.events.test_stopping.fire(environment=self.env)
        if self._spawn is not None:
            self._spawn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._spawn
            self._spawn = None
        await self.runner.stop_users()
        if in_run:
            self.report_to_master()
            self.env.events.test_stop.fire(environment=self.env)

    # -- link events

    async def on_waiting(self, event: dict[str, Any]) -> None:
        self._readiness = (False, f"waiting for the master at {event['endpoint']}")
        now = time.monotonic()
        if now - self._last_waiting >= WAITING_LOG_INTERVAL_S - 0.5:
            log.info("Waiting for the master at %s (%s)", event["endpoint"], event["detail"])
            self._last_waiting = now

    async def on_joined(self, event: dict[str, Any]) -> None:
        self.index = event["worker_index"]
        self._readiness = (True, f"joined the master as worker {self.index}")
        log.info("Joined the master as worker %d", self.index)

    async def on_refused(self, event: dict[str, Any]) -> None:
        print(f"error: the master refused this worker: {event['reason']}", file=sys.stderr)
        self._exit_code = 2

    async def on_spawn(self, event: dict[str, Any]) -> None:
        if event["run_id"] != self.run_id or not self._in_run:
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
        try:
            await runner.start_indexed(wanted, rate)
        except Exception as exc:  # a user class that fails to construct, say
            log.error("Spawning users failed: %s: %s", type(exc).__name__, exc)
            runner.record_error(exc)
        self.link.spawning_complete(run_id, runner.user_count)

    async def _new_run(self, event: dict[str, Any]) -> None:
        """Sets the environment up for the master's new run."""
        await self.stop_users()
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
        env.create_local_runner(iterations=settings.get("iterations"))
        self._in_run = True
        env.events.test_start.fire(environment=env)

    async def on_stop(self, event: dict[str, Any]) -> None:
        await self.stop_users()
        self.send_progress()  # the final task count goes with the last report
        self.link.stopped(event["run_id"])
        if self.opts.worker_exit_with_master:
            self._leave(0, "the master's run ended")

    async def on_master_lost(self, event: dict[str, Any]) -> None:
        self._readiness = (False, "the master fell silent: waiting for a master")
        log.warning(
            "The master was silent for %.1fs: stopping users, waiting for a master",
            event["silent_s"],
        )
        await self.stop_users()
        # The master serves the rows we hold to others once it finds us
        # missing: handing them out too would use them twice.
        drop_held_rows()
        if self.opts.worker_exit_with_master:
            self._leave(1, "the master was lost")

    async def on_master_left(self, _event: dict[str, Any]) -> None:
        self._readiness = (False, "the master left: waiting for a master")
        await self.stop_users()
        if self.opts.worker_exit_with_master:
            self._leave(0, "the master left")
        else:
            log.info("The master left: waiting for the next one")

    def _leave(self, exit_code: int, why: str) -> None:
        """Ends this worker (``--worker-exit-with-master``) with
        ``exit_code``, telling the master when it is still there."""
        self.link.quit()
        log.info("Quitting (%s, and --worker-exit-with-master is set)", why)
        self._exit_code = exit_code

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

    async def on_heartbeat_received(self, _event: dict[str, Any]) -> None:
        self.env.events.heartbeat_received.fire(client_id=self.worker_id, timestamp=time.time())

    async def on_message_dropped(self, event: dict[str, Any]) -> None:
        log.warning("Dropped a message from the master: %s", event["reason"])
