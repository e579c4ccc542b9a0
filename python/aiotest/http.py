"""The HTTP session of :class:`aiotest.AsyncHttpUser` and its responses.

Requests run in the Rust engine, which times them (issue to last body byte)
and records them; Python only builds the request and reads the result.
Failures follow Locust's rules: a status of 400 or more, a connection error
or a timeout.
"""

from __future__ import annotations

import json as jsonlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from ._bridge import EngineBridge
from ._core import RawResponse, RequestSpec
from .events import failure_text
from .exceptions import ResponseError
from .streaming import PieceTimer, ServerSentEvent, pieces, split_lines
from .sync import await_only


def _with_default(pairs: dict[str, str], key: str, value: str) -> dict[str, str]:
    """``pairs`` plus ``key: value`` unless a header of that name (in any
    case) is already there; never changes ``pairs`` itself."""
    lower = key.lower()
    if any(k.lower() == lower for k in pairs):
        return pairs
    return {**pairs, key: value}


def multipart_body(fields: Mapping[str, Any] | None, files: Mapping[str, Any]) -> tuple[str, bytes]:
    """A ``multipart/form-data`` body (RFC 7578) of ``fields`` (name ->
    value) and ``files`` in ``requests``' shapes: name -> a file object,
    bytes, ``(filename, content)`` or ``(filename, content, content_type)``,
    where content is bytes, str or a file object. Returns the Content-Type
    (with its boundary) and the body."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []

    def part(disposition: str, content: bytes, content_type: str | None) -> None:
        head = f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        parts.append(head.encode() + b"\r\n" + content + b"\r\n")

    for name, value in (fields or {}).items():
        part(f'name="{_quoted(name)}"', str(value).encode(), None)
    for name, spec in files.items():
        filename, content, content_type = name, spec, "application/octet-stream"
        if isinstance(spec, tuple):
            filename, content = spec[0], spec[1]
            content_type = spec[2] if len(spec) > 2 else content_type
        elif hasattr(spec, "read"):
            filename = os.path.basename(getattr(spec, "name", name))
        if hasattr(content, "read"):
            content = content.read()
        data = content.encode() if isinstance(content, str) else bytes(content)
        disposition = f'name="{_quoted(name)}"; filename="{_quoted(str(filename))}"'
        part(disposition, data, content_type)
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _quoted(text: str) -> str:
    """A form-data parameter value: quotes and line breaks escaped (RFC 7578 §2)."""
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class Headers(Mapping[str, str]):
    """Response headers, looked up without regard to case. Repeated headers
    are joined with ``", "``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._map: dict[str, str] = {}
        for k, v in pairs:
            k = k.lower()
            self._map[k] = f"{self._map[k]}, {v}" if k in self._map else v

    def __getitem__(self, key: str) -> str:
        return self._map[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"Headers({self._map!r})"


class Response:
    """A finished request.

    Attributes:
        status: HTTP status; 0 when no response arrived.
        http_version: The HTTP version that answered: ``"HTTP/1.1"``,
            ``"HTTP/2"`` or ``"HTTP/1.0"``.
        timings: Where the time went, in µs, as k6 names the phases:
            ``dns_us``, ``connect_us``, ``tls_us``, ``waiting_us`` (time to
            first byte) and ``receiving_us``; a request on a kept connection
            shows zeros for the phases it skipped. Requests through a proxy
            show zeros throughout.
        url: The final URL, after redirects.
        response_time_us: The response time it was recorded with (µs).
        error: The failure text, or None.

    With ``stream=True`` the response comes at its head, and the body is
    read as it arrives: ``async for`` over :meth:`iter_chunks`,
    :meth:`iter_lines` or :meth:`iter_events`, or ``await`` :meth:`read`.
    The request is recorded when the body ends, or when it is closed
    (:meth:`close`, or leaving ``async with``), with the response time up
    to then; a body left unread is closed, never left holding its
    connection. A body that breaks (or sends nothing for the request's
    timeout) ends the iteration, and the request is recorded as a failure
    with the reason in :attr:`error`.
    """

    __slots__ = ("_body", "_closed", "_ctx", "_headers", "_raw")

    def __init__(self, raw: RawResponse, ctx: RequestContext) -> None:
        self._raw = raw
        self._ctx = ctx
        self._headers: Headers | None = None
        #: A streamed body once read whole.
        self._body: bytes | None = None
        self._closed = False

    @property
    def status(self) -> int:
        return self._raw.status

    #: requests' and Locust's name for :attr:`status`.
    status_code = status

    @property
    def http_version(self) -> str:
        return self._raw.http_version

    @property
    def timings(self) -> dict[str, int]:
        return self._raw.timings

    @property
    def reason(self) -> str:
        return self._raw.reason

    @property
    def ok(self) -> bool:
        """True when the request did not fail (status below 400, no error)."""
        return self._raw.error is None

    @property
    def url(self) -> str:
        return self._raw.url

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._raw.headers)
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies this response set (name to value)."""
        return dict(self._raw.cookies)

    @property
    def response_time_us(self) -> int:
        return self._raw.response_time_us

    @property
    def response_time(self) -> float:
        """The response time in ms, Locust's unit."""
        return self._raw.response_time_us / 1000

    @property
    def error(self) -> str | None:
        return self._raw.error

    @property
    def content(self) -> bytes:
        """The whole body.

        Raises:
            ResponseError: A streamed body not yet read with :meth:`read`.
        """
        if self._raw.streamed:
            if self._body is None:
                raise ResponseError(
                    "this body is streamed (stream=True): read it with `await resp.read()` "
                    "or `async for chunk in resp.iter_chunks()`"
                )
            return self._body
        return self._raw.body

    async def read(self) -> bytes:
        """The whole body: read by the engine already, or for a streamed
        body, what of it was not iterated over, read to its end."""
        if not self._raw.streamed:
            return self._raw.body
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.iter_chunks()])
        return self._body

    async def text(self, encoding: str | None = None) -> str:
        """The body decoded with ``encoding``, else the Content-Type charset,
        else UTF-8; undecodable bytes become U+FFFD."""
        return (await self.read()).decode(encoding or self.encoding, errors="replace")

    async def json(self) -> Any:
        """The body parsed as JSON. Raises ``json.JSONDecodeError``."""
        return jsonlib.loads(await self.read())

    async def iter_chunks(
        self, *, first_name: str | None = None, gap_name: str | None = None
    ) -> AsyncIterator[bytes]:
        """A streamed body's chunks as they arrive.

        Args:
            first_name: Record the time from issuing the request to the
                first chunk in a stats row of this name.
            gap_name: Record each time between two chunks in a stats row of
                this name.

        Raises:
            ValueError: The body is not streamed (no ``stream=True``), or it
                is being read as events.
        """
        timer = self._timer(first_name, gap_name)
        try:
            async for data, at_us in pieces(self._ctx._session._bridge, self._raw, "chunk"):
                timer.mark(at_us, len(data))
                yield data
        finally:
            self.close()

    async def iter_lines(
        self,
        *,
        first_name: str | None = None,
        gap_name: str | None = None,
        encoding: str | None = None,
    ) -> AsyncIterator[str]:
        """A streamed body's lines as they arrive, without their line
        breaks (``\\n`` or ``\\r\\n``), decoded as :meth:`text` decodes.
        ``first_name`` and ``gap_name`` record the time to the first line
        and between lines, as :meth:`iter_chunks` says."""
        codec = encoding or self.encoding
        try:
            async for line in self._line_bytes(first_name, gap_name):
                yield line.decode(codec, errors="replace")
        finally:
            self.close()

    async def _line_bytes(
        self, first_name: str | None, gap_name: str | None
    ) -> AsyncIterator[bytes]:
        """:meth:`iter_lines` before decoding (``requests``' lines)."""
        timer = self._timer(first_name, gap_name)
        pending, at_us = b"", 0
        try:
            async for data, at_us in pieces(self._ctx._session._bridge, self._raw, "chunk"):
                lines, pending = split_lines(pending + data)
                for line in lines:
                    timer.mark(at_us, len(line))
                    yield line
            if pending:
                timer.mark(at_us, len(pending))
                yield pending
        finally:
            self.close()

    async def iter_events(
        self, *, first_name: str | None = None, gap_name: str | None = None
    ) -> AsyncIterator[ServerSentEvent]:
        """A streamed ``text/event-stream`` body's server-sent events as
        they arrive (the WHATWG format, parsed in the engine).
        ``first_name`` and ``gap_name`` record the time to the first event
        (time to first token) and between events (inter-token latency), as
        :meth:`iter_chunks` says. A body that is not a valid event stream
        ends the iteration and fails the request.

        Raises:
            ValueError: The body is not streamed, or it is being read as
                chunks.
        """
        timer = self._timer(first_name, gap_name)
        try:
            async for piece in pieces(self._ctx._session._bridge, self._raw, "event"):
                event = ServerSentEvent(*piece)
                timer.mark(event.at_us, len(event.data))
                yield event
        finally:
            self.close()

    def close(self) -> None:
        """Stops reading a streamed body: its connection (or HTTP/2
        stream) is let go, and the request is recorded now unless its body
        ended before. Nothing for a body that is not streamed; idempotent."""
        if self._closed or not self._raw.streamed:
            return
        self._closed = True
        self._raw.close()
        self._ctx._stream_closed(self._raw)

    def _timer(self, first_name: str | None, gap_name: str | None) -> PieceTimer:
        return PieceTimer(self._ctx._session._bridge, self._raw.method, first_name, gap_name)

    @property
    def encoding(self) -> str:
        """The Content-Type's charset, else ``utf-8`` (requests' ``encoding``)."""
        ctype = self.headers.get("content-type", "")
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"

    def raise_for_status(self) -> None:
        """Raises :class:`ResponseError` when the request failed."""
        if self._raw.error is not None:
            raise ResponseError(self._raw.error)

    def success(self) -> None:
        """With ``catch_response=True``: record this request as a success."""
        self._ctx.set_result(None)

    def failure(self, reason: BaseException | str) -> None:
        """With ``catch_response=True``: record this request as a failure with
        ``reason`` as its error text."""
        self._ctx.set_result(failure_text(reason) or "failure")

    def __repr__(self) -> str:
        return f"<Response [{self.status}] {self.url}>"


class RequestContext:
    """What ``session.get(...)`` returns: await it for the :class:`Response`,
    or use it with ``async with``, which ``catch_response=True`` needs."""

    __slots__ = (
        "_catch",
        "_context",
        "_entered",
        "_recorded",
        "_response",
        "_result",
        "_session",
        "_spec",
    )

    def __init__(
        self,
        session: HttpSession,
        spec: RequestSpec,
        catch_response: bool,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self._session = session
        self._spec = spec
        self._catch = catch_response
        self._context = context
        self._response: Response | None = None
        self._entered = False
        self._result: str | bool | None = False  # False: not decided by user code
        self._recorded = False

    def __await__(self) -> Generator[Any, None, Response]:
        # A plain generator rather than a coroutine: one object fewer on the
        # hot path of every request.
        session = self._session
        bridge = session._bridge
        loop = bridge._loop
        if self._context is None and loop is not None:
            # EngineBridge.submit inlined: nothing to keep for listeners.
            waiter = bridge.engine.submit(session._core, self._spec, loop)
        else:
            waiter = bridge.submit(session._core, self._spec, self._context)
        # As asyncio's Future.__await__ does: the task sees the awaitable,
        # sleeps until the engine's turn resolves it, then steps on here.
        yield waiter
        raw = waiter.result()
        response = Response(raw, self)
        if self._catch or raw.streamed:
            # Kept for the decision, or to close the body; __aexit__ lets go
            # of it, since the response points back here and a cycle waits
            # for the collector.
            self._response = response
        return response

    def wait(self) -> Response:
        """Sends the request and waits for its :class:`Response` from
        blocking-style user code (see :mod:`aiotest.sync`), with no
        coroutine in between: the user's task awaits the engine's
        awaitable itself.

        Raises:
            RuntimeError: Called outside blocking-style user code.
        """
        session = self._session
        raw = await_only(session._bridge.submit(session._core, self._spec, self._context))
        response = Response(raw, self)
        if self._catch or raw.streamed:
            self._response = response
        return response

    async def __aenter__(self) -> Response:
        self._entered = True
        return await self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        response = self._response
        if response is not None:
            response.close()
            if self._catch and not self._recorded:
                self._record(response._raw.error if self._result is False else self._result)
        self._response = None
        return False

    def _stream_closed(self, raw: RawResponse) -> None:
        """A streamed body ended or was closed: the engine recorded the
        request (unless ``catch_response``, recorded on leaving ``async
        with``), so the request listeners hear of it now."""
        if not self._catch:
            self._session._bridge.request_event.notify_response(raw, raw.error, self._context)

    def set_result(self, error: str | None) -> None:
        if not self._catch:
            raise ResponseError("success() and failure() need catch_response=True")
        self._result = error
        if not self._entered:
            self._record(error)

    def _record(self, error: str | bool | None) -> None:
        raw = self._response._raw if self._response is not None else None
        if raw is None or self._recorded:
            return
        self._recorded = True
        err = None if error is False or error is None else str(error)
        self._session._bridge.record(raw, err, self._context)


# NOTE: a request made with a method and URL alone skips building its spec
# (14 keyword arguments through PyO3, ~4,300 instructions of the ~72,000 a
# request took in all over TLS: callgrind, 50 users, 2026-12-02; measured
# as the difference between runs of 2,000 and 12,000 iterations, so that
# start-up cancels out).
#: How many such specs the sessions of one engine keep between them; many
#: distinct URLs make the cache start over when it reaches it.
_MAX_PLAIN_SPECS = 256


class HttpSession:
    """One user's HTTP session (``self.session``): its own cookies and
    keep-alive connections, like Locust's per-user session.

    Attributes:
        base_url: The user's host; relative URLs are appended to it.
        headers: Headers sent with every request of this session.
    """

    def __init__(
        self,
        bridge: EngineBridge,
        *,
        base_url: str | None,
        timeout_s: float,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        http_version: str = "auto",
    ) -> None:
        self._bridge = bridge
        self._core = bridge.engine.new_session(
            base_url, verify=verify, cert=cert, http_version=http_version
        )
        self.base_url = self._core.base_url
        self.headers: dict[str, str] = {}
        self.timeout_s = timeout_s
        #: Open workload model: how late (µs) the current iteration started,
        #: so each request is also recorded corrected for coordinated omission.
        self.intended_lag_us: int | None = None
        #: A longer response body fails a request (None: 64 MiB); the
        #: user class's ``max_body_bytes``.
        self.max_body_bytes: int | None = None
        #: The user's ``context()``, when its class defines one: called for
        #: each request, merged under the request's own ``context=``.
        self.user_context: Callable[[], Mapping[str, Any]] | None = None
        #: Specs of requests made with a method and URL alone, by (method,
        #: url), each with the timeout, body limit and lag it was built on:
        #: shared by the sessions of one engine (a spec names no session).
        self._plain_specs = bridge.plain_specs

    def request(
        self,
        method: str,
        url: str,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | str | bytes | None = None,
        timeout: float | None = None,
        allow_redirects: bool = True,
        catch_response: bool = False,
        context: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        max_body_bytes: int | None = None,
        verify: bool | str | None = None,
        cert: str | tuple[str, str] | None = None,
        stream: bool = False,
    ) -> RequestContext:
        """Builds a request; await the result or use it with ``async with``.

        Args:
            method: HTTP method.
            url: Absolute, or relative to the user's host.
            name: The stats name; defaults to ``url`` as given (without params).
            params: Query parameters, appended to the URL.
            headers: Extra headers for this request.
            json: A value sent as a JSON body.
            data: A form (mapping), or a str or bytes body.
            timeout: Seconds before the request fails; the user's
                ``network_timeout`` when None.
            allow_redirects: Follow up to 10 redirects.
            catch_response: Let user code decide success or failure with
                ``resp.success()`` / ``resp.failure(reason)``.
            context: Values the ``request`` listeners get as ``context``
                (Locust's request context), over the user's ``context()``.
            files: Files to upload as ``multipart/form-data``, with ``data``
                (a mapping) as its other fields; see :func:`multipart_body`.
            max_body_bytes: A longer response body fails the request (the
                session's ``max_body_bytes``, else 64 MiB, when None).
            verify: As in ``requests``: False skips the server certificate's
                verification, a path checks it against that PEM CA bundle
                only; None keeps the session's (the user class's).
            cert: A client certificate for mutual TLS: ``(cert_file,
                key_file)``, or one PEM file holding both.
            stream: Return at the response head and read the body as it
                arrives (see :class:`Response`). Such requests go through
                the session's reqwest client, with the session's TLS
                options (``verify`` and ``cert`` of the request aside).

        Raises:
            ValueError: An unknown HTTP method, or a ``timeout`` that is not
                a number of seconds above 0.
        """
        target = url
        if params:
            query = urlencode(params, doseq=True)
            target = f"{url}{'&' if '?' in url else '?'}{query}"
        pairs = {**self.headers, **headers} if headers else self.headers
        body: bytes | None = None
        if files:
            content_type, body = multipart_body(data if isinstance(data, Mapping) else None, files)
            pairs = {**pairs, "Content-Type": content_type}
        elif json is not None:
            body = jsonlib.dumps(json).encode()
            pairs = _with_default(pairs, "Content-Type", "application/json")
        elif data is not None:
            if isinstance(data, Mapping):
                body = urlencode(data, doseq=True).encode()
                pairs = _with_default(pairs, "Content-Type", "application/x-www-form-urlencoded")
            else:
                body = data.encode() if isinstance(data, str) else bytes(data)
        spec = self._core.prepare(
            method=method,
            url=target,
            name=name or url,
            headers=list(pairs.items()),
            body=body,
            timeout_s=self.timeout_s if timeout is None else float(timeout),
            allow_redirects=allow_redirects,
            record=not catch_response,
            intended_lag_us=self.intended_lag_us,
            max_body_bytes=self.max_body_bytes if max_body_bytes is None else max_body_bytes,
            verify=verify,
            cert=cert,
            stream=stream,
        )
        user_context = self.user_context
        if user_context is not None:
            context = {**user_context(), **context} if context else user_context()
        return RequestContext(self, spec, catch_response, context)

    def _plain(self, method: str, url: str) -> RequestContext:
        """``request(method, url)`` with no other argument, the common case
        of a load test's tasks. Its spec (immutable, and naming no session)
        is built once and used again, by any session of the engine that
        sends no headers of its own and has the same timeout, body limit and
        intended lag; at most :data:`_MAX_PLAIN_SPECS` are kept."""
        if self.headers:
            return self.request(method, url)
        specs = self._plain_specs
        key = (method, url)
        kept = specs.get(key)
        timeout_s = self.timeout_s
        max_body_bytes = self.max_body_bytes
        lag_us = self.intended_lag_us
        if kept is None or kept[1] != timeout_s or kept[2] != max_body_bytes or kept[3] != lag_us:
            if len(specs) >= _MAX_PLAIN_SPECS:
                specs.clear()
            spec = self._core.prepare(
                method=method,
                url=url,
                name=url,
                headers=[],
                timeout_s=timeout_s,
                intended_lag_us=lag_us,
                max_body_bytes=max_body_bytes,
            )
            kept = specs[key] = (spec, timeout_s, max_body_bytes, lag_us)
        user_context = self.user_context
        context = user_context() if user_context is not None else None
        return RequestContext(self, kept[0], False, context)

    def get(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("GET", url, **kwargs)
        return self._plain("GET", url)

    def post(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("POST", url, **kwargs)
        return self._plain("POST", url)

    def put(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("PUT", url, **kwargs)
        return self._plain("PUT", url)

    def patch(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("PATCH", url, **kwargs)
        return self._plain("PATCH", url)

    def delete(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("DELETE", url, **kwargs)
        return self._plain("DELETE", url)

    def head(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("HEAD", url, **kwargs)
        return self._plain("HEAD", url)

    def options(self, url: str, **kwargs: Any) -> RequestContext:
        if kwargs:
            return self.request("OPTIONS", url, **kwargs)
        return self._plain("OPTIONS", url)
