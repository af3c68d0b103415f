"""The audit trail: every money and registry change is recorded, append-only, and hash-chained."""

from __future__ import annotations

import asyncpg
import pytest

from adapters import audit
from tests.integration.conftest import COUNTY, bill, register
from tests.integration.test_cli import medsettle

pytestmark = pytest.mark.integration


async def _seal_everything(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        while await audit.seal(connection, delay_seconds=0) > 0:
            pass


async def test_settlements_and_reversals_are_audited(client, pool):
    """A settlement row is its own record of who settled what and when; a reversal adds an audit row."""
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    created = await (
        await client.post("/v1/settlements", json=bill(person, ("A", 20_000), visit_type="outpatient"), headers=COUNTY)
    ).json()
    await client.post(
        f"/v1/settlements/{created['settlement_id']}/reversal",
        json={"request_id": f"rev-{created['request_id']}", "reason": "wrong patient"},
        headers=COUNTY,
    )
    async with pool.acquire() as connection:
        settled = await connection.fetchrow(
            "SELECT terminal_id, request_id, hardship_aid, created_at FROM settlements WHERE settlement_id = $1::uuid",
            created["settlement_id"],
        )
        rows = await connection.fetch(
            "SELECT actor, action, request_id, details->>'reason' AS reason FROM audit_log"
            " WHERE subject = $1 ORDER BY audit_id",
            created["settlement_id"],
        )
    assert (settled["terminal_id"], settled["request_id"]) == ("term-C001", created["request_id"])
    assert settled["hardship_aid"] == created["hardship_aid"]
    assert [(row["action"], row["actor"], row["reason"]) for row in rows] == [
        ("settlement.reversed", "term-C001", "wrong patient")
    ]
    assert rows[0]["request_id"] == f"rev-{created['request_id']}"


async def test_money_and_audit_rows_cannot_be_changed_or_removed(client, pool):
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements", json=bill(person, ("A", 5_000), visit_type="outpatient"), headers=COUNTY
    )
    assert response.status == 201
    settlement_id = (await response.json())["settlement_id"]
    reversal = await client.post(
        f"/v1/settlements/{settlement_id}/reversal", json={"request_id": f"rev-{settlement_id}"}, headers=COUNTY
    )
    assert reversal.status == 201  # so the reversals table holds a row for the statements below to meet
    await _seal_everything(pool)
    async with pool.acquire() as connection:
        for statement in (
            "UPDATE settlements SET total = total + 1, insurance = insurance + 1",
            "UPDATE settlements SET reversal_id = gen_random_uuid(), reversed_at = now(), clinic_id = 'V001'",
            "DELETE FROM settlements",
            "TRUNCATE settlements CASCADE",
            "UPDATE reversals SET reason = 'nothing happened'",
            "DELETE FROM reversals",
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "DELETE FROM audit_seals",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)


async def test_verify_names_the_altered_and_the_removed_row(client, pool, database_url):
    await register(client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"))
    await _seal_everything(pool)
    intact = medsettle(database_url, "audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "audit chain intact" in intact.stdout

    async with pool.acquire() as connection:
        victim = await connection.fetchrow(
            "SELECT a.* FROM audit_log a JOIN audit_seals s USING (audit_id) ORDER BY s.seal_seq DESC OFFSET 3 LIMIT 1"
        )
        await connection.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        try:
            await connection.execute(
                "UPDATE audit_log SET actor = 'cli:mallory' WHERE audit_id = $1", victim["audit_id"]
            )
            altered = medsettle(database_url, "audit", "verify")
            await connection.execute(
                "UPDATE audit_log SET actor = $2 WHERE audit_id = $1", victim["audit_id"], victim["actor"]
            )
            assert medsettle(database_url, "audit", "verify").returncode == 0  # put back exactly: intact again

            await connection.execute("DELETE FROM audit_log WHERE audit_id = $1", victim["audit_id"])
            removed = medsettle(database_url, "audit", "verify")
            await connection.execute(
                """INSERT INTO audit_log (audit_id, occurred_at, actor, action, subject, request_id, source, details)
                   OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                *victim.values(),
            )
        finally:
            await connection.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    assert altered.returncode == 1
    assert f"audit row {victim['audit_id']} was altered" in altered.stdout
    assert removed.returncode == 1
    assert f"audit row {victim['audit_id']} was removed" in removed.stdout
    assert medsettle(database_url, "audit", "verify").returncode == 0
