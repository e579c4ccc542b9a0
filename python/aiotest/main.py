"""The ``aiotest`` command: parse options (in Rust), load the aiotestfile,
run the test, print and write the results, and exit with Locust's codes:
0 clean, 1 failures or user errors (``--exit-code-on-error``), 2 bad usage."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TextIO

from . import _core
from .config import config_file_values
from .exceptions import AiotestError, ConfigError

log = logging.getLogger("aiotest.main")

#: Seconds between live statistics tables, as in Locust's console.
LIVE_STATS_INTERVAL_S = 2.0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aiotest`` script; exits the process."""
    sys.exit(run_cli(list(sys.argv if argv is None else argv)))


def run_cli(argv: list[str]) -> int:
    """Runs the command line ``argv`` (program name first); returns the exit code."""
    try:
        kind, payload, code = _core.parse_options(argv, config_file_values())
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    if kind == "exit":
        print(payload, end="" if payload.endswith("\n") else "\n")
        return code
    parsed = json.loads(payload)
    opts = SimpleNamespace(**parsed["run"])
    _setup_logging(opts.loglevel, opts.logfile)
    command = parsed.get("command")
    if command and command["name"] == "demo-target":
        return _serve_demo_target(command["bind"], command["port"])
    try:
        env = _prepare(opts)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if env is None:
        return 0
    if not opts.headless:
        log.warning(
            "the web UI is not available yet: running headless (pass --headless to silence this)"
        )
    return asyncio.run(run_headless(env, opts))


def _prepare(opts: SimpleNamespace):  # type: ignore[no-untyped-def]
    from .env import Environment
    from .events import events
    from .loader import load_aiotestfile, select_user_classes, user_classes_in

    module = load_aiotestfile(opts.aiotestfile)
    classes = select_user_classes(user_classes_in(module), opts.user_classes, opts.aiotestfile)
    if opts.list:
        for cls in classes:
            print(cls.__name__)
        return None
    env = Environment(
        user_classes=classes,
        host=opts.host,
        tags=opts.tags,
        exclude_tags=opts.exclude_tags,
        stop_timeout_s=opts.stop_timeout_s,
        parsed_options=opts,
        events=events,
    )
    events.init.fire(environment=env)
    return env


async def run_headless(env, opts: SimpleNamespace) -> int:  # type: ignore[no-untyped-def]
    """Runs one test to its end (run time, Ctrl-C or SIGTERM), then prints
    the final tables and writes the JSON. Returns the exit code."""
    runner = env.create_local_runner()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out: TextIO = sys.stderr if opts.json else sys.stdout
    env.events.test_start.fire(environment=env)
    log.info("Starting %d users at %g users/s against %s", opts.users, opts.spawn_rate, _hosts(env))
    spawn = asyncio.create_task(runner.start(opts.users, opts.spawn_rate))
    spawn.add_done_callback(lambda t: t.cancelled() or t.exception() is None or stop.set())
    printer = None if opts.only_summary else asyncio.create_task(_print_live(env, out))
    try:
        try:
            await asyncio.wait_for(stop.wait(), timeout=opts.run_time_s)
            log.info("Stopping: interrupted")
        except asyncio.TimeoutError:
            log.info("Run time limit reached (%gs): stopping", opts.run_time_s)
    finally:
        spawn.cancel()
        await runner.stop()
        if printer is not None:
            printer.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        env.events.test_stop.fire(environment=env)
        snapshot = env.engine.snapshot()
        _print_final(snapshot, out)
        _write_json(env, snapshot, opts)
        env.events.quitting.fire(environment=env)
    if not spawn.cancelled() and spawn.done() and spawn.exception() is not None:
        exc = spawn.exception()
        print(f"error: spawning users failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, AiotestError) else 1
    if snapshot.num_failures or snapshot.num_errors:
        return opts.exit_code_on_error
    return 0


async def _print_live(env, out: TextIO) -> None:  # type: ignore[no-untyped-def]
    runner = env.runner
    while True:
        await asyncio.sleep(LIVE_STATS_INTERVAL_S)
        snap = env.engine.snapshot()
        print(f"{runner.state}: {runner.user_count} users ({runner._mix_text()})", file=out)
        print(snap.stats_table(current=True), file=out, flush=True)


def _print_final(snapshot: _core.StatsSnapshot, out: TextIO) -> None:
    print("\nFinal statistics (whole run)", file=out)
    print(snapshot.stats_table(current=False), file=out)
    print(snapshot.percentile_table(), file=out)
    tail = snapshot.failures_and_errors()
    if tail:
        print(tail, file=out, end="")
    out.flush()


def _write_json(env, snapshot: _core.StatsSnapshot, opts: SimpleNamespace) -> None:  # type: ignore[no-untyped-def]
    if not (opts.json or opts.json_file):
        return
    doc = {
        "aiotest_version": _core.__version__,
        "host": _hosts(env),
        "user_classes": [c.__name__ for c in env.user_classes],
        "user_count": opts.users,
        "task_runs": env.runner.task_runs,
        "stats": json.loads(snapshot.to_json()),
    }
    text = json.dumps(doc, indent=2)
    if opts.json:
        print(text, flush=True)
    if opts.json_file:
        with open(opts.json_file, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def _hosts(env) -> str:  # type: ignore[no-untyped-def]
    return ", ".join(sorted({str(c.host) for c in env.user_classes}))


def _serve_demo_target(bind: str, port: int) -> int:
    try:
        target = _core.DemoTarget(bind=bind, port=port)
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
