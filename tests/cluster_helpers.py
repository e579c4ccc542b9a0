"""What the cluster tests share: a user class that counts its samples,
worker processes, a master process, and pyzmq peers that can send what
aiotest's own worker never would."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import msgpack
import zmq
from conftest import AIOTEST, DemoTarget, free_port

USER = """
import os, random
from aiotest import AsyncHttpUser, events, task, constant

SAMPLES = os.environ.get("SAMPLES_DIR")

if SAMPLES:
    @events.request.add_listener
    def keep(request_type, name, response_time, **kw):
        with open(os.path.join(SAMPLES, f"{os.getpid()}.txt"), "a") as fh:
            fh.write(f"{round(response_time * 1000)}\\n")

class Visitor(AsyncHttpUser):
    wait_time = constant(0.01)

    @task
    async def hello(self):
        await self.session.get("/delay/" + str(random.choice([1, 3, 7, 15, 30])), name="/delay")
"""


class Workers:
    """Worker processes for one master port; all stopped at the end."""

    def __init__(self, aiotestfile: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.aiotestfile, self.port, self.env = aiotestfile, port, env
        self.procs: list[subprocess.Popen[str]] = []
        #: Each stopped worker's stderr (its log).
        self.logs: list[str] = []

    def start(self, n: int = 1, *extra: str) -> None:
        """Starts ``n`` workers, with ``extra`` arguments."""
        for _ in range(n):
            self.procs.append(
                subprocess.Popen(
                    [
                        AIOTEST,
                        "-f",
                        str(self.aiotestfile),
                        "--worker",
                        "--master-port",
                        str(self.port),
                        "--heartbeat-interval",
                        "0.5",
                        *extra,
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**os.environ, **(self.env or {})},
                )
            )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                _, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            self.logs.append(err or "")
        self.procs = []


def master_proc(
    path: Path,
    port: int,
    target: DemoTarget,
    tmp_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    run_time: str = "1s",
    users: int = 2,
) -> subprocess.Popen[str]:
    """A headless master on 127.0.0.1:``port`` running ``users`` users for
    ``run_time`` against ``target``."""
    return subprocess.Popen(
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
            "-u",
            str(users),
            "-r",
            "100",
            "-t",
            run_time,
            "-H",
            target.url,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


def fake_master(path: Path, tmp_path: Path) -> tuple[zmq.Socket[bytes], subprocess.Popen[str]]:
    """A pyzmq ROUTER posing as a master on a free port, and a real worker
    process running ``path`` connected to it. The caller closes the one and
    kills the other."""
    port = free_port()
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"tcp://127.0.0.1:{port}")
    worker = subprocess.Popen(
        [AIOTEST, "-f", str(path), "--worker", "--master-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    return router, worker


def dealer(port: int) -> zmq.Socket[bytes]:
    """A libzmq DEALER (pyzmq) connected to the master: a peer that can send
    what aiotest's own worker never would."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def recv_msg(sock: zmq.Socket[bytes], timeout_s: float = 10.0) -> dict[str, object]:
    assert sock.poll(int(timeout_s * 1000)), "no reply from the master"
    return msgpack.unpackb(sock.recv())


def zmtp_peer(port: int) -> socket.socket:
    """A raw TCP peer past ZMTP 3.1's greeting and NULL handshake (RFC 23 and
    37), free to send frame headers no ZeroMQ library would."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    mechanism = b"NULL".ljust(20, b"\0")
    sock.sendall(b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + mechanism + bytes(32))
    greeting = b""
    while len(greeting) < 64:
        greeting += sock.recv(64 - len(greeting))
    ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    sock.sendall(bytes([0x04, len(ready)]) + ready)
    return sock


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Proxy(threading.Thread):
    """A man in the middle between a worker and its master (a pyzmq ROUTER
    for the worker, a DEALER to the master) that forwards every frame and
    keeps what the worker sent, to replay it."""

    def __init__(self, listen_port: int, master_port: int) -> None:
        super().__init__(daemon=True)
        self.listen_port, self.master_port = listen_port, master_port
        self.captured: list[bytes] = []
        self.lock = threading.Lock()
        self.replays = 0
        self.replayed = threading.Event()
        self.done = threading.Event()

    def frames(self) -> list[bytes]:
        with self.lock:
            return list(self.captured)

    def replay(self, count: int) -> None:
        """Replays ``count`` captured sealed frames on the worker's own
        connection."""
        self.replays = count
        assert self.replayed.wait(20), "the proxy did not replay"

    def run(self) -> None:
        ctx = zmq.Context.instance()
        front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        for sock in (front, back):
            sock.setsockopt(zmq.LINGER, 0)
        front.bind(f"tcp://127.0.0.1:{self.listen_port}")
        back.connect(f"tcp://127.0.0.1:{self.master_port}")
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        identity = b""
        while not self.done.is_set():
            ready = dict(poller.poll(50))
            if front in ready:
                identity, frame = front.recv_multipart()
                with self.lock:
                    self.captured.append(frame)
                back.send(frame)
            if back in ready and identity:
                front.send_multipart([identity, back.recv()])
            if self.replays and not self.replayed.is_set():
                # The sealed frames: the session's ready, heartbeats, stats.
                frames = [f for f in self.frames() if f[:1] == b"\0"]
                for i in range(self.replays):
                    back.send(frames[i % len(frames)])
                self.replayed.set()
        front.close()
        back.close()
