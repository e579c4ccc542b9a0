"""Distributed mode: the master and worker processes.

The Rust links (``_core.Master``, ``_core.Worker``) speak the protocol of
docs/protocol.md; this module does what only Python can: spawn and stop the
users on a worker, and drive a run, print and report on the master.
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
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TextIO

from . import _core
from .data import reset_all as reset_feeders
from .env import Environment
from .exceptions import ConfigError
from .messages import hub
from .open_model import follow_arrival_stages
from .run import follow_shape, unpack_step
from .user import User

log = logging.getLogger("aiotest.cluster")

STATS_INTERVAL_S = 1.0
LIVE_STATS_INTERVAL_S = 2.0
WAITING_LOG_INTERVAL_S = 5.0


def _events_to_queue(loop: asyncio.AbstractEventLoop, link: Any) -> asyncio.Queue[dict[str, Any]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def drain() -> None:
        for text in link.drain_events():
            queue.put_nowait(json.loads(text))

    loop.add_reader(link.wakeup_fd(), drain)
    return queue


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


# ---------------------------------------------------------------- worker


async def run_worker(classes: list[type[User]], opts: SimpleNamespace) -> int:
    """Serves master after master until told to quit (Ctrl-C, SIGTERM, or
    the ``quit`` message): runs the users each ``spawn`` asks for, stops them
    on ``stop``, when the master leaves or falls silent, and then waits for
    the next master. Returns the exit code."""
    engine = _core.Engine()
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    link = _core.Worker(
        engine,
        master_host=opts.master_host,
        master_port=opts.master_port,
        worker_id=worker_id,
        heartbeat_interval_s=opts.heartbeat_interval_s,
        heartbeat_liveness=opts.heartbeat_liveness,
        secret=opts.secret,
    )
    loop = asyncio.get_running_loop()
    events = _events_to_queue(loop, link)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: events.put_nowait({"event": "interrupted"}))
    by_name = {c.__name__: c for c in classes}
    # One environment for the worker's life: `events.init` listeners run
    # once, and what they keep on it lasts across runs.
    env = Environment(user_classes=classes, parsed_options=opts, engine=engine, require_host=False)
    env.events.init.fire(environment=env)
    hub.connect(lambda name, data_json, _index: link.send_message(name, data_json), "worker")
    state = SimpleNamespace(runner=None, run_id=0, spawn=None, task_runs_done=0, index=None)
    load = _Load()
    last_waiting = 0.0

    def task_runs() -> int:
        return state.task_runs_done + (state.runner.task_runs if state.runner else 0)

    def send_progress() -> None:
        runner = state.runner
        cpu, rss = load.sample()
        link.progress(
            runner.state if runner else "ready",
            runner.user_count if runner else 0,
            task_runs(),
            cpu,
            rss,
        )

    async def report_progress() -> None:
        while True:
            send_progress()
            await asyncio.sleep(STATS_INTERVAL_S / 2)

    async def stop_users() -> None:
        if state.spawn is not None:
            state.spawn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await state.spawn
            state.spawn = None
        if state.runner is not None:
            await state.runner.stop()

    async def spawn(event: dict[str, Any]) -> None:
        settings = event["settings"]
        if event["run_id"] != state.run_id or state.runner is None:
            await stop_users()
            if state.runner is not None:
                state.task_runs_done += state.runner.task_runs
            unknown = [c["name"] for c in event["user_classes"] if c["name"] not in by_name]
            if unknown:
                log.error(
                    "the master asked for user classes this aiotestfile lacks: %s",
                    ", ".join(unknown),
                )
            env.configure(
                user_classes=[
                    by_name[c["name"]] for c in event["user_classes"] if c["name"] in by_name
                ],
                host=settings.get("host"),
                tags=settings.get("tags"),
                exclude_tags=settings.get("exclude_tags"),
                stop_timeout_s=settings.get("stop_timeout_s", 0.0),
            )
            reset_feeders()
            # The master's values of the aiotestfile's own options govern,
            # and its context is in place before any user starts.
            vars(opts).update(settings.get("options") or {})
            env.context.clear()
            env.context.update(settings.get("context") or {})
            state.run_id = event["run_id"]
            state.runner = env.create_local_runner(iterations=settings.get("iterations"))
            state.runner.on_new_error = link.exception
            state.runner.node = worker_id
        runner = state.runner
        runner.iterations = settings.get("iterations")
        runner.use_arrival_rate(settings.get("arrival_rate_per_s"))
        runner.worker_index = state.index or 0
        runner.worker_count = event["worker_count"]
        indexes = {c["name"]: c["user_indexes"] for c in event["user_classes"]}
        wanted = [indexes.get(cls.__name__, []) for cls in runner.environment.user_classes]
        run_id = event["run_id"]

        async def ramp() -> None:
            await runner.start_indexed(wanted, event["spawn_rate_per_s"])
            link.spawning_complete(run_id, runner.user_count)

        if state.spawn is not None:
            state.spawn.cancel()
        state.spawn = asyncio.create_task(ramp())

    progress = asyncio.create_task(report_progress())
    try:
        while True:
            event = await events.get()
            kind = event["event"]
            log.debug("from the master link: %s", event)
            if kind == "waiting":
                now = time.monotonic()
                if now - last_waiting >= WAITING_LOG_INTERVAL_S - 0.5:
                    log.info(
                        "Waiting for the master at %s (%s)", event["endpoint"], event["detail"]
                    )
                    last_waiting = now
            elif kind == "joined":
                state.index = event["worker_index"]
                log.info("Joined the master as worker %d", state.index)
            elif kind == "refused":
                print(f"error: the master refused this worker: {event['reason']}", file=sys.stderr)
                return 2
            elif kind == "spawn":
                await spawn(event)
            elif kind == "stop":
                await stop_users()
                send_progress()  # the final task count goes with the last report
                link.stopped(event["run_id"])
            elif kind == "master_lost":
                log.warning(
                    "The master was silent for %.1fs: stopping users, waiting for a master",
                    event["silent_s"],
                )
                await stop_users()
            elif kind == "master_left":
                log.info("The master left: waiting for the next one")
                await stop_users()
            elif kind in ("quit", "interrupted"):
                await stop_users()
                if kind == "interrupted":
                    link.quit()
                log.info("Quitting (%s)", "the master said so" if kind == "quit" else "interrupted")
                return 0
            elif kind == "custom":
                hub.deliver(env, event["name"], event["data"], None)
            elif kind == "message_dropped":
                log.warning("Dropped a message from the master: %s", event["reason"])
    finally:
        hub.connect(None)
        progress.cancel()
        loop.remove_reader(link.wakeup_fd())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# ---------------------------------------------------------------- master


def _workers_table(status: dict[str, Any]) -> str:
    lines = [f"Workers: {status['live_workers']} connected, {status['user_count']} users"]
    lines.append(f"  {'#':>3}  {'state':<9} {'users':>6} {'cpu %':>6} {'mem MB':>7}  id")
    for w in sorted(status["workers"], key=lambda w: w["index"]):
        lines.append(
            f"  {w['index']:>3}  {w['state']:<9} {w['user_count']:>6} {w['cpu_percent']:>6.1f} "
            f"{w['memory_bytes'] / 1e6:>7.1f}  {w['worker_id']}"
        )
    return "\n".join(lines)


async def run_master(env: Environment, opts: SimpleNamespace, checks: list[str]) -> int:
    """Waits for the workers, runs the test over them, then prints the
    merged statistics and writes the reports. Returns the exit code."""
    from .main import finish_run

    engine = _core.Engine(worker_threads=2)
    try:
        master = _core.Master(
            engine,
            bind_host=opts.master_bind_host,
            bind_port=opts.master_bind_port,
            heartbeat_interval_s=opts.heartbeat_interval_s,
            heartbeat_liveness=opts.heartbeat_liveness,
            secret=opts.secret,
        )
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env.use_engine(engine)
    loop = asyncio.get_running_loop()
    events = _events_to_queue(loop, master)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out: TextIO = sys.stderr if opts.json else sys.stdout

    def status() -> dict[str, Any]:
        return json.loads(master.status())

    async def log_events() -> None:
        while True:
            e = await events.get()
            kind = e["event"]
            if kind == "worker_joined":
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
                    "Worker %d: error in user code: %s\n%s",
                    e["index"],
                    e["message"],
                    e["traceback"],
                )
            elif kind == "custom":
                hub.deliver(env, e["name"], e["data"], e["index"])
            elif kind == "message_dropped":
                log.warning("Dropped a message: %s", e["reason"])
            elif kind == "fatal":
                log.error("Master link failed: %s", e["reason"])
                stop.set()

    logger = asyncio.create_task(log_events())
    hub.connect(master.send_message, "master")
    try:
        if not opts.secret and opts.master_bind_host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "The master listens on %s without a shared secret: any host that reaches port %d can join",
                opts.master_bind_host,
                opts.master_bind_port,
            )
        if not opts.headless:
            from .web import MasterBackend, serve

            return await serve(
                env, opts, checks, MasterBackend(env, opts, master, engine), quit_event=stop
            )
        # Wait for the workers.
        started = time.monotonic()
        last_log = 0.0
        while (live := status()["live_workers"]) < opts.expect_workers:
            waited = time.monotonic() - started
            if opts.expect_workers_max_wait_s and waited >= opts.expect_workers_max_wait_s:
                print(
                    f"error: only {live} of {opts.expect_workers} workers connected within "
                    f"{opts.expect_workers_max_wait_s:g}s: start more workers or lower --expect-workers",
                    file=sys.stderr,
                )
                return 1
            if waited - last_log >= WAITING_LOG_INTERVAL_S or last_log == 0.0:
                log.info("Waiting for workers: %d of %d connected", live, opts.expect_workers)
                last_log = waited or 1e-9
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)
            if stop.is_set():
                return 0
        try:
            json.dumps(env.context)
        except (TypeError, ValueError) as exc:
            print(
                f"error: environment.context must hold JSON values (str, numbers, lists, dicts): {exc}",
                file=sys.stderr,
            )
            return 2
        if env.shape is None:
            log.info(
                "Starting %d users at %g users/s over %d workers", opts.users, opts.spawn_rate, live
            )
        else:
            log.info("Following the load shape %s over %d workers", type(env.shape).__name__, live)
        run = MasterRun(env, opts, master, engine, users=opts.users, spawn_rate=opts.spawn_rate)

        def live_table(st: dict[str, Any]) -> None:
            print(_workers_table(st), file=out)
            print(engine.snapshot().stats_table(current=True), file=out, flush=True)

        _, st = await run.drive(
            run_time_s=opts.run_time_s,
            stop=stop,
            live=None if opts.only_summary else live_table,
        )
        snapshot = engine.snapshot(with_history=True)
        print(_workers_table(st), file=out)
        return finish_run(env, opts, checks, snapshot, task_runs=st["task_runs"], out=out)
    finally:
        hub.connect(None)
        logger.cancel()
        master.quit()
        loop.remove_reader(master.wakeup_fd())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class MasterRun:
    """One run over the workers of ``master``, from its start to its
    workers' stop: the plan (users per class, spawn rate, settings), its
    changes (a load shape's steps, ``--arrival-rate`` stages, the web UI's
    edits), a stats tick every second, and the end conditions. The headless
    master and the web UI's master share it.

    Args:
        users: Peak user count (a load shape's first step replaces it).
        spawn_rate: Users started per second over the whole cluster.
        classes: Run only these classes; all when None.
        host: Overrides ``-H`` for this run (the web UI's start form).

    Attributes:
        stopping: True while the workers are being stopped.
    """

    def __init__(
        self,
        env: Environment,
        opts: SimpleNamespace,
        master: Any,
        engine: _core.Engine,
        *,
        users: int,
        spawn_rate: float,
        classes: list[type[User]] | None = None,
        host: str | None = None,
    ) -> None:
        self.env, self.opts, self.master, self.engine = env, opts, master, engine
        self.classes = classes
        settings = run_settings(env, opts)
        if host:
            settings["host"] = host
        self.plan: dict[str, Any] = {
            **_step_plan(env, users, spawn_rate, classes),
            "settings": settings,
        }
        self.stopping = False
        self._started = False

    def status(self) -> dict[str, Any]:
        """The master's ``ClusterStatus`` (see ``_core.Master.status``)."""
        return json.loads(self.master.status())

    def retarget(self, users: int, spawn_rate: float) -> None:
        """Changes the running plan to ``users`` at ``spawn_rate`` users/s,
        keeping its classes; the workers get it at once."""
        self.plan.update(_step_plan(self.env, users, spawn_rate, self.classes))
        if self._started:
            self.master.start(json.dumps(self.plan, default=str), new_run=False)

    def _shape_step(self, users: int, spawn_rate: float, classes: list[type[User]] | None) -> None:
        """A load shape's step: its classes (all when None) replace the plan's."""
        self.classes = classes
        self.retarget(users, spawn_rate)

    async def drive(
        self,
        *,
        run_time_s: float | None,
        stop: asyncio.Event,
        live: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Starts the run and drives it to its end: ``run_time_s`` (ignored
        under a load shape), the shape's or the arrival stages' end, the
        iterations, every user stopping by itself, or ``stop``. Then stops
        the workers, waiting for them at most the stop timeout plus a
        heartbeat timeout plus 10 s. ``live`` gets the cluster status every
        2 s. Returns the reason and the last cluster status."""
        env, opts, master = self.env, self.opts, self.master
        shape = env.shape
        shape_done = asyncio.Event()
        followers: list[asyncio.Task[None]] = []
        if shape is not None:
            shape.reset_time()
            step = shape.tick()
            if step is None:
                shape_done.set()
                self.plan.update(_step_plan(env, 0, opts.spawn_rate, None))
            else:
                self._shape_step(*unpack_step(step))
                followers.append(
                    asyncio.create_task(follow_shape(shape, step, self._shape_step, shape_done))
                )
        if opts.arrival_rate:

            def set_rate(rate: float) -> None:
                if self.plan["settings"]["arrival_rate_per_s"] != rate:
                    self.plan["settings"]["arrival_rate_per_s"] = rate
                    master.start(json.dumps(self.plan, default=str), new_run=False)

            followers.append(
                asyncio.create_task(follow_arrival_stages(opts.arrival_rate, set_rate, shape_done))
            )
        env.events.test_start.fire(environment=env)
        reset_feeders()
        master.start(json.dumps(self.plan, default=str))
        self._started = True
        began = time.monotonic()
        next_tick = began + STATS_INTERVAL_S
        next_live = began + LIVE_STATS_INTERVAL_S
        reason = "stopped"
        try:
            while True:
                now = time.monotonic()
                if shape is None and run_time_s is not None and now - began >= run_time_s:
                    reason = "run time"
                    break
                if shape_done.is_set():
                    reason = "the load shape ended" if shape else "the last arrival-rate stage ended"
                    break
                st = self.status()
                if opts.iterations is not None and st["task_runs"] >= opts.iterations:
                    reason = "iterations"
                    break
                if self.plan["users"] and st["spawning_complete"] and st["user_count"] == 0:
                    reason = "all users stopped"
                    break
                if now >= next_tick:
                    self.engine.tick(st["user_count"], full_history=opts.csv_full_history)
                    next_tick += STATS_INTERVAL_S
                if live is not None and now >= next_live:
                    live(st)
                    next_live += LIVE_STATS_INTERVAL_S
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.1)
                if stop.is_set():
                    break
        finally:
            for task in followers:
                task.cancel()
            self.stopping = True
            st = await self._stop_workers(reason)
            self.stopping = False
        return reason, st

    async def _stop_workers(self, reason: str) -> dict[str, Any]:
        opts = self.opts
        user_count = self.status()["user_count"]
        log.info("Stopping the workers (%s)", reason)
        self.master.stop()
        deadline = (
            time.monotonic()
            + opts.stop_timeout_s
            + opts.heartbeat_interval_s * opts.heartbeat_liveness
            + 10
        )
        while not (st := self.status())["all_stopped"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not st["all_stopped"]:
            log.warning("Not every worker confirmed stopping; reporting what arrived")
        self.engine.tick(user_count, full_history=opts.csv_full_history)
        self.env.events.test_stop.fire(environment=self.env)
        return st


def run_settings(env: Environment, opts: SimpleNamespace) -> dict[str, Any]:
    """The ``settings`` of the master's run plan: what every worker's run
    takes from the master's options (docs/protocol.md, ``spawn``)."""
    return {
        "host": opts.host,
        "tags": opts.tags,
        "exclude_tags": opts.exclude_tags,
        "stop_timeout_s": opts.stop_timeout_s,
        "iterations": opts.iterations,
        "options": opts.custom_options,
        "context": env.context,
        "arrival_rate_per_s": opts.arrival_rate[0]["rate_per_s"] if opts.arrival_rate else None,
    }


def _step_plan(
    env: Environment, users: int, rate: float, classes: list[type[User]] | None
) -> dict[str, Any]:
    """The part of the master's run plan a load shape's step changes."""
    return {
        "classes": [
            {"name": c.__name__, "weight": float(c.weight), "fixed_count": int(c.fixed_count)}
            for c in env.user_classes
            if classes is None or c in classes
        ],
        "users": users,
        "spawn_rate_per_s": rate,
    }


def worker_argv(opts: SimpleNamespace, master_port: int) -> list[str]:
    """The command line of a local worker for ``--processes``."""
    argv = [sys.executable, "-m", "aiotest", "-f", opts.aiotestfile, "--worker"]
    argv += ["--master-host", "127.0.0.1", "--master-port", str(master_port)]
    argv += [
        "--heartbeat-interval",
        str(opts.heartbeat_interval_s),
        "--heartbeat-liveness",
        str(opts.heartbeat_liveness),
    ]
    argv += ["-L", opts.loglevel]
    return argv


async def run_processes(
    env: Environment | None, classes: list[type[User]], opts: SimpleNamespace, checks: list[str]
) -> int:
    """``--processes N``: N local workers; this process is their master
    (or, with ``--worker``, only their parent)."""
    count = (os.cpu_count() or 1) if opts.processes == -1 else opts.processes
    if opts.worker:
        port = opts.master_port
    else:
        port = opts.master_bind_port
        if opts.master_bind_host == "*":
            opts.master_bind_host = "127.0.0.1"
        opts.expect_workers = max(opts.expect_workers, count)
    # The secret goes through the environment, where `ps` does not show it.
    child_env = {**os.environ, "AIOTEST_SECRET": opts.secret} if opts.secret else None
    children = [
        await asyncio.create_subprocess_exec(*worker_argv(opts, port), env=child_env)
        for _ in range(count)
    ]
    try:
        if opts.worker:
            codes = await asyncio.gather(*(c.wait() for c in children))
            return max(codes, default=0)
        if env is None:
            raise ConfigError("--processes needs the aiotestfile's user classes")
        master = asyncio.create_task(run_master(env, opts, checks))
        all_exited = asyncio.gather(*(c.wait() for c in children))
        await asyncio.wait({master, all_exited}, return_when=asyncio.FIRST_COMPLETED)
        if not master.done():
            # Workers outlive runs, so all of them gone means they failed.
            print(
                "error: every local worker exited before the run ended; see their errors above",
                file=sys.stderr,
            )
            master.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await master
            return 1
        all_exited.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await all_exited
        return master.result()
    finally:
        for c in children:
            if c.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.terminate()
        for c in children:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(c.wait(), timeout=10)
