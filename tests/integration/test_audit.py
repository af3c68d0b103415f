"""The audit trail: every money and registry change is recorded, append-only, and hash-chained.

Settlements and reversals have a chain of their own, sealed by the minute: a changed, removed or
added row of a sealed minute is found by ``medsettle audit verify``, which names it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

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
    await _seal_ledger(pool)


_WAITING = """
SELECT (SELECT count(*) FROM settlements WHERE created_at >= $1 AND created_at < $2)
     + (SELECT count(*) FROM reversals WHERE created_at >= $1 AND created_at < $2)
"""


async def _seal_ledger(pool: asyncpg.Pool) -> None:
    """Seal every settlement and reversal written so far, without waiting for their minute to end.

    The gateway's own sealer may hold the lock for a moment: then try again until nothing before
    now is left unsealed.
    """
    until = dt.datetime.now(dt.UTC)
    async with pool.acquire() as connection:
        for _ in range(200):
            if await audit.seal_ledger(connection, until=until) > 0:
                continue
            head = await connection.fetchval("SELECT max(period_end) FROM ledger_seals")
            if head is not None and await connection.fetchval(_WAITING, head, until) == 0:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the ledger sealer did not catch up")


async def _settle_and_reverse(client: Any) -> tuple[str, str]:
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    response = await client.post(
        "/v1/settlements", json=bill(person, ("A", 20_000), visit_type="outpatient"), headers=COUNTY
    )
    assert response.status == 201
    settlement_id = (await response.json())["settlement_id"]
    response = await client.post(
        f"/v1/settlements/{settlement_id}/reversal", json={"request_id": f"rev-{settlement_id}"}, headers=COUNTY
    )
    assert response.status == 201
    return settlement_id, (await response.json())["reversal_id"]


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
            "UPDATE ledger_seals SET settlements = settlements + 1",
            "DELETE FROM ledger_seals",
            "TRUNCATE ledger_seals",
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


# ---------------------------------------------------------------- settlements and reversals


async def test_verify_names_an_altered_settlement_and_a_removed_reversal(client, pool, database_url):
    settlement_id, reversal_id = await _settle_and_reverse(client)
    await _seal_everything(pool)
    intact = medsettle(database_url, "audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "ledger chain intact" in intact.stdout

    async with pool.acquire() as connection:
        settled = await connection.fetchrow(
            "SELECT person_key, total, out_of_pocket FROM settlements WHERE settlement_id = $1::uuid", settlement_id
        )
        reversal = await connection.fetchrow("SELECT * FROM reversals WHERE reversal_id = $1::uuid", reversal_id)
        await connection.execute("ALTER TABLE settlements DISABLE TRIGGER settlements_append_only")
        await connection.execute("ALTER TABLE reversals DISABLE TRIGGER reversals_append_only")
        try:
            # The patient charged 100 fen more, behind the triggers' back: the sums still balance.
            await connection.execute(
                "UPDATE settlements SET total = total + 100, out_of_pocket = out_of_pocket + 100"
                " WHERE person_key = $1 AND settlement_id = $2::uuid",
                settled["person_key"],
                settlement_id,
            )
            altered = medsettle(database_url, "audit", "verify")
            await connection.execute(
                "UPDATE settlements SET total = $3, out_of_pocket = $4"
                " WHERE person_key = $1 AND settlement_id = $2::uuid",
                settled["person_key"],
                settlement_id,
                settled["total"],
                settled["out_of_pocket"],
            )
            restored = medsettle(database_url, "audit", "verify")

            await connection.execute("DELETE FROM reversals WHERE reversal_id = $1::uuid", reversal_id)
            removed = medsettle(database_url, "audit", "verify")
            columns = list(reversal.keys())
            await connection.execute(
                f"INSERT INTO reversals ({', '.join(columns)})"
                f" VALUES ({', '.join(f'${n}' for n in range(1, len(columns) + 1))})",
                *reversal.values(),
            )
        finally:
            await connection.execute("ALTER TABLE settlements ENABLE TRIGGER settlements_append_only")
            await connection.execute("ALTER TABLE reversals ENABLE TRIGGER reversals_append_only")
    assert altered.returncode == 1, altered.stdout + altered.stderr
    assert "LEDGER CHAIN BROKEN" in altered.stdout
    assert f"settlement {settlement_id} was altered" in altered.stdout
    assert restored.returncode == 0, restored.stdout  # put back exactly: intact again
    assert removed.returncode == 1, removed.stdout + removed.stderr
    assert f"reversal {reversal_id} of settlement {settlement_id} was removed" in removed.stdout
    final = medsettle(database_url, "audit", "verify")
    assert final.returncode == 0, final.stdout


async def test_verify_names_a_settlement_added_to_a_sealed_minute(client, pool, database_url):
    settlement_id, _ = await _settle_and_reverse(client)
    await _seal_everything(pool)
    forged = uuid.uuid4()
    async with pool.acquire() as connection:
        # A copy of a sealed settlement under a new id, created "back then": no trigger refuses an insert.
        await connection.execute(
            """INSERT INTO settlements
               SELECT (jsonb_populate_record(s, jsonb_build_object('settlement_id', $2::uuid, 'request_id', 'forged',
                                                                   'reversal_id', null, 'reversed_at', null))).*
               FROM settlements s WHERE s.settlement_id = $1::uuid""",
            settlement_id,
            forged,
        )
        try:
            added = medsettle(database_url, "audit", "verify")
        finally:
            await connection.execute("ALTER TABLE settlements DISABLE TRIGGER settlements_no_delete")
            try:
                await connection.execute("DELETE FROM settlements WHERE settlement_id = $1", forged)
            finally:
                await connection.execute("ALTER TABLE settlements ENABLE TRIGGER settlements_no_delete")
    assert added.returncode == 1, added.stdout + added.stderr
    assert f"settlement {forged} was added after its period was sealed" in added.stdout
    assert medsettle(database_url, "audit", "verify").returncode == 0


async def test_a_reversal_after_its_settlement_was_sealed_keeps_the_chain(client, pool):
    """The reversal mark is set on a sealed settlement; the reversal itself is sealed in its own minute."""
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements", json=bill(person, ("A", 8_000), visit_type="outpatient"), headers=COUNTY
    )
    settlement_id = (await response.json())["settlement_id"]
    await _seal_ledger(pool)
    async with pool.acquire() as connection:
        sealed_until = await connection.fetchval("SELECT max(period_end) FROM ledger_seals")
        assert await connection.fetchval(
            "SELECT created_at < $2 FROM settlements WHERE settlement_id = $1::uuid", settlement_id, sealed_until
        )
    response = await client.post(
        f"/v1/settlements/{settlement_id}/reversal", json={"request_id": f"rev-{settlement_id}"}, headers=COUNTY
    )
    assert response.status == 201
    await _seal_ledger(pool)
    async with pool.acquire() as connection:
        assert await connection.fetchval(
            "SELECT reversed_at IS NOT NULL FROM settlements WHERE settlement_id = $1::uuid", settlement_id
        )
        report = await audit.verify_ledger(connection)
    assert report.problem is None
    assert report.reversals >= 1 and report.waiting == 0


async def test_verify_finds_an_altered_seal(client, pool):
    await _settle_and_reverse(client)
    await _seal_ledger(pool)
    async with pool.acquire() as connection:
        seal = await connection.fetchrow(
            "SELECT period_end, settlements, locator FROM ledger_seals WHERE settlements > 0"
            " ORDER BY period_end DESC LIMIT 1"
        )
        await connection.execute("ALTER TABLE ledger_seals DISABLE TRIGGER ledger_seals_append_only")
        try:
            # One settlement fewer in the seal (and its locator entry), as if it had never been sealed.
            await connection.execute(
                "UPDATE ledger_seals SET settlements = settlements - 1, locator = substr(locator, 9)"
                " WHERE period_end = $1",
                seal["period_end"],
            )
            altered = await audit.verify_ledger(connection)
            await connection.execute(
                "UPDATE ledger_seals SET settlements = $2, locator = $3 WHERE period_end = $1", *seal.values()
            )
            restored = await audit.verify_ledger(connection)
        finally:
            await connection.execute("ALTER TABLE ledger_seals ENABLE TRIGGER ledger_seals_append_only")
    assert altered.problem is not None
    assert altered.problem.startswith("the seal of the period from") and altered.problem.endswith("was altered")
    assert restored.problem is None


_LIVE_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""


async def _columns_not_sealed(connection: asyncpg.Connection) -> list[str]:
    """Columns of settlements and reversals that the ledger seal's canonical form does not cover as typed."""
    problems = []
    for table, sealed in (
        (
            "settlements",
            {
                *audit.SETTLEMENT_COLUMNS,
                audit.SETTLEMENT_RAW_COLUMN,
                *((name, kind) for name, kind, _ in audit.SETTLEMENT_SPARSE_COLUMNS),
            },
        ),
        ("reversals", set(audit.REVERSAL_COLUMNS)),
    ):
        left_out = set(audit.SETTLEMENT_UNSEALED_COLUMNS) if table == "settlements" else set()
        live = {(row["attname"], row["type"]) for row in await connection.fetch(_LIVE_COLUMNS, table)}
        problems += [f"{table}.{name} ({kind}) is not sealed" for name, kind in live - sealed if name not in left_out]
        problems += [f"{table}.{name} ({kind}) is sealed but not in the table" for name, kind in sealed - live]
        problems += [f"{table}.{name} is sealed but set after sealing" for name, _ in sealed if name in left_out]
    return sorted(problems)


async def test_the_ledger_seal_covers_every_column_but_the_reversal_mark(pool):
    """A column added to settlements or reversals fails here until the canonical form (a new form) covers it."""
    async with pool.acquire() as connection:
        assert await _columns_not_sealed(connection) == []
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("ALTER TABLE settlements ADD COLUMN scratch_copay bigint")
            assert await _columns_not_sealed(connection) == ["settlements.scratch_copay (bigint) is not sealed"]
        finally:
            await transaction.rollback()


async def test_a_quiet_hour_gets_one_empty_seal(client, pool):
    """No row for an hour or more: one empty seal up to the end of the quiet stretch, then nothing to do."""
    await _settle_and_reverse(client)
    await _seal_ledger(pool)
    async with pool.acquire() as connection:
        head = await connection.fetchval("SELECT max(period_end) FROM ledger_seals")
        later = head + audit.QUIET_SEAL + dt.timedelta(minutes=5)
        transaction = connection.transaction()  # seals far in the future would cover later tests' rows
        await transaction.start()
        try:
            assert await audit.seal_ledger(connection, until=head + dt.timedelta(minutes=30)) == 0
            assert await connection.fetchval("SELECT max(period_end) FROM ledger_seals") == head  # too short
            assert await audit.seal_ledger(connection, until=later) == 0
            seals = await connection.fetch(
                "SELECT period_start, period_end, settlements, reversals, locator FROM ledger_seals"
                " WHERE period_end > $1",
                head,
            )
            assert await audit.seal_ledger(connection, until=later) == 0
            again = await connection.fetchval("SELECT count(*) FROM ledger_seals WHERE period_end > $1", head)
        finally:
            await transaction.rollback()
    assert [tuple(seal.values()) for seal in seals] == [(head, later, 0, 0, b"")]
    assert again == 1
