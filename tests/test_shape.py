"""Load shapes and --test-plan: the user count follows the stages, locally
and over workers, and the run ends when the shape does."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import CountingServer, run_aiotest, spread_over

USER = """
from aiotest import AsyncHttpUser, task, constant

class Stepper(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def ping(self):
        await self.session.get("/")
"""

SHAPED = (
    USER
    + """
from aiotest import LoadTestShape

class TwoSteps(LoadTestShape):
    def tick(self):
        t = self.get_run_time()
        if t < 2:
            return (2, 100)
        if t < 4:
            return (6, 100)
        return None
"""
)


def _user_counts(history: Path) -> list[int]:
    with history.open(newline="") as fh:
        return [int(r["User Count"]) for r in csv.DictReader(fh) if r["Name"] == "Aggregated"]


def _check_steps(counts: list[int]) -> None:
    # One history row per second: 2 users for the first stage, 6 for the
    # second (the step lands within a tick), then the run ends.
    assert counts[0] == 2, counts
    assert 6 in counts[2:4], counts
    assert max(counts) == 6, counts
    assert 4 <= len(counts) <= 7, counts


@pytest.mark.parametrize("processes", [0, 2])
def test_shape_class_is_followed(
    http_server: CountingServer, write_file, tmp_path: Path, processes: int
) -> None:
    path = write_file("shaped.py", SHAPED)
    run = run_aiotest(
        "-f", str(path), *spread_over(processes), "--headless", "-t", "30s",
        "-H", http_server.url, "--csv", str(tmp_path / "s"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "load shape" in run.stderr
    _check_steps(_user_counts(tmp_path / "s_stats_history.csv"))
    assert run.total["num_requests"] == http_server.total() > 20


def test_test_plan_flag(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    path = write_file("plain.py", USER)
    run = run_aiotest(
        "-f", str(path), "--headless", "-r", "100", "--test-plan", "2:2s,6:2s",
        "-H", http_server.url, "--csv", str(tmp_path / "p"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    _check_steps(_user_counts(tmp_path / "p_stats_history.csv"))
    bad = run_aiotest("-f", str(path), "--test-plan", "6", "-H", http_server.url, cwd=tmp_path)
    assert bad.returncode == 2 and "USERS[@RATE]:DURATION" in bad.stderr


TWO_CLASSES = """
from aiotest import AsyncHttpUser, LoadTestShape, task, constant

class Reader(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def read(self):
        await self.session.get("/read")

class Writer(Reader):
    @task
    async def read(self):
        await self.session.get("/write")

class WritersLater(LoadTestShape):
    def tick(self):
        t = self.get_run_time()
        if t < 2:
            return (4, 100, [Reader])
        if t < 4:
            return (4, 100, [Writer])
        return None
"""


def test_shape_steps_can_pick_user_classes(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("two.py", TWO_CLASSES)
    run = run_aiotest("-f", str(path), "--headless", "-H", http_server.url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with http_server.lock:
        counts = dict(http_server.counts)
    # Both stages ran, each with its own class only (Writer replaced Reader).
    assert "All users spawned: Reader: 4, Writer: 0" in run.stderr
    assert "All users spawned: Reader: 0, Writer: 4" in run.stderr
    assert set(counts) == {"GET /read", "GET /write"}
    assert counts["GET /read"] > 20 and counts["GET /write"] > 20
