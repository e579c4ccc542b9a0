"""aiotest's benchmarks, each measured against a reference in the same run.

    python bench/run.py                      # every scenario, 10 s runs, median of 3
    python bench/run.py throughput -d 5 -n 1 --json bench/result.json

Scenarios (see bench/README.md for the targets):
  throughput  50 users, zero wait, one core: requests/s as a ratio to wrk's
              (and to Locust FastHttpUser and oha when they are installed).
  locustfile  one blocking-style FastHttpUser locustfile under aiotest and
              under Locust, as a ratio to aiotest's own async user.
  latency     2,000 requests/s at a fixed rate: p50/p99 next to a
              latency-corrected open-model tool (oha -q, or wrk2), if present.
  memory      10,000 users at wait_time = constant(1): peak RSS per user.
  memory-tls  5,000 users at constant(1) over HTTPS: peak RSS per user
              above a 1-user run's.
  spin        paced users at 2,000 req/s with the loop's spin on, off and
              adaptive: p99 and CPU per request.
  startup     `aiotest --version`, and 10,000 users at --spawn-rate 10000.
  master      a real master (core 0) fed by 1,000 simulated workers (core 1,
              bench/simulate_workers.rs), each reporting 20 endpoints every
              second: the master's CPU and how far its merged stats lag.
  master-5k   the same with 5,000 workers arriving at once, and how long
              until all are registered.

The target is nginx (Debian's package) on core 0 serving a 5-byte body when
it is installed, else aiotest's own demo target. Load generators run on
core 1 (taskset). Only loopback is ever loaded, and every run is bounded by
its duration. Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

TARGET_CORE, LOAD_CORE = "0", "1"
CONNECTIONS = 50

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr error;
worker_rlimit_nofile 65536;
events {{ worker_connections 32768; }}
http {{
    access_log off;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location = /hello {{ default_type text/plain; return 200 "hello"; }}
    }}
    ssl_certificate {tmp}/cert.pem;
    ssl_certificate_key {tmp}/key.pem;
    ssl_session_cache shared:tls:10m;
    # nginx before 1.23.4 leaves TLS 1.3 out unless asked.
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        location = /hello {{ default_type text/plain; return 200 "hello"; }}
    }}
    server {{
        listen 127.0.0.1:{h2_port} ssl http2;
        http2_max_requests 1000000;
        location = /hello {{ default_type text/plain; return 200 "hello"; }}
    }}
}}
"""

#: The https targets' URLs (nginx with a self-signed certificate; the
#: second offers h2 by ALPN), when nginx and openssl are installed.
HTTPS_URL: str | None = None
H2_URL: str | None = None

HELLO_USER = """
from aiotest import AsyncHttpUser, constant, task

class Hello(AsyncHttpUser):
    wait_time = constant({wait})

    @task
    async def hello(self):
        await self.session.get("/hello")
"""

PACED_USER = """
from aiotest import AsyncHttpUser, constant_pacing, task

class Paced(AsyncHttpUser):
    wait_time = constant_pacing({pace_s})

    @task
    async def hello(self):
        await self.session.get("/hello")
"""

LOCUST_USER = """
from locust import FastHttpUser, constant, task

class Hello(FastHttpUser):
    wait_time = constant(0)

    @task
    def hello(self):
        self.client.get("/hello")
"""


@dataclass
class Row:
    """One measured tool in one scenario. Times in µs, memory in bytes."""

    scenario: str
    tool: str
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    peak_rss_bytes: int | None = None
    ratio: float | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)
    #: The tool's CPU (user + system) per request, when measured.
    cpu_per_request_us: float | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") else argv


def run_with_rss(
    argv: list[str], timeout_s: float, cwd: str | None = None, env: dict[str, str] | None = None
) -> tuple[str, str, int, float]:
    """Runs ``argv``; returns stdout, stderr, the child's peak RSS in bytes
    and its CPU seconds, user + system (``os.wait4``'s rusage of exactly
    that child)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, cwd=cwd, env=full_env)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, _status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        cpu_s = usage.ru_utime + usage.ru_stime
        return out.read(), err.read(), usage.ru_maxrss * 1024, cpu_s


@contextmanager
def target() -> Iterator[tuple[str, str]]:
    """Starts the target on TARGET_CORE; yields (base URL, description)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
        )
        if nginx and shutil.which("openssl"):
            global HTTPS_URL, H2_URL
            tls_port, h2_port = free_port(), free_port()
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                 "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1"],
                cwd=tmp, check=True, capture_output=True,
            )  # fmt: skip
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(tmp=tmp, port=port, tls_port=tls_port, h2_port=h2_port)
            )
            HTTPS_URL = f"https://127.0.0.1:{tls_port}"
            H2_URL = f"https://127.0.0.1:{h2_port}"
            argv = pinned(TARGET_CORE, [nginx, "-c", str(conf), "-p", tmp])
            what = "nginx (1 worker, core 0), 5-byte body"
        else:
            argv = pinned(TARGET_CORE, [aiotest_cmd(), "demo-target", "--port", str(port)])
            what = "aiotest demo-target (core 0): nginx is not installed"
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}", what
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def aiotest_cmd() -> str:
    found = shutil.which("aiotest") or str(Path(sys.executable).with_name("aiotest"))
    if not os.path.exists(found):
        sys.exit("bench: the aiotest command is not installed: pip install . (a release build)")
    return found


# ------------------------------------------------------------ the tools


def wrk(url: str, duration_s: int, rate: int | None = None) -> Row:
    binary = "wrk2" if rate else "wrk"
    if not shutil.which(binary):
        return Row("", binary, note="not installed")
    argv = [binary, "-t1", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency"]
    if rate:
        argv += [f"-R{rate}"]
    out, _, rss, _ = run_with_rss(pinned(LOAD_CORE, [*argv, f"{url}/hello"]), duration_s + 30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+\w+)", out, re.M))
    return Row(
        "",
        binary,
        rps=rps,
        p50_us=_us(lat.get("50")),
        p99_us=_us(lat.get("99")),
        peak_rss_bytes=rss,
    )


def _us(text: str | None) -> float | None:
    if not text:
        return None
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def oha(url: str, duration_s: int, rate: int | None = None) -> Row:
    if not shutil.which("oha"):
        return Row("", "oha", note="not installed")
    argv = [
        "oha",
        "-c",
        str(CONNECTIONS),
        "-z",
        f"{duration_s}s",
        "--no-tui",
        "--output-format",
        "json",
    ]
    if rate:
        argv += ["-q", str(rate), "--latency-correction"]
    out, _, rss, _ = run_with_rss(pinned(LOAD_CORE, [*argv, f"{url}/hello"]), duration_s + 30)
    doc = json.loads(out)
    pct = doc.get("latencyPercentiles", {})
    return Row(
        "",
        "oha",
        rps=doc["summary"]["requestsPerSec"],
        p50_us=pct.get("p50", 0) * 1e6,
        p99_us=pct.get("p99", 0) * 1e6,
        peak_rss_bytes=rss,
    )


def aiotest(
    url: str,
    duration_s: int,
    script: str,
    users: int,
    spawn_rate: int,
    *extra: str,
    env: dict[str, str] | None = None,
) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_aiotestfile.py"
        path.write_text(script)
        result = Path(tmp) / "r.json"
        argv = [
            aiotest_cmd(), "-f", str(path), "--headless", "--only-summary", "-u", str(users),
            "-r", str(spawn_rate), "-t", f"{duration_s}s", "-H", url, "--json-file", str(result),
            *extra,
        ]  # fmt: skip
        _, err, rss, cpu_s = run_with_rss(
            pinned(LOAD_CORE, argv), duration_s + 60, cwd=tmp, env=env
        )
        if not result.exists():
            return Row("", "aiotest", note=f"no result: {err.strip()[-300:]}")
        total = json.loads(result.read_text())["stats"]["total"]
        cpu_per_request_us = cpu_s * 1e6 / max(total["num_requests"], 1)
    span = (total["last_request_s"] or 0) - (total["first_request_s"] or 0)
    pct = dict(total["percentiles_us"])
    return Row(
        "",
        "aiotest",
        rps=total["num_requests"] / span if span > 0 else None,
        p50_us=pct.get("50%"),
        p99_us=pct.get("99%"),
        peak_rss_bytes=rss,
        note=f"{total['num_failures']} failures" if total["num_failures"] else "",
        cpu_per_request_us=cpu_per_request_us,
    )


def locust(url: str, duration_s: int) -> Row:
    if not shutil.which("locust"):
        return Row("", "locust FastHttpUser", note="not installed")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "locustfile.py"
        path.write_text(LOCUST_USER)
        argv = [
            "locust", "-f", str(path), "--headless", "--only-summary", "-u", str(CONNECTIONS),
            "-r", "1000", "-t", f"{duration_s}s", "-H", url, "--csv", f"{tmp}/l",
        ]  # fmt: skip
        _, _, rss, _ = run_with_rss(pinned(LOAD_CORE, argv), duration_s + 60, cwd=tmp)
        rows = (Path(tmp) / "l_stats.csv").read_text().splitlines()
    agg = next(r.split(",") for r in rows if ",Aggregated," in r)
    return Row("", "locust FastHttpUser", rps=float(agg[9]), p50_us=float(agg[11]) * 1e3,
               p99_us=float(agg[18]) * 1e3, peak_rss_bytes=rss)  # fmt: skip


def median_of(rows: list[Row]) -> Row:
    """The run with the median requests/s, listing every run's."""
    measured = [r for r in rows if r.rps is not None]
    if not measured:
        return rows[0]
    measured.sort(key=lambda r: r.rps or 0)
    best = measured[len(measured) // 2]
    best.runs = [round(r.rps or 0) for r in measured]
    return best


# ------------------------------------------------------------ scenarios


def in_rounds(scenario: str, tools: list[Callable[[], Row]], n: int) -> list[Row]:
    """Runs the tools in ``n`` rounds of one run each, so that the machine's
    drift (15-50 % over minutes on a shared VM) hits every tool alike; each
    tool's ratio is the median of its ratios to the first tool's run in
    the same round."""
    rounds = [[measure() for measure in tools] for _ in range(n)]
    rows = []
    for k in range(len(tools)):
        ratios = sorted(r[k].rps / r[0].rps for r in rounds if r[k].rps is not None and r[0].rps)
        row = median_of([r[k] for r in rounds])
        row.scenario = scenario
        if ratios:
            row.ratio = ratios[len(ratios) // 2]
        rows.append(row)
    return rows


def throughput(url: str, args: argparse.Namespace) -> list[Row]:
    d = args.duration
    return in_rounds(
        "throughput",
        [
            lambda: wrk(url, d),
            lambda: aiotest(url, d, HELLO_USER.format(wait=0), CONNECTIONS, 1000),
            lambda: locust(url, d),
            lambda: oha(url, d),
        ],
        args.runs,
    )


def over_tls(
    scenario: str, url: str | None, reference: Callable[[str, int], Row], args: argparse.Namespace
) -> list[Row]:
    """``reference`` against aiotest's 50 zero-wait users at the https
    ``url``, with --insecure (the certificate is self-signed)."""
    if url is None:
        return [Row(scenario, "aiotest", note="needs nginx and openssl")]
    d, script = args.duration, HELLO_USER.format(wait=0)
    return in_rounds(
        scenario,
        [
            lambda: reference(url, d),
            lambda: aiotest(url, d, script, CONNECTIONS, 1000, "--insecure"),
        ],
        args.runs,
    )


def https(url: str, args: argparse.Namespace) -> list[Row]:
    """HTTPS over HTTP/1.1 (TLS 1.3, keep-alive): wrk over TLS."""
    return over_tls("https", HTTPS_URL, wrk, args)


def h2load(url: str, duration_s: int) -> Row:
    """h2load (Debian's nghttp2-client): 50 connections, one stream each."""
    if not shutil.which("h2load"):
        return Row("", "h2load", note="not installed (apt-get install nghttp2-client)")
    argv = ["h2load", f"-c{CONNECTIONS}", "-m1", f"-D{duration_s}", f"{url}/hello"]
    out, _, rss, _ = run_with_rss(pinned(LOAD_CORE, argv), duration_s + 30)
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    return Row("", "h2load -c 50 -m 1", rps=rps, peak_rss_bytes=rss)


def http2(url: str, args: argparse.Namespace) -> list[Row]:
    """HTTP/2 over TLS: h2load, against users each with its own
    multiplexed connection (h2 chosen by ALPN)."""
    return over_tls("http2", H2_URL, h2load, args)


def locustfile(url: str, args: argparse.Namespace) -> list[Row]:
    """The same blocking-style FastHttpUser locustfile under aiotest and
    under Locust, next to aiotest's own async user; ratios to the async run."""
    d = args.duration
    rows = in_rounds(
        "locustfile",
        [
            lambda: aiotest(url, d, HELLO_USER.format(wait=0), CONNECTIONS, 1000),
            lambda: aiotest(url, d, LOCUST_USER, CONNECTIONS, 1000),
            lambda: locust(url, d),
        ],
        args.runs,
    )
    rows[0].tool, rows[1].tool = "aiotest AsyncHttpUser", "aiotest, the locustfile"
    if rows[1].rps and rows[2].rps:
        rows[1].note = f"{rows[1].rps / rows[2].rps:.1f} x Locust on the same file"
    return rows


def latency(url: str, args: argparse.Namespace) -> list[Row]:
    rate = 2000
    d = args.duration
    pace_s = CONNECTIONS / rate
    # Rounds, as in throughput: one run of aiotest and of the corrected
    # reference each; the table shows the round with the median p99 ratio,
    # and the note every round's p99s (µs, aiotest/reference).
    rounds = []
    for _ in range(args.runs):
        ours = aiotest(url, d, PACED_USER.format(pace_s=pace_s), CONNECTIONS, 1000)
        ref = next((r for r in (oha(url, d, rate), wrk(url, d, rate)) if r.rps is not None), None)
        rounds.append((ours, ref))
    paired = [(o, r) for o, r in rounds if r is not None and r.p99_us and o.p99_us]
    if not paired:
        ours = rounds[0][0]
        ours.scenario = "latency @2000/s"
        ours.note = "no latency-corrected reference installed (oha, wrk2)"
        return [ours]
    paired.sort(key=lambda pair: (pair[0].p99_us or 0) / (pair[1].p99_us or 1))
    ours, ref = paired[len(paired) // 2]
    ours.ratio = (ours.p99_us or 0) / (ref.p99_us or 1)
    each = ", ".join(f"{o.p99_us:.0f}/{r.p99_us:.0f}" for o, r in paired)
    ours.note = f"p99 ratio to {ref.tool}; rounds' p99 us {each}"
    for r in (ref, ours):
        r.scenario = "latency @2000/s"
    return [ref, ours]


def memory(url: str, args: argparse.Namespace) -> list[Row]:
    users = 10_000
    row = aiotest(url, max(args.duration, 15), HELLO_USER.format(wait=1), users, 10_000)
    row.scenario = "memory 10k users"
    if row.peak_rss_bytes:
        row.note = f"{row.peak_rss_bytes / users / 1024:.1f} KB per user"
    return [row]


def spin(url: str, args: argparse.Namespace) -> list[Row]:
    """Paced users at 2,000 req/s with the event loop's spin before timers
    on, off and adaptive (AIOTEST_SPIN): p99 and CPU per request, the
    trade the spin makes (python/aiotest/_bridge.py)."""
    rate, d = 2000, args.duration
    script = PACED_USER.format(pace_s=CONNECTIONS / rate)
    rows = []
    for policy in ("on", "off", "auto"):
        runs = [
            aiotest(url, d, script, CONNECTIONS, 1000, env={"AIOTEST_SPIN": policy})
            for _ in range(args.runs)
        ]
        runs.sort(key=lambda r: r.p99_us or 0)
        row = runs[len(runs) // 2]
        row.scenario, row.tool = "spin @2000/s", f"aiotest AIOTEST_SPIN={policy}"
        row.note = (
            f"{row.cpu_per_request_us or 0:.0f} us CPU per request; rounds' p99 us "
            + ", ".join(f"{r.p99_us:.0f}" for r in runs if r.p99_us)
        )
        rows.append(row)
    return rows


def memory_tls(url: str, args: argparse.Namespace) -> list[Row]:
    """5,000 users at ``constant(1)`` over HTTPS (keep-alive TLS 1.3
    connections, one per user): peak RSS per user above the process's
    own, which a 1-user run of the same file measures. Twice: all users
    started at once (every handshake and first request in flight
    together), and ramped up at 1,000 users/s."""
    if HTTPS_URL is None:
        return [Row("memory-tls 5k users", "aiotest", note="needs nginx and openssl")]
    users, d = 5_000, max(args.duration, 15)
    script = HELLO_USER.format(wait=1)
    base = aiotest(HTTPS_URL, d, script, 1, 1, "--insecure")
    rows = []
    for rate in (users, 1_000):
        row = aiotest(HTTPS_URL, d, script, users, rate, "--insecure")
        row.scenario, row.tool = "memory-tls 5k users", f"aiotest -r {rate}"
        if row.peak_rss_bytes and base.peak_rss_bytes:
            per_user = (row.peak_rss_bytes - base.peak_rss_bytes) / users / 1024
            row.note = (
                f"{per_user:.1f} KB per user above the 1-user run's "
                f"{base.peak_rss_bytes / 2**20:.0f} MB"
            )
        rows.append(row)
    return rows


def startup(url: str, args: argparse.Namespace) -> list[Row]:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        subprocess.run([aiotest_cmd(), "--version"], capture_output=True, check=True)
        times.append(time.perf_counter() - began)
    version = Row(
        "startup", "aiotest --version", note=f"{statistics.median(times):.3f} s (median of 5)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.py"
        path.write_text(HELLO_USER.format(wait=1))
        argv = [aiotest_cmd(), "-f", str(path), "--headless", "--only-summary", "-u", "10000",
                "-r", "10000", "-t", "6s", "-H", url]  # fmt: skip
        began = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp
        )
        spawned = None
        for line in proc.stderr:  # type: ignore[union-attr]
            if "All users spawned" in line:
                spawned = time.monotonic() - began
                break
        proc.communicate(timeout=60)
    ramp = Row("startup", "10k users at -r 10000",
               note=f"{spawned:.2f} s to all running" if spawned else "never all spawned")  # fmt: skip
    return [version, ramp]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def simulator_cmd() -> str:
    """Builds bench/simulate_workers.rs (release) once; returns its path."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--example", "simulate_workers"],
        cwd=root,
        check=True,
    )
    return str(root / "target" / "release" / "examples" / "simulate_workers")


def master(
    url: str, args: argparse.Namespace, workers: int = 1000, endpoints: int = 20
) -> list[Row]:
    """Issue 4 target 4: the master keeps up with 1,000 workers reporting
    every second. The master runs on TARGET_CORE (the HTTP target is idle
    here: simulated workers send no requests), the simulator on LOAD_CORE."""
    import urllib.request

    duration_s = max(args.duration, 30)
    simulator = simulator_cmd()
    port, web_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.py"
        path.write_text(HELLO_USER.format(wait=1))
        master_argv = pinned(TARGET_CORE, [
            aiotest_cmd(), "-f", str(path), "--master", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(port), "--expect-workers", str(workers), "--autostart",
            "-u", str(workers), "-r", str(workers), "--web-host", "127.0.0.1",
            "--web-port", str(web_port), "-H", url, "--heartbeat-liveness", "10", "-L", "WARNING",
        ])  # fmt: skip
        boss = subprocess.Popen(
            master_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp
        )
        sim = subprocess.Popen(
            pinned(LOAD_CORE, [simulator, "--port", str(port), "--workers", str(workers),
                               "--endpoints", str(endpoints), "--duration-s", str(duration_s + 20)]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sent: list[tuple[float, int]] = []
        seen: list[tuple[float, int]] = []
        cpu_from = cpu_to = None
        sim_started = time.time()
        registered_s = None
        try:
            wait_for_port(web_port, timeout_s=30)
            began = time.time()
            while time.time() - began < duration_s + 10:
                # The simulator's progress lines, then the master's view.
                import select

                while select.select([sim.stdout], [], [], 0)[0]:
                    line = sim.stdout.readline()  # type: ignore[union-attr]
                    if line.startswith("sent "):
                        _, t, n = line.split()
                        sent.append((float(t), int(n)))
                    elif not line:
                        break
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{web_port}/stats/requests", timeout=10
                ) as r:
                    doc = json.load(r)
                total = next(s for s in doc["stats"] if s["name"] == "Aggregated")["num_requests"]
                seen.append((time.time(), total))
                if registered_s is None and doc.get("worker_count", 0) >= workers:
                    registered_s = time.time() - sim_started
                elapsed = time.time() - began
                if cpu_from is None and elapsed >= 10:
                    cpu_from = (time.monotonic(), _cpu_s(boss.pid))
                if cpu_from is not None and elapsed <= duration_s + 5:
                    cpu_to = (time.monotonic(), _cpu_s(boss.pid))
                time.sleep(0.25)
        finally:
            sim.kill()
            boss.send_signal(2)
            try:
                boss.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                boss.kill()
            sim.communicate()
    # Lag: for each look at the master, how long ago had the simulator sent
    # as many requests as the master then showed? Only once it is steady.
    lags = []
    for t_seen, n_seen in seen:
        if t_seen - seen[0][0] < 10 or n_seen == 0:
            continue
        t_sent = next((t for t, n in sent if n >= n_seen), None)
        if t_sent is not None:
            lags.append(max(0.0, t_seen - t_sent))
    cpu = None
    if cpu_from and cpu_to and cpu_to[0] > cpu_from[0]:
        cpu = 100 * (cpu_to[1] - cpu_from[1]) / (cpu_to[0] - cpu_from[0])
    rate = None
    if len(seen) > 2:
        rate = (seen[-1][1] - seen[len(seen) // 2][1]) / max(
            seen[-1][0] - seen[len(seen) // 2][0], 1e-3
        )
    registration = (
        f", all registered {registered_s:.1f} s after the simulator started"
        if registered_s is not None
        else ", not all registered"
    )
    note = (
        f"{workers} workers x {endpoints} endpoints: master CPU "
        + (f"{cpu:.0f}% of a core" if cpu is not None else "unmeasured")
        + (
            f", stats lag max {max(lags):.2f} s (median {statistics.median(lags):.2f} s)"
            if lags
            else ", no lag samples"
        )
        + registration
    )
    return [Row(f"master {workers} workers", "aiotest --master", rps=rate, note=note)]


def master_5k(url: str, args: argparse.Namespace) -> list[Row]:
    """The master scenario at 5,000 simulated workers, arriving at once."""
    return master(url, args, workers=5000)


SCENARIOS = {
    "throughput": throughput,
    "https": https,
    "http2": http2,
    "locustfile": locustfile,
    "latency": latency,
    "memory": memory,
    "memory-tls": memory_tls,
    "spin": spin,
    "startup": startup,
    "master": master,
    "master-5k": master_5k,
}


def table(rows: list[Row]) -> str:
    head = f"{'scenario':<18} {'tool':<24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7} {'ratio':>6}  note"
    lines = [head, "-" * len(head)]
    for r in rows:

        def f(v: float | None, scale: float = 1, fmt: str = ".0f") -> str:
            return "-" if v is None else format(v / scale, fmt)

        lines.append(
            f"{r.scenario:<18} {r.tool:<24} {f(r.rps):>9} {f(r.p50_us, 1e3, '.2f'):>8} "
            f"{f(r.p99_us, 1e3, '.2f'):>8} {f(r.peak_rss_bytes, 1e6, '.0f'):>7} "
            f"{f(r.ratio, 1, '.3f'):>6}  {r.note}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    ap.add_argument("-d", "--duration", type=int, default=10, help="seconds per run (default 10)")
    ap.add_argument(
        "-n", "--runs", type=int, default=3, help="runs per tool; the median is kept (default 3)"
    )
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}: pick from {', '.join(SCENARIOS)}")
    if (os.cpu_count() or 1) < 2:
        print(
            "bench: fewer than 2 cores: target and load share one, ratios mean less",
            file=sys.stderr,
        )
    rows: list[Row] = []
    with target() as (url, what):
        print(
            f"target: {what}; load on core {LOAD_CORE}; {args.duration} s runs, median of {args.runs}"
        )
        for name in args.scenarios or list(SCENARIOS):
            rows += SCENARIOS[name](url, args)
            print(table(rows).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if args.json:
        doc = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "target": what,
            "duration_s": args.duration,
            "runs": args.runs,
            "rows": [asdict(r) for r in rows],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
