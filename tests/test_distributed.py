"""Distributed mode with real processes on loopback: a master, workers, and
the demo target as the server that counts what it saw."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from aiotest import _core
from cluster_helpers import USER, master_proc
from conftest import AIOTEST, DemoTarget, free_port, run_aiotest, spread_over


def master(path: Path, port: int, target: DemoTarget, *extra: str, cwd: Path):
    return run_aiotest(
        "-f",
        str(path),
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--headless",
        "--heartbeat-interval",
        "0.5",
        "-H",
        target.url,
        *extra,
        cwd=cwd,
    )


@pytest.mark.parametrize("n", [2, 4])
def test_master_totals_equal_what_the_server_saw(
    n: int, cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    workers.start(n)
    run = master(
        path,
        port,
        demo_target,
        "--expect-workers",
        str(n),
        "-u",
        str(3 * n),
        "-r",
        "100",
        "-t",
        "2s",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    seen = demo_target.counts()
    assert run.total["num_requests"] == seen["total"] > 50, run.stderr
    assert f"Workers: {n} connected" in run.stdout
    # Every worker ran its even share of the users and sent samples.
    assert len(list((tmp_path / "samples").iterdir())) == n


def test_merged_percentiles_equal_one_histogram(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    workers.start(3)
    run = master(
        path,
        port,
        demo_target,
        "--expect-workers",
        "3",
        "-u",
        "9",
        "-r",
        "100",
        "-t",
        "2s",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    samples = [
        int(line) for f in (tmp_path / "samples").iterdir() for line in f.read_text().split()
    ]
    assert len(samples) == run.total["num_requests"] > 100
    expected = [list(p) for p in _core.percentiles_of(samples)]
    assert run.total["percentiles_us"] == expected
    assert run.entry("GET", "/delay")["percentiles_us"] == expected
    assert run.total["max_response_time_us"] == max(samples)


def test_processes_flag(write_file, demo_target: DemoTarget, tmp_path: Path) -> None:
    path = write_file("dist.py", USER)
    port = free_port()
    run = run_aiotest(
        "-f",
        str(path),
        "--processes",
        "2",
        "--master-bind-port",
        str(port),
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
    assert run.returncode == 0, run.stderr
    assert "Workers: 2 connected" in run.stdout
    assert run.total["num_requests"] == demo_target.counts()["total"] > 20


def test_workers_started_first_serve_two_runs(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    workers.start(2)
    # Started before any master: they wait, then join the first run.
    for _ in range(2):
        demo_target.reset()
        run = master(
            path,
            port,
            demo_target,
            "--expect-workers",
            "2",
            "-u",
            "4",
            "-r",
            "100",
            "-t",
            "1s",
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        assert run.total["num_requests"] == demo_target.counts()["total"] > 10
    assert all(p.poll() is None for p in workers.procs)  # the same processes, still serving
    workers.stop()
    assert len(workers.logs) == 2
    for log in workers.logs:
        assert log.count("Joined the master") == 2, log
        assert "The master left: waiting for the next one" in log


def test_iterations_split_exactly_over_workers(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    workers.start(3)
    run = master(
        path,
        port,
        demo_target,
        "--expect-workers",
        "3",
        "-u",
        "6",
        "-r",
        "100",
        "-i",
        "101",
        "-t",
        "30s",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert demo_target.counts()["total"] == 101 == run.total["num_requests"]
    assert run.json["task_runs"] == 101


def test_killed_worker_users_move_to_the_others(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    workers.start(2)
    proc = master_proc(
        path, port, demo_target, tmp_path, "--heartbeat-interval", "0.5", "--expect-workers", "2",
        "--json-file", "r.json", run_time="5s", users=6,
    )  # fmt: skip
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if "Starting 6 users" in line:
                break
        time.sleep(1.5)
        workers.procs[0].send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Worker 0 is missing" in stderr or "Worker 1 is missing" in stderr
    # The survivor ran all six users after the loss.
    final_table = stdout.rsplit("Workers:", 1)[1]
    assert "missing" in final_table
    result = json.loads((tmp_path / "r.json").read_text())
    seen = demo_target.counts()["total"]
    # Kept: everything up to the dead worker's last report (at most ~1 s of
    # its requests can be missing).
    assert 0.6 * seen <= result["stats"]["total"]["num_requests"] <= seen


def test_a_worker_stopped_with_ctrl_c_sends_its_last_statistics(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """A worker's Ctrl-C stops its users, sends what they recorded since its
    last report, and leaves; the others take its users. So the master's
    totals are exactly what the target served (a killed worker, above,
    loses up to a second of them)."""
    workers, port, path = cluster
    workers.start(2)
    proc = master_proc(
        path, port, demo_target, tmp_path, "--expect-workers", "2", "--heartbeat-interval", "0.5",
        "--json-file", "r.json", run_time="4s", users=4,
    )  # fmt: skip
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if "Starting 4 users" in line:
                break
        deadline = time.monotonic() + 20
        while demo_target.counts()["total"] < 20:
            assert time.monotonic() < deadline, "no traffic"
            time.sleep(0.02)
        workers.procs[0].send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=40)
        left = workers.procs[0].wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert left == 0
    assert "Worker 0 left" in stderr or "Worker 1 left" in stderr, stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stats"]["total"]["num_requests"] == demo_target.counts()["total"]


def test_killed_master_stops_the_users(cluster, demo_target: DemoTarget, tmp_path: Path) -> None:
    workers, port, path = cluster
    workers.start(2)
    proc = subprocess.Popen(
        [
            AIOTEST,
            "-f",
            str(path),
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--headless",
            "--heartbeat-interval",
            "0.5",
            "--expect-workers",
            "2",
            "-u",
            "4",
            "-r",
            "100",
            "-H",
            demo_target.url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if "Starting 4 users" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    # Liveness is 3 x 0.5 s: within ~2 s the workers stop loading the target.
    deadline = time.monotonic() + 10
    while True:
        before = demo_target.counts()["total"]
        time.sleep(0.5)
        if demo_target.counts()["total"] == before:
            break
        assert time.monotonic() < deadline, "workers kept loading the target with no master"
    assert all(p.poll() is None for p in workers.procs)  # waiting for a master, not dead
    # A new master on the same port: the workers rejoin on their own.
    demo_target.reset()
    run = master(
        path,
        port,
        demo_target,
        "--expect-workers",
        "2",
        "--expect-workers-max-wait",
        "20s",
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "1s",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == demo_target.counts()["total"] > 10


GREETER = """
import json, os
from aiotest import AsyncHttpUser, events, task, constant

OUT = os.environ["MSG_DIR"]

def on_hello(environment, msg, **kw):
    # On the master (or locally): answer the worker that said hello.
    environment.send_message("welcome", {"to": msg.node_id, "echo": msg.data}, worker_index=msg.node_id)

def on_welcome(environment, msg, **kw):
    with open(os.path.join(OUT, f"{os.getpid()}.json"), "w") as fh:
        json.dump(msg.data, fh)

@events.init.add_listener
def setup(environment, **kw):
    environment.register_message("hello", on_hello)
    environment.register_message("welcome", on_welcome)

class Greeter(AsyncHttpUser):
    wait_time = constant(0.05)

    async def on_start(self):
        self.environment.send_message("hello", {"pid": os.getpid()})

    @task
    async def ping(self):
        await self.session.get("/")
"""


def test_workers_exit_with_their_master_when_asked(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """--worker-exit-with-master: exit 1 when the master is lost, 0 when its
    run ends; a worker without it waits for the next master."""
    workers, port, path = cluster
    workers.start(1, "--worker-exit-with-master")
    workers.start(1)
    flagged, waiting = workers.procs
    lost = master_proc(path, port, demo_target, tmp_path, "--expect-workers", "2",
                       "--heartbeat-interval", "0.5", run_time="60s")  # fmt: skip
    try:
        for line in lost.stderr:  # type: ignore[union-attr]
            if "Starting 2 users" in line:
                break
        lost.send_signal(signal.SIGKILL)
        lost.wait(timeout=10)
    finally:
        lost.kill()
        lost.communicate()
    # Liveness is 3 x 0.5 s.
    assert flagged.wait(timeout=20) == 1
    assert waiting.poll() is None
    workers.start(1, "--worker-exit-with-master")
    ended = master_proc(path, port, demo_target, tmp_path, "--expect-workers", "2",
                        "--expect-workers-max-wait", "20", run_time="1s")  # fmt: skip
    _, err = ended.communicate(timeout=40)
    assert ended.returncode == 0, err
    assert workers.procs[2].wait(timeout=20) == 0
    assert waiting.poll() is None  # still there for the next master
    workers.stop()
    assert "Quitting (the master was lost" in workers.logs[0], workers.logs[0]
    assert "Quitting (the master's run ended" in workers.logs[2], workers.logs[2]


@pytest.mark.parametrize("processes", [0, 2])
def test_custom_messages_go_both_ways(
    write_file, demo_target: DemoTarget, tmp_path: Path, processes: int
) -> None:
    path = write_file("greet.py", GREETER)
    out = tmp_path / "msgs"
    out.mkdir()
    run = run_aiotest(
        "-f",
        str(path),
        *spread_over(processes),
        "--headless",
        "-u",
        str(max(processes, 1)),
        "-r",
        "100",
        "-t",
        "2s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
        env={"MSG_DIR": str(out)},
    )
    assert run.returncode == 0, run.stderr
    replies = {int(f.stem): json.loads(f.read_text()) for f in out.iterdir()}
    assert len(replies) == max(processes, 1), run.stderr
    for pid, reply in replies.items():
        assert reply["echo"] == {"pid": pid}  # each worker got the answer to its own hello
    if processes:
        assert sorted(r["to"] for r in replies.values()) == list(range(processes))
    else:
        assert [r["to"] for r in replies.values()] == [None]  # local mode: delivered in-process


OPTIONED = """
import os
from aiotest import AsyncHttpUser, events, task, constant

@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument("--item-id", type=int, default=1, help="the delay to ask for (ms)")
    parser.add_argument("--loud", action="store_true")

class Fetcher(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def fetch(self):
        opts = self.environment.parsed_options
        name = f"/delay/{opts.item_id}" + ("!" if opts.loud else "")
        await self.session.get(f"/delay/{opts.item_id}", name=name)
"""


def test_custom_options_govern_the_workers(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    path = write_file("opts.py", OPTIONED)
    local = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-t", "1s", "-H", demo_target.url, cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr
    assert [e["name"] for e in local.json["stats"]["entries"]] == ["/delay/1"]  # the default
    help_text = run_aiotest("-f", str(path), "--help", cwd=tmp_path).stdout
    assert "--item-id" in help_text and "the delay to ask for (ms)" in help_text
    # The master's values reach both workers, which were started without them.
    run = run_aiotest(
        "-f",
        str(path),
        "--processes",
        "2",
        "--master-bind-port",
        str(free_port()),
        "--headless",
        "-u",
        "2",
        "-r",
        "100",
        "-t",
        "1s",
        "-H",
        demo_target.url,
        "--item-id",
        "3",
        "--loud",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert [e["name"] for e in run.json["stats"]["entries"]] == ["/delay/3!"]
    assert run.total["num_requests"] == demo_target.counts()["requests"]["GET /delay/3"] > 2
    bad = run_aiotest("-f", str(path), "--item-id", "x", "-H", demo_target.url, cwd=tmp_path)
    assert bad.returncode == 2
    assert "--item-id 'x'" in bad.stderr and "Traceback" not in bad.stderr


def test_worker_joining_mid_run_gets_users_and_ctrl_c_stops_all(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    workers, port, path = cluster
    workers.start(1)
    proc = master_proc(
        path,
        port,
        demo_target,
        tmp_path,
        "--expect-workers",
        "1",
        "-t",
        "60s",
        "--json-file",
        "r.json",
    )
    samples = tmp_path / "samples"
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            if "Starting 2 users" in line:
                break
        workers.start(1)  # joins mid-run: one of the two users moves to it
        deadline = time.monotonic() + 20
        while len(list(samples.iterdir())) < 2:
            assert time.monotonic() < deadline, "the late worker never ran a user"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Stopping the workers" in stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stats"]["total"]["num_requests"] == demo_target.counts()["total"] > 2


FAULTY = """
from aiotest import AsyncHttpUser, task, constant

class Faulty(AsyncHttpUser):
    wait_time = constant(0.05)

    @task
    async def broken(self):
        await self.session.get("/")
        raise RuntimeError("boom")
"""


def test_worker_errors_reach_the_master(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    path = write_file("faulty.py", FAULTY)
    run = run_aiotest(
        "-f",
        str(path),
        "--processes",
        "1",
        "--master-bind-port",
        str(free_port()),
        "--headless",
        "-u",
        "2",
        "-r",
        "100",
        "-t",
        "1s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
    )
    assert run.returncode == 1  # user errors, Locust's rule
    assert "Worker 0: error in user code: RuntimeError: boom" in run.stderr
    assert 'raise RuntimeError("boom")' in run.stderr  # with its traceback
    errors = run.json["stats"]["errors"]
    assert len(errors) == 1
    # Every finished task raised; the 2 users may each be cut off mid-task
    # at stop, which counts a task run with no error.
    assert run.json["task_runs"] - 2 <= errors[0]["count"] <= run.json["task_runs"]
    assert errors[0]["count"] > 2
    [node] = errors[0]["nodes"]  # the worker's id (host-pid-random), not "local"
    assert node.startswith(f"{socket.gethostname()}-")


IDENTIFIED = """
import os
from aiotest import AsyncHttpUser, task, constant

OUT = os.environ["IDS_DIR"]

class A(AsyncHttpUser):
    wait_time = constant(0.05)
    weight = 2

    async def on_start(self):
        with open(os.path.join(OUT, f"{os.getpid()}.txt"), "a") as fh:
            fh.write(f"{self.user_index} {self.worker_index} {self.worker_count}\\n")

    @task
    async def ping(self):
        await self.session.get("/")

class B(A):
    weight = 1
"""


@pytest.mark.parametrize("processes", [0, 4])
def test_user_index_is_unique_across_the_cluster(
    write_file, demo_target: DemoTarget, tmp_path: Path, processes: int
) -> None:
    path = write_file("ids.py", IDENTIFIED)
    out = tmp_path / "ids"
    out.mkdir()
    run = run_aiotest(
        "-f",
        str(path),
        *spread_over(processes),
        "--headless",
        "-u",
        "11",
        "-r",
        "100",
        "-t",
        "2s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
        env={"IDS_DIR": str(out)},
    )
    assert run.returncode == 0, run.stderr
    rows = [
        (f.stem, *map(int, line.split()))
        for f in out.iterdir()
        for line in f.read_text().splitlines()
    ]
    assert sorted(r[1] for r in rows) == list(range(11))  # 0..N-1, each once
    workers = max(processes, 1)
    assert {r[3] for r in rows} == {workers}
    by_worker = {r[2]: {r[0]} for r in rows}
    assert sorted(by_worker) == list(range(workers))
    for pid, _, worker_index, _ in rows:  # one process per worker index
        assert by_worker[worker_index] == {pid}


CONTEXTUAL = """
import os
from aiotest import AsyncHttpUser, events, task, constant

OUT = os.environ["CTX_DIR"]

@events.init.add_listener
def fetch_token(environment, **kw):
    if not environment.parsed_options.worker:  # the master (or local mode) fetches it once
        environment.context["token"] = f"from-{os.getpid()}"

class Reader(AsyncHttpUser):
    wait_time = constant(0.05)

    async def on_start(self):
        with open(os.path.join(OUT, f"{os.getpid()}.txt"), "a") as fh:
            fh.write(self.environment.context["token"] + "\\n")

    @task
    async def ping(self):
        await self.session.get("/")
"""


@pytest.mark.parametrize("processes", [0, 2])
def test_master_context_reaches_every_worker_before_users_start(
    write_file, demo_target: DemoTarget, tmp_path: Path, processes: int
) -> None:
    path = write_file("ctx.py", CONTEXTUAL)
    out = tmp_path / "ctx"
    out.mkdir()
    run = run_aiotest(
        "-f",
        str(path),
        *spread_over(processes),
        "--headless",
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "1s",
        "-H",
        demo_target.url,
        cwd=tmp_path,
        env={"CTX_DIR": str(out)},
    )
    assert run.returncode == 0, run.stderr  # no user failed to find the token
    seen = {f.stem: set(f.read_text().split()) for f in out.iterdir()}
    assert len(seen) == max(processes, 1)
    [token] = set.union(*seen.values())
    if processes:
        assert token.removeprefix("from-") not in seen  # the master's, not a worker's own
    else:
        assert token == f"from-{next(iter(seen))}"
