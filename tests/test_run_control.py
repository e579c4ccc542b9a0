"""Stopping: run time, Ctrl-C, stop timeout, and requests in flight at stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AIOTEST, DemoTarget, run_aiotest
from webui import HELLO

# These also run on every other supported Python (make test-pythons).
pytestmark = pytest.mark.pythons

SLOW_USER = """
from aiotest import AsyncHttpUser, task, constant

class Slow(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def slow(self):
        await self.session.get("/slow?ms=1500", name="plain", catch_response=CATCH)
        await self.session.get("/hello")
"""


def test_requests_in_flight_at_stop_are_recorded(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    for catch in (False, True):
        demo_target.reset()
        path = write_file("slow.py", SLOW_USER.replace("CATCH", str(catch)))
        run = run_aiotest(
            "-f",
            str(path),
            "--headless",
            "-u",
            "3",
            "-r",
            "100",
            "-t",
            "0.5s",
            "-H",
            demo_target.url,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        seen = demo_target.counts()
        # Users were cancelled mid-request; the requests still count.
        assert seen["requests"] == {"GET /slow": 3}
        assert run.entry("GET", "plain")["num_requests"] == 3, catch


def test_stop_timeout_lets_tasks_finish(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file("slow.py", SLOW_USER.replace("CATCH", "False"))
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "2",
        "-r",
        "100",
        "-t",
        "0.5s",
        "-s",
        "5s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    # With a stop timeout, each user finished its task: the /hello after the
    # slow request ran too, and no user started another task.
    assert demo_target.counts()["requests"] == {"GET /slow": 2, "GET /hello": 2}
    assert run.total["num_requests"] == 4


WAITING_USER = """
import asyncio, os
from aiotest import AsyncHttpUser, task, constant

class Waiting(AsyncHttpUser):
    wait_time = constant(60)

    @task
    async def once(self):
        await self.session.get("/hello")

    async def on_stop(self):
        task = asyncio.current_task()
        with open(os.environ["STOPPED_FILE"], "a") as f:
            f.write(f"{task.cancelling()}\\n")
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is new in 3.11")
def test_users_in_their_wait_time_stop_without_being_cancelled(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    # Without a stop timeout, a user waiting out its wait time ends the wait
    # and returns: a cancellation would leave each task its exception and
    # traceback until the run ends (~1 KB a user).
    path = write_file("waiting.py", WAITING_USER)
    stopped = tmp_path / "stopped.txt"
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "3", "-r", "100", "-t", "0.5s",
        "-H", demo_target.url, cwd=tmp_path, env={"STOPPED_FILE": str(stopped)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == 3
    assert stopped.read_text().split() == ["0", "0", "0"]


def test_ctrl_c_stops_gracefully_and_reports(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file("forever.py", HELLO)
    result = tmp_path / "result.json"
    proc = subprocess.Popen(
        [
            AIOTEST,
            "-f",
            str(path),
            "--headless",
            "-u",
            "4",
            "-r",
            "100",
            "-H",
            demo_target.url,
            "--json-file",
            str(result),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if "All users spawned" in line:
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Final statistics" in stdout
    data = json.loads(result.read_text())
    assert data["stats"]["total"]["num_requests"] == demo_target.counts()["total"] > 0


STUCK = """
import asyncio
from aiotest import AsyncHttpUser, task, constant

class Stuck(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def hello(self):
        await self.session.get("/hello")
        await asyncio.sleep(40)  # in a task at stop, with a long stop timeout
"""


def _started(proc: subprocess.Popen[str]) -> None:
    for line in proc.stderr:  # type: ignore[union-attr]
        if "All users spawned" in line:
            return
    raise AssertionError("the run never spawned its users")


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_with_the_reports(
    demo_target: DemoTarget, write_file, tmp_path: Path, first: signal.Signals
) -> None:
    """Users stuck 40 s in a task, a stop timeout of 60 s: the first signal
    (Ctrl-C, or `docker stop`'s SIGTERM) waits for them, the second stops at
    once, and the reports hold every request sent."""
    path = write_file("stuck.py", STUCK)
    result = tmp_path / "result.json"
    proc = subprocess.Popen(
        [AIOTEST, "-f", str(path), "--headless", "-u", "3", "-r", "100", "-H", demo_target.url,
         "--stop-timeout", "60", "--json-file", str(result), "--csv", str(tmp_path / "s")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _started(proc)
        deadline = time.monotonic() + 20
        while demo_target.counts()["total"] < 3:  # each user in its 40 s sleep
            assert time.monotonic() < deadline, "the users never sent their requests"
            time.sleep(0.02)
        proc.send_signal(first)
        for line in proc.stderr:  # type: ignore[union-attr]
            if "Ctrl-C again stops at once" in line:
                break
        else:
            raise AssertionError("the first signal did not start a graceful stop")
        proc.send_signal(signal.SIGINT)
        # Without the second signal's hurry this would take 40 s and more.
        stdout, stderr = proc.communicate(timeout=25)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Final statistics" in stdout
    data = json.loads(result.read_text())
    assert data["stats"]["total"]["num_requests"] == demo_target.counts()["total"] == 3
    assert (tmp_path / "s_stats.csv").exists()


def test_sigkill_keeps_the_history_to_the_last_second(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    """`_stats_history.csv` grows each second during the run, so a run
    killed outright (SIGKILL, the OOM killer) keeps it."""
    path = write_file("hello.py", HELLO)
    history = tmp_path / "s_stats_history.csv"
    proc = subprocess.Popen(
        [AIOTEST, "-f", str(path), "--headless", "-u", "2", "-r", "100", "-H", demo_target.url,
         "-t", "50s", "--csv", str(tmp_path / "s")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not history.exists() or history.read_text().count("Aggregated") < 3:
            assert time.monotonic() < deadline, "no history rows during the run"
            time.sleep(0.1)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proc.kill()
    lines = history.read_text().splitlines()
    assert lines[0].startswith("Timestamp,User Count,Type,Name,Requests/s")
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) >= 3 and all(r[3] == "Aggregated" for r in rows)
    total_requests = lines[0].split(",").index("Total Request Count")
    assert int(rows[-1][total_requests]) > 0


BROKEN_STOP = (
    """
from aiotest import runner

async def broken(self):
    raise RuntimeError("a bug in the stop path")

runner.LocalRunner.stop_users = broken  # stands for a bug of aiotest's own
"""
    + HELLO
)


def test_a_bug_in_aiotest_itself_still_writes_the_reports(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    """Stopping the users raises (a stand-in for a bug of ours): the
    traceback is logged, the exit code is 1, and the reports hold what was
    measured."""
    path = write_file("broken.py", BROKEN_STOP)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-r", "100", "-t", "2s", "-H", demo_target.url,
        "--csv", str(tmp_path / "s"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "aiotest failed during the run" in run.stderr
    assert "RuntimeError: a bug in the stop path" in run.stderr
    assert 0 < run.total["num_requests"] <= demo_target.counts()["total"]
    assert (tmp_path / "s_stats.csv").exists() and (tmp_path / "s_stats_history.csv").exists()
