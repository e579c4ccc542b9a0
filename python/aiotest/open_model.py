"""The open workload model: task iterations start at a fixed arrival rate,
whatever the target's response times, on a pool of users (k6's
constant-arrival-rate, Gatling's ``constantUsersPerSec``).

Each arrival has an intended start time, ``t0 + k / rate``. An idle user of
the pool takes the oldest waiting arrival and runs one task; when every user
is busy, arrivals wait in a backlog. How late an iteration starts (its lag)
goes with each of its requests, and the engine records them twice: as
measured, and corrected for coordinated omission (measured + lag), as wrk2
does. So a stalled target shows in the corrected percentiles even when the
pool is too small to keep sending.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from .options import ArrivalStage

log = logging.getLogger("aiotest.open_model")

#: Seconds between warnings that the pool cannot keep up.
WARN_INTERVAL_S = 5.0
#: An iteration that starts this late means the pool is too small.
LATE_S = 0.1


class IterationBudget(Protocol):
    """What the arrivals draw on: the run's iteration limit (``-i``) and
    the size of the pool (a :class:`aiotest.runner.LocalRunner`)."""

    @property
    def user_count(self) -> int: ...

    def claim_iteration(self) -> bool: ...

    def release_iteration(self) -> None: ...


class OpenModel:
    """Arrivals for one pool of users.

    Args:
        budget: The pool's runner: its iteration limit and user count.
        rate_per_s: Iterations started per second (> 0).

    Attributes:
        started: Iterations started so far.
        dropped: Arrivals dropped because the backlog was full.
    """

    def __init__(self, budget: IterationBudget, rate_per_s: float) -> None:
        self.budget = budget
        self.rate_per_s = rate_per_s
        self.started = 0
        self.dropped = 0
        self._idle: deque[asyncio.Future[float]] = deque()
        self._backlog: deque[float] = deque()
        self._max_backlog = max(1_000, int(10 * rate_per_s))
        self._scheduler: asyncio.Task[None] | None = None
        self._worst_lag_s = 0.0
        self._last_warning = 0.0

    def start(self) -> None:
        """Starts the arrivals (idempotent)."""
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(self._arrivals())

    def stop(self) -> None:
        """No more arrivals; waiting ones are dropped."""
        if self._scheduler is not None:
            self._scheduler.cancel()
        self._backlog.clear()

    def set_rate(self, rate_per_s: float, *, restart: bool) -> None:
        """Changes the arrival rate; with ``restart``, the arrivals start
        again at once at the new rate (else at the next :meth:`start`)."""
        self.stop()
        self.rate_per_s = rate_per_s
        self._max_backlog = max(1_000, int(10 * rate_per_s))
        self._scheduler = None
        if restart:
            self.start()

    async def _arrivals(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while True:
            due = int((loop.time() - t0) * self.rate_per_s) + 1
            while k < due:
                intended = t0 + k / self.rate_per_s
                k += 1
                if not self.budget.claim_iteration():
                    return
                if len(self._backlog) >= self._max_backlog:
                    self.dropped += 1
                    self.budget.release_iteration()
                else:
                    self._backlog.append(intended)
            self._dispatch()
            self._warn_if_behind(loop.time())
            await asyncio.sleep(max(0.0, t0 + k / self.rate_per_s - loop.time()))

    def _dispatch(self) -> None:
        while self._idle and self._backlog:
            turn = self._idle.popleft()
            if not turn.done():
                turn.set_result(self._backlog.popleft())

    def _warn_if_behind(self, now: float) -> None:
        if now - self._last_warning < WARN_INTERVAL_S:
            return
        if self._worst_lag_s < LATE_S and not self.dropped:
            return
        self._last_warning = now
        log.warning(
            "The pool of %d users cannot sustain %g iterations/s: iterations started up to "
            "%.2fs late (%d dropped); raise -u/--users",
            self.budget.user_count,
            self.rate_per_s,
            self._worst_lag_s,
            self.dropped,
        )
        self._worst_lag_s = 0.0

    async def next_turn(self) -> float:
        """Waits, as an idle user of the pool, for the oldest waiting
        arrival; returns how late (s) its iteration starts against its
        intended start time. A pool user's life awaits it before each
        iteration (see :meth:`aiotest.User.run_pooled`)."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[float] = loop.create_future()
        self._idle.append(turn)
        self._dispatch()
        try:
            intended = await turn
        finally:
            if not turn.done():
                turn.cancel()
        lag_s = max(0.0, loop.time() - intended)
        self._worst_lag_s = max(self._worst_lag_s, lag_s)
        self.started += 1
        return lag_s


async def follow_arrival_stages(
    stages: Sequence[ArrivalStage], apply: Callable[[float], object], done: asyncio.Event
) -> None:
    """Steps through ``--arrival-rate`` stages: applies each rate in turn,
    and sets ``done`` after the last stage's duration; a last stage without
    one holds until the run ends."""
    for stage in stages:
        apply(stage.rate_per_s)
        if stage.duration_s is None:
            return
        await asyncio.sleep(stage.duration_s)
    done.set()
