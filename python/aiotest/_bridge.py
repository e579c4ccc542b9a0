"""Delivers the Rust engine's finished requests to the tasks awaiting them.

A request is awaited as a :class:`aiotest._core.RequestAwaitable`, an
asyncio future implemented in Rust that asyncio's own Task steps natively
(see ``src/bridge/awaitable.rs``): the turn that finishes the request
resolves it and wakes the task at once, with no Python Future, Handle or
extra pass of the loop's ready queue.

On a loop made by :func:`new_event_loop` (every loop aiotest starts), the
engine is *driven*: its requests run on the loop's own thread, turned by
:class:`EngineSelector` once per loop turn, which hands back every request
finished in that turn (see ``src/engine/driven.rs``). On any other loop,
requests run on the engine's threads, which push completions onto a queue
and write one wake-up byte to a socket only when the queue was empty and
undrained, so one ``_drain`` call delivers a whole batch (see
``src/engine/completion.rs``).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ._core import Engine, HttpSession, RawResponse, RequestAwaitable, RequestSpec
from .events import RequestEvent
from .exceptions import ConfigError

T = TypeVar("T")


def pump_events(link: Any, handle: Callable[[dict[str, Any]], None]) -> None:
    """Calls ``handle`` with each event of ``link`` (a ``Master`` or
    ``Worker``) as it arrives, on the running loop."""

    def drain() -> None:
        for event in link.drain_events():
            handle(event)

    asyncio.get_running_loop().add_reader(link.wakeup_fd(), drain)


class EngineBridge:
    """Connects one :class:`aiotest._core.Engine` to one asyncio loop.

    Args:
        engine: The engine whose completions to deliver.
        request_event: Notified of every completion the engine recorded (and
            of catch_response ones whose user was stopped before deciding),
            so listeners see exactly what the statistics count.
    """

    def __init__(self, engine: Engine, request_event: RequestEvent) -> None:
        self.engine = engine
        self.request_event = request_event
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Whether the attached loop drives the engine.
        self.driven = False
        #: Turns of a driving loop so far (stays 0 on other loops): a user
        #: whose task saw it change has already let the others run.
        self.turns = 0
        #: Requests in flight that carry a request context, for listeners.
        self._contexts: dict[RequestAwaitable, Mapping[str, Any]] = {}
        #: The specs of requests made with a method and URL alone, kept by
        #: the sessions on this engine (see ``HttpSession._plain``).
        self.plain_specs: dict[
            tuple[str, str], tuple[RequestSpec, float, int | None, int | None]
        ] = {}

    @property
    def attached(self) -> bool:
        """Whether completions are delivered on a loop now."""
        return self._loop is not None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts delivering completions on ``loop``; call from inside it.
        A loop from :func:`new_event_loop` drives the engine itself."""
        self._loop = loop
        selector = getattr(loop, "aiotest_selector", None)
        if isinstance(selector, EngineSelector):
            self.engine.set_driven(True)
            selector.bridge = self
            self.driven = True
        else:
            self.engine.set_driven(False)
            loop.add_reader(self.engine.wakeup_fd(), self._drain)

    def detach(self) -> None:
        """Stops delivering completions; requests still awaited on a driving
        loop fail with RuntimeError. Idempotent."""
        loop = self._loop
        if loop is None:
            return
        selector = getattr(loop, "aiotest_selector", None)
        if isinstance(selector, EngineSelector) and selector.bridge is self:
            selector.bridge = None
            self.driven = False
            for waiter in self.engine.pending():
                waiter.fail(RuntimeError("the engine was detached from the event loop"))
        else:
            loop.remove_reader(self.engine.wakeup_fd())
            self._drain()
        self._loop = None

    def submit(
        self, session: HttpSession, spec: RequestSpec, context: Mapping[str, Any] | None = None
    ) -> RequestAwaitable:
        """Starts a request; the returned awaitable resolves to its
        :class:`RawResponse` (``spec.record`` says whether the engine
        records it). ``context`` goes to the request listeners with it.

        Raises:
            RuntimeError: The bridge is not attached to a running loop.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the engine is not attached to a running event loop")
        waiter = self.engine.submit(session, spec, loop)
        if context is not None and spec.record and self.request_event.has_listeners:
            # Recorded by the engine: the listeners hear of it in deliver().
            # A catch_response request's context stays with its RequestContext.
            self._contexts[waiter] = context
        return waiter

    def read(self, raw: RawResponse, kind: str) -> RequestAwaitable:
        """Starts reading the next piece of ``raw``'s streamed body (see
        ``Engine.read``); the returned awaitable resolves to it.

        Raises:
            RuntimeError: The bridge is not attached to a running loop.
            ValueError: ``raw``'s body is not streamed.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the engine is not attached to a running event loop")
        return self.engine.read(raw, kind, loop)

    def record_timing(self, method: str, name: str, time_us: int, size_bytes: int) -> None:
        """Records a timing a user named (the time to a streamed body's
        first piece, or between two pieces) as a request of its own, and
        tells the request listeners."""
        self.engine.record(
            method=method, name=name, response_time_us=time_us, content_bytes=size_bytes
        )
        if self.request_event.has_listeners:
            self.request_event.notify(
                request_type=method,
                name=name,
                response_time=time_us / 1000,
                response_length=size_bytes,
                exception=None,
                context={},
            )

    def _drain(self) -> None:
        self.deliver(self.engine.drain())

    def deliver(self, finished: list[tuple[RequestAwaitable, RawResponse]]) -> None:
        """Wakes the tasks waiting for ``finished`` requests, oldest first,
        and tells listeners."""
        event = self.request_event
        listened = event.has_listeners
        contexts = self._contexts
        for waiter, raw in finished:
            recorded = waiter.recorded
            context = contexts.pop(waiter, None) if contexts else None
            if recorded and listened and not raw.streamed:
                # Listeners hear of every request the engine recorded, here,
                # whether or not its user still waits for it (of a streamed
                # one, when its body ends: Response.close).
                event.notify_response(raw, raw.error, context)
            if not waiter.resolve(raw) and not recorded:
                # A catch_response request whose user was cancelled before it
                # could decide: the server saw it, so record it by the
                # default rule rather than lose it.
                self.record(raw, raw.error)

    def record(
        self, raw: RawResponse, error: str | None, context: Mapping[str, Any] | None = None
    ) -> None:
        """Records a request the engine left to user code
        (``catch_response``) with the failure text user code decided
        (None: a success), and tells the request listeners."""
        self.engine.record(
            method=raw.method,
            name=raw.name,
            response_time_us=raw.response_time_us,
            content_bytes=raw.content_bytes,
            error=error,
            intended_lag_us=raw.intended_lag_us,
            ttfb_us=raw.ttfb_us,
        )
        self.request_event.notify_response(raw, error, context)


# NOTE: a blocking turn ends on a timerfd (see src/engine/driven.rs), on
# time to the microsecond, but waking a parked core takes 50-100 us on this
# kind of machine, and that delay lands on whatever is due: the next user's
# start, or a response read late. So a turn never blocks within _SPIN_S of
# the loop's next timer: it returns, and the loop turns again until the
# timer is due. At 2,000 req/s (bench/run.py latency, 50 users, 2026-11-23)
# p50/p99 were 61-80/155-341 us with no spin, 50-53/117-132 us spinning
# 100 us (34 % of the core in all), and 45-54/94-129 us spinning 1 ms (80 %).
_SPIN_S = 0.0001
# NOTE: the spin is adaptive. A blocking turn measures how late it woke
# (an average over the last ~20 turns); the loop spins only while that
# lateness is above _LATE_TARGET_S, so a machine that wakes on time spends
# no CPU on it. Under a CPU quota (a pod's limits.cpu, cgroup cpu.max) it
# never spins: spinning burns the quota, and throttling then costs far more
# latency than a late wake-up. AIOTEST_SPIN=on or off overrides both
# (bench/run.py spin compares them).
_LATE_TARGET_S = 0.00003

#: Seconds every selector of this process spent spinning: CPU that is
#: waiting, not work (see runner.ProcessLoad).
_spun_s = 0.0


def spun_seconds() -> float:
    """Seconds this process's event loops have spent spinning so far."""
    return _spun_s


def cpu_quota_limited(cgroup_root: str = "/sys/fs/cgroup") -> bool:
    """Whether a cgroup CPU quota limits this process: cgroup v2's
    ``cpu.max`` other than ``max``, or cgroup v1's ``cpu/cpu.cfs_quota_us``
    above 0, under ``cgroup_root`` (the Linux kernel's cgroup
    documentation)."""
    try:
        with open(os.path.join(cgroup_root, "cpu.max")) as fh:
            return fh.read().split()[0] != "max"
    except (OSError, IndexError):
        pass
    try:
        with open(os.path.join(cgroup_root, "cpu", "cpu.cfs_quota_us")) as fh:
            return int(fh.read()) > 0
    except (OSError, ValueError):
        return False


def spin_policy() -> str:
    """``AIOTEST_SPIN``: ``auto`` (the default: adaptive, off under a CPU
    quota), ``on`` or ``off``.

    Raises:
        ConfigError: Another value.
    """
    policy = os.environ.get("AIOTEST_SPIN", "auto").strip().lower() or "auto"
    if policy not in ("auto", "on", "off"):
        raise ConfigError(f"AIOTEST_SPIN={policy!r}: give auto, on or off")
    return policy


class EngineSelector(selectors.DefaultSelector):
    """The selector of :func:`new_event_loop`'s loops: each ``select`` also
    turns the driven engine of the attached :class:`EngineBridge`.

    A turn that finds work for Python returns at once; otherwise it blocks
    in the engine's reactor, which also watches this selector's own
    descriptor, until a request finishes, a descriptor turns ready or the
    loop's timeout passes, short of the spin (see the NOTE above).
    """

    def __init__(self) -> None:
        super().__init__()
        self.bridge: EngineBridge | None = None
        self._watched_by: Engine | None = None
        policy = spin_policy()
        self._adaptive = policy == "auto" and not cpu_quota_limited()
        #: Seconds before the loop's next timer when a turn stops blocking.
        self.spin_s = _SPIN_S if policy == "on" or self._adaptive else 0.0
        #: How late blocking turns woke, on average (s).
        self.late_s = 0.0
        self._spinning_since: float | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        bridge = self.bridge
        if bridge is None:
            return super().select(timeout)
        bridge.turns += 1
        engine = self._watched_by = bridge.engine
        fd = self.fileno()
        # With no listener or request context to hand them to, the turn
        # resolves the finished requests itself (see Engine.drive).
        quiet = not bridge.request_event.has_listeners and not bridge._contexts
        resolved, finished = engine.drive(fd, 0.0, quiet)
        ready = super().select(0)
        spin = self.spin_s
        if ready or finished or resolved or timeout == 0:
            self._stop_spinning()
        elif timeout is None or timeout > spin:
            self._stop_spinning()
            # Block until `spin` before the loop's next timer, then spin
            # (the loop calls again at once) up to it.
            wait = None if timeout is None else timeout - spin
            began = time.perf_counter()
            resolved, finished = engine.drive(fd, wait, quiet)
            ready = super().select(0)
            if wait is not None and not finished and not resolved and not ready:
                self._woke_late(time.perf_counter() - began - wait)
        elif self._spinning_since is None:
            self._spinning_since = time.perf_counter()
        if finished:
            bridge.deliver(finished)
        return ready

    def _woke_late(self, late_s: float) -> None:
        self.late_s += (late_s - self.late_s) / 20
        if self._adaptive:
            self.spin_s = _SPIN_S if self.late_s > _LATE_TARGET_S else 0.0

    def _stop_spinning(self) -> None:
        global _spun_s
        if self._spinning_since is not None:
            _spun_s += time.perf_counter() - self._spinning_since
            self._spinning_since = None

    def close(self) -> None:
        self._stop_spinning()
        if self._watched_by is not None:
            self._watched_by.unwatch(self.fileno())
            self._watched_by = None
        self.bridge = None
        super().close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop that drives aiotest's engine on its own thread (see
    :class:`EngineSelector`); asyncio code runs on it as on any loop."""
    selector = EngineSelector()
    loop = asyncio.SelectorEventLoop(selector)
    loop.aiotest_selector = selector  # type: ignore[attr-defined]
    return loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a loop from :func:`new_event_loop`."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(main)
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
