"""A master, two workers and a counting target inside the network namespace
this process was started in (``unshare -rn python netns_partition.py
OUT_DIR AIOTESTFILE``), and a 10 s network partition between the master and
its workers made with policy routing: the master listens on 127.0.0.2, the
target on 127.0.0.1, and for the partition every packet to or from
127.0.0.2 is dropped (``ip rule ... blackhole``) while the users' traffic to
the target flows. Writes OUT_DIR/partition.json: the master's exit code and
log, and the target's request count sampled every 0.1 s with the times the
partition began and healed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import AIOTEST, CountingServer

MASTER = "127.0.0.2"
PARTITION_S = 10.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def main(out_dir: str, aiotestfile: str) -> int:
    ip("link", "set", "lo", "up")
    # The local table first at 100, so that rules at 10 and 11 can drop the
    # master's packets before it (loopback is routed by the local table).
    ip("rule", "add", "pref", "100", "lookup", "local")
    ip("rule", "del", "pref", "0")
    server = CountingServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    aiotest = AIOTEST or shutil.which("aiotest") or "aiotest"
    common = ["-f", aiotestfile, "--heartbeat-interval", "0.5"]
    master = subprocess.Popen(
        [aiotest, *common, "--master", "--master-bind-host", MASTER, "--headless",
         "--expect-workers", "2", "-u", "4", "-r", "100", "-t", "22s", "-H", server.url,
         "--json-file", os.path.join(out_dir, "r.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = [aiotest, *common, "--worker", "--master-host", MASTER]
    workers = [
        subprocess.Popen(worker, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    samples: list[tuple[float, int]] = []
    marks: dict[str, float] = {}
    try:
        start = time.monotonic()

        def sample() -> None:
            samples.append((time.monotonic() - start, server.total()))

        while server.total() < 100 and time.monotonic() - start < 20:
            sample()
            time.sleep(0.1)
        time.sleep(2)  # a steady run first
        marks["partitioned"] = time.monotonic() - start
        ip("rule", "add", "pref", "10", "to", MASTER, "blackhole")
        ip("rule", "add", "pref", "11", "from", MASTER, "blackhole")
        while time.monotonic() - start < marks["partitioned"] + PARTITION_S:
            sample()
            time.sleep(0.1)
        ip("rule", "del", "pref", "10")
        ip("rule", "del", "pref", "11")
        marks["healed"] = time.monotonic() - start
        while master.poll() is None and time.monotonic() - start < 50:
            sample()
            time.sleep(0.1)
        _, log = master.communicate(timeout=10)
    finally:
        for p in (master, *workers):
            p.kill()
            p.wait()
        server.shutdown()
    sample()
    result = {"master_rc": master.returncode, "log": log, "samples": samples, **marks}
    Path(out_dir, "partition.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
