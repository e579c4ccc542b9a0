"""Streamed response bodies (``stream=True``): their pieces, server-sent
events, and the stats rows a user can name for the time to the first piece
and the time between pieces (an LLM endpoint's time to first token and
inter-token latency).

The engine reads the body as it arrives and stamps each chunk with its
arrival (µs after the request was issued, see ``src/engine/stream.rs``),
so the figures do not depend on how soon the user's task got to them.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bridge import EngineBridge
    from ._core import RawResponse


class ServerSentEvent:
    """One server-sent event (WHATWG HTML, "Server-sent events"), parsed by
    the engine.

    Attributes:
        event: The ``event:`` field; ``"message"`` when the server gave none.
        data: The ``data:`` lines, joined with ``"\\n"``.
        id: The ``id:`` field, or ``""``.
        retry_ms: The ``retry:`` field in ms, or None.
        at_us: When the event arrived, in µs after the request was issued.
    """

    __slots__ = ("at_us", "data", "event", "id", "retry_ms")

    def __init__(self, event: str, data: str, id: str, retry_ms: int | None, at_us: int) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.retry_ms = retry_ms
        self.at_us = at_us

    def json(self) -> Any:
        """``data`` parsed as JSON. Raises ``json.JSONDecodeError``."""
        return jsonlib.loads(self.data)

    def __repr__(self) -> str:
        return f"<ServerSentEvent {self.event} {self.data[:40]!r} at {self.at_us} us>"


class PieceTimer:
    """Records the time to the first piece of a body, and between pieces,
    under names the user chose (None: not recorded).

    Args:
        bridge: Where to record.
        method: The request's method, the rows' first column.
        first_name: The row of the time from issuing the request to the
            first piece.
        gap_name: The row of each time between one piece and the next.
    """

    __slots__ = ("_bridge", "_first_name", "_gap_name", "_method", "_prev_us")

    def __init__(
        self, bridge: EngineBridge, method: str, first_name: str | None, gap_name: str | None
    ) -> None:
        self._bridge = bridge
        self._method = method
        self._first_name = first_name
        self._gap_name = gap_name
        self._prev_us: int | None = None

    def mark(self, at_us: int, size_bytes: int) -> None:
        """A piece of ``size_bytes`` arrived ``at_us`` after the request."""
        prev, self._prev_us = self._prev_us, at_us
        if prev is None:
            if self._first_name is not None:
                self._bridge.record_timing(self._method, self._first_name, at_us, size_bytes)
        elif self._gap_name is not None:
            self._bridge.record_timing(self._method, self._gap_name, at_us - prev, size_bytes)


async def pieces(bridge: EngineBridge, raw: RawResponse, kind: str) -> AsyncIterator[Any]:
    """The pieces of ``raw``'s streamed body as the engine gives them
    (see ``Engine.read``), until it ends."""
    while True:
        piece: Any = await bridge.read(raw, kind)
        if piece is None:
            return
        yield piece


def split_lines(pending: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of ``pending`` (without ``\\n`` or ``\\r\\n``), and
    what is left after the last line break."""
    *lines, rest = pending.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines], rest
