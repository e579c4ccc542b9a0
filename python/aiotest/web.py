"""The runner side of the web UI: the Rust core serves the page and the
JSON API (``_core.WebUi``, routes in docs/web.md); this module turns the
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
import json
import logging
import signal
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TextIO
from urllib.parse import parse_qs

from . import _core
from .cluster import MasterRun
from .env import Environment, _needs_host, host_summary
from .exceptions import AiotestError, ConfigError
from .run import RunControl, execute
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


def parse_swarm(body: str, content_type: str, env: Environment) -> SwarmRequest:
    """Reads Locust's swarm form (``user_count``, ``spawn_rate``, ``host``,
    ``run_time``, repeated ``user_classes``), form-encoded or as JSON.

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
        values = fields.get(name) or [None]
        value = values[-1]
        return None if value is None or str(value).strip() == "" else str(value).strip()

    users_text = one("user_count")
    if users_text is None:
        raise ConfigError("user_count is missing: give the number of users, e.g. user_count=10")
    try:
        users = int(users_text)
        if users < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"user_count={users_text!r} is not a whole number of users (0 or more)"
        ) from None
    rate_text = one("spawn_rate") or "1"
    try:
        spawn_rate = float(rate_text)
        if not spawn_rate > 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"spawn_rate={rate_text!r} is not a positive number of users per second"
        ) from None
    host = one("host")
    if host is not None:
        host = _core.validate_host(host)
    run_time = one("run_time")
    run_time_s = _core.parse_duration_s(run_time) if run_time else None
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
    return SwarmRequest(users, spawn_rate, host, run_time_s, classes)


class Backend:
    """What the web UI drives: a local runner or a master. Holds at most one
    run at a time, as an asyncio task that ends when the run has stopped."""

    engine: _core.Engine

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def running(self) -> bool:
        """A run was started and has not ended yet."""
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        """``state`` (ready, spawning, running, stopping, stopped),
        ``user_count`` and ``task_runs``, plus what the backend adds; merged
        into the ``/stats/requests`` document (docs/web.md)."""
        raise NotImplementedError

    def can_start(self) -> str | None:
        """Why a run cannot start now (a sentence with the fix), or None."""
        return None

    def start(self, req: SwarmRequest) -> asyncio.Task[None]:
        """Starts a run; returns its task."""
        raise NotImplementedError

    def retarget(self, users: int, spawn_rate: float) -> None:
        """Ramps the running run to ``users`` at ``spawn_rate`` users/s."""
        raise NotImplementedError

    def task_runs(self) -> int:
        """Task executions of the current (or last) run."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stops the run, if any, and returns once its users have stopped."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class LocalBackend(Backend):
    """Runs the users in this process, one :func:`execute` per start."""

    def __init__(self, env: Environment, opts: SimpleNamespace) -> None:
        super().__init__()
        self.env, self.opts = env, opts
        if env.engine is None:
            env.use_engine(_core.Engine())
        self.engine = env.engine
        self._control: RunControl | None = None

    def status(self) -> dict[str, Any]:
        runner = self.env.runner
        if runner is None or self._task is None:
            return {"state": "ready", "user_count": 0, "task_runs": 0}
        return {
            "state": runner.state if self.running else "stopped",
            "user_count": runner.user_count,
            "user_classes_count": runner.user_classes_count(),
            "task_runs": runner.task_runs,
        }

    def task_runs(self) -> int:
        return self.env.runner.task_runs if self.env.runner else 0

    def start(self, req: SwarmRequest) -> asyncio.Task[None]:
        self._control = RunControl()
        self._stop = self._control.stop
        self._task = asyncio.create_task(self._run(req, self._control))
        return self._task

    async def _run(self, req: SwarmRequest, control: RunControl) -> None:
        from .main import run_options

        outcome = await execute(
            self.env,
            users=req.users,
            spawn_rate=req.spawn_rate,
            run_time_s=req.run_time_s,
            control=control,
            user_classes=req.classes,
            **run_options(self.env, self.opts),
        )
        if outcome.spawn_error is not None:
            exc = outcome.spawn_error
            log.error("Spawning users failed: %s: %s", type(exc).__name__, exc)
        log.info("Run ended: %s", outcome.reason)

    def retarget(self, users: int, spawn_rate: float) -> None:
        if self._control is not None:
            self._control.retarget(users, spawn_rate)


class MasterBackend(Backend):
    """Runs the users on the workers of ``master``: one
    :class:`~aiotest.cluster.MasterRun` per start."""

    def __init__(self, env: Environment, opts: SimpleNamespace, master: Any, engine: Any) -> None:
        super().__init__()
        self.env, self.opts, self.master, self.engine = env, opts, master, engine
        self._run: MasterRun | None = None

    def cluster(self) -> dict[str, Any]:
        """The master's ``ClusterStatus`` (see ``_core.Master.status``)."""
        return json.loads(self.master.status())

    def can_start(self) -> str | None:
        if self.cluster()["live_workers"] == 0:
            return "no worker is connected yet: start workers with --worker, then retry"
        return None

    def status(self) -> dict[str, Any]:
        st = self.cluster()
        if self._run is None:
            state = "ready"
        elif not self.running:
            state = "stopped"
        elif self._run.stopping:
            state = "stopping"
        else:
            state = "running" if st["spawning_complete"] else "spawning"
        return {
            "state": state,
            "user_count": st["user_count"],
            "task_runs": st["task_runs"],
            "worker_count": st["live_workers"],
            "workers": st["workers"],
        }

    def task_runs(self) -> int:
        return int(self.cluster()["task_runs"])

    def start(self, req: SwarmRequest) -> asyncio.Task[None]:
        run = MasterRun(
            self.env,
            self.opts,
            self.master,
            self.engine,
            users=req.users,
            spawn_rate=req.spawn_rate,
            classes=req.classes,
            host=req.host,
        )
        self._run, self._stop = run, asyncio.Event()

        async def drive() -> None:
            await run.drive(run_time_s=req.run_time_s, stop=self._stop)

        self._task = asyncio.create_task(drive())
        return self._task

    def retarget(self, users: int, spawn_rate: float) -> None:
        if self._run is not None:
            self._run.retarget(users, spawn_rate)


async def serve(
    env: Environment,
    opts: SimpleNamespace,
    checks: list[str],
    backend: Backend,
    *,
    quit_event: asyncio.Event | None = None,
) -> int:
    """Serves the web UI until Ctrl-C, SIGTERM or ``--autoquit``, running
    what the browser asks for; then writes the reports of the last run and
    returns the exit code (as :func:`aiotest.main.finish_run`).

    Raises nothing for bad input: a bad address or TLS file is printed and
    gives exit code 2."""
    from .main import finish_run

    engine = backend.engine
    try:
        web = _core.WebUi(
            engine,
            host=opts.web_host,
            port=opts.web_port,
            login=opts.web_login,
            tls_cert=opts.tls_cert,
            tls_key=opts.tls_key,
        )
    except OSError as exc:
        print(f"error: the web UI: {exc}", file=sys.stderr)
        return 2
    except AiotestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    shown_host = "0.0.0.0" if opts.web_host in ("", "*") else opts.web_host
    log.info("Starting web interface at %s://%s:%d", web.scheme, shown_host, web.port)
    if opts.web_host not in _LOOPBACK and not opts.web_login:
        log.warning(
            "The web UI listens on %s without --web-login: anyone who reaches port %d can "
            "start and stop tests; add --web-login USER:PASSWORD or --web-host 127.0.0.1",
            shown_host,
            web.port,
        )
    loop = asyncio.get_running_loop()
    quit_event = quit_event or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, quit_event.set)
    commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def drain() -> None:
        for text in web.drain_commands():
            commands.put_nowait(json.loads(text))

    loop.add_reader(web.wakeup_fd(), drain)
    peak_users = 0
    started = False
    settings: dict[str, Any] = {
        "host": opts.host or host_summary(env.user_classes),
        "spawn_rate": opts.spawn_rate,
        "run_time_s": opts.run_time_s,
        "target_user_count": opts.users,
    }
    stopping: set[asyncio.Task[None]] = set()
    autoquit: asyncio.Task[None] | None = None

    def publish() -> None:
        nonlocal peak_users
        status = backend.status()
        peak_users = max(peak_users, int(status.get("user_count", 0)))
        status.update(
            settings,
            user_classes=[c.__name__ for c in env.user_classes],
            is_distributed=isinstance(backend, MasterBackend),
            version=_core.__version__,
        )
        meta = {
            "host": settings["host"],
            "script": opts.aiotestfile,
            "user_classes": [c.__name__ for c in env.user_classes],
            "peak_users": peak_users,
            "version": _core.__version__,
        }
        web.publish(
            json.dumps(status, default=str),
            meta_json=json.dumps(meta),
            fields_json=json.dumps({"user_count": peak_users, "task_runs": status.get("task_runs", 0)}),
        )

    async def publisher() -> None:
        failing = False
        while True:
            try:
                publish()
                failing = False
            except Exception:  # the page shows stale figures; say why, once
                if not failing:
                    log.exception("publishing the web UI's statistics failed")
                failing = True
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    def run_ended(_: asyncio.Task[None]) -> None:
        nonlocal autoquit
        publish()
        if opts.autoquit_s is not None and autoquit is None:
            log.info("Quitting in %gs (--autoquit)", opts.autoquit_s)

            async def later() -> None:
                await asyncio.sleep(opts.autoquit_s)
                quit_event.set()

            autoquit = asyncio.create_task(later())

    def start(req: SwarmRequest) -> None:
        nonlocal started, peak_users
        if req.host:
            for cls in env.user_classes:
                cls.host = req.host
            env.host = req.host
            settings["host"] = req.host
        missing = [c.__name__ for c in (req.classes or env.user_classes) if _needs_host(c) and not c.host]
        if missing:
            raise ConfigError(
                f"no host for user class {', '.join(missing)}: fill in the host field "
                "(e.g. http://127.0.0.1:8080) or start aiotest with -H"
            )
        settings.update(
            spawn_rate=req.spawn_rate, run_time_s=req.run_time_s, target_user_count=req.users
        )
        engine.reset_stats(clear_history=True)
        web.clear_history()
        started, peak_users = True, 0
        log.info("Starting %d users at %g users/s (from the web UI)", req.users, req.spawn_rate)
        backend.start(req).add_done_callback(run_ended)

    async def handle(cmd: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action = cmd["action"]
        if action == "swarm":
            try:
                req = parse_swarm(cmd["body"], cmd["content_type"], env)
                if backend.running:
                    backend.retarget(req.users, req.spawn_rate)
                    settings.update(spawn_rate=req.spawn_rate, target_user_count=req.users)
                    log.info("Changed the load to %d users at %g users/s", req.users, req.spawn_rate)
                    return 200, {
                        "success": True,
                        "message": f"Changed the load to {req.users} users at {req.spawn_rate:g} users/s",
                        "host": settings["host"],
                    }
                problem = backend.can_start()
                if problem:
                    return 409, {"success": False, "message": problem}
                start(req)
            except AiotestError as exc:
                return 400, {"success": False, "message": str(exc)}
            return 200, {
                "success": True,
                "message": f"Swarming started: {req.users} users at {req.spawn_rate:g} users/s",
                "host": settings["host"],
            }
        if action == "stop":
            if backend.running:
                stopping.add(task := asyncio.create_task(backend.stop()))
                task.add_done_callback(stopping.discard)
                return 200, {"success": True, "message": "Test stopped"}
            return 200, {"success": True, "message": "No test was running"}
        if action == "reset":
            engine.reset_stats()
            return 200, {"success": True, "message": "Statistics reset"}
        return 404, {"success": False, "message": f"unknown action {action}"}

    async def commander() -> None:
        while True:
            cmd = await commands.get()
            try:
                status, body = await handle(cmd)
            except Exception as exc:  # the browser gets the cause
                log.exception("web command %s failed", cmd.get("action"))
                status, body = 500, {"success": False, "message": f"{type(exc).__name__}: {exc}"}
            # Publish first, so that what the reply changed is visible to
            # the next read of /stats/requests.
            publish()
            web.reply(cmd["id"], status, json.dumps(body))

    async def autostart() -> None:
        if isinstance(backend, MasterBackend):
            while backend.cluster()["live_workers"] < opts.expect_workers:
                await asyncio.sleep(0.1)
        try:
            start(
                SwarmRequest(opts.users, opts.spawn_rate, None, opts.run_time_s, None)
            )
        except AiotestError as exc:
            log.error("--autostart: %s", exc)
            quit_event.set()

    background = [asyncio.create_task(publisher()), asyncio.create_task(commander())]
    if opts.autostart:
        background.append(asyncio.create_task(autostart()))
    out: TextIO = sys.stderr if opts.json else sys.stdout
    try:
        await quit_event.wait()
        log.info("Quitting")
        if backend.running:
            await backend.stop()
        publish()
    finally:
        for task in background:
            task.cancel()
        if autoquit is not None:
            autoquit.cancel()
        loop.remove_reader(web.wakeup_fd())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        web.stop()
    if not started:
        return 0
    snapshot = engine.snapshot(with_history=True)
    return finish_run(env, opts, checks, snapshot, task_runs=backend.task_runs(), out=out)

