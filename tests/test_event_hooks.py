"""Event listeners are user code: one that raises is a user error, the run
goes on and its reports are written; and the hooks fire where Locust's do."""

from __future__ import annotations

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
