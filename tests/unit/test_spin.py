"""The event loop's spin before timers (python/aiotest/_bridge.py): on
while blocking turns wake late, off once they wake on time, never under a
CPU quota, and AIOTEST_SPIN's overrides; spinning is left out of the busy
CPU a process reports."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiotest import _bridge
from aiotest.runner import ProcessLoad
from conftest import run_aiotest


def cgroup(tmp_path: Path, v2: str | None = None, v1: str | None = None) -> str:
    tmp_path.mkdir()
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1)
    return str(tmp_path)


def test_cpu_quotas_are_read_from_cgroup_v2_then_v1(tmp_path: Path) -> None:
    assert not _bridge.cpu_quota_limited(cgroup(tmp_path / "a", v2="max 100000\n"))
    assert _bridge.cpu_quota_limited(cgroup(tmp_path / "b", v2="50000 100000\n"))
    assert _bridge.cpu_quota_limited(cgroup(tmp_path / "c", v1="50000\n"))
    assert not _bridge.cpu_quota_limited(cgroup(tmp_path / "d", v1="-1\n"))
    assert not _bridge.cpu_quota_limited(str(tmp_path / "none"))


def test_the_spin_follows_the_lateness_of_wake_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOTEST_SPIN", "auto")
    monkeypatch.setattr(_bridge, "cpu_quota_limited", lambda: False)
    selector = _bridge.EngineSelector()
    try:
        for _ in range(100):
            selector._woke_late(0.000005)  # on time: no need to spin
        assert selector.spin_s == 0.0
        for _ in range(100):
            selector._woke_late(0.0002)  # a parked core's wake-up
        assert selector.spin_s == _bridge._SPIN_S
    finally:
        selector.close()
    monkeypatch.setattr(_bridge, "cpu_quota_limited", lambda: True)
    quota = _bridge.EngineSelector()
    try:
        for _ in range(100):
            quota._woke_late(0.0002)
        assert quota.spin_s == 0.0  # a quota: never
    finally:
        quota.close()
    monkeypatch.setenv("AIOTEST_SPIN", "on")
    forced = _bridge.EngineSelector()
    try:
        for _ in range(100):
            forced._woke_late(0.0)
        assert forced.spin_s == _bridge._SPIN_S
    finally:
        forced.close()


def test_spinning_is_not_busy_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    load = ProcessLoad()
    spun = _bridge.spun_seconds()
    # As if the loop had spun for as long as this process burns CPU now.
    began = time.process_time()
    while time.process_time() - began < 0.2:
        pass
    burnt = time.process_time() - began
    monkeypatch.setattr(_bridge, "_spun_s", spun + burnt)
    cpu_percent, _ = load.sample()
    assert cpu_percent < 50, cpu_percent


def test_a_bad_spin_setting_is_bad_usage(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text("from aiotest import User\nclass U(User):\n    pass\n")
    result = run_aiotest(
        "-f", str(path), "--headless", "-u", "1", "-t", "1s", env={"AIOTEST_SPIN": "sometimes"}
    )
    assert result.returncode == 2
    assert "AIOTEST_SPIN='sometimes': give auto, on or off" in result.stderr
