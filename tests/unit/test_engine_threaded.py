"""The engine's threaded path: requests awaited on a loop aiotest did not
create (``asyncio.run``), completed by the engine's own threads."""

from __future__ import annotations

import asyncio

import pytest
from aiotest import AsyncHttpUser, constant, run_async, task

pytestmark = pytest.mark.pythons


class Visitor(AsyncHttpUser):
    wait_time = constant(0)

    @task
    async def visit(self) -> None:
        me = asyncio.current_task()
        resp = await self.session.get("/hello")
        assert resp.status == 200 and asyncio.current_task() is me
        a, b = await asyncio.gather(self.session.get("/hello"), self.session.get("/delay/1"))
        assert (a.status, b.status) == (200, 200)


def test_requests_on_a_plain_asyncio_loop(demo_target) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert not hasattr(loop, "aiotest_selector")  # not aiotest's loop
        result = await run_async(
            [Visitor], users=3, spawn_rate=100, iterations=30, host=demo_target.url
        )
        assert result.total.num_requests == 90 and result.total.num_failures == 0, result.total

    asyncio.run(main())
    assert demo_target.counts()["total"] == 90
