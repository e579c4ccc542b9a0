"""Event listeners are user code: one that raises is a user error, the run
goes on and its reports are written; and the hooks fire where Locust's do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CountingServer, run_aiotest

pytestmark = pytest.mark.pythons

LISTENERS = """
from aiotest import AsyncHttpUser, constant, events, task

calls = {"request": 0, "user_error": 0, "stopping": 0}


@events.request.add_listener
def breaks_from_the_50th(**kwargs):
    calls["request"] += 1
    if calls["request"] >= 50:
        raise RuntimeError("listener broke")


@events.user_error.add_listener
def counted(exception, **kwargs):
    calls["user_error"] += 1


@events.test_stopping.add_listener
def stopping(environment, **kwargs):
    calls["stopping"] += 1


@events.quit.add_listener
def bye(exit_code, **kwargs):
    print(f"quit {exit_code} after {calls}")


class Visitor(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def visit(self):
        await self.session.get("/")
        if self.user_index == 0:
            raise ValueError("task broke")
"""


def test_a_raising_listener_is_a_user_error_and_the_run_goes_on(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("listeners.py", LISTENERS)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-r", "2", "-i", "200",
        "-H", http_server.url, "--csv", str(tmp_path / "r"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # user errors, as with --exit-code-on-error's default
    assert run.total["num_requests"] == 200 == http_server.total()
    errors = {e["message"]: e["count"] for e in run.json["stats"]["errors"]}  # type: ignore[index]
    assert errors["RuntimeError: listener broke"] == 200 - 49, errors
    task_errors = errors["ValueError: task broke"]
    assert task_errors > 0
    # user_error hears the task's errors, not the listener's; test_stopping
    # fired once; quit saw the exit code.
    assert f"'user_error': {task_errors}, 'stopping': 1}}" in run.stdout, run.stdout[-500:]
    assert "quit 1 after" in run.stdout
    assert (tmp_path / "r_stats.csv").exists() and (tmp_path / "r_failures.csv").exists()


CLUSTER_HOOKS = """
import json
from locust import HttpUser, task, constant, events
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

mine = {"requests": 0, "beats": 0, "starts": 0, "stops": 0}
seen = {"connects": 0, "beats_sent": 0, "reported": 0, "worker_beats": 0, "worker_starts": 0}


@events.init.add_listener
def _(environment, **kw):
    runner = environment.runner
    roles = [isinstance(runner, c) for c in (LocalRunner, MasterRunner, WorkerRunner)]
    assert roles.count(True) == 1, roles


@events.request.add_listener
def _(**kw):
    mine["requests"] += 1


@events.test_start.add_listener
def _(environment, **kw):
    mine["starts"] += 1


@events.test_stop.add_listener
def _(environment, **kw):
    mine["stops"] += 1


@events.heartbeat_received.add_listener
def _(client_id, timestamp, **kw):
    mine["beats"] += 1


@events.report_to_master.add_listener
def _(client_id, data, **kw):
    data["mine"] = dict(mine)
    mine["requests"] = 0


@events.worker_connect.add_listener
def _(client_id, **kw):
    seen["connects"] += 1


@events.heartbeat_sent.add_listener
def _(client_id, timestamp, **kw):
    seen["beats_sent"] += 1


@events.worker_report.add_listener
def _(client_id, data, **kw):
    seen["reported"] += data["mine"]["requests"]
    seen["worker_beats"] = max(seen["worker_beats"], data["mine"]["beats"])
    seen["worker_starts"] = max(seen["worker_starts"], data["mine"]["starts"])


@events.quitting.add_listener
def _(environment, **kw):
    if isinstance(environment.runner, MasterRunner):
        print("master saw", json.dumps({**seen, "total": environment.stats.total.num_requests}))


class Visitor(HttpUser):
    wait_time = constant(0.01)

    @task
    def visit(self):
        self.client.get("/")
"""


def test_cluster_hooks_fire_on_master_and_workers(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("hooks.py", CLUSTER_HOOKS)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "100", "-t", "4s", "--processes", "2",
        "--heartbeat-interval", "0.5", "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("master saw"))
    seen = json.loads(line.removeprefix("master saw "))
    total = seen["total"]
    assert total == http_server.total() > 0
    assert seen["connects"] == 2
    assert seen["beats_sent"] >= 4 and seen["worker_beats"] >= 2
    assert seen["worker_starts"] == 1
    # What the workers' listeners counted and sent equals what was recorded.
    assert seen["reported"] == total


WORKER_STOP = """
from locust import HttpUser, task, constant
from locust.runners import WorkerRunner


class Once(HttpUser):
    wait_time = constant(0.05)

    @task
    def visit(self):
        self.client.get("/")
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            runner.stop()  # this worker's users stop; the master's run goes on
"""


def test_runner_stop_on_a_worker_stops_its_users(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("stop.py", WORKER_STOP)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "100", "-t", "30s", "--processes", "2",
        "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    # Both workers stopped their users: the run ended there, not at 30 s.
    assert "Stopped: all users stopped" in run.stderr
    # Each worker stopped at its first request (one user may not have started yet).
    assert 2 <= run.total["num_requests"] == http_server.total() <= 4


BROKEN_SHAPE = """
from aiotest import AsyncHttpUser, LoadTestShape, constant, events, task


@events.test_start.add_listener
def start_breaks(environment, **kwargs):
    raise RuntimeError("test_start listener broke")


@events.test_stop.add_listener
def stop_breaks(environment, **kwargs):
    raise RuntimeError("test_stop listener broke")


class Breaking(LoadTestShape):
    def tick(self):
        if self.get_run_time() < 1.5:
            return (2, 10)
        BREAK


class Visitor(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def visit(self):
        await self.session.get("/")
"""


@pytest.mark.parametrize(
    ("broken", "logged"),
    [
        ('raise ValueError("tick broke")', "ValueError: tick broke"),
        ('return ("many", -1)', "'many' users"),
    ],
)
def test_raising_start_and_stop_listeners_and_a_broken_shape_end_cleanly(
    http_server: CountingServer, write_file, tmp_path: Path, broken: str, logged: str
) -> None:
    """test_start and test_stop listeners raise, and the load shape's
    tick() raises or returns garbage after 1.5 s: each is logged, the run
    ends there (not at the 50 s bound) and its reports hold what the target
    served."""
    path = write_file("broken.py", BROKEN_SHAPE.replace("BREAK", broken))
    run = run_aiotest(
        "-f", str(path), "--headless", "-t", "50s", "-H", http_server.url,
        "--csv", str(tmp_path / "r"), cwd=tmp_path, timeout_s=40,
    )  # fmt: skip
    assert run.returncode != 0, run.stderr
    assert "RuntimeError: test_start listener broke" in run.stderr
    assert "RuntimeError: test_stop listener broke" in run.stderr
    assert logged in run.stderr, run.stderr
    assert "Stopped: an error in the load shape" in run.stderr
    assert run.total["num_requests"] == http_server.total() > 0
    assert (tmp_path / "r_stats.csv").exists()
