"""The endpoints an orchestrator probes, on real processes: /healthz and
/readyz of a headless local run, of a master (ready once --expect-workers
joined) and of a worker (ready while joined), of the web UI (without its
login), and none with --no-web-server."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from cluster_helpers import master_proc
from conftest import AIOTEST, DemoTarget, free_port, wait_for_port


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_until(port: int, path: str, status: int, timeout_s: float = 20) -> str:
    """Polls until ``path`` answers ``status``; returns the body."""
    deadline = time.monotonic() + timeout_s
    seen: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        try:
            seen = get(port, path)
        except OSError:
            seen = None
        if seen is not None and seen[0] == status:
            return seen[1]
        time.sleep(0.1)
    raise AssertionError(f"{path} on {port} never answered {status}; last {seen}")


def test_master_is_ready_once_its_workers_joined_and_workers_while_joined(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    web_port, worker_web_port = free_port(), free_port()
    master = master_proc(path, port, demo_target, tmp_path, "--expect-workers", "2",
                         "--web-port", str(web_port), run_time="2s")  # fmt: skip
    try:
        wait_for_port(web_port)
        assert get(web_port, "/healthz") == (200, "ok\n")
        status, body = get(web_port, "/readyz")
        assert status == 503 and "0 of 2 connected" in body, body
        # Only /healthz and /readyz: a headless master serves no page.
        assert get(web_port, "/")[0] == 404
        workers.start(1, "--web-port", str(worker_web_port))
        wait_for_port(worker_web_port)
        assert "joined the master" in wait_until(worker_web_port, "/readyz", 200)
        assert get(worker_web_port, "/healthz") == (200, "ok\n")
        assert "1 of 2 connected" in wait_until(web_port, "/readyz", 503)
        workers.start(1)  # no --web-port: serves nothing
        assert "2 workers connected" in wait_until(web_port, "/readyz", 200)
        # A headless master's /metrics counts its workers; a worker has none.
        status, metrics = get(web_port, "/metrics")
        assert status == 200 and "aiotest_workers{state=" in metrics, metrics
        assert get(worker_web_port, "/metrics")[0] == 404
        _, err = master.communicate(timeout=40)
        assert master.returncode == 0, err
        # The master left: the worker waits for the next one, not ready.
        assert "master left" in wait_until(worker_web_port, "/readyz", 503)
    finally:
        master.kill()
        master.communicate()


def start(path: Path, target: DemoTarget, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``aiotest -f path -H target ...args``, its log on a pipe."""
    return subprocess.Popen(
        [AIOTEST, "-f", str(path), "-H", target.url, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )  # fmt: skip


def test_headless_local_run_and_web_ui_serve_health_without_login(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    path = write_file("hello.py", HELLO)
    web_port = free_port()
    run = start(path, demo_target, tmp_path, "--headless", "-u", "1", "-t", "3s",
                "--web-port", str(web_port))  # fmt: skip
    try:
        wait_for_port(web_port)
        assert wait_until(web_port, "/readyz", 200) == "ready\n"
        assert get(web_port, "/healthz") == (200, "ok\n")
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
        run.communicate()
    ui_port = free_port()
    ui = start(path, demo_target, tmp_path, "--web-port", str(ui_port), "--web-host",
               "127.0.0.1", "--web-login", "admin:secret")  # fmt: skip
    try:
        wait_for_port(ui_port)
        assert get(ui_port, "/")[0] == 401
        assert get(ui_port, "/healthz") == (200, "ok\n")
        assert wait_until(ui_port, "/readyz", 200) == "ready\n"
    finally:
        ui.terminate()
        ui.communicate(timeout=30)


def test_no_web_server_binds_nothing_and_a_taken_worker_port_is_an_error(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    path = write_file("hello.py", HELLO)
    web_port = free_port()
    run = start(path, demo_target, tmp_path, "--headless", "-u", "1", "-t", "2s",
                "--web-port", str(web_port), "--no-web-server")  # fmt: skip
    try:
        for line in run.stderr:  # type: ignore[union-attr]
            if "Starting 1 users" in line:
                break  # the run is under way: the port would be bound by now
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", web_port)) != 0
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
        run.communicate()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        worker = subprocess.run(
            [AIOTEST, "-f", str(path), "--worker", "--master-port", str(free_port()),
             "--web-host", "127.0.0.1", "--web-port", str(busy)],
            capture_output=True, text=True, timeout=30, cwd=tmp_path,
        )  # fmt: skip
    assert worker.returncode == 2, worker.stderr
    assert "health endpoints" in worker.stderr and str(busy) in worker.stderr


HELLO = """
from aiotest import AsyncHttpUser, task, constant

class Hello(AsyncHttpUser):
    wait_time = constant(0.1)

    @task
    async def hello(self):
        await self.session.get("/hello")
"""
