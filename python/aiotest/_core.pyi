"""Type stubs and user docs for ``aiotest._core``, the Rust extension."""

__version__: str

def parse_options(
    argv: list[str],
    file_values: list[tuple[str, str, list[str]]],
    custom_options: list[tuple[str, str, str | None, bool]] = ...,
) -> tuple[str, str, int]:
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
        ``("run", options_json, 0)``, or ``("exit", text, 0)`` for ``--help``
        and ``--version``.

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

class HttpSession:
    """One user's session: own cookie jar and connection pool."""

    @property
    def base_url(self) -> str | None: ...

class RawResponse:
    """A finished request as the engine measured it."""

    @property
    def status(self) -> int:
        """HTTP status; 0 when no response arrived."""
    @property
    def reason(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def response_time_us(self) -> int:
        """Issue to last body byte, µs."""
    @property
    def intended_lag_us(self) -> int | None:
        """How late its iteration started (open workload model), or None."""
    @property
    def content_bytes(self) -> int: ...
    @property
    def error(self) -> str | None:
        """Failure text (Locust's rules), or None."""
    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def cookies(self) -> list[tuple[str, str]]: ...

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
    def html_report(self, meta_json: str) -> str:
        """The self-contained HTML report. ``meta_json``: host, script,
        user_classes, peak_users, version. Raises ValueError for bad meta."""
    def evaluate_checks(self, checks: list[str]) -> tuple[str, list[tuple[str, bool, str]]]:
        """Evaluates checks like ``"p95 < 200ms"``: the printed table and
        ``(check, passed, actual)`` each. Raises ConfigError for a bad check."""
    @property
    def num_requests(self) -> int: ...
    @property
    def num_failures(self) -> int: ...
    @property
    def num_errors(self) -> int: ...

class Engine:
    """The process's HTTP engine: a tokio runtime, the stats aggregator and
    the completion queue.

    Args:
        worker_threads: tokio threads; the number of cores by default.

    Raises:
        aiotest.AiotestError: The runtime or TLS setup failed.
    """

    def __init__(self, *, worker_threads: int | None = None) -> None: ...
    def wakeup_fd(self) -> int:
        """Readable when ``drain()`` has completions."""
    def new_session(self, base_url: str | None = None) -> HttpSession:
        """Raises ConfigError for a malformed base URL."""
    def submit(
        self,
        session: HttpSession,
        method: str,
        url: str,
        name: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout_s: float | None,
        allow_redirects: bool,
        record: bool,
        intended_lag_us: int | None = None,
    ) -> int:
        """Starts a request and returns its id; its result comes from
        :meth:`drive` in driven mode, else from :meth:`drain`.
        ``intended_lag_us`` (open workload model) also records it corrected
        for coordinated omission. Raises ValueError for an unknown method."""
    def drain(self) -> list[tuple[int, RawResponse]]:
        """Finished requests since the last call."""
    def set_driven(self, driven: bool) -> None:
        """True: requests submitted from now on run on the thread that calls
        :meth:`drive`; False (the default): on the engine's own threads."""
    def drive(self, wake_fd: int, timeout_s: float | None = None) -> list[tuple[int, RawResponse]]:
        """One turn of the driven engine, without the GIL: starts submitted
        requests and runs what is ready; unless ``timeout_s`` is 0, then waits
        until a request finishes, ``wake_fd`` turns readable or ``timeout_s``
        passes (None: no limit). Returns the finished requests. Raises
        OSError when ``wake_fd`` cannot be watched."""
    def unwatch(self, wake_fd: int) -> None:
        """Stops watching ``wake_fd``; call it before closing it."""
    def record(
        self,
        method: str,
        name: str,
        response_time_us: int,
        content_bytes: int,
        error: str | None = None,
        intended_lag_us: int | None = None,
    ) -> None: ...
    def record_error(self, message: str, traceback: str, node: str) -> None: ...
    def snapshot(self, *, with_history: bool = False) -> StatsSnapshot:
        """Statistics including everything recorded before the call."""
    def tick(self, user_count: int, *, full_history: bool = False) -> None:
        """Closes the stats window and appends a history row."""
    def reset_stats(self, *, clear_history: bool = False) -> None:
        """Zeroes the statistics; with ``clear_history`` also the history
        rows (a new run in the same process)."""
    def in_flight(self) -> int: ...
    def wait_idle(self, timeout_s: float) -> bool: ...

class DemoTarget:
    """The built-in demo HTTP server (see ``aiotest demo-target``).

    Raises:
        OSError: The address cannot be bound.
    """

    def __init__(self, *, bind: str = "127.0.0.1", port: int = 0) -> None: ...
    @property
    def port(self) -> int: ...
    @property
    def url(self) -> str: ...
    def counts_json(self) -> str:
        """``{"total": n, "requests": {"GET /path": n}}``."""
    def stop(self) -> None: ...

class WebUi:
    """The web UI and its HTTP API (docs/web.md), served on ``engine``'s
    runtime. Raises OSError when ``host:port`` cannot be bound, ConfigError
    (exit code 2) for a bad ``login`` (``USER:PASSWORD``) or unreadable TLS
    files (PEM)."""

    def __init__(
        self,
        engine: Engine,
        *,
        host: str,
        port: int,
        login: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None: ...
    @property
    def port(self) -> int: ...
    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
    def wakeup_fd(self) -> int:
        """Readable when commands wait in :meth:`drain_commands`."""
    def drain_commands(self) -> list[str]:
        """Commands as JSON: ``id``, ``action`` (swarm, stop, reset),
        ``body``, ``content_type``."""
    def reply(self, id: int, status: int, body_json: str) -> None:
        """Answers command ``id`` with an HTTP status and a JSON body."""
    def publish(
        self, status_json: str, *, meta_json: str | None = None, fields_json: str | None = None
    ) -> None:
        """Publishes the runner's status with fresh statistics to every
        browser (the ``/stats/requests`` document). Raises ValueError for
        arguments that are not JSON of the documented shape."""
    def clear_history(self) -> None:
        """Drops the chart points (after ``reset_stats(clear_history=True)``)."""
    def stop(self) -> None:
        """Stops serving; idempotent."""

class Master:
    """The master's link (docs/protocol.md): binds a ZeroMQ ROUTER, accepts
    workers, dispatches users and merges their statistics into ``engine``.

    Raises:
        OSError: The address cannot be bound.
        ValueError: A heartbeat interval of 0 s or less, or a liveness of 0.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        bind_host: str,
        bind_port: int,
        heartbeat_interval_s: float,
        heartbeat_liveness: int,
        secret: str | None = None,
    ) -> None: ...
    def wakeup_fd(self) -> int:
        """Readable when ``drain_events()`` has events."""
    def drain_events(self) -> list[str]:
        """Events since the last call, each a JSON object with an ``event`` key."""
    def status(self) -> str:
        """The cluster's status as JSON: workers, live_workers, run_id,
        user_count, task_runs, spawning_complete, all_stopped."""
    def start(self, plan_json: str) -> None:
        """Starts or changes the run. Raises ValueError for a bad plan."""
    def stop(self) -> None: ...
    def send_message(self, name: str, data_json: str, worker_index: int | None = None) -> None:
        """A ``custom`` message to one worker, or to all with None. Raises
        ValueError when ``data_json`` is not JSON."""
    def quit(self) -> None:
        """Tells the workers this master leaves; returns within 2 s."""

class Worker:
    """A worker's link (docs/protocol.md): connects a ZeroMQ DEALER to the
    master, reconnecting whenever it is lost, and reports ``engine``'s
    statistics every ``stats_interval_s``.

    Raises:
        ValueError: A heartbeat interval of 0 s or less, or a liveness of 0.
    """

    def __init__(
        self,
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
    ) -> None: ...
    def wakeup_fd(self) -> int: ...
    def drain_events(self) -> list[str]:
        """Events since the last call, each a JSON object with an ``event`` key."""
    def progress(
        self, state: str, user_count: int, task_runs: int, cpu_percent: float, memory_bytes: int
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
