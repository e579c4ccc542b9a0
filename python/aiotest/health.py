"""The endpoints an orchestrator and a metrics server call: ``GET
/healthz`` (the process is alive), ``GET /readyz`` (200 once ready, else
503 with the reason), in Kubernetes' conventions, and ``GET /metrics`` (the
run's statistics in the Prometheus text format; docs/metrics.md).

The web UI serves them next to its page. A headless run (local or master)
serves them on ``--web-host``/``--web-port`` too, with nothing else; a
worker serves the first two when ``--web-port`` is given.
``--no-web-server`` turns this off. Readiness: a local run is ready at
once; a master once ``--expect-workers`` workers joined; a worker while it
is joined to its master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from ._core import Engine, OtlpExporter, WebUi
from .options import RunOptions
from .runner import ProcessLoad

log = logging.getLogger("aiotest.health")

#: Seconds between two readings of a run's readiness and status.
READINESS_INTERVAL_S = 1.0

Readiness = Callable[[], tuple[bool, str]]
#: The run's state for ``/metrics`` (``Backend.metrics_status``).
MetricsStatus = Callable[[], dict[str, Any]]


class StatusSink(Protocol):
    """What shows the run's status: the web UI's ``/metrics``, an OTLP push."""

    def set_status(self, status: dict[str, Any]) -> None: ...


def open_exporter(engine: Engine, opts: RunOptions) -> OtlpExporter | None:
    """Starts pushing the metrics over OTLP when ``--otlp-endpoint`` is set
    (docs/metrics.md); None otherwise.

    Raises:
        ValueError: The endpoint is not an http(s) URL.
    """
    if not opts.otlp_endpoint:
        return None
    exporter = OtlpExporter(
        engine, endpoint=opts.otlp_endpoint, buckets_s=list(opts.metrics_buckets_s)
    )
    log.info("Pushing metrics over OTLP to %s every second", exporter.url)
    return exporter


def open_endpoints(
    engine: Engine, opts: RunOptions, *, required: bool, metrics: bool
) -> WebUi | None:
    """Binds the health endpoints (and ``/metrics`` with ``metrics``)
    alone on ``--web-host:--web-port``.

    Returns None with ``--no-web-server``, and when the port is taken and
    not ``required`` (it was not asked for): that is logged, and the run
    goes on without them.

    Raises:
        OSError: The address cannot be bound and ``required`` is set.
    """
    if opts.no_web_server:
        return None
    try:
        ui = WebUi(
            engine,
            host=opts.web_host,
            port=opts.web_port,
            service_only=True,
            serve_metrics=metrics,
            metrics_buckets_s=list(opts.metrics_buckets_s),
        )
    except OSError as exc:
        if required:
            raise
        log.info("Not serving /healthz and /readyz: %s (or pass --no-web-server)", exc)
        return None
    served = "/healthz, /readyz and /metrics" if metrics else "/healthz and /readyz"
    log.info("Serving %s on port %d", served, ui.port)
    return ui


async def follow(
    ui: WebUi | None,
    readiness: Readiness,
    status: MetricsStatus | None,
    sinks: Sequence[StatusSink],
) -> None:
    """Keeps ``ui``'s ``/readyz`` on ``readiness()``, and the ``sinks``'
    gauges on ``status()`` with this process's busy CPU (as workers report
    theirs: :class:`ProcessLoad`), until cancelled."""
    load = ProcessLoad()
    while True:
        if ui is not None:
            ui.set_ready(*readiness())
        if status is not None and sinks:
            busy, _ = load.sample()
            shown = {**status(), "cpu_percent": busy}
            for sink in sinks:
                sink.set_status(shown)
        await asyncio.sleep(READINESS_INTERVAL_S)


@contextlib.asynccontextmanager
async def following(
    ui: WebUi | None,
    readiness: Readiness,
    status: MetricsStatus | None = None,
    exporter: OtlpExporter | None = None,
) -> AsyncIterator[None]:
    """While the block runs, ``ui`` (if any) answers ``/readyz`` by
    ``readiness``, and its ``/metrics`` and ``exporter``'s pushes show
    ``status``; the caller stops both."""
    sinks: list[StatusSink] = [s for s in (ui, exporter) if s is not None]
    if not sinks:
        yield
        return
    task = asyncio.create_task(follow(ui, readiness, status, sinks))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
