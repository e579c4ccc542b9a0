"""Type stubs and user docs for ``aiotest._core``, the Rust extension.
``make lint`` checks them against the extension with ``stubtest``."""

import asyncio
from collections.abc import Callable, Generator
from contextvars import Context
from typing import Any, final

__all__ = [
    "ClusterStatus",
    "DemoTarget",
    "Engine",
    "HttpSession",
    "Master",
    "OtlpExporter",
    "RawResponse",
    "RequestAwaitable",
    "RequestSpec",
    "StatsSnapshot",
    "WebUi",
    "Worker",
    "WorkerStatus",
    "__version__",
    "assign_user_indexes",
    "parse_duration_s",
    "parse_options",
    "percentiles_of",
    "spawn_order",
    "user_counts",
    "validate_checks",
    "validate_host",
]
__version__: str

def parse_options(
    argv: list[str],
    file_values: list[tuple[str, str, list[str]]],
    custom_options: list[tuple[str, str, str | None, bool]] = ...,
) -> tuple[str, Any, int]:
    """Parses the command line (program name first) with clap.

    Args:
        argv: ``sys.argv``.
        file_values: ``(source, key, values)`` from config files, weakest
            first; they count only where neither the command line nor an
            ``AIOTEST_*`` variable sets the option.
        custom_options: The aiotestfile's own options as ``(long name,
            help, environment variable, is a flag)``; their raw values come
            back in ``run.custom_options`` (str, bool, or None).

    Returns:
        ``("run", options, 0)`` with ``options`` a dict (``run``: every
        option by name, ``command``: a subcommand or None), or
        ``("exit", text, 0)`` for ``--help`` and ``--version``.

    Raises:
        aiotest.ConfigError: Bad usage; ``exit_code`` is 2.
    """

def parse_duration_s(text: str) -> float:
    """``"1h30m"`` -> 5400.0. Raises ConfigError for anything else."""

def validate_host(url: str) -> str:
    """Checks an http(s) base URL; returns it without a trailing slash.
    Raises ConfigError naming the problem."""

def user_counts(weights: list[float], fixed_counts: list[int], total: int) -> list[int]:
    """Users per class: fixed counts first, then by weight (largest
    remainder); sums to ``total``. Raises ConfigError for a bad weight."""

def validate_checks(checks: list[str]) -> None:
    """Raises ConfigError naming the first check that does not parse."""

def percentiles_of(samples_us: list[int]) -> list[tuple[str, int]]:
    """Percentiles of one histogram holding exactly these samples (µs)."""

def spawn_order(counts: list[int]) -> list[int]:
    """Class indexes in spawn order, every prefix in proportion."""

def assign_user_indexes(
    owned: list[list[list[int]]], counts: list[list[int]]
) -> list[list[list[int]]]:
    """Cluster-wide user indexes for new ``counts[worker][class]``, keeping
    the ones users already have (``owned[worker][class]``); the indexes stay
    0 to N-1. Raises ValueError when ``owned`` has fewer rows than ``counts``."""

@final
class RequestSpec:
    """What to send: built once per request by the Python session.

    Args:
        method: HTTP method, any case.
        url: Absolute, or relative to the session's host.
        name: The stats name.
        headers: ``(name, value)`` pairs.
        body: The body, or None.
        timeout_s: Seconds before the request fails; None for 60 s.
        allow_redirects: Follow up to 10 redirects.
        record: Record it in the statistics when done (False for
            ``catch_response=True``, whose user code decides).
        intended_lag_us: How late its iteration started (open workload
            model), to also record it corrected for coordinated omission.
        max_body_bytes: A longer response body fails the request; None for
            64 MiB.
        verify: TLS verification of this request, as ``requests``' (True,
            False, or a PEM CA bundle's path); None keeps the session's.
        cert: A client certificate: ``(cert_file, key_file)`` or one file.
        stream: Return at the response head and leave the body to
            :meth:`Engine.read`; the request is recorded when its body ends
            or is closed.

    Raises:
        ValueError: An unknown method, or a timeout that is not a number of
            seconds above 0 and at most a day.
    """

    def __new__(
        cls,
        *,
        method: str,
        url: str,
        name: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        timeout_s: float | None = None,
        allow_redirects: bool = True,
        record: bool = True,
        intended_lag_us: int | None = None,
        max_body_bytes: int | None = None,
        verify: bool | str | None = None,
        cert: str | tuple[str, str] | None = None,
        stream: bool = False,
    ) -> RequestSpec: ...
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def record(self) -> bool: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def body(self) -> bytes | None: ...

@final
class RequestAwaitable:
    """A request in flight as an asyncio future (``asyncio.isfuture`` is
    True): asyncio's Task waits on it natively, and the engine's turn that
    finishes the request resolves it. Cancelling it wakes the waiting task
    with CancelledError; the request goes on and is still recorded."""

    _asyncio_future_blocking: bool
    @property
    def recorded(self) -> bool:
        """Whether the engine records the request itself."""
    def __await__(self) -> Generator[Any, None, RawResponse]: ...
    def __iter__(self) -> RequestAwaitable: ...
    def __next__(self) -> RequestAwaitable: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> RawResponse:
        """The response. Raises CancelledError once cancelled,
        InvalidStateError while pending, or the failure set by :meth:`fail`."""
    def exception(self) -> BaseException | None: ...
    def add_done_callback(
        self, callback: Callable[[RequestAwaitable], object], *, context: Context | None = None
    ) -> None: ...
    def remove_done_callback(self, callback: Callable[[RequestAwaitable], object]) -> int: ...
    def cancel(self, msg: Any | None = None) -> bool: ...
    def resolve(self, value: RawResponse) -> bool:
        """Completes it and runs its callbacks now, each in its context;
        False when it was already cancelled or failed."""
    def fail(self, exc: BaseException) -> bool:
        """Fails it (its callbacks run through ``call_soon``); False when done."""

@final
class HttpSession:
    """One user's session: own cookie jar and connection pool."""

    @property
    def base_url(self) -> str | None: ...
    def prepare(
        self,
        *,
        method: str,
        url: str,
        name: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        timeout_s: float | None = None,
        allow_redirects: bool = True,
        record: bool = True,
        intended_lag_us: int | None = None,
        max_body_bytes: int | None = None,
        verify: bool | str | None = None,
        cert: str | tuple[str, str] | None = None,
        stream: bool = False,
    ) -> RequestSpec:
        """A request of this session: as :class:`RequestSpec`, with the same
        arguments and errors, but cheaper to call (no keyword dict)."""

@final
class RawResponse:
    """A finished request as the engine measured it."""

    @property
    def status(self) -> int:
        """HTTP status; 0 when no response arrived."""
    @property
    def reason(self) -> str: ...
    @property
    def status_code(self) -> int:
        """requests' and Locust's name for :attr:`status`."""
    @property
    def http_version(self) -> str:
        """The HTTP version that answered: "HTTP/1.1", "HTTP/2", "HTTP/1.0"."""
    @property
    def timings(self) -> dict[str, int]:
        """Phases in µs: dns_us, connect_us, tls_us, waiting_us (time to
        first byte), receiving_us; zeros for phases a kept connection
        skipped."""
    @property
    def content(self) -> bytes:
        """The body."""
    @property
    def text(self) -> str:
        """The body as UTF-8, undecodable bytes replaced."""
    @property
    def url(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def response_time_us(self) -> int:
        """Issue to last body byte, µs; for a streamed body still
        arriving, issue to now."""
    @property
    def intended_lag_us(self) -> int | None:
        """How late its iteration started (open workload model), or None."""
    @property
    def ttfb_us(self) -> int | None:
        """Its time to first byte as recorded (µs), or None."""
    @property
    def content_bytes(self) -> int:
        """Body bytes; of a streamed body, those that arrived so far."""
    @property
    def error(self) -> str | None:
        """Failure text (Locust's rules; for a streamed body, also why it
        broke), or None."""
    @property
    def streamed(self) -> bool:
        """Whether the body is streamed (``stream=True``)."""
    @property
    def body_ended(self) -> bool:
        """Whether the streamed body ended or was closed (True when not
        streamed)."""
    def close(self) -> bool:
        """Closes a streamed body: its connection (or HTTP/2 stream) is
        let go, and the request is recorded as of now unless it ended
        before. Returns whether this call ended it."""
    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def cookies(self) -> list[tuple[str, str]]: ...

@final
class StatsSnapshot:
    """Frozen statistics. Times µs, rates per second."""

    def to_json(self) -> str:
        """See docs/json.md."""
    def stats_table(self, current: bool = False) -> str: ...
    def percentile_table(self) -> str: ...
    def corrected_percentile_table(self) -> str:
        """The percentiles corrected for coordinated omission; "" when the
        run had no open-model iterations."""
    def failures_and_errors(self) -> str: ...
    def csv_stats(self) -> str:
        """``PREFIX_stats.csv``: Locust's header and columns, times in ms."""
    def csv_history(self) -> str:
        """``PREFIX_stats_history.csv``; needs ``snapshot(with_history=True)``."""
    def csv_failures(self) -> str: ...
    def csv_exceptions(self) -> str: ...
    def html_report(self, meta: dict[str, Any]) -> str:
        """The self-contained HTML report. ``meta``: host, script,
        user_classes, peak_users, version. Raises ValueError for bad meta."""
    def json_report(self, meta: dict[str, Any], task_runs: int) -> str:
        """The JSON report (docs/json.md), indented; ``meta`` as for
        :meth:`html_report`. Raises ValueError for bad meta."""
    def evaluate_checks(self, checks: list[str]) -> tuple[str, list[tuple[str, bool, str]]]:
        """Evaluates checks like ``"p95 < 200ms"``: the printed table and
        ``(check, passed, actual)`` each. Raises ConfigError for a bad check."""
    @property
    def num_requests(self) -> int: ...
    @property
    def num_failures(self) -> int: ...
    @property
    def num_errors(self) -> int: ...
    @property
    def folded_requests(self) -> int:
        """Requests counted in the ``(other names)`` rows: past the limit on
        distinct names, here or on a worker."""
    @property
    def max_names(self) -> int:
        """The limit on distinct (method, name) rows."""

@final
class Engine:
    """The process's HTTP engine: a tokio runtime, the stats aggregator and
    the completion queue.

    Args:
        worker_threads: tokio threads; the number of cores by default.

    Raises:
        aiotest.AiotestError: The runtime or TLS setup failed.
    """

    def __new__(cls, *, worker_threads: int | None = None) -> Engine: ...
    def wakeup_fd(self) -> int:
        """Readable when ``drain()`` has completions."""
    def set_max_names(self, max_names: int) -> None:
        """Keeps at most ``max_names`` distinct (method, name) rows; requests
        under further names count in one ``(other names)`` row per method.
        Raises ValueError for 0."""
    def new_session(
        self,
        base_url: str | None = None,
        *,
        verify: bool | str | None = None,
        cert: str | tuple[str, str] | None = None,
        http_version: str = "auto",
    ) -> HttpSession:
        """A session for one user; ``verify`` and ``cert`` are its TLS
        options, as ``requests``' (None: verify against the platform's
        trust store, or the bundle ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``
        names); ``http_version`` is "auto" (HTTP/2 when a TLS server picks
        it by ALPN), "1.1" or "2" (also h2c, prior knowledge, over plain
        http); another value raises ValueError.

        Raises ConfigError for a malformed base URL, AiotestError for TLS
        files that cannot be read (the message names the file)."""
    def submit(
        self, session: HttpSession, spec: RequestSpec, event_loop: asyncio.AbstractEventLoop
    ) -> RequestAwaitable:
        """Starts a request; returns what to await on ``event_loop``. It is
        resolved by :meth:`drive` in driven mode, else by :meth:`drain`."""
    def read(
        self, raw: RawResponse, kind: str, event_loop: asyncio.AbstractEventLoop
    ) -> RequestAwaitable:
        """Starts reading the next piece of ``raw``'s streamed body;
        ``kind`` is "chunk" or "event". What it returns resolves to
        ``(bytes, at_us)`` for a chunk, ``(event, data, id, retry_ms,
        at_us)`` for a server-sent event, or None once the body ended;
        ``at_us`` is when the piece arrived, in µs after the request was
        issued. Raises ValueError for a body that is not streamed or an
        unknown kind; the awaitable fails with ValueError when the body was
        first read as the other kind."""
    def pending(self) -> list[RequestAwaitable]:
        """The requests in flight, oldest first."""
    def drain(self) -> list[tuple[RequestAwaitable, RawResponse]]:
        """Finished requests since the last call (the threaded path)."""
    def set_driven(self, driven: bool) -> None:
        """True: requests submitted from now on run on the thread that calls
        :meth:`drive`; False (the default): on the engine's own threads."""
    def drive(
        self, wake_fd: int, timeout_s: float | None = None, resolve: bool = False
    ) -> tuple[int, list[tuple[RequestAwaitable, RawResponse]]]:
        """One turn of the driven engine, without the GIL: starts submitted
        requests and runs what is ready; unless ``timeout_s`` is 0, then waits
        until a request finishes, ``wake_fd`` turns readable or ``timeout_s``
        passes (None: no limit). Returns ``(resolved, finished)``: with
        ``resolve``, the turn resolves the finished requests' awaitables
        itself and counts them, and ``finished`` holds only the cancelled
        ``catch_response`` ones, for Python to record; without it,
        ``resolved`` is 0 and ``finished`` holds every finished request.
        Raises OSError when ``wake_fd`` cannot be watched."""
    def unwatch(self, wake_fd: int) -> None:
        """Stops watching ``wake_fd``; call it before closing it."""
    def record(
        self,
        *,
        method: str,
        name: str,
        response_time_us: int,
        content_bytes: int,
        error: str | None = None,
        intended_lag_us: int | None = None,
        ttfb_us: int | None = None,
    ) -> None: ...
    def record_error(self, message: str, traceback: str, node: str) -> None: ...
    def snapshot(self, *, with_history: bool = False) -> StatsSnapshot:
        """Statistics including everything recorded before the call."""
    def tick(self, user_count: int, *, full_history: bool = False) -> None:
        """Closes the stats window and appends a history row."""
    def history_csv_since(self, from_row: int) -> tuple[str, int]:
        """``PREFIX_stats_history.csv`` text of the history rows from
        ``from_row`` on (with the header when 0), and how many rows there are."""
    def reset_stats(self, *, clear_history: bool = False) -> None:
        """Zeroes the statistics; with ``clear_history`` also the history
        rows (a new run in the same process)."""
    def in_flight(self) -> int: ...
    def wait_idle(self, timeout_s: float) -> bool: ...

@final
class DemoTarget:
    """The built-in demo HTTP server (see ``aiotest demo-target``).

    Raises:
        OSError: The address cannot be bound.
    """

    def __new__(cls, *, bind: str = ..., port: int = 0) -> DemoTarget: ...
    @property
    def port(self) -> int: ...
    @property
    def url(self) -> str: ...
    def counts_json(self) -> str:
        """``{"total": n, "requests": {"GET /path": n}}``."""
    def stop(self) -> None: ...

@final
class OtlpExporter:
    """Pushes ``engine``'s statistics every ``interval_s`` over OTLP/HTTP
    with protobuf bodies to ``endpoint`` (``/v1/metrics`` appended unless
    given): cumulative sums ``aiotest.requests`` and ``aiotest.failures``
    per (method, name), the cumulative histogram ``aiotest.response_time``
    (s; bounds ``buckets_s``, or /metrics' when empty), and the gauges of
    :meth:`set_status` (docs/metrics.md). Raises ValueError for an endpoint
    that is not an http(s) URL or an interval not above 0."""

    def __new__(
        cls,
        engine: Engine,
        *,
        endpoint: str,
        interval_s: float = 1.0,
        buckets_s: list[float] = ...,
    ) -> OtlpExporter: ...
    @property
    def url(self) -> str:
        """The URL it posts to."""
    def set_status(self, status: dict[str, Any]) -> None:
        """As :meth:`WebUi.set_status`."""
    def stop(self) -> None:
        """Pushes the final figures and stops; idempotent."""

@final
class WebUi:
    """The web UI and its HTTP API (docs/web.md), served on ``engine``'s
    runtime, with ``GET /healthz`` and ``/readyz`` (no login asked) and, with
    ``serve_metrics``, ``GET /metrics`` (docs/metrics.md; response-time
    buckets at ``metrics_buckets_s``, seconds, or 1 ms to 60 s when empty);
    with ``service_only``, those alone (a headless run's or a worker's).
    Raises OSError when ``host:port`` cannot be bound, ConfigError (exit
    code 2) for a bad ``login`` (``USER:PASSWORD``) or unreadable TLS files
    (PEM)."""

    def __new__(
        cls,
        engine: Engine,
        *,
        host: str,
        port: int,
        login: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        service_only: bool = False,
        serve_metrics: bool = True,
        metrics_buckets_s: list[float] = ...,
    ) -> WebUi: ...
    def set_status(self, status: dict[str, Any]) -> None:
        """Sets what ``/metrics`` shows besides the statistics: ``state``,
        ``users_by_class`` and ``workers_by_state`` (lists of ``(name,
        count)``) and ``cpu_percent``. Raises ValueError for another shape."""
    def set_ready(self, ready: bool, reason: str) -> None:
        """Sets what ``GET /readyz`` answers: 200 when ``ready``, else 503;
        ``reason`` is the body either way."""
    @property
    def port(self) -> int: ...
    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
    def wakeup_fd(self) -> int:
        """Readable when commands wait in :meth:`drain_commands`."""
    def drain_commands(self) -> list[dict[str, Any]]:
        """Commands since the last call: ``id``, ``action`` (swarm, stop,
        reset), ``body``, ``content_type``."""
    def awaited(self, id: int) -> bool:
        """Whether the client still waits for command ``id`` (after 10 s it
        got a 503, and the command must not run)."""
    def reply(self, id: int, status: int, body: dict[str, Any]) -> None:
        """Answers command ``id`` with an HTTP status and a JSON body.
        Raises ValueError for a body JSON cannot carry."""
    def publish(
        self,
        status: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Publishes the runner's status with fresh statistics to every
        browser (the ``/stats/requests`` document); ``meta`` heads the HTML
        report, ``fields`` (user_count, task_runs) join the JSON report.
        Raises ValueError for values not of the documented shape."""
    def clear_history(self) -> None:
        """Drops the chart points (after ``reset_stats(clear_history=True)``)."""
    def stop(self) -> None:
        """Stops serving; idempotent."""

@final
class WorkerStatus:
    """One worker as the master sees it."""

    @property
    def index(self) -> int: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def state(self) -> str:
        """ready, spawning, running, stopped or missing."""
    @property
    def user_count(self) -> int: ...
    @property
    def cpu_percent(self) -> float: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def last_heartbeat_s(self) -> float:
        """Seconds since anything arrived from it."""

@final
class ClusterStatus:
    """The cluster at a glance."""

    @property
    def workers(self) -> list[WorkerStatus]: ...
    @property
    def workers_by_state(self) -> list[tuple[str, int]]:
        """How many workers are in each state, sorted by state (also when
        ``workers`` was left out)."""
    @property
    def live_workers(self) -> int:
        """Workers connected and not missing."""
    @property
    def run_id(self) -> int: ...
    @property
    def user_count(self) -> int: ...
    @property
    def task_runs(self) -> int:
        """Task executions the workers reported in this run."""
    @property
    def spawning_complete(self) -> bool: ...
    @property
    def all_stopped(self) -> bool: ...

@final
class Master:
    """The master's link (docs/protocol.md): binds a ZeroMQ ROUTER, accepts
    workers, dispatches users and merges their statistics into ``engine``.

    Raises:
        OSError: The address cannot be bound.
        ValueError: A heartbeat interval of 0 s or less, or a liveness of 0.
    """

    def __new__(
        cls,
        engine: Engine,
        *,
        bind_host: str,
        bind_port: int,
        heartbeat_interval_s: float,
        heartbeat_liveness: int,
        secret: str | None = None,
    ) -> Master: ...
    def wakeup_fd(self) -> int:
        """Readable when ``drain_events()`` has events."""
    def drain_events(self) -> list[dict[str, Any]]:
        """Events since the last call, each a dict with an ``event`` key
        (docs/protocol.md): worker_joined, worker_missing, worker_left,
        worker_refused, exception, custom, message_dropped, fatal, and the
        run's milestones spawning_complete, all_users_stopped,
        iterations_reached and all_stopped (each with its ``run_id``)."""
    def status(self, *, with_workers: bool = True) -> ClusterStatus:
        """The cluster now (``workers`` empty unless ``with_workers``).
        Raises RuntimeError when the master has stopped or does not answer
        within 10 s."""
    def start(self, plan: dict[str, Any], *, new_run: bool = True) -> None:
        """Starts a run (``run_id`` counts them from 1), or with
        ``new_run=False`` changes the running one: ``classes`` (name,
        weight, fixed_count), ``users``, ``spawn_rate_per_s``, ``settings``.
        Raises ValueError for a bad plan."""
    def stop(self) -> None: ...
    def send_message(self, name: str, data_json: str, worker_index: int | None = None) -> None:
        """A ``custom`` message to one worker, or to all with None. Raises
        ValueError when ``data_json`` is not JSON."""
    def quit(self) -> None:
        """Tells the workers this master leaves; returns within 2 s."""

@final
class Worker:
    """A worker's link (docs/protocol.md): connects a ZeroMQ DEALER to the
    master, reconnecting whenever it is lost, and reports ``engine``'s
    statistics every ``stats_interval_s``.

    Raises:
        ValueError: A heartbeat interval of 0 s or less, or a liveness of 0.
    """

    def __new__(
        cls,
        engine: Engine,
        *,
        master_host: str,
        master_port: int,
        worker_id: str,
        heartbeat_interval_s: float,
        heartbeat_liveness: int,
        stats_interval_s: float = 1.0,
        connect_timeout_s: float = 3.0,
        secret: str | None = None,
    ) -> Worker: ...
    def wakeup_fd(self) -> int: ...
    def drain_events(self) -> list[dict[str, Any]]:
        """Events since the last call, each a dict with an ``event`` key
        (docs/protocol.md)."""
    def progress(
        self, *, state: str, user_count: int, task_runs: int, cpu_percent: float, memory_bytes: int
    ) -> None:
        """The state the heartbeats report; ``task_runs`` is a running total."""
    def spawning_complete(self, run_id: int, user_count: int) -> None: ...
    def stopped(self, run_id: int) -> None:
        """Sends the last stats report, then ``stopped``."""
    def exception(self, message: str, traceback: str) -> None: ...
    def send_message(self, name: str, data_json: str) -> None:
        """A ``custom`` message to the master. Raises ValueError when
        ``data_json`` is not JSON."""
    def quit(self) -> None:
        """Sends the last stats report and ``quit``, and ends the link."""
