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
from conftest import CountingServer, DemoTarget, run_aiotest

# These also run on every other supported Python (make test-pythons).
pytestmark = pytest.mark.pythons

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


# A user task is asyncio's own Task, woken straight from the engine's turn
# when a request it awaits finishes (a RequestAwaitable, in Rust); asyncio
# must see an ordinary Task throughout. Each broken promise raises, and the
# run's errors show it.
TASK_PROMISES = """
import asyncio, contextvars, sys
from aiotest import AsyncHttpUser, constant, events, task

who = contextvars.ContextVar("who")

class Promises(AsyncHttpUser):
    wait_time = constant(0)

    async def on_start(self):
        who.set(self.user_index)

    @task
    async def promises(self):
        me = asyncio.current_task()
        assert type(me) is asyncio.Task, type(me)
        assert me in asyncio.all_tasks(), "a user task is missing from all_tasks()"
        resp = await self.session.get("/hello")
        assert resp.status == 200, resp
        assert asyncio.current_task() is me
        assert who.get() == self.user_index
        # Requests awaited in tasks of their own (asyncio's C Task).
        a, b = await asyncio.gather(self.session.get("/hello"), self.session.get("/delay/1"))
        assert (a.status, b.status) == (200, 200), (a, b)
        resp = await asyncio.wait_for(self.session.get("/hello"), 5)
        assert resp.status == 200, resp
        # A timeout that cancels this task in the middle of a request.
        with events.request.measure("timeout", "cancelled request") as ctx:
            try:
                if sys.version_info >= (3, 11):
                    async with asyncio.timeout(0.05):
                        await self.session.get("/delay/2000")
                else:
                    await asyncio.wait_for(self.session.get("/delay/2000"), 0.05)
            except asyncio.TimeoutError:
                ctx["response_length"] = 1
            else:
                raise AssertionError("the request outlived its timeout")
        assert asyncio.current_task() is me and not me.cancelled()
        if sys.version_info >= (3, 11):
            assert me.cancelling() == 0, me.cancelling()
        # Cancelling the task itself while it runs: the next request is
        # where the CancelledError lands.
        me.cancel()
        try:
            await self.session.get("/hello")
        except asyncio.CancelledError:
            if sys.version_info >= (3, 11):
                me.uncancel()
        else:
            raise AssertionError("a cancelled task's request went on")
        await asyncio.sleep(0)
        assert who.get() == self.user_index
"""


def test_user_tasks_keep_asyncio_task_semantics_around_requests(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file("promises.py", TASK_PROMISES)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "3", "-r", "100", "-i", "12",
        "-H", demo_target.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert run.json is not None and run.json["stats"]["errors"] == [], run.json["stats"]["errors"]
    timeouts = run.entry("timeout", "cancelled request")
    assert timeouts["num_requests"] == 12 and timeouts["total_content_bytes"] == 12, timeouts
    # 4 /hello and 1 /delay/1 an iteration, and the abandoned /delay/2000.
    assert run.entry("GET", "/hello")["num_requests"] == 12 * 4
    assert run.entry("GET", "/delay/1")["num_requests"] == 12


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
