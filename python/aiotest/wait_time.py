"""Wait times between tasks, as in Locust: assign one to a user class's
``wait_time``, e.g. ``wait_time = between(1, 3)``. Every function returns
seconds."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

WaitTime = Callable[[Any], float]


def between(min_wait_s: float, max_wait_s: float) -> WaitTime:
    """A uniformly random wait between ``min_wait_s`` and ``max_wait_s`` seconds."""
    _check("between", min_wait_s, max_wait_s)
    return lambda _user: random.uniform(min_wait_s, max_wait_s)


def constant(wait_s: float) -> WaitTime:
    """The same wait, ``wait_s`` seconds, after every task."""
    _check("constant", wait_s)
    return lambda _user: wait_s


def constant_pacing(pace_s: float) -> WaitTime:
    """Starts a task every ``pace_s`` seconds at most: waits for whatever is
    left of ``pace_s`` after the task ran (0 when the task took longer)."""
    _check("constant_pacing", pace_s)

    def wait(user: Any) -> float:
        started: float | None = getattr(user, "_task_started_at", None)
        if started is None:
            return pace_s
        return max(0.0, pace_s - (time.monotonic() - started))

    return wait


def constant_throughput(task_runs_per_s: float) -> WaitTime:
    """At most ``task_runs_per_s`` task runs per second for each user: the
    inverse of :func:`constant_pacing`."""
    if not task_runs_per_s > 0:
        raise ValueError(f"constant_throughput needs a rate above 0, got {task_runs_per_s!r}")
    return constant_pacing(1.0 / task_runs_per_s)


def _check(name: str, *values: float) -> None:
    for v in values:
        if not (isinstance(v, (int, float)) and v >= 0):
            raise ValueError(f"{name}() takes seconds of 0 or more, got {v!r}")
    if len(values) == 2 and values[0] > values[1]:
        raise ValueError(f"{name}({values[0]}, {values[1]}): the minimum is above the maximum")
