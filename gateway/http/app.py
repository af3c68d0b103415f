"""The aiohttp application: factory, middleware, routes and handlers.

One cleanup context per resource (database pool, reference data), typed app
keys, and one error middleware that renders every failure as
``application/problem+json``. Requests and responses are JSON or MessagePack,
chosen by Content-Type and Accept.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from adapters import audit, db
from adapters.db import is_database_error
from adapters.faults import Faults
from adapters.finance import Confirmations
from adapters.identity import redact
from adapters.nonces import NonceClaim
from adapters.policy_files import load_policy_book, policy_dir
from adapters.registry_stats import stats_csv
from adapters.reports import Reports
from adapters.store import Store
from gateway import api_models as api
from gateway import bodies
from gateway.auth import Authenticator, Caller, RateLimiter
from gateway.card_reader.listener import card_reader_context
from gateway.config import Settings
from gateway.dashboard.pages import dashboard, dashboard_login
from gateway.http.handlers import finance as finance_routes
from gateway.http.handlers.receipts import settlement_receipt
from gateway.http.openapi import openapi_document
from gateway.logs import fresh_request_id, log
from gateway.metrics import Metrics
from gateway.problems import PROBLEM_BASE, ApiError, shown, unavailable
from gateway.service import Answer, Service, Terminal, china_today
from settlement.errors import SettlementError

JSON = "application/json"
MSGPACK = "application/msgpack"
PROBLEM = "application/problem+json"

settings_key = web.AppKey("settings", Settings)
service_key = web.AppKey("service", Service)
reports_key = web.AppKey("reports", Reports)  # every read-only report (adapters/reports.py)
confirmations_key = web.AppKey("confirmations", Confirmations)  # a clean reconciliation's audit row
metrics_key = web.AppKey("metrics", Metrics)
state_key = web.AppKey("state", dict)
request_id_key = web.RequestKey("request_id", str)
clinic_key = web.RequestKey("clinic_id", str)
terminal_key = web.RequestKey("terminal_id", str)
problem_code_key = web.RequestKey("problem_code", str)
caller_key = web.RequestKey("caller", Terminal)
unclaimed_write_key = web.RequestKey("unclaimed_write", Caller)
authenticator_key = web.AppKey("authenticator", Authenticator)
limiter_key = web.AppKey("rate_limiter", RateLimiter)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


for _model in (api.SettleRequest, api.ReversalRequest, api.PersonRequest, api.EligibilityRequest):
    bodies.decoders(_model)  # built once at import, never on the request path


# ---------------------------------------------------------------- body handling


async def decode_body(request: web.Request, model: type[T], *, max_lines: int | None = None) -> T:
    """The body as ``model``. With ``max_lines``, a bill with more lines is refused before any line is decoded."""
    content_type = request.content_type
    if content_type not in (JSON, MSGPACK):
        raise ApiError(415, "unsupported_media_type", f"Content-Type {content_type or '(none)'} is not accepted")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, "body_too_large", f"the body is larger than {request.app[settings_key].max_body_bytes} bytes"
        ) from None
    return bodies.decode(model, body, msgpack=content_type == MSGPACK, max_lines=max_lines)


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    if MSGPACK in accept:
        return True
    return not accept and request.content_type == MSGPACK


def respond(
    request: web.Request, value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    if wants_msgpack(request):
        return web.Response(body=_msgpack.encode(value), status=status, content_type=MSGPACK, headers=headers)
    return web.Response(body=_json.encode(value), status=status, content_type=JSON, headers=headers)


def respond_answer(request: web.Request, answer: Answer, status: int) -> web.Response:
    """A settlement's or reversal's answer: ``status`` when new, 200 and marked replayed for a retry."""
    headers = {"Idempotent-Replayed": "true" if answer.replayed else "false"}
    return respond(request, answer.value, status=200 if answer.replayed else status, headers=headers)


def problem_response(request: web.Request, error: ApiError) -> web.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    body = problem_body(error, request.get(request_id_key, ""))
    return web.Response(body=body, status=error.status, content_type=PROBLEM, headers=headers)


def problem_body(error: ApiError, request_id: str) -> bytes:
    """The problem document, the one place every HTTP refusal is rendered.

    ``detail`` and ``field`` may quote what the client sent (a JSON key, a path): they are
    ``shown``, a national ID in them masked.
    """
    problem = api.Problem(
        type=PROBLEM_BASE + error.code,
        title=error.title,
        status=error.status,
        detail=shown(error.detail),
        code=error.code,
        request_id=request_id,
        field=None if error.field is None else shown(error.field),
        retry_after=error.retry_after,
    )
    return _json.encode(problem)


# ---------------------------------------------------------------- middleware


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
    metrics.request_duration.labels(route, f"{status // 100}xx").observe(duration)
    response.headers["X-Request-Id"] = request_id
    if route not in ("/metrics", "/healthz", "/readyz"):
        log.info(
            "request",
            method=request.method,
            route=route,
            status=status,
            duration_ms=round(duration * 1000, 2),
            clinic=request.get(clinic_key),
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
    response = problem_response(request, error)
    if error.code == "request_timeout":
        response.force_close()  # the rest of the body may never come: nothing more is read on this connection
    elif request.body_exists and not request.content.is_eof():
        # Answered before its body was read (from the signature headers, the announced size or the
        # content type): this connection closes after the answer.
        response.force_close()
        if error.status == 401:
            await _close_unread(request, response)
    return response


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


# ---------------------------------------------------------------- handlers


async def settle(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = _caller(request)
    body = await decode_body(request, api.SettleRequest, max_lines=request.app[settings_key].max_lines)
    request[clinic_key] = body.clinic_id
    answer = await service.settle(terminal, body)
    return respond_answer(request, answer, 201)


async def quote(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = _caller(request)
    body = await decode_body(request, api.SettleRequest, max_lines=request.app[settings_key].max_lines)
    request[clinic_key] = body.clinic_id
    return respond(request, await service.quote(terminal, body))


async def get_settlement(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = _caller(request)
    settlement_id = _settlement_id(request)
    return respond(request, await service.get_settlement(terminal, settlement_id))


async def reverse(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = _caller(request)
    settlement_id = _settlement_id(request)
    body = await decode_body(request, api.ReversalRequest)
    answer = await service.reverse(terminal, settlement_id, body)
    return respond_answer(request, answer, 201)


async def eligibility(request: web.Request) -> web.Response:
    service = request.app[service_key]
    body = await decode_body(request, api.EligibilityRequest)
    return respond(request, await service.eligibility(_caller(request), body))


async def upsert_person(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = _caller(request)
    body = await decode_body(request, api.PersonRequest)
    result = await service.upsert_person(body, actor=terminal.terminal_id, request_id=request[request_id_key])
    return respond(request, result, status=201 if result.created else 200)


async def clinics(request: web.Request) -> web.Response:
    service = request.app[service_key]
    return respond(request, await service.clinics(request.query.get("level")))


async def registry_stats(request: web.Request) -> web.Response:
    csv = finance_routes.wants_csv(request)
    on = finance_routes.query_date(request, "date") or china_today()
    period_from = finance_routes.query_date(request, "from") or on.replace(day=1)
    period_to = finance_routes.query_date(request, "to") or on
    stats = await request.app[reports_key].registry_stats(on=on, period_from=period_from, period_to=period_to)
    if csv:
        return web.Response(
            body=stats_csv(stats).encode("utf-8"),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="registry-{on.isoformat()}.csv"',
            },
        )
    return respond(request, stats)


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
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[metrics_key].exposition()  # every worker's values under --workers N
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    state = request.app[state_key]
    if "openapi" not in state:
        state["openapi"] = _json.encode(openapi_document())
    return web.Response(body=state["openapi"], content_type=JSON)


OPEN: frozenset[str] = frozenset()  # no signature needed: health, readiness and metrics only
TERMINAL = frozenset({"terminal"})
READERS = frozenset({"terminal", "finance"})
ANY_ROLE = frozenset({"terminal", "finance", "admin"})
ADMIN = frozenset({"admin"})
REPORTING = frozenset({"admin", "finance"})


async def _authenticate(request: web.Request) -> None:
    """Verify the signature and the caller's role for the matched route; open routes skip it.

    The headers are checked before the body is read, and an announced body over the route's
    limit is refused unread: nobody without a live key can make the gateway read megabytes.
    """
    route = request.match_info.route
    roles = ROUTE_ROLES.get(route.handler)  # type: ignore[arg-type]
    if roles is None or roles is OPEN:
        return  # unmatched paths fall through to 404/405; open routes need no caller
    authenticator = request.app[authenticator_key]
    claim = await authenticator.identify(request.headers)
    if route.handler in LARGE_BODY_LIMITS:  # a few routes take bulk lists larger than the default limit
        request._client_max_size = max(request.client_max_size, LARGE_BODY_LIMITS[route.handler])
    announced = request.content_length
    if announced is not None and announced > request.client_max_size:
        raise ApiError(413, "body_too_large", f"the body is larger than {request.client_max_size} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"the body is larger than {request.client_max_size} bytes") from None
    write = route.handler in WRITES
    caller = authenticator.verify_body(claim, request.method, request.raw_path, body, claimed_in_database=write)
    if write:
        request[unclaimed_write_key] = caller  # until it succeeds: a refused write's nonce is remembered
    request[terminal_key] = caller.terminal_id
    if caller.role not in roles:
        raise ApiError(
            403, "forbidden", f"the {caller.role} role may not call {request.method} {route.resource.canonical}"
        )  # type: ignore[union-attr]
    request.app[limiter_key].check(caller.terminal_id)
    nonce = NonceClaim.of(caller.key_id, caller.nonce, caller.nonce_expires_at) if write else None
    terminal = request[caller_key] = Terminal(caller.terminal_id, caller.clinic_id, caller.role, nonce)
    if write and route.handler is not settle:  # a settlement claims it inside its first read
        await request.app[service_key].claim_nonce(terminal)


def _caller(request: web.Request) -> Terminal:
    return request[caller_key]


def _settlement_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["settlement_id"])
    except ValueError:
        raise ApiError(404, "settlement_not_found", "no such settlement") from None


ROUTES = [
    ("POST", "/v1/settlements", settle, TERMINAL),
    ("POST", "/v1/quotes", quote, TERMINAL),
    ("GET", "/v1/settlements/{settlement_id}", get_settlement, READERS),
    ("GET", "/v1/settlements/{settlement_id}/receipt", settlement_receipt, READERS),
    ("POST", "/v1/settlements/{settlement_id}/reversal", reverse, TERMINAL),
    ("POST", "/v1/eligibility", eligibility, TERMINAL),
    ("POST", "/v1/people", upsert_person, ADMIN),
    ("GET", "/v1/clinics", clinics, ANY_ROLE),
    ("GET", "/v1/registry/stats", registry_stats, REPORTING),
    ("GET", "/v1/finance/daily", finance_routes.daily_statement, REPORTING),
    ("POST", "/v1/finance/reconciliation", finance_routes.reconciliation, REPORTING | TERMINAL),
    ("GET", "/v1/finance/stats", finance_routes.statistics, REPORTING),
    ("GET", "/openapi.json", openapi, ANY_ROLE),
    ("GET", "/healthz", healthz, OPEN),
    ("GET", "/readyz", readyz, OPEN),
    ("GET", "/metrics", metrics, OPEN),
    # Browser pages: no request signature; the handlers check a session cookie (gateway/dashboard/pages.py).
    ("GET", "/dashboard/login", dashboard_login, OPEN),
    ("GET", "/dashboard", dashboard, OPEN),
]
ROUTE_ROLES: dict[Handler, frozenset[str]] = {handler: roles for _, _, handler, roles in ROUTES}
# Routes that change something: their nonces are claimed for every gateway process, so a captured
# request replayed to another worker or replica within the timestamp window is refused too.
WRITES: frozenset[Handler] = frozenset({settle, reverse, upsert_person, finance_routes.reconciliation})
LARGE_BODY_LIMITS: dict[Handler, int] = {finance_routes.reconciliation: finance_routes.RECONCILIATION_MAX_BODY}


# ---------------------------------------------------------------- factory


def create_app(settings: Settings, *, dsn: str, metrics: Metrics | None = None) -> web.Application:
    """The application, wired to the database at ``dsn``. Resources open and close with the app."""
    app = web.Application(middlewares=[observe], client_max_size=settings.max_body_bytes)
    app[settings_key] = settings
    app[metrics_key] = metrics or Metrics()
    app[state_key] = {}
    app[limiter_key] = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)

    async def database(app: web.Application) -> AsyncIterator[None]:
        pool = await db.create_pool(dsn, min_size=settings.pool_min, max_size=settings.pool_max)
        async with pool.acquire() as connection:
            applied = await db.migrate(connection)
        if applied:
            log.info("migrated", applied=applied)
        reports_pool = (
            await db.create_pool(settings.reports_database_url, min_size=1, max_size=max(2, settings.pool_max // 2))
            if settings.reports_database_url
            else None
        )
        store = Store(
            pool,
            acquire_timeout=settings.pool_acquire_timeout,
            faults=Faults.parse(settings.faults),
            batch_max=settings.settle_batch_max,
            batch_lanes=settings.settle_batch_lanes,
        )
        app[reports_key] = Reports(pool, reports_pool=reports_pool, acquire_timeout=settings.pool_acquire_timeout)
        app[confirmations_key] = Confirmations(pool, acquire_timeout=settings.pool_acquire_timeout)
        folder = Path(settings.policy_dir) if settings.policy_dir else policy_dir()
        book = load_policy_book(folder)
        policies = [(policy, str(folder), _policy_document(policy)) for policy in book]
        try:
            await store.sync_policies(policies)
        except asyncpg.UniqueViolationError:
            # Another worker or replica starting at the same moment stored a version first (both saw
            # none); the second pass compares ours with what it stored and refuses a differing one.
            await store.sync_policies(policies)
        service = Service(
            store,
            book,
            settings.id_pepper,
            app[metrics_key],
            key_encryption_key=settings.terminal_key_key,
            future_date_tolerance_days=settings.future_date_tolerance_days,
        )
        await service.load_reference()
        app[service_key] = service
        store.start()  # started last, so a failed start-up leaves no batch lanes running
        app[authenticator_key] = Authenticator(service.key)
        refresher = asyncio.create_task(_refresh_reference_forever(service))
        sealer = asyncio.create_task(_seal_audit_forever(pool))
        nonce_pruner = asyncio.create_task(_prune_nonces_forever(store))
        app[metrics_key].watch_pool(lambda: (pool.get_size() - pool.get_idle_size(), pool.get_size()))
        yield
        await store.stop()
        refresher.cancel()
        sealer.cancel()
        nonce_pruner.cancel()
        app[state_key]["shutting_down"] = True
        try:
            await asyncio.wait_for(pool.close(), timeout=settings.shutdown_timeout)
        except TimeoutError:  # a connection the server no longer answers on must not hold the exit
            log.warning("pool_close_timed_out", seconds=settings.shutdown_timeout)
            pool.terminate()
        if reports_pool is not None:
            await asyncio.wait_for(reports_pool.close(), timeout=settings.shutdown_timeout)

    async def on_shutdown(app: web.Application) -> None:
        app[state_key]["shutting_down"] = True

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(card_reader_context)  # after database: it uses the service; closes before the pool
    app.on_shutdown.append(on_shutdown)
    for method, path, handler, _roles in ROUTES:
        if method == "GET":  # HEAD too: load balancers and uptime checkers probe health with it
            app.router.add_get(path, handler, allow_head=True)
        else:
            app.router.add_route(method, path, handler)
    return app


async def _refresh_reference_forever(service: Service, every: float = 5.0) -> None:
    """Pick up new clinics, keys, retirements and revocations made by the CLI or another replica."""
    while True:
        await asyncio.sleep(every)
        try:
            await service.load_reference()
        except Exception as error:  # the database may be away; the next round retries
            log.warning("reference_refresh_failed", error=type(error).__name__)


async def _seal_audit_forever(pool: Any, every: float = 2.0) -> None:
    """Chain new audit rows; replicas take turns through an advisory lock inside ``seal``."""
    while True:
        await asyncio.sleep(every)
        try:
            async with pool.acquire(timeout=5) as connection:
                while await audit.seal(connection) == 10_000:
                    pass
        except Exception as error:  # the database may be away; the next round retries
            log.warning("audit_seal_failed", error=type(error).__name__)


async def _prune_nonces_forever(store: Store, every: float = 60.0) -> None:
    """Drop nonce claims whose timestamp window has passed; a replay is refused by its timestamp then."""
    while True:
        await asyncio.sleep(every)
        try:
            await store.prune_nonces()
        except Exception as error:  # the database may be away; the next round retries
            log.warning("nonce_prune_failed", error=type(error).__name__)


def _policy_document(policy: Any) -> str:
    return _json.encode(policy).decode()
