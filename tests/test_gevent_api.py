"""gevent's API in a locustfile (aiotest.gevent_api): greenlets, locks,
events, pools and queues wait cooperatively on the asyncio loop, in real
runs against a counting target."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiotest import gevent_api
from conftest import CountingServer, run_aiotest

pytestmark = pytest.mark.pythons

GEVENT_FILE = """
import asyncio
import time
import gevent
from aiotest.sync import await_only
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.pool import Pool
from gevent.queue import Queue
from locust import HttpUser, task, constant, events
from locust.exception import StopUser

seen = {"inside": 0, "max_inside": 0, "init": 0}
everyone_here = Event()
two_at_a_time = Semaphore(2)


@events.init.add_listener
def _(environment, **kw):
    # Spawned before the loop runs: it starts once it does.
    gevent.spawn(lambda: seen.__setitem__("init", seen["init"] + 1))


@events.spawning_complete.add_listener
def _(user_count, **kw):
    everyone_here.set()


class Gevented(HttpUser):
    wait_time = constant(0)

    def on_start(self):
        assert everyone_here.wait(timeout=10), "spawning_complete never came"

    @task
    def fan_out(self):
        def fetch(i):
            with two_at_a_time:
                seen["inside"] += 1
                seen["max_inside"] = max(seen["max_inside"], seen["inside"])
                self.client.get(f"/item/{i}", name="/item")
                gevent.sleep(0.01)
                seen["inside"] -= 1
            return i

        jobs = [gevent.spawn(fetch, i) for i in range(4)]
        done = gevent.joinall(jobs, timeout=10)
        assert len(done) == 4 and [j.get() for j in jobs] == [0, 1, 2, 3]
        assert Pool(2).map(lambda i: i * 2, [1, 2, 3]) == [2, 4, 6]
        queue = Queue()
        gevent.spawn_later(0.01, queue.put, "late")
        assert queue.get(timeout=5) == "late"
        time.sleep(0.01)  # cooperative too
        # Blocking work of another library goes to a thread, and is waited for.
        assert await_only(asyncio.to_thread(sum, [1, 2])) == 3
        raise StopUser()


@events.quitting.add_listener
def _(environment, **kw):
    print(f"max inside {seen['max_inside']}, init greenlets {seen['init']}")
"""


def test_gevent_primitives_are_cooperative(
    http_server: CountingServer, write_file, tmp_path: Path
) -> None:
    path = write_file("locustfile.py", GEVENT_FILE)
    run = run_aiotest(
        "-f", str(path), "--headless", "-u", "4", "-r", "100", "-t", "10s",
        "-H", http_server.url, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert run.json is not None and not run.json["stats"]["errors"], run.json["stats"]["errors"]
    # Four users, four greenlets each, one request a greenlet.
    assert run.entry("GET", "/item")["num_requests"] == 16 == http_server.total()
    # The semaphore let exactly two greenlets in at once: a blocking sleep
    # would have let only one.
    assert "max inside 2, init greenlets 1" in run.stdout


def test_a_wait_outside_user_code_is_refused_not_a_frozen_loop() -> None:
    event = gevent_api.Event()

    async def from_the_loop() -> None:
        with pytest.raises(RuntimeError, match="would freeze every user"):
            event.wait(timeout=1)
        sem = gevent_api.Semaphore(1)
        assert sem.acquire() and not sem.acquire(blocking=False)  # no wait: fine anywhere

    asyncio.run(from_the_loop())
    with pytest.raises(RuntimeError, match="needs the running test"):
        event.wait(timeout=1)
