"""Where Locust's behaviour is the reference, run Locust itself (`make
locust` installs it in .venv-locust) and aiotest on the same locustfile
and the same target, and compare their CSV files: the rows of
`_stats.csv` (type, name, requests, failures), of `_failures.csv`
(method, name, occurrences) and the counts of `_exceptions.csv`.

Without Locust these tests skip, except in CI (AIOTEST_REQUIRE_LOCUST=1),
where they fail."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import AIOTEST, ROOT, CountingServer, run_aiotest

EXAMPLES = Path(__file__).resolve().parent / "locust_examples"
LOCUST = os.environ.get("AIOTEST_LOCUST") or str(ROOT / ".venv-locust" / "bin" / "locust")


@pytest.fixture
def locust() -> str:
    if not os.access(LOCUST, os.X_OK):
        if os.environ.get("AIOTEST_REQUIRE_LOCUST") == "1":
            pytest.fail(f"Locust is not installed at {LOCUST}: run `make locust`")
        pytest.skip("Locust is not installed: `make locust` puts it in .venv-locust")
    return LOCUST


def stats_rows(prefix: Path) -> list[tuple[str, str, int, int]]:
    with Path(f"{prefix}_stats.csv").open() as fh:
        return sorted(
            (r["Type"], r["Name"], int(r["Request Count"]), int(r["Failure Count"]))
            for r in csv.DictReader(fh)
        )


def failure_rows(prefix: Path) -> list[tuple[str, str, int]]:
    with Path(f"{prefix}_failures.csv").open() as fh:
        return sorted((r["Method"], r["Name"], int(r["Occurrences"])) for r in csv.DictReader(fh))


def exception_counts(prefix: Path) -> list[int]:
    with Path(f"{prefix}_exceptions.csv").open() as fh:
        return sorted(int(r["Count"]) for r in csv.DictReader(fh))


def run_locust(locust: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "AIOTEST_"))}
    return subprocess.run(
        [locust, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=45
    )


CATCH_RESPONSE_FILE = """
from locust import HttpUser, task, constant
from locust.exception import CatchResponseError, ResponseError


class Checks(HttpUser):
    wait_time = constant(100)

    @task
    def checks(self):
        with self.client.get("/a", catch_response=True) as r:
            r.failure("wrong body")
        with self.client.get("/status/500", catch_response=True) as r:
            r.success()
        with self.client.get("/status/404", catch_response=True):
            pass
        try:  # not the request's failure: it goes on, nothing is recorded
            with self.client.get("/b", catch_response=True):
                raise CatchResponseError("raised in the block")
        except CatchResponseError:
            pass
        with self.client.get("/f", catch_response=True):
            raise ResponseError("raised in the block")
        try:
            with self.client.get("/status/502", catch_response=True) as r:
                r.raise_for_status()
        except Exception:
            pass
        with self.client.post("/c", json={"x": 1}, catch_response=True) as r:
            if r.status_code == 200:
                r.failure("decided")
        try:
            with self.client.get("/d", catch_response=True):
                raise ValueError("not about the response")
        except ValueError:
            pass
        self.client.get("/status/503")
        self.client.get("/e?q=1", name="named")


class BrokenSetup(HttpUser):
    wait_time = constant(100)

    def on_start(self):
        self.client.get("/setup")
        raise RuntimeError("setup failed")

    @task
    def never(self):
        self.client.get("/never")

    def on_stop(self):
        self.client.get("/teardown")
"""


def test_catch_response_and_on_start_errors_count_as_in_locust(
    locust: str, http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("locustfile.py", CATCH_RESPONSE_FILE)
    common = [
        "-f",
        str(path),
        "--headless",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        # Locust's run-time clock can start seconds early on a loaded machine
        # (gevent's cached loop time): its users need a margin to run once.
        "8s",
        "-H",
        http_server.url,
    ]
    ours = run_aiotest(*common, "--csv", str(tmp_path / "ours"), cwd=tmp_path)
    theirs = run_locust(locust, *common, "--csv", str(tmp_path / "theirs"), cwd=tmp_path)
    assert theirs.returncode == 1, theirs.stderr[-3000:]
    assert ours.returncode == 1, ours.stderr[-3000:]
    assert stats_rows(tmp_path / "ours") == stats_rows(tmp_path / "theirs")
    assert failure_rows(tmp_path / "ours") == failure_rows(tmp_path / "theirs")
    assert exception_counts(tmp_path / "ours") == exception_counts(tmp_path / "theirs") == [2]
    # What both sent, each: /d's request is sent, then not recorded.
    for unrecorded in ("GET /b", "GET /d", "GET /status/502"):
        assert http_server.counts[unrecorded] == 4
    assert http_server.counts["GET /never"] == 0


@pytest.mark.skipif(not os.path.exists("/usr/bin/unshare"), reason="needs unshare(1)")
def test_rest_example_fails_as_in_locust(locust: str, tmp_path: Path) -> None:
    """Locust's rest.py, whose failures come from rest()'s rules, in a
    network namespace with only loopback (it also calls example.com)."""
    helper = Path(__file__).resolve().parent / "netns_target.py"
    for tool_path, prefix in ((AIOTEST or "aiotest", "ours"), (locust, "theirs")):
        out_dir = tmp_path / prefix
        out_dir.mkdir()
        done = subprocess.run(
            [
                "unshare", "-rn", sys.executable, str(helper), str(out_dir), "--",
                tool_path, "-f", str(EXAMPLES / "rest.py"), "--headless", "-u", "4", "-r", "4",
                "-t", "8s", "-H", "{url}", "--csv", str(tmp_path / prefix),
            ],
            capture_output=True, text=True, timeout=55, cwd=tmp_path,
        )  # fmt: skip
        if "unshare failed" in done.stderr or "Operation not permitted" in done.stderr:
            pytest.skip(f"no network namespaces here: {done.stderr.strip()[:300]}")
        assert done.returncode == 1, done.stderr[-3000:]
    assert stats_rows(tmp_path / "ours") == stats_rows(tmp_path / "theirs")
    assert failure_rows(tmp_path / "ours") == failure_rows(tmp_path / "theirs")
