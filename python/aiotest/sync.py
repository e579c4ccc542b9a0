"""Blocking-style user code on the asyncio loop: a sync task runs in a
greenlet inside its user's asyncio task, and each blocking call it makes
(a request, ``time.sleep``) hands an awaitable to that task, which awaits
it and switches back with the result. Other users run meanwhile, and the
request still runs on the Rust engine, timed in Rust.

This is the pattern of SQLAlchemy's asyncio extension (``greenlet_spawn``
and ``await_only``), built on the ``greenlet`` package.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet

T = TypeVar("T")

_real_sleep = time.sleep


class _TaskGreenlet(greenlet.greenlet):  # type: ignore[misc]
    """A greenlet running sync user code for one asyncio task."""

    __slots__ = ()


def in_user_greenlet() -> bool:
    """Whether the caller is sync user code that :func:`await_only` can serve."""
    return isinstance(greenlet.getcurrent(), _TaskGreenlet)


def await_only(awaitable: Awaitable[T]) -> T:
    """Waits for ``awaitable`` from sync user code, letting every other user
    run meanwhile; returns its result or raises its exception.

    Raises:
        RuntimeError: Called outside a user's sync code (no asyncio task
            to hand the awaitable to).
    """
    current = greenlet.getcurrent()
    if not isinstance(current, _TaskGreenlet):
        raise RuntimeError(
            "a blocking-style call ran outside a user's task: call it from a task, "
            "on_start or on_stop"
        )
    result: T = current.parent.switch(awaitable)
    return result


class _Outcome:
    """How a call in the greenlet ended: its value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any, error: BaseException | None) -> None:
        self.value = value
        self.error = error


class SyncRunner:
    """One long-lived greenlet that runs a user's blocking-style calls, one
    at a time, for that user's asyncio task (:meth:`call`).

    NOTE: a greenlet made and finished per call cost 8.2 us (timeit,
    2026-12-02) where a switch there and back costs 0.42 us; with a
    greenlet per task, a blocking-style user sent 27.7k requests/s against
    54.5k for an async one (bench/run.py locustfile).
    """

    def __init__(self) -> None:
        self._greenlet = _TaskGreenlet(self._serve)

    def _serve(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        parent = self._greenlet.parent
        while True:
            try:
                outcome = _Outcome(fn(*args), None)
            except BaseException as exc:  # handed to the awaiting task
                outcome = _Outcome(None, exc)
            fn, args = parent.switch(outcome)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(*args)`` in the greenlet, awaiting (in this task) each
        awaitable it hands over with :func:`await_only`; returns its result
        or raises its exception."""
        child = self._greenlet
        handed = child.switch(fn, args)
        while type(handed) is not _Outcome:
            try:
                value = await handed
            except BaseException:
                handed = child.throw(*sys.exc_info())
            else:
                handed = child.switch(value)
        if handed.error is not None:
            raise handed.error
        result: T = handed.value
        return result


def cooperative_sleep(seconds: float) -> None:
    """``time.sleep`` that, inside a user's sync code, sleeps only that user
    (an ``asyncio.sleep`` of its task); elsewhere the real one."""
    if isinstance(greenlet.getcurrent(), _TaskGreenlet):
        await_only(asyncio.sleep(seconds))
    else:
        _real_sleep(seconds)


def install_cooperative_sleep() -> None:
    """Makes ``time.sleep`` cooperative inside users' sync code (idempotent;
    a sleep anywhere else still blocks, as before)."""
    time.sleep = cooperative_sleep  # type: ignore[assignment]
