"""Delivers the Rust engine's finished requests to asyncio futures.

The engine pushes completions onto a queue and writes one wake-up byte to a
socket only when the queue was empty and undrained, so one ``_drain`` call
resolves a whole batch of futures (see ``src/engine/completion.rs``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._core import Engine, HttpSession, RawResponse
from .events import RequestEvent


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
        # id -> (future, recorded by the engine?)
        self._pending: dict[int, tuple[asyncio.Future[RawResponse], bool]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts draining completions on ``loop``; call from inside it."""
        self._loop = loop
        loop.add_reader(self.engine.wakeup_fd(), self._drain)

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.engine.wakeup_fd())
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
        # args[7] is `record` (see HttpSession.request).
        self._pending[self.engine.submit(session, *args)] = (fut, bool(args[7]))
        return fut

    def _drain(self) -> None:
        pending = self._pending
        event = self.request_event
        for request_id, raw in self.engine.drain():
            fut, recorded = pending.pop(request_id)
            if recorded:
                # Listeners hear of every request the engine recorded, here,
                # whether or not its user is still waiting for it.
                event.notify_response(raw, raw.error)
            if not fut.done():
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
