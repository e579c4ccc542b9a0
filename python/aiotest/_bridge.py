"""Delivers the Rust engine's finished requests to asyncio futures.

On a loop made by :func:`new_event_loop` (every loop aiotest starts), the
engine is *driven*: its requests run on the loop's own thread, turned by
:class:`EngineSelector` once per loop turn, which hands back every request
finished in that turn (see ``src/engine/driven.rs``).

Users run as :class:`UserTask`: on a driving loop, a request they await
is no asyncio Future; the turn that finishes it resumes the task at once,
with the response (see the NOTE above :class:`UserTask`).

On any other loop, requests run on the engine's threads, which push
completions onto a queue and write one wake-up byte to a socket only when
the queue was empty and undrained, so one ``_drain`` call resolves a whole
batch of futures (see ``src/engine/completion.rs``).
"""

from __future__ import annotations

import asyncio
import inspect
import selectors
import sys
from asyncio import futures, tasks
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._core import Engine, HttpSession, RawResponse
from .events import RequestEvent

T = TypeVar("T")

# Where ``record`` sits in the arguments of Engine.submit after the session
# (see HttpSession.request).
_RECORD_ARG = 7


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
        # id -> (future, recorded by the engine?), or the Waiting of a task
        self._pending: dict[int, tuple[asyncio.Future[RawResponse], bool] | Waiting] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Whether the attached loop drives the engine (UserTasks then wait
        #: for requests without futures).
        self.driven = False
        #: The UserTask whose step is running, while one is.
        self.stepping: UserTask | None = None
        #: Turns of a driving loop so far (stays 0 on other loops): a user
        #: whose task saw it change has already let the others run.
        self.turns = 0

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

    @property
    def attached(self) -> bool:
        """Whether completions are delivered on a loop now."""
        return self._loop is not None

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
            self._abandon_waiting()
        else:
            loop.remove_reader(self.engine.wakeup_fd())
            self._drain()
        self._loop = None

    def submit(self, session: HttpSession, *args: Any) -> asyncio.Future[RawResponse]:
        """Starts a request (see ``Engine.submit``, whose ``record`` argument says
        whether the engine records it); the future resolves to its
        :class:`RawResponse`."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the engine is not attached to a running event loop")
        fut: asyncio.Future[RawResponse] = loop.create_future()
        self._pending[self.engine.submit(session, *args)] = (fut, bool(args[_RECORD_ARG]))
        return fut

    def wait_for(self, session: HttpSession, args: tuple[Any, ...]) -> Waiting:
        """Starts a request (``args`` as :meth:`submit` takes them, in one
        tuple) for the UserTask stepping now (``self.stepping``, which must
        be set); the task yields
        the returned :class:`Waiting`, and the turn that finishes the request
        sends the task the :class:`RawResponse`."""
        waiting = Waiting(self.stepping, bool(args[_RECORD_ARG]))  # type: ignore[arg-type]
        self._pending[self.engine.submit(session, *args)] = waiting
        return waiting

    def _drain(self) -> None:
        self.deliver(self.engine.drain())

    def deliver(self, finished: list[tuple[int, RawResponse]]) -> None:
        """Resumes the tasks and resolves the futures waiting for
        ``finished`` requests, oldest first, and tells listeners."""
        pending = self._pending
        event = self.request_event
        listened = event.has_listeners
        for request_id, raw in finished:
            waiter = pending.pop(request_id)
            if type(waiter) is Waiting:
                task, fut, recorded = waiter.task, None, waiter.recorded
            else:
                task, (fut, recorded) = None, waiter
            if recorded and listened:
                # Listeners hear of every request the engine recorded, here,
                # whether or not its user still waits for it.
                event.notify_response(raw, raw.error)
            if task is not None:
                waiter.task = None  # type: ignore[union-attr]
                # In the task's own context, as asyncio steps it.
                task._context.run(task._Task__step, None, raw)
            elif fut is not None and not fut.done():
                fut.set_result(raw)
            elif not recorded:
                # A catch_response request whose user was cancelled before it
                # could decide: the server saw it, so record it by the
                # default rule rather than lose it.
                self.engine.record(
                    raw.method,
                    raw.name,
                    raw.response_time_us,
                    raw.content_bytes,
                    raw.error,
                    raw.intended_lag_us,
                )
                event.notify_response(raw, raw.error)

    def _abandon_waiting(self) -> None:
        """Wakes the tasks still waiting for requests of a loop that no
        longer drives the engine: their requests fail, as a request started
        on a detached bridge does."""
        for waiter in list(self._pending.values()):
            if type(waiter) is Waiting:
                waiter.throw(RuntimeError("the engine was detached from the event loop"))


class Waiting:
    """What a :class:`UserTask` waits on while a driven request runs (its
    ``_fut_waiter``, in asyncio's terms): the turn that finishes the request
    resumes the task with the response, and ``Task.cancel()`` wakes the task
    at once with CancelledError while the request goes on (its result is
    still recorded when it ends).

    Attributes:
        task: The waiting task; None once resumed or cancelled.
        recorded: Whether the engine records the request itself (False for
            ``catch_response``, whose user code decides).
    """

    __slots__ = ("recorded", "task")

    def __init__(self, task: UserTask, recorded: bool) -> None:
        self.task: UserTask | None = task
        self.recorded = recorded

    def cancel(self, msg: Any = None) -> bool:
        """asyncio's ``Future.cancel``, as ``Task.cancel`` calls it on what
        its task waits for: True when the task was still waiting."""
        return self.throw(asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg))

    def throw(self, exc: BaseException) -> bool:
        """Lets go of the task, which the loop's next turn wakes with
        ``exc``; False when it no longer waited (the request stays pending,
        and its result is recorded when it ends)."""
        task = self.task
        if task is None:
            return False
        self.task = None
        task._loop.call_soon(task._Task__step, exc, context=task._context)
        return True

    def __repr__(self) -> str:
        return f"<aiotest request {'pending' if self.task is not None else 'done'}>"


_enter_task = tasks._enter_task
_leave_task = tasks._leave_task


# NOTE: design (b) of issue 4, for the awaits that matter most. A request
# awaited through an asyncio Future costs the Future, its done callback, a
# loop.call_soon Handle, a pass of the loop's ready queue and the C Task's
# step; a UserTask instead yields a Waiting and is resumed by the very turn
# that finishes its request, with the response sent into the coroutine.
# Modelled in pure Python (50 coroutines, 3 frames deep, completions in
# batches), a resume cost 1.17 us against 2.6-2.9 us through asyncio; in
# the throughput bench's setting (50 users, zero wait, nginx) eight
# alternating pairs of runs gained 2-37 %, median 12 % (2026-11-23:
# 53.0k/53.4k/50.5k/55.9k -> 60.5k/58.2k/59.6k/56.9k req/s, among others).
# Every other await goes through asyncio's own protocol,
# unchanged, in this subclass of asyncio's pure-Python Task, so user code
# can await anything asyncio can, and current_task(), cancel() and
# asyncio.timeout() see an ordinary Task.
class UserTask(tasks._PyTask):  # type: ignore[misc,name-defined]
    """The asyncio Task a user runs in (a subclass of asyncio's
    pure-Python ``Task``): it also resumes straight from the driven
    engine's turn when a request it awaits finishes.

    Args:
        coro: The user's life, e.g. ``User.run()``.
        loop: The loop to run on.
        name: The task's name.
        bridge: The bridge whose requests it may wait for without a Future.
    """

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        loop: asyncio.AbstractEventLoop,
        name: str | None,
        bridge: EngineBridge,
    ) -> None:
        self._bridge = bridge
        super().__init__(coro, loop=loop, name=name)

    # asyncio's Task.__step (Python 3.10-3.13), with two additions: the
    # value to send, and a yielded Waiting, which the turn that finishes
    # its request resumes. asyncio's own name for it, so that __init__,
    # __wakeup and the Future protocol reach it.
    def _Task__step(self, exc: BaseException | None = None, value: Any = None) -> None:
        if self.done():
            raise asyncio.InvalidStateError(f"_step(): already done: {self!r}, {exc!r}")
        if self._must_cancel:
            if not isinstance(exc, asyncio.CancelledError):
                exc = self._make_cancelled_error()
            self._must_cancel = False
        coro = self._coro
        self._fut_waiter = None
        loop = self._loop
        bridge = self._bridge
        _enter_task(loop, self)
        if bridge.driven:
            bridge.stepping = self
        try:
            if exc is None:
                result = coro.send(value)
            else:
                result = coro.throw(exc)
        except StopIteration as stop:
            if self._must_cancel:
                # Cancelled right before the coroutine returned.
                self._must_cancel = False
                futures._PyFuture.cancel(self, msg=self._cancel_message)
            else:
                futures._PyFuture.set_result(self, stop.value)
        except asyncio.CancelledError as cancelled:
            # Kept so that the task's CancelledError chains it.
            self._cancelled_exc = cancelled
            futures._PyFuture.cancel(self)
        except (KeyboardInterrupt, SystemExit) as fatal:
            futures._PyFuture.set_exception(self, fatal)
            raise
        except BaseException as error:
            futures._PyFuture.set_exception(self, error)
        else:
            if type(result) is Waiting:
                self._fut_waiter = result
                if self._must_cancel and result.cancel(msg=self._cancel_message):
                    self._must_cancel = False
            else:
                self._wait_on(result)
        finally:
            bridge.stepping = None
            _leave_task(loop, self)
            self = None  # type: ignore[assignment]  # breaks a cycle with an exception

    def _wait_on(self, result: Any) -> None:
        """What asyncio's Task does with anything else its coroutine yields:
        waits for a future, gives the loop a turn for a bare yield, and
        steps again with a RuntimeError for anything wrong."""
        error: RuntimeError | None = None
        blocking = getattr(result, "_asyncio_future_blocking", None)
        if blocking is not None:
            if futures._get_loop(result) is not self._loop:
                error = RuntimeError(
                    f"Task {self!r} got Future {result!r} attached to a different loop"
                )
            elif not blocking:
                error = RuntimeError(
                    f"yield was used instead of yield from in task {self!r} with {result!r}"
                )
            elif result is self:
                error = RuntimeError(f"Task cannot await on itself: {self!r}")
            else:
                result._asyncio_future_blocking = False
                result.add_done_callback(self._Task__wakeup, context=self._context)
                self._fut_waiter = result
                if self._must_cancel and result.cancel(msg=self._cancel_message):
                    self._must_cancel = False
                return
        elif inspect.isgenerator(result):
            error = RuntimeError(
                f"yield was used instead of yield from for generator in task {self!r} "
                f"with {result!r}"
            )
        elif result is not None:
            error = RuntimeError(f"Task got bad yield: {result!r}")
        # A bare yield (None) gives the loop one turn; an error comes back
        # into the coroutine on the next step.
        self._loop.call_soon(self._Task__step, error, context=self._context)


# NOTE: a blocking turn ends on a timerfd (see src/engine/driven.rs), on
# time to the microsecond, but waking a parked core takes 50-100 us on this
# kind of machine, and that delay lands on whatever is due: the next user's
# start, or a response read late. So a turn never blocks within _SPIN_S of
# the loop's next timer: it returns, and the loop turns again until the
# timer is due. At 2,000 req/s (bench/run.py latency, 50 users, 2026-11-23)
# p50/p99 were 61-80/155-341 us with no spin, 50-53/117-132 us spinning
# 100 us (34 % of the core in all), and 45-54/94-129 us spinning 1 ms (80 %).
_SPIN_S = 0.0001


class EngineSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The selector of :func:`new_event_loop`'s loops: each ``select`` also
    turns the driven engine of the attached :class:`EngineBridge`.

    A turn that finds work for Python returns at once; otherwise it blocks
    in the engine's reactor, which also watches this selector's own
    descriptor, until a request finishes, a descriptor turns ready or the
    loop's timeout passes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bridge: EngineBridge | None = None
        self._watched_by: Engine | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        bridge = self.bridge
        if bridge is None:
            return super().select(timeout)
        bridge.turns += 1
        engine = self._watched_by = bridge.engine
        fd = self.fileno()
        finished = engine.drive(fd, 0.0)
        ready = super().select(0)
        if not ready and not finished and (timeout is None or timeout > _SPIN_S):
            # Block until _SPIN_S before the loop's next timer, then spin
            # (the loop calls again at once) up to it.
            finished = engine.drive(fd, None if timeout is None else timeout - _SPIN_S)
            ready = super().select(0)
        if finished:
            bridge.deliver(finished)
        return ready

    def close(self) -> None:
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
