"""The one middleware every HTTP request passes through: request id, signature and role, deadline, problems.

``observe`` gives each request its id (echoed in ``X-Request-Id`` and in every log line),
verifies the signature and the caller's role for the matched route (``gateway/http/routes.py``
says which roles each route lets in), runs the handler within ``MEDSETTLE_REQUEST_TIMEOUT``,
renders every failure as ``application/problem+json`` (or, on a browser page that asks for HTML, as
the page's own refusal page), and writes one log line and the
duration histogram per request.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable

import structlog
from aiohttp import web

from adapters.db import is_database_error
from adapters.identity import redact
from adapters.nonces import NonceClaim
from gateway.app_keys import authenticator_key, limiter_key, metrics_key, service_key, settings_key
from gateway.http.requests import (
    bill_request_key,
    caller_key,
    clinic_key,
    problem_code_key,
    request_id_key,
    settlement_key,
    terminal_key,
    unclaimed_write_key,
)
from gateway.http.responses import problem_response
from gateway.http.routing import OPEN, Handler, routes_key
from gateway.logs import fresh_request_id, log
from gateway.problems import ApiError, unavailable
from gateway.service import Terminal
from settlement.errors import SettlementError


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# A request id is echoed in a header and logged: 1-64 printable ASCII characters, no space.
_USABLE_REQUEST_ID = re.compile(r"[!-~]{1,64}")


def _request_id_of(request: web.BaseRequest) -> str:
    """The caller's ``X-Request-Id`` when usable, else a fresh one; a national ID in it is masked.

    A legacy terminal may send GBK or latin-1 bytes: such an id cannot go back in a response
    header, and cleaning it up could make it collide with another terminal's, so it is replaced
    whole. The id used is the one in the ``X-Request-Id`` answer header, the problem's
    ``request_id`` and every log line, so the three always agree.
    """
    sent = request.headers.get("X-Request-Id", "")
    return redact(sent) if _USABLE_REQUEST_ID.fullmatch(sent) else fresh_request_id()


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, one canonical log line, the duration histogram, and problem rendering."""
    request_id = _request_id_of(request)
    request[request_id_key] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    metrics = request.app[metrics_key]
    try:
        response = await _guarded(request, handler)
    except asyncio.CancelledError:
        raise
    duration = time.perf_counter() - started
    route = _route_name(request)
    status = response.status
    metrics.child(metrics.request_duration, route, f"{status // 100}xx").observe(duration)
    response.headers["X-Request-Id"] = request_id
    if route not in ("/metrics", "/healthz", "/readyz"):
        log.info(
            "request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(duration * 1000, 2),
            clinic=request.get(clinic_key),
            bill_request_id=request.get(bill_request_key),
            settlement_id=request.get(settlement_key),
            terminal=request.get(terminal_key),
            code=request.get(problem_code_key),
        )
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[metrics_key]
    error: ApiError
    try:
        return await _within_deadline(request, _authenticated(request, handler))
    except ApiError as raised:
        error = raised
    except SettlementError as refused:
        error = ApiError.from_engine(refused)
    except web.HTTPNotFound:
        error = ApiError(404, "not_found", f"no route for {request.path}")
    except web.HTTPMethodNotAllowed:
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")
    except web.HTTPRequestEntityTooLarge:
        error = ApiError(413, "body_too_large", "the request body is too large")
    except web.HTTPException as http_error:
        error = ApiError(http_error.status, "bad_request", http_error.reason)
    except Exception as unexpected:
        if _client_gone(request, unexpected):
            # The terminal hung up mid-request (its retry will come with the same request id). Not a
            # database fault: counting it as one would page operators for a client's network.
            log.info("client_disconnected")
            error = ApiError(400, "client_disconnected", "the client closed the connection before the answer")
        elif is_database_error(unexpected):
            log.warning("database_unavailable", error=type(unexpected).__name__)
            error = unavailable()
        else:
            log.exception("unhandled_error")
            error = ApiError(500, "internal_error", "an internal error occurred; it has been logged")
    request[problem_code_key] = error.code
    metrics.errors.labels(error.code).inc()
    if (refused_write := request.get(unclaimed_write_key)) is not None:
        request.app[authenticator_key].remember(refused_write)
    response = _page_for(request, error) or problem_response(request, error)
    if error.code == "request_timeout":
        response.force_close()  # the rest of the body may never come: nothing more is read on this connection
    elif request.body_exists and not request.content.is_eof():
        # Answered before its body was read (from the signature headers, the announced size or the
        # content type): this connection closes after the answer.
        response.force_close()
        if error.status == 401:
            await _close_unread(request, response)
    return response


def _page_for(request: web.Request, error: ApiError) -> web.Response | None:
    """A browser page's own page for a refusal (``Route.refusal_page``), when it has one and wants it."""
    route = request.app[routes_key].route_of(request.match_info.route.handler)
    if route is None or route.refusal_page is None:
        return None
    return route.refusal_page(request, error)


async def _close_unread(request: web.Request, response: web.Response) -> None:
    """Send the answer and close at once, without reading the rest of the body to drop it.

    aiohttp would otherwise keep reading the body on the event loop for its lingering time, so
    a sender without a live key could keep the gateway busy with megabytes. A caller with a
    key gets the usual lingering close (its 413 arrives, where a reset might hide it).
    """
    response.headers["X-Request-Id"] = request[request_id_key]
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


def _client_gone(request: web.Request, error: Exception) -> bool:
    """A reset on the terminal's own connection, as opposed to the database's."""
    transport = request.transport
    return isinstance(error, ConnectionResetError) and (transport is None or transport.is_closing())


async def _authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
    await _authenticate(request)
    return await handler(request)


async def _within_deadline(request: web.Request, work: Awaitable[web.StreamResponse]) -> web.StreamResponse:
    """The answer to the request, or 503 ``deadline_exceeded`` once ``MEDSETTLE_REQUEST_TIMEOUT`` has passed,
    or 408 ``request_timeout`` when it is the client that is late.

    The work runs in a task of its own. Past the deadline it is cancelled: a settlement
    mid-transaction rolls back (asyncpg cancels the query, the pool rolls the connection
    back). It finishes unwinding after the 503 has gone out, so a database too slow even to
    acknowledge the cancel cannot hold the answer up. A cancel while a COMMIT is in flight
    leaves the outcome unknown; the 503 says to retry with the same request id, and the
    retry replays the answer if the settlement committed, or settles once if it did not.

    A body still arriving ``MEDSETTLE_BODY_TIMEOUT`` seconds after the header, or at the
    deadline, is the client's slowness, not the gateway's: 408, and the connection is closed.
    Nothing was written for such a request: its body was never read whole.
    """
    settings = request.app[settings_key]
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait((task,), timeout=min(settings.body_timeout, settings.request_timeout))
        if not done and request.content.is_eof() and settings.body_timeout < settings.request_timeout:
            done, _ = await asyncio.wait((task,), timeout=started + settings.request_timeout - loop.time())
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    task.add_done_callback(_unwound_after_deadline)
    waited = loop.time() - started
    if not request.content.is_eof():
        log.info("body_timeout", seconds=round(waited, 2))
        raise ApiError(408, "request_timeout", f"the request body was still arriving after {waited:.1f} s")
    seconds = settings.request_timeout
    log.warning("deadline_exceeded", seconds=seconds)
    raise ApiError(
        503, "deadline_exceeded", f"no answer within {seconds:g} s; retry with the same request id", retry_after=2
    )


def _unwound_after_deadline(task: asyncio.Future[web.StreamResponse]) -> None:
    """Nobody waits for a request cut off at its deadline: retrieve how it ended, and log a failure."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("failed_after_deadline", error=type(error).__name__)


async def _authenticate(request: web.Request) -> None:
    """Verify the signature and the caller's role for the matched route; open routes skip it.

    The headers are checked before the body is read, and an announced body over the route's
    limit is refused unread: nobody without a live key can make the gateway read megabytes.
    """
    matched = request.match_info.route
    route = request.app[routes_key].route_of(matched.handler)
    if route is None or route.roles is OPEN:
        return  # unmatched paths fall through to 404/405; open routes need no caller
    authenticator = request.app[authenticator_key]
    claim = await authenticator.identify(request.headers)
    if route.max_body is not None:  # a few routes take bulk lists larger than the default limit
        request._client_max_size = max(request.client_max_size, route.max_body)
    announced = request.content_length
    if announced is not None and announced > request.client_max_size:
        raise ApiError(413, "body_too_large", f"the body is larger than {request.client_max_size} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"the body is larger than {request.client_max_size} bytes") from None
    write = route.write
    caller = authenticator.verify_body(claim, request.method, request.raw_path, body, claimed_in_database=write)
    if write:
        request[unclaimed_write_key] = caller  # until it succeeds: a refused write's nonce is remembered
    request[terminal_key] = caller.terminal_id
    if caller.role not in route.roles:
        raise ApiError(403, "forbidden", f"the {caller.role} role may not call {request.method} {route.path}")
    request.app[limiter_key].check(caller.terminal_id)
    nonce = NonceClaim.of(caller.key_id, caller.nonce, caller.nonce_expires_at) if write else None
    terminal = request[caller_key] = Terminal(caller.terminal_id, caller.clinic_id, caller.role, nonce)
    if write and not route.claims_own_nonce:  # a settlement claims it inside its first read
        await request.app[service_key].claim_nonce(terminal)
