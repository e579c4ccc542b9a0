"""aiotest: load tests scripted in Python, in Locust's habits, run on a Rust
HTTP engine.

Example aiotestfile::

    from aiotest import AsyncHttpUser, task, between

    class Shopper(AsyncHttpUser):
        wait_time = between(1, 3)

        @task
        async def browse(self):
            async with self.session.get("/items") as resp:
                ...
"""

from ._core import __version__
from .api import run, run_async
from .env import Environment
from .events import events
from .exceptions import AiotestError, ConfigError, ResponseError, StopUser
from .http import Response
from .result import EntryStats, RunResult
from .shape import LoadTestShape
from .streaming import ServerSentEvent
from .taskset import SequentialTaskSet, TaskSet, tag, task
from .user import AsyncHttpUser, User
from .wait_time import between, constant, constant_pacing, constant_throughput

__all__ = [
    "AiotestError",
    "AsyncHttpUser",
    "ConfigError",
    "EntryStats",
    "Environment",
    "LoadTestShape",
    "Response",
    "ResponseError",
    "RunResult",
    "SequentialTaskSet",
    "ServerSentEvent",
    "StopUser",
    "TaskSet",
    "User",
    "__version__",
    "between",
    "constant",
    "constant_pacing",
    "constant_throughput",
    "events",
    "run",
    "run_async",
    "tag",
    "task",
]
