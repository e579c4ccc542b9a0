"""Runs one command against a counting target, both inside the network
namespace this process was started in (``unshare -rn python
netns_target.py OUT_DIR -- COMMAND...``): only loopback exists there, so a
locustfile's requests to other hosts fail at once without leaving the
machine. ``{url}`` in COMMAND becomes the target's URL; the target's counts
are written to OUT_DIR/counts.json; the exit code is the command's."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CountingServer


def main(argv: list[str]) -> int:
    out_dir, sep, *command = argv
    assert sep == "--", "usage: netns_target.py OUT_DIR -- COMMAND..."
    up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        print(f"unshare failed: cannot bring loopback up: {up.stderr}", file=sys.stderr)
        return 2
    server = CountingServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = subprocess.run([a.replace("{url}", server.url) for a in command], timeout=45)
    finally:
        server.shutdown()
    Path(out_dir, "counts.json").write_text(json.dumps(dict(server.counts)))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
