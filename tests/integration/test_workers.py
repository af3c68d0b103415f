"""``medsettle serve --workers N``: several processes on one port, and what must hold across them.

Workers start at the same moment on the same database, the kernel spreads connections
between them, and their metrics add up. Nothing in one worker's memory may be what keeps
a cap or the one-settlement-per-request rule, so the two-gateway races run again here
against a single port.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid

import asyncpg
import pytest
from aiohttp import web

from gateway.app import create_app

pytestmark = pytest.mark.integration


async def test_processes_starting_at_once_on_a_fresh_database_all_start(database_url, settings):
    """Migrations and the policy sync race when N workers start together on an empty database."""
    name = f"medsettle_fresh_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        fresh = urllib.parse.urlunsplit(urllib.parse.urlsplit(database_url)._replace(path=f"/{name}"))
        runners = [web.AppRunner(create_app(settings, dsn=fresh), handle_signals=False) for _ in range(4)]
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(runner.setup() for runner in runners), return_exceptions=True), timeout=60
            )
        finally:
            for runner in runners:
                await runner.cleanup()
        assert [repr(outcome) for outcome in outcomes if outcome is not None] == []
        connection = await asyncpg.connect(fresh)
        try:
            assert await connection.fetchval("SELECT count(*) FROM policy_versions") >= 1
            loaded = await connection.fetchval("SELECT count(*) FROM audit_log WHERE action = 'policy.loaded'")
            assert loaded == await connection.fetchval("SELECT count(*) FROM policy_versions")
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
