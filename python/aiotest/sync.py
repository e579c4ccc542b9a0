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


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Runs ``fn(*args)`` in a greenlet, awaiting (in this task) each
    awaitable it hands over with :func:`await_only`; returns its result or
    raises its exception."""
    child = _TaskGreenlet(fn, greenlet.getcurrent())
    handed = child.switch(*args)
    while not child.dead:
        try:
            value = await handed
        except BaseException:
            handed = child.throw(*sys.exc_info())
        else:
            handed = child.switch(value)
    result: T = handed
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
