"""The ``aiotest`` command: parse the options once (in Rust), load the
aiotestfile, pick where the users run (this process, a master's workers,
local worker processes) and how the run is steered (headless or the web
UI), and exit with Locust's codes: 0 clean, 1 failures or user errors
(``--exit-code-on-error``), 2 bad usage, 3 a failed check."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Sequence
from typing import Any

from . import _bridge, cluster, compat, gevent_api, health, lifecycle, web, worker
from ._core import DemoTarget, OtlpExporter, parse_options
from .config import config_file_values
from .env import Environment
from .events import events
from .exceptions import AiotestError, ConfigError
from .loader import (
    aiotestfile_paths,
    load_aiotestfile,
    load_aiotestfiles,
    select_user_classes,
    shape_classes_in,
    user_classes_in,
)
from .options import OptionParser, RunOptions, locust_variables, resolve_aiotestfile
from .report import check_output_paths, collect_checks
from .shape import LoadTestShape, shape_from_options
from .user import User

log = logging.getLogger("aiotest.main")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aiotest`` script; exits the process (after
    firing ``quit`` with the exit code)."""
    code = run_cli(list(sys.argv if argv is None else argv))
    events.quit.fire(exit_code=code)
    sys.exit(code)


def run_cli(argv: list[str]) -> int:
    """Runs the command line ``argv`` (program name first); returns the exit code."""
    try:
        parsed = _parse(argv)
    except ConfigError as exc:
        text = str(exc)
        print(text if text.startswith("error") else f"error: {text}", file=sys.stderr)
        return exc.exit_code
    if isinstance(parsed, int):
        return parsed
    opts, command = parsed
    _setup_logging(opts.loglevel, opts.logfile)
    if command and command["name"] == "demo-target":
        return _serve_demo_target(command["bind"], command["port"])
    try:
        _bridge.spin_policy()  # a bad AIOTEST_SPIN is bad usage, before any loop
        checks = collect_checks(opts)
        problems = check_output_paths(opts)
        if problems:
            raise ConfigError(problems[0])
        classes = _load_classes(opts)
        if opts.list:
            for cls in classes:
                print(cls.__name__)
            return 0
        env = None if opts.worker else _environment(opts, classes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if opts.worker:
        return _bridge.run(_in_loop(_run_workers(classes, opts)))
    assert env is not None
    if opts.processes:
        return _bridge.run(_in_loop(_run_with_local_workers(env, opts, checks)))
    if opts.master:
        return _bridge.run(_in_loop(_run_master(env, opts, checks)))
    return _bridge.run(_in_loop(_run_local(env, opts, checks)))


async def _in_loop(run: Awaitable[int]) -> int:
    """Runs ``run`` once the loop is up, with the greenlets the aiotestfile
    spawned before (``gevent.spawn`` in an ``init`` listener) started."""
    gevent_api.start_pending()
    return await run


def _parse(argv: list[str]) -> tuple[RunOptions, dict[str, Any] | None] | int:
    """Parses the command line once, after loading the aiotestfile it names
    so that its ``events.init_command_line_parser`` listeners can add
    options (Locust does the same). Returns the options and the command,
    or the exit code after printing ``--help`` or ``--version``.

    Raises:
        ConfigError: Bad usage, or an aiotestfile that fails to import.
    """
    # Locustfiles import `locust`: they get aiotest's implementation; and
    # LOCUST_* variables count as their AIOTEST_* twins.
    compat.install()
    os.environ.update(locust_variables(os.environ))
    file_values = config_file_values(args=argv[1:])
    parser = _custom_option_parser(argv, file_values)
    kind, payload, code = parse_options(argv, file_values, parser.for_core())
    if kind == "exit":
        print(payload, end="" if payload.endswith("\n") else "\n")
        return code
    parsed = payload
    run = parsed["run"]
    opts = RunOptions.from_parsed(run, parser.values(run.pop("custom_options")))
    opts = opts.replace(custom_option_specs=tuple(parser.options))
    return opts, parsed.get("command")


def _custom_option_parser(
    argv: list[str], file_values: list[tuple[str, str, list[str]]]
) -> OptionParser:
    """The aiotestfile's own options. A file that is missing is left for
    the run to report; one that fails to import is an error, but for
    ``--help`` and ``--version``.

    Raises:
        ConfigError: The aiotestfile fails to import.
    """
    parser = OptionParser()
    args = argv[1:]
    if args[:1] == ["demo-target"]:
        return parser
    paths = aiotestfile_paths(resolve_aiotestfile(args, os.environ, file_values))
    if not all(os.path.isfile(p) for p in paths):
        return parser
    try:
        for path in paths:
            load_aiotestfile(path)
    except AiotestError:
        if any(a in ("-h", "--help", "-V", "--version") for a in args):
            return parser
        raise
    events.init_command_line_parser.fire(parser=parser)
    return parser


def _load_classes(opts: RunOptions) -> list[type[User]]:
    found: dict[type[User], None] = {}
    for module in load_aiotestfiles(opts.aiotestfile):
        found.update(dict.fromkeys(user_classes_in(module)))
    return select_user_classes(list(found), list(opts.user_classes), opts.aiotestfile)


def _environment(opts: RunOptions, classes: list[type[User]]) -> Environment:
    """The run object of a local run or a master, with its load shape;
    ``events.init`` has fired."""
    env = Environment(
        user_classes=classes,
        host=opts.host,
        tags=opts.tags,
        exclude_tags=opts.exclude_tags,
        stop_timeout_s=opts.stop_timeout_s,
        parsed_options=opts,
        events=events,
        # The web UI's start form may supply the host.
        require_host=opts.headless or opts.autostart,
    )
    shapes: dict[type[LoadTestShape], None] = {}
    for module in load_aiotestfiles(opts.aiotestfile):
        shapes.update(dict.fromkeys(shape_classes_in(module)))
    env.shape = shape_from_options(opts, list(shapes))
    # `init` listeners see the runner, as in Locust.
    if opts.master or opts.processes:
        env.runner = cluster.MasterRunner(env)
    else:
        env.create_local_runner()
    if env.shape is not None:
        env.shape.runner = env.runner
    events.init.fire(environment=env)
    return env


async def _steer(
    env: Environment, opts: RunOptions, checks: list[str], backend: lifecycle.Backend
) -> int:
    try:
        exporter = health.open_exporter(backend.engine, opts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if not opts.headless:
            return await web.serve(env, opts, checks, backend, exporter)
        return await _run_headless(env, opts, checks, backend, exporter)
    finally:
        if exporter is not None:
            exporter.stop()  # the final figures


async def _run_headless(
    env: Environment,
    opts: RunOptions,
    checks: list[str],
    backend: lifecycle.Backend,
    exporter: OtlpExporter | None,
) -> int:
    """A headless run, serving its health endpoints and ``/metrics`` alone
    on the web port."""
    try:
        endpoints = health.open_endpoints(
            backend.engine, opts, required=opts.web_port_given, metrics=True
        )
    except OSError as exc:
        print(f"error: the health endpoints: {exc}", file=sys.stderr)
        return 2
    try:
        status = backend.metrics_status
        async with health.following(endpoints, backend.readiness, status, exporter):
            return await lifecycle.run_headless(env, opts, checks, backend)
    finally:
        if endpoints is not None:
            endpoints.stop()


async def _run_local(env: Environment, opts: RunOptions, checks: list[str]) -> int:
    return await _steer(env, opts, checks, lifecycle.LocalBackend(env))


async def _run_master(env: Environment, opts: RunOptions, checks: list[str]) -> int:
    try:
        backend = cluster.ClusterBackend.open(env, opts)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return await _steer(env, opts, checks, backend)
    finally:
        backend.close()


async def _run_with_local_workers(env: Environment, opts: RunOptions, checks: list[str]) -> int:
    """``--processes N`` without ``--worker``: N local workers, and this
    process their master."""
    async with cluster.LocalWorkers(opts) as workers:
        return await workers.supervise(_run_master(env, workers.master_options, checks))


async def _run_workers(classes: list[type[User]], opts: RunOptions) -> int:
    """``--worker``: this process is a worker, or with ``--processes N``
    the parent of N workers."""
    if opts.processes:
        async with cluster.LocalWorkers(opts) as workers:
            return await workers.wait()
    return await worker.WorkerProcess(classes, opts).serve()


def _serve_demo_target(bind: str, port: int) -> int:
    try:
        target = DemoTarget(bind=bind, port=port)
    except OSError as exc:
        print(f"error: cannot listen on {bind}:{port}: {exc}: pick another --port", file=sys.stderr)
        return 2
    print(f"aiotest demo target listening on {target.url}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    target.stop()
    return 0


def _setup_logging(level: str, logfile: str | None) -> None:
    fmt = logging.Formatter("[%(asctime)s] %(levelname)s/%(name)s: %(message)s")
    root = logging.getLogger("aiotest")
    root.setLevel(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.handlers[:] = [handler]
    if logfile:
        file_handler = logging.FileHandler(logfile)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
