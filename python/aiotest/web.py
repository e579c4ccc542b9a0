"""The runner side of the web UI: the Rust core serves the page and the
JSON API (``WebUi``, routes in docs/web.md); this module turns the
commands it receives (swarm, stop, reset) into runs, and publishes the
run's status once per stats interval.

Locust's behaviour is the model: without ``--headless`` the process waits for
a start from the browser (or ``POST /swarm``), a swarm during a run changes
its user count and spawn rate, runs can follow one another, and the reports
asked for on the command line are written when the process quits (Ctrl-C,
SIGTERM or ``--autoquit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from . import health
from ._core import Engine, OtlpExporter, WebUi, __version__, parse_duration_s, validate_host
from .env import Environment, needs_host
from .exceptions import AiotestError, ConfigError
from .lifecycle import Backend, Outcome, RunDriver, RunSpec
from .options import CustomOption, RunOptions
from .report import RunFacts, console, finish_run
from .shape import MAX_SPAWN_RATE_PER_S, MAX_USERS, LoadStep, load_problem
from .user import User

log = logging.getLogger("aiotest.web")

#: Seconds between two status publications (and browser updates).
PUBLISH_INTERVAL_S = 1.0

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class SwarmRequest:
    """What ``POST /swarm`` asks for (Locust's form fields)."""

    users: int
    spawn_rate: float
    host: str | None
    run_time_s: float | None
    classes: list[type[User]] | None
    #: The aiotestfile's own options the form set, by attribute name.
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def parse_swarm(
    body: str,
    content_type: str,
    env: Environment,
    specs: Sequence[CustomOption] = (),
) -> SwarmRequest:
    """Reads Locust's swarm form (``user_count``, ``spawn_rate``, ``host``,
    ``run_time``, repeated ``user_classes``, and the aiotestfile's own
    options, ``specs``, by attribute name), form-encoded or as JSON. An
    option the form leaves out, or a secret left empty, keeps its value; a
    checkbox's last value wins (the form sends ``false`` before a ticked
    box's ``true``).

    Raises:
        ConfigError: A missing or malformed field, naming it and its fix.
    """
    if "json" in content_type:
        try:
            raw = json.loads(body or "{}")
        except ValueError as exc:
            raise ConfigError(f"the request body is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError("the request body must be a JSON object")
        fields = {k: v if isinstance(v, list) else [v] for k, v in raw.items()}
    else:
        fields = parse_qs(body, keep_blank_values=True)

    def one(name: str) -> str | None:
        """The last value given for ``name``, stripped; None when blank."""
        values = fields.get(name) or [None]
        value = values[-1]
        return None if value is None or str(value).strip() == "" else str(value).strip()

    users_text = one("user_count")
    if users_text is None:
        raise ConfigError("user_count is missing: give the number of users, e.g. user_count=10")
    try:
        users = int(users_text)
        if load_problem(users, 1.0):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"user_count={users_text!r} is not a whole number of users from 0 to {MAX_USERS:,}"
        ) from None
    rate_text = one("spawn_rate") or "1"
    try:
        spawn_rate = float(rate_text)
        if load_problem(0, spawn_rate):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"spawn_rate={rate_text!r} is not a number of users per second above 0 "
            f"and at most {MAX_SPAWN_RATE_PER_S:,.0f}"
        ) from None
    host = one("host")
    if host is not None:
        host = validate_host(host)
    run_time = one("run_time")
    run_time_s = parse_duration_s(run_time) if run_time else None
    names = [str(n) for n in fields.get("user_classes", []) if str(n).strip()]
    classes = None
    if names:
        by_name = {c.__name__: c for c in env.user_classes}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(
                f"unknown user class {', '.join(unknown)}: pick from {', '.join(by_name)}"
            )
        classes = [by_name[n] for n in names]
    options: dict[str, Any] = {}
    for spec in specs:
        given = [str(v) for v in fields.get(spec.dest, [])]
        if spec.is_secret:
            given = [v for v in given if v]  # left empty: the secret stays
        if not given:
            continue
        if spec.is_flag:
            options[spec.dest] = given[-1].lower() in ("true", "on", "1", "yes")
        else:
            options[spec.dest] = spec.convert(given if spec.is_multiple else given[-1:])
    return SwarmRequest(users, spawn_rate, host, run_time_s, classes, options)


class WebUiServer:
    """Serves the web UI until Ctrl-C, SIGTERM or ``--autoquit``, turning
    the browser's commands into runs on ``backend`` (one
    :class:`~aiotest.lifecycle.RunDriver` a start), and publishing the
    status once per :data:`PUBLISH_INTERVAL_S`.

    Args:
        env: The run object.
        opts: The command line's options.
        backend: Where runs go (this process, or a master's workers).
        web: The bound ``WebUi``.
    """

    def __init__(self, env: Environment, opts: RunOptions, backend: Backend, web: WebUi) -> None:
        self.env, self.opts, self.backend, self.web = env, opts, backend, web
        self.quit = asyncio.Event()
        self.started = False
        self.peak_users = 0
        self.settings: dict[str, Any] = {
            "host": opts.host or env.host_summary(),
            "spawn_rate": opts.spawn_rate,
            "run_time_s": opts.run_time_s,
            "target_user_count": opts.users,
        }
        #: The aiotestfile's options the start form shows, with the values
        #: of the command line (or of the last run started here).
        self.extra_options = _form_fields(opts)
        self._driver: RunDriver | None = None
        self._run: asyncio.Task[Outcome] | None = None
        self._stop_run = asyncio.Event()
        self._commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        """A run was started and has not ended yet."""
        return self._run is not None and not self._run.done()

    def facts(self) -> RunFacts:
        """What the reports say of the current (or last) run."""
        return RunFacts(
            host=self.settings["host"],
            script=self.opts.aiotestfile,
            user_classes=tuple(c.__name__ for c in self.env.user_classes),
            peak_users=self.peak_users,
            task_runs=self.backend.task_runs,
        )

    def publish(self) -> None:
        """Sends the status and fresh statistics to every browser."""
        status = self.backend.status()
        if not self.started:
            status["state"] = "ready"
        self.peak_users = max(self.peak_users, int(status.get("user_count", 0)))
        status.update(
            self.settings,
            extra_options=self.extra_options,
            user_classes=[c.__name__ for c in self.env.user_classes],
            is_distributed=self.backend.distributed,
            version=__version__,
        )
        facts = self.facts()
        self.web.publish(
            status,
            meta=facts.meta(),
            fields={"user_count": facts.peak_users, "task_runs": status.get("task_runs", 0)},
        )

    async def _publisher(self) -> None:
        failing = False
        while True:
            try:
                self.publish()
                failing = False
            except Exception:  # the page shows stale figures; say why, once
                if not failing:
                    log.exception("publishing the web UI's statistics failed")
                failing = True
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    # -- runs

    def start(self, req: SwarmRequest) -> None:
        """Starts a run of ``req`` (Locust's swarm).

        Raises:
            ConfigError: A class that needs a host has none.
        """
        env = self.env
        if req.host:
            for cls in env.user_classes:
                cls.host = req.host
            env.host = req.host
            self.settings["host"] = req.host
        classes = req.classes or env.user_classes
        missing = [c.__name__ for c in classes if needs_host(c) and not c.host]
        if missing:
            raise ConfigError(
                f"no host for user class {', '.join(missing)}: fill in the host field "
                "(e.g. http://127.0.0.1:8080) or start aiotest with -H"
            )
        self.settings.update(
            spawn_rate=req.spawn_rate, run_time_s=req.run_time_s, target_user_count=req.users
        )
        if req.options and env.parsed_options is not None:
            env.parsed_options = env.parsed_options.replace(custom_options=req.options)
            self.extra_options = _form_fields(env.parsed_options)
        self.backend.engine.reset_stats(clear_history=True)
        self.web.clear_history()
        self.started, self.peak_users = True, 0
        log.info("Starting %d users at %g users/s (from the web UI)", req.users, req.spawn_rate)
        step = LoadStep(req.users, req.spawn_rate, tuple(req.classes) if req.classes else None)
        spec = dataclasses.replace(
            RunSpec.from_options(self.opts, env.shape, step), run_time_s=req.run_time_s
        )
        self._driver = RunDriver(env, self.backend, spec, live=self._live())
        self._stop_run = asyncio.Event()
        self._run = asyncio.create_task(self._driver.run(self._stop_run))
        self._run.add_done_callback(self._run_ended)

    def _live(self) -> Any:
        """``--print-stats``: the console's live tables during web UI runs."""
        if not self.opts.print_stats:
            return None
        backend = self.backend

        def live() -> None:
            print(backend.describe(), file=sys.stdout)
            print(backend.engine.snapshot().stats_table(current=True), flush=True)

        return live

    def _run_ended(self, task: asyncio.Task[Outcome]) -> None:
        if not task.cancelled() and task.exception() is None:
            outcome = task.result()
            if outcome.spawn_error is not None:
                exc = outcome.spawn_error
                log.error("Spawning users failed: %s: %s", type(exc).__name__, exc)
            log.info("Run ended: %s", outcome.reason.value)
        self.publish()
        if self.env.quit_requested:  # runner.quit() from user code
            self.quit.set()
            return
        if self.opts.autoquit_s is not None and not any(
            t.get_name() == "autoquit" for t in self._tasks
        ):
            log.info("Quitting in %gs (--autoquit)", self.opts.autoquit_s)
            self._spawn_task(self._autoquit(self.opts.autoquit_s), name="autoquit")

    async def _autoquit(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.quit.set()

    async def stop_run(self) -> None:
        """Stops the run, if any, and returns once its users have stopped."""
        self._stop_run.set()
        if self._run is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run

    def _spawn_task(self, coro: Any, *, name: str | None = None) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- commands

    async def handle(self, cmd: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answers one browser command: an HTTP status and a JSON body."""
        action = cmd["action"]
        if action == "swarm":
            return self.on_swarm(cmd)
        if action == "stop":
            if self.running:
                self._spawn_task(self.stop_run())
                return 200, {"success": True, "message": "Test stopped"}
            return 200, {"success": True, "message": "No test was running"}
        if action == "reset":
            self.backend.engine.reset_stats()
            self.env.events.reset_stats.fire()
            return 200, {"success": True, "message": "Statistics reset"}
        return 404, {"success": False, "message": f"unknown action {action}"}

    def on_swarm(self, cmd: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /swarm``: start a run, or change the running one."""
        try:
            req = parse_swarm(
                cmd["body"], cmd["content_type"], self.env, self.opts.custom_option_specs
            )
            if self.running and self._driver is not None:
                self._driver.retarget(req.users, req.spawn_rate)
                self.settings.update(spawn_rate=req.spawn_rate, target_user_count=req.users)
                message = f"Changed the load to {req.users} users at {req.spawn_rate:g} users/s"
                log.info("%s", message)
                return 200, {"success": True, "message": message, "host": self.settings["host"]}
            problem = self.backend.can_start()
            if problem:
                return 409, {"success": False, "message": problem}
            self.start(req)
        except AiotestError as exc:
            return 400, {"success": False, "message": str(exc)}
        return 200, {
            "success": True,
            "message": f"Swarming started: {req.users} users at {req.spawn_rate:g} users/s",
            "host": self.settings["host"],
        }

    async def _commander(self) -> None:
        while True:
            cmd = await self._commands.get()
            if not self.web.awaited(cmd["id"]):
                # The client had its 503 already: acting now would start a
                # run (or stop one) nobody is waiting for.
                log.warning("Dropped a %s command its client gave up on", cmd["action"])
                continue
            try:
                status, body = await self.handle(cmd)
            except Exception as exc:  # the browser gets the cause
                log.exception("web command %s failed", cmd.get("action"))
                status, body = 500, {"success": False, "message": f"{type(exc).__name__}: {exc}"}
            # Publish first, so that what the reply changed is visible to
            # the next read of /stats/requests.
            self.publish()
            self.web.reply(cmd["id"], status, body)

    async def _autostart(self) -> None:
        """``--autostart``: a run as the command line describes, once the
        backend is ready (a master: its expected workers)."""
        if await self.backend.ready(self.quit) is not None:
            self.quit.set()
            return
        try:
            self.start(
                SwarmRequest(
                    self.opts.users, self.opts.spawn_rate, None, self.opts.run_time_s, None
                )
            )
        except AiotestError as exc:
            log.error("--autostart: %s", exc)
            self.quit.set()

    async def serve(self) -> None:
        """Serves until told to quit, then stops the run (if any)."""
        loop = asyncio.get_running_loop()
        web = self.web

        def drain() -> None:
            for command in web.drain_commands():
                self._commands.put_nowait(command)

        loop.add_reader(web.wakeup_fd(), drain)
        background = [
            asyncio.create_task(self._publisher()),
            asyncio.create_task(self._commander()),
        ]
        if self.opts.autostart:
            background.append(asyncio.create_task(self._autostart()))
        background.append(asyncio.create_task(_set_when(self.backend.fatal, self.quit)))
        try:
            await self.quit.wait()
            log.info("Quitting")
            if self.running:
                await self.stop_run()
            self.publish()
        finally:
            for task in (*background, *self._tasks):
                task.cancel()
            loop.remove_reader(web.wakeup_fd())
            web.stop()


def _form_fields(opts: RunOptions) -> list[dict[str, Any]]:
    """The start form's fields for the aiotestfile's own options
    (``include_in_web_ui``), each with its current value as ``default``."""
    fields = []
    for spec in opts.custom_option_specs:
        if not spec.include_in_web_ui:
            continue
        value = opts.custom_options.get(spec.dest, spec.default)
        fields.append(
            {
                "name": spec.dest,
                "label": spec.long,
                "help": spec.help,
                # A secret's value never goes to the browser: empty keeps it.
                "default": None
                if spec.is_secret or not isinstance(value, (str, int, float, bool, list))
                else value,
                "choices": [str(c) for c in spec.choices] if spec.choices is not None else None,
                "is_secret": spec.is_secret,
                "is_required": spec.is_required,
                "is_multiple": spec.is_multiple,
                "is_flag": spec.is_flag,
            }
        )
    return fields


async def _set_when(event: asyncio.Event, then: asyncio.Event) -> None:
    await event.wait()
    then.set()


def _open_web_ui(engine: Engine, opts: RunOptions) -> WebUi:
    """Binds the web UI and logs where it listens.

    Raises:
        OSError: The address cannot be bound.
        AiotestError: A bad login or unreadable TLS files.
    """
    web = WebUi(
        engine,
        host=opts.web_host,
        port=opts.web_port,
        login=opts.web_login,
        tls_cert=opts.tls_cert,
        tls_key=opts.tls_key,
        metrics_buckets_s=list(opts.metrics_buckets_s),
    )
    shown_host = "0.0.0.0" if opts.web_host in ("", "*") else opts.web_host
    log.info("Starting web interface at %s://%s:%d", web.scheme, shown_host, web.port)
    if opts.web_host not in _LOOPBACK and not opts.web_login:
        log.warning(
            "The web UI listens on %s without --web-login: anyone who reaches port %d can "
            "start and stop tests; add --web-login USER:PASSWORD or --web-host 127.0.0.1",
            shown_host,
            web.port,
        )
    return web


async def serve(
    env: Environment,
    opts: RunOptions,
    checks: Sequence[str],
    backend: Backend,
    exporter: OtlpExporter | None = None,
) -> int:
    """Serves the web UI until Ctrl-C, SIGTERM or ``--autoquit``, running
    what the browser asks for; then writes the reports of the last run and
    returns the exit code (as :func:`aiotest.report.finish_run`; 0 when no
    run started). A bad address or TLS file is printed and gives exit
    code 2."""
    try:
        web = _open_web_ui(backend.engine, opts)
    except OSError as exc:
        print(f"error: the web UI: {exc}", file=sys.stderr)
        return 2
    except AiotestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    server = WebUiServer(env, opts, backend, web)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.quit.set)
    env.web_ui = server
    try:
        async with health.following(web, backend.readiness, backend.metrics_status, exporter):
            await server.serve()
    finally:
        env.web_ui = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not server.started:
        return 0
    snapshot = backend.engine.snapshot(with_history=True)
    return finish_run(env.events, env, opts, checks, snapshot, server.facts(), out=console(opts))
