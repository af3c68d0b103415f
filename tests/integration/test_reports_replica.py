"""Reports read from REPORTS_DATABASE_URL when it is set; settling never does.

A second, empty database stands in for a replica that has not caught up: the
reports show it is what they read, while settlements still land on the primary.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec.structs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import db
from gateway.http.app import create_app
from tests.integration.conftest import (
    COUNTY,
    SignedClient,
    _admin,
    _with_database,
    bill,
    register,
)

pytestmark = pytest.mark.integration
FINANCE = {"X-Terminal-Id": "finance-1"}
STATS = "/v1/finance/stats?by=month&from=2026-01-12&to=2026-01-12"  # a day no other test settles on


async def test_reports_read_the_replica_and_settling_the_primary(client, pool, database_url, settings):
    replica_name = f"replica_{uuid.uuid4().hex[:8]}"
    await _admin(database_url, f'CREATE DATABASE "{replica_name}"')
    replica_url = _with_database(database_url, replica_name)
    connection = await asyncpg.connect(replica_url)
    try:
        await db.migrate(connection)  # same schema, no rows: a replica that is far behind
    finally:
        await connection.close()
    try:
        app = create_app(msgspec.structs.replace(settings, reports_database_url=replica_url), dsn=database_url)
        async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
            gateway = SignedClient(test_client, {})
            gateway.by_terminal = client.by_terminal
            person = await register(gateway, ("insurance", "resident"))
            response = await gateway.post(
                "/v1/settlements", json=bill(person, ("A", 80_000), service_date="2026-01-12"), headers=COUNTY
            )
            settled = await response.json()
            assert response.status == 201, settled
            # Reading a settlement back is not a report: it comes from the primary.
            response = await gateway.get(f"/v1/settlements/{settled['settlement_id']}", headers=COUNTY)
            assert response.status == 200

            stats = await (
                await gateway.get("/v1/finance/stats?by=month&from=2026-01-12&to=2026-01-12", headers=FINANCE)
            ).json()
            assert stats["groups"] == []
            registry = await (await gateway.get("/v1/registry/stats?date=2026-06-01", headers=FINANCE)).json()
            assert registry["by_programme"] == []
        # The same report on the primary sees the settlement.
        primary = await (
            await client.get("/v1/finance/stats?by=month&from=2026-01-12&to=2026-01-12", headers=FINANCE)
        ).json()
        assert primary["groups"][0]["settlements"] >= 1
    finally:
        await _admin(database_url, f'DROP DATABASE "{replica_name}" WITH (FORCE)')
