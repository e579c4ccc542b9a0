"""The web UI's HTTP API on a real `aiotest` process: Locust's routes drive a
run (start, edit, reset, stop), the downloads hold the reports, the live
feed pushes updates, and basic auth and HTTPS guard it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import AIOTEST, DemoTarget, free_port, run_aiotest
from webui import HELLO, WebProcess, aggregated

HELLO_AND_SLOW = (
    HELLO
    + """

class Slow(AsyncHttpUser):
    wait_time = constant(0.05)
    fixed_count = 0

    @task
    async def slow(self):
        await self.session.get("/slow?ms=5", name="/slow")
"""
)

NO_HOST = """
from aiotest import AsyncHttpUser, task


class NoHost(AsyncHttpUser):
    @task
    async def hello(self):
        await self.session.get("/hello")
"""


@pytest.fixture
def hello_file(write_file) -> Path:  # type: ignore[no-untyped-def]
    return write_file("aiotestfile.py", HELLO_AND_SLOW)


def test_locust_routes_drive_a_run(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    with WebProcess(
        hello_file, "-H", demo_target.url, "--csv", str(tmp_path / "web"), cwd=tmp_path
    ) as web:
        status, headers, page = web.request("/")
        assert status == 200 and b"<title>aiotest</title>" in page
        for asset in ("/assets/app.js", "/assets/uPlot.iife.min.js", "/assets/app.css"):
            assert web.request(asset)[0] == 200, asset
        doc = web.stats()
        assert doc["state"] == "ready" and doc["user_count"] == 0
        assert doc["user_classes"] == ["Hello", "Slow"]

        status, body = web.swarm(user_count=3, spawn_rate=100, host=demo_target.url)
        assert status == 200 and body["success"], body
        doc = web.wait_for(
            "3 users and requests",
            lambda d: d["user_count"] == 3 and aggregated(d)["num_requests"] > 0,
        )
        assert doc["state"] in ("spawning", "running")
        hello = next(s for s in doc["stats"] if s["name"] == "/hello")
        for key in (
            "avg_response_time",
            "median_response_time",
            "response_time_percentile_0.95",
            "current_rps",
        ):
            assert key in hello

        # A swarm during a run edits it.
        status, body = web.swarm(user_count=1, spawn_rate=100)
        assert status == 200 and "Changed" in body["message"], body
        web.wait_for("1 user", lambda d: d["user_count"] == 1)

        # The live feed: server-sent events, one update per second.
        with urllib.request.urlopen(web.url + "/api/events", timeout=10) as feed:
            assert feed.headers["Content-Type"].startswith("text/event-stream")
            lines = []
            while not any(line.startswith("data: ") for line in lines):
                lines.append(feed.readline().decode().rstrip("\n"))
        update = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert "event: update" in lines
        assert aggregated(update["stats"])["num_requests"] > 0
        assert isinstance(update["points"], list)
        state = web.json("/api/state")
        assert state["points"], "a second of history gives chart points"
        assert {"t", "users", "rps", "fps", "p"} <= set(state["points"][0])

        before = aggregated(web.stats())["num_requests"]
        assert web.json("/stats/reset")["success"]
        after = aggregated(web.stats())["num_requests"]
        assert after < before

        status, body = web.request("/stop")[0], web.json("/stop")
        assert status == 200 and body["success"]
        final = web.wait_for("the stop", lambda d: d["state"] == "stopped" and d["user_count"] == 0)

        status, headers, csv = web.request("/stats/requests/csv")
        assert status == 200 and "attachment" in headers["Content-Disposition"]
        assert csv.decode().startswith("Type,Name,Request Count,Failure Count,Median Response Time")
        assert web.request("/stats/failures/csv")[2].startswith(b"Method,Name,Error,Occurrences")
        assert web.request("/exceptions/csv")[2].startswith(b"Count,Message,Traceback,Nodes")
        assert web.request("/stats/requests_full_history/csv")[2].startswith(
            b"Timestamp,User Count"
        )
        status, headers, html = web.request("/stats/report?download=1")
        assert status == 200 and b"aiotest report" in html
        assert 'filename="aiotest_report.html"' in headers["Content-Disposition"]
        report = web.json("/stats/report.json")
        assert report["stats"]["total"]["num_requests"] == aggregated(final)["num_requests"]
        assert report["host"] == demo_target.url
        assert web.json("/exceptions") == {"exceptions": []}

        assert web.quit() == 0, web.stderr
    # Reports asked for on the command line are written at quit.
    rows = (tmp_path / "web_stats.csv").read_text().splitlines()
    total = next(r for r in rows if ",Aggregated," in r)
    assert int(total.split(",")[2]) == report["stats"]["total"]["num_requests"]


def test_a_second_run_starts_with_fresh_statistics(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    with WebProcess(hello_file, "-H", demo_target.url, cwd=tmp_path) as web:
        for run in range(2):
            status, body = web.swarm(user_count=2, spawn_rate=100, run_time="1s")
            assert status == 200, body
            doc = web.wait_for(
                f"run {run} to end by its run time",
                lambda d: d["state"] == "stopped" and aggregated(d)["num_requests"] > 0,
            )
            if run == 0:
                first_start = doc["start_s"]
        assert doc["start_s"] > first_start
        # Only the second run's second of history.
        assert len(web.json("/api/state")["points"]) <= 3
        assert web.quit() == 0, web.stderr


def test_swarm_rejects_bad_input_with_the_fix(write_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_file("aiotestfile.py", NO_HOST)
    with WebProcess(path, cwd=tmp_path) as web:
        for fields, needle in (
            ({"spawn_rate": 1}, "user_count is missing"),
            ({"user_count": -1, "spawn_rate": 1}, "user_count='-1'"),
            ({"user_count": 1, "spawn_rate": 0}, "spawn_rate='0'"),
            ({"user_count": 1, "spawn_rate": 1, "host": "ftp://x"}, "http"),
            ({"user_count": 1, "spawn_rate": 1, "run_time": "10x"}, "10x"),
            ({"user_count": 1, "spawn_rate": 1, "user_classes": "Nobody"}, "pick from NoHost"),
            ({"user_count": 1, "spawn_rate": 1}, "no host for user class NoHost"),
        ):
            status, body = web.swarm(**fields)
            assert status == 400 and not body["success"], (fields, body)
            assert needle in body["message"], (fields, body)
        assert web.stats()["state"] == "ready"
        # Nothing ran, so nothing is reported.
        assert web.quit() == 0, web.stderr


def test_basic_auth_guards_every_route(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    with WebProcess(hello_file, "-H", demo_target.url, cwd=tmp_path, login="admin:s3cret") as web:
        for path in ("/", "/stats/requests", "/stop", "/stats/report", "/api/events"):
            status, headers, _ = web.request(path, auth=None)
            assert status == 401, path
            assert headers["WWW-Authenticate"].startswith("Basic")
        assert web.request("/stats/requests", auth="admin:wrong")[0] == 401
        assert web.request("/stats/requests", auth="admin:s3cret")[0] == 200
        status, _, _ = web.request("/swarm", data={"user_count": 1, "spawn_rate": 1}, auth=None)
        assert status == 401
        assert web.stats()["state"] == "ready", "a refused swarm starts nothing"
        assert web.quit() == 0, web.stderr
    assert "without --web-login" not in web.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_certificate(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    with WebProcess(
        hello_file, "-H", demo_target.url, "--tls-cert", str(cert), "--tls-key", str(key),
        cwd=tmp_path, scheme="https", cafile=str(cert),
    ) as web:  # fmt: skip
        assert web.stats()["state"] == "ready"
        # Plain HTTP on the HTTPS port gets no page.
        with socket.create_connection(("127.0.0.1", web.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                reply = s.recv(100)
            except (TimeoutError, ConnectionResetError):
                reply = b""
        assert not reply.startswith(b"HTTP/1.1 200")
        assert web.quit() == 0, web.stderr
    assert "Starting web interface at https://" in web.stderr


def test_bad_tls_files_and_busy_port_exit_2(hello_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    run = run_aiotest(
        "-f", str(hello_file), "--web-port", "0", "--web-host", "127.0.0.1",
        "--tls-cert", str(missing), "--tls-key", str(missing), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert f"--tls-cert {missing}" in run.stderr
    run = run_aiotest("-f", str(hello_file), "--tls-cert", str(missing), cwd=tmp_path)
    assert run.returncode == 2 and "--tls-key" in run.stderr
    run = run_aiotest("-f", str(hello_file), "--web-login", "nopassword", cwd=tmp_path)
    assert run.returncode == 2 and "USER:PASSWORD" in run.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = run_aiotest(
            "-f", str(hello_file), "--web-host", "127.0.0.1", "--web-port", str(port), cwd=tmp_path
        )
    assert run.returncode == 2
    assert "pick another --web-port" in run.stderr


def test_public_address_without_login_warns(hello_file: Path, tmp_path: Path) -> None:
    assert AIOTEST
    port = free_port()
    proc = subprocess.Popen(
        [AIOTEST, "-f", str(hello_file), "--web-host", "0.0.0.0", "--web-port", str(port),
         "--autostart", "-u", "0", "-t", "0s", "--autoquit", "0", "-H", "http://127.0.0.1:9"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, err = proc.communicate(timeout=30)
    assert "without --web-login" in err, err


def test_autostart_and_autoquit_run_unattended(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    run = run_aiotest(
        "-f", str(hello_file), "--web-host", "127.0.0.1", "--web-port", str(free_port()),
        "--autostart", "--autoquit", "0", "-u", "2", "-r", "100", "-t", "1s", "-H", demo_target.url,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] > 0
    assert run.total["num_requests"] == demo_target.counts()["total"]


def test_master_web_ui_lists_workers_and_runs_over_them(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    with WebProcess(
        hello_file, "-H", demo_target.url, "--processes", "2",
        "--master-bind-port", str(free_port()), "--heartbeat-interval", "0.5", cwd=tmp_path,
    ) as web:  # fmt: skip
        doc = web.wait_for("two workers", lambda d: d.get("worker_count") == 2)
        assert doc["is_distributed"] and len(doc["workers"]) == 2
        assert {
            "index",
            "state",
            "user_count",
            "cpu_percent",
            "memory_bytes",
            "last_heartbeat_s",
            # Locust's names, which its dashboards read
            "id",
            "cpu_usage",
            "memory_usage",
        } <= set(doc["workers"][0])
        status, body = web.swarm(user_count=4, spawn_rate=100)
        assert status == 200, body
        doc = web.wait_for(
            "4 users over 2 workers",
            lambda d: d["user_count"] == 4 and aggregated(d)["num_requests"] > 0,
        )
        assert sorted(w["user_count"] for w in doc["workers"]) == [2, 2]
        status, body = web.swarm(user_count=2, spawn_rate=100)
        assert status == 200 and "Changed" in body["message"]
        web.wait_for("2 users", lambda d: d["user_count"] == 2)
        assert web.json("/stop")["success"]
        final = web.wait_for("the stop", lambda d: d["state"] == "stopped" and d["user_count"] == 0)
        assert aggregated(final)["num_requests"] <= demo_target.counts()["total"]
        assert web.quit() == 0, web.stderr


OPTIONS_FILE = """
from aiotest import AsyncHttpUser, constant, events, task


@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument("--shop", choices=["a", "b"], default="a")
    parser.add_argument("--token", is_secret=True, default="s3cret")
    parser.add_argument("--dry-run", action="store_true")


@events.test_start.add_listener
def _(environment, **kw):
    o = environment.parsed_options
    print(f"run with shop={o.shop} token={o.token} dry_run={o.dry_run}", flush=True)


class Idle(AsyncHttpUser):
    wait_time = constant(1)

    @task
    async def nothing(self):
        pass
"""


def test_swarm_takes_the_aiotestfiles_options(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = write_file("opts.py", OPTIONS_FILE)
    with WebProcess(path, "-H", demo_target.url, cwd=tmp_path) as web:
        fields = {f["name"]: f for f in web.stats()["extra_options"]}
        assert fields["shop"]["choices"] == ["a", "b"] and fields["shop"]["default"] == "a"
        assert fields["token"]["is_secret"] and fields["token"]["default"] is None  # never sent
        assert fields["dry_run"]["is_flag"]
        status, body = web.swarm(user_count=1, run_time="1s", shop="b", token="", dry_run="true")
        assert status == 200, body
        web.wait_for("the run's end", lambda d: d["state"] == "stopped")
        status, body = web.swarm(user_count=1, shop="c")
        assert status == 400 and "--shop 'c': pick one of a, b" in body["message"], body
        assert web.quit() == 0, web.stderr
    # The empty secret kept its value.
    assert "run with shop=b token=s3cret dry_run=True" in web.stdout


def test_commands_from_another_site_are_refused(
    hello_file: Path, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """A page elsewhere cannot drive the operator's browser into starting a
    swarm, stopping or resetting (CSRF); curl and scripts still can."""
    with WebProcess(hello_file, "-H", demo_target.url, cwd=tmp_path) as web:
        own = web.url.removeprefix("http://")
        hostile = [
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},  # another port of this host
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
        ]
        for path in ("/swarm", "/stop", "/stats/reset"):
            for headers in hostile:
                status, _, body = web.request(path, data={"user_count": "1"}, headers=headers)
                assert status == 403, (path, headers, body)
                assert "refused" in json.loads(body)["message"]
        status, _, _ = web.request("/stop", method="GET", headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 403  # an <img src=".../stop"> elsewhere
        assert web.stats()["state"] == "ready"  # nothing started
        same_page = {"Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"}
        status, _, body = web.request("/stats/reset", method="POST", headers=same_page)
        assert status == 200, body
        status, body = web.swarm(user_count=1, run_time="1s")  # no browser headers: curl
        assert status == 200, body
        assert web.quit() == 0, web.stderr


STALLING_FILE = """
import time
from aiotest import AsyncHttpUser, constant, events, task


@events.test_start.add_listener
def _(environment, **kw):
    time.sleep(11)  # a listener that holds the loop past the web UI's 10 s


class Idle(AsyncHttpUser):
    wait_time = constant(1)

    @task
    async def nothing(self):
        pass
"""


def test_a_command_that_got_its_503_does_not_run_later(write_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_file("stall.py", STALLING_FILE)
    with WebProcess(path, "-H", "http://127.0.0.1:9", cwd=tmp_path) as web:
        status, body = web.swarm(user_count=1)
        assert status == 200, body
        status, _, body = web.request("/stop", method="POST")  # the loop is held
        assert status == 503, body
        doc = web.wait_for("the held loop to go on", lambda d: d["state"] == "running")
        assert doc["user_count"] == 1  # the stop nobody waited for did not run
        assert web.quit() == 0, web.stderr
    assert "Dropped a stop command its client gave up on" in web.stderr


def _closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout_s`` (EOF or reset)."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slow_and_surplus_connections_are_closed(hello_file: Path, tmp_path: Path) -> None:
    """Found by reading (axum's server runs hyper without a timer, so its
    header timeout never fires), reproduced here before the fix: clients
    that open connections and dribble a request head held them for good,
    without limit. Now a connection past the 256th is closed at once, a head
    not sent within 10 s is cut off, and the UI answers all along."""
    with WebProcess(hello_file, "-H", "http://127.0.0.1:9", cwd=tmp_path) as web:
        socks = [socket.create_connection(("127.0.0.1", web.port)) for _ in range(300)]
        try:
            for sock in socks:
                sock.sendall(b"GET /stats/requests HTTP/1.1\r\nHost: x\r\n")  # no blank line
            surplus = [_closed_by_server(s, 5.0) for s in socks[256:]]
            assert all(surplus), f"{surplus.count(False)} connections over the cap stayed open"
            start = time.monotonic()
            assert _closed_by_server(socks[0], 20.0), "a dribbled head held its connection"
            assert time.monotonic() - start < 15
            assert all(_closed_by_server(s, 5.0) for s in socks[1:256])
        finally:
            for sock in socks:
                sock.close()
        status, _, _ = web.request("/stats/requests")
        assert status == 200
        assert web.quit() == 0, web.stderr
