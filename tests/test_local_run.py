"""Local runs against real servers: exact counts, weights, failures, errors,
exit codes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import ROOT, CountingServer, DemoTarget, run_aiotest

# These also run on every other supported Python (make test-pythons).
pytestmark = pytest.mark.pythons


def test_example_matches_server_counts(demo_target: DemoTarget) -> None:
    run = run_aiotest(
        "-f",
        str(ROOT / "examples" / "aiotestfile.py"),
        "--headless",
        "-u",
        "20",
        "-r",
        "20",
        "-t",
        "3s",
        "-H",
        demo_target.url,
    )
    # The failures and errors tables end stdout: show them when it fails.
    assert run.returncode == 0, run.stderr + run.stdout[-3000:]
    seen = demo_target.counts()
    assert run.total["num_requests"] == seen["total"] > 20
    assert run.total["num_failures"] == 0
    # Every Shopper (weight 3 of 4: 15 of 20 users) logged in exactly once,
    # and name= grouped the item URLs.
    assert run.entry("POST", "/login")["num_requests"] == 15 == seen["requests"]["POST /login"]
    item_hits = sum(
        n
        for k, n in seen["requests"].items()
        if k.startswith("GET /items/") and k != "GET /items/5000"
    )
    assert run.entry("GET", "/items/[id]")["num_requests"] == item_hits
    # The console's final table shows the same total.
    agg_line = [line for line in run.stdout.splitlines() if "Aggregated" in line][-2]
    assert str(seen["total"]) in agg_line.split()


def test_counts_against_python_http_server(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file(
        "plain.py",
        """
from aiotest import AsyncHttpUser, task, constant

class Poller(AsyncHttpUser):
    wait_time = constant(0.01)

    @task
    async def poll(self):
        resp = await self.session.get("/poll")
        assert resp.status == 200 and (await resp.text()) == "ok\\n"
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "5",
        "-r",
        "100",
        "-t",
        "2s",
        "-H",
        http_server.url,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == http_server.total() == http_server.counts["GET /poll"] > 50
    assert run.total["num_failures"] == 0
    assert run.json["stats"]["errors"] == []


def test_user_and_task_weights(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    path = write_file(
        "weights.py",
        """
from aiotest import AsyncHttpUser, task, constant

class Heavy(AsyncHttpUser):
    weight = 3
    wait_time = constant(0)

    async def on_start(self):
        await self.session.get("/start/heavy")

    @task(3)
    async def a(self):
        await self.session.get("/a")

    @task(1)
    async def b(self):
        await self.session.get("/b")

class Light(AsyncHttpUser):
    weight = 1
    wait_time = constant(60)

    async def on_start(self):
        await self.session.get("/start/light")

    @task
    async def idle(self):
        pass

class Pinned(AsyncHttpUser):
    fixed_count = 2
    wait_time = constant(60)

    async def on_start(self):
        await self.session.get("/start/pinned")

    @task
    async def idle(self):
        pass
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "42",
        "-r",
        "500",
        "-t",
        "3s",
        "-H",
        http_server.url,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    c = http_server.counts
    # fixed_count first, then 40 users split 3:1 exactly.
    assert (c["GET /start/pinned"], c["GET /start/heavy"], c["GET /start/light"]) == (2, 30, 10)
    # Task weights 3:1: /a's share is 0.75 within 4 standard errors.
    n = c["GET /a"] + c["GET /b"]
    assert n >= 200
    share = c["GET /a"] / n
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n), (share, n)
    assert run.total["num_requests"] == http_server.total()


def test_failures_and_errors_are_counted_and_grouped(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file(
        "faults.py",
        """
from aiotest import AsyncHttpUser, task, constant

class Faulty(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def server_error(self):
        await self.session.get("/error")

    @task
    async def not_found(self):
        await self.session.get("/status/404", name="/status/[code]")

    @task
    async def ok(self):
        await self.session.get("/hello")

    @task
    async def broken_code(self):
        raise ValueError("boom")
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "2s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr
    seen = demo_target.counts()["requests"]
    stats = run.json["stats"]
    failures = {(f["name"], f["error"]): f["occurrences"] for f in stats["failures"]}
    assert failures == {
        ("/error", "HTTPError: 500 Server Error: Internal Server Error"): seen["GET /error"],
        ("/status/[code]", "HTTPError: 404 Client Error: Not Found"): seen["GET /status/404"],
    }
    assert run.total["num_failures"] == seen["GET /error"] + seen["GET /status/404"]
    assert run.entry("GET", "/hello")["num_failures"] == 0
    # One distinct cause, counted every time, with the line that raised it.
    assert len(stats["errors"]) == 1
    error = stats["errors"][0]
    assert error["message"] == "ValueError: boom"
    assert error["count"] > 1
    assert 'raise ValueError("boom")' in error["traceback"]
    assert run.stderr.count("Error in user code: ValueError: boom") == 1
    assert "Errors in user code" in run.stdout


def test_exit_code_on_error_and_clean_exit(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    failing = write_file(
        "fail.py",
        "from aiotest import AsyncHttpUser, task, constant\n"
        "class U(AsyncHttpUser):\n"
        "    wait_time = constant(0.2)\n"
        "    @task\n"
        "    async def t(self):\n"
        "        await self.session.get('/error')\n",
    )
    run = run_aiotest(
        "-f",
        str(failing),
        "--headless",
        "-u",
        "1",
        "-t",
        "1s",
        "-H",
        demo_target.url,
        "--exit-code-on-error",
        "7",
        cwd=tmp_path,
    )
    assert run.returncode == 7, run.stderr
    clean = write_file("clean.py", failing.read_text().replace("/error", "/hello"))
    run = run_aiotest(
        "-f", str(clean), "--headless", "-u", "1", "-t", "1s", "-H", demo_target.url, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr


def test_catch_response_stop_user_and_lifecycle(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file(
        "lifecycle.py",
        """
from aiotest import AsyncHttpUser, StopUser, task, constant, events

log = []

@events.test_start.add_listener
def started(environment, **kw):
    log.append("test_start")

@events.test_stop.add_listener
def stopped(environment, **kw):
    log.append("test_stop")
    environment.events.request.fire(request_type="custom", name="summary", response_time=12.5,
                                    response_length=3)

class Once(AsyncHttpUser):
    wait_time = constant(0)

    async def on_start(self):
        await self.session.post("/login", json={"username": "a", "password": "b"})

    @task
    async def three_then_stop(self):
        for _ in range(3):
            async with self.session.get("/items", catch_response=True) as resp:
                data = await resp.json()
                if len(data) == 20:
                    resp.failure("twenty items is too many")
        async with self.session.get("/status/404", catch_response=True) as resp:
            resp.success()
        with self.environment.events.request.measure("custom", "measured"):
            pass
        raise StopUser()

    async def on_stop(self):
        await self.session.get("/hello")
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "2",
        "-r",
        "10",
        "-t",
        "2s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr  # the catch_response failures
    items = run.entry("GET", "/items")
    assert (items["num_requests"], items["num_failures"]) == (6, 6)
    assert run.entry("GET", "/status/404")["num_failures"] == 0
    assert run.entry("GET", "/hello")["num_requests"] == 2  # on_stop ran once per user
    assert run.entry("custom", "measured")["num_requests"] == 2
    summary = run.entry("custom", "summary")
    assert summary["num_requests"] == 1 and summary["max_response_time_us"] == 12500
    seen = demo_target.counts()
    assert run.total["num_requests"] - 3 == seen["total"]  # 3 custom records never hit the server


def test_tags_select_tasks(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    path = write_file(
        "tags.py",
        """
from aiotest import AsyncHttpUser, task, tag, constant

class Tagged(AsyncHttpUser):
    wait_time = constant(0.01)

    @tag("fast")
    @task
    async def fast(self):
        await self.session.get("/fast")

    @tag("slow")
    @task
    async def slow(self):
        await self.session.get("/slow")

    @task
    async def untagged(self):
        await self.session.get("/untagged")
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "2",
        "-t",
        "1s",
        "-H",
        http_server.url,
        "-T",
        "fast",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert set(http_server.counts) == {"GET /fast"}
    http_server.counts.clear()
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "2",
        "-t",
        "1s",
        "-H",
        http_server.url,
        "-E",
        "fast",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert set(http_server.counts) == {"GET /slow", "GET /untagged"}
