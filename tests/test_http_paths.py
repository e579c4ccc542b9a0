"""How requests travel: over each user's own keep-alive connections, or
through the proxy the environment names."""

from __future__ import annotations

from pathlib import Path

from conftest import CountingServer, free_port, run_aiotest

USER = """
from aiotest import AsyncHttpUser, task, constant

class Prober(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def probe(self):
        await self.session.get("/probe?n=1")
"""

TOGETHER = """
import asyncio

started = 0
all_started = None

async def _on_start(self):
    global started, all_started
    if all_started is None:
        all_started = asyncio.Event()
    started += 1
    if started == 3:
        all_started.set()
    await asyncio.wait_for(all_started.wait(), 10)

Prober.on_start = _on_start
"""


def test_each_user_keeps_one_connection(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    # Each user starts its tasks once all three have started, so that none
    # can run out of iterations before the last one sends a request.
    path = write_file("probe.py", USER + TOGETHER)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "3", "-r", "100", "-i", "90",
        "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == 90 == http_server.counts["GET /probe"]
    # Keep-alive, and no connection shared between users.
    assert http_server.connections == 3


def test_requests_go_through_the_http_proxy_of_the_environment(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    # Nothing listens on the host itself: only the proxy can answer.
    host = f"http://127.0.0.1:{free_port()}"
    path = write_file("probe.py", USER)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-r", "100", "-i", "20", "-H", host,
        cwd=tmp_path, env={"HTTP_PROXY": http_server.url, "NO_PROXY": ""},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == 20 and run.total["num_failures"] == 0
    # A proxy gets the absolute URL.
    assert http_server.counts[f"GET {host}/probe"] == 20


FREED = """
import gc, os
from aiotest import AsyncHttpUser, task, constant
from aiotest.http import Response

class Freed(AsyncHttpUser):
    wait_time = constant(0)

    async def on_start(self):
        gc.disable()  # only reference counts free what follows

    @task
    async def probe(self):
        await self.session.get("/probe")
        async with self.session.get("/probe", catch_response=True) as resp:
            resp.success()

    async def on_stop(self):
        alive = sum(1 for o in gc.get_objects() if type(o) is Response)
        gc.enable()
        with open(os.environ["ALIVE_FILE"], "w") as f:
            f.write(str(alive))
"""


def test_responses_are_freed_without_the_cycle_collector(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    # A response and its request context pointing at each other would stay
    # until the collector ran: with 40 iterations, up to 80 would be alive.
    path = write_file("freed.py", FREED)
    alive_file = tmp_path / "alive.txt"
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-r", "10", "-i", "40", "-H", http_server.url,
        cwd=tmp_path, env={"ALIVE_FILE": str(alive_file)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == 80 and run.total["num_failures"] == 0
    assert int(alive_file.read_text()) <= 1


SETTINGS = """
from aiotest import AsyncHttpUser, task, constant

class Settings(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def probe(self):
        # A plain get's spec is kept; what the session changes after it
        # must still reach the next one.
        await self.session.get("/plain")
        self.session.headers["X-Token"] = "t1"
        await self.session.get("/plain")
        self.session.headers.clear()
        await self.session.get("/after")
        self.session.max_body_bytes = 1
        await self.session.get("/after")
"""


def test_session_settings_reach_requests_made_with_a_url_alone(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("settings.py", SETTINGS)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-r", "10", "-i", "1", "-H", http_server.url,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # the last request failed
    assert http_server.counts["GET /plain"] == 2 and http_server.counts["GET /after"] == 2
    assert http_server.last_request["GET /plain"][0]["x-token"] == "t1"
    assert "x-token" not in http_server.last_request["GET /after"][0]
    after = run.entry("GET", "/after")
    assert (after["num_requests"], after["num_failures"]) == (2, 1)
    (failure,) = run.json["stats"]["failures"]
    assert "over the limit of 1 bytes" in failure["error"], failure
