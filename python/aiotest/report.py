"""The end of a run: the final tables, the report files (CSV, HTML, JSON)
and the checks, all from one statistics snapshot, whoever ran the test
(local mode, the master, the web UI)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ._core import Engine, StatsSnapshot, __version__, validate_checks
from .events import Events
from .options import RunOptions

log = logging.getLogger("aiotest.report")

#: Exit code when a --check fails, as locust-plugins uses.
CHECK_FAILED_EXIT_CODE = 3


@dataclass(frozen=True)
class RunFacts:
    """What the reports say about a run beside its statistics.

    Attributes:
        host: The target(s), comma-separated.
        script: The aiotestfile's path.
        user_classes: Names of the classes that ran.
        peak_users: The most users at once (the HTML report's heading).
        task_runs: Task executions in the run.
    """

    host: str
    script: str
    user_classes: tuple[str, ...]
    peak_users: int
    task_runs: int

    def meta(self) -> dict[str, Any]:
        """The reports' heading (``StatsSnapshot.html_report`` and
        ``json_report``, the web UI's downloads): host, script,
        user_classes, peak_users, version."""
        return {
            "host": self.host,
            "script": self.script,
            "user_classes": list(self.user_classes),
            "peak_users": self.peak_users,
            "version": __version__,
        }


def collect_checks(opts: RunOptions) -> list[str]:
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
    validate_checks(checks)
    return checks


def check_output_paths(opts: RunOptions) -> list[str]:
    """Why a report asked for could not be written, checked before the run
    rather than after it: one sentence with the fix per bad path."""
    problems = []
    for flag, path in (
        ("--csv", opts.csv_prefix),
        ("--html", opts.html_file),
        ("--json-file", opts.json_file),
    ):
        if path:
            folder = os.path.dirname(path) or "."
            if not os.path.isdir(folder):
                problems.append(
                    f"{flag} {path}: folder '{folder}' does not exist: create it or pick another path"
                )
    return problems


def finish_run(
    events: Events,
    environment: Any,
    opts: RunOptions,
    checks: Sequence[str],
    snapshot: StatsSnapshot,
    facts: RunFacts,
    *,
    out: TextIO,
) -> int:
    """Prints the final tables, writes every report, fires ``quitting`` and
    evaluates the checks. Returns the exit code: ``process_exit_code`` when
    a listener set it on the environment (Locust's way), else 3 for a
    failed check, else ``--exit-code-on-error`` for failures or user
    errors, else 0."""
    print_final(snapshot, out)
    if snapshot.folded_requests:
        print(
            f"warning: {snapshot.folded_requests} requests had names past the first "
            f"{snapshot.max_names} distinct ones and count in the '(other names)' row: "
            'name requests whose URLs hold ids, e.g. name="/items?id=[id]", '
            "or raise --max-names",
            file=sys.stderr,
        )
    write_reports(snapshot, opts, facts)
    events.quitting.fire(environment=environment)
    code = 0
    if snapshot.num_failures or snapshot.num_errors:
        code = opts.exit_code_on_error
    if checks:
        table, results = snapshot.evaluate_checks(list(checks))
        print(table, file=out, flush=True)
        if not all(passed for _, passed, _ in results):
            code = CHECK_FAILED_EXIT_CODE
    chosen = getattr(environment, "process_exit_code", None)
    return chosen if isinstance(chosen, int) else code


def console(opts: RunOptions) -> TextIO:
    """Where tables go: stdout, or stderr when ``--json`` owns stdout."""
    return sys.stderr if opts.json else sys.stdout


def print_final(snapshot: StatsSnapshot, out: TextIO) -> None:
    """The whole run's request, percentile, failure and error tables."""
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


def write_reports(snapshot: StatsSnapshot, opts: RunOptions, facts: RunFacts) -> None:
    """Writes every report asked for, each atomically (a temporary file,
    then a rename); one that cannot be written is logged and the others are
    still written. ``--json`` prints the JSON document to stdout."""
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
        files.append((opts.html_file, snapshot.html_report(facts.meta())))
    if opts.json or opts.json_file:
        text = snapshot.json_report(facts.meta(), facts.task_runs)
        if opts.json:
            print(text, flush=True)
        if opts.json_file:
            files.append((opts.json_file, text + "\n"))
    for path, text in files:
        try:
            write_atomically(path, text)
        except OSError as exc:
            log.error("could not write %s: %s", path, exc)


class HistoryFile:
    """``PREFIX_stats_history.csv`` written as the run goes: each stats
    interval appends its rows, so that a process killed outright (SIGKILL,
    the OOM killer) keeps its history up to its last second, as Locust's
    does. The final reports rewrite it whole."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self._failed = False

    def append(self, engine: Engine) -> None:
        """Appends the history rows made since the last call (the first
        call starts the file afresh, with its header)."""
        text, rows = engine.history_csv_since(self.rows)
        if rows == self.rows and self.rows:
            return
        try:
            with open(self.path, "a" if self.rows else "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            if not self._failed:  # a full disk says so once
                log.error("could not write %s: %s", self.path, exc)
            self._failed = True
            return
        self.rows = rows


def write_atomically(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` so that a reader sees the old file or the
    whole new one, never a part.

    Raises:
        OSError: The folder is not writable, or the disk is full.
    """
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
