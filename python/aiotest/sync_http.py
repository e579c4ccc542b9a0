"""Locust's blocking-style HTTP users on aiotest: :class:`HttpUser` and
:class:`FastHttpUser`, whose ``self.client`` (:class:`SyncHttpSession`)
returns a :class:`SyncResponse` from ``self.client.get("/")``.

Each such user runs in a greenlet inside its asyncio task (see
:mod:`aiotest.sync`); a request hands the engine's awaitable to that task,
so it runs on the Rust engine and is timed in Rust while the other users go
on. The names and rules are Locust's (``requests``' for the response).
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import dataclasses
import datetime
import json as jsonlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any

from .events import user_frames
from .exceptions import AiotestError, ResponseError
from .http import Headers, HttpSession, RequestContext, Response
from .sync import await_only, in_user_greenlet
from .user import AsyncHttpUser


class HTTPError(AiotestError):
    """``raise_for_status()`` of a failed request (``requests.HTTPError``)."""


class CatchResponseError(AiotestError):
    """Locust's ``CatchResponseError``. Unlike ``ResponseError``, raised in
    a ``catch_response`` block it is not the request's failure: it goes on
    out of the block, and the request is not recorded (as in Locust)."""


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
        """The HTTP status; 0 when no response arrived."""
        return self._response.status

    @property
    def ok(self) -> bool:
        """requests' rule: no error and a status below 400."""
        return self._response.ok

    @property
    def http_version(self) -> str:
        """The HTTP version that answered, e.g. ``"HTTP/2"``."""
        return self._response.http_version

    @property
    def timings(self) -> dict[str, int]:
        """The request's phases in µs (see :attr:`Response.timings`)."""
        return self._response.timings

    @property
    def reason(self) -> str:
        """The status's reason phrase, e.g. ``Not Found``."""
        return self._response.reason

    @property
    def url(self) -> str:
        """The final URL, after redirects."""
        return self._response.url

    @property
    def headers(self) -> Headers:
        """The response headers, looked up without regard to case."""
        return self._response.headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies this response set (name to value)."""
        return self._response.cookies

    @property
    def content(self) -> bytes:
        """The whole body, as bytes; with ``stream=True``, what was not
        iterated over yet, read to its end now (as ``requests`` does)."""
        if self._response._raw.streamed:
            return await_only(self._response.read())
        return self._response.content

    def iter_content(
        self, chunk_size: int | None = 1, decode_unicode: bool = False
    ) -> Iterator[Any]:
        """The body in pieces of ``chunk_size`` bytes (``None``: as they
        arrive), as ``requests`` gives them; with ``stream=True`` they are
        read as they arrive, and the other users run meanwhile.

        Raises:
            ValueError: ``chunk_size`` is not a positive int or None.
        """
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int or None, not {chunk_size!r}")
        arriving = (
            _blocking(self._response.iter_chunks())
            if self._response._raw.streamed
            else iter([self._response.content])
        )
        pieces = arriving if chunk_size is None else _rechunk(arriving, chunk_size)
        if not decode_unicode:
            return pieces
        return _decoded(pieces, self.encoding)

    def iter_lines(
        self,
        chunk_size: int | None = 512,
        decode_unicode: bool = False,
        delimiter: bytes | None = None,
        *,
        first_name: str | None = None,
        gap_name: str | None = None,
    ) -> Iterator[Any]:
        """The body's lines without their line breaks, as ``requests``
        gives them (bytes, or str with ``decode_unicode``), read as they
        arrive with ``stream=True``. ``first_name`` and ``gap_name`` record
        the time to the first line and between lines in stats rows of those
        names (see :meth:`aiotest.http.Response.iter_lines`)."""
        del chunk_size  # lines are cut as the chunks arrive
        raw: Iterator[bytes]
        if delimiter is None and self._response._raw.streamed:
            raw = _blocking(self._response._line_bytes(first_name, gap_name))
        else:
            body = self.content
            raw = iter(body.split(delimiter) if delimiter else body.splitlines())
        if not decode_unicode:
            return raw
        return (line.decode(self.encoding, errors="replace") for line in raw)

    def close(self) -> None:
        """Stops reading a streamed body and lets its connection go
        (``requests``' ``Response.close``); nothing otherwise."""
        self._response.close()

    @property
    def encoding(self) -> str:
        """The Content-Type's charset, else ``utf-8``."""
        return self._response.encoding

    @property
    def text(self) -> str:
        """The body decoded by its charset (UTF-8 by default)."""
        return self.content.decode(self.encoding, errors="replace")

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
        return jsonlib.loads(self.content, **kwargs)

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
        self._response.close()
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


def _blocking(pieces: AsyncIterator[Any]) -> Iterator[Any]:
    """An async iterator's items from blocking-style code: each step is
    awaited in the user's task while the other users run."""
    try:
        while True:
            try:
                yield await_only(pieces.__anext__())
            except StopAsyncIteration:
                return
    finally:
        # Left early: close it now (a collected one closes on the loop).
        if in_user_greenlet():
            await_only(pieces.aclose())  # type: ignore[attr-defined]


def _rechunk(arriving: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``arriving``'s bytes in pieces of ``size`` (the last may be shorter)."""
    pending = b""
    for data in arriving:
        pending += data
        # Sliced by offset: each byte is copied once, also at requests'
        # default chunk_size of 1.
        whole = len(pending) - len(pending) % size
        for at in range(0, whole, size):
            yield pending[at : at + size]
        pending = pending[whole:]
    if pending:
        yield pending


def _decoded(pieces: Iterator[bytes], encoding: str) -> Iterator[str]:
    """``pieces`` decoded as they come, a character cut across two kept whole."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for data in pieces:
        text = decoder.decode(data)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


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
        """The user's host; relative URLs are appended to it."""
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
        max_body_bytes: int | None = None,
        verify: bool | str | None = None,
        cert: str | tuple[str, str] | None = None,
        stream: bool = False,
        **_ignored: Any,
    ) -> SyncResponse:
        """Sends a request and returns its response once it is done; the
        other users run meanwhile. ``verify`` and ``cert`` are as in
        ``requests``; with ``stream=True`` the response comes at its head
        and :meth:`SyncResponse.iter_lines` / :meth:`SyncResponse.iter_content`
        read the body as it arrives. ``proxies`` is accepted and has no
        effect (the environment's proxy variables are honoured).

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
            max_body_bytes=max_body_bytes,
            verify=verify,
            cert=cert,
            stream=stream,
        )
        return SyncResponse(ctx.wait(), ctx)

    def get(self, url: str, **kwargs: Any) -> SyncResponse:
        """``request("GET", url, **kwargs)``."""
        if not kwargs:  # the common case, without request()'s argument handling
            ctx = self._session.request("GET", url)
            return SyncResponse(ctx.wait(), ctx)
        return self.request("GET", url, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> SyncResponse:
        """``request("POST", url, data=data, json=json, **kwargs)``."""
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> SyncResponse:
        """``request("PUT", url, data=data, **kwargs)``."""
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url: str, data: Any = None, **kwargs: Any) -> SyncResponse:
        """``request("PATCH", url, data=data, **kwargs)``."""
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> SyncResponse:
        """``request("DELETE", url, **kwargs)``."""
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> SyncResponse:
        """``request("HEAD", url, **kwargs)``."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> SyncResponse:
        """``request("OPTIONS", url, **kwargs)``."""
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
        insecure: Skip the verification of servers' TLS certificates: True
            by default, as in Locust's FastHttpUser.
        connection_timeout, max_redirects, max_retries, concurrency:
            Accepted for Locust's scripts; the engine's own settings apply.
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
        for f in user_frames(exc)
        if f.filename.startswith("/")
    ]
    return f"{type(exc).__name__}: {exc} at {', '.join(frames)}. Response was {text[:200]}"


def _home_to_tilde(path: str) -> str:
    return re.sub(r"/((home|Users)/\w*)/", "~/", path)
