"""Runs users in this process: spawning at the spawn rate, stopping
gracefully, and counting task runs and user errors."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._bridge import EngineBridge
from ._core import Engine, assign_user_indexes, spawn_order, user_counts
from .events import Events
from .messages import hub
from .open_model import OpenModel
from .result import StatsView
from .user import TaskTable, User

log = logging.getLogger("aiotest.runner")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Seconds to wait for requests already sent when users stop, so that what the
# target served is also what the statistics hold.
_IN_FLIGHT_GRACE_S = 5.0


class LocalRunner:
    """Spawns and stops the users of one process; each of its users sees it
    as their :class:`aiotest.user.UserContext`.

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
        self.environment = environment
        self.user_classes = list(user_classes)
        self._task_tables = task_tables
        self.engine = engine
        self.bridge: EngineBridge | None = bridge
        self.events = events
        self.stop_timeout_s = stop_timeout_s
        self.state = "ready"
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
        # One bound method for every task's done callback (no object per user).
        self._on_user_done = self._user_done
        #: This process's place in the cluster (0 of 1 in local mode).
        self.worker_index = 0
        self.worker_count = 1
        self._errors_logged: set[tuple[str, str]] = set()
        #: Called with (message, traceback) for each distinct error in user
        #: code, the first time it happens (a worker forwards it to the master).
        self.on_new_error: Callable[[str, str], None] | None = None
        #: Where errors happen, for the exceptions report: a worker's id.
        self.node = "local"
        #: The open workload model's arrivals, when ``--arrival-rate`` is set.
        self.open_model: OpenModel | None = None

    @property
    def user_count(self) -> int:
        return sum(len(v) for v in self._users.values())

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
        user = cls(self.environment, user_index=user_index, context=self)
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

    async def stop(self) -> None:
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
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for t in pending:
                t.cancel()
        if tasks:
            # on_stop runs after cancellation; give it a bounded time.
            _, pending = await asyncio.wait(tasks, timeout=max(5.0, timeout_s))
            for t in pending:
                t.cancel()
        engine = self.engine
        if engine.in_flight():
            await asyncio.to_thread(engine.wait_idle, _IN_FLIGHT_GRACE_S)
        if self.bridge is not None:
            self.bridge.detach()
        self.state = "stopped"

    def register_message(self, name: str, handler: Any) -> None:
        """Locust's spelling of :meth:`Environment.register_message`."""
        hub.register(name, handler)

    def send_message(self, name: str, data: Any = None, client_id: int | None = None) -> None:
        """Locust's spelling of :meth:`Environment.send_message`;
        ``client_id`` is the worker index."""
        hub.send(self.environment, name, data, client_id)

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
        """Records an exception from user code with its traceback; logs each
        distinct cause once. One from a task (not from an event listener,
        ``in_listener``) also fires ``user_error``."""
        message = f"{type(exc).__name__}: {exc}"
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if not f.filename.startswith(_PACKAGE_DIR)
        ]
        tb = "".join(traceback.format_list(frames)).rstrip()
        self.engine.record_error(message, tb, self.node)
        key = (message, tb)
        if key not in self._errors_logged:
            self._errors_logged.add(key)
            log.error("Error in user code: %s\n%s", message, tb)
            if self.on_new_error is not None:
                self.on_new_error(message, tb)
        if not in_listener:
            self.events.user_error.fire(user_instance=None, exception=exc, tb=exc.__traceback__)

    @property
    def stats(self) -> StatsView:
        """The statistics now, with Locust's names (``runner.stats``)."""
        return StatsView.from_snapshot(self.engine.snapshot())

    def task_table(self, cls: type[User]) -> TaskTable:
        """``cls``'s tasks after tag filtering (see :func:`aiotest.user.task_table`)."""
        return self._task_tables[cls]

    def mix_text(self) -> str:
        """Running users per class, e.g. ``Shopper: 3, Admin: 1``."""
        return ", ".join(f"{name}: {n}" for name, n in self.user_classes_count().items())
