"""A dump restored into an empty database is whole: the invariants hold and both hash chains verify.

The README's backup section says to take ``pg_dump --format=custom`` and, to restore, to load it
into an empty database with ``pg_restore`` and run ``medsettle check`` and ``medsettle audit
verify`` before pointing a gateway at it. This does exactly that, with the PostgreSQL client
programs that come with the embedded server (the same major version as the server).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import asyncpg
import pgserver
import pytest

from adapters import audit
from tests.integration.conftest import COUNTY, _admin, _with_database, bill, register
from tests.integration.test_cli import medsettle

pytestmark = pytest.mark.integration

BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"


def _run(program: str, *args: str) -> None:
    done = subprocess.run([str(BIN / program), *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{program} failed: {done.stderr[-2000:]}"


async def _figures(connection: asyncpg.Connection) -> tuple[int, ...]:
    row = await connection.fetchrow(
        """SELECT (SELECT count(*) FROM settlements) AS settlements, (SELECT count(*) FROM reversals) AS reversals,
                  (SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE account = 'insurance_fund') AS insurance,
                  (SELECT count(*) FROM audit_log) AS audited"""
    )
    return tuple(row.values())


async def test_a_restored_dump_keeps_every_settlement_and_verifies(client, pool, database_url, tmp_path):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    settled = await (await client.post("/v1/settlements", json=bill(person, ("A", 150_000)), headers=COUNTY)).json()
    reversal = await client.post(
        f"/v1/settlements/{settled['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}"},
        headers=COUNTY,
    )
    assert reversal.status == 201
    async with pool.acquire() as connection:
        while await audit.seal(connection, delay_seconds=0) > 0:
            pass
        while await audit.seal_ledger(connection, grace_seconds=0) > 0:
            pass
        before = await _figures(connection)

    dump = tmp_path / "medsettle.dump"
    _run("pg_dump", "--format=custom", f"--file={dump}", database_url)
    name = f"medsettle_restore_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    restored = _with_database(database_url, name)
    try:
        _run("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored}", str(dump))
        check = medsettle(restored, "check")
        assert check.returncode == 0, check.stdout + check.stderr
        verify = medsettle(restored, "audit", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit chain intact" in verify.stdout and "ledger chain intact" in verify.stdout
        connection = await asyncpg.connect(restored)
        try:
            assert await _figures(connection) == before
        finally:
            await connection.close()
    finally:
        await _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
