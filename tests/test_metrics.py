"""GET /metrics scraped by a real Prometheus server (Debian's `prometheus`),
started by the test with a scrape config pointing at aiotest: once the run
ended, Prometheus' HTTP API gives the totals the target server counted. And
--otlp-endpoint's pushes, received by a server the test runs and decoded
with the OpenTelemetry project's own protobuf classes (`opentelemetry-proto`):
the last push holds the same totals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    AIOTEST,
    CountingServer,
    LoopbackServer,
    free_port,
    run_aiotest,
    serving,
    wait_for_port,
)

PROMETHEUS = shutil.which("prometheus")

USER = """
from aiotest import AsyncHttpUser, task, constant

class Shopper(AsyncHttpUser):
    wait_time = constant(0.02)

    @task(3)
    async def browse(self):
        await self.session.get("/browse")

    @task
    async def broken(self):
        await self.session.get("/status/500", name="broken")
"""

SCRAPE_CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: aiotest
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def query(prometheus_port: int, promql: str) -> float | None:
    """The value of an instant query, or None when it has no result."""
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql}
    )
    with urllib.request.urlopen(url, timeout=5) as resp:
        data = json.load(resp)["data"]["result"]
    return float(data[0]["value"][1]) if data else None


def wait_ready(port: int, timeout_s: float = 30) -> None:
    """Waits for Prometheus' /-/ready: its API answers 503 until its
    storage is open."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "Prometheus never became ready"
        time.sleep(0.1)


@pytest.fixture
def prometheus(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Prometheus server scraping 127.0.0.1:<the port it yields> each
    second; yields (scraped port, Prometheus' own port)."""
    if PROMETHEUS is None:
        if os.environ.get("AIOTEST_REQUIRE_PROMETHEUS"):
            pytest.fail("prometheus is not installed (apt-get install prometheus)")
        pytest.skip("prometheus is not installed")
    scraped, own = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(port=scraped))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{own}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        wait_for_port(own, timeout_s=30)
        wait_ready(own)
        yield scraped, own
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_prometheus_scrapes_the_totals_the_server_counted(
    prometheus, http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    scraped, prom = prometheus
    path = write_file("shop.py", USER)
    # The web UI's --autostart and --autoquit: the run ends, and the
    # process serves its final figures for Prometheus' next scrapes.
    run = subprocess.Popen(
        [AIOTEST, "-f", str(path), "--autostart", "--autoquit", "30", "-u", "3", "-r", "10",
         "-t", "3s", "-H", http_server.url, "--web-host", "127.0.0.1",
         "--web-port", str(scraped), "--metrics-buckets", "0.001,0.01,0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            stopped = query(prom, 'aiotest_run_state{state="stopped"}')
            scraped_total = query(prom, "sum(aiotest_requests_total)")
            if stopped == 1 and scraped_total == http_server.total():
                break
            time.sleep(0.5)
        served = dict(http_server.counts)
        assert served["GET /browse"] > 0 and served["GET /status/500"] > 0
        assert query(prom, "sum(aiotest_requests_total)") == sum(served.values())
        assert query(prom, 'aiotest_requests_total{name="/browse"}') == served["GET /browse"]
        assert query(prom, "sum(aiotest_failures_total)") == served["GET /status/500"]
        assert query(prom, 'aiotest_failures_total{name="/browse"}') == 0
        # The histogram's +Inf bucket and count are the request count, and
        # the bounds are the ones asked for.
        broken = served["GET /status/500"]
        assert query(prom, 'aiotest_response_time_seconds_count{name="broken"}') == broken
        assert (
            query(prom, 'aiotest_response_time_seconds_bucket{name="broken",le="+Inf"}') == broken
        )
        assert (
            query(prom, 'aiotest_response_time_seconds_bucket{name="broken",le="0.1"}') is not None
        )
        assert query(prom, 'aiotest_response_time_seconds_bucket{name="broken",le="0.25"}') is None
        assert query(prom, 'aiotest_users{user_class="Shopper"}') == 0  # stopped
        assert query(prom, "aiotest_cpu_percent") is not None
    finally:
        run.terminate()
        run.communicate(timeout=30)


class _OtlpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OtlpReceiver

    def do_POST(self) -> None:  # the OTLP/HTTP receiver of a collector
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.pushes.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class OtlpReceiver(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_OtlpHandler)
        #: (path, content type, body) of each push.
        self.pushes: list[tuple[str, str, bytes]] = []


def test_otlp_pushes_carry_the_totals_the_server_counted(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    metrics_pb2 = pytest.importorskip(
        "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2"
    )
    path = write_file("shop.py", USER)
    with serving(OtlpReceiver()) as receiver:
        result = run_aiotest(
            "-f", str(path), "--headless", "-u", "3", "-r", "10", "-t", "3s",
            "-H", http_server.url, "--otlp-endpoint", receiver.url, "--no-web-server",
            cwd=tmp_path,
        )  # fmt: skip
        pushes = list(receiver.pushes)
    assert result.returncode == 1, result.stderr  # the /status/500 failures
    assert len(pushes) >= 3  # every second, and the last one at the end
    assert {(p, ctype) for p, ctype, _ in pushes} == {("/v1/metrics", "application/x-protobuf")}
    last = metrics_pb2.ExportMetricsServiceRequest()
    last.ParseFromString(pushes[-1][2])
    metrics = {m.name: m for m in last.resource_metrics[0].scope_metrics[0].metrics}

    def per_name(metric: Any) -> dict[str, int]:
        return {
            {a.key: a.value.string_value for a in p.attributes}["name"]: p.as_int
            for p in metric.sum.data_points
        }

    served = dict(http_server.counts)
    requests = per_name(metrics["aiotest.requests"])
    assert requests == {"/browse": served["GET /browse"], "broken": served["GET /status/500"]}
    assert per_name(metrics["aiotest.failures"]) == {"/browse": 0, "broken": requests["broken"]}
    assert metrics["aiotest.requests"].sum.is_monotonic
    histogram = metrics["aiotest.response_time"].histogram
    assert sum(p.count for p in histogram.data_points) == sum(served.values())
    assert all(sum(p.bucket_counts) == p.count for p in histogram.data_points)
    assert result.total["num_requests"] == sum(served.values())


def test_a_bad_otlp_endpoint_is_bad_usage(write_file, tmp_path: Path) -> None:
    path = write_file("shop.py", USER)
    result = run_aiotest("-f", str(path), "--headless", "--otlp-endpoint", "collector:4318")
    assert result.returncode == 2
    assert "give an http(s) URL" in result.stderr
