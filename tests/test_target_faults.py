"""Problems at the target are failures in the statistics, not crashes."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import AIOTEST, free_port, run_aiotest

USER = """
from aiotest import AsyncHttpUser, task, constant

class Prober(AsyncHttpUser):
    wait_time = constant(0.1)

    @task
    async def probe(self):
        resp = await self.session.get("/probe", timeout=1)
        assert resp.status in (0, 200)
"""


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with `reply`
    (raw bytes) and then resets it, counting connections."""

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.reply = reply
        self.connections = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.reply(conn)
                # SO_LINGER 0: close with a reset, not a clean FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(reply: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(reply))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def run_against(url: str, write_file, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = write_file("probe.py", USER)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-r", "10", "-t", "2s", "-H", url, cwd=tmp_path
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "panicked" not in run.stderr
    assert run.json["stats"]["errors"] == []  # target problems are failures, not user errors
    total = run.total
    assert total["num_requests"] == total["num_failures"] > 0
    return run


def test_connection_refused(write_file, tmp_path: Path) -> None:
    run = run_against(f"http://127.0.0.1:{free_port()}", write_file, tmp_path)
    (failure,) = run.json["stats"]["failures"]
    assert failure["error"].startswith("ConnectionError:")
    assert "refused" in failure["error"].lower()


def test_reset_mid_body(raw_server, write_file, tmp_path: Path) -> None:
    server = raw_server(
        lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a part")
    )
    run = run_against(server.url, write_file, tmp_path)
    assert run.total["num_requests"] == server.connections
    errors = {f["error"] for f in run.json["stats"]["failures"]}
    assert all(e.startswith(("ResponseError:", "RequestError:")) for e in errors), errors


def test_invalid_http(raw_server, write_file, tmp_path: Path) -> None:
    server = raw_server(lambda c: c.sendall(b"this is not HTTP at all\r\n\r\n"))
    run = run_against(server.url, write_file, tmp_path)
    assert run.total["num_requests"] == server.connections
    (failure,) = run.json["stats"]["failures"]
    assert failure["error"].startswith("RequestError:"), failure


def test_timeout_is_a_failure(raw_server, write_file, tmp_path: Path) -> None:
    server = raw_server(lambda c: c.recv(1))  # reads, never answers
    run = run_against(server.url, write_file, tmp_path)
    (failure,) = run.json["stats"]["failures"]
    assert failure["error"] == "Timeout: request timed out"
    # The 1 s timeout is what the response time shows.
    assert 950_000 <= run.total["min_response_time_us"] <= 1_500_000


def _can_unshare_network() -> bool:
    try:
        return (
            subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(
    not _can_unshare_network(), reason="needs `unshare -n` (root or user namespaces)"
)
def test_dns_failure(write_file, tmp_path: Path) -> None:
    # Inside a fresh network namespace (only a down loopback) the lookup fails
    # on this machine: no DNS query leaves it.
    path = write_file("probe.py", USER)
    result = tmp_path / "dns.json"
    proc = subprocess.run(
        [
            "unshare",
            "-n",
            AIOTEST,
            "-f",
            str(path),
            "--headless",
            "-u",
            "1",
            "-t",
            "1s",
            "-H",
            "http://no-such-host.invalid",
            "--json-file",
            str(result),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failures = json.loads(result.read_text())["stats"]["failures"]
    assert len(failures) == 1
    assert failures[0]["error"].startswith("ConnectionError:")
    assert "lookup" in failures[0]["error"]


def _endless_body(conn: socket.socket) -> None:
    """A response whose body never ends (read until close): 4 MiB of it,
    then it stops sending without closing (bounded for the test's sake)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    for _ in range(64):
        conn.sendall(b"x" * 65536)


BIG_BODIES = """
from aiotest import AsyncHttpUser, task, constant

class Greedy(AsyncHttpUser):
    wait_time = constant(0.1)
    max_body_bytes = 1_000_000

    @task
    async def capped(self):
        await self.session.get("/capped", timeout=2)
"""


def test_a_body_over_the_limit_is_a_failure_with_the_fix(
    raw_server, write_file, tmp_path: Path
) -> None:
    server = raw_server(_endless_body)
    path = write_file("greedy.py", BIG_BODIES)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-r", "10", "-t", "2s", "-H", server.url,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "panicked" not in run.stderr and run.json["stats"]["errors"] == []
    errors = {f["error"]: f["occurrences"] for f in run.json["stats"]["failures"]}
    over = (
        "ResponseError: the response body is over the limit of 1000000 bytes: "
        "raise max_body_bytes for this request or user"
    )
    # One text, so the failures group; a rare reset as the server gives up
    # sending is a failure too.
    assert errors.pop(over) > 0, errors
    assert all(e.startswith("ResponseError:") for e in errors), errors
    assert run.total["num_requests"] == run.total["num_failures"] == server.connections > 0
