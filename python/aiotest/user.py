"""User classes, tasks and tags, in Locust's habits.

A user class subclasses :class:`User` (or :class:`AsyncHttpUser` for HTTP)
and declares tasks with ``@task``; each simulated user is one instance,
running its tasks one after another with ``wait_time`` between them.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Collection
from types import CoroutineType
from typing import Any, ClassVar, Protocol

from ._bridge import EngineBridge
from .exceptions import (
    InterruptTaskSet,
    RescheduleTask,
    RescheduleTaskImmediately,
    StopUser,
)
from .http import HttpSession
from .sync import SyncRunner, await_only
from .taskset import TaskFn, call_task, collect_tasks, is_taskset
from .wait_time import constant

#: A class's runnable tasks and their cumulative weights, for ``random.choices``.
TaskTable = tuple[list[TaskFn], list[int]]


class UserContext(Protocol):
    """What a user needs from the run it belongs to (its runner, see
    :class:`aiotest.runner.LocalRunner`): the iteration budget, where errors
    and requests go, and its place in the cluster. Users see this, not the
    whole environment."""

    bridge: EngineBridge | None
    worker_index: int
    worker_count: int

    def task_table(self, cls: type[User]) -> TaskTable: ...

    def claim_iteration(self) -> bool: ...

    def release_iteration(self) -> None: ...

    def task_done(self) -> None: ...

    def record_error(self, exc: BaseException) -> None: ...


def task_table(cls: type[User], tags: Collection[str], exclude_tags: Collection[str]) -> TaskTable:
    """``cls``'s tasks that ``-T/--tags`` and ``-E/--exclude-tags`` keep
    (a task with any excluded tag is dropped; with ``tags``, only tasks with
    one of them stay), with cumulative weights; tasks of weight 0 never run."""

    def kept(fn: Any) -> bool:
        fn_tags: set[str] = getattr(fn, "aiotest_tag_set", set())
        if tags and not (fn_tags & set(tags)):
            return False
        return not (fn_tags & set(exclude_tags))

    pairs = [(fn, w) for fn, w in cls.tasks if w > 0 and kept(fn)]
    return [fn for fn, _ in pairs], list(itertools.accumulate(w for _, w in pairs))


def _awaitable(result: Any) -> bool:
    """Whether a task's return value must be awaited (``async def`` tasks,
    or plain ones returning an awaitable); coroutines are checked first."""
    return type(result) is CoroutineType or inspect.isawaitable(result)


def _wake_up(wake: asyncio.Future[None]) -> None:
    """Ends a wait time (a ``call_later`` callback)."""
    if not wake.done():
        wake.set_result(None)


class _UserMeta(type):
    """Collects each class's tasks: the ``tasks`` attribute if set, else the
    ``@task`` methods (inherited ones too). Classes are concrete unless they
    set ``abstract = True`` themselves."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> _UserMeta:
        ns.setdefault("abstract", False)
        ns["tasks"] = collect_tasks(name, bases, ns)
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
    #: Tasks, ``on_start`` and ``on_stop`` are blocking-style code, run in
    #: a greenlet (Locust's users: ``self.client.get(...)`` without await).
    blocking: ClassVar[bool] = False
    host: str | None = None
    weight: float = 1
    fixed_count: int = 0
    wait_time: ClassVar[Callable[[Any], float]] = constant(0)
    tasks: list[tuple[TaskFn, int]] = []

    def __init__(
        self,
        environment: Any,
        *,
        user_index: int | None = None,
        context: UserContext | None = None,
    ) -> None:
        #: The run object (:class:`aiotest.Environment`), for user code.
        self.environment = environment
        # A runner's user comes through `create` with these set already.
        preset = self.__dict__
        self.user_index = user_index if user_index is not None else preset.get("user_index", 0)
        # The runner passes itself; a user made by hand finds its runner.
        ctx: UserContext = (
            context if context is not None else preset.get("_context") or environment.runner
        )
        self._context = ctx
        self.worker_index: int = ctx.worker_index
        self.worker_count: int = ctx.worker_count
        self._stop_requested = False
        self._waiting = False
        #: The future a wait time awaits, while it does (see _end_wait).
        self._wake: asyncio.Future[None] | None = None
        self._task_started_at: float | None = None
        self._start_failed = False
        self._sync: SyncRunner | None = None
        self._task_fns, self._task_cum_weights = ctx.task_table(type(self))

    def context(self) -> dict[str, Any]:
        """Values every request of this user passes to the ``request``
        listeners as ``context`` (Locust's ``User.context``); override it.
        A request's own ``context=`` wins over these."""
        return {}

    @classmethod
    def create(cls, environment: Any, *, user_index: int, context: UserContext) -> Any:
        """Makes a user of this class for a runner. ``__init__`` gets the
        environment alone, as in Locust, so a subclass written for Locust
        (``def __init__(self, parent): ...; super().__init__(parent)``)
        works; the index and runner are set before it runs."""
        user = cls.__new__(cls)
        user.user_index = user_index
        user._context = context
        cls.__init__(user, environment)
        return user

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

    async def _call(self, fn: Callable[..., Any]) -> None:
        """Runs ``on_start`` or ``on_stop`` (``fn``, bound) as its user runs tasks."""
        if self.blocking:
            await self._sync_runner().call(call_task, fn, self)
            return
        result = fn()
        if _awaitable(result):
            await result

    async def run(self) -> None:
        """The user's life: ``on_start``, then tasks and waits until stopped,
        then ``on_stop``. Exceptions in tasks are recorded as errors and the
        user goes on; :class:`StopUser`, or an exception in ``on_start``,
        ends this user."""
        if self.blocking:
            await self._run_blocking_life()
            return
        ctx = self._context
        bridge = ctx.bridge
        try:
            if not await self._start():
                return
            while not self._stop_requested:
                if not ctx.claim_iteration():
                    return
                turn = bridge.turns if bridge is not None else -1
                # run_iteration inlined for an async task: one coroutine
                # fewer per iteration (~1,000 instructions; see http.py's
                # NOTE for how it was measured).
                fn = self.pick_task()
                self._task_started_at = time.monotonic()
                if isinstance(fn, type) and is_taskset(fn):
                    if not await self._run_blocking(fn):
                        return
                else:
                    try:
                        result = fn(self)
                        if type(result) is CoroutineType or _awaitable(result):
                            await result
                    except StopUser:
                        return
                    except Exception as exc:
                        ctx.record_error(exc)
                    finally:
                        ctx.task_done()
                if self._stop_requested:
                    return
                wait_s = self.wait_time()
                if not wait_s and bridge is not None and bridge.turns != turn:
                    # Zero wait, and the task already gave the loop a turn
                    # (it awaited a request): other users have had theirs.
                    continue
                await self.sleep(wait_s)
        finally:
            await self._stop()

    async def sleep(self, seconds: float) -> None:
        """Waits ``seconds`` as a wait time: a stop ends the wait early,
        without cancelling the user's task."""
        self._waiting = True
        try:
            if seconds > 0:
                # asyncio.sleep's own steps, with the future kept so that a
                # stop can end the wait early (_end_wait).
                loop = asyncio.get_running_loop()
                wake = self._wake = loop.create_future()
                timer = loop.call_later(seconds, _wake_up, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                    self._wake = None
            else:
                await asyncio.sleep(0)
        finally:
            self._waiting = False

    async def run_pooled(self, next_turn: Callable[[], Awaitable[float]]) -> None:
        """A pool user's life in the open workload model: ``on_start``, then
        one iteration each time ``next_turn()`` hands it an arrival (it
        returns how late, in s, the iteration starts, which each request
        then carries to be recorded corrected for coordinated omission),
        until stopped; then ``on_stop``."""
        try:
            if not await self._start():
                return
            while not self._stop_requested:
                self._waiting = True
                try:
                    lag_s = await next_turn()
                finally:
                    self._waiting = False
                self._set_intended_lag(round(lag_s * 1e6))
                try:
                    if not await self.run_iteration():
                        return
                finally:
                    self._set_intended_lag(None)
        finally:
            await self._stop()

    def request_stop(self, *, force: bool = False) -> bool:
        """Asks the user to stop after its current task. A user waiting out
        its wait time ends the wait and returns at once, even when forced
        (a cancellation's traceback would stay with its task until the run
        ends: ~1 KB a user). Returns True when its task must be cancelled:
        it waits for something else (an arrival), or ``force`` is set and
        it is inside a task."""
        self._stop_requested = True
        if self._waiting:
            return not self._end_wait()
        return force

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called."""
        return self._stop_requested

    def _end_wait(self) -> bool:
        """Ends the current wait time now; False when the user is not in one
        this can end (it must be cancelled instead)."""
        wake = self._wake
        if wake is None or wake.done():
            return False
        wake.set_result(None)
        return True

    async def _start(self) -> bool:
        """Runs ``on_start``; False when the user must end: it raised
        :class:`StopUser` (``on_stop`` still runs), or another exception,
        recorded as an error (``on_stop`` does not run), as in Locust."""
        try:
            await self._call(self.on_start)
        except StopUser:
            return False
        except Exception as exc:  # user code: record it; this user ends
            self._context.record_error(exc)
            self._start_failed = True
            return False
        return True

    async def run_iteration(self) -> bool:
        """Runs one task picked by weight (an iteration); False when the
        user must stop (:class:`StopUser`). Other exceptions are recorded."""
        runner = self._context
        fn = self.pick_task()
        self._task_started_at = time.monotonic()
        # is_taskset and _awaitable inlined for an async task: two calls
        # fewer per iteration.
        if self.blocking or (isinstance(fn, type) and is_taskset(fn)):
            return await self._run_blocking(fn)
        try:
            # _call inlined: one coroutine fewer per iteration.
            result = fn(self)
            if type(result) is CoroutineType or _awaitable(result):
                await result
        except StopUser:
            return False
        except Exception as exc:
            runner.record_error(exc)
        finally:
            runner.task_done()
        return True

    def _sync_runner(self) -> SyncRunner:
        """This user's greenlet for blocking-style code, made on first use."""
        runner = self._sync
        if runner is None:
            runner = self._sync = SyncRunner()
        return runner

    async def _run_blocking(self, fn: TaskFn) -> bool:
        """Runs a task in a greenlet (see :mod:`aiotest.sync`): a task set,
        whose own tasks are the iterations, or a task of a blocking-style
        user. False when the user must stop."""
        return await self._sync_runner().call(self._execute_blocking, fn)

    def _execute_blocking(self, fn: TaskFn) -> bool:
        """:meth:`_run_blocking`'s work, inside the greenlet."""
        runner = self._context
        nested = is_taskset(fn)
        if nested:
            runner.release_iteration()
        try:
            call_task(fn, self)
        except StopUser:
            return False
        except (RescheduleTask, RescheduleTaskImmediately, InterruptTaskSet):
            pass
        except Exception as exc:
            runner.record_error(exc)
        finally:
            if not nested:
                runner.task_done()
        return True

    async def _run_blocking_life(self) -> None:
        """:meth:`run` for a blocking-style user: ``on_start``, the tasks and
        the waits all run in one call into its greenlet, so that a task
        switches to the user's asyncio task only for what it waits on (its
        requests, its wait time); then ``on_stop``.

        NOTE: against a greenlet call per task (two more switches and an
        outcome object each), eight alternating pairs of 3 s runs of a
        zero-wait FastHttpUser locustfile (50 users, one core) gained a
        median 9 % (per pair 0.96-1.23 x, 2026-12-02). With the request
        awaited without a coroutine (``RequestContext.wait``) and a bare
        ``client.get(url)`` skipping the argument handling, bench/run.py
        locustfile went from 0.86 to 0.90 x the async user's req/s."""
        try:
            await self._sync_runner().call(self._blocking_life)
        finally:
            await self._stop()

    def _blocking_life(self) -> None:
        ctx = self._context
        bridge = ctx.bridge
        try:
            call_task(self.on_start, self)
        except StopUser:
            return
        except Exception as exc:  # user code: record it; this user ends
            ctx.record_error(exc)
            self._start_failed = True
            return
        while not self._stop_requested:
            if not ctx.claim_iteration():
                return
            turn = bridge.turns if bridge is not None else -1
            self._task_started_at = time.monotonic()
            if not self._execute_blocking(self.pick_task()):
                return
            if self._stop_requested:
                return
            wait_s = self.wait_time()
            if not wait_s and bridge is not None and bridge.turns != turn:
                continue  # the request gave the others their turn (see run)
            await_only(self.sleep(wait_s))

    async def _stop(self) -> None:
        """Runs ``on_stop``, recording its errors (not after a failed ``on_start``)."""
        if self._start_failed:
            return
        try:
            await self._call(self.on_stop)
        except (Exception, StopUser) as exc:
            if not isinstance(exc, StopUser):
                self._context.record_error(exc)

    def _set_intended_lag(self, lag_us: int | None) -> None:
        """Open workload model: how late the current iteration started."""


class AsyncHttpUser(User):
    """A user with an HTTP session: ``self.session.get(...)`` and friends.

    Attributes:
        network_timeout: Seconds before a request fails (Locust
            FastHttpUser's name and 60 s default); a request's ``timeout=``
            overrides it.
        max_body_bytes: A longer response body fails the request, with the
            reason; None for 64 MiB. A request's ``max_body_bytes=``
            overrides it.
        insecure: Skip the verification of servers' TLS certificates
            (FastHttpUser's name); ``--insecure`` does it for every user.
        verify: As ``requests``' ``verify``: True (the platform's trust
            store, or the bundle ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE``
            names), False, or a PEM CA bundle's path. A request's
            ``verify=`` overrides it.
        cert: A client certificate for mutual TLS: ``(cert_file,
            key_file)``, or one PEM file holding both.
        http_version: ``"auto"`` (HTTP/2 when a TLS server picks it by
            ALPN, else HTTP/1.1), ``"1.1"`` (HTTP/1.1 only) or ``"2"`` (as
            auto over TLS, and HTTP/2 with prior knowledge, h2c, over plain
            http); ``--http-version`` sets it for every user.
    """

    abstract = True
    network_timeout: float = 60.0
    max_body_bytes: int | None = None
    insecure: bool = False
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    http_version: str = "auto"

    def __init__(
        self,
        environment: Any,
        *,
        user_index: int | None = None,
        context: UserContext | None = None,
    ) -> None:
        super().__init__(environment, user_index=user_index, context=context)
        bridge = self._context.bridge
        if bridge is None:
            raise RuntimeError("an AsyncHttpUser needs a running engine: start it from a run")
        options = getattr(self.environment, "parsed_options", None)
        insecure = self.insecure or bool(getattr(options, "insecure", False))
        self.session = HttpSession(
            bridge,
            base_url=self.host,
            timeout_s=self.network_timeout,
            verify=False if insecure else self.verify,
            cert=self.cert,
            http_version=getattr(options, "http_version", None) or self.http_version,
        )
        self.session.max_body_bytes = self.max_body_bytes
        if type(self).context is not User.context:
            self.session.user_context = self.context

    def _set_intended_lag(self, lag_us: int | None) -> None:
        self.session.intended_lag_us = lag_us

    # Locust's HttpUser calls it `client`; keep that name working.
    @property
    def client(self) -> HttpSession:
        return self.session
