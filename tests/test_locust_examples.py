"""Locust's own examples (tests/locust_examples, copied unchanged from
Locust's repository) run by `aiotest -f FILE --headless -u 4 -r 4 -t 5s -H
<target>` against a counting target. Each run must report exactly the
requests the target served, count failures as Locust does, and write its
CSV and JSON."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AIOTEST, CountingServer, Run, free_port, run_aiotest

EXAMPLES = Path(__file__).resolve().parent / "locust_examples"


def run_example(
    name: str, server: CountingServer, tmp_path: Path, *extra: str, seconds: int = 5
) -> Run:
    run = run_aiotest(
        "-f", str(EXAMPLES / name), "--headless", "-u", "4", "-r", "4", "-t", f"{seconds}s",
        "-H", server.url, "--csv", str(tmp_path / "run"), *extra, cwd=tmp_path,
    )  # fmt: skip
    assert run.json is not None, run.stdout[-2000:] + run.stderr
    assert_matches_target(run, server)
    assert_csv_written(tmp_path / "run", run)
    return run


def assert_matches_target(run: Run, server: CountingServer) -> None:
    """Every request the run reports reached the target, entry by entry."""
    assert run.total["num_requests"] == server.total(), (run.total, server.counts)
    assert run.json is not None
    for entry in run.json["stats"]["entries"]:
        served = server.counts[f"{entry['method']} {entry['name']}"]
        assert entry["num_requests"] == served, (entry, server.counts)


def assert_csv_written(prefix: Path, run: Run) -> None:
    with Path(f"{prefix}_stats.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[-1]["Name"] == "Aggregated"
    assert int(rows[-1]["Request Count"]) == run.total["num_requests"]
    assert int(rows[-1]["Failure Count"]) == run.total["num_failures"]


def no_user_errors(run: Run) -> bool:
    assert run.json is not None
    return not run.json["stats"]["errors"]


def test_basic(http_server: CountingServer, tmp_path: Path) -> None:
    run = run_example("basic.py", http_server, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.total["num_requests"] >= 4  # every user's first task, at least
    assert set(http_server.counts) <= {"GET /", "GET /stats/requests", "GET /does_not_exist"}
    assert no_user_errors(run)


def test_fast_http_locust(http_server: CountingServer, tmp_path: Path) -> None:
    run = run_example("fast_http_locust.py", http_server, tmp_path)
    assert run.returncode == 0, run.stderr
    assert http_server.counts["GET /"] > 100 and http_server.counts["GET /stats/requests"] > 100


def test_nested_inline_tasksets(http_server: CountingServer, tmp_path: Path) -> None:
    run = run_example("nested_inline_tasksets.py", http_server, tmp_path)
    assert run.returncode == 0 and no_user_errors(run), run.stderr
    assert run.total["num_requests"] >= 4


def test_dynamic_user_credentials(http_server: CountingServer, tmp_path: Path) -> None:
    run = run_example("dynamic_user_credentials.py", http_server, tmp_path)
    assert run.returncode == 0 and no_user_errors(run), run.stderr
    # Three credentials for four users: three log in; each then runs one
    # task and waits 5-60 s, past the run's end.
    assert http_server.counts["POST /login"] == 3
    assert http_server.counts["GET /protected/resource"] == 4


def test_events_over_two_workers(http_server: CountingServer, tmp_path: Path) -> None:
    """report_to_master on the workers and worker_report on the master take
    Locust's arguments: a listener that did not would be a user error."""
    run = run_example("events.py", http_server, tmp_path, "--processes", "2", seconds=7)
    assert run.returncode == 0 and no_user_errors(run), run.stdout[-3000:] + run.stderr


def test_add_command_line_argument(http_server: CountingServer, tmp_path: Path) -> None:
    run = run_example(
        "add_command_line_argument.py", http_server, tmp_path, "--my-argument", "hello", seconds=2
    )
    assert run.returncode == 0, run.stderr
    assert "Custom argument supplied: hello" in run.stdout
    assert "my_ui_invisible_argument=I am invisible" in run.stdout
    assert run.total["num_requests"] == 0  # its task only prints


def test_add_command_line_argument_checks_choices(tmp_path: Path) -> None:
    run = run_aiotest(
        "-f", str(EXAMPLES / "add_command_line_argument.py"), "--headless", "-t", "1s",
        "-H", "http://127.0.0.1:9", "--env", "qa", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--env 'qa': pick one of dev, staging, prod" in run.stderr


def test_markov_taskset(http_server: CountingServer, tmp_path: Path) -> None:
    run = run_example("markov_taskset.py", http_server, tmp_path, seconds=3)
    assert run.returncode == 0 and no_user_errors(run), run.stderr
    # constant(1) between steps: each user takes 3 steps along the chain,
    # which starts at method1 and always goes on to method2.
    assert run.stdout.count("Method 1:") >= 4
    assert run.stdout.count("Method 2:") >= 4


def test_semaphore_wait(http_server: CountingServer, tmp_path: Path) -> None:
    """on_start waits on a gevent Semaphore that spawning_complete releases:
    the users wait cooperatively, then run."""
    run = run_example("semaphore_wait.py", http_server, tmp_path, seconds=2)
    assert run.returncode == 0 and no_user_errors(run), run.stderr
    assert http_server.counts["GET /"] > 100


def test_custom_shape_stages_until_ctrl_c(http_server: CountingServer, tmp_path: Path) -> None:
    """The shape lasts 240 s and overrides -t (as in Locust): Ctrl-C ends it,
    and the reports gathered so far are written."""
    assert AIOTEST
    json_path = tmp_path / "run.json"
    proc = subprocess.Popen(
        [
            AIOTEST, "-f", str(EXAMPLES / "custom_shape" / "stages.py"), "--headless",
            "-u", "4", "-r", "4", "-t", "5s", "-H", http_server.url,
            "--csv", str(tmp_path / "run"), "--json-file", str(json_path),
        ],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIOTEST_")},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while http_server.total() < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:] + err
    run = Run(proc.returncode, out, err, json.loads(json_path.read_text()))
    assert run.total["num_requests"] >= 20
    assert_matches_target(run, http_server)
    assert_csv_written(tmp_path / "run", run)
    assert "Following the load shape StagesShape" in err


def test_custom_messages_over_a_master_and_two_workers(
    http_server: CountingServer, tmp_path: Path
) -> None:
    """The master's test_start hands each worker its own user names by a
    message; each worker thanks it and builds its users from them."""
    assert AIOTEST
    port = free_port()
    example = str(EXAMPLES / "custom_messages.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOTEST_")}
    workers = [
        subprocess.Popen(
            [AIOTEST, "-f", example, "--worker", "--master-port", str(port)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        run = run_aiotest(
            "-f", example, "--headless", "-u", "4", "-r", "4", "-t", "5s", "-H", http_server.url,
            "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(port), "--csv", str(tmp_path / "run"), cwd=tmp_path,
        )  # fmt: skip
    finally:
        outputs = []
        for w in workers:
            w.send_signal(signal.SIGINT)
            outputs.append(w.communicate(timeout=20)[0])
    assert run.returncode == 0 and no_user_errors(run), run.stdout[-2000:] + run.stderr
    assert run.stdout.count("Thanks for the 2 users!") == 2
    assert run.stdout.count("concurrent_message received with data") == 2
    names = [set(line for line in out.split() if line.startswith("User")) for out in outputs]
    # Each worker's two users print the two names it was sent, and no other.
    assert names[0] | names[1] == {"User0", "User1", "User2", "User3"}, names
    assert len(names[0]) == len(names[1]) == 2
    assert_csv_written(tmp_path / "run", run)


@pytest.mark.skipif(not os.path.exists("/usr/bin/unshare"), reason="needs unshare(1)")
def test_rest_in_a_network_namespace(tmp_path: Path) -> None:
    """rest.py also calls http://example.com/: it runs in a network
    namespace of its own, where only loopback exists, so nothing leaves the
    machine; its other requests go to an echo target."""
    helper = Path(__file__).resolve().parent / "netns_target.py"
    result = subprocess.run(
        [
            "unshare", "-rn", sys.executable, str(helper), str(tmp_path), "--",
            AIOTEST or "aiotest", "-f", str(EXAMPLES / "rest.py"), "--headless",
            "-u", "4", "-r", "4", "-t", "4s", "-H", "{url}",
            "--csv", str(tmp_path / "run"), "--json-file", str(tmp_path / "run.json"),
        ],
        capture_output=True, text=True, timeout=50, cwd=tmp_path,
    )  # fmt: skip
    if "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.skip(f"no network namespaces here: {result.stderr.strip()[:300]}")
    run = Run(result.returncode, result.stdout, result.stderr, None)
    run.json = json.loads((tmp_path / "run.json").read_text())
    assert run.returncode == 1, result.stdout[-2000:] + result.stderr  # it has failures
    # Two MyUser and two MyOtherRestUser, each through its task once
    # (then constant(180)); MyUser's task ends at rest("", ...), whose
    # empty method raises before a request goes out: Locust counts the same.
    rows = {(e["method"], e["name"]): (e["num_requests"], e["num_failures"])
            for e in run.json["stats"]["entries"]}  # fmt: skip
    assert rows == {("GET", "/get"): (2, 2), ("POST", "/post"): (8, 6), ("GET", "/"): (2, 2)}
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert counts == {"GET /get": 2, "POST /post": 8, "GET /": 2}
    failures = {f["error"] for f in run.json["stats"]["failures"]}
    assert "my custom error message with response text, response was {" in "".join(failures)
    assert_csv_written(tmp_path / "run", run)
