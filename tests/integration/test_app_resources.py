"""The app's resources: one cleanup context each, opened in order, and closed even when start-up fails part way.

The pools open first and close last; the store and the service (with the store's batch
lanes) next; then the background loops (reference refresh, audit sealer, nonce pruner); the
card reader last, so it stops before anything it uses. A context that never finished opening
is never closed by aiohttp, so one context per resource is what lets a start-up that fails
after the pool opened (here: no policy files) close that pool.
"""

from __future__ import annotations

import asyncio
import urllib.parse

import asyncpg
import msgspec
import pytest
from aiohttp import web

from gateway.http.app import create_app
from settlement.errors import PolicyError

pytestmark = pytest.mark.integration

APPLICATION = "medsettle-failed-start"


def test_each_resource_has_its_own_cleanup_context_in_order(settings) -> None:
    app = create_app(settings, dsn="postgresql://unused")  # nothing opens before the app starts
    assert [context.__name__.lstrip("_") for context in app.cleanup_ctx] == [
        "pools",
        "services",
        "background_loops",
        "card_reader_context",
    ]


async def _connections(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION)


async def test_a_start_up_that_fails_after_the_pool_opened_closes_the_pool(pool, database_url, settings, tmp_path):
    empty = tmp_path / "no-policies"
    empty.mkdir()
    parts = urllib.parse.urlsplit(database_url)
    query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), ("application_name", APPLICATION)])
    dsn = urllib.parse.urlunsplit(parts._replace(query=query))
    app = create_app(msgspec.structs.replace(settings, policy_dir=str(empty), reader_port=0), dsn=dsn)
    runner = web.AppRunner(app)
    with pytest.raises(PolicyError):
        await runner.setup()
    assert await _connections(pool) >= 1, "the pool opened before the policies were read"
    await runner.cleanup()
    for _ in range(50):  # a closed connection's server process takes a moment to leave pg_stat_activity
        if await _connections(pool) == 0:
            break
        await asyncio.sleep(0.1)
    assert await _connections(pool) == 0
