"""The cluster against hostile peers, on real sockets: garbage, oversized
and declared-huge frames, wrong secrets, replayed messages, and peers that
speak the protocol with values no honest peer sends (pyzmq plays them)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from aiotest import _core
from cluster_helpers import (
    USER,
    Proxy,
    Workers,
    dealer,
    fake_master,
    master_proc,
    recv_msg,
    rss_bytes,
    zmtp_peer,
)
from conftest import AIOTEST, DemoTarget, free_port, run_aiotest, wait_for_port


def test_garbage_on_the_port_is_dropped(cluster, demo_target: DemoTarget, tmp_path: Path) -> None:
    workers, port, path = cluster
    proc = master_proc(
        path, port, demo_target, tmp_path, "--expect-workers", "1", "--json-file", "r.json",
        run_time="2s",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(os.urandom(512))
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        workers.start(1)
        _, stderr = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "panicked" not in stderr and "Traceback" not in stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stats"]["total"]["num_requests"] == demo_target.counts()["total"] > 10


def test_version_mismatch_is_refused_on_both_sides(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    _, port, path = cluster
    proc = master_proc(path, port, demo_target, tmp_path, "--expect-workers-max-wait", "3s")
    peer = dealer(port)
    try:
        ready = {
            "type": "ready",
            "aiotest_version": "0.0.1",
            "protocol_version": 1,
            "worker_id": "old",
        }
        peer.send(msgpack.packb(ready))
        reply = recv_msg(peer)
        _, stderr = proc.communicate(timeout=30)
    finally:
        peer.close()
        proc.kill()
    assert reply["type"] == "refused"  # the worker's side, readable by a plain msgpack peer
    assert "0.0.1 does not match" in str(reply["reason"])
    assert "Refused worker old: aiotest 0.0.1 does not match" in stderr  # the master's log
    assert proc.returncode == 1  # nobody usable joined within the wait
    assert "only 0 of 1 workers connected" in stderr


def test_malformed_and_oversized_messages_are_dropped_and_logged(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """Garbage, an unknown message type and a message just over the 16 MiB
    limit are each dropped and logged once per peer; a message over the
    transport's frame bound closes its connection unread."""
    workers, port, path = cluster
    proc = master_proc(
        path, port, demo_target, tmp_path, "--expect-workers", "1", "--json-file", "r.json"
    )
    peers = [dealer(port) for _ in range(4)]
    try:
        peers[0].send(b"\xc1 not msgpack")
        peers[0].send(msgpack.packb({"type": "no_such_message"}))  # same peer: not logged
        peers[1].send(msgpack.packb({"type": "no_such_message"}))
        peers[2].send(b"\x00" * (16 * 1024 * 1024 + 1024))
        peers[3].send(b"\x00" * (17 * 1024 * 1024))
        workers.start(1)
        _, stderr = proc.communicate(timeout=40)
    finally:
        for peer in peers:
            peer.close()
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "panicked" not in stderr and "Traceback" not in stderr
    assert stderr.count("Dropped a message") == 3, stderr
    assert "byte limit" in stderr, stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stats"]["total"]["num_requests"] == demo_target.counts()["total"] > 5


def test_wrong_secret_is_refused_and_logged(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    path = write_file("dist.py", USER)
    port = free_port()
    worker = subprocess.Popen(
        [AIOTEST, "-f", str(path), "--worker", "--master-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AIOTEST_SECRET": "wrong"},
    )
    proc = master_proc(
        path,
        port,
        demo_target,
        tmp_path,
        "--expect-workers-max-wait",
        "4s",
        env={"AIOTEST_SECRET": "right"},
    )
    try:
        _, master_err = proc.communicate(timeout=30)
        _, worker_err = worker.communicate(timeout=30)
    finally:
        proc.kill()
        worker.kill()
    assert "failed authentication" in master_err and "Refused worker" in master_err
    assert worker.returncode == 2
    assert "the master refused this worker" in worker_err and "--secret" in worker_err
    assert demo_target.counts()["total"] == 0


def test_same_secret_runs(write_file, demo_target: DemoTarget, tmp_path: Path) -> None:
    path = write_file("dist.py", USER)
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
        cwd=tmp_path,
        env={"AIOTEST_SECRET": "s3cret"},
    )
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == demo_target.counts()["total"] > 5


def test_a_worker_reporting_a_nan_load_does_not_break_the_master(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """A peer that speaks the protocol but reports a CPU share of NaN (and a
    nonsense one): the master's worker table shows 0 and the run ends with
    its reports. Found by review; before the fix, reproduced as a crash of
    the web UI's publishing (the JSON has no NaN)."""
    path = write_file("dist.py", USER)
    port = free_port()
    proc = master_proc(
        path, port, demo_target, tmp_path, "--expect-workers", "1", "--json-file", "r.json",
        "--heartbeat-interval", "0.2",
    )  # fmt: skip
    peer = dealer(port)
    try:
        ready = {
            "type": "ready",
            "aiotest_version": _core.__version__,
            "protocol_version": 1,
            "worker_id": "hostile-1",
        }
        peer.send(msgpack.packb(ready))
        assert recv_msg(peer)["type"] == "ack"
        for cpu in (float("nan"), 1e308, -5.0):
            beat = {"type": "heartbeat", "state": "running", "user_count": 0,
                    "load": {"cpu_percent": cpu, "memory_bytes": 1}}  # fmt: skip
            peer.send(msgpack.packb(beat))
        # Play along until the master stops the run: it must finish on time.
        while True:
            message = recv_msg(peer, timeout_s=20)
            if message["type"] == "spawn":
                done = {"type": "spawning_complete", "run_id": message["run_id"], "user_count": 0}
                peer.send(msgpack.packb(done))
            elif message["type"] == "stop":
                peer.send(msgpack.packb({"type": "stopped", "run_id": message["run_id"]}))
                break
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        peer.close()
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "panicked" not in stderr
    assert (tmp_path / "r.json").exists()
    row = next(x for x in stdout.splitlines() if "hostile-1" in x)
    assert " nan " not in row and "0.0" in row, row


def test_a_hostile_ack_is_refused_and_the_worker_goes_on(write_file, tmp_path: Path) -> None:
    """A fake master (pyzmq ROUTER) acknowledges with heartbeat intervals no
    clock can keep (1e-10 s, 1e30 s): the worker keeps its own, says so, and
    still obeys a well-formed quit. Before the bounds, 1e-10 panicked the
    worker's link task (a zero Duration) and the worker hung."""
    router, worker = fake_master(write_file("dist.py", USER), tmp_path)
    try:
        assert router.poll(15_000), "the worker never said ready"
        identity, payload = router.recv_multipart()
        assert msgpack.unpackb(payload)["type"] == "ready"
        for interval_s in (1e-10, 1e30):
            ack = {"type": "ack", "worker_index": 0, "heartbeat_interval_s": interval_s,
                   "heartbeat_liveness": 3}  # fmt: skip
            router.send_multipart([identity, msgpack.packb(ack)])
            # Alive: it goes on sending (heartbeats, stats) at its own pace.
            for _ in range(2):
                assert router.poll(5_000), "the worker fell silent"
                router.recv_multipart()
        router.send_multipart([identity, msgpack.packb({"type": "quit"})])
        _, stderr = worker.communicate(timeout=20)
    finally:
        router.close()
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "panicked" not in stderr
    assert stderr.count("is outside 0.01-3600 s: keeping this worker's") == 2, stderr


def test_a_frame_declared_huge_is_refused_before_it_is_buffered(
    cluster, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """A peer declares a 2^40-byte frame and starts sending it while a real
    run goes on. Reproduced before the patched codec: the master reserved
    the declared length and kept every byte (1.5 GB of RSS for 1.5 GB sent).
    Now the connection is closed at the header; the run is untouched."""
    workers, port, path = cluster
    proc = master_proc(
        path, port, demo_target, tmp_path, "--expect-workers", "1", "--json-file", "r.json",
        run_time="3s",
    )  # fmt: skip
    try:
        wait_for_port(port)
        workers.start(1)
        peer = zmtp_peer(port)
        peer.sendall(bytes([0x02]) + struct.pack(">Q", 1 << 40))
        sent, chunk = 0, bytes(1 << 20)
        try:
            while sent < 256 << 20:
                peer.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the master hung up, as it should
        rss = rss_bytes(proc.pid)
        peer.close()
        _, stderr = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert sent < 64 << 20, f"the master read {sent >> 20} MiB of a frame it cannot take"
    assert rss < 300 << 20, f"master RSS {rss >> 20} MiB"
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stats"]["total"]["num_requests"] == demo_target.counts()["total"] > 5


SECRET = {"AIOTEST_SECRET": "correct horse battery staple"}


def test_replayed_and_garbage_messages_are_refused(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """A man in the middle captures a signed worker's traffic (handshake,
    ready, heartbeats, stats) and replays it 5,000 times on the worker's
    own connection and 5,000 times from ten new ones, while ten more peers
    send 10,000 garbage frames. Reproduced before sessions: a replayed
    `ready` made a phantom worker and replayed stats were counted twice.
    Now every one is refused, each peer is logged once, and the totals are
    exactly what the target served."""
    path = write_file("dist.py", USER)
    master_port, proxy_port = free_port(), free_port()
    proxy = Proxy(proxy_port, master_port)
    proxy.start()
    proc = master_proc(
        path, master_port, demo_target, tmp_path, "--expect-workers", "1",
        "--json-file", "r.json", env=SECRET, run_time="6s",
    )  # fmt: skip
    worker = subprocess.Popen(
        [AIOTEST, "-f", str(path), "--worker", "--master-port", str(proxy_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **SECRET},
    )  # fmt: skip
    peers: list[zmq.Socket[bytes]] = []
    try:
        deadline = time.monotonic() + 30
        # The handshake, the sealed ready and a few stats reports.
        while sum(f[:1] == b"\0" for f in proxy.frames()) < 6:
            assert time.monotonic() < deadline, "the worker never got going"
            time.sleep(0.05)
        captured = proxy.frames()
        proxy.replay(5000)
        for _ in range(10):
            peers.append(dealer(master_port))
            for i in range(500):
                peers[-1].send(captured[i % len(captured)])
        for _ in range(10):
            peers.append(dealer(master_port))
            for _ in range(1000):
                peers[-1].send(os.urandom(64))
        _, stderr = proc.communicate(timeout=40)
    finally:
        proxy.done.set()
        for peer in peers:
            peer.close()
        proc.kill()
        worker.kill()  # workers outlive their master, waiting for the next
        worker.communicate()
    assert proc.returncode == 0, stderr
    assert "panicked" not in stderr and "Traceback" not in stderr
    assert stderr.count(" joined (") == 1, stderr  # no phantom worker
    refusals = stderr.count("Dropped a message") + stderr.count("Refused worker")
    assert 11 <= refusals <= 21, stderr  # once per peer, never per message
    assert "a replayed message" in stderr, stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stats"]["total"]["num_requests"] == demo_target.counts()["total"] > 10


def test_a_hostile_spawn_is_refused_and_the_worker_goes_on(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """A fake master asks for 10^12 users, then for users at an infinite
    spawn rate: the worker refuses both, says why, runs nothing, and still
    obeys a well-formed quit."""
    router, worker = fake_master(write_file("dist.py", USER), tmp_path)
    settings = {"host": demo_target.url, "tags": [], "exclude_tags": [], "stop_timeout_s": 0.0}
    try:
        assert router.poll(15_000), "the worker never said ready"
        identity, _ = router.recv_multipart()
        ack = {"type": "ack", "worker_index": 0, "heartbeat_interval_s": 1.0,
               "heartbeat_liveness": 5}  # fmt: skip
        router.send_multipart([identity, msgpack.packb(ack)])
        for users, rate in ((10**12, 1.0), (1, float("inf"))):
            spawn = {"type": "spawn", "run_id": 1, "spawn_rate_per_s": rate, "worker_count": 1,
                     "settings": settings,
                     "user_classes": [{"name": "Visitor", "users": users,
                                       "user_indexes": list(range(min(users, 5)))}]}  # fmt: skip
            router.send_multipart([identity, msgpack.packb(spawn)])
        time.sleep(1)  # time enough to spawn, were the spawns obeyed
        router.send_multipart([identity, msgpack.packb({"type": "quit"})])
        _, stderr = worker.communicate(timeout=20)
    finally:
        router.close()
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "panicked" not in stderr and "Traceback" not in stderr
    assert "a spawn of 1000000000000 users" in stderr and "a spawn rate of inf" in stderr, stderr
    assert demo_target.counts()["total"] == 0


TRACKED = """
import os
from aiotest import AsyncHttpUser, events, task, constant

OUT = os.environ["IDS_DIR"]
LIVE = set()

def note(line):
    with open(os.path.join(OUT, f"{os.getpid()}.log"), "a") as fh:
        fh.write(line + "\\n")

@events.test_stopping.add_listener
def final(environment, **kw):
    note("final " + " ".join(map(str, sorted(LIVE))))

class Tracked(AsyncHttpUser):
    wait_time = constant(0.05)

    async def on_start(self):
        LIVE.add(self.user_index)
        note(f"start {self.user_index}")

    async def on_stop(self):
        LIVE.discard(self.user_index)

    @task
    async def ping(self):
        await self.session.get("/")
"""


def test_a_worker_back_from_missing_gets_fresh_user_indexes(
    write_file, demo_target: DemoTarget, tmp_path: Path
) -> None:
    """Worker A is paused (SIGSTOP) past the liveness time, so its users
    move to B, then resumed: the master gives A indexes anew instead of the
    ones B now runs, and at the end every user_index runs exactly once.
    The exact case is `a_returning_worker_does_not_keep_the_indexes_it_lost`
    in src/cluster/master/tests.rs, which failed before the fix (both
    workers ran indexes 0 and 1); here it is with real processes."""
    path = write_file("tracked.py", TRACKED)
    out = tmp_path / "ids"
    out.mkdir()
    port = free_port()
    workers = Workers(path, port, {"IDS_DIR": str(out)})
    proc = master_proc(
        path, port, demo_target, tmp_path, "--expect-workers", "2",
        "--heartbeat-interval", "0.5", "--json-file", "r.json", run_time="10s", users=6,
        env={"IDS_DIR": str(out)},
    )  # fmt: skip

    def starts() -> dict[str, int]:
        return {f.stem: f.read_text().count("start ") for f in out.iterdir() if f.suffix == ".log"}

    def wait(what: str, check) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline, f"{what}: {starts()}"
            time.sleep(0.05)

    try:
        workers.start(2)
        wait("6 users started", lambda: sum(starts().values()) == 6)
        paused = workers.procs[0]
        os.kill(paused.pid, signal.SIGSTOP)
        try:  # its 3 users move to the other worker
            wait("the users moved", lambda: sum(starts().values()) == 9)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        _, stderr = proc.communicate(timeout=40)
    finally:
        proc.kill()
        workers.stop()
    assert proc.returncode == 0, stderr
    assert "missing" in stderr or "silent" in stderr, stderr
    # Each process's last word: a worker that thought its master lost
    # stopped its users once before (and said so), then joined again.
    logs = {f.stem: f.read_text().splitlines() for f in out.iterdir()}
    finals = [
        [x for x in lines if x.startswith("final")][-1].split()[1:] for lines in logs.values()
    ]
    running = sorted(int(i) for row in finals for i in row)
    assert running == list(range(6)), f"user indexes at the end: {logs}"


@pytest.mark.skipif(not os.path.exists("/usr/bin/unshare"), reason="needs unshare(1)")
def test_a_network_partition_heals(write_file, tmp_path: Path) -> None:
    """For 10 s every packet between the master and its two workers is
    dropped, in a network namespace of the test's own (netns_partition.py),
    while the users' traffic to the target flows. The master finds the
    workers missing, the workers find their master lost, and when the
    network heals they join again and the run goes on to its end with its
    reports, counting everything but what the partition's window lost."""
    path = write_file("dist.py", USER)
    helper = Path(__file__).resolve().parent / "netns_partition.py"
    proc = subprocess.run(
        ["unshare", "-rn", sys.executable, str(helper), str(tmp_path), str(path)],
        capture_output=True, text=True, timeout=58, cwd=tmp_path,
    )  # fmt: skip
    if "Operation not permitted" in proc.stderr:
        pytest.skip(f"no network namespaces here: {proc.stderr.strip()[:300]}")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "partition.json").read_text())
    log = data["log"]
    assert data["master_rc"] == 0, log
    assert "is missing" in log, log  # the partition was real
    assert log.count(" joined (") >= 4, log  # both joined, and both again after it

    def served(at_s: float) -> int:
        return max((n for t, n in data["samples"] if t <= at_s), default=0)

    end = data["samples"][-1][0]
    assert served(end) - served(data["healed"] + 5) > 50, "no traffic after the heal"
    total = json.loads((tmp_path / "r.json").read_text())["stats"]["total"]["num_requests"]
    # Reports in flight when the network broke are lost with it (the link
    # cannot tell what arrived): at most from 1.5 s before it to the heal.
    window = served(data["healed"]) - served(data["partitioned"] - 1.5)
    assert served(end) - window <= total <= served(end)
