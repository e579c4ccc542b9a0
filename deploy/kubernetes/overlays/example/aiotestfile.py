"""The test this overlay runs: put your own aiotestfile.py here (and any
data files it reads, listed under configMapGenerator)."""

from aiotest import AsyncHttpUser, between, task


class Visitor(AsyncHttpUser):
    wait_time = between(1, 2)

    @task(3)
    async def home(self):
        await self.session.get("/")

    @task
    async def health(self):
        await self.session.get("/health", name="health check")
