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
response. Here each such user runs its tasks in a greenlet inside its
asyncio task (:mod:`aiotest.sync`), and a request hands its awaitable to
that task, so the request runs on the Rust engine and is timed in Rust
while the other users go on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json as jsonlib
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from types import ModuleType, TracebackType
from typing import Any

from . import _bridge, gevent_api
from ._core import __version__
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
from .http import Headers, HttpSession, RequestContext, Response
from .lifecycle import LocalBackend, RunDriver, RunSpec
from .runner import Runner
from .shape import LoadStep, LoadTestShape
from .sync import install_cooperative_sleep
from .taskset import MarkovTaskSet, SequentialTaskSet, TaskSet, tag, task, transition, transitions
from .user import AsyncHttpUser, User
from .wait_time import between, constant, constant_pacing, constant_throughput

#: Locust's runner states (``locust.runners.STATE_*``).
STATE_INIT, STATE_SPAWNING, STATE_RUNNING = "ready", "spawning", "running"
STATE_CLEANUP, STATE_STOPPING, STATE_STOPPED, STATE_MISSING = (
    "cleanup",
    "stopping",
    "stopped",
    "missing",
)


class HTTPError(AiotestError):
    """``raise_for_status()`` of a failed request (``requests.HTTPError``)."""


class CatchResponseError(AiotestError):
    """Locust's ``CatchResponseError``. Unlike ``ResponseError``, raised in
    a ``catch_response`` block it is not the request's failure: it goes on
    out of the block, and the request is not recorded (as in Locust)."""


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


def run_single_user(
    user_class: type[User],
    include_length: bool = False,
    include_time: bool = False,
    include_context: bool = False,
    include_payload: bool = False,
    loglevel: str | None = "WARNING",
    *,
    run_time_s: float | None = None,
    iterations: int | None = None,
) -> None:
    """Runs one user of ``user_class`` in this process, printing each
    request, until Ctrl-C (or ``run_time_s``, or ``iterations`` tasks):
    Locust's debugging helper."""

    def show(request_type: str, name: str, response_time: float, **kw: Any) -> None:
        parts = [f"{request_type:<8} {name}"]
        if kw.get("exception"):
            parts.append(f"failed: {kw['exception']}")
        if include_time:
            parts.append(f"{response_time:.1f} ms")
        if include_length:
            parts.append(f"{kw.get('response_length', 0)} bytes")
        if include_context:
            parts.append(str(kw.get("context")))
        print("  ".join(parts), flush=True)

    env = Environment(user_classes=[user_class])
    env.events.request.add_listener(show)
    spec = RunSpec(step=LoadStep(1, 1.0), run_time_s=run_time_s, iterations=iterations)
    try:
        _bridge.run(RunDriver(env, LocalBackend(env), spec).run(asyncio.Event()))
    except KeyboardInterrupt:
        pass
    finally:
        env.events.request.remove_listener(show)


@dataclasses.dataclass(frozen=True)
class SentRequest:
    """A request as sent, in ``requests``' ``PreparedRequest`` names.

    Attributes:
        method: The HTTP method.
        url: The full URL asked for (before redirects).
        headers: The headers the request added (the session's included).
        body: The body, or None.
    """

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


class SyncResponse:
    """A finished request as ``requests.Response`` and Locust's
    FastHttpUser response present it (``status_code``, ``text``, ``json()``, ...).

    Attributes:
        js: With ``FastHttpUser.rest()``, the body parsed as JSON (None
            when it is not JSON).
    """

    __slots__ = ("_ctx", "_response", "js")

    def __init__(self, response: Response, ctx: RequestContext) -> None:
        self._response = response
        self._ctx = ctx
        self.js: Any = None

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def ok(self) -> bool:
        """requests' rule: no error and a status below 400."""
        return self._response.ok

    @property
    def reason(self) -> str:
        return self._response.reason

    @property
    def url(self) -> str:
        return self._response.url

    @property
    def headers(self) -> Headers:
        return self._response.headers

    @property
    def cookies(self) -> dict[str, str]:
        return self._response.cookies

    @property
    def content(self) -> bytes:
        return self._response.content

    @property
    def encoding(self) -> str:
        return self._response.encoding

    @property
    def text(self) -> str:
        """The body decoded by its charset (UTF-8 by default)."""
        return self._response.content.decode(self.encoding, errors="replace")

    @property
    def elapsed(self) -> datetime.timedelta:
        """The response time."""
        return datetime.timedelta(microseconds=self._response.response_time_us)

    @property
    def request(self) -> SentRequest:
        """What was sent (``requests``' ``response.request``)."""
        ctx = self._ctx
        spec = ctx._spec
        url = spec.url
        if "://" not in url:
            url = (ctx._session.base_url or "").rstrip("/") + "/" + url.lstrip("/")
        return SentRequest(spec.method, url, dict(spec.headers), spec.body)

    @property
    def history(self) -> list[SyncResponse]:
        """Redirects are followed in the engine; their responses are not kept."""
        return []

    @property
    def error(self) -> str | None:
        """The failure text, or None (FastHttpUser's ``error``)."""
        return self._response.error

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON. Raises ``json.JSONDecodeError``."""
        return jsonlib.loads(self._response.content, **kwargs)

    def raise_for_status(self) -> None:
        """Raises :class:`HTTPError` when the request failed. As with
        ``requests``, it is not a ``ResponseError``: raised in a
        ``catch_response`` block, it goes on and nothing is recorded."""
        if self._response.error is not None:
            raise HTTPError(self._response.error)

    def success(self) -> None:
        """With ``catch_response=True``: record it as a success."""
        self._response.success()

    def failure(self, exc: BaseException | str) -> None:
        """With ``catch_response=True``: record it as a failure."""
        self._response.failure(exc)

    # `with client.get(..., catch_response=True) as resp:` by Locust's rules.
    def __enter__(self) -> SyncResponse:
        self._ctx._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Records the request when the block ends, as Locust's
        ``ResponseContextManager`` does: a result set with ``success()`` or
        ``failure()`` wins and the block's exception goes on; else a
        ``ResponseError`` from the block is the failure and is swallowed;
        another exception goes on and nothing is recorded; and a block that
        ends well records by the status."""
        ctx = self._ctx
        if not ctx._catch:
            return False  # recorded by the engine already
        decided = ctx._result is not False
        if decided:
            ctx._record(ctx._result)
            return exc is None
        if exc is not None:
            if isinstance(exc, ResponseError):
                ctx._record(str(exc) or type(exc).__name__)
                return True
            return False
        ctx._record(self._response.error)
        return True

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


class SyncHttpSession:
    """Locust's ``self.client``: blocking-style requests on the user's
    engine session, ``requests``' keyword arguments.

    Args:
        session: The user's :class:`aiotest.http.HttpSession`.
    """

    def __init__(self, session: HttpSession) -> None:
        self._session = session

    @property
    def base_url(self) -> str | None:
        return self._session.base_url

    @property
    def headers(self) -> dict[str, str]:
        """Headers sent with every request of this user."""
        return self._session.headers

    def request(
        self,
        method: str,
        url: str,
        name: str | None = None,
        catch_response: bool = False,
        *,
        data: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        allow_redirects: bool = True,
        auth: tuple[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        files: Any = None,
        context: Mapping[str, Any] | None = None,
        **_ignored: Any,
    ) -> SyncResponse:
        """Sends a request and returns its response once it is done; the
        other users run meanwhile. ``verify``, ``stream``, ``cert`` and
        ``proxies`` are accepted and have no effect yet.

        Raises:
            ValueError: An unknown method or a bad timeout.
        """
        if auth is not None or cookies:
            headers = dict(headers or {})
            if auth is not None:
                token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                headers.setdefault("Authorization", f"Basic {token}")
            if cookies:
                headers.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
        if isinstance(timeout, tuple):  # requests' (connect, read): the longer
            timeout = max(timeout)
        ctx = self._session.request(
            method,
            url,
            name=name,
            params=params,
            headers=headers,
            json=json,
            data=data,
            timeout=timeout,
            allow_redirects=allow_redirects,
            catch_response=catch_response,
            context=context,
            files=files,
        )
        return SyncResponse(ctx.wait(), ctx)

    def get(self, url: str, **kwargs: Any) -> SyncResponse:
        if not kwargs:  # the common case, without request()'s argument handling
            ctx = self._session.request("GET", url)
            return SyncResponse(ctx.wait(), ctx)
        return self.request("GET", url, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> SyncResponse:
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> SyncResponse:
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url: str, data: Any = None, **kwargs: Any) -> SyncResponse:
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> SyncResponse:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> SyncResponse:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> SyncResponse:
        return self.request("OPTIONS", url, **kwargs)


class HttpUser(AsyncHttpUser):
    """Locust's ``HttpUser``: blocking-style tasks with ``self.client``."""

    abstract = True
    blocking = True

    def __init__(self, environment: Any, **kwargs: Any) -> None:
        super().__init__(environment, **kwargs)
        self._sync_client = SyncHttpSession(self.session)

    @property
    def client(self) -> SyncHttpSession:  # type: ignore[override]
        """Blocking-style requests: ``self.client.get("/")``."""
        return self._sync_client


class FastHttpUser(HttpUser):
    """Locust's ``FastHttpUser``: as :class:`HttpUser` (both run on the Rust
    engine), with ``rest()`` and the same settings.

    Attributes:
        network_timeout: Seconds before a request fails.
        connection_timeout, max_redirects, max_retries, insecure,
        concurrency: Accepted for Locust's scripts; the engine's own
        settings apply.
    """

    abstract = True
    connection_timeout: float = 60.0
    max_redirects: int = 5
    max_retries: int = 1
    insecure: bool = True
    concurrency: int = 10

    @contextlib.contextmanager
    def rest(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Iterator[SyncResponse]:
        """A JSON request with ``catch_response``: ``resp.js`` holds the
        parsed body; an ``assert`` in the block fails the request with its
        message, as in Locust."""
        merged = {"Content-Type": "application/json", "Accept": "application/json"}
        merged.update(headers or {})
        with self.client.request(method, url, catch_response=True, headers=merged, **kwargs) as r:
            if r.error is not None and not r.content:
                r.failure(r.error)
            elif r.text:
                try:
                    r.js = r.json()
                except ValueError as exc:
                    r.failure(
                        f"Could not parse response as JSON. {r.text[:250]}, response code "
                        f"{r.status_code}, error {exc}"
                    )
            try:
                yield r
            except AssertionError as exc:
                r.failure(_assertion_failure(exc, r.text))
            except Exception as exc:
                r.failure(_exception_failure(exc, r.text))

    @contextlib.contextmanager
    def rest_(
        self, method: str, url: str, name: str | None = None, **kwargs: Any
    ) -> Iterator[SyncResponse]:
        """:meth:`rest` with a ``_=<ms since the epoch>`` query parameter
        added, to get past caches; the stats name is ``url?_=...`` unless
        ``name`` is given (Locust's ``rest_``)."""
        separator = "&" if "?" in url else "?"
        name = name or f"{url}{separator}_=..."
        stamped = f"{url}{separator}_={int(time.time() * 1000)}"
        with self.rest(method, stamped, name=name, **kwargs) as resp:
            yield resp


def _assertion_failure(exc: AssertionError, text: str) -> str:
    """The failure text of an ``assert`` in a ``rest()`` block, as Locust
    words it: its message, and the response's start when the message ends
    with a comma."""
    if not exc.args:
        return "Assertion failed"
    message = str(exc.args[0])
    if message.endswith(","):
        return f"{message[:-1]}, response was {text[:200]}"
    return message


def _exception_failure(exc: Exception, text: str) -> str:
    """The failure text of another exception in a ``rest()`` block, as
    Locust words it: the exception, where in the user's code, the response."""
    frames = [
        f"{_home_to_tilde(f.filename)}:{f.lineno} in {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith("/") and not f.filename.startswith(_PACKAGE_DIR)
    ]
    return f"{type(exc).__name__}: {exc} at {', '.join(frames)}. Response was {text[:200]}"


def _home_to_tilde(path: str) -> str:
    return re.sub(r"/((home|Users)/\w*)/", "~/", path)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


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
    wait_time = _module(
        "locust.user.wait_time",
        between=between,
        constant=constant,
        constant_pacing=constant_pacing,
        constant_throughput=constant_throughput,
    )
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
        between=between,
        constant=constant,
        constant_pacing=constant_pacing,
        constant_throughput=constant_throughput,
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
