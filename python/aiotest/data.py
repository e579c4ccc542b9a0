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
same row. Each worker tells the master as it hands rows to its users; the
rows a lost worker held and never handed out are served again to the
others, so ``"once"`` stays exactly-once when workers die. Locally the
process reads the source itself. No Redis is needed.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .exceptions import ConfigError, StopUser
from .messages import CustomMessage, hub

Row = dict[str, Any]

log = logging.getLogger("aiotest.data")

_REQUEST = "__aiotest_feeder_request"
_ROWS = "__aiotest_feeder_rows"
#: W→M: ``rows`` more rows of ``feeder`` went to users.
_USED = "__aiotest_feeder_used"
#: M→W: forget the rows you hold (the master served them again while you
#: were missing).
_REVOKE = "__aiotest_feeder_revoke"

#: Feeders in the order the aiotestfile declares them: master and workers
#: load the same file, so a feeder's key names the same source on both.
_feeders: dict[str, Feeder] = {}

#: On the master: per (worker index, feeder name), the rows sent to that
#: worker that it has not yet said it handed to a user, oldest first.
_lent: dict[tuple[int, str], deque[Row]] = {}
#: On the master: workers whose rows were served again; told to drop theirs
#: should they come back.
_revoked: set[int] = set()
#: On a worker: rows handed to users and not yet reported, per feeder.
_unreported: dict[str, int] = {}


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
        #: On the master: rows a lost worker never handed out, served first.
        self._returned: deque[Row] = deque()
        self._pending: asyncio.Future[None] | None = None
        self._error: str | None = None

    def reset(self) -> None:
        """Starts over from the first row, as every new run does."""
        self._source = None
        self._exhausted = False
        self._buffer.clear()
        self._returned.clear()
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
        row = self._buffer.popleft()
        if hub.role == "worker":
            _report_used(self.name)
        return row

    def take(self, n: int) -> list[Row]:
        """Up to ``n`` rows from the source (fewer only when a ``"once"``
        source ran out). Reads the source; used where it is read."""
        rows = [self._returned.popleft() for _ in range(min(n, len(self._returned)))]
        if len(rows) == n:
            return rows
        if self._source is None:
            self._source = iter(self.open())
        rows += itertools.islice(self._source, n - len(rows))
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
    _lent.clear()
    _revoked.clear()
    _unreported.clear()


def drop_held_rows() -> None:
    """On a worker: forgets the rows it holds and has not handed out (its
    master was lost, or served them again); the next ``next()`` asks anew."""
    for feeder in _feeders.values():
        feeder._buffer.clear()
        feeder._exhausted = False
    _unreported.clear()


def worker_lost(worker_index: int) -> None:
    """On the master: the rows a lost worker held and never handed to a
    user are served again, before any new row."""
    for key in [k for k in _lent if k[0] == worker_index]:
        rows = _lent.pop(key)
        feeder = _feeders.get(key[1])
        if rows and feeder is not None:
            feeder._returned.extend(rows)
            _revoked.add(worker_index)
            log.info(
                "%d rows of feeder %s that worker %d held are served again",
                len(rows),
                key[1],
                worker_index,
            )


def worker_joined(environment: Any, worker_index: int) -> None:
    """On the master: a worker whose rows were served again came back; it
    must not hand them out too."""
    if worker_index in _revoked:
        _revoked.discard(worker_index)
        hub.send(environment, _REVOKE, {}, worker_index)


def _report_used(name: str) -> None:
    """Counts a row handed out; one message per feeder per loop turn tells
    the master (a burst of users starting costs one message)."""
    if not _unreported:
        asyncio.get_running_loop().call_soon(_flush_used)
    _unreported[name] = _unreported.get(name, 0) + 1


def _flush_used() -> None:
    for name, count in _unreported.items():
        hub.send(None, _USED, {"feeder": name, "rows": count}, None)
    _unreported.clear()


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
        if rows and msg.node_id is not None and feeder.mode == "once":
            _lent.setdefault((msg.node_id, name), deque()).extend(rows)
    reply = {"feeder": name, "rows": rows, "exhausted": not rows, "error": error}
    hub.send(environment, _ROWS, reply, msg.node_id)


def _on_rows(environment: Any, msg: CustomMessage, **_: Any) -> None:
    """On a worker: rows arrived."""
    feeder = _feeders.get(msg.data["feeder"])
    if feeder is not None:
        feeder._receive(msg.data["rows"], msg.data["exhausted"], msg.data.get("error"))


def _on_used(environment: Any, msg: CustomMessage, **_: Any) -> None:
    """On the master: a worker handed ``rows`` rows to its users."""
    if msg.node_id is None:  # only workers' reports count (see _on_request)
        return
    held = _lent.get((msg.node_id, msg.data["feeder"]))
    if held is not None:
        for _row in range(min(int(msg.data["rows"]), len(held))):
            held.popleft()


def _on_revoke(environment: Any, msg: CustomMessage, **_: Any) -> None:
    """On a worker: the master served our rows again while we were missing."""
    log.warning("The master served this worker's unused feeder rows to others; dropping them")
    drop_held_rows()


def _install_handlers() -> None:
    if not hub.has_handler(_REQUEST):
        hub.register(_REQUEST, _on_request)
        hub.register(_ROWS, _on_rows)
        hub.register(_USED, _on_used)
        hub.register(_REVOKE, _on_revoke)
