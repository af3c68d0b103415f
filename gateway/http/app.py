"""The aiohttp application's composition root: it opens the resources and wires the routes.

``create_app`` registers every route of ``gateway/http/routes.py`` behind the middleware of
``gateway/http/middleware.py``, and one cleanup context per resource: the pools, then the
store and the service, then the background loops, then the card reader; each opens when the
app starts and they close in the reverse order. Nothing imports this module but the command
line (``gateway/cli/serve.py``) and tests: handlers, the dashboard and the card reader read
what they need through the keys of ``gateway/app_keys.py``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from adapters import audit, db, readjudication
from adapters.faults import Faults
from adapters.finance import Confirmations
from adapters.fund_names import FundDirectory
from adapters.policy_files import load_policy_book, policy_dir
from adapters.reports import Reports
from adapters.store import Store
from gateway.app_keys import (
    authenticator_key,
    confirmations_key,
    limiter_key,
    metrics_key,
    reports_key,
    service_key,
    settings_key,
    state_key,
)
from gateway.auth import Authenticator, RateLimiter
from gateway.card_reader.listener import card_reader_context
from gateway.config import Settings
from gateway.http.middleware import observe
from gateway.http.routes import ROUTES
from gateway.http.routing import RouteTable, routes_key
from gateway.logs import log
from gateway.metrics import Metrics
from gateway.service import Service
from settlement.chain import Chain, policy_document

_json = msgspec.json.Encoder()


def create_app(settings: Settings, *, dsn: str, metrics: Metrics | None = None) -> web.Application:
    """The application, wired to the database at ``dsn``. Resources open and close with the app."""
    app = web.Application(middlewares=[observe], client_max_size=settings.max_body_bytes)
    app[settings_key] = settings
    app[metrics_key] = metrics or Metrics()
    app[state_key] = {}
    app[routes_key] = RouteTable(ROUTES)
    app[limiter_key] = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)

    async def on_shutdown(app: web.Application) -> None:
        app[state_key]["shutting_down"] = True

    # One context per resource, opened in this order and closed in the reverse one.
    app.cleanup_ctx.append(_pools(dsn))  # first open, last closed: everything below uses them
    app.cleanup_ctx.append(_services)  # the store (its batch lanes), the reports, the service
    app.cleanup_ctx.append(_background_loops)  # reference refresh, audit sealer, nonce pruner, database check
    app.cleanup_ctx.append(card_reader_context)  # uses the service; stops before the loops, the store and the pool
    app.on_shutdown.append(on_shutdown)
    for route in app[routes_key]:
        if route.method == "GET":  # HEAD too: load balancers and uptime checkers probe health with it
            app.router.add_get(route.path, route.handler, allow_head=True)
        else:
            app.router.add_route(route.method, route.path, route.handler)
    return app


@dataclass(frozen=True, slots=True)
class _Pools:
    primary: asyncpg.Pool
    reports: asyncpg.Pool | None  # REPORTS_DATABASE_URL's replica, when set


_pools_key = web.AppKey("pools", _Pools)  # only the contexts below reach the pools


def _pools(dsn: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def pools(app: web.Application) -> AsyncIterator[None]:
        """The primary pool, migrated, and the reports replica's; closed within MEDSETTLE_SHUTDOWN_TIMEOUT."""
        settings = app[settings_key]
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
        app[_pools_key] = _Pools(pool, reports_pool)
        app[metrics_key].watch_pool(
            lambda: (pool.get_size() - pool.get_idle_size(), pool.get_size(), pool.get_max_size())
        )
        yield
        app[state_key]["shutting_down"] = True
        try:
            await asyncio.wait_for(pool.close(), timeout=settings.shutdown_timeout)
        except TimeoutError:  # a connection the server no longer answers on must not hold the exit
            log.warning("pool_close_timed_out", seconds=settings.shutdown_timeout)
            pool.terminate()
        if reports_pool is not None:
            await asyncio.wait_for(reports_pool.close(), timeout=settings.shutdown_timeout)

    return pools


async def _services(app: web.Application) -> AsyncIterator[None]:
    """The store and the service over the pools, the reports, and the authenticator; the batch lanes run meanwhile."""
    settings = app[settings_key]
    pools = app[_pools_key]
    metrics = app[metrics_key]
    store = Store(
        pools.primary,
        acquire_timeout=settings.pool_acquire_timeout,
        faults=Faults.parse(settings.faults),
        batch_max=settings.settle_batch_max,
        batch_lanes=settings.settle_batch_lanes,
        on_batch=lambda batcher, size: metrics.child(metrics.batch_size, batcher).observe(size),
    )
    folder = Path(settings.policy_dir) if settings.policy_dir else policy_dir()
    book = load_policy_book(folder)
    app[reports_key] = Reports(
        pools.primary,
        reports_pool=pools.reports,
        acquire_timeout=settings.pool_acquire_timeout,
        funds=FundDirectory(book),
    )
    app[confirmations_key] = Confirmations(pools.primary, acquire_timeout=settings.pool_acquire_timeout)
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
        readjudicate_per_second=settings.readjudicate_per_second,
        insurer_url=settings.insurer_url or None,
        insurer_breaker_seconds=settings.insurer_breaker_seconds,
    )
    await service.load_reference()
    await service.refresh_catalogue()
    app[service_key] = service
    app[authenticator_key] = Authenticator(service.key)
    store.start()  # started last, so a failed start-up leaves no batch lanes running
    # What start-up made (modules, policies, caches, the pool) lives as long as the process: the
    # collector need not scan it again at every full collection under load.
    gc.collect()
    gc.freeze()
    yield
    await store.stop()  # the lanes finish the settlements they hold before the pool closes
    await service.remote.close()


async def _background_loops(app: web.Application) -> AsyncIterator[None]:
    """The loops that keep a running gateway current, each retrying on its next round after a failure."""
    service = app[service_key]
    metrics = app[metrics_key]
    loops = [
        asyncio.create_task(_refresh_reference_forever(service)),
        asyncio.create_task(
            _seal_audit_forever(
                app[_pools_key].primary, audit.ledger_seal_grace(app[settings_key].request_timeout), metrics
            )
        ),
        asyncio.create_task(_prune_nonces_forever(service.store)),
        asyncio.create_task(_watch_database_forever(service.store, metrics)),
        asyncio.create_task(_watch_readjudication_backlog_forever(app[_pools_key].primary, metrics)),
    ]
    if app[settings_key].readjudicate_per_second > 0:
        loops.append(asyncio.create_task(service.readjudication.run()))
    if service.insurer_link() is not None:
        loops.append(asyncio.create_task(service.sweeper.run()))
        loops.append(asyncio.create_task(_watch_insurer_messages_forever(service, metrics)))
    yield
    for loop in loops:
        loop.cancel()


async def _refresh_reference_forever(service: Service, every: float = 5.0) -> None:
    """Pick up new clinics, keys, retirements and revocations made by the CLI or another replica, and
    item catalogue versions imported since the last round."""
    while True:
        await asyncio.sleep(every)
        try:
            await service.load_reference()
            if await service.refresh_catalogue():
                log.info(
                    "catalogue_loaded",
                    versions=len(service.catalogue.versions),
                    latest=service.catalogue.versions[-1].isoformat() if service.catalogue else None,
                )
        except Exception as error:  # the database may be away; the next round retries
            log.warning("reference_refresh_failed", error=type(error).__name__)


async def _seal_audit_forever(pool: Any, ledger_grace: float, metrics: Metrics, every: float = 2.0) -> None:
    """Chain new audit rows and ended minutes of settlements; replicas take turns through advisory locks.

    Each round that ends with nothing left to seal is timed in ``medsettle_audit_sealed_timestamp_seconds``:
    the alert "audit sealing behind" (deploy/alerts/medsettle.rules.yml) fires when no replica's is recent.
    """
    while True:
        await asyncio.sleep(every)
        try:
            async with pool.acquire(timeout=5) as connection:
                while await audit.seal(connection) == 10_000:
                    pass
                while await audit.seal_ledger(connection, grace_seconds=ledger_grace) > 0:
                    pass
            metrics.audit_sealed.set(time.time())
        except Exception as error:  # the database may be away; the next round retries
            log.warning("audit_seal_failed", error=type(error).__name__)


async def _watch_database_forever(store: Store, metrics: Metrics, every: float = 5.0) -> None:
    """Answer ``medsettle_database_up``: whether the database answered a query within a second, checked now
    and every ``every`` seconds, so the alert "database unavailable" fires without traffic."""
    while True:
        try:
            async with asyncio.timeout(1.0):
                await store.ping()
            metrics.database_up.set(1)
        except Exception:  # any failure to reach the database counts as down, as /readyz says
            metrics.database_up.set(0)
        await asyncio.sleep(every)


async def _watch_readjudication_backlog_forever(pool: Any, metrics: Metrics, every: float = 15.0) -> None:
    """Answer ``medsettle_readjudication_backlog``, for the alert on re-adjudication falling behind."""
    while True:
        try:
            metrics.readjudication_backlog.set(await readjudication.backlog(pool))
        except Exception as error:  # the database may be away; the next round retries
            log.warning("readjudication_backlog_failed", error=type(error).__name__)
        await asyncio.sleep(every)


async def _watch_insurer_messages_forever(service: Service, metrics: Metrics, every: float = 15.0) -> None:
    """Answer ``medsettle_insurer_open_messages`` and the breaker's gauge, for the alerts on the insurer."""
    while True:
        try:
            service.remote.ready()
            metrics.insurer_open_messages.set(await service.store.insurer_log.open_count())
        except Exception as error:  # the next round tries again
            log.warning("insurer_messages_watch_failed", error=type(error).__name__)
        await asyncio.sleep(every)


async def _prune_nonces_forever(store: Store, every: float = 60.0) -> None:
    """Drop nonce claims whose timestamp window has passed; a replay is refused by its timestamp then."""
    while True:
        await asyncio.sleep(every)
        try:
            await store.prune_nonces()
        except Exception as error:  # the database may be away; the next round retries
            log.warning("nonce_prune_failed", error=type(error).__name__)


def _policy_document(policy: Chain) -> str:
    return policy_document(policy)
