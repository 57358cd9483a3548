"""A small Starlette service whose background work runs on corral.

What it shows, in the order a request meets it:

- the lifespan opens the process's default queue (``default=True``), so handlers call
  ``corral.spawn`` instead of ``asyncio.create_task`` and the linter stays green;
- ``POST /orders/{order_id}`` answers 202 at once and sends the receipt in the background;
- a full queue raises ``corral.QueueFull``, which becomes HTTP 429 with ``Retry-After``
  (backpressure reaches the caller instead of piling up in memory);
- the lifespan also installs ``corral.guard`` in ``count`` mode: tasks and threads that any
  library starts outside corral show up as ``corral_raw_spawns_total{kind,package,site}``;
- ``GET /metrics`` serves the Prometheus registry the queue and the guard report into;
- Sentry is initialised when ``SENTRY_DSN`` is set, and failed tasks are reported there;
- shutting down drains the queue: every accepted order gets its receipt.

Run it::

    pip install 'corral[example]'
    uvicorn --app-dir examples/service app:app
    curl -X POST localhost:8000/orders/42 && curl localhost:8000/metrics
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import corral
import sentry_sdk
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

QUEUE_NAME = "receipts"

Job = Callable[[str], Awaitable[object]]


async def send_receipt(order_id: str) -> None:
    """Stand-in for slow I/O (a mail API) that must not hold up the HTTP response."""
    await anyio.sleep(0.05)


def init_sentry(environ: Mapping[str, str], **options: Any) -> bool:
    """Initialise Sentry from the environment; without ``SENTRY_DSN`` it stays off."""
    dsn = environ.get("SENTRY_DSN")
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environ.get("SENTRY_ENVIRONMENT", "production"),
        **options,
    )
    return True


def create_app(
    *,
    job: Job = send_receipt,
    workers: int = 4,
    capacity: int = 100,
    retry_after_seconds: int = 1,
    registry: CollectorRegistry = REGISTRY,
    environ: Mapping[str, str] | None = None,
    sentry_options: Mapping[str, Any] | None = None,
    guard: bool = True,
) -> Starlette:
    """Build the service; the keyword arguments exist so tests can size and observe it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        init_sentry(os.environ if environ is None else environ, **(sentry_options or {}))
        with contextlib.ExitStack() as stack:
            # Count raw concurrency from every library while the service runs; installed
            # here, in the event loop, it watches this loop too. A test harness may already
            # run a guard of its own (one per process): then that one watches.
            if guard and corral.guard.current() is None:
                stack.enter_context(corral.guard.install(mode="count", registry=registry))
            async with corral.TaskQueue(
                QUEUE_NAME, workers=workers, capacity=capacity, default=True, registry=registry
            ) as queue:
                app.state.queue = queue  # for handlers that need more than spawn, and for tests
                yield
            # Leaving the block drained the queue: every accepted job has run.

    async def create_order(request: Request) -> Response:
        order_id = request.path_params["order_id"]
        try:
            handle = corral.spawn(job, order_id)
        except corral.QueueFull:
            return JSONResponse(
                {"error": "too busy, retry later"},
                status_code=429,
                headers={"Retry-After": str(retry_after_seconds)},
            )
        except (corral.QueueClosed, corral.NoDefaultQueue):
            return JSONResponse({"error": "shutting down"}, status_code=503)
        return JSONResponse({"order": order_id, "task": handle.id}, status_code=202)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/orders/{order_id}", create_order, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


app = create_app()
