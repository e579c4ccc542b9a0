"""Event hooks, in Locust's habits: ``events.test_start.add_listener(fn)``
or ``@events.test_start.add_listener``.

Listeners are called with keyword arguments only; each hook documents them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._core import Engine, RawResponse
from .exceptions import AiotestError

Listener = Callable[..., Any]
#: Where a listener's exception goes: the run's user errors.
ErrorSink = Callable[[BaseException], None]

log = logging.getLogger("aiotest.events")


class EventHook:
    """A list of listeners fired together. A listener that raises is logged
    with its traceback (and counted among the run's user errors once a run
    routes them, :meth:`Events.route_errors`); the other listeners and the
    run go on, as in Locust."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.on_error: ErrorSink | None = None

    def add_listener(self, listener: Listener) -> Listener:
        """Adds ``listener``; returns it, so this works as a decorator."""
        self._listeners.append(listener)
        return listener

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def fire(self, **kwargs: Any) -> None:
        """Calls every listener with ``kwargs``, in the order they were added."""
        for listener in list(self._listeners):
            try:
                listener(**kwargs)
            except Exception as exc:  # user code: record and go on
                if self.on_error is not None:
                    self.on_error(exc)
                else:
                    log.exception("An event listener (%r) raised; going on", listener)


class RequestEvent(EventHook):
    """Fired for every request, and used to record non-HTTP work.

    Listeners get Locust's arguments: ``request_type``, ``name``,
    ``response_time`` (ms, float), ``response_length`` (bytes),
    ``response``, ``context``, ``exception`` (None on success),
    ``start_time`` (Unix s) and ``url``.

    ``fire()`` from user code records the action in the statistics and then
    notifies listeners. HTTP requests are recorded by the engine; listeners are
    only called for them when any are registered.
    """

    def __init__(self) -> None:
        super().__init__()
        self._engine: Engine | None = None

    def fire(  # type: ignore[override]
        self,
        *,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int = 0,
        exception: BaseException | str | None = None,
        **kwargs: Any,
    ) -> None:
        """Records one timed action and notifies listeners.

        Args:
            request_type: The first stats column, e.g. ``"redis"`` or ``"GET"``.
            name: The stats name.
            response_time: Milliseconds (Locust's unit).
            response_length: Bytes.
            exception: Makes it a failure, grouped by its text.

        Raises:
            AiotestError: When no test is running to record into.
        """
        if self._engine is None:
            raise AiotestError("events.request.fire() needs a running test to record into")
        self._engine.record(
            method=request_type,
            name=name,
            response_time_us=max(0, round(response_time * 1000)),
            content_bytes=int(response_length),
            error=failure_text(exception),
        )
        self.notify(
            request_type=request_type,
            name=name,
            response_time=response_time,
            response_length=response_length,
            exception=exception,
            **kwargs,
        )

    def notify(self, **kwargs: Any) -> None:
        """Calls the listeners without recording anything."""
        super().fire(**kwargs)

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)

    def notify_response(
        self, raw: RawResponse, error: str | None, context: Mapping[str, Any] | None = None
    ) -> None:
        """Tells listeners (if any) of one HTTP request the engine finished,
        with Locust's arguments: ``response`` is the engine's response
        (``status_code``, ``content``, ``text``, ``headers``), ``context``
        the request's context (its ``context=`` over its user's
        ``context()``; an empty dict when neither), ``start_time`` when it
        was sent (Unix s)."""
        if self._listeners:
            response_time_ms = raw.response_time_us / 1000
            super().fire(
                request_type=raw.method,
                name=raw.name,
                response_time=response_time_ms,
                response_length=raw.content_bytes,
                response=raw,
                context=dict(context) if context else {},
                exception=error,
                start_time=time.time() - response_time_ms / 1000,
                url=raw.url,
            )

    @contextlib.contextmanager
    def measure(self, request_type: str, name: str) -> Iterator[dict[str, Any]]:
        """Times the ``with`` block and records it; an exception in the block
        is recorded as a failure and re-raised. Set ``ctx["response_length"]``
        inside the block to record a size in bytes.

        Example::

            with events.request.measure("redis", "GET session") as ctx:
                ctx["response_length"] = len(await redis.get(key))
        """
        ctx: dict[str, Any] = {"response_length": 0}
        started = time.perf_counter()
        try:
            yield ctx
        except BaseException as exc:
            self.fire(
                request_type=request_type,
                name=name,
                response_time=(time.perf_counter() - started) * 1000,
                response_length=ctx["response_length"],
                exception=exc,
            )
            raise
        self.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=ctx["response_length"],
        )


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback outside aiotest's own package:
    where in the user's code it happened, outermost first."""
    return [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_PACKAGE_DIR)
    ]


def failure_text(exception: BaseException | str | None) -> str | None:
    """How a failure's cause reads in the stats: ``"TypeName: message"``."""
    if exception is None:
        return None
    if isinstance(exception, BaseException):
        return f"{type(exception).__name__}: {exception}"
    return str(exception)


class Events:
    """The hooks of a test run (Locust's ``locust.events``, with its
    names and keyword arguments).

    They fire where Locust fires them: "each process" means the local
    process, the master and every worker.

    Attributes:
        init_command_line_parser: Before the command line is parsed;
            ``parser`` (:class:`aiotest.options.OptionParser`), to add options.
        init: After the aiotestfile loads, with ``environment.runner``
            set, in each process; ``environment``.
        test_start: A run starts, before users spawn, in each process;
            ``environment``.
        test_stopping: The run starts stopping its users, in each process;
            ``environment``.
        test_stop: The users stopped, in each process; ``environment``.
        spawning_complete: The target user count is reached (on a worker:
            its share); ``user_count``.
        request: Every request; see :class:`RequestEvent`.
        user_error: An exception in a user's task; ``user_instance``
            (None here), ``exception``, ``tb``.
        reset_stats: The statistics were reset.
        quitting: Before the process exits; ``environment``.
        quit: The process is exiting; ``exit_code``.
        report_to_master: On a worker, every 3 s of a run and at its end;
            ``client_id``, ``data`` (a dict: what listeners add goes to the
            master, JSON values only).
        worker_report: On the master, for each worker's non-empty
            ``report_to_master`` data; ``client_id``, ``data``.
        worker_connect: On the master, a worker joined; ``client_id``.
        heartbeat_sent: On the master, a heartbeat went to a worker;
            ``client_id``, ``timestamp`` (Unix s).
        heartbeat_received: On a worker, a heartbeat came from the master;
            ``client_id``, ``timestamp``.
        usage_monitor: Every 5 s in each process; ``environment``,
            ``cpu_usage`` (% of one core), ``memory_usage`` (RSS bytes).
        cpu_warning: With ``usage_monitor``, when the CPU is above 90 %;
            ``environment``, ``cpu_usage``.
    """

    def __init__(self) -> None:
        self.init_command_line_parser = EventHook()
        self.init = EventHook()
        self.test_start = EventHook()
        self.test_stopping = EventHook()
        self.test_stop = EventHook()
        self.spawning_complete = EventHook()
        self.request = RequestEvent()
        self.user_error = EventHook()
        self.reset_stats = EventHook()
        self.quitting = EventHook()
        self.quit = EventHook()
        self.report_to_master = EventHook()
        self.worker_report = EventHook()
        self.worker_connect = EventHook()
        self.cpu_warning = EventHook()
        self.heartbeat_sent = EventHook()
        self.heartbeat_received = EventHook()
        self.usage_monitor = EventHook()

    def route_errors(self, sink: ErrorSink | None) -> None:
        """Sends every listener's exception to ``sink`` (the run's user
        errors), or back to the log alone with None."""
        for hook in vars(self).values():
            if isinstance(hook, EventHook):
                hook.on_error = sink


#: The global hooks that aiotestfiles import: ``from aiotest import events``.
events = Events()
