"""Locust's API on aiotest: ``aiotest -f locustfile.py`` runs a locustfile
as it is. :func:`install` puts modules named ``locust``,
``locust.contrib.fasthttp``, ``locust.clients``, ``locust.exception``,
``locust.runners``, ``locust.user``, ``locust.user.wait_time``,
``locust.env`` and ``locust.event`` into ``sys.modules`` of the aiotest
process, holding aiotest's implementation of Locust's names, so a
locustfile's imports find them even when the real Locust is installed
next to aiotest (which that process then never imports). ``gevent`` and
its ``lock``, ``event``, ``pool``, ``queue`` and ``monkey`` modules are
replaced the same way, by :mod:`aiotest.gevent_api`.

Locust's users are blocking-style: ``self.client.get("/")`` returns the
response (:mod:`aiotest.sync_http`).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from . import gevent_api
from ._core import __version__
from .api import run_single_user
from .env import Environment
from .events import EventHook, Events, events
from .exceptions import (
    AiotestError,
    InterruptTaskSet,
    RescheduleTask,
    RescheduleTaskImmediately,
    ResponseError,
    StopTest,
    StopUser,
)
from .runner import Runner
from .shape import LoadTestShape
from .sync import install_cooperative_sleep
from .sync_http import (
    CatchResponseError,
    FastHttpUser,
    HttpUser,
    SyncHttpSession,
    SyncResponse,
)
from .taskset import MarkovTaskSet, SequentialTaskSet, TaskSet, tag, task, transition, transitions
from .user import User
from .wait_time import between, constant, constant_pacing, constant_throughput

#: Locust's runner states (``locust.runners.STATE_*``).
STATE_INIT, STATE_SPAWNING, STATE_RUNNING = "ready", "spawning", "running"
STATE_CLEANUP, STATE_STOPPING, STATE_STOPPED, STATE_MISSING = (
    "cleanup",
    "stopping",
    "stopped",
    "missing",
)


class _RoleCheck(type):
    """``isinstance(environment.runner, LocalRunner)`` and its siblings as
    in Locust: true for the runner of that role (see ``Runner.role``)."""

    role: str

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, Runner) and obj.role == cls.role


class LocalRunner(metaclass=_RoleCheck):
    """Locust's ``LocalRunner``, for ``isinstance`` checks: one process runs it all."""

    role = "local"


class MasterRunner(metaclass=_RoleCheck):
    """Locust's ``MasterRunner``, for ``isinstance`` checks: the master."""

    role = "master"


class WorkerRunner(metaclass=_RoleCheck):
    """Locust's ``WorkerRunner``, for ``isinstance`` checks: a worker."""

    role = "worker"


def _module(name: str, **names: Any) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(names)
    return module


def _gevent_modules() -> dict[str, ModuleType]:
    """``gevent`` and the submodules locustfiles use, from :mod:`aiotest.gevent_api`."""
    g = gevent_api
    greenlets = dict(
        Greenlet=g.Greenlet,
        GreenletExit=g.GreenletExit,
        Timeout=g.Timeout,
        sleep=g.sleep,
        spawn=g.spawn,
        spawn_later=g.spawn_later,
        joinall=g.joinall,
        kill=g.kill,
        killall=g.killall,
    )
    locks = dict(Semaphore=g.Semaphore, BoundedSemaphore=g.BoundedSemaphore, RLock=g.RLock)
    return {
        "gevent": _module("gevent", **greenlets),
        "gevent.lock": _module("gevent.lock", **locks),
        "gevent.event": _module("gevent.event", Event=g.Event),
        "gevent.pool": _module("gevent.pool", Pool=g.Pool, Group=g.Group),
        "gevent.queue": _module(
            "gevent.queue", Queue=g.Queue, Empty=g.Empty, Full=g.Full, JoinableQueue=g.Queue
        ),
        "gevent.greenlet": _module("gevent.greenlet", Greenlet=g.Greenlet),
        "gevent.monkey": _module(
            "gevent.monkey", patch_all=g.patch_all, is_module_patched=g.is_module_patched
        ),
    }


def install() -> None:
    """Puts the ``locust`` modules (see the module doc) into
    ``sys.modules`` and makes ``time.sleep`` cooperative in users' sync
    code. Idempotent."""
    install_cooperative_sleep()
    exceptions = _module(
        "locust.exception",
        LocustError=AiotestError,
        StopUser=StopUser,
        StopTest=StopTest,
        InterruptTaskSet=InterruptTaskSet,
        RescheduleTask=RescheduleTask,
        RescheduleTaskImmediately=RescheduleTaskImmediately,
        ResponseError=ResponseError,
        CatchResponseError=CatchResponseError,
    )
    waits = dict(
        between=between,
        constant=constant,
        constant_pacing=constant_pacing,
        constant_throughput=constant_throughput,
    )
    wait_time = _module("locust.user.wait_time", **waits)
    users = dict(User=User, HttpUser=HttpUser, FastHttpUser=FastHttpUser)
    tasks = dict(
        task=task,
        tag=tag,
        TaskSet=TaskSet,
        SequentialTaskSet=SequentialTaskSet,
        MarkovTaskSet=MarkovTaskSet,
        transition=transition,
        transitions=transitions,
    )
    runners = _module(
        "locust.runners",
        Runner=Runner,
        LocalRunner=LocalRunner,
        MasterRunner=MasterRunner,
        WorkerRunner=WorkerRunner,
        STATE_INIT=STATE_INIT,
        STATE_SPAWNING=STATE_SPAWNING,
        STATE_RUNNING=STATE_RUNNING,
        STATE_CLEANUP=STATE_CLEANUP,
        STATE_STOPPING=STATE_STOPPING,
        STATE_STOPPED=STATE_STOPPED,
        STATE_MISSING=STATE_MISSING,
    )
    root = _module(
        "locust",
        __version__=__version__,
        events=events,
        LoadTestShape=LoadTestShape,
        run_single_user=run_single_user,
        **waits,
        **users,
        **tasks,
    )
    modules = {
        "locust": root,
        "locust.exception": exceptions,
        "locust.runners": runners,
        "locust.user": _module("locust.user", **users, **tasks, wait_time=wait_time),
        "locust.user.wait_time": wait_time,
        "locust.user.task": _module("locust.user.task", **tasks),
        "locust.contrib": _module("locust.contrib"),
        "locust.contrib.fasthttp": _module(
            "locust.contrib.fasthttp",
            FastHttpUser=FastHttpUser,
            FastHttpSession=SyncHttpSession,
            FastResponse=SyncResponse,
            ResponseContextManager=SyncResponse,
            RestResponseContextManager=SyncResponse,
        ),
        "locust.clients": _module(
            "locust.clients",
            HttpSession=SyncHttpSession,
            ResponseContextManager=SyncResponse,
        ),
        "locust.env": _module("locust.env", Environment=Environment),
        "locust.event": _module("locust.event", EventHook=EventHook, Events=Events),
        "locust.user.markov_taskset": _module(
            "locust.user.markov_taskset",
            MarkovTaskSet=MarkovTaskSet,
            transition=transition,
            transitions=transitions,
        ),
        **_gevent_modules(),
    }
    for name, module in modules.items():
        if any(other.startswith(name + ".") for other in modules):
            module.__path__ = []  # a package: its submodules import
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(modules[parent], child, module)
    sys.modules.update(modules)
