"""The run object: one :class:`Environment` owns the user classes, the
options, the events, the engine and the runner, so library use and CLI use
share one path (Locust's ``Environment``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from ._bridge import EngineBridge
from ._core import Engine, validate_host
from .events import Events
from .events import events as global_events
from .exceptions import ConfigError
from .messages import MessageHandler, hub
from .options import RunOptions
from .result import StatsView
from .runner import LocalRunner, Runner
from .shape import LoadTestShape
from .user import AsyncHttpUser, TaskTable, User, task_table

log = logging.getLogger("aiotest.env")


class Environment:
    """Everything one test run needs.

    Args:
        user_classes: The user classes to run.
        host: Overrides every class's ``host`` when given.
        tags: Run only tasks with one of these tags (``-T``).
        exclude_tags: Skip tasks with any of these tags (``-E``).
        stop_timeout_s: Seconds users may take to finish their task at stop.
        parsed_options: The command-line options, when run from the CLI
            (Locust's name); read-only.
        events: Event hooks; the global ``aiotest.events`` by default.
        engine: An engine to share (a worker keeps one across runs); a new
            one is started on first use otherwise.
        require_host: See :meth:`configure`.

    Raises:
        ConfigError: A malformed host, a user class with no host or no
            task, or no user class left after tag filtering.
    """

    def __init__(
        self,
        *,
        user_classes: Sequence[type[User]],
        host: str | None = None,
        tags: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        stop_timeout_s: float = 0.0,
        parsed_options: RunOptions | None = None,
        events: Events | None = None,
        engine: Engine | None = None,
        require_host: bool = True,
    ) -> None:
        self.events = events or global_events
        self.parsed_options = parsed_options
        #: Values the master (or the local process) sets, typically in an
        #: ``events.init`` listener, e.g. a token fetched once. JSON values
        #: only: in distributed mode every worker gets a copy before any of
        #: its users starts.
        self.context: dict[str, Any] = {}
        #: The load shape that drives the run (a ``LoadTestShape`` subclass
        #: in the aiotestfile, or ``--test-plan``), or None.
        self.shape: LoadTestShape | None = None
        self.engine: Engine | None = None
        self.bridge: EngineBridge | None = None
        #: Set it (in a ``quitting`` listener, say) to end the process with
        #: this exit code rather than the run's own (Locust's attribute).
        self.process_exit_code: int | None = None
        #: The process's runner (Locust's ``environment.runner``): set before
        #: ``events.init`` fires, the same object for every run.
        self.runner: Runner | None = None
        #: The web UI server while it serves; None in a headless run (Locust's name).
        self.web_ui: Any = None
        #: Set by ``runner.stop()``/``quit()``: the current run ends.
        self.stop_requested = asyncio.Event()
        #: Set by ``runner.quit()``: the process ends after the run.
        self.quit_requested = False
        self.configure(
            user_classes=user_classes,
            host=host,
            tags=tags,
            exclude_tags=exclude_tags,
            stop_timeout_s=stop_timeout_s,
            require_host=require_host,
        )
        if engine is not None:
            self.use_engine(engine)

    def configure(
        self,
        *,
        user_classes: Sequence[type[User]],
        host: str | None = None,
        tags: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        stop_timeout_s: float = 0.0,
        require_host: bool = True,
    ) -> None:
        """Sets what the next run uses; a worker calls it for each run the
        master starts, so one environment serves them all. Arguments as for
        the constructor; ``require_host=False`` lets a class go without a
        host until a run supplies one (a worker before its first run).

        Raises:
            ConfigError: As for the constructor.
        """
        self.tags = set(tags or ())
        self.exclude_tags = set(exclude_tags or ())
        self.stop_timeout_s = stop_timeout_s
        self.host = validate_host(host) if host else None
        self._task_tables: dict[type[User], TaskTable] = {}
        kept = []
        for cls in user_classes:
            fns, _ = self.task_table(cls)
            if not fns:
                if self.tags or self.exclude_tags:
                    continue  # every task filtered out by tags: the class sits out
                raise ConfigError(
                    f"user class {cls.__name__} has no tasks: decorate methods with @task or set `tasks`"
                )
            kept.append(cls)
        if not kept:
            raise ConfigError("no user class has a task left after -T/--tags and -E/--exclude-tags")
        self.user_classes: list[type[User]] = kept
        for cls in kept:
            if self.host:
                cls.host = self.host
            elif needs_host(cls) and (cls.host or require_host):
                if not cls.host:
                    raise ConfigError(
                        f'no host for user class {cls.__name__}: set `host = "http://..."` '
                        "on the class or pass -H/--host"
                    )
                cls.host = validate_host(cls.host)

    def use_engine(self, engine: Engine) -> None:
        """Records into ``engine`` (and sends this run's requests through it);
        an event listener that raises is counted among its user errors."""
        self.engine = engine
        if self.parsed_options is not None:
            engine.set_max_names(self.parsed_options.max_names)
        self.bridge = EngineBridge(engine, self.events.request)
        self.events.request._engine = engine
        self.events.route_errors(self._listener_error)

    def _listener_error(self, exc: BaseException) -> None:
        """An event listener raised: a user error of this run, and the run goes on."""
        if self.runner is not None:
            self.runner.record_error(exc, in_listener=True)
        else:
            log.error("An event listener raised: %s: %s", type(exc).__name__, exc, exc_info=exc)

    def request_stop(self, *, quit_process: bool) -> None:
        """Ends the current run (its reports are written); with
        ``quit_process`` the process ends after it, web UI or not."""
        self.quit_requested = self.quit_requested or quit_process
        self.stop_requested.set()

    @property
    def stats(self) -> StatsView:
        """The statistics now, with Locust's names (see :class:`StatsView`).

        Raises:
            RuntimeError: No engine is in use yet (before the first run).
        """
        if self.engine is None:
            raise RuntimeError("environment.stats exists once a run has started")
        return StatsView.from_snapshot(self.engine.snapshot())

    def host_summary(self) -> str:
        """The classes' distinct hosts, comma-separated: the target as logs
        and reports show it."""
        return host_summary(self.user_classes)

    def register_message(
        self, name: str, handler: MessageHandler, *, concurrent: bool = False
    ) -> None:
        """Calls ``handler(environment=..., msg=CustomMessage)`` for each
        message of type ``name`` that reaches this process (Locust's
        ``runner.register_message``). Register in an ``events.init`` listener
        or at module level, so master and workers both have it. With
        ``concurrent``, a blocking-style handler runs in a greenlet of its own.

        Raises:
            ConfigError: ``name`` already has a handler.
        """
        hub.register(name, handler, concurrent=concurrent)

    def send_message(self, name: str, data: Any = None, *, worker_index: int | None = None) -> None:
        """Sends ``data`` (any JSON value) as a message of type ``name``: from
        a worker to the master; from the master to the worker with
        ``worker_index``, or to every worker; in local mode, to this
        process's own handler.

        Raises:
            TypeError: ``data`` is not JSON-serialisable.
        """
        hub.send(self, name, data, worker_index)

    def task_table(self, cls: type[User]) -> TaskTable:
        """The class's runnable tasks after tag filtering, with cumulative
        weights for ``random.choices``. Computed once per class."""
        table = self._task_tables.get(cls)
        if table is None:
            table = self._task_tables[cls] = task_table(cls, self.tags, self.exclude_tags)
        return table

    def create_local_runner(self, *, iterations: int | None = None) -> LocalRunner:
        """Starts the engine (if none is in use yet) and returns the runner
        of this process's users, made ready for a new run: the one in
        :attr:`runner` when there is one, else a new one kept there.

        Args:
            iterations: Total task executions before the run ends (``-i``).

        Raises:
            RuntimeError: The runner's last run is still going.
        """
        if self.engine is None or self.bridge is None:
            self.use_engine(Engine())
        assert self.engine is not None and self.bridge is not None
        tables = {cls: self.task_table(cls) for cls in self.user_classes}
        if isinstance(self.runner, LocalRunner):
            self.runner.renew(
                iterations=iterations,
                user_classes=self.user_classes,
                task_tables=tables,
                stop_timeout_s=self.stop_timeout_s,
            )
            return self.runner
        self.runner = LocalRunner(
            environment=self,
            user_classes=self.user_classes,
            task_tables=tables,
            engine=self.engine,
            bridge=self.bridge,
            events=self.events,
            stop_timeout_s=self.stop_timeout_s,
            iterations=iterations,
        )
        return self.runner


def host_summary(user_classes: Sequence[type[User]]) -> str:
    """The classes' distinct hosts, sorted and comma-separated (``""`` when
    none has one yet): what logs and reports show as the target."""
    return ", ".join(sorted({str(c.host) for c in user_classes if c.host}))


def needs_host(cls: type) -> bool:
    """Whether users of ``cls`` send HTTP requests, and so need a host."""
    return issubclass(cls, AsyncHttpUser)
