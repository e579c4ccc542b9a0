"""The endpoints an orchestrator probes: ``GET /healthz`` (the process is
alive) and ``GET /readyz`` (200 once ready, else 503 with the reason), in
Kubernetes' conventions (docs/kubernetes.md).

The web UI serves them next to its page. A headless run (local or master)
serves them on ``--web-host``/``--web-port`` too, with nothing else; a
worker does when ``--web-port`` is given. ``--no-web-server`` turns this
off. Readiness: a local run is ready at once; a master once
``--expect-workers`` workers joined; a worker while it is joined to its
master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from ._core import Engine, WebUi
from .options import RunOptions

log = logging.getLogger("aiotest.health")

#: Seconds between two readings of a run's readiness.
READINESS_INTERVAL_S = 0.5

Readiness = Callable[[], tuple[bool, str]]


def open_endpoints(engine: Engine, opts: RunOptions, *, required: bool) -> WebUi | None:
    """Binds the health endpoints alone on ``--web-host:--web-port``.

    Returns None with ``--no-web-server``, and when the port is taken and
    not ``required`` (it was not asked for): that is logged, and the run
    goes on without them.

    Raises:
        OSError: The address cannot be bound and ``required`` is set.
    """
    if opts.no_web_server:
        return None
    try:
        ui = WebUi(engine, host=opts.web_host, port=opts.web_port, service_only=True)
    except OSError as exc:
        if required:
            raise
        log.info("Not serving /healthz and /readyz: %s (or pass --no-web-server)", exc)
        return None
    log.info("Health endpoints at http://%s:%d/healthz and /readyz", opts.web_host, ui.port)
    return ui


async def follow(ui: WebUi, readiness: Readiness) -> None:
    """Keeps ``ui``'s ``/readyz`` on ``readiness()`` until cancelled."""
    while True:
        ui.set_ready(*readiness())
        await asyncio.sleep(READINESS_INTERVAL_S)


@contextlib.asynccontextmanager
async def following(ui: WebUi | None, readiness: Readiness) -> AsyncIterator[None]:
    """While the block runs, ``ui`` (if any) answers ``/readyz`` by
    ``readiness``; the caller stops ``ui``."""
    if ui is None:
        yield
        return
    task = asyncio.create_task(follow(ui, readiness))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
