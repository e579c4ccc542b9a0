"""Test data for users: feeders that hand out rows, one per ``await next()``.

Declare a feeder at module level in the aiotestfile, then take rows in a
task or ``on_start``::

    from aiotest.data import CsvFeeder

    accounts = CsvFeeder("accounts.csv", mode="once")

    class Shopper(AsyncHttpUser):
        async def on_start(self):
            self.account = await accounts.next()   # {"username": ..., "password": ...}

Modes:
    ``"once"``: every row goes to exactly one user in the whole cluster; when
    the rows run out, ``next()`` raises :class:`aiotest.StopUser`, and the run
    ends once every user has stopped.
    ``"cycle"``: starts over from the first row when the rows run out.

In distributed mode only the master reads the source. Workers ask it for
rows in chunks (``chunk_rows`` at a time) over the ``custom`` message of
docs/protocol.md, when their buffer runs dry, so no two workers ever get the
same row. Locally the process reads the source itself. No Redis is needed.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .exceptions import ConfigError, StopUser
from .messages import CustomMessage, hub

Row = dict[str, Any]

_REQUEST = "__aiotest_feeder_request"
_ROWS = "__aiotest_feeder_rows"

#: Feeders in the order the aiotestfile declares them: master and workers
#: load the same file, so a feeder's key names the same source on both.
_feeders: dict[str, Feeder] = {}


class Feeder:
    """Rows from a source, one per :meth:`next`. Subclasses say where rows
    come from by overriding :meth:`open`.

    Args:
        mode: ``"once"`` or ``"cycle"``.
        name: A key that names this feeder on master and workers alike;
            by default its class and declaration order (``CsvFeeder-0``).
        chunk_rows: Rows a worker asks the master for at a time.

    Raises:
        ConfigError: An unknown mode, a repeated name, or chunk_rows < 1.
    """

    def __init__(
        self, *, mode: str = "once", name: str | None = None, chunk_rows: int = 100
    ) -> None:
        if mode not in ("once", "cycle"):
            raise ConfigError(f"feeder mode {mode!r} is not one of 'once', 'cycle'")
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be 1 or more, got {chunk_rows}")
        self.mode = mode
        self.chunk_rows = chunk_rows
        self.name = name or f"{type(self).__name__}-{len(_feeders)}"
        if self.name in _feeders:
            raise ConfigError(f"two feeders are named {self.name!r}: give each its own name=")
        _feeders[self.name] = self
        _install_handlers()
        self._source: Iterator[Row] | None = None
        self._exhausted = False
        self._buffer: deque[Row] = deque()
        self._pending: asyncio.Future[None] | None = None
        self._error: str | None = None

    def reset(self) -> None:
        """Starts over from the first row, as every new run does."""
        self._source = None
        self._exhausted = False
        self._buffer.clear()
        self._error = None
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None

    def open(self) -> Iterable[Row]:
        """A fresh pass over the source's rows. Called on the side that reads
        the source: the master, or the local process."""
        raise NotImplementedError

    async def next(self) -> Row:
        """The next row, as a dict.

        Raises:
            StopUser: The rows ran out in mode ``"once"``.
        """
        while not self._buffer:
            if self._error is not None:
                raise ConfigError(self._error)
            if self._exhausted:
                raise StopUser(f"feeder {self.name} has no rows left")
            if hub.role == "worker":
                await self._ask_master()
            else:
                self._buffer.extend(self.take(self.chunk_rows))
                if not self._buffer:
                    self._exhausted = True
        return self._buffer.popleft()

    def take(self, n: int) -> list[Row]:
        """Up to ``n`` rows from the source (fewer only when a ``"once"``
        source ran out). Reads the source; used where it is read."""
        if self._source is None:
            self._source = iter(self.open())
        rows = list(itertools.islice(self._source, n))
        while self.mode == "cycle" and len(rows) < n:
            self._source = iter(self.open())
            more = list(itertools.islice(self._source, n - len(rows)))
            if not more:
                break  # an empty source: nothing to cycle over
            rows += more
        return rows

    async def _ask_master(self) -> None:
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_future()
            hub.send(None, _REQUEST, {"feeder": self.name, "rows": self.chunk_rows}, None)
        await asyncio.shield(self._pending)

    def _receive(self, rows: list[Row], exhausted: bool, error: str | None) -> None:
        self._buffer.extend(rows)
        self._exhausted = exhausted and not rows
        self._error = error
        if self._pending is not None and not self._pending.done():
            self._pending.set_result(None)
        self._pending = None


class CsvFeeder(Feeder):
    """Rows of a CSV file with a header line, as dicts keyed by the header.

    Args:
        path: The file, relative to the working directory of the process
            that reads it (the master in distributed mode).
        delimiter: The field separator.
        **kwargs: As for :class:`Feeder`.
    """

    def __init__(self, path: str, *, delimiter: str = ",", **kwargs: Any) -> None:
        self.path, self.delimiter = path, delimiter
        super().__init__(**kwargs)

    def open(self) -> Iterable[Row]:
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                yield from csv.DictReader(fh, delimiter=self.delimiter)
        except FileNotFoundError:
            raise ConfigError(f"feeder {self.name}: no file {self.path!r}") from None


class JsonLinesFeeder(Feeder):
    """Rows of a JSON Lines file: one JSON object per line (blank lines are
    skipped).

    Raises (from :meth:`next`):
        ConfigError: A line that is not a JSON object.
    """

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = path
        super().__init__(**kwargs)

    def open(self) -> Iterable[Row]:
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ConfigError(f"{self.path}:{number}: expected a JSON object per line")
                    yield row


class IterableFeeder(Feeder):
    """Rows from Python: a list of dicts, or a function that returns a fresh
    iterable of them (which ``"cycle"`` calls again each pass). In
    distributed mode only the master's copy is read, and rows must be JSON
    values to travel."""

    def __init__(self, rows: Iterable[Row] | Callable[[], Iterable[Row]], **kwargs: Any) -> None:
        self._rows = rows
        super().__init__(**kwargs)

    def open(self) -> Iterable[Row]:
        return self._rows() if callable(self._rows) else self._rows


def reset_all() -> None:
    """Rewinds every feeder: called when a run starts."""
    for feeder in _feeders.values():
        feeder.reset()


def _on_request(environment: Any, msg: CustomMessage, **_: Any) -> None:
    """On the master: serve a worker's request for rows. A source that fails
    is reported to the worker, whose ``next()`` raises it."""
    name = msg.data["feeder"]
    feeder = _feeders.get(name)
    rows: list[Row] = []
    error = None
    if feeder is None:
        error = f"the master has no feeder {name!r}: master and workers need the same aiotestfile"
    else:
        try:
            rows = feeder.take(int(msg.data["rows"]))
        except Exception as exc:
            error = f"feeder {name} failed on the master: {type(exc).__name__}: {exc}"
    reply = {"feeder": name, "rows": rows, "exhausted": not rows, "error": error}
    hub.send(environment, _ROWS, reply, msg.node_id)


def _on_rows(environment: Any, msg: CustomMessage, **_: Any) -> None:
    """On a worker: rows arrived."""
    feeder = _feeders.get(msg.data["feeder"])
    if feeder is not None:
        feeder._receive(msg.data["rows"], msg.data["exhausted"], msg.data.get("error"))


def _install_handlers() -> None:
    if not hub.has_handler(_REQUEST):
        hub.register(_REQUEST, _on_request)
        hub.register(_ROWS, _on_rows)
