"""Fixtures: real servers on 127.0.0.1 and the real `aiotest` command."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
AIOTEST = shutil.which("aiotest", path=os.path.dirname(sys.executable)) or shutil.which("aiotest")


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Returns once 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Run:
    """A finished `aiotest` process."""

    returncode: int
    stdout: str
    stderr: str
    json: dict[str, Any] | None

    @property
    def total(self) -> dict[str, Any]:
        assert self.json is not None, self.stderr
        return self.json["stats"]["total"]

    def entry(self, method: str, name: str) -> dict[str, Any]:
        assert self.json is not None, self.stderr
        for e in self.json["stats"]["entries"]:
            if e["method"] == method and e["name"] == name:
                return e
        raise AssertionError(f"no stats entry {method} {name}: {self.json['stats']['entries']}")


def run_aiotest(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout_s: float = 45
) -> Run:
    """Runs the real `aiotest` command; collects JSON when --json-file is not given."""
    assert AIOTEST, "the aiotest command is not installed: pip install ."
    cwd = cwd or ROOT
    json_path = None
    argv = [AIOTEST, *args]
    if (not args or args[0] != "demo-target") and "--json-file" not in args:
        json_path = Path(cwd) / f".aiotest-result-{os.getpid()}-{time.monotonic_ns()}.json"
        argv += ["--json-file", str(json_path)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTEST_")}
    full_env.update(env or {})
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    data = None
    if json_path is not None and json_path.exists():
        data = json.loads(json_path.read_text())
        json_path.unlink()
    return Run(proc.returncode, proc.stdout, proc.stderr, data)


def spread_over(processes: int) -> list[str]:
    """Arguments that run a test over ``processes`` local workers (this
    process their master, on a free port), or none for local mode (0)."""
    if not processes:
        return []
    return ["--processes", str(processes), "--master-bind-port", str(free_port())]


@dataclass
class DemoTarget:
    url: str
    port: int

    def counts(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"GET /__stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    def reset(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(
                b"POST /__reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            while s.recv(65536):
                pass


@pytest.fixture(scope="session")
def demo_target_process() -> Iterator[DemoTarget]:
    """`aiotest demo-target --port 0` as a real process."""
    assert AIOTEST
    proc = subprocess.Popen(
        [AIOTEST, "demo-target", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "listening on" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        url = line.strip().rsplit(" ", 1)[1]
        port = int(url.rsplit(":", 1)[1])
        wait_for_port(port)
        yield DemoTarget(url, port)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.fixture
def demo_target(demo_target_process: DemoTarget) -> DemoTarget:
    """The shared demo target, with its counts zeroed."""
    demo_target_process.reset()
    return demo_target_process


def _echo(target: str, body: bytes) -> str:
    """What postman-echo.com answers to /get and /post: the query as
    ``args``, and the body as ``data`` (parsed when it is JSON)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    data: Any = body.decode(errors="replace")
    with contextlib.suppress(ValueError):
        data = json.loads(body) if body else {}
    return json.dumps({"args": {k: v[-1] for k, v in query.items()}, "data": data})


class _CountingHandler(BaseHTTPRequestHandler):
    """Python's own HTTP server (not ours): counts requests by "METHOD path";
    /status/NNN answers NNN, anything else 200 with a small body."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body
    # waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: CountingServer

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.counts[f"{self.command} {path}"] += 1
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.server.last_request[f"{self.command} {path}"] = (headers, raw)
        status = 200
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        body = b"ok\n"
        if path in ("/get", "/post"):  # postman-echo's answers, which Locust's examples read
            body = _echo(self.path, raw).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer(ThreadingHTTPServer):
    """Python's threaded HTTP server on a free loopback port, with a lock
    for what its handlers count."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


S = TypeVar("S", bound=LoopbackServer)


@contextlib.contextmanager
def serving(server: S) -> Iterator[S]:
    """Serves ``server`` on a thread of its own for the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class CountingServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_CountingHandler)
        self.counts: Counter[str] = Counter()
        #: The headers (lower-case names) and body of the last request to each
        #: "METHOD path".
        self.last_request: dict[str, tuple[dict[str, str], bytes]] = {}
        #: TCP connections accepted so far.
        self.connections = 0

    def get_request(self) -> tuple[Any, Any]:
        accepted = super().get_request()
        with self.lock:
            self.connections += 1
        return accepted

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


@pytest.fixture
def http_server() -> Iterator[CountingServer]:
    # The socket listens from construction on, so no port probe: a probe
    # would be one more connection, counted whenever the thread accepts it.
    with serving(CountingServer()) as server:
        yield server


@pytest.fixture
def write_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Writes a file under tmp_path and returns its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def cluster(write_file, tmp_path: Path) -> Iterator[tuple[Any, int, Path]]:
    """Worker processes (not started) for a fresh master port, stopped at
    the end; the aiotestfile they run."""
    from cluster_helpers import USER, Workers

    path = write_file("dist.py", USER)
    port = free_port()
    samples = tmp_path / "samples"
    samples.mkdir()
    workers = Workers(path, port, {"SAMPLES_DIR": str(samples)})
    try:
        yield workers, port, path
    finally:
        workers.stop()


@pytest.fixture
def tls_nginx(tmp_path: Path) -> Iterator[Any]:
    """nginx over TLS with a throwaway CA's certificates (tls_helpers.py)."""
    from tls_helpers import nginx_over_tls

    yield from nginx_over_tls(tmp_path)
