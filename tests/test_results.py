"""Reports and gates: CSV (Locust's headers), JSON and console agree;
--iterations is exact; checks pass and fail with their exit codes; the
in-process API."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import aiotest
import pytest
from conftest import CountingServer, DemoTarget, run_aiotest

# These also run on every other supported Python (make test-pythons).
pytestmark = pytest.mark.pythons

HEADERS = {
    "stats": "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%",
    "stats_history": "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size",
    "failures": "Method,Name,Error,Occurrences,First Seen,Last Seen",
    "exceptions": "Count,Message,Traceback,Nodes",
}

MIXED = """
from aiotest import AsyncHttpUser, task, constant

class Mixed(AsyncHttpUser):
    wait_time = constant(0.02)

    @task(4)
    async def hello(self):
        await self.session.get("/hello")

    @task(2)
    async def slow(self):
        await self.session.get("/delay/20", name="/delay")

    @task(1)
    async def error(self):
        await self.session.get("/error")

    @task(1)
    async def oops(self):
        {}["missing"]
"""


def ms(us: float) -> float:
    return us / 1000


@pytest.fixture
def mixed_run(demo_target: DemoTarget, write_file, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = write_file("mixed.py", MIXED)
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "2.5s",
        "-H",
        demo_target.url,
        "--csv",
        str(tmp_path / "out"),
        "--csv-full-history",
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stderr
    return run, tmp_path / "out"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_headers_are_locusts_byte_for_byte(mixed_run) -> None:  # type: ignore[no-untyped-def]
    _, prefix = mixed_run
    for suffix, header in HEADERS.items():
        raw = Path(f"{prefix}_{suffix}.csv").read_bytes()
        assert raw.split(b"\n", 1)[0] == header.encode(), suffix


def test_csv_json_and_console_agree(mixed_run) -> None:  # type: ignore[no-untyped-def]
    run, prefix = mixed_run
    rows = {(r["Type"], r["Name"]): r for r in read_csv(Path(f"{prefix}_stats.csv"))}
    entries = {(e["method"], e["name"]): e for e in run.json["stats"]["entries"]}
    entries[("", "Aggregated")] = run.json["stats"]["total"]
    assert set(rows) == set(entries)
    console = [line.split() for line in run.stdout.split("Final statistics")[1].splitlines()]
    for key, e in entries.items():
        row = rows[key]
        assert int(row["Request Count"]) == e["num_requests"] > 0
        assert int(row["Failure Count"]) == e["num_failures"]
        assert float(row["Median Response Time"]) == ms(e["median_response_time_us"])
        assert float(row["Max Response Time"]) == ms(e["max_response_time_us"])
        assert abs(float(row["Average Response Time"]) - ms(e["avg_response_time_us"])) < 0.001
        for label, value in e["percentiles_us"]:
            assert float(row[label]) == ms(value)
        # Console: the final table row holds the same count and median.
        line = next(cols for cols in console if key[1] in cols and str(e["num_requests"]) in cols)
        median_shown = float(line[line.index("|", line.index("|") + 1) - 1])
        assert abs(median_shown - ms(e["median_response_time_us"])) <= 0.5
    failures = read_csv(Path(f"{prefix}_failures.csv"))
    assert [(f["Name"], int(f["Occurrences"])) for f in failures] == [
        (f["name"], f["occurrences"]) for f in run.json["stats"]["failures"]
    ]
    (exc,) = read_csv(Path(f"{prefix}_exceptions.csv"))
    assert exc["Message"] == "KeyError: 'missing'"
    assert 'missing"]' in exc["Traceback"]
    assert int(exc["Count"]) == run.json["stats"]["errors"][0]["count"]
    assert exc["Nodes"] == "local"


def test_history_rows_cover_windows(mixed_run) -> None:  # type: ignore[no-untyped-def]
    run, prefix = mixed_run
    rows = read_csv(Path(f"{prefix}_stats_history.csv"))
    aggregated = [r for r in rows if r["Name"] == "Aggregated"]
    assert len(aggregated) >= 2  # one per 1 s window, plus the closing one
    assert {r["Name"] for r in rows} >= {"/hello", "/delay", "/error", "Aggregated"}
    # The last row's totals are the final totals; the windows add up to them.
    assert int(aggregated[-1]["Total Request Count"]) == run.total["num_requests"]
    assert all(int(r["User Count"]) in range(0, 5) for r in rows)
    delay_windows = [r for r in rows if r["Name"] == "/delay" and r["50%"] != "N/A"]
    assert delay_windows and all(float(r["50%"]) >= 20 for r in delay_windows)


def test_iterations_are_exact(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    path = write_file(
        "iter.py",
        """
from aiotest import AsyncHttpUser, task, constant

class Busy(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def one(self):
        await self.session.get("/one")
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "7",
        "-r",
        "1000",
        "-i",
        "137",
        "-t",
        "30s",
        "-H",
        http_server.url,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert http_server.counts == {"GET /one": 137}
    assert run.json["task_runs"] == 137 == run.total["num_requests"]
    assert "137 iterations done" in run.stderr


def test_checks_pass_and_fail_with_exit_codes(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file(
        "ok.py",
        "from aiotest import AsyncHttpUser, task, constant\n"
        "class U(AsyncHttpUser):\n"
        "    wait_time = constant(0.01)\n"
        "    @task\n"
        "    async def t(self):\n"
        "        await self.session.get('/hello')\n",
    )
    base = [
        "-f",
        str(path),
        "--headless",
        "-u",
        "2",
        "-r",
        "100",
        "-t",
        "1s",
        "-H",
        demo_target.url,
    ]
    passing = run_aiotest(
        *base,
        "--check",
        "p95 < 5s",
        "--check",
        "GET /hello: p99 < 5000ms",
        "--check-fail-ratio",
        "0.01",
        "--check-rps",
        "1",
        cwd=tmp_path,
    )
    assert passing.returncode == 0, passing.stderr
    assert passing.stdout.count("PASS") == 4 and "FAIL" not in passing.stdout
    failing = run_aiotest(
        *base, "--check", "rps > 1000000", "--check-avg-response-time", "0.0001", cwd=tmp_path
    )
    assert failing.returncode == 3, failing.stderr
    assert failing.stdout.count("FAIL") == 2
    # A bad check is caught before the run.
    bad = run_aiotest(*base, "--check", "p97 < 1s", cwd=tmp_path)
    assert bad.returncode == 2 and "not a reported percentile" in bad.stderr


def test_in_process_api(http_server: CountingServer) -> None:
    class Api(aiotest.AsyncHttpUser):
        wait_time = aiotest.constant(0)

        @aiotest.task
        async def ping(self):
            await self.session.get("/ping")

    result = aiotest.run(
        [Api],
        users=3,
        spawn_rate=100,
        iterations=50,
        host=http_server.url,
        checks=["fail_ratio == 0", "requests == 50"],
    )
    assert result.passed, result.checks_table
    assert result.task_runs == 50 == http_server.counts["GET /ping"]
    ping = result.entry("GET", "/ping")
    assert ping.num_requests == 50 and ping.num_failures == 0
    assert 0 < ping.percentile_ms(50) <= ping.percentile_ms(100) == ping.max_response_time_us / 1000
    with pytest.raises(aiotest.ConfigError, match="run_time_s or iterations"):
        aiotest.run([Api], host=http_server.url)
    with pytest.raises(KeyError, match="GET /ping"):
        result.entry("GET", "/nope")


def test_reset_stats_drops_the_ramp_up(demo_target: DemoTarget, write_file, tmp_path: Path) -> None:
    path = write_file(
        "ramp.py",
        """
from aiotest import AsyncHttpUser, task, constant

class Ramp(AsyncHttpUser):
    wait_time = constant(0.01)

    async def on_start(self):
        await self.session.get("/status/201", name="start")

    @task
    async def t(self):
        await self.session.get("/hello")
""",
    )
    run = run_aiotest(
        "-f",
        str(path),
        "--headless",
        "-u",
        "5",
        "-r",
        "5",
        "-t",
        "2s",
        "--reset-stats",
        "-H",
        demo_target.url,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    # The reset comes as the last user spawns: only that user's on_start
    # request can land after it.
    starts = [e["num_requests"] for e in run.json["stats"]["entries"] if e["name"] == "start"]
    assert sum(starts) <= 1
    assert demo_target.counts()["requests"]["GET /status/201"] == 5
    assert run.total["num_requests"] < demo_target.counts()["total"]
    assert json.dumps(run.json)  # still a complete document


UNIQUE_URLS = """
import itertools
from aiotest import AsyncHttpUser, constant, task

ids = itertools.count()


class Careless(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def item(self):
        await self.session.get(f"/hello?id={next(ids)}")  # an id, and no name=
"""


def test_names_past_the_limit_fold_into_one_row_with_exact_totals(
    demo_target: DemoTarget, write_file, tmp_path: Path
) -> None:
    path = write_file("careless.py", UNIQUE_URLS)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "100", "-i", "3000", "--max-names", "100",
        "-H", demo_target.url, "--csv", str(tmp_path / "r"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] == 3000 == demo_target.counts()["total"]
    entries = run.json["stats"]["entries"]  # type: ignore[index]
    assert len(entries) == 101
    other = next(e for e in entries if e["name"] == "(other names)")
    assert other["num_requests"] == 2900
    assert "2900 requests had names past the first 100 distinct ones" in run.stderr
    assert 'name="/items?id=[id]"' in run.stderr
    with (tmp_path / "r_stats.csv").open() as fh:
        assert len(fh.readlines()) == 1 + 101 + 1  # header, rows, Aggregated
