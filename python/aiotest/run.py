"""Running a test to its end: the one path shared by the command line and the
in-process API (:func:`aiotest.run`, the pytest plugin)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _bridge, _core
from .env import Environment
from .exceptions import ConfigError
from .open_model import follow_arrival_stages
from .result import RunResult
from .shape import TICK_INTERVAL_S

if TYPE_CHECKING:
    from .shape import LoadTestShape
    from .user import User

log = logging.getLogger("aiotest.run")

#: Seconds per stats window: one history row each (Locust's CSV_STATS_INTERVAL_SEC).
STATS_INTERVAL_S = 1.0


class RunControl:
    """A handle on a running :func:`execute` for the web UI: stop it, or
    change its user count and spawn rate while it runs."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self._respawn: Callable[[int, float, list[type[User]] | None], None] | None = None

    def retarget(self, users: int, spawn_rate: float) -> None:
        """Ramps the running test to ``users`` users at ``spawn_rate``/s.

        Raises:
            RuntimeError: The run has not started or has ended.
        """
        if self._respawn is None:
            raise RuntimeError("no run is in progress")
        self._respawn(users, spawn_rate, None)


@dataclass
class Outcome:
    """How :func:`execute` ended."""

    snapshot: _core.StatsSnapshot
    #: "run time", "iterations", "all users stopped", "shape", "arrival
    #: stages", "stopped" or "spawn failed".
    reason: str
    spawn_error: BaseException | None


async def execute(
    env: Environment,
    *,
    users: int,
    spawn_rate: float,
    run_time_s: float | None = None,
    iterations: int | None = None,
    reset_stats: bool = False,
    full_history: bool = False,
    stop: asyncio.Event | None = None,
    live: Callable[[], None] | None = None,
    live_interval_s: float = 2.0,
    shape: LoadTestShape | None = None,
    arrival_stages: Sequence[dict[str, Any]] | None = None,
    control: RunControl | None = None,
    user_classes: Sequence[type[User]] | None = None,
) -> Outcome:
    """Runs one test in the running loop until the run time passes, the
    iterations are done, or ``stop`` is set; then stops the users and returns
    the final statistics, history included.

    Args:
        env: The run object.
        users: Peak user count.
        spawn_rate: Users started per second.
        run_time_s: Seconds before stopping; None runs until ``stop``.
        iterations: Total task executions before stopping.
        reset_stats: Reset the statistics once all users have spawned.
        full_history: History rows for every entry, not only Aggregated.
        stop: Set it to end the run early (Ctrl-C in the CLI).
        live: Called every ``live_interval_s`` seconds while running.
        shape: A load shape that sets users and spawn rate each second and
            ends the run; ``users``, ``spawn_rate`` and ``run_time_s`` are
            then ignored.
        arrival_stages: The open workload model: task iterations started
            per second on a pool of ``users`` users, as ``--arrival-rate``
            stages (``rate_per_s``, ``duration_s`` or None for the last).
        control: Lets the web UI change the user count while it runs; its
            ``stop`` event is used when ``stop`` is not given.
        user_classes: Run only these of the environment's classes (the web
            UI's class picker); all when None.

    Raises:
        ConfigError: A shape step that is not (users, spawn rate[, classes]).
    """
    from .data import reset_all

    reset_all()
    runner = env.create_local_runner(iterations=iterations)
    engine = env.engine
    assert engine is not None
    stop = stop or (control.stop if control is not None else asyncio.Event())
    env.events.test_start.fire(environment=env)
    shape_done = asyncio.Event()
    arrivals_done = asyncio.Event()
    if arrival_stages:
        runner.use_arrival_rate(arrival_stages[0]["rate_per_s"])
    classes = list(user_classes) if user_classes is not None else None
    if shape is not None:
        shape.reset_time()
        first = shape.tick()
        if first is None:
            shape_done.set()
            users = 0
        else:
            users, spawn_rate, classes = unpack_step(first)
        run_time_s = None
    spawn = asyncio.create_task(runner.start(users, spawn_rate, classes=classes))

    def spawned(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            stop.set()
        elif reset_stats:
            log.info("Resetting stats: all users spawned")
            engine.reset_stats()

    spawn.add_done_callback(spawned)
    background = [
        asyncio.create_task(
            _every(
                STATS_INTERVAL_S, lambda: engine.tick(runner.user_count, full_history=full_history)
            )
        )
    ]
    if live is not None:
        background.append(asyncio.create_task(_every(live_interval_s, live)))
    def step(users: int, spawn_rate: float, classes: list[type[User]] | None) -> None:
        nonlocal spawn
        spawn.cancel()
        spawn = asyncio.create_task(runner.start(users, spawn_rate, classes=classes))

    if control is not None:
        control._respawn = step
    if shape is not None and not shape_done.is_set():
        background.append(asyncio.create_task(follow_shape(shape, first, step, shape_done)))
    if arrival_stages:
        background.append(
            asyncio.create_task(
                follow_arrival_stages(arrival_stages, runner.use_arrival_rate, arrivals_done)
            )
        )
    waiters = [
        asyncio.create_task(stop.wait()),
        asyncio.create_task(runner.iterations_done.wait()),
        asyncio.create_task(runner.all_users_stopped.wait()),
        asyncio.create_task(shape_done.wait()),
        asyncio.create_task(arrivals_done.wait()),
    ]
    reason = "run time"
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=run_time_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiters[1] in done:
            reason = "iterations"
        elif waiters[2] in done:
            reason = "all users stopped"
        elif waiters[3] in done:
            reason = "shape"
        elif waiters[4] in done:
            reason = "arrival stages"
        elif waiters[0] in done:
            reason = (
                "spawn failed"
                if spawn.done() and not spawn.cancelled() and spawn.exception()
                else "stopped"
            )
    finally:
        if control is not None:
            control._respawn = None
        for t in (*waiters, *background):
            t.cancel()
        spawn.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await spawn
        user_count = runner.user_count
        await runner.stop()
        engine.tick(user_count, full_history=full_history)
        env.events.test_stop.fire(environment=env)
    spawn_error = None if spawn.cancelled() else spawn.exception()
    return Outcome(engine.snapshot(with_history=True), reason, spawn_error)


def unpack_step(step: Any) -> tuple[int, float, list[type[User]] | None]:
    """``(users, spawn_rate[, classes])`` from a shape's ``tick()``.

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(step, tuple) and len(step) in (2, 3):
        users, rate = step[0], step[1]
        classes = list(step[2]) if len(step) == 3 else None
        if isinstance(users, int) and users >= 0 and isinstance(rate, (int, float)) and rate > 0:
            return users, float(rate), classes
    raise ConfigError(
        f"a load shape's tick() returned {step!r}: return (users, spawn_rate), "
        "(users, spawn_rate, [UserClass, ...]) or None"
    )


async def follow_shape(
    shape: LoadTestShape,
    first: Any,
    apply: Callable[[int, float, list[type[User]] | None], Any],
    done: asyncio.Event,
) -> None:
    """Calls ``shape.tick()`` every second; applies each new step, and sets
    ``done`` when it returns None. The master and local mode share it."""
    last = first
    while True:
        await asyncio.sleep(TICK_INTERVAL_S)
        step = shape.tick()
        if step is None:
            done.set()
            return
        if step != last:
            result = apply(*unpack_step(step))
            if asyncio.iscoroutine(result):
                await result
            last = step


async def _every(interval_s: float, fn: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        fn()


def run(
    user_classes: Sequence[type[User]],
    *,
    users: int = 1,
    spawn_rate: float = 1.0,
    run_time_s: float | None = None,
    iterations: int | None = None,
    host: str | None = None,
    tags: Sequence[str] = (),
    exclude_tags: Sequence[str] = (),
    stop_timeout_s: float = 0.0,
    checks: Sequence[str] = (),
    reset_stats: bool = False,
) -> RunResult:
    """Runs a load test in this process and returns its results.

    Blocks until the run time passes or the iterations are done; for use
    from synchronous code such as a pytest test. Inside a running event
    loop, await :func:`run_async` instead.

    Args:
        user_classes: The user classes to run.
        users: Peak user count.
        spawn_rate: Users started per second.
        run_time_s: Seconds to run. Give this or ``iterations``.
        iterations: Total task executions to run.
        host: Overrides the classes' ``host``.
        tags: Run only tasks with one of these tags.
        exclude_tags: Skip tasks with any of these tags.
        stop_timeout_s: Seconds users may take to finish their task at stop.
        checks: Checks such as ``"p95 < 200ms"``, evaluated on the result.
        reset_stats: Reset the statistics once all users have spawned.

    Returns:
        The final statistics, failures, errors and check outcomes.

    Raises:
        ConfigError: Bad arguments: no run time and no iterations, a bad
            host, a bad check, or user classes without tasks.
    """
    return _bridge.run(
        run_async(
            user_classes,
            users=users,
            spawn_rate=spawn_rate,
            run_time_s=run_time_s,
            iterations=iterations,
            host=host,
            tags=tags,
            exclude_tags=exclude_tags,
            stop_timeout_s=stop_timeout_s,
            checks=checks,
            reset_stats=reset_stats,
        )
    )


async def run_async(
    user_classes: Sequence[type[User]],
    *,
    users: int = 1,
    spawn_rate: float = 1.0,
    run_time_s: float | None = None,
    iterations: int | None = None,
    host: str | None = None,
    tags: Sequence[str] = (),
    exclude_tags: Sequence[str] = (),
    stop_timeout_s: float = 0.0,
    checks: Sequence[str] = (),
    reset_stats: bool = False,
) -> RunResult:
    """:func:`run` for code already inside an event loop."""
    from .exceptions import ConfigError

    if run_time_s is None and iterations is None:
        raise ConfigError("give run_time_s or iterations, or the test would never end")
    _core.validate_checks(list(checks))
    env = Environment(
        user_classes=user_classes,
        host=host,
        tags=tags,
        exclude_tags=exclude_tags,
        stop_timeout_s=stop_timeout_s,
    )
    outcome = await execute(
        env,
        users=users,
        spawn_rate=spawn_rate,
        run_time_s=run_time_s,
        iterations=iterations,
        reset_stats=reset_stats,
    )
    if outcome.spawn_error is not None:
        raise outcome.spawn_error
    return RunResult.from_snapshot(
        outcome.snapshot, task_runs=env.runner.task_runs if env.runner else 0, checks=checks
    )
