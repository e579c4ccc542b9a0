"""The in-process API: :func:`run` and :func:`run_async` run a load test
from Python code (a pytest test, a script) on the one run lifecycle and
return its :class:`~aiotest.RunResult`; :func:`run_single_user` is
Locust's debugging helper on the same path."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from . import _bridge
from ._core import validate_checks
from .env import Environment
from .exceptions import ConfigError
from .lifecycle import LocalBackend, Outcome, RunDriver, RunSpec
from .result import RunResult
from .shape import LoadStep
from .user import User


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
    """:func:`run` for code already inside an event loop; arguments and
    errors as for :func:`run`."""
    if run_time_s is None and iterations is None:
        raise ConfigError("give run_time_s or iterations, or the test would never end")
    validate_checks(list(checks))
    env = Environment(
        user_classes=user_classes,
        host=host,
        tags=tags,
        exclude_tags=exclude_tags,
        stop_timeout_s=stop_timeout_s,
    )
    spec = RunSpec(
        step=LoadStep(users, spawn_rate),
        run_time_s=run_time_s,
        iterations=iterations,
        reset_stats=reset_stats,
    )
    outcome = await _run_here(env, spec)
    if outcome.spawn_error is not None:
        raise outcome.spawn_error
    return RunResult.from_snapshot(outcome.snapshot, task_runs=outcome.task_runs, checks=checks)


async def _run_here(env: Environment, spec: RunSpec) -> Outcome:
    """One run of ``env``'s users in this process, to its end."""
    return await RunDriver(env, LocalBackend(env), spec).run(asyncio.Event())


def run_single_user(
    user_class: type[User],
    include_length: bool = False,
    include_time: bool = False,
    include_context: bool = False,
    include_payload: bool = False,
    loglevel: str | None = "WARNING",
    *,
    run_time_s: float | None = None,
    iterations: int | None = None,
) -> None:
    """Runs one user of ``user_class`` in this process, printing each
    request, until Ctrl-C (or ``run_time_s``, or ``iterations`` tasks):
    Locust's debugging helper (``from locust import run_single_user``).

    Args:
        include_length, include_time, include_context: Also print each
            request's bytes, ms and context. ``include_payload`` and
            ``loglevel`` are accepted for Locust's scripts.
        run_time_s, iterations: End the run after these, when given.
    """

    def show(request_type: str, name: str, response_time: float, **kw: Any) -> None:
        parts = [f"{request_type:<8} {name}"]
        if kw.get("exception"):
            parts.append(f"failed: {kw['exception']}")
        if include_time:
            parts.append(f"{response_time:.1f} ms")
        if include_length:
            parts.append(f"{kw.get('response_length', 0)} bytes")
        if include_context:
            parts.append(str(kw.get("context")))
        print("  ".join(parts), flush=True)

    env = Environment(user_classes=[user_class])
    env.events.request.add_listener(show)
    spec = RunSpec(step=LoadStep(1, 1.0), run_time_s=run_time_s, iterations=iterations)
    try:
        _bridge.run(_run_here(env, spec))
    except KeyboardInterrupt:
        pass
    finally:
        env.events.request.remove_listener(show)
