"""gevent's API as locustfiles use it, cooperative on aiotest's asyncio loop.

A locustfile run by aiotest that does ``import gevent`` gets this module
(:func:`aiotest.compat.install` puts it in ``sys.modules`` as ``gevent``,
``gevent.lock``, ``gevent.event``, ``gevent.pool``, ``gevent.queue`` and
``gevent.monkey``). Each :class:`Greenlet` runs its function in a greenlet
inside an asyncio task of its own (:class:`aiotest.sync.SyncRunner`), so
its requests, ``time.sleep()`` and ``gevent.sleep()`` let every user run.

A call that waits (``join``, ``Semaphore.acquire``, ``Event.wait``,
``Queue.get``, ...) must come from blocking-style code: a user's task, its
``on_start``/``on_stop``, or a greenlet spawned here. Anywhere else it
would freeze the loop, so it raises ``RuntimeError`` instead (a wait that
is already satisfied returns at once everywhere). ``gevent.monkey``'s
patches do nothing: there is nothing to patch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable
from typing import Any

import greenlet

from .sync import SyncRunner, await_only, cooperative_sleep, in_user_greenlet

log = logging.getLogger("aiotest.gevent")

GreenletExit = greenlet.GreenletExit

#: Greenlets started before the loop ran (from an ``events.init``
#: listener, say); :func:`start_pending` starts them once it runs.
_pending: list[Greenlet] = []


class Timeout(Exception):
    """A wait with a timeout ran out (``gevent.Timeout``)."""


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _block_on(future: asyncio.Future[Any], timeout_s: float | None) -> bool:
    """Waits for ``future`` from blocking-style code; False when
    ``timeout_s`` ran out first.

    Raises:
        RuntimeError: Called outside blocking-style user code.
    """
    if not in_user_greenlet():
        raise RuntimeError(
            "a gevent wait outside a user's task would freeze every user: call it from "
            "a task, on_start/on_stop or a greenlet started with gevent.spawn()"
        )
    try:
        await_only(asyncio.wait_for(asyncio.shield(future), timeout_s))
    except asyncio.TimeoutError:
        return False
    return True


def sleep(seconds: float = 0) -> None:
    """Sleeps only the calling user or greenlet; elsewhere a real sleep."""
    cooperative_sleep(seconds)


class Greenlet:
    """A function run cooperatively in its own asyncio task
    (``gevent.Greenlet``). Create it with :func:`spawn`.

    Attributes:
        value: What the function returned, once it did.
        exception: What it raised (``GreenletExit`` when killed), or None.
    """

    def __init__(self, run: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._fn, self._args, self._kwargs = run, args, kwargs
        self.value: Any = None
        self.exception: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._links: list[Callable[[Greenlet], Any]] = []
        self._delay_s = 0.0

    def start(self) -> None:
        """Schedules the function; before the loop runs, once it does."""
        loop = _loop()
        if loop is None:
            _pending.append(self)
            return
        self._done = loop.create_future()
        self._task = loop.create_task(self._run(), name=f"greenlet-{self._fn!r}")

    def start_later(self, seconds: float) -> None:
        """Schedules the function to run after ``seconds``."""
        self._delay_s = seconds
        self.start()

    async def _run(self) -> None:
        try:
            if self._delay_s > 0:
                await asyncio.sleep(self._delay_s)
            self.value = await SyncRunner().call(lambda: self._fn(*self._args, **self._kwargs))
        except (asyncio.CancelledError, GreenletExit):
            self.exception = GreenletExit()
        except Exception as exc:  # user code: logged as gevent prints it
            self.exception = exc
            log.error("Greenlet %r failed", self._fn, exc_info=exc)
        finally:
            if self._done is not None and not self._done.done():
                self._done.set_result(None)
            for callback in self._links:
                callback(self)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (the task may wait for the loop)."""
        return self._task is not None or self in _pending

    @property
    def dead(self) -> bool:
        """Whether the function has ended."""
        return self._done is not None and self._done.done()

    def ready(self) -> bool:
        """Whether the function has ended (gevent's name for :attr:`dead`)."""
        return self.dead

    def successful(self) -> bool:
        """Whether it ended by returning, not by an exception or a kill."""
        return self.dead and self.exception is None

    def link(self, callback: Callable[[Greenlet], Any]) -> None:
        """Calls ``callback(self)`` once the function ends."""
        if self.dead:
            callback(self)
        else:
            self._links.append(callback)

    def join(self, timeout: float | None = None) -> None:
        """Waits until the function ends, or ``timeout`` seconds."""
        if self._done is not None and not self._done.done():
            _block_on(self._done, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The function's return value, after waiting for it; re-raises
        its exception.

        Raises:
            Timeout: It has not ended within ``timeout`` (or at once,
                without ``block``).
        """
        if not self.dead and block:
            self.join(timeout)
        if not self.dead:
            raise Timeout()
        if self.exception is not None:
            raise self.exception
        return self.value

    def kill(
        self,
        exception: type[BaseException] = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Stops the function at its next wait (its task is cancelled)."""
        if self in _pending:
            _pending.remove(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            if block and in_user_greenlet():
                self.join(timeout)

    def __repr__(self) -> str:
        return f"<Greenlet {self._fn!r} {'dead' if self.dead else 'running'}>"


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Greenlet:
    """Starts ``fn(*args, **kwargs)`` cooperatively; returns its greenlet."""
    g = Greenlet(fn, *args, **kwargs)
    g.start()
    return g


def spawn_later(seconds: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Greenlet:
    """Starts ``fn(*args, **kwargs)`` after ``seconds``."""
    g = Greenlet(fn, *args, **kwargs)
    g.start_later(seconds)
    return g


def joinall(
    greenlets: Iterable[Greenlet], timeout: float | None = None, raise_error: bool = False
) -> list[Greenlet]:
    """Waits for every greenlet (or ``timeout`` seconds in all); returns
    those that ended. With ``raise_error``, re-raises the first failure."""
    items = list(greenlets)
    waiting = [g._done for g in items if g._done is not None and not g._done.done()]
    if waiting:
        _block_on(asyncio.ensure_future(asyncio.wait(waiting)), timeout)
    if raise_error:
        for g in items:
            if g.dead and g.exception is not None and not isinstance(g.exception, GreenletExit):
                raise g.exception
    return [g for g in items if g.dead]


def kill(g: Greenlet, exception: type[BaseException] = GreenletExit) -> None:
    """Stops ``g`` at its next wait, without waiting for it (``gevent.kill``)."""
    g.kill(exception, block=False)


def killall(greenlets: Iterable[Greenlet], exception: type[BaseException] = GreenletExit) -> None:
    """Stops every greenlet at its next wait, without waiting (``gevent.killall``)."""
    for g in greenlets:
        g.kill(exception, block=False)


def start_pending() -> None:
    """Starts the greenlets spawned before the loop ran; call in the loop."""
    while _pending:
        _pending.pop(0).start()


class _Waiters:
    """Futures of blocked callers, woken in order."""

    def __init__(self) -> None:
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    def wait(self, timeout: float | None) -> bool:
        loop = _loop()
        if loop is None:
            raise RuntimeError("a gevent wait needs the running test (it would wait forever)")
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append(future)
        try:
            return _block_on(future, timeout)
        finally:
            if future in self._queue:
                self._queue.remove(future)

    def wake_one(self) -> None:
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                return

    def wake_all(self) -> None:
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)


class Semaphore:
    """A counting semaphore (``gevent.lock.Semaphore``).

    Args:
        value: The initial count.
    """

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("a semaphore's initial value must be 0 or more")
        self.counter = value
        self._waiters = _Waiters()

    def locked(self) -> bool:
        """Whether an ``acquire()`` now would wait."""
        return self.counter <= 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Takes one unit, waiting for it; False when ``timeout`` ran out
        (or at once without ``blocking``)."""
        while self.counter <= 0:
            if not blocking or not self._waiters.wait(timeout):
                return False
        self.counter -= 1
        return True

    def release(self) -> int:
        """Gives one unit back and wakes the waiters."""
        self.counter += 1
        self._waiters.wake_all()
        return self.counter

    def wait(self, timeout: float | None = None) -> int:
        """Waits until a unit is free, without taking it; returns the count."""
        while self.counter <= 0:
            if not self._waiters.wait(timeout):
                break
        return self.counter

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A semaphore that refuses to be released above its initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def release(self) -> int:
        """Raises: ValueError: Released more often than acquired."""
        if self.counter >= self._initial:
            raise ValueError("BoundedSemaphore released too many times")
        return super().release()


class RLock(BoundedSemaphore):
    """A lock its holder may take again (``gevent.lock.RLock``)."""

    def __init__(self) -> None:
        super().__init__(1)
        self._owner: Any = None
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        me = greenlet.getcurrent()
        if self._owner is me:
            self._depth += 1
            return True
        if not super().acquire(blocking, timeout):
            return False
        self._owner, self._depth = me, 1
        return True

    def release(self) -> int:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            return super().release()
        return self.counter


class Event:
    """A flag to wait on (``gevent.event.Event``)."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters = _Waiters()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    isSet = ready = is_set

    def set(self) -> None:
        """Sets the flag and wakes every waiter."""
        self._flag = True
        self._waiters.wake_all()

    def clear(self) -> None:
        """Unsets the flag; later waits wait again."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Waits until the flag is set; returns the flag (False on timeout)."""
        if not self._flag:
            self._waiters.wait(timeout)
        return self._flag


class Pool:
    """Greenlets with a cap on how many run at once (``gevent.pool.Pool``).

    Args:
        size: The most that run together; None for no cap (``Group``).
    """

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError("a pool's size must be 1 or more (or None for no limit)")
        self.size = size
        self.greenlets: set[Greenlet] = set()
        self._slot_free = _Waiters()

    def __len__(self) -> int:
        return len(self.greenlets)

    def full(self) -> bool:
        """Whether a :meth:`spawn` now would wait (for a pool) or raise (for a queue)."""
        return self.size is not None and len(self.greenlets) >= self.size

    def free_count(self) -> int:
        """How many more greenlets may start now (1 without a cap)."""
        return 1 if self.size is None else max(0, self.size - len(self.greenlets))

    def wait_available(self, timeout: float | None = None) -> int:
        """Waits until a greenlet may start; returns the free slots."""
        while self.full():
            if not self._slot_free.wait(timeout):
                break
        return self.free_count()

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Greenlet:
        """Starts ``fn`` once a slot is free (waiting for one)."""
        self.wait_available()
        g = Greenlet(fn, *args, **kwargs)
        self.add(g)
        g.start()
        return g

    def add(self, g: Greenlet) -> None:
        """Counts ``g`` (started elsewhere) in the pool until it ends."""
        self.greenlets.add(g)
        g.link(self._discard)

    def _discard(self, g: Greenlet) -> None:
        self.greenlets.discard(g)
        self._slot_free.wake_one()

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Waits for every greenlet; False when ``timeout`` ran out."""
        joinall(list(self.greenlets), timeout, raise_error)
        return not self.greenlets

    def kill(self, exception: type[BaseException] = GreenletExit, block: bool = True) -> None:
        """Stops ``g`` at its next wait, without waiting for it (``gevent.kill``)."""
        for g in list(self.greenlets):
            g.kill(exception, block=block)

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any]) -> list[Any]:
        """``fn`` over ``iterable`` in the pool; the results in order."""
        spawned = [self.spawn(fn, item) for item in iterable]
        return [g.get() for g in spawned]


class Group(Pool):
    """A pool without a cap (``gevent.pool.Group``)."""

    def __init__(self) -> None:
        super().__init__(None)


class Queue:
    """A FIFO queue (``gevent.queue.Queue``).

    Args:
        maxsize: The most items it holds; None or 0 for no limit.
    """

    def __init__(self, maxsize: int | None = None, items: Iterable[Any] = ()) -> None:
        self.maxsize = maxsize or 0
        self._items: collections.deque[Any] = collections.deque(items)
        self._readable, self._writable = _Waiters(), _Waiters()

    def qsize(self) -> int:
        """Items in the queue now."""
        return len(self._items)

    __len__ = qsize

    def empty(self) -> bool:
        """Whether a ``get()`` now would wait."""
        return not self._items

    def full(self) -> bool:
        """Whether a :meth:`spawn` now would wait (for a pool) or raise (for a queue)."""
        return 0 < self.maxsize <= len(self._items)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Adds ``item``, waiting for room.

        Raises:
            Full: No room within ``timeout`` (or at once without ``block``).
        """
        while self.full():
            if not block or not self._writable.wait(timeout):
                raise Full()
        self._items.append(item)
        self._readable.wake_one()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Takes the oldest item, waiting for one.

        Raises:
            Empty: None came within ``timeout`` (or at once without ``block``).
        """
        while not self._items:
            if not block or not self._readable.wait(timeout):
                raise Empty()
        item = self._items.popleft()
        self._writable.wake_one()
        return item

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``. Raises: Full: no room."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """``get(block=False)``. Raises: Empty: no item."""
        return self.get(block=False)


class Empty(Exception):
    """``Queue.get`` found nothing (``gevent.queue.Empty``)."""


class Full(Exception):
    """``Queue.put`` found no room (``gevent.queue.Full``)."""


def patch_all(*_args: Any, **_kwargs: Any) -> None:
    """Does nothing: aiotest's users need no monkey-patching."""


def is_module_patched(_name: str) -> bool:
    """Always False: nothing is patched (see :func:`patch_all`)."""
    return False
