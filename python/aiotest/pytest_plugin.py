"""The pytest plugin (registered as the ``pytest11`` entry point ``aiotest``).

Fixtures:
    aiotest_run: :func:`aiotest.run`, for gating a service in a test::

        def test_items_are_fast(aiotest_run):
            result = aiotest_run([Shopper], users=20, spawn_rate=20, run_time_s=5,
                                 checks=["p95 < 200ms", "fail_ratio < 0.01"])
            assert result.passed, result.checks_table

    aiotest_demo_target: the built-in demo target on a free loopback port,
        with ``.url``; for trying the API without a service of your own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._core import DemoTarget
from .api import run


@pytest.fixture
def aiotest_run() -> Callable[..., Any]:
    """:func:`aiotest.run`: runs a test in-process and returns a RunResult."""
    return run


@pytest.fixture(scope="session")
def aiotest_demo_target() -> Iterator[Any]:
    """The built-in demo target on 127.0.0.1 and a free port; stopped after
    the session."""
    target = DemoTarget(bind="127.0.0.1", port=0)
    try:
        yield target
    finally:
        target.stop()
