"""Results of a run as Python objects: what :func:`aiotest.run` returns and
what the pytest fixture hands a test. Built from the final statistics
snapshot; times are µs, rates per second (see docs/json.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._core import StatsSnapshot


@dataclass(frozen=True)
class EntryStats:
    """One row of the statistics: a (method, name) pair, or Aggregated."""

    method: str
    name: str
    num_requests: int
    num_failures: int
    fail_ratio: float
    avg_response_time_us: float
    min_response_time_us: int
    max_response_time_us: int
    median_response_time_us: int
    avg_content_bytes: float
    rps: float
    fail_per_s: float
    #: ``{"50%": µs, ..., "100%": µs}``, Locust's columns.
    percentiles_us: dict[str, int]

    def percentile_ms(self, percent: float) -> float:
        """The response time at ``percent`` (one of 50, 66, 75, 80, 90, 95,
        98, 99, 99.9, 99.99, 100) in ms. Raises KeyError for others."""
        key = f"{percent:g}%"
        return self.percentiles_us[key] / 1000

    # Locust's names (``locust.stats.StatsEntry``), times in ms.
    @property
    def avg_response_time(self) -> float:
        return self.avg_response_time_us / 1000

    @property
    def min_response_time(self) -> float:
        return self.min_response_time_us / 1000

    @property
    def max_response_time(self) -> float:
        return self.max_response_time_us / 1000

    @property
    def median_response_time(self) -> float:
        return self.median_response_time_us / 1000

    @property
    def total_rps(self) -> float:
        return self.rps

    @property
    def total_fail_per_sec(self) -> float:
        return self.fail_per_s

    @property
    def avg_content_length(self) -> float:
        return self.avg_content_bytes

    def get_response_time_percentile(self, fraction: float) -> float:
        """Locust's call: the response time (ms) at ``fraction`` (0.95 for
        p95); the nearest reported percentile at or above it."""
        wanted = fraction * 100
        for key, us in sorted(self.percentiles_us.items(), key=lambda kv: float(kv[0].rstrip("%"))):
            if float(key.rstrip("%")) >= wanted - 1e-9:
                return us / 1000
        return self.max_response_time

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EntryStats:
        return cls(
            method=d["method"],
            name=d["name"],
            num_requests=d["num_requests"],
            num_failures=d["num_failures"],
            fail_ratio=d["fail_ratio"],
            avg_response_time_us=d["avg_response_time_us"],
            min_response_time_us=d["min_response_time_us"],
            max_response_time_us=d["max_response_time_us"],
            median_response_time_us=d["median_response_time_us"],
            avg_content_bytes=d["avg_content_bytes"],
            rps=d["rps"],
            fail_per_s=d["fail_per_s"],
            percentiles_us=dict(d["percentiles_us"]),
        )


@dataclass(frozen=True)
class CheckOutcome:
    check: str
    passed: bool
    actual: str


@dataclass(frozen=True)
class RunResult:
    """The final statistics of a run.

    Attributes:
        total: The Aggregated row.
        entries: One row per (method, name).
        failures: ``{"method", "name", "error", "occurrences", ...}`` dicts.
        errors: ``{"message", "traceback", "count", "nodes"}`` dicts.
        task_runs: Task executions finished.
        checks: Outcomes of the checks passed to :func:`aiotest.run`.
        raw: The whole snapshot as JSON data.
    """

    total: EntryStats
    entries: list[EntryStats]
    failures: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    task_runs: int
    checks: list[CheckOutcome] = field(default_factory=list)
    checks_table: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        """True when every check passed (and trivially with no checks)."""
        return all(c.passed for c in self.checks)

    def entry(self, method: str, name: str) -> EntryStats:
        """The row for (method, name). Raises KeyError naming what exists."""
        for e in self.entries:
            if e.method == method and e.name == name:
                return e
        known = ", ".join(f"{e.method} {e.name}" for e in self.entries)
        raise KeyError(f"no stats for {method} {name}; there are: {known}")

    @classmethod
    def from_snapshot(
        cls, snapshot: StatsSnapshot, *, task_runs: int, checks: Sequence[str] = ()
    ) -> RunResult:
        data = json.loads(snapshot.to_json())
        table, outcomes = snapshot.evaluate_checks(list(checks)) if checks else ("", [])
        return cls(
            total=EntryStats.from_json(data["total"]),
            entries=[EntryStats.from_json(e) for e in data["entries"]],
            failures=data["failures"],
            errors=data["errors"],
            task_runs=task_runs,
            checks=[CheckOutcome(*o) for o in outcomes],
            checks_table=table,
            raw=data,
        )


@dataclass(frozen=True)
class StatsView:
    """The statistics now, with Locust's names: ``environment.stats``
    (``total``, ``entries`` by ``(name, method)``, ``get(name, method)``,
    ``errors``). Read once, not live: read ``environment.stats`` again for
    fresher figures.
    """

    total: EntryStats
    entries: dict[tuple[str, str], EntryStats]
    errors: list[dict[str, Any]]

    @classmethod
    def from_snapshot(cls, snapshot: StatsSnapshot) -> StatsView:
        data = json.loads(snapshot.to_json())
        rows = [EntryStats.from_json(e) for e in data["entries"]]
        return cls(
            total=EntryStats.from_json(data["total"]),
            entries={(e.name, e.method): e for e in rows},
            errors=data["errors"],
        )

    def get(self, name: str, method: str) -> EntryStats | None:
        """The row of ``name`` and ``method`` (Locust's argument order), or None."""
        return self.entries.get((name, method))
