"""An example CI gate: fail the build when the service gets slow or flaky.

Run it with `pytest examples/pytest_gate`. It targets the built-in demo
target (the `aiotest_demo_target` fixture); point `host=` at your own
service instead.
"""

from aiotest import AsyncHttpUser, constant, task


class Catalogue(AsyncHttpUser):
    wait_time = constant(0.05)

    async def on_start(self):
        await self.session.post("/login", json={"username": "gate", "password": "secret"})

    @task(3)
    async def list_items(self):
        await self.session.get("/items")

    @task(1)
    async def one_item(self):
        await self.session.get("/items/7", name="/items/[id]")


def test_catalogue_meets_its_slo(aiotest_run, aiotest_demo_target):
    result = aiotest_run(
        [Catalogue],
        host=aiotest_demo_target.url,
        users=10,
        spawn_rate=50,
        run_time_s=3,
        checks=["p95 < 250ms", "fail_ratio < 0.01", "GET /items: p99 < 500ms"],
    )
    assert result.passed, result.checks_table
    assert result.entry("GET", "/items").num_requests > 0
    assert result.total.percentile_ms(95) < 250
