"""One run lifecycle for every way a test runs: the command line (local or
master, headless or with the web UI) and the in-process API
(:func:`aiotest.run`).

A :class:`RunDriver` takes a run from its start to its end: it fires the
test events, follows a load shape or ``--arrival-rate`` stages, closes a
stats window every second, and stops the run at the first end condition
(:class:`StopReason`). Where the users run is a :class:`Backend`: this
process (:class:`LocalBackend`) or the workers of a master
(``aiotest.cluster.ClusterBackend``). Backends push what they learn
(spawning complete, every user stopped, the iterations done); nothing is
polled but the 1 s stats tick.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._core import Engine, StatsSnapshot
from .data import reset_all as reset_feeders
from .env import Environment
from .exceptions import AiotestError
from .open_model import follow_arrival_stages
from .options import ArrivalStage, RunOptions
from .report import HistoryFile, RunFacts, console, finish_run
from .runner import LocalRunner, monitor_usage
from .shape import LoadStep, LoadTestShape, follow_shape, unpack_step

log = logging.getLogger("aiotest.run")

#: Seconds per stats window: one history row each (Locust's CSV_STATS_INTERVAL_SEC).
STATS_INTERVAL_S = 1.0
#: Seconds between the console's live tables in a headless run.
LIVE_INTERVAL_S = 2.0


class StopReason(enum.Enum):
    """Why a run ended; the value is how logs name it."""

    RUN_TIME = "run time"
    ITERATIONS = "iterations"
    ALL_USERS_STOPPED = "all users stopped"
    SHAPE_ENDED = "the load shape ended"
    ARRIVAL_STAGES_ENDED = "the last arrival-rate stage ended"
    STOPPED = "stopped"
    BY_TEST_CODE = "stopped by the test's code (runner.stop() or quit())"
    SPAWN_FAILED = "spawning users failed"
    ERROR = "an error in the load shape"
    INTERNAL_ERROR = "an error in aiotest itself (the traceback is above)"


class Backend(abc.ABC):
    """Where a run's users run, for a :class:`RunDriver`: one run at a time.

    A backend tells the driver what happens by calling :meth:`end` (the run
    ended by itself) and the ``on_spawned`` hook (every user of the current
    step is running).

    Attributes:
        engine: Records the statistics (the master's holds the merged ones).
        distributed: Whether workers run the users.
        fatal: Set when the backend can no longer run anything (the master's
            link failed); the process should quit.
        spawn_error: Why spawning failed, when it did.
    """

    distributed = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fatal = asyncio.Event()
        self.spawn_error: BaseException | None = None
        self.on_spawned: Callable[[], None] = _nothing
        self._ended: asyncio.Future[StopReason] | None = None

    async def ready(self, stop: asyncio.Event) -> int | None:
        """Waits until a run can start (a master: for its workers). Returns
        None when it can, or an exit code to end the process with."""
        return None

    def can_start(self) -> str | None:
        """Why a run cannot start now (a sentence with the fix), or None."""
        return None

    def prepare(self, *, iterations: int | None) -> None:
        """Makes a fresh run before ``test_start`` fires (listeners see its
        runner)."""
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self.spawn_error = None

    @abc.abstractmethod
    async def start(self, step: LoadStep, *, arrival_rate_per_s: float | None) -> None:
        """Starts the users of ``step``; returns once they are on their way."""

    @abc.abstractmethod
    def set_load(self, step: LoadStep) -> None:
        """Changes the running load to ``step``."""

    @abc.abstractmethod
    def set_arrival_rate(self, rate_per_s: float) -> None:
        """Changes the open workload model's arrival rate."""

    @abc.abstractmethod
    async def stop(self, reason: StopReason) -> None:
        """Stops every user; returns once they have stopped (bounded)."""

    @property
    @abc.abstractmethod
    def state(self) -> str:
        """``ready``, ``spawning``, ``running``, ``stopping`` or ``stopped``."""

    @property
    @abc.abstractmethod
    def user_count(self) -> int:
        """Users running now."""

    @property
    @abc.abstractmethod
    def task_runs(self) -> int:
        """Task executions of the current (or last) run."""

    def status(self) -> dict[str, Any]:
        """``state``, ``user_count`` and ``task_runs``, plus what the
        backend adds (docs/web.md's ``/stats/requests``)."""
        return {"state": self.state, "user_count": self.user_count, "task_runs": self.task_runs}

    def metrics_status(self) -> dict[str, Any]:
        """The run as ``GET /metrics`` shows it besides the statistics:
        ``state``, and ``users_by_class`` and ``workers_by_state`` as
        ``(name, count)`` lists."""
        return {
            "state": self.state,
            "users_by_class": [("all", self.user_count)],
            "workers_by_state": [],
        }

    def readiness(self) -> tuple[bool, str]:
        """What ``GET /readyz`` answers (see :mod:`aiotest.health`): whether
        the backend can run users, and a word on it. In this process: ready."""
        return True, "ready"

    def describe(self) -> str:
        """A line or table on where the users run, for the live console."""
        return f"{self.state}: {self.user_count} users"

    def where(self, env: Environment) -> str:
        """Where the load goes, for the start's log line."""
        return f"against {env.host_summary()}"

    def end(self, reason: StopReason) -> None:
        """Ends the current run by itself (the driver stops it)."""
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    async def ended(self) -> StopReason:
        """Returns when the backend ends the run by itself."""
        assert self._ended is not None, "prepare() comes first"
        return await asyncio.shield(self._ended)


def _nothing() -> None:
    pass


class LocalBackend(Backend):
    """Runs the users in this process, one :class:`LocalRunner` a run."""

    def __init__(self, env: Environment) -> None:
        if env.engine is None:
            env.use_engine(Engine())
        assert env.engine is not None
        super().__init__(env.engine)
        self.env = env
        self.runner: LocalRunner | None = None
        self._spawn: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Task[None]] = []

    def prepare(self, *, iterations: int | None) -> None:
        super().prepare(iterations=iterations)
        self.runner = self.env.create_local_runner(iterations=iterations)

    async def start(self, step: LoadStep, *, arrival_rate_per_s: float | None) -> None:
        runner = self.runner
        assert runner is not None, "prepare() comes first"
        if arrival_rate_per_s:
            runner.use_arrival_rate(arrival_rate_per_s)
        self._watchers = [
            asyncio.create_task(self._end_on(runner.iterations_done, StopReason.ITERATIONS)),
            asyncio.create_task(
                self._end_on(runner.all_users_stopped, StopReason.ALL_USERS_STOPPED)
            ),
        ]
        self.set_load(step)

    async def _end_on(self, event: asyncio.Event, reason: StopReason) -> None:
        await event.wait()
        self.end(reason)

    def set_load(self, step: LoadStep) -> None:
        runner = self.runner
        assert runner is not None
        if self._spawn is not None:
            self._spawn.cancel()
        self._spawn = asyncio.create_task(
            runner.start(step.users, step.spawn_rate, classes=step.classes)
        )
        self._spawn.add_done_callback(self._spawned)

    def _spawned(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.spawn_error = exc
            self.end(StopReason.SPAWN_FAILED)
        else:
            self.on_spawned()

    def set_arrival_rate(self, rate_per_s: float) -> None:
        if self.runner is not None:
            self.runner.use_arrival_rate(rate_per_s)

    async def stop(self, reason: StopReason) -> None:
        for task in self._watchers:
            task.cancel()
        if self._spawn is not None:
            self._spawn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._spawn
        if self.runner is not None:
            await self.runner.stop_users()

    @property
    def state(self) -> str:
        return self.runner.state if self.runner is not None else "ready"

    @property
    def user_count(self) -> int:
        return self.runner.user_count if self.runner is not None else 0

    @property
    def task_runs(self) -> int:
        return self.runner.task_runs if self.runner is not None else 0

    def status(self) -> dict[str, Any]:
        status = super().status()
        if self.runner is not None:
            status["user_classes_count"] = self.runner.user_classes_count()
        return status

    def metrics_status(self) -> dict[str, Any]:
        status = super().metrics_status()
        if self.runner is not None:
            status["users_by_class"] = list(self.runner.user_classes_count().items())
        return status

    def describe(self) -> str:
        mix = self.runner.mix_text() if self.runner is not None else ""
        return f"{self.state}: {self.user_count} users ({mix})"


@dataclass(frozen=True)
class RunSpec:
    """What one run follows.

    Attributes:
        step: The load to start with (a load shape's first step replaces it).
        run_time_s: Seconds before stopping; None runs until stopped
            (ignored under a load shape).
        iterations: Total task executions before stopping (``-i``).
        shape: A load shape that sets the load each second and ends the run.
        arrival_stages: The open workload model's stages (``--arrival-rate``).
        reset_stats: Reset the statistics once all users have spawned.
        full_history: History rows for every entry, not only Aggregated.
        history_path: ``PREFIX_stats_history.csv``, appended to each second
            (``--csv``), or None.
    """

    step: LoadStep
    run_time_s: float | None = None
    iterations: int | None = None
    shape: LoadTestShape | None = None
    arrival_stages: tuple[ArrivalStage, ...] | None = None
    reset_stats: bool = False
    full_history: bool = False
    history_path: str | None = None

    @classmethod
    def from_options(
        cls, opts: RunOptions, shape: LoadTestShape | None, step: LoadStep | None = None
    ) -> RunSpec:
        """The run the command line asks for; ``step`` overrides ``-u``/``-r``."""
        return cls(
            step=step or LoadStep(opts.users, opts.spawn_rate),
            run_time_s=opts.run_time_s,
            iterations=opts.iterations,
            shape=shape,
            arrival_stages=opts.arrival_rate,
            reset_stats=opts.reset_stats,
            full_history=opts.csv_full_history,
            history_path=f"{opts.csv_prefix}_stats_history.csv" if opts.csv_prefix else None,
        )


@dataclass(frozen=True)
class Outcome:
    """How a run ended.

    Attributes:
        snapshot: The final statistics, history included.
        reason: What ended it.
        spawn_error: Why spawning failed, when it did.
        task_runs: Task executions in the run.
    """

    snapshot: StatsSnapshot
    reason: StopReason
    spawn_error: BaseException | None
    task_runs: int


class RunDriver:
    """Drives one run on a backend from start to end (see the module doc).

    Args:
        env: The run object (its events fire; its engine records).
        backend: Where the users run.
        spec: What the run follows.
        live: Called every ``live_interval_s`` while the run goes on.
    """

    def __init__(
        self,
        env: Environment,
        backend: Backend,
        spec: RunSpec,
        *,
        live: Callable[[], None] | None = None,
        live_interval_s: float = LIVE_INTERVAL_S,
    ) -> None:
        self.env, self.backend, self.spec = env, backend, spec
        self._live = live
        self._live_interval_s = live_interval_s
        self._step = spec.step
        self._reset_pending = spec.reset_stats
        self._running = False
        self._history = HistoryFile(spec.history_path) if spec.history_path else None

    def retarget(self, users: int, spawn_rate: float) -> None:
        """Ramps the running run to ``users`` at ``spawn_rate`` users/s,
        keeping its classes (the web UI's swarm during a run).

        Raises:
            RuntimeError: The run has not started or has ended.
        """
        if not self._running:
            raise RuntimeError("no run is in progress")
        self._apply(LoadStep(users, spawn_rate, self._step.classes))

    def _apply(self, step: LoadStep) -> None:
        self._step = step
        self.backend.set_load(step)

    def _spawned(self) -> None:
        if self._reset_pending:
            self._reset_pending = False
            log.info("Resetting stats: all users spawned")
            self.backend.engine.reset_stats()
            self.env.events.reset_stats.fire()

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Runs until an end condition or ``stop``; then stops the users and
        returns the outcome with the final statistics."""
        env, backend, spec = self.env, self.backend, self.spec
        reset_feeders()
        # runner.stop()/quit() from user code end this run.
        env.stop_requested = asyncio.Event()
        backend.prepare(iterations=spec.iterations)
        backend.on_spawned = self._spawned
        shape_done, arrivals_done = asyncio.Event(), asyncio.Event()
        run_time_s, first = spec.run_time_s, None
        if spec.shape is not None:
            spec.shape.reset_time()
            first = spec.shape.tick()
            if first is None:
                shape_done.set()
                self._step = LoadStep(0, spec.step.spawn_rate)
            else:
                self._step = unpack_step(first)
            run_time_s = None
        if env.runner is not None:  # Locust's listeners read it at test_start
            env.runner.target_user_count = self._step.users
        env.events.test_start.fire(environment=env)
        stages = spec.arrival_stages
        await backend.start(self._step, arrival_rate_per_s=stages[0].rate_per_s if stages else None)
        self._running = True
        failed = asyncio.Event()
        background = [asyncio.create_task(self._tick()), asyncio.create_task(monitor_usage(env))]
        if self._live is not None:
            background.append(asyncio.create_task(self._show_live(self._live)))
        if spec.shape is not None and not shape_done.is_set():
            follow = follow_shape(spec.shape, first, self._apply, shape_done)
            background.append(asyncio.create_task(_guarded(follow, failed)))
        if stages:
            follow = follow_arrival_stages(stages, backend.set_arrival_rate, arrivals_done)
            background.append(asyncio.create_task(_guarded(follow, failed)))
        waiters: dict[asyncio.Task[Any], StopReason | None] = {
            asyncio.create_task(backend.ended()): None,
            asyncio.create_task(failed.wait()): StopReason.ERROR,
            asyncio.create_task(shape_done.wait()): StopReason.SHAPE_ENDED,
            asyncio.create_task(arrivals_done.wait()): StopReason.ARRIVAL_STAGES_ENDED,
            asyncio.create_task(stop.wait()): StopReason.STOPPED,
            asyncio.create_task(env.stop_requested.wait()): StopReason.BY_TEST_CODE,
        }
        reason = StopReason.RUN_TIME
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=run_time_s, return_when=asyncio.FIRST_COMPLETED
            )
            # The first condition met, in the order above (the backend's own first).
            for task, why in waiters.items():
                if task in done:
                    reason = why if why is not None else task.result()
                    break
        finally:
            self._running = False
            for task in (*waiters, *background):
                task.cancel()
            user_count = backend.user_count
            env.events.test_stopping.fire(environment=env)
            await backend.stop(reason)
            backend.engine.tick(user_count, full_history=spec.full_history)
            if self._history is not None:
                self._history.append(backend.engine)
            env.events.test_stop.fire(environment=env)
        snapshot = backend.engine.snapshot(with_history=True)
        return Outcome(snapshot, reason, backend.spawn_error, backend.task_runs)

    async def _tick(self) -> None:
        backend, full_history = self.backend, self.spec.full_history
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            backend.engine.tick(backend.user_count, full_history=full_history)
            if self._history is not None:
                self._history.append(backend.engine)

    async def _show_live(self, live: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self._live_interval_s)
            live()


async def _guarded(follow: Awaitable[None], failed: asyncio.Event) -> None:
    """Runs a follower of the run (a load shape, arrival stages); one that
    raises is logged with its traceback and sets ``failed``, which ends the
    run with its reports."""
    try:
        await follow
    except Exception:
        log.exception("Following the load shape or the arrival stages failed; ending the run")
        failed.set()


def log_start(env: Environment, opts: RunOptions, backend: Backend) -> None:
    """Logs what the run is about to do, and where."""
    where = backend.where(env)
    if env.shape is not None:
        log.info("Following the load shape %s %s", type(env.shape).__name__, where)
    elif opts.arrival_rate:
        log.info(
            "Starting %s iterations/s on a pool of %d users %s",
            ", then ".join(f"{s.rate_per_s:g}" for s in opts.arrival_rate),
            opts.users,
            where,
        )
    else:
        log.info("Starting %d users at %g users/s %s", opts.users, opts.spawn_rate, where)


async def run_headless(
    env: Environment, opts: RunOptions, checks: Sequence[str], backend: Backend
) -> int:
    """Runs one test to its end (run time, iterations, a load shape's end,
    Ctrl-C or SIGTERM), then prints the final tables and writes every
    report. Returns the exit code: 3 for a failed check, else
    ``--exit-code-on-error`` for failures or user errors, else 0."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        # The first Ctrl-C (or SIGTERM) stops gracefully; a second one
        # stops at once. Either way the reports are written.
        if stop.is_set():
            log.warning("Stopping at once (signalled again); the reports are still written")
            hurry = getattr(env.runner, "hurry", None)
            if hurry is not None:
                hurry()
        elif opts.stop_timeout_s > 0:
            log.info(
                "Stopping: users get up to %gs to finish their tasks (--stop-timeout); "
                "Ctrl-C again stops at once",
                opts.stop_timeout_s,
            )
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    out = console(opts)
    engine = backend.engine

    def live() -> None:
        print(backend.describe(), file=out)
        print(engine.snapshot().stats_table(current=True), file=out, flush=True)

    try:
        code = await backend.ready(stop)
        if code is not None:
            return code
        log_start(env, opts, backend)
        driver = RunDriver(
            env,
            backend,
            RunSpec.from_options(opts, env.shape),
            live=None if opts.only_summary else live,
        )
        stopper = asyncio.create_task(_stop_when(backend.fatal, stop))
        try:
            outcome = await driver.run(stop)
        except Exception:
            # A bug of ours must not cost the user what was measured.
            log.exception("aiotest failed during the run; writing the reports gathered so far")
            snapshot = engine.snapshot(with_history=True)
            outcome = Outcome(snapshot, StopReason.INTERNAL_ERROR, None, backend.task_runs)
        finally:
            stopper.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("Stopped: %s", _describe_reason(outcome.reason, opts))
    if backend.distributed:
        print(backend.describe(), file=out)
    facts = RunFacts(
        host=env.host_summary(),
        script=opts.aiotestfile,
        user_classes=tuple(c.__name__ for c in env.user_classes),
        peak_users=opts.users,
        task_runs=outcome.task_runs,
    )
    exc = outcome.spawn_error
    if exc is not None:
        print(f"error: spawning users failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    code = finish_run(env.events, env, opts, checks, outcome.snapshot, facts, out=out)
    if exc is not None:
        return exc.exit_code if isinstance(exc, AiotestError) else 1
    if outcome.reason is StopReason.INTERNAL_ERROR:
        return 1
    return code


async def _stop_when(event: asyncio.Event, stop: asyncio.Event) -> None:
    await event.wait()
    stop.set()


def _describe_reason(reason: StopReason, opts: RunOptions) -> str:
    if reason is StopReason.RUN_TIME:
        return f"run time limit ({opts.run_time_s}s) reached"
    if reason is StopReason.ITERATIONS:
        return f"{opts.iterations} iterations done"
    return str(reason.value)
