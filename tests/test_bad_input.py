"""Every bad input gets a short error naming the problem and the fix, exit
code 2, and no Python traceback or Rust panic."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_aiotest

GOOD = """
from aiotest import AsyncHttpUser, task

class Visitor(AsyncHttpUser):
    host = "http://127.0.0.1:9"

    @task
    async def home(self):
        await self.session.get("/")
"""


def assert_usage_error(run, *needles: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    for needle in needles:
        assert needle in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert "panicked" not in run.stderr


def test_missing_aiotestfile(tmp_path: Path) -> None:
    run = run_aiotest("-f", "nope.py", "--headless", cwd=tmp_path)
    assert_usage_error(run, "'nope.py' not found", "-f")


def test_syntax_error_names_file_and_line(write_file, tmp_path: Path) -> None:
    path = write_file("broken.py", "from aiotest import User\n\ndef oops(:\n    pass\n")
    run = run_aiotest("-f", str(path), "--headless", cwd=tmp_path)
    assert_usage_error(run, f"{path}:3", "syntax error")


def test_import_error_names_file_and_line(write_file, tmp_path: Path) -> None:
    path = write_file("imports.py", "import os\nimport no_such_module_here\n")
    run = run_aiotest("-f", str(path), "--headless", cwd=tmp_path)
    assert_usage_error(run, f"{path}:2", "ModuleNotFoundError", "no_such_module_here")


def test_no_user_classes(write_file, tmp_path: Path) -> None:
    path = write_file("empty.py", "from aiotest import AsyncHttpUser\nX = 1\n")
    run = run_aiotest("-f", str(path), "--headless", cwd=tmp_path)
    assert_usage_error(run, "defines no user class", "AsyncHttpUser")


def test_no_host(write_file, tmp_path: Path) -> None:
    path = write_file("nohost.py", GOOD.replace('host = "http://127.0.0.1:9"', "pass"))
    run = run_aiotest("-f", str(path), "--headless", "-t", "1s", cwd=tmp_path)
    assert_usage_error(run, "no host for user class Visitor", "-H/--host")


@pytest.mark.parametrize("host", ["localhost:8080", "ftp://127.0.0.1", "http://", "not a url"])
def test_malformed_host(write_file, tmp_path: Path, host: str) -> None:
    path = write_file("good.py", GOOD)
    run = run_aiotest("-f", str(path), "--headless", "-t", "1s", "-H", host, cwd=tmp_path)
    assert_usage_error(run, "invalid host URL", "http://127.0.0.1:8080")


def test_bad_run_time(write_file, tmp_path: Path) -> None:
    path = write_file("good.py", GOOD)
    run = run_aiotest("-f", str(path), "--headless", "-t", "10x", cwd=tmp_path)
    assert_usage_error(run, "--run-time", "'10x' is not a duration", "1h30m")


def test_negative_users(write_file, tmp_path: Path) -> None:
    path = write_file("good.py", GOOD)
    run = run_aiotest("-f", str(path), "--headless", "-u", "-3", cwd=tmp_path)
    assert_usage_error(run, "--users", "'-3' is not a user count")


def test_unknown_user_class(write_file, tmp_path: Path) -> None:
    path = write_file("good.py", GOOD)
    run = run_aiotest("-f", str(path), "--headless", "Nobody", cwd=tmp_path)
    assert_usage_error(run, "unknown user class 'Nobody'", "Visitor")


def test_unknown_flag(tmp_path: Path) -> None:
    run = run_aiotest("--no-such-flag", cwd=tmp_path)
    assert_usage_error(run, "--no-such-flag")


def test_unknown_config_file_key(write_file, tmp_path: Path) -> None:
    write_file("aiotest.conf", "userz = 3\n")
    run = run_aiotest("--headless", cwd=tmp_path)
    assert_usage_error(run, "unknown option 'userz'", "aiotest.conf")


def test_version_and_help_exit_zero(tmp_path: Path) -> None:
    version = run_aiotest("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("aiotest ")
    help_ = run_aiotest("--help", cwd=tmp_path)
    assert help_.returncode == 0
    for flag in (
        "--aiotestfile",
        "--host",
        "--users",
        "--spawn-rate",
        "--run-time",
        "--stop-timeout",
    ):
        assert flag in help_.stdout


def test_list_user_classes(write_file, tmp_path: Path) -> None:
    path = write_file("good.py", GOOD + "\nclass Other(Visitor):\n    pass\n")
    run = run_aiotest("-f", str(path), "-l", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["Visitor", "Other"]


def test_help_never_prints_the_secret_or_the_web_login(tmp_path: Path) -> None:
    secrets = {"AIOTEST_SECRET": "hmac-key-4f2a", "AIOTEST_WEB_LOGIN": "admin:pw-81c3"}
    run = run_aiotest("--help", cwd=tmp_path, env=secrets)
    assert run.returncode == 0 and "--secret" in run.stdout and "--web-login" in run.stdout
    assert "hmac-key-4f2a" not in run.stdout and "pw-81c3" not in run.stdout
