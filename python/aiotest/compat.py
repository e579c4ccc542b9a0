"""Locust's API on aiotest: ``aiotest -f locustfile.py`` runs a locustfile
as it is. :func:`install` puts modules named ``locust``,
``locust.contrib.fasthttp``, ``locust.clients``, ``locust.exception``,
``locust.runners``, ``locust.user``, ``locust.user.wait_time``,
``locust.env`` and ``locust.event`` into ``sys.modules`` of the aiotest
process, holding aiotest's implementation of Locust's names, so a
locustfile's imports find them even when the real Locust is installed
next to aiotest (which that process then never imports).

Locust's users are blocking-style: ``self.client.get("/")`` returns the
response. Here each such user runs its tasks in a greenlet inside its
asyncio task (:mod:`aiotest.sync`), and a request hands its awaitable to
that task, so the request runs on the Rust engine and is timed in Rust
while the other users go on.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json as jsonlib
import sys
from collections.abc import Iterator, Mapping
from types import ModuleType, TracebackType
from typing import Any

from ._core import __version__
from .env import Environment
from .events import EventHook, Events, events
from .exceptions import (
    AiotestError,
    ConfigError,
    InterruptTaskSet,
    RescheduleTask,
    RescheduleTaskImmediately,
    ResponseError,
    StopTest,
    StopUser,
)
from .http import Headers, HttpSession, RequestContext, Response
from .runner import LocalRunner
from .shape import LoadTestShape
from .sync import await_only, install_cooperative_sleep
from .taskset import SequentialTaskSet, TaskSet, tag, task
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


class SyncResponse:
    """A finished request as ``requests.Response`` and Locust's
    FastHttpUser response present it (``status_code``, ``text``, ``json()``, ...).

    Attributes:
        js: With ``FastHttpUser.rest()``, the body parsed as JSON (None
            when it is not JSON).
    """

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
        """Raises :class:`aiotest.ResponseError` when the request failed."""
        self._response.raise_for_status()

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
            ConfigError: ``files=`` (multipart uploads are not supported yet).
            ValueError: An unknown method or a bad timeout.
        """
        if files is not None:
            raise ConfigError("files= (multipart uploads) is not supported yet: send data= instead")
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
        )
        return SyncResponse(await_only(ctx), ctx)

    def get(self, url: str, **kwargs: Any) -> SyncResponse:
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
                r.failure(str(exc.args[0]) if exc.args else "Assertion failed")
            except Exception as exc:
                r.failure(f"{type(exc).__name__}: {exc}")

    def rest_(self, method: str, url: str, **kwargs: Any) -> Any:
        """Locust's alias of :meth:`rest`."""
        return self.rest(method, url, **kwargs)


def _module(name: str, **names: Any) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(names)
    return module


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
        CatchResponseError=ResponseError,
    )
    wait_time = _module(
        "locust.user.wait_time",
        between=between,
        constant=constant,
        constant_pacing=constant_pacing,
        constant_throughput=constant_throughput,
    )
    users = dict(User=User, HttpUser=HttpUser, FastHttpUser=FastHttpUser)
    tasks = dict(task=task, tag=tag, TaskSet=TaskSet, SequentialTaskSet=SequentialTaskSet)
    runners = _module(
        "locust.runners",
        LocalRunner=LocalRunner,
        MasterRunner=type("MasterRunner", (), {}),
        WorkerRunner=type("WorkerRunner", (), {}),
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
    }
    for name, module in modules.items():
        if any(other.startswith(name + ".") for other in modules):
            module.__path__ = []  # a package: its submodules import
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(modules[parent], child, module)
    sys.modules.update(modules)
