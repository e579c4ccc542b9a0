"""Locustfiles, written as for Locust, run by `aiotest -f`: `from locust
import ...`, blocking-style `self.client` calls, task sets, catch_response,
FastHttpUser's rest(), and request listeners with Locust's arguments. Each
run's counts must equal what the target served."""

from __future__ import annotations

import csv
import email.parser
import email.policy
from pathlib import Path

import pytest
from conftest import CountingServer, DemoTarget, run_aiotest

pytestmark = pytest.mark.pythons

TASKSET_FILE = """
from locust import HttpUser, TaskSet, task, constant


def front(l):
    l.client.get("/front")


def about(l):
    l.client.get("/about", name="About")


class Browse(TaskSet):
    tasks = [front, about]

    @task
    def missing(self):
        self.client.get("/status/404")


class Visitor(HttpUser):
    wait_time = constant(0)
    tasks = [Browse]
"""


def test_a_taskset_locustfile_runs_as_written(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("locustfile.py", TASKSET_FILE)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "4", "-i", "300",
        "-H", http_server.url, "--csv", str(tmp_path / "r"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # the 404s are failures, as in Locust
    assert run.total["num_requests"] == 300 == http_server.total()
    counts = http_server.counts
    assert run.entry("GET", "/front")["num_requests"] == counts["GET /front"] > 0
    assert run.entry("GET", "About")["num_requests"] == counts["GET /about"] > 0
    missing = run.entry("GET", "/status/404")
    assert missing["num_requests"] == missing["num_failures"] == counts["GET /status/404"] > 0
    with (tmp_path / "r_stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[-1]["Name"] == "Aggregated" and rows[-1]["Request Count"] == "300"


NESTED_FILE = """
from locust import HttpUser, TaskSet, SequentialTaskSet, task, constant


class Shopper(HttpUser):
    wait_time = constant(0)

    @task
    class Shop(TaskSet):
        @task(3)
        class Browse(TaskSet):
            @task(5)
            def item(self):
                self.client.get("/item")

            @task
            def done(self):
                self.interrupt()

        @task
        class Checkout(SequentialTaskSet):
            @task
            def cart(self):
                self.client.get("/cart")

            @task
            def pay(self):
                self.client.post("/pay", {"card": "x"})
                self.interrupt(reschedule=False)

        @task
        def home(self):
            assert self.user is self.parent
            self.client.get("/home")
"""


def test_nested_tasksets_interrupt_back_to_their_parent(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("nested.py", NESTED_FILE)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "3", "-r", "3", "-i", "400",
        "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    counts = http_server.counts
    # Every task counts as an iteration; done() and interrupt() send nothing.
    assert run.total["num_requests"] == http_server.total() <= 400
    for key in ("GET /item", "GET /cart", "POST /pay", "GET /home"):
        assert counts[key] > 0, counts
    # A sequential set runs in order: every /pay follows a /cart.
    assert abs(counts["GET /cart"] - counts["POST /pay"]) <= 3


FAST_FILE = """
import time
from locust import task, constant, events
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

heard = {"n": 0, "failures": 0}


@events.request.add_listener
def on_request(request_type, name, response_time, response_length, response, context,
               exception, start_time, url, **kwargs):
    heard["n"] += 1
    heard["failures"] += exception is not None


@events.quitting.add_listener
def report(environment, **kwargs):
    print(f"listener heard {heard['n']} requests, {heard['failures']} failed")


class Api(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        resp = self.client.post("/login", json={"username": "ann", "password": "x"})
        if resp.status_code != 200:
            raise StopUser()

    @task
    def items(self):
        resp = self.client.get("/items")
        assert resp.ok and resp.json()[0]["id"] == 1
        time.sleep(0.001)  # lets the other users run
        with self.client.get("/items/999999", catch_response=True, name="/items/[missing]") as r:
            if r.status_code == 404:
                r.success()

    @task
    def rest_items(self):
        with self.rest("GET", "/items") as resp:
            assert resp.js is not None, "no JSON"
        with self.rest("GET", "/items/1") as resp:
            assert resp.js["id"] == 2, "not the second item"
"""


def test_fast_http_user_catch_response_rest_and_listeners(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file("fast.py", FAST_FILE)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "4", "-i", "200",
        "-H", demo_target.url, cwd=tmp_path,
    )  # fmt: skip
    total = run.total
    served = demo_target.counts()["total"]
    assert total["num_requests"] == served, (total, served)
    missing = run.entry("GET", "/items/[missing]")
    assert missing["num_requests"] > 0 and missing["num_failures"] == 0
    # rest()'s failed assertion is the failure, with its message.
    one = run.entry("GET", "/items/1")
    assert one["num_failures"] == one["num_requests"] > 0
    failures = {f["error"] for f in run.json["stats"]["failures"]}  # type: ignore[index]
    assert "not the second item" in failures, failures
    assert f"listener heard {served} requests, {total['num_failures']} failed" in run.stdout
    assert run.returncode == 1  # the failures


QUITTING_FILE = """
import logging
from locust import HttpUser, task, constant, events


@events.quitting.add_listener
def _(environment, **kw):
    stats = environment.stats
    total = stats.total
    assert environment.runner.stats.total.num_requests == total.num_requests
    root = stats.get("/", "GET")
    print(f"seen {total.num_requests} requests, {total.num_failures} failed, "
          f"root {root.num_requests}, p95 {total.get_response_time_percentile(0.95) >= 0}")
    if total.fail_ratio > 0.01:
        environment.process_exit_code = 7
    elif total.avg_response_time > 1000:
        environment.process_exit_code = 8
    else:
        environment.process_exit_code = 0


class Visitor(HttpUser):
    wait_time = constant(0)

    @task(3)
    def root(self):
        self.client.get("/")

    @task
    def broken(self):
        self.client.get("/status/500")
"""


def test_a_quitting_listener_reads_locust_stats_and_sets_the_exit_code(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("quitting.py", QUITTING_FILE)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-r", "2", "-i", "100",
        "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    served = http_server.total()
    root = http_server.counts["GET /"]
    failed = http_server.counts["GET /status/500"]
    assert f"seen {served} requests, {failed} failed, root {root}, p95 True" in run.stdout
    assert failed > 0 and run.returncode == 7, run.stderr  # the listener's choice


UPLOAD_FILE = """
from locust import HttpUser, task, constant, events
from locust.exception import StopUser

heard = []


@events.request.add_listener
def _(name, context, **kw):
    heard.append(f"{name} {sorted(context.items())}")


@events.quitting.add_listener
def _(environment, **kw):
    print("contexts:", sorted(heard))


class Uploader(HttpUser):
    wait_time = constant(0)

    def context(self):
        return {"user": "ann"}

    @task
    def upload(self):
        resp = self.client.post(
            "/upload",
            data={"kind": "avatar"},
            files={"file": ("me.png", b"PNG-bytes", "image/png")},
            context={"step": 1},
        )
        sent = resp.request
        assert sent.method == "POST" and sent.url == self.host + "/upload", sent.url
        assert b"PNG-bytes" in sent.body and sent.headers["Content-Type"].startswith("multipart/")
        with self.client.get("/after", catch_response=True, context={"step": 2}) as r:
            r.success()
        raise StopUser()
"""


def test_files_upload_as_multipart_and_listeners_get_the_request_context(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("upload.py", UPLOAD_FILE)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-r", "1", "-t", "3s",
        "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (
        "contexts: [\"/after [('step', 2), ('user', 'ann')]\", "
        "\"/upload [('step', 1), ('user', 'ann')]\"]"
    ) in run.stdout
    headers, body = http_server.last_request["POST /upload"]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body
    )
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert parts["kind"].get_content() == "avatar"
    upload = parts["file"]
    assert upload.get_filename() == "me.png" and upload.get_content_type() == "image/png"
    assert upload.get_payload(decode=True) == b"PNG-bytes"


STOPPER_FILE = """
import gevent
from locust import HttpUser, task, constant, events
from locust.runners import STATE_STOPPING, STATE_STOPPED, WorkerRunner


def checker(environment):
    # Locust's stop_on_threshold example: quit once enough went wrong.
    while environment.runner.state not in (STATE_STOPPING, STATE_STOPPED):
        gevent.sleep(0.05)
        if environment.runner.stats.total.num_failures >= 20:
            environment.runner.quit()
            return


@events.init.add_listener
def _(environment, **kw):
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(checker, environment)


class Failing(HttpUser):
    wait_time = constant(0.01)

    @task
    def fail(self):
        self.client.get("/status/500")
"""


def test_runner_quit_from_a_greenlet_ends_the_run_with_its_reports(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    first = write_file("a.py", STOPPER_FILE)
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "b.py").write_text(
        "from locust import HttpUser, task, constant\n\n"
        "class Other(HttpUser):\n"
        "    wait_time = constant(0.01)\n\n"
        "    @task\n"
        "    def ok(self):\n"
        "        self.client.get('/fine')\n"
    )
    (folder / "_helpers.py").write_text("raise RuntimeError('files starting with _ are skipped')\n")
    run = run_aiotest(
        "-f", f"{first},{folder}", "--headless", "-u", "4", "-r", "100", "-t", "30s",
        "-H", http_server.url, "--csv", str(tmp_path / "r"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # the failures
    assert "Stopped: stopped by the test's code" in run.stderr  # quit(), long before 30 s
    assert run.entry("GET", "/status/500")["num_failures"] >= 20
    assert run.entry("GET", "/fine")["num_requests"] > 0  # the folder's class ran too
    assert run.total["num_requests"] == http_server.total()
    assert (tmp_path / "r_stats.csv").exists()


def test_run_single_user_runs_one_user_and_prints_its_requests(
    http_server: CountingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiotest.compat import run_single_user
    from aiotest.sync_http import HttpUser
    from aiotest.taskset import task

    class One(HttpUser):
        host = http_server.url

        @task
        def visit(self) -> None:
            self.client.get("/single")

    run_single_user(One, include_length=True, iterations=3)
    lines = [x for x in capsys.readouterr().out.splitlines() if "/single" in x]
    assert len(lines) == 3 == http_server.counts["GET /single"]
    assert lines[0].split() == ["GET", "/single", "3", "bytes"]
