"""User classes, tasks and tags, in Locust's habits.

A user class subclasses :class:`User` (or :class:`AsyncHttpUser` for HTTP)
and declares tasks with ``@task``; each simulated user is one instance,
running its tasks one after another with ``wait_time`` between them.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable, Iterable, Mapping
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeVar

from .exceptions import ConfigError, StopUser
from .http import HttpSession
from .wait_time import constant

if TYPE_CHECKING:
    from .env import Environment

F = TypeVar("F", bound=Callable[..., Any])
TaskFn = Callable[[Any], Any]


def _awaitable(result: Any) -> bool:
    """Whether a task's return value must be awaited (``async def`` tasks,
    or plain ones returning an awaitable); coroutines are checked first."""
    return type(result) is CoroutineType or inspect.isawaitable(result)


def _wake_up(wake: asyncio.Future[None]) -> None:
    """Ends a wait time (a ``call_later`` callback)."""
    if not wake.done():
        wake.set_result(None)


def task(weight: int | F = 1) -> Any:
    """Marks a method as a task: ``@task`` or ``@task(3)``, where the weight
    makes it that many times as likely to be picked."""

    def mark(fn: F, w: int) -> F:
        if not isinstance(w, int) or w < 0:
            raise ConfigError(f"@task weight must be a whole number of 0 or more, got {w!r}")
        fn.aiotest_task_weight = w  # type: ignore[attr-defined]
        return fn

    if callable(weight):
        return mark(weight, 1)
    return lambda fn: mark(fn, weight)


def tag(*tags: str) -> Callable[[F], F]:
    """Tags a task, for ``-T/--tags`` and ``-E/--exclude-tags``."""
    if not tags or not all(isinstance(t, str) for t in tags):
        raise ConfigError("@tag takes one or more tag names as strings, e.g. @tag('checkout')")

    def mark(fn: F) -> F:
        fn.aiotest_tag_set = set(getattr(fn, "aiotest_tag_set", set())) | set(tags)  # type: ignore[attr-defined]
        return fn

    return mark


def _normalise_tasks(owner: str, tasks: Any) -> list[tuple[TaskFn, int]]:
    items: Iterable[Any]
    if isinstance(tasks, Mapping):
        items = tasks.items()
    elif isinstance(tasks, (list, tuple)):
        items = tasks
    else:
        raise ConfigError(f"{owner}.tasks must be a list or a dict of task functions")
    out: list[tuple[TaskFn, int]] = []
    for item in items:
        fn, weight = (
            item if isinstance(item, tuple) else (item, getattr(item, "aiotest_task_weight", 1))
        )
        if not callable(fn) or not isinstance(weight, int) or weight < 0:
            raise ConfigError(
                f"{owner}.tasks holds {item!r}: give functions, or (function, weight) pairs"
            )
        out.append((fn, weight))
    return out


class _UserMeta(type):
    """Collects each class's tasks: the ``tasks`` attribute if set, else the
    ``@task`` methods (inherited ones too). Classes are concrete unless they
    set ``abstract = True`` themselves."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> _UserMeta:
        ns.setdefault("abstract", False)
        if "tasks" in ns:
            ns["tasks"] = _normalise_tasks(name, ns["tasks"])
        else:
            inherited: dict[str, tuple[TaskFn, int]] = {}
            for base in reversed(bases):
                for fn, w in getattr(base, "tasks", []):
                    inherited[getattr(fn, "__name__", repr(fn))] = (fn, w)
            for attr, value in ns.items():
                if callable(value) and hasattr(value, "aiotest_task_weight"):
                    inherited[attr] = (value, value.aiotest_task_weight)
            ns["tasks"] = list(inherited.values())
        return super().__new__(mcs, name, bases, ns)


class User(metaclass=_UserMeta):
    """A simulated user. Subclass it, add tasks, and set:

    Attributes:
        host: Base URL of the target; ``-H`` overrides it.
        weight: Relative share of the users (Locust's ``weight``).
        fixed_count: Exactly this many users of the class, taken first.
        abstract: True for base classes that must not run themselves.
        wait_time: Seconds between tasks, e.g. ``between(1, 3)``.
        tasks: ``@task`` methods, or a list or dict of functions.

    Each instance knows ``environment``; ``user_index``, unique over the
    whole cluster (0 to N-1 for N users) and kept for the run, so
    ``accounts[self.user_index]`` partitions data with no overlap; and
    ``worker_index`` / ``worker_count``, its worker's place in the cluster
    (0 and 1 in local mode). Tasks may be ``async def`` or plain functions.
    """

    abstract = True
    host: str | None = None
    weight: float = 1
    fixed_count: int = 0
    wait_time: Callable[[Any], float] = constant(0)
    tasks: list[tuple[TaskFn, int]] = []

    def __init__(self, environment: Environment, *, user_index: int = 0) -> None:
        self.environment = environment
        self.user_index = user_index
        runner = environment.runner
        self.worker_index: int = runner.worker_index if runner is not None else 0
        self.worker_count: int = runner.worker_count if runner is not None else 1
        self._stop_requested = False
        self._waiting = False
        #: The future a wait time awaits, while it does (see _end_wait).
        self._wake: asyncio.Future[None] | None = None
        self._task_started_at: float | None = None
        self._task_fns, self._task_cum_weights = environment.task_table(type(self))

    async def on_start(self) -> None:
        """Runs once when the user starts, before its first task."""

    async def on_stop(self) -> None:
        """Runs once when the user stops, even when stopped by force."""

    def pick_task(self) -> TaskFn:
        """A task chosen at random by weight."""
        fns = self._task_fns
        if len(fns) == 1:
            return fns[0]
        return random.choices(fns, cum_weights=self._task_cum_weights)[0]

    async def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        result = fn(*args)
        if _awaitable(result):
            await result

    async def run(self) -> None:
        """The user's life: ``on_start``, then tasks and waits until stopped,
        then ``on_stop``. Exceptions in user code are recorded as errors and
        the user goes on; :class:`StopUser` ends this user."""
        runner = self.environment.runner
        bridge = self.environment.bridge
        loop = asyncio.get_running_loop()
        try:
            if not await self._start():
                return
            while not self._stop_requested:
                if not runner.claim_iteration():
                    return
                turn = bridge.turns if bridge is not None else -1
                if not await self._run_one_task():
                    return
                if self._stop_requested:
                    return
                wait_s = self.wait_time()
                if not wait_s and bridge is not None and bridge.turns != turn:
                    # Zero wait, and the task already gave the loop a turn
                    # (it awaited a request): other users have had theirs.
                    continue
                self._waiting = True
                try:
                    if wait_s > 0:
                        # asyncio.sleep's own steps, with the future kept so
                        # that a stop can end the wait early (_end_wait).
                        wake = self._wake = loop.create_future()
                        timer = loop.call_later(wait_s, _wake_up, wake)
                        try:
                            await wake
                        finally:
                            timer.cancel()
                            self._wake = None
                    else:
                        await asyncio.sleep(0)
                finally:
                    self._waiting = False
        finally:
            await self._stop()

    def _end_wait(self) -> bool:
        """Ends the current wait time now; False when the user is not in one
        this can end (it must be cancelled instead)."""
        wake = self._wake
        if wake is None or wake.done():
            return False
        wake.set_result(None)
        return True

    async def _start(self) -> bool:
        """Runs ``on_start``; False when it raised :class:`StopUser`."""
        try:
            await self._call(self.on_start)
        except StopUser:
            return False
        except Exception as exc:  # user code: record and go on
            self.environment.runner.record_error(exc)
        return True

    async def _run_one_task(self) -> bool:
        """Runs one task picked by weight (an iteration); False when the
        user must stop (:class:`StopUser`). Other exceptions are recorded."""
        runner = self.environment.runner
        fn = self.pick_task()
        self._task_started_at = time.monotonic()
        try:
            # _call inlined: one coroutine fewer per iteration.
            result = fn(self)
            if _awaitable(result):
                await result
        except StopUser:
            return False
        except Exception as exc:
            runner.record_error(exc)
        finally:
            runner.task_done()
        return True

    async def _stop(self) -> None:
        """Runs ``on_stop``, recording its errors."""
        try:
            await self._call(self.on_stop)
        except (Exception, StopUser) as exc:
            if not isinstance(exc, StopUser):
                self.environment.runner.record_error(exc)

    def _set_intended_lag(self, lag_us: int | None) -> None:
        """Open workload model: how late the current iteration started."""


class AsyncHttpUser(User):
    """A user with an HTTP session: ``self.session.get(...)`` and friends.

    Attributes:
        network_timeout: Seconds before a request fails (Locust
            FastHttpUser's name and 60 s default); a request's ``timeout=``
            overrides it.
    """

    abstract = True
    network_timeout: float = 60.0

    def __init__(self, environment: Environment, *, user_index: int = 0) -> None:
        super().__init__(environment, user_index=user_index)
        self.session = HttpSession(
            environment.bridge,
            base_url=self.host,
            request_event=environment.events.request,
            timeout_s=self.network_timeout,
        )

    def _set_intended_lag(self, lag_us: int | None) -> None:
        self.session.intended_lag_us = lag_us

    # Locust's HttpUser calls it `client`; keep that name working.
    @property
    def client(self) -> HttpSession:
        return self.session
