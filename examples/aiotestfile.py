"""A realistic shopper against the built-in demo target.

Start the target, then the test:

    aiotest demo-target --port 8080 &
    aiotest -f examples/aiotestfile.py --headless -u 100 -r 50 -t 20s -H http://127.0.0.1:8080
"""

import random

from aiotest import AsyncHttpUser, between, tag, task


class Shopper(AsyncHttpUser):
    """Logs in once (the session keeps the cookie), then browses and buys."""

    wait_time = between(0.5, 1.5)
    weight = 3

    async def on_start(self):
        async with self.session.post(
            "/login", json={"username": f"shopper{self.user_index}", "password": "secret"}
        ) as resp:
            resp.raise_for_status()

    @task(6)
    async def browse(self):
        async with self.session.get("/items") as resp:
            items = await resp.json()
        item = random.choice(items)
        # Every item URL is one row in the stats, thanks to name=.
        await self.session.get(f"/items/{item['id']}", name="/items/[id]")

    @tag("checkout")
    @task(2)
    async def add_to_cart(self):
        async with self.session.post(
            "/cart", json={"item_id": random.randint(1, 20)}, catch_response=True
        ) as resp:
            body = await resp.json()
            if not body.get("ok"):
                resp.failure(f"cart refused the item: {body}")

    @task(1)
    async def missing_item(self):
        # A 404 that the shop expects: count it as a success.
        async with self.session.get(
            "/items/5000", name="/items/[missing]", catch_response=True
        ) as resp:
            if resp.status == 404:
                resp.success()


class Browser(AsyncHttpUser):
    """An anonymous visitor: the home page and a slow search."""

    wait_time = between(1, 2)
    weight = 1

    @task(3)
    async def home(self):
        await self.session.get("/")

    @task(1)
    async def search(self):
        await self.session.get("/slow", params={"ms": 50}, name="/search")
