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
from typing import Any, TextIO

from . import _bridge, _core
from .config import config_file_values
from .exceptions import AiotestError, ConfigError

log = logging.getLogger("aiotest.main")

#: Exit code when a --check fails, as locust-plugins uses.
CHECK_FAILED_EXIT_CODE = 3


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aiotest`` script; exits the process."""
    sys.exit(run_cli(list(sys.argv if argv is None else argv)))


def run_cli(argv: list[str]) -> int:
    """Runs the command line ``argv`` (program name first); returns the exit code."""
    try:
        file_values = config_file_values()
        parser = _custom_option_parser(argv, file_values)
        kind, payload, code = _core.parse_options(argv, file_values, parser.for_core())
        if kind == "exit":
            print(payload, end="" if payload.endswith("\n") else "\n")
            return code
        parsed = json.loads(payload)
        opts = SimpleNamespace(**parsed["run"])
        opts.custom_options = parser.values(opts.custom_options)
        vars(opts).update(opts.custom_options)
    except ConfigError as exc:
        text = str(exc)
        print(text if text.startswith("error") else f"error: {text}", file=sys.stderr)
        return exc.exit_code
    _setup_logging(opts.loglevel, opts.logfile)
    command = parsed.get("command")
    if command and command["name"] == "demo-target":
        return _serve_demo_target(command["bind"], command["port"])
    try:
        checks = collect_checks(opts)
        _check_output_paths(opts)
        if opts.worker:
            classes, env = _load_classes(opts), None
        else:
            env = _prepare(opts)
            if env is None:
                return 0
            classes = env.user_classes
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if opts.processes or opts.worker or opts.master:
        from . import cluster

        if opts.processes:
            return _bridge.run(cluster.run_processes(env, classes, opts, checks))
        if opts.worker:
            return _bridge.run(cluster.run_worker(classes, opts))
        return _bridge.run(cluster.run_master(env, opts, checks))
    if not opts.headless:
        from .web import LocalBackend, serve

        return _bridge.run(serve(env, opts, checks, LocalBackend(env, opts)))
    return _bridge.run(run_headless(env, opts, checks))


def _custom_option_parser(argv: list[str], file_values: list[tuple[str, str, list[str]]]):  # type: ignore[no-untyped-def]
    """Loads the aiotestfile before the command line is parsed, so that its
    ``events.init_command_line_parser`` listeners can add options (Locust
    does the same). A file that is missing is left for the run to report;
    one that fails to import is an error, but for ``--help`` and
    ``--version``."""
    import os

    from .events import events
    from .loader import load_aiotestfile
    from .options import OptionParser

    parser = OptionParser()
    args = argv[1:]
    if args[:1] == ["demo-target"]:
        return parser
    path = os.environ.get("AIOTEST_AIOTESTFILE", "aiotestfile.py")
    for _, key, values in file_values:
        if key == "aiotestfile" and values:
            path = values[0]
    for i, arg in enumerate(args):
        if arg in ("-f", "--aiotestfile") and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--aiotestfile="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("-f") and len(arg) > 2:
            path = arg[2:]
    if not os.path.isfile(path):
        return parser
    try:
        load_aiotestfile(path)
    except AiotestError:
        if any(a in ("-h", "--help", "-V", "--version") for a in args):
            return parser
        raise
    events.init_command_line_parser.fire(parser=parser)
    return parser


def _load_classes(opts: SimpleNamespace):  # type: ignore[no-untyped-def]
    from .loader import load_aiotestfile, select_user_classes, user_classes_in

    module = load_aiotestfile(opts.aiotestfile)
    return select_user_classes(user_classes_in(module), opts.user_classes, opts.aiotestfile)


def _prepare(opts: SimpleNamespace):  # type: ignore[no-untyped-def]
    from .env import Environment
    from .events import events

    classes = _load_classes(opts)
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
        # The web UI's start form may supply the host.
        require_host=opts.headless or opts.autostart,
    )
    from .loader import load_aiotestfile, shape_classes_in
    from .shape import shape_from_options

    env.shape = shape_from_options(opts, shape_classes_in(load_aiotestfile(opts.aiotestfile)))
    events.init.fire(environment=env)
    return env


async def run_headless(env, opts: SimpleNamespace, checks: list[str]) -> int:  # type: ignore[no-untyped-def]
    """Runs one test to its end (run time, iterations, Ctrl-C or SIGTERM),
    then prints the final tables and writes every report. Returns the exit
    code: 3 for a failed check, else ``--exit-code-on-error`` for failures or
    user errors, else 0."""
    from .env import host_summary
    from .run import execute

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out: TextIO = sys.stderr if opts.json else sys.stdout
    if env.shape is not None:
        log.info(
            "Following the load shape %s against %s",
            type(env.shape).__name__,
            host_summary(env.user_classes),
        )
    elif opts.arrival_rate:
        log.info(
            "Starting %s iterations/s on a pool of %d users against %s",
            ", then ".join(f"{s['rate_per_s']:g}" for s in opts.arrival_rate),
            opts.users,
            host_summary(env.user_classes),
        )
    else:
        log.info(
            "Starting %d users at %g users/s against %s",
            opts.users,
            opts.spawn_rate,
            host_summary(env.user_classes),
        )

    def live() -> None:
        runner = env.runner
        print(f"{runner.state}: {runner.user_count} users ({runner._mix_text()})", file=out)
        print(env.engine.snapshot().stats_table(current=True), file=out, flush=True)

    try:
        outcome = await execute(
            env,
            users=opts.users,
            spawn_rate=opts.spawn_rate,
            run_time_s=opts.run_time_s,
            stop=stop,
            live=None if opts.only_summary else live,
            **run_options(env, opts),
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info(
        "Stopped: %s",
        {
            "run time": f"run time limit ({opts.run_time_s}s) reached",
            "iterations": f"{opts.iterations} iterations done",
            "shape": "the load shape ended",
            "arrival stages": "the last arrival-rate stage ended",
        }.get(outcome.reason, outcome.reason),
    )
    if outcome.spawn_error is not None:
        exc = outcome.spawn_error
        print(f"error: spawning users failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finish_run(env, opts, checks, outcome.snapshot, task_runs=env.runner.task_runs, out=out)
        return exc.exit_code if isinstance(exc, AiotestError) else 1
    return finish_run(env, opts, checks, outcome.snapshot, task_runs=env.runner.task_runs, out=out)


def finish_run(  # type: ignore[no-untyped-def]
    env,
    opts: SimpleNamespace,
    checks: list[str],
    snapshot: _core.StatsSnapshot,
    *,
    task_runs: int,
    out: TextIO,
) -> int:
    """Prints the final tables, writes every report and evaluates the checks,
    all from one snapshot (local mode and master alike). Returns the exit
    code: 3 for a failed check, else ``--exit-code-on-error`` for failures or
    user errors, else 0."""
    _print_final(snapshot, out)
    _write_reports(env, snapshot, opts, task_runs)
    env.events.quitting.fire(environment=env)
    if checks:
        table, results = snapshot.evaluate_checks(checks)
        print(table, file=out, flush=True)
        if not all(passed for _, passed, _ in results):
            return CHECK_FAILED_EXIT_CODE
    if snapshot.num_failures or snapshot.num_errors:
        return opts.exit_code_on_error
    return 0


def _print_final(snapshot: _core.StatsSnapshot, out: TextIO) -> None:
    print("\nFinal statistics (whole run)", file=out)
    print(snapshot.stats_table(current=False), file=out)
    print(snapshot.percentile_table(), file=out)
    corrected = snapshot.corrected_percentile_table()
    if corrected:
        print(corrected, file=out)
    tail = snapshot.failures_and_errors()
    if tail:
        print(tail, file=out, end="")
    out.flush()


def _write_reports(
    env, snapshot: _core.StatsSnapshot, opts: SimpleNamespace, task_runs: int
) -> None:  # type: ignore[no-untyped-def]
    """Writes every report asked for; one that cannot be written is logged
    and the others are still written."""
    from .env import host_summary

    files: list[tuple[str, str]] = []
    if opts.csv_prefix:
        p = opts.csv_prefix
        files += [
            (f"{p}_stats.csv", snapshot.csv_stats()),
            (f"{p}_stats_history.csv", snapshot.csv_history()),
            (f"{p}_failures.csv", snapshot.csv_failures()),
            (f"{p}_exceptions.csv", snapshot.csv_exceptions()),
        ]
    if opts.html_file:
        meta = {
            "host": host_summary(env.user_classes),
            "script": opts.aiotestfile,
            "user_classes": [c.__name__ for c in env.user_classes],
            "peak_users": opts.users,
            "version": _core.__version__,
        }
        files.append((opts.html_file, snapshot.html_report(json.dumps(meta))))
    if opts.json or opts.json_file:
        doc = {
            "aiotest_version": _core.__version__,
            "host": host_summary(env.user_classes),
            "user_classes": [c.__name__ for c in env.user_classes],
            "user_count": opts.users,
            "task_runs": task_runs,
            "stats": json.loads(snapshot.to_json()),
        }
        text = json.dumps(doc, indent=2)
        if opts.json:
            print(text, flush=True)
        if opts.json_file:
            files.append((opts.json_file, text + "\n"))
    for path, text in files:
        try:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            log.error("could not write %s: %s", path, exc)


def _check_output_paths(opts: SimpleNamespace) -> None:
    """Fails before the run, not after it, when a report cannot be written."""
    import os

    for flag, path in (
        ("--csv", opts.csv_prefix),
        ("--html", opts.html_file),
        ("--json-file", opts.json_file),
    ):
        if path:
            folder = os.path.dirname(path) or "."
            if not os.path.isdir(folder):
                raise ConfigError(
                    f"{flag} {path}: folder '{folder}' does not exist: create it or pick another path"
                )


def collect_checks(opts: SimpleNamespace) -> list[str]:
    """``--check`` values plus locust-plugins' ``--check-*`` flags as checks.

    Raises:
        ConfigError: A check that does not parse.
    """
    checks = list(opts.checks)
    if opts.check_fail_ratio is not None:
        checks.append(f"fail_ratio <= {opts.check_fail_ratio}")
    if opts.check_rps is not None:
        checks.append(f"rps >= {opts.check_rps}")
    if opts.check_avg_response_time is not None:
        checks.append(f"avg <= {opts.check_avg_response_time}ms")
    _core.validate_checks(checks)
    return checks


def run_options(env, opts: SimpleNamespace) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The :func:`aiotest.run.execute` arguments that come from the command
    line whoever starts the run (headless, or the web UI): iterations,
    stats reset, history detail, load shape and arrival-rate stages."""
    return {
        "iterations": opts.iterations,
        "reset_stats": opts.reset_stats,
        "full_history": opts.csv_full_history,
        "shape": env.shape,
        "arrival_stages": opts.arrival_rate,
    }


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
