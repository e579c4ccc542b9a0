"""Feeders (aiotest.data): rows handed to users, exactly once across the
cluster or round and round, checked by the server that saw them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from cluster_helpers import Workers, master_proc
from conftest import CountingServer, free_port, run_aiotest, spread_over

FED = """
import os
from aiotest import AsyncHttpUser, task, constant
from aiotest.data import CsvFeeder

rows = CsvFeeder(os.environ["ROWS_CSV"], mode="once", chunk_rows=50)

class Consumer(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def use_one(self):
        row = await rows.next()
        await self.session.get(f"/row/{row['id']}", name="/row/[id]")
"""


@pytest.mark.parametrize(("processes", "n_rows"), [(0, 2_000), (4, 10_000)])
def test_once_rows_are_used_exactly_once(
    http_server: CountingServer, write_file, tmp_path: Path, processes: int, n_rows: int
) -> None:
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("id,name\n" + "".join(f"{i},user{i}\n" for i in range(n_rows)))
    path = write_file("fed.py", FED)
    run = run_aiotest(
        "-f",
        str(path),
        *spread_over(processes),
        "--headless",
        "-u",
        "20",
        "-r",
        "200",
        "-t",
        "50s",  # a bound: the run ends by itself when the rows run out
        "-H",
        http_server.url,
        cwd=tmp_path,
        env={"ROWS_CSV": str(csv_path)},
        timeout_s=58,
    )
    assert run.returncode == 0, run.stderr
    assert "all users stopped" in run.stderr
    with http_server.lock:
        counts = dict(http_server.counts)
    assert counts == {f"GET /row/{i}": 1 for i in range(n_rows)}  # each row once, none lost
    assert run.total["num_requests"] == n_rows


CYCLED = """
from aiotest import AsyncHttpUser, task, constant
from aiotest.data import IterableFeeder

ids = IterableFeeder([{"id": 1}, {"id": 2}, {"id": 3}], mode="cycle", chunk_rows=2)

class Cycler(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def use_one(self):
        row = await ids.next()
        await self.session.get(f"/row/{row['id']}")
"""


def test_cycle_starts_over(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    path = write_file("cyc.py", CYCLED)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "2", "-i", "9", "-H", http_server.url, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    with http_server.lock:
        assert dict(http_server.counts) == {f"GET /row/{i}": 3 for i in (1, 2, 3)}


def test_missing_source_is_a_clear_error(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("fed.py", FED)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-t", "1s", "-H", http_server.url,
        cwd=tmp_path, env={"ROWS_CSV": "no-such.csv"},
    )  # fmt: skip
    assert run.returncode == 1
    assert "no file 'no-such.csv'" in run.stderr
    assert http_server.total() == 0


LINES = """
import os
from aiotest import AsyncHttpUser, task, constant
from aiotest.data import JsonLinesFeeder

orders = JsonLinesFeeder(os.environ["ORDERS"], mode="once", chunk_rows=7)

class Buyer(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def buy(self):
        order = await orders.next()
        await self.session.post(f"/orders/{order['id']}", json=order)
"""


def test_json_lines_rows(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    source = tmp_path / "orders.jsonl"
    source.write_text("".join(f'{{"id": {i}, "qty": {i % 3}}}\n\n' for i in range(50)))
    path = write_file("lines.py", LINES)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "3", "-r", "100", "-t", "30s",
        "-H", http_server.url, cwd=tmp_path, env={"ORDERS": str(source)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with http_server.lock:
        assert dict(http_server.counts) == {f"POST /orders/{i}": 1 for i in range(50)}


SLOW_FED = """
import os
from aiotest import AsyncHttpUser, task, constant
from aiotest.data import CsvFeeder

rows = CsvFeeder(os.environ["ROWS_CSV"], mode="once", chunk_rows=10)

class Consumer(AsyncHttpUser):
    wait_time = constant(0.1)

    @task
    async def use_one(self):
        row = await rows.next()
        await self.session.get(f"/row/{row['id']}", name="/row/[id]")
"""


def test_rows_a_lost_worker_never_handed_out_are_served_again(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    """A worker holding a chunk of rows is killed (SIGKILL): the rows it had
    not handed to a user go to the other worker, so each of the 40 rows is
    used once. Before, its chunk was lost with it."""
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("id\n" + "".join(f"{i}\n" for i in range(40)))
    path = write_file("fed.py", SLOW_FED)
    env = {"ROWS_CSV": str(csv_path)}
    port = free_port()
    workers = Workers(path, port, env)
    proc = master_proc(
        path, port, http_server, tmp_path, "--expect-workers", "2", "--heartbeat-interval", "0.5",
        "--json-file", "r.json", env=env, run_time="50s",
    )  # fmt: skip
    try:
        workers.start(2)
        deadline = time.monotonic() + 20
        while http_server.total() < 4:
            assert time.monotonic() < deadline, "the workers never took rows"
            time.sleep(0.02)
        os.kill(workers.procs[0].pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=50)
    finally:
        proc.kill()
        workers.stop()
    assert proc.returncode == 0, stderr
    with http_server.lock:
        counts = dict(http_server.counts)
    assert all(n == 1 for n in counts.values()), counts  # no row twice
    # Every row, but for at most one that a user of the killed worker took
    # in the instant before it died (it counts as used).
    assert len(counts) >= 39, sorted(counts)
