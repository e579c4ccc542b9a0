"""Streamed responses (``stream=True``) against a scripted server on
loopback: server-sent events with known gaps, whose time to first event
and time between events the stats rows show; lines and chunks read as they
arrive; and bodies left unread, which must not hold their connection."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from conftest import LoopbackServer, Run, run_aiotest, serving

#: Before the first event, after the head went out (ms).
FIRST_EVENT_DELAY_MS = 150
#: Between events: two short gaps, then a long one (ms).
SHORT_GAP_MS, LONG_GAP_MS = 5, 60
EVENTS = 100
LONG_GAPS = (EVENTS - 1) // 3
SHORT_GAPS = EVENTS - 1 - LONG_GAPS


class _StreamingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: StreamingServer

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _head(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        with self.server.lock:
            self.server.served[path] = self.server.served.get(path, 0) + 1
            if path == "/open":
                body = str(self.server.open_streams).encode()
        if path == "/open":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with self.server.lock:
            self.server.open_streams += 1
        try:
            if path == "/events":
                self._events()
            elif path == "/lines":
                self._lines()
            elif path == "/endless":
                self._endless()

        except OSError:
            pass  # the client closed the stream
        finally:
            with self.server.lock:
                self.server.open_streams -= 1

    def _events(self) -> None:
        self._head("text/event-stream")
        time.sleep(FIRST_EVENT_DELAY_MS / 1000)
        for i in range(EVENTS):
            if i:
                time.sleep((SHORT_GAP_MS if i % 3 else LONG_GAP_MS) / 1000)
            self._chunk(b'event: token\nid: %d\ndata: {"i": %d}\n\n' % (i, i))
        self._chunk(b"")

    def _lines(self) -> None:
        self._head("text/plain; charset=utf-8")
        body = b"".join(b"line %d\r\n" % i for i in range(50)) + b"tail"
        # Cut across line breaks: the lines must come out whole anyway.
        for start in range(0, len(body), 7):
            self._chunk(body[start : start + 7])
        self._chunk(b"")

    def _endless(self) -> None:
        self._head("application/octet-stream")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._chunk(b"x" * 1024)
            time.sleep(0.005)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StreamingServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_StreamingHandler)
        self.served: dict[str, int] = {}
        #: Responses still being written.
        self.open_streams = 0


@pytest.fixture
def streaming_server() -> Iterator[StreamingServer]:
    with serving(StreamingServer()) as server:
        yield server


EVENTS_FILE = """
from aiotest import AsyncHttpUser, task, constant

class Chat(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def chat(self):
        seen = []
        async with self.session.get("/events", stream=True) as resp:
            async for event in resp.iter_events(first_name="first event", gap_name="between events"):
                assert event.event == "token", event
                seen.append(event.json()["i"])
        assert seen == list(range(100)), seen
        assert resp.ok and resp.error is None
"""


def run_against(server: StreamingServer, path: Path, users: int, iterations: int) -> Run:
    """A headless run of ``path`` against ``server``, ``iterations`` in all."""
    return run_aiotest(
        "-f", str(path), "--headless", "-u", str(users), "-i", str(iterations), "-H", server.url,
        cwd=path.parent,
    )  # fmt: skip


def clean_run(server: StreamingServer, path: Path, iterations: int, names: tuple[str, ...]) -> Run:
    """:func:`run_against` with one user, which must end well: exit 0, no
    user errors, and each of ``names`` requested ``iterations`` times
    without a failure."""
    result = run_against(server, path, 1, iterations)
    assert result.returncode == 0, result.stderr + str(result.json)
    assert result.json is not None and not result.json["stats"]["errors"], result.json
    for name in names:
        entry = result.entry("GET", name)
        assert entry["num_requests"] == iterations and entry["num_failures"] == 0, (name, entry)
    return result


def test_sse_events_arrive_with_their_gaps(
    streaming_server: StreamingServer, write_file, tmp_path: Path
) -> None:
    result = run_against(streaming_server, write_file("chat.py", EVENTS_FILE), 2, 2)
    assert result.returncode == 0, result.stderr + str(result.json)
    assert streaming_server.served == {"/events": 2}
    stream = result.entry("GET", "/events")
    assert stream["num_requests"] == 2 and stream["num_failures"] == 0
    # Response time runs to the last event; time to first byte is the head,
    # sent before the server's first-event delay.
    least_gaps_us = (SHORT_GAPS * SHORT_GAP_MS + LONG_GAPS * LONG_GAP_MS) * 1000
    least_stream_ms = FIRST_EVENT_DELAY_MS + least_gaps_us / 1000
    assert stream["min_response_time_us"] >= least_stream_ms * 1000 * 0.95, stream
    ttfb = dict(stream["ttfb_percentiles_us"])
    first = result.entry("GET", "first event")
    assert first["num_requests"] == 2
    assert first["min_response_time_us"] >= FIRST_EVENT_DELAY_MS * 1000 * 0.95, first
    assert ttfb["100%"] < first["min_response_time_us"], (ttfb, first)
    # Between events: 99 gaps per stream, two thirds short, one third long.
    gaps = result.entry("GET", "between events")
    assert gaps["num_requests"] == 2 * (EVENTS - 1), gaps
    pct = dict(gaps["percentiles_us"])
    assert SHORT_GAP_MS * 1000 * 0.8 <= pct["50%"] < LONG_GAP_MS * 1000 / 2, pct
    assert pct["80%"] >= LONG_GAP_MS * 1000 * 0.9, pct
    # Their sum is the stream from first event to last.
    total_gap_us = gaps["avg_response_time_us"] * gaps["num_requests"]
    assert total_gap_us >= 2 * least_gaps_us * 0.98, (total_gap_us, least_gaps_us)
    assert result.total["num_failures"] == 0


LINES_FILE = """
from aiotest import AsyncHttpUser, task, constant

EXPECTED = [f"line {i}" for i in range(50)] + ["tail"]

class Reader(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def read(self):
        async with self.session.get("/lines", stream=True, name="lines") as resp:
            lines = [line async for line in resp.iter_lines(gap_name="between lines")]
        assert lines == EXPECTED, lines
        async with self.session.get("/lines", stream=True, name="whole") as resp:
            body = await resp.read()
            assert resp.content == body and (await resp.text()).endswith("line 49\\r\\ntail")
        async with self.session.get("/lines", stream=True, name="chunks") as resp:
            chunks = [c async for c in resp.iter_chunks()]
        assert b"".join(chunks) == body
        async with self.session.get("/lines", stream=True, name="judged", catch_response=True) as resp:
            async for _ in resp.iter_chunks():
                pass
            resp.failure("judged by the script")
"""


def test_lines_chunks_and_whole_bodies_of_a_stream(
    streaming_server: StreamingServer, write_file, tmp_path: Path
) -> None:
    result = run_against(streaming_server, write_file("lines.py", LINES_FILE), 1, 3)
    # Exit code 1: the script failed the "judged" requests, as it meant to.
    assert result.returncode == 1, result.stderr
    assert result.json is not None and not result.json["stats"]["errors"], result.json
    assert streaming_server.served == {"/lines": 12}
    for name in ("lines", "whole", "chunks"):
        entry = result.entry("GET", name)
        assert entry["num_requests"] == 3 and entry["num_failures"] == 0, entry
        assert entry["total_content_bytes"] == 3 * (
            sum(len(f"line {i}\r\n") for i in range(50)) + 4
        )
    judged = result.entry("GET", "judged")
    assert judged["num_requests"] == 3 and judged["num_failures"] == 3
    assert result.entry("GET", "between lines")["num_requests"] == 3 * 50
    assert result.total["num_requests"] == 12 + 3 * 50


UNREAD_FILE = """
import asyncio
from aiotest import AsyncHttpUser, task, constant

class Skimmer(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def skim(self):
        async with self.session.get("/endless", stream=True, name="unread"):
            pass
        async with self.session.get("/endless", stream=True, name="first chunk") as resp:
            async for chunk in resp.iter_chunks():
                assert chunk
                break
        resp = await self.session.get("/endless", stream=True, name="closed")
        resp.close()
        # While this process runs, the server must see each of them closed.
        for _ in range(200):
            async with self.session.get("/open", name="open streams") as resp:
                still_open = int(await resp.text())
            if still_open == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{still_open} streamed bodies are still open")
"""


def test_unread_streams_let_their_connection_go(
    streaming_server: StreamingServer, write_file, tmp_path: Path
) -> None:
    names = ("unread", "first chunk", "closed")
    result = clean_run(streaming_server, write_file("unread.py", UNREAD_FILE), 10, names)
    assert streaming_server.served["/endless"] == 30
    checks = result.entry("GET", "open streams")["num_requests"]
    assert result.total["num_requests"] == 30 + checks
    assert streaming_server.served["/open"] == checks


LOCUST_STREAM_FILE = """
import json
from locust import HttpUser, task, constant

EXPECTED = [f"line {i}" for i in range(50)] + ["tail"]

class LlmUser(HttpUser):
    wait_time = constant(0)

    @task
    def stream(self):
        # The pattern of Locust's LLM load tests, on requests' names.
        with self.client.get("/events", stream=True, catch_response=True, name="sse") as resp:
            tokens = []
            for line in resp.iter_lines(decode_unicode=True, gap_name="between lines"):
                if line.startswith("data: "):
                    tokens.append(json.loads(line[6:])["i"])
            if tokens != list(range(100)):
                resp.failure(f"tokens {tokens}")
        resp = self.client.get("/lines", stream=True, name="content")
        pieces = list(resp.iter_content(chunk_size=100))
        assert all(len(p) == 100 for p in pieces[:-1]), [len(p) for p in pieces]
        assert b"".join(pieces).decode().split("\\r\\n") == EXPECTED
        resp = self.client.get("/lines", stream=True, name="text")
        assert resp.text.endswith("line 49\\r\\ntail") and resp.content.startswith(b"line 0")
        with self.client.get("/endless", stream=True, name="left") as resp:
            assert next(resp.iter_content(chunk_size=None))
"""


def test_blocking_style_users_stream_as_requests_does(
    streaming_server: StreamingServer, write_file, tmp_path: Path
) -> None:
    names = ("sse", "content", "text", "left")
    result = clean_run(streaming_server, write_file("llm.py", LOCUST_STREAM_FILE), 3, names)
    assert streaming_server.served == {"/events": 3, "/lines": 6, "/endless": 3}
    # Each SSE event is three lines (event, id, data) and a blank one.
    assert result.entry("GET", "between lines")["num_requests"] == 3 * (4 * 100 - 1)
