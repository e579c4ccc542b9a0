"""Runs users in this process: spawning at the spawn rate, stopping
gracefully, and counting task runs and user errors."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._bridge import EngineBridge, spun_seconds
from ._core import Engine, assign_user_indexes, spawn_order, user_counts
from .events import Events, failure_text, user_frames
from .messages import hub
from .open_model import OpenModel
from .result import StatsView
from .user import TaskTable, User

log = logging.getLogger("aiotest.runner")

# Seconds to wait for requests already sent when users stop, so that what the
# target served is also what the statistics hold.
_IN_FLIGHT_GRACE_S = 5.0

#: Seconds between ``usage_monitor`` events (Locust's CPU_MONITOR_INTERVAL).
USAGE_INTERVAL_S = 5.0
#: CPU % of one core above which ``cpu_warning`` fires (Locust's CPU_WARNING_THRESHOLD).
CPU_WARNING_PERCENT = 90.0


class ProcessLoad:
    """This process's busy CPU (% of one core since the last sample; the
    event loop's spinning before a timer, ``_bridge.spun_seconds``, is
    waiting and left out) and RSS (bytes, from ``/proc/self/statm``; 0
    where there is none)."""

    def __init__(self) -> None:
        self._cpu = time.process_time() - spun_seconds()
        self._wall = time.monotonic()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        #: The last sample: (cpu_percent, rss_bytes).
        self.last = (0.0, 0)

    def sample(self) -> tuple[float, int]:
        """Takes a sample now: (CPU % of one core since the last sample, RSS bytes)."""
        cpu, wall = time.process_time() - spun_seconds(), time.monotonic()
        percent = max(0.0, 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-6))
        self._cpu, self._wall = cpu, wall
        try:
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            rss = 0
        self.last = (percent, rss)
        return self.last


async def monitor_usage(environment: Any, load: ProcessLoad | None = None) -> None:
    """Fires ``usage_monitor`` (``environment``, ``cpu_usage`` in %,
    ``memory_usage`` in bytes) every :data:`USAGE_INTERVAL_S`, and
    ``cpu_warning`` (``environment``, ``cpu_usage``) when the CPU is above
    :data:`CPU_WARNING_PERCENT`, warning in the log once, as Locust does.
    With a ``load`` another loop samples, its last sample is used."""
    own = load is None
    load = load or ProcessLoad()
    warned = False
    while True:
        await asyncio.sleep(USAGE_INTERVAL_S)
        cpu, rss = load.sample() if own else load.last
        events = environment.events
        events.usage_monitor.fire(environment=environment, cpu_usage=cpu, memory_usage=rss)
        if cpu > CPU_WARNING_PERCENT:
            events.cpu_warning.fire(environment=environment, cpu_usage=cpu)
            if not warned:
                warned = True
                log.warning(
                    "CPU usage above %g%%: the figures may be skewed; spread the load over "
                    "more processes (--processes or workers)",
                    CPU_WARNING_PERCENT,
                )


class Runner:
    """What every process's ``environment.runner`` offers user code, with
    Locust's names: the local runner, a worker's and the master's.

    Attributes:
        role: ``"local"``, ``"worker"`` or ``"master"`` (``isinstance``
            against Locust's ``LocalRunner``, ``WorkerRunner`` and
            ``MasterRunner`` reads it).
        state: ``ready``, ``spawning``, ``running``, ``stopping`` or
            ``stopped`` (Locust's ``STATE_*`` values).
        target_user_count: The users the current run asks for (None before
            the first run).
        worker_index: This process's place among the workers (0 when local).
        worker_count: Workers in the run (1 when local).
    """

    role = "local"
    state = "ready"
    worker_index = 0
    worker_count = 1

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.target_user_count: int | None = None
        self._errors_logged: set[tuple[str, str]] = set()
        #: Called with (message, traceback) for each distinct error in user
        #: code, the first time it happens (a worker forwards it to the master).
        self.on_new_error: Callable[[str, str], None] | None = None

    @property
    def user_count(self) -> int:
        """Users running now."""
        return 0

    @property
    def client_id(self) -> str:
        """This process's id (Locust's ``client_id``)."""
        return "local"

    @property
    def clients(self) -> dict[str, Any]:
        """The master's workers by id (Locust's ``clients``); empty elsewhere."""
        return {}

    @property
    def stats(self) -> StatsView:
        """The statistics now, with Locust's names (``runner.stats``)."""
        return StatsView.from_snapshot(self.environment.engine.snapshot())

    def stop(self) -> None:
        """Ends the current run, which then writes its reports."""
        self.environment.request_stop(quit_process=False)

    def quit(self) -> None:
        """Ends the current run and then the process (with the web UI too)."""
        self.environment.request_stop(quit_process=True)

    def register_message(self, name: str, handler: Any, concurrent: bool = False) -> None:
        """Locust's spelling of :meth:`Environment.register_message`."""
        hub.register(name, handler, concurrent=concurrent)

    def send_message(self, name: str, data: Any = None, client_id: Any = None) -> None:
        """Locust's spelling of :meth:`Environment.send_message`;
        ``client_id`` is a worker's id or index (the master only)."""
        hub.send(self.environment, name, data, None)

    def record_error(self, exc: BaseException, *, in_listener: bool = False) -> None:
        """Records an exception from user code among the run's errors, with
        its traceback (the user's frames only); logs each distinct cause
        once, and hands it to :attr:`on_new_error` then. ``in_listener``:
        it came from an event listener (see :class:`LocalRunner`)."""
        message = failure_text(exc) or ""
        tb = "".join(traceback.format_list(user_frames(exc))).rstrip()
        engine = self.environment.engine
        if engine is not None:
            engine.record_error(message, tb, self.client_id)
        key = (message, tb)
        if key not in self._errors_logged:
            self._errors_logged.add(key)
            log.error("Error in user code: %s\n%s", message, tb)
            if self.on_new_error is not None:
                self.on_new_error(message, tb)


class LocalRunner(Runner):
    """Spawns and stops the users of one process; each of its users sees it
    as their :class:`aiotest.user.UserContext`. One per process, for every
    run (:meth:`renew`).

    Args:
        environment: The run object, handed to each user (``self.environment``).
        user_classes: The classes it runs, in a fixed order.
        task_tables: Each class's tasks after tag filtering.
        engine: Where requests go and statistics are recorded.
        bridge: Delivers the engine's responses on the running loop.
        events: The run's event hooks.
        stop_timeout_s: Seconds users may take to finish their task at stop.
        iterations: Stop after exactly this many task executions in total
            (``-i``); None for no limit.

    Attributes:
        state: ``ready``, ``spawning``, ``running``, ``stopping`` or ``stopped``.
        task_runs: Task executions finished so far (however they ended).
        iterations_done: Set when ``iterations`` task executions finished.
    """

    def __init__(
        self,
        *,
        environment: Any,
        user_classes: Sequence[type[User]],
        task_tables: Mapping[type[User], TaskTable],
        engine: Engine,
        bridge: EngineBridge,
        events: Events,
        stop_timeout_s: float = 0.0,
        iterations: int | None = None,
    ) -> None:
        super().__init__(environment)
        self.user_classes = list(user_classes)
        self._task_tables = task_tables
        self.engine = engine
        self.bridge: EngineBridge | None = bridge
        self.events = events
        self.stop_timeout_s = stop_timeout_s
        # One bound method for every task's done callback (no object per user).
        self._on_user_done = self._user_done
        #: Where errors happen, for the exceptions report: a worker's id.
        self.node = "local"
        self.state = "ready"
        #: The open workload model's arrivals, when ``--arrival-rate`` is set.
        self.open_model: OpenModel | None = None
        self.renew(iterations=iterations)

    def renew(
        self,
        *,
        iterations: int | None = None,
        user_classes: Sequence[type[User]] | None = None,
        task_tables: Mapping[type[User], TaskTable] | None = None,
        stop_timeout_s: float | None = None,
    ) -> None:
        """Makes the runner ready for a new run: no users, no task runs,
        ``iterations`` to go, and the classes given (the same ones when None).

        Raises:
            RuntimeError: Users of the last run are still running.
        """
        if self.state not in ("ready", "stopped"):
            raise RuntimeError(f"a runner that is {self.state} cannot start a new run")
        if user_classes is not None:
            self.user_classes = list(user_classes)
        if task_tables is not None:
            self._task_tables = task_tables
        if stop_timeout_s is not None:
            self.stop_timeout_s = stop_timeout_s
        self.state = "ready"
        #: Set by :meth:`hurry`: the stop under way skips its grace times.
        self.hurried = asyncio.Event()
        self.task_runs = 0
        self.iterations = iterations
        self._iterations_claimed = 0
        self.iterations_done = asyncio.Event()
        #: Set when, after spawning, every user has ended by itself
        #: (``StopUser``, or a ``"once"`` feeder that ran dry).
        self.all_users_stopped = asyncio.Event()
        # Per class, in start order: each user's task -> the user. A dict, so
        # that a user's end is O(1) when thousands end together.
        self._users: dict[type[User], dict[asyncio.Task[None], User]] = {
            cls: {} for cls in self.user_classes
        }
        self.open_model = None

    @property
    def user_count(self) -> int:
        return sum(len(v) for v in self._users.values())

    @property
    def client_id(self) -> str:
        return self.node

    def user_classes_count(self) -> dict[str, int]:
        """Running users per class name."""
        return {cls.__name__: len(users) for cls, users in self._users.items()}

    async def start(
        self, user_count: int, spawn_rate: float, *, classes: Sequence[type[User]] | None = None
    ) -> None:
        """Ramps to ``user_count`` users at ``spawn_rate`` users/s, spread over
        the classes by weight (``fixed_count`` first), keeping the mix in
        proportion during the ramp. Stops surplus users, highest
        ``user_index`` first, when the count goes down.

        Args:
            classes: Run only these of the environment's classes (a load
                shape's step); all of them when None.

        Raises:
            ConfigError: For a bad class weight.
        """
        all_classes = self.user_classes
        chosen = [c for c in all_classes if classes is None or c in classes]
        counts = (
            user_counts(
                [float(c.weight) for c in chosen], [int(c.fixed_count) for c in chosen], user_count
            )
            if chosen
            else []
        )
        by_class = dict(zip(chosen, counts, strict=True))
        await self.start_counts([by_class.get(c, 0) for c in all_classes], spawn_rate)

    async def start_counts(self, target: list[int], spawn_rate: float) -> None:
        """Ramps to exactly ``target[i]`` users of class ``i`` (in the order of
        ``environment.user_classes``) at ``spawn_rate`` users/s. Users keep
        their ``user_index``; the indexes stay 0 to N-1."""
        owned = [
            sorted(u.user_index for u in self._users[c].values() if not u.stop_requested)
            for c in self.user_classes
        ]
        wanted = assign_user_indexes([owned], [target])[0]
        await self.start_indexed(wanted, spawn_rate)

    async def start_indexed(self, wanted: list[list[int]], spawn_rate: float) -> None:
        """Runs exactly the users whose ``user_index`` is in ``wanted[i]`` for
        class ``i``: stops the others at once, and starts the missing ones at
        ``spawn_rate`` users/s, keeping the class mix in proportion during
        the ramp. What a worker does with the master's ``spawn`` message."""
        classes = self.user_classes
        fresh: list[list[int]] = []
        for cls, indexes in zip(classes, wanted, strict=True):
            keep = set(indexes)
            for task, user in reversed(list(self._users[cls].items())):
                if user.user_index not in keep:
                    self._stop_user(user, task, force=True)
            running = {u.user_index for u in self._users[cls].values() if not u.stop_requested}
            fresh.append([i for i in indexes if i not in running][::-1])
        order = spawn_order([len(f) for f in fresh])
        self.target_user_count = sum(len(indexes) for indexes in wanted)
        self.state = "spawning"
        loop = asyncio.get_running_loop()
        bridge = self.bridge
        if bridge is not None and not bridge.attached:
            bridge.attach(loop)
        started = loop.time()
        spawned = 0
        while spawned < len(order):
            due = min(len(order), int((loop.time() - started) * spawn_rate) + 1)
            while spawned < due:
                c = order[spawned]
                self._spawn(classes[c], loop, fresh[c].pop())
                spawned += 1
            if spawned < len(order):
                await asyncio.sleep(max(0.0, started + spawned / spawn_rate - loop.time()))
        self.state = "running"
        if self.open_model is not None:
            self.open_model.start()  # arrivals begin once the pool is there
        if order and self.user_count == 0:
            self.all_users_stopped.set()  # they all ended while the ramp went on
        # The users' long-lived objects leave the collector's generations:
        # full collections then skip them (CPython's advice for servers).
        gc.freeze()
        log.info("All users spawned: %s (%d total)", self.mix_text(), self.user_count)
        self.events.spawning_complete.fire(user_count=self.user_count)

    def use_arrival_rate(self, rate_per_s: float | None) -> None:
        """Switches to the open workload model: users become a pool, and
        ``rate_per_s`` task iterations start each second once the pool has
        spawned; None (or 0) goes back to the closed model for new users.
        A new rate restarts the arrivals."""
        if not rate_per_s:
            if self.open_model is not None:
                self.open_model.stop()
            self.open_model = None
            return
        if self.open_model is not None and self.open_model.rate_per_s == rate_per_s:
            return
        if self.open_model is not None:
            self.open_model.set_rate(rate_per_s, restart=self.state == "running")
        else:
            self.open_model = OpenModel(self, rate_per_s)

    def _spawn(self, cls: type[User], loop: asyncio.AbstractEventLoop, user_index: int) -> None:
        user = cls.create(self.environment, user_index=user_index, context=self)
        open_model = self.open_model
        life = user.run() if open_model is None else user.run_pooled(open_model.next_turn)
        task = loop.create_task(life, name=f"{cls.__name__}-{user.user_index}")
        self._users[cls][task] = user
        task.add_done_callback(self._on_user_done)

    def _user_done(self, task: asyncio.Task[None]) -> None:
        user = None
        for users in self._users.values():
            user = users.pop(task, None)
            if user is not None:
                break
        if (
            user is not None
            and self.state == "running"
            and self.user_count == 0
            and not user.stop_requested
        ):
            self.all_users_stopped.set()
        if not task.cancelled() and task.exception() is not None:
            self.record_error(task.exception())  # type: ignore[arg-type]

    def _stop_user(self, user: User, task: asyncio.Task[None], *, force: bool) -> None:
        if user.request_stop(force=force):
            task.cancel()

    async def stop_users(self) -> None:
        """Stops every user: those waiting at once, those in a task after at
        most the stop timeout. Then waits (briefly) for requests already sent,
        so they are recorded."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        if self.open_model is not None:
            self.open_model.stop()
        timeout_s = self.stop_timeout_s
        entries = [(u, t) for users in self._users.values() for t, u in users.items()]
        for user, task in entries:
            self._stop_user(user, task, force=timeout_s <= 0)
        tasks = [t for _, t in entries]
        if tasks and timeout_s > 0:
            for t in await self._wait_unless_hurried(tasks, timeout_s):
                t.cancel()
        if tasks:
            # on_stop runs after cancellation; give it a bounded time.
            for t in await self._wait_unless_hurried(tasks, max(5.0, timeout_s)):
                t.cancel()
        engine = self.engine
        if engine.in_flight() and not self.hurried.is_set():
            await asyncio.to_thread(engine.wait_idle, _IN_FLIGHT_GRACE_S)
        if self.bridge is not None:
            self.bridge.detach()
        self.state = "stopped"

    def hurry(self) -> None:
        """Ends the stop under way at once (a second Ctrl-C): users still
        in a task or in ``on_stop`` are cancelled, and requests in flight
        are not waited for. What was recorded is kept."""
        self.hurried.set()
        for users in self._users.values():
            for task in users:
                task.cancel()

    async def _wait_unless_hurried(
        self, tasks: list[asyncio.Task[None]], timeout_s: float
    ) -> set[asyncio.Task[None]]:
        """Waits for ``tasks`` up to ``timeout_s``, or until :meth:`hurry`;
        returns those still running."""
        if self.hurried.is_set():
            return {t for t in tasks if not t.done()}
        # One future for all of them: waiting on thousands of tasks one by
        # one would cost a pass over all of them per task that ends.
        everyone: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
        hurry: asyncio.Future[Any] = asyncio.ensure_future(self.hurried.wait())
        try:
            await asyncio.wait(
                [everyone, hurry], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            hurry.cancel()
        return {t for t in tasks if not t.done()}

    def claim_iteration(self) -> bool:
        """Reserves one task execution; False once ``iterations`` are all
        reserved, which tells the user to stop."""
        if self.iterations is None:
            return True
        if self._iterations_claimed >= self.iterations:
            return False
        self._iterations_claimed += 1
        return True

    def release_iteration(self) -> None:
        """Gives back a reserved task execution that never ran."""
        if self.iterations is not None and self._iterations_claimed > 0:
            self._iterations_claimed -= 1

    def task_done(self) -> None:
        """Counts one finished task execution."""
        self.task_runs += 1
        if self.iterations is not None and self.task_runs >= self.iterations:
            self.iterations_done.set()

    def record_error(self, exc: BaseException, *, in_listener: bool = False) -> None:
        """:meth:`Runner.record_error`; one from a task (not from an event
        listener, ``in_listener``) also fires ``user_error``."""
        super().record_error(exc, in_listener=in_listener)
        if not in_listener:
            self.events.user_error.fire(user_instance=None, exception=exc, tb=exc.__traceback__)

    def task_table(self, cls: type[User]) -> TaskTable:
        """``cls``'s tasks after tag filtering (see :func:`aiotest.user.task_table`)."""
        return self._task_tables[cls]

    def mix_text(self) -> str:
        """Running users per class, e.g. ``Shopper: 3, Admin: 1``."""
        return ", ".join(f"{name}: {n}" for name, n in self.user_classes_count().items())
