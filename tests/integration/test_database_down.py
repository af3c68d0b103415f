"""The database going away gives 503 with Retry-After (never a 500), and service resumes when it returns.

This test runs its own embedded PostgreSQL so it can stop and start it without
disturbing the shared test database.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import db
from adapters.demo import seed_demo
from adapters.terminal_keys import load_keys
from gateway.http.app import create_app
from tests.integration.conftest import ADMIN, COUNTY, KEY_ENCRYPTION_KEY, PEPPER, SignedClient, bill, fresh_national_id

pytestmark = pytest.mark.integration


async def _prepare(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
        await seed_demo(connection, PEPPER, KEY_ENCRYPTION_KEY, population=10)
    finally:
        await connection.close()


async def test_database_down_answers_503_and_recovers(settings):
    # Not under pytest's temporary folder, which another pytest run on the machine may clear.
    folder = Path(tempfile.mkdtemp(prefix="medsettle-test-pg-")) / "pg"
    url, server = db.start_embedded(folder)
    await _prepare(url)
    app = create_app(settings, dsn=url)
    connection = await asyncpg.connect(url)
    keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
    await connection.close()
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
            client = SignedClient(test_client, keys)
            national_id = fresh_national_id()
            response = await client.post(
                "/v1/people",
                json={
                    "person_id": national_id,
                    "memberships": [{"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"}],
                },
                headers=ADMIN,
            )
            assert response.status == 201
            assert (
                await client.post("/v1/settlements", json=bill(national_id, ("A", 1000)), headers=COUNTY)
            ).status == 201

            server.cleanup()  # stop PostgreSQL under the running gateway
            pending = bill(national_id, ("A", 2000))
            for _ in range(3):
                response = await client.post("/v1/settlements", json=pending, headers=COUNTY)
                problem = await response.json()
                assert response.status == 503, problem
                assert problem["code"] == "database_unavailable"
                assert int(response.headers["Retry-After"]) >= 1
            assert (await client.get("/readyz")).status == 503
            assert (await client.get("/healthz")).status == 200
            # The alert "database unavailable" (deploy/alerts) reads this gauge, checked every 5 s.
            assert await _database_up_becomes(client, 0)

            url, server = db.start_embedded(folder)  # the database returns; the gateway is not restarted
            returned = time.monotonic()
            while True:
                response = await client.post("/v1/settlements", json=pending, headers=COUNTY)
                if response.status == 201:
                    break
                assert response.status == 503, await response.text()
                assert time.monotonic() - returned < 10, "service did not resume within 10 s"
                await asyncio.sleep(0.2)
            assert (await client.get("/readyz")).status == 200
            assert await _database_up_becomes(client, 1)
    finally:
        server.cleanup()
        shutil.rmtree(folder.parent, ignore_errors=True)


async def _database_up_becomes(client: SignedClient, value: int, within: float = 15.0) -> bool:
    """Whether /metrics shows ``medsettle_database_up`` at ``value`` within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        metrics = await (await client.get("/metrics")).text()
        if re.search(rf"^medsettle_database_up {value}\.0$", metrics, re.MULTILINE):
            return True
        await asyncio.sleep(0.1)
    return False
