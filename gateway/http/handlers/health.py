"""What operators and load balancers call: liveness, readiness and Prometheus metrics (no signature)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.app_keys import metrics_key, service_key, state_key
from gateway.problems import ApiError, unavailable


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[state_key]
    if state.get("shutting_down"):
        raise ApiError(503, "shutting_down", "the gateway is shutting down", retry_after=1)
    try:
        async with asyncio.timeout(1.0):
            await request.app[service_key].store.ping()
    except Exception as error:  # any failure to reach the database means not ready
        raise unavailable(f"database check failed: {type(error).__name__}") from None
    # The insurer's breaker is reported, not held against readiness: every replica talks to the same
    # insurer, and bills it need not see (an uninsured patient, a chain without remote funds) still settle.
    service = request.app[service_key]
    if service.insurer_link() is None:
        return web.json_response({"status": "ready"})
    _, breaker = service.remote.ready()
    return web.json_response({"status": "ready", "insurer": breaker})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[metrics_key].exposition()  # every worker's values under --workers N
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
