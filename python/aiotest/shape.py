"""Load shapes: the user count and spawn rate as a function of time, in
Locust's habits. Define one ``LoadTestShape`` subclass in the aiotestfile
and it drives the run (``-u``, ``-r`` and ``-t`` are then ignored)::

    class Steps(LoadTestShape):
        def tick(self):
            t = self.get_run_time()
            if t < 60:
                return (10, 5)          # 10 users, ramped at 5 users/s
            if t < 120:
                return (50, 10, [Shopper])   # only Shopper users
            return None                 # end the run

``tick()`` is called once a second. ``--test-plan 10:1m,50@10:1m`` is the
same stepped ramp from the command line. In distributed mode the master
evaluates the shape and hands each step to the workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .exceptions import ConfigError
from .user import User

#: What ``tick()`` returns: (users, spawn rate per s[, user classes]) or None.
ShapeStep = tuple[int, float] | tuple[int, float, Sequence["type[User]"]] | None

#: Seconds between ``tick()`` calls (Locust's shape loop ticks every second).
TICK_INTERVAL_S = 1.0


class LoadTestShape:
    """Subclass it and override :meth:`tick`.

    Attributes:
        runner: The process's runner (``environment.runner``), set before
            the run starts; None until then.
    """

    abstract = True
    runner: Any = None

    def __init__(self) -> None:
        self.start_time = time.monotonic()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.abstract = cls.__dict__.get("abstract", False)

    def reset_time(self) -> None:
        """Starts the shape's clock again (the run calls it at start)."""
        self.start_time = time.monotonic()

    def get_run_time(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.start_time

    def get_current_user_count(self) -> int:
        """Users running now (Locust's name)."""
        return int(self.runner.user_count) if self.runner is not None else 0

    def tick(self) -> ShapeStep:
        """The load for now: ``(users, spawn_rate)``, optionally with the
        user classes to run, or None to end the run."""
        raise NotImplementedError


class StagesShape(LoadTestShape):
    """Stages run one after another: each holds a user count for a duration.

    Args:
        stages: ``(users, spawn_rate_per_s or None, duration_s)`` each.
        default_spawn_rate: The rate of stages that give none (``-r``).
    """

    def __init__(
        self, stages: Sequence[tuple[int, float | None, float]], default_spawn_rate: float
    ) -> None:
        super().__init__()
        ends, t = [], 0.0
        for users, rate, duration_s in stages:
            t += duration_s
            ends.append((t, users, rate or default_spawn_rate))
        self._ends = ends

    def tick(self) -> ShapeStep:
        now = self.get_run_time()
        for end_s, users, rate in self._ends:
            if now < end_s:
                return users, rate
        return None


def shape_from_options(opts: Any, found: list[type[LoadTestShape]]) -> LoadTestShape | None:
    """The shape the run follows: ``--test-plan``, else the aiotestfile's
    one shape class, else None.

    Raises:
        ConfigError: More than one shape class, or both a class and
            ``--test-plan``.
    """
    plan = getattr(opts, "test_plan", None)
    if len(found) > 1:
        names = ", ".join(c.__name__ for c in found)
        raise ConfigError(f"the aiotestfile defines several load shapes ({names}): keep one")
    if plan and found:
        raise ConfigError(
            f"both --test-plan and the shape class {found[0].__name__} are given: use one of them"
        )
    if plan:
        stages = [(s.users, s.spawn_rate_per_s, s.duration_s) for s in plan]
        return StagesShape(stages, default_spawn_rate=opts.spawn_rate)
    return found[0]() if found else None


#: The most users a run may ask for: a cluster of 5,000 workers with 2,000
#: users each; more is a typo (or a hostile request), not a test.
MAX_USERS = 10_000_000
#: The fastest spawn rate, in users per second.
MAX_SPAWN_RATE_PER_S = 1_000_000.0


def load_problem(users: object, spawn_rate: object) -> str | None:
    """Why ``users`` at ``spawn_rate`` users/s is no load a run can take
    (a sentence with the bounds), or None."""
    if not isinstance(users, int) or isinstance(users, bool) or not 0 <= users <= MAX_USERS:
        return f"{users!r} users: give a whole number from 0 to {MAX_USERS:,}"
    if (
        not isinstance(spawn_rate, (int, float))
        or isinstance(spawn_rate, bool)
        or not 0 < spawn_rate <= MAX_SPAWN_RATE_PER_S
    ):
        return (
            f"a spawn rate of {spawn_rate!r}: give users per second above 0 "
            f"and at most {MAX_SPAWN_RATE_PER_S:,.0f}"
        )
    return None


@dataclass(frozen=True)
class LoadStep:
    """The load a run holds: ``users`` in all, started at ``spawn_rate``
    users/s, of ``classes`` (all of the run's classes when None)."""

    users: int
    spawn_rate: float
    classes: tuple[type[User], ...] | None = None


def unpack_step(step: Any) -> LoadStep:
    """The :class:`LoadStep` of a shape's ``tick()`` result,
    ``(users, spawn_rate[, classes])``.

    Raises:
        ConfigError: Anything else, naming what it got and what to return.
    """
    if isinstance(step, tuple) and len(step) in (2, 3):
        users, rate = step[0], step[1]
        classes = tuple(step[2]) if len(step) == 3 else None
        problem = load_problem(users, rate)
        if problem is None:
            return LoadStep(users, float(rate), classes)
        raise ConfigError(f"a load shape's tick() returned {step!r}: {problem}")
    raise ConfigError(
        f"a load shape's tick() returned {step!r}: return (users, spawn_rate), "
        "(users, spawn_rate, [UserClass, ...]) or None"
    )


async def follow_shape(
    shape: LoadTestShape, first: Any, apply: Callable[[LoadStep], None], done: asyncio.Event
) -> None:
    """Calls ``shape.tick()`` every :data:`TICK_INTERVAL_S`; applies each
    step that differs from the last, and sets ``done`` when it returns None.

    Raises:
        ConfigError: A step that :func:`unpack_step` rejects.
    """
    last = first
    while True:
        await asyncio.sleep(TICK_INTERVAL_S)
        step = shape.tick()
        if step is None:
            done.set()
            return
        if step != last:
            apply(unpack_step(step))
            last = step
