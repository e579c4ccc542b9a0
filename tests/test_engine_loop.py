"""The driven engine shares the asyncio loop's thread (``aiotest._bridge``):
user code must still await anything asyncio can, next to HTTP requests.

Every wait below ends through a different road back into a loop that may be
blocked in the engine's reactor: a timer (asyncio.sleep), a socket of
another asyncio library (streams to a TCP echo server), and a thread
(asyncio.to_thread, which wakes the loop through its self-pipe).
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CountingServer, run_aiotest

MIXED_AWAITS = """
import asyncio, os, time
from aiotest import AsyncHttpUser, constant, events, task

ECHO_PORT = int(os.environ["ECHO_PORT"])

class Mixed(AsyncHttpUser):
    wait_time = constant(0)

    async def on_start(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", ECHO_PORT)

    @task
    async def everything(self):
        await self.session.get("/hello")
        with events.request.measure("asyncio", "sleep"):
            await asyncio.sleep(0.001)
        with events.request.measure("tcp", "echo") as ctx:
            line = f"user {self.user_index}\\n".encode()
            self.writer.write(line)
            await self.writer.drain()
            answer = await self.reader.readline()
            ctx["response_length"] = len(answer)
            if answer != line:
                raise AssertionError(f"echo answered {answer!r} to {line!r}")
        with events.request.measure("thread", "to_thread"):
            await asyncio.to_thread(time.sleep, 0.001)

    async def on_stop(self):
        self.writer.close()
        await self.writer.wait_closed()
"""

THREAD_ONLY = """
import asyncio
from aiotest import AsyncHttpUser, constant, events, task

class Idle(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def thread_only(self):
        with events.request.measure("thread", "noop"):
            await asyncio.to_thread(lambda: None)
"""


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_user_code_awaits_timers_sockets_and_threads_next_to_requests(
    http_server: CountingServer, echo_port: int, write_file, tmp_path: Path
) -> None:
    path = write_file("mixed_awaits.py", MIXED_AWAITS)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "100", "-i", "60",
        "-H", http_server.url,
        cwd=tmp_path, env={"ECHO_PORT": str(echo_port)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.json is not None and run.json["stats"]["errors"] == [], run.stderr
    for method, name in [("GET", "/hello"), ("asyncio", "sleep"), ("tcp", "echo"),
                         ("thread", "to_thread")]:  # fmt: skip
        entry = run.entry(method, name)
        assert entry["num_requests"] == 60, (method, name, entry)
        assert entry["num_failures"] == 0, (method, name, entry)
    assert http_server.counts["GET /hello"] == 60
    # Each echo line came back whole: "user N\n" is 7 bytes.
    assert run.entry("tcp", "echo")["total_content_bytes"] == 60 * 7


def test_a_thread_wakes_a_loop_with_no_request_in_flight(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    # One user and no HTTP: between iterations the loop blocks in the
    # engine's reactor, and only the thread's wake-up can end that wait. If
    # it could not, each iteration would last until the next 1 s stats tick
    # and 300 of them would overrun the test's time limit.
    path = write_file("thread_only.py", THREAD_ONLY)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-i", "300", "-H", http_server.url,
        cwd=tmp_path, timeout_s=40,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.entry("thread", "noop")["num_requests"] == 300
