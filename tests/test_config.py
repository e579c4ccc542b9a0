"""Option precedence: command line, then AIOTEST_* variables, then config
files, then the default."""

from __future__ import annotations

from pathlib import Path

from conftest import CountingServer, run_aiotest

USER = """
from aiotest import AsyncHttpUser, task, constant

class Idle(AsyncHttpUser):
    wait_time = constant(30)

    async def on_start(self):
        await self.session.get("/hello")

    @task
    async def nothing(self):
        pass
"""


def test_precedence(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    write_file("aiotestfile.py", USER)  # the default -f
    write_file(
        "aiotest.conf",
        f"# Locust-style\nheadless = true\nusers = 3\nspawn-rate = 100\nrun-time = 1s\nhost = {http_server.url}\n",
    )

    def users_started(*args: str, env: dict[str, str] | None = None) -> int:
        http_server.counts.clear()
        run = run_aiotest(*args, cwd=tmp_path, env=env)
        assert run.returncode == 0, run.stderr
        assert run.json["user_count"] == http_server.counts["GET /hello"]
        return http_server.counts["GET /hello"]

    assert users_started() == 3
    assert users_started(env={"AIOTEST_USERS": "5"}) == 5
    assert users_started("-u", "7", env={"AIOTEST_USERS": "5"}) == 7
    # --config (Locust's; LOCUST_CONFIG too) wins over the other files only.
    write_file("stage.conf", "users = 2\n")
    assert users_started("--config", "stage.conf") == 2
    assert users_started(env={"LOCUST_CONFIG": "stage.conf"}) == 2
    assert users_started("--config", "stage.conf", env={"AIOTEST_USERS": "5"}) == 5
    missing = run_aiotest("--config", "nowhere.conf", cwd=tmp_path)
    assert missing.returncode == 2 and "--config nowhere.conf: no such file" in missing.stderr


def test_pyproject_section(http_server: CountingServer, write_file, tmp_path: Path) -> None:
    write_file("aiotestfile.py", USER)
    write_file(
        "pyproject.toml",
        f'[tool.aiotest]\nheadless = true\nusers = 4\nspawn-rate = 100\nrun-time = "1s"\nhost = "{http_server.url}"\n',
    )
    run = run_aiotest(cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert http_server.counts["GET /hello"] == 4
