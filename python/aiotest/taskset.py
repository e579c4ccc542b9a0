"""Tasks and task sets, in Locust's habits: ``@task`` and ``@tag``, the
``tasks`` attribute of users and task sets, and :class:`TaskSet` /
:class:`SequentialTaskSet`, which group tasks under a user (nested too).

A task set runs as blocking-style code in its user's greenlet (see
:mod:`aiotest.sync`): its waits and its requests let the other users run.
Each task it executes is one iteration for ``-i`` and ``--arrival-rate``;
entering a task set is not one.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from types import CoroutineType
from typing import Any, TypeVar

from .exceptions import (
    ConfigError,
    InterruptTaskSet,
    RescheduleTask,
    RescheduleTaskImmediately,
    StopUser,
)
from .sync import await_only

F = TypeVar("F", bound=Callable[..., Any])
TaskFn = Callable[[Any], Any]

log = logging.getLogger("aiotest.taskset")


def task(weight: int | F = 1) -> Any:
    """Marks a method as a task: ``@task`` or ``@task(3)``, where the weight
    makes it that many times as likely to be picked."""

    def mark(fn: F, w: int) -> F:
        if not isinstance(w, int) or w < 0:
            raise ConfigError(f"@task weight must be a whole number of 0 or more, got {w!r}")
        fn.aiotest_task_weight = w  # type: ignore[attr-defined]
        return fn

    if callable(weight):
        return mark(weight, 1)
    return lambda fn: mark(fn, weight)


def tag(*tags: str) -> Callable[[F], F]:
    """Tags a task, for ``-T/--tags`` and ``-E/--exclude-tags``."""
    if not tags or not all(isinstance(t, str) for t in tags):
        raise ConfigError("@tag takes one or more tag names as strings, e.g. @tag('checkout')")

    def mark(fn: F) -> F:
        fn.aiotest_tag_set = set(getattr(fn, "aiotest_tag_set", set())) | set(tags)  # type: ignore[attr-defined]
        return fn

    return mark


def _normalise_tasks(owner: str, tasks: Any) -> list[tuple[TaskFn, int]]:
    items: Iterable[Any]
    if isinstance(tasks, Mapping):
        items = tasks.items()
    elif isinstance(tasks, (list, tuple)):
        items = tasks
    else:
        raise ConfigError(f"{owner}.tasks must be a list or a dict of task functions")
    out: list[tuple[TaskFn, int]] = []
    for item in items:
        fn, weight = (
            item if isinstance(item, tuple) else (item, getattr(item, "aiotest_task_weight", 1))
        )
        if not callable(fn) or not isinstance(weight, int) or weight < 0:
            raise ConfigError(
                f"{owner}.tasks holds {item!r}: give functions, or (function, weight) pairs"
            )
        out.append((fn, weight))
    return out


def collect_tasks(
    name: str, bases: tuple[type, ...], ns: dict[str, Any]
) -> list[tuple[TaskFn, int]]:
    """A class's tasks with weights, as Locust collects them: its ``tasks``
    attribute if set (a list of functions, task sets or ``(task, weight)``
    pairs, or a dict), else the inherited tasks; then its ``@task``
    members (a redefined name replaces an inherited task).

    Raises:
        ConfigError: A ``tasks`` entry that is not a task.
    """
    found: dict[str, tuple[TaskFn, int]] = {}
    if "tasks" in ns:
        listed = _normalise_tasks(name, ns["tasks"])
        found = {f"#{i}": pair for i, pair in enumerate(listed)}
    else:
        for base in reversed(bases):
            for fn, w in getattr(base, "tasks", []):
                found[getattr(fn, "__name__", repr(fn))] = (fn, w)
    for attr, value in ns.items():
        if callable(value) and hasattr(value, "aiotest_task_weight"):
            found[attr] = (value, value.aiotest_task_weight)
    return list(found.values())


def is_taskset(fn: Any) -> bool:
    """Whether a task is a :class:`TaskSet` class (run, not called)."""
    return isinstance(fn, type) and issubclass(fn, TaskSet)


def call_task(fn: Any, owner: Any) -> None:
    """Runs one task of ``owner`` (a user or a task set) from blocking-style
    code: a nested task set runs until interrupted, a bound method of the
    owner is called as is, a function gets the owner, and an ``async``
    task is awaited in the user's task."""
    if is_taskset(fn):
        fn(owner).run()
        return
    result = fn() if getattr(fn, "__self__", None) is owner else fn(owner)
    if result is not None and (type(result) is CoroutineType or inspect.isawaitable(result)):
        await_only(result)


class _TaskSetMeta(type):
    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> _TaskSetMeta:
        ns["tasks"] = collect_tasks(name, bases, ns)
        return super().__new__(mcs, name, bases, ns)


class TaskSet(metaclass=_TaskSetMeta):
    """Tasks that a user runs together until one of them calls
    :meth:`interrupt` (Locust's ``TaskSet``): put the class in a user's
    ``tasks`` (or decorate it with ``@task``), nested as deep as needed.

    Attributes:
        tasks: Functions, methods or nested task sets, with weights.
        wait_time: Seconds between its tasks; the user's when None.
    """

    tasks: list[tuple[TaskFn, int]] = []
    wait_time: Callable[[Any], float] | None = None

    def __init__(self, parent: Any) -> None:
        self._parent = parent
        self._user = parent.user if isinstance(parent, TaskSet) else parent
        self._weights = [w for _, w in self.tasks]

    @property
    def user(self) -> Any:
        """The user running this task set."""
        return self._user

    @property
    def parent(self) -> Any:
        """The task set (or user) that started this one."""
        return self._parent

    @property
    def client(self) -> Any:
        """The user's HTTP client (``self.user.client``)."""
        return self._user.client

    def on_start(self) -> None:
        """Runs when the user enters this task set."""

    def on_stop(self) -> None:
        """Runs when the user leaves it (interrupted or stopped)."""

    def get_next_task(self) -> TaskFn:
        """A task picked at random by weight.

        Raises:
            ConfigError: The task set has no task.
        """
        if not self.tasks:
            raise ConfigError(
                f"{type(self).__name__} has no tasks: decorate methods with @task or set `tasks`"
            )
        return random.choices([fn for fn, _ in self.tasks], weights=self._weights)[0]

    def execute_task(self, fn: TaskFn) -> None:
        """Runs one task (a method, a function or a nested task set)."""
        call_task(fn, self)

    def wait_seconds(self) -> float:
        """This task set's wait time, else its user's."""
        if self.wait_time is not None:
            return float(type(self).wait_time(self))  # type: ignore[misc]
        return float(self._user.wait_time())

    def wait(self) -> None:
        """Waits the wait time, letting other users run; a stop ends it.

        Raises:
            StopUser: The user is stopping.
        """
        user = self._user
        if user.stop_requested:
            raise StopUser()
        await_only(user.sleep(self.wait_seconds()))
        if user.stop_requested:
            raise StopUser()

    def interrupt(self, reschedule: bool = True) -> None:
        """Leaves this task set for its parent; with ``reschedule`` the
        parent runs its next task at once.

        Raises:
            InterruptTaskSet: Always: that is how control goes back.
        """
        raise InterruptTaskSet(reschedule)

    def run(self) -> None:
        """Runs tasks and waits until interrupted or the user stops.

        Raises:
            RescheduleTask, RescheduleTaskImmediately: Interrupted, for the parent.
            StopUser: The user is stopping, or a task asked it to stop.
        """
        try:
            self.on_start()
        except InterruptTaskSet as e:
            raise (RescheduleTaskImmediately() if e.reschedule else RescheduleTask()) from e
        context = self._user._context
        while True:
            try:
                if self._user.stop_requested:
                    raise StopUser()
                fn = self.get_next_task()
                if not self._run_one(context, fn):
                    continue
                self.wait()
            except InterruptTaskSet as e:
                self._leave()
                raise (RescheduleTaskImmediately() if e.reschedule else RescheduleTask()) from e
            except StopUser:
                self._leave()
                raise

    def _run_one(self, context: Any, fn: TaskFn) -> bool:
        """One task: an iteration, unless it is a nested task set. Returns
        False when the next task runs without a wait."""
        if is_taskset(fn):
            try:
                self.execute_task(fn)
            except RescheduleTaskImmediately:
                return False
            except RescheduleTask:
                pass
            return True
        if not context.claim_iteration():
            raise StopUser()
        try:
            self.execute_task(fn)
        except RescheduleTaskImmediately:
            return False
        except (RescheduleTask, InterruptTaskSet, StopUser):
            raise
        except Exception as exc:  # user code: record and go on
            context.record_error(exc)
        finally:
            context.task_done()
        return True

    def _leave(self) -> None:
        try:
            self.on_stop()
        except Exception as exc:
            self._user._context.record_error(exc)


class SequentialTaskSet(TaskSet):
    """A task set that runs its tasks in the order they are declared, over
    and over (Locust's ``SequentialTaskSet``); weights repeat a task."""

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self._order = [fn for fn, w in self.tasks for _ in range(max(1, w))]
        self._next = 0

    def get_next_task(self) -> TaskFn:
        if not self._order:
            return super().get_next_task()
        fn = self._order[self._next % len(self._order)]
        self._next += 1
        return fn


def transition(func_name: str, weight: int = 1) -> Callable[[F], F]:
    """Adds one edge of a :class:`MarkovTaskSet`'s chain: after this task,
    go to the task named ``func_name`` with relative ``weight``. Stack it
    for several edges (Locust's ``@transition``)."""

    def mark(fn: F) -> F:
        edges = dict(getattr(fn, "transitions", {}))
        edges[func_name] = weight
        fn.transitions = edges  # type: ignore[attr-defined]
        return fn

    return mark


def transitions(weights: Mapping[str, int] | Iterable[tuple[str, int] | str]) -> Callable[[F], F]:
    """Adds several edges at once (Locust's ``@transitions``): a dict of
    task name to weight, or a list of names (weight 1) and
    ``(name, weight)`` pairs."""
    pairs = (
        dict(weights)
        if isinstance(weights, Mapping)
        else dict(w if isinstance(w, tuple) else (w, 1) for w in weights)
    )

    def mark(fn: F) -> F:
        edges = dict(getattr(fn, "transitions", {}))
        edges.update(pairs)
        fn.transitions = edges  # type: ignore[attr-defined]
        return fn

    return mark


def _markov_chain(name: str, ns: dict[str, Any]) -> dict[str, tuple[list[str], list[int]]]:
    """The chain of a :class:`MarkovTaskSet` body, checked as Locust checks
    it: each task's next tasks and their weights, the first task first.

    Raises:
        ConfigError: No task has transitions, an edge leads to a missing
            task or to one without transitions, a weight is not a whole
            number above 0, or a chain task has tags.
    """
    chain = {k: v for k, v in ns.items() if callable(v) and hasattr(v, "transitions")}
    if not chain:
        raise ConfigError(f"{name} has no Markov tasks: decorate methods with @transition(...)")
    out: dict[str, tuple[list[str], list[int]]] = {}
    for fn_name, fn in chain.items():
        if hasattr(fn, "aiotest_tag_set"):
            raise ConfigError(f"{name}.{fn_name}: tags cannot be used on a MarkovTaskSet's tasks")
        edges: dict[str, int] = fn.transitions
        for dest, weight in edges.items():
            if dest not in chain:
                what = "does not exist" if dest not in ns else "has no transitions of its own"
                raise ConfigError(f"{name}.{fn_name} has a transition to {dest!r}, which {what}")
            if not isinstance(weight, int) or weight < 1:
                raise ConfigError(f"{name}.{fn_name}: transition weights are whole numbers above 0")
        out[fn_name] = (list(edges), list(edges.values()))
    seen, todo = set(), [next(iter(out))]
    while todo:
        at = todo.pop()
        if at not in seen:
            seen.add(at)
            todo.extend(out[at][0])
    if unreachable := sorted(set(out) - seen):
        log.warning("%s: these Markov tasks cannot be reached: %s", name, ", ".join(unreachable))
    return out


class _MarkovMeta(_TaskSetMeta):
    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> _MarkovMeta:
        if not ns.get("abstract"):
            ns["abstract"] = False
            ns["markov_chain"] = _markov_chain(name, ns)
        cls: _MarkovMeta = type.__new__(mcs, name, bases, {**ns, "tasks": []})
        return cls


class MarkovTaskSet(TaskSet, metaclass=_MarkovMeta):
    """Tasks run as a Markov chain (Locust's ``MarkovTaskSet``): it starts
    at the first task with transitions, and after each task moves to one of
    the tasks its ``@transition``/``@transitions`` name, picked by weight.

    Attributes:
        abstract: True on a base class whose chain is not checked.
        markov_chain: Task name -> (next task names, their weights).
    """

    abstract = True
    markov_chain: dict[str, tuple[list[str], list[int]]] = {}

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self._current = next(iter(self.markov_chain), "")

    def get_next_task(self) -> TaskFn:
        """The current task; the chain moves on to the next by weight."""
        fn: TaskFn = getattr(self, self._current)
        names, weights = self.markov_chain[self._current]
        self._current = random.choices(names, weights=weights)[0]
        return fn
