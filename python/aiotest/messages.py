"""Custom messages between the master and its workers, in Locust's habits
(``register_message`` / ``send_message``), carried by the ``custom`` message
of docs/protocol.md. Data is any JSON value.

In local mode a message sent is delivered to this process's own handlers,
so one aiotestfile works in both modes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .exceptions import ConfigError
from .sync import SyncRunner

log = logging.getLogger("aiotest.messages")

#: The custom message that carries a worker's ``report_to_master`` data
#: to the master, whose ``worker_report`` listeners get it.
REPORT_TO_MASTER = "aiotest.report_to_master"

#: ``handler(environment=..., msg=CustomMessage)``, plain or ``async def``.
MessageHandler = Callable[..., Any]


@dataclass(frozen=True)
class CustomMessage:
    """One message as its handler gets it (Locust's ``Message``).

    Attributes:
        type: The name it was sent under.
        data: The JSON value sent (dicts, lists, str, numbers, bools, None).
        node_id: On the master, the index of the worker that sent it; on a
            worker or in local mode, None.
    """

    type: str
    data: Any
    node_id: int | None = None


class MessageHub:
    """This process's handlers, and the link (master or worker) that carries
    what is sent. One per process: a worker's runs share it."""

    def __init__(self) -> None:
        self._handlers: dict[str, MessageHandler] = {}
        self._concurrent: set[str] = set()
        self._send: Callable[[str, str, int | None], None] | None = None
        #: "master", "worker", or None in local mode.
        self.role: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def register(self, name: str, handler: MessageHandler, *, concurrent: bool = False) -> None:
        """Registers ``handler`` for messages of type ``name``. A plain
        handler runs before the next message is handled; with
        ``concurrent`` (Locust's flag) it runs in a greenlet of its own, so
        its ``gevent.sleep``/``time.sleep`` waits let the rest go on.

        Raises:
            ConfigError: ``name`` already has a handler, or it is not callable.
        """
        if not callable(handler):
            raise ConfigError(f"register_message({name!r}, ...) needs a function as its handler")
        if name in self._handlers:
            raise ConfigError(f"a handler for message type {name!r} is already registered")
        self._handlers[name] = handler
        if concurrent:
            self._concurrent.add(name)

    def has_handler(self, name: str) -> bool:
        return name in self._handlers

    def connect(
        self, send: Callable[[str, str, int | None], None] | None, role: str | None = None
    ) -> None:
        """Routes sends through ``send(name, data_json, worker_index)`` as
        ``role`` ("master" or "worker"), or back to local delivery with None."""
        self._send = send
        self.role = role if send is not None else None

    def send(self, environment: Any, name: str, data: Any, worker_index: int | None) -> None:
        """Raises TypeError when ``data`` is not JSON-serialisable."""
        text = json.dumps(data)
        if self._send is None:
            self.deliver(environment, name, json.loads(text), None)
        else:
            self._send(name, text, worker_index)

    def deliver(self, environment: Any, name: str, data: Any, node_id: int | None) -> None:
        """Calls the handler for ``name``; logs (never raises) its errors."""
        handler = self._handlers.get(name)
        if handler is None:
            log.warning(
                "No handler for custom message %r: register one with register_message", name
            )
            return
        msg = CustomMessage(name, data, node_id)
        try:
            if name in self._concurrent and not inspect.iscoroutinefunction(handler):
                result = SyncRunner().call(lambda: handler(environment=environment, msg=msg))
            else:
                result = handler(environment=environment, msg=msg)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._finished)
        except Exception:
            log.exception("The handler of custom message %r failed", name)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("The handler of a custom message failed", exc_info=task.exception())


#: The process's hub.
hub = MessageHub()
