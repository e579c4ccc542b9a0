"""Headless Chromium (Debian's `chromium`) for tests: screenshots and the DOM
after scripts ran. Launched with the flags this machine needs (no sandbox as
root, no background networking)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> str:
    """Chromium's path; skips the test where it is missing, except in CI
    (AIOTEST_REQUIRE_BROWSER=1), where a missing browser is a failure."""
    if CHROMIUM is None:
        if os.environ.get("AIOTEST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed: apt-get install chromium")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def _no_network_prefix() -> list[str]:
    """`unshare -n` where allowed: the browser then has no network at all."""
    try:
        ok = (
            subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return ["unshare", "-n"] if ok else []


def chromium(
    url: str, *extra: str, offline: bool = False, timeout_s: float = 45
) -> subprocess.CompletedProcess[str]:
    browser = require_chromium()
    with tempfile.TemporaryDirectory() as profile:
        argv = [
            *(_no_network_prefix() if offline else []),
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            *extra,
            url,
        ]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )


def screenshot(url: str, name: str, *, offline: bool = False, size: str = "1280,2000") -> Path:
    """Saves a screenshot of `url` as artifacts/NAME and returns its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    proc = chromium(
        url,
        f"--screenshot={path}",
        f"--window-size={size}",
        "--virtual-time-budget=3000",
        offline=offline,
    )
    assert path.exists(), proc.stderr
    return path


def rendered_dom(url: str, *, offline: bool = False) -> str:
    """The page's DOM after its scripts ran (3 s of virtual time)."""
    proc = chromium(url, "--dump-dom", "--virtual-time-budget=3000", offline=offline)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
