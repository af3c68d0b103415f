"""Migration 0010 turns the old rows (jsonb documents, ledger rows, idempotency records) into lean ones.

A database at schema 0009 gets a settlement, a reversed settlement and their rows exactly as the
gateway of that schema wrote them; migrating must keep every figure, the booking days, the
fingerprints for replays and the ledger, and must refuse to drop a ledger that disagrees with its
settlements.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from adapters import db
from adapters.check import check_invariants
from adapters.policy_files import load_policy_book, policy_dir
from adapters.settlement_sql import decode_record
from settlement import engine as legacy_engine
from settlement.decision import ledger_lines
from settlement.models import Accumulators, Bill, LineItem, Settlement
from settlement.policy import parse_policy
from settlement.registry import Membership, status_on
from tests.integration.conftest import database_before

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
BOOKED = dt.date(2026, 5, 2)
REVERSED_ON = dt.date(2026, 5, 9)


@pytest.fixture
async def old_database(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database migrated only up to 0009."""
    async with database_before(database_url, 10) as connection:
        yield connection


# Rows from before 0010 were settled by the engine of their day, which kept the default policy's six
# counters as ``accumulators_before``/``accumulators_after``: settle them with it.
LEGACY_POLICY = parse_policy(
    (Path(__file__).resolve().parents[2] / "tests/fixtures/legacy-default-2026.toml").read_text(encoding="utf-8"),
    "legacy-default-2026.toml",
)


def _settle(amount: int) -> tuple[dict[str, object], Settlement]:
    items = (LineItem(code="A01", name="阿莫西林", category="A", amount=amount, quantity=2, unit_price=amount // 2),)
    bill = Bill(clinic_level="county", visit_type="inpatient", service_date=dt.date(2026, 5, 1), items=items)
    memberships = [
        Membership(programme="insurance", code="resident", effective_from=START),
        Membership(programme="hardship_aid", code="destitute", effective_from=START),
    ]
    settlement = legacy_engine.settle(bill, status_on(memberships, bill.service_date), Accumulators(), LEGACY_POLICY)
    request = {
        "request_id": f"req-{uuid.uuid4().hex[:8]}",
        "clinic_id": "C001",
        "person_id": "410*************12",
        "visit_type": "inpatient",
        "service_date": "2026-05-01",
        "items": [msgspec.to_builtins(item) for item in items],
    }
    return request, settlement


async def _write_old_settlement(
    connection: asyncpg.Connection, person_key: bytes, request: dict[str, object], settlement: Settlement
) -> uuid.UUID:
    """What the gateway of schema 0009 wrote for one settlement (adapters/store.py at that schema)."""
    settlement_id = uuid.uuid4()
    created = dt.datetime(2026, 5, 2, 2, 0, tzinfo=dt.UTC)
    await connection.execute(
        """INSERT INTO settlements (person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level,
               visit_type, service_date, policy_id, total, eligible, insurance, veteran_subsidy, hardship_aid,
               out_of_pocket, request, result, created_at)
           VALUES ($1, $2, 'term-C001', $3, 'C001', 'county', 'inpatient', '2026-05-01', $4, $5, $6, $7, $8, $9, $10,
                   $11::jsonb, $12::jsonb, $13)""",
        person_key,
        settlement_id,
        request["request_id"],
        settlement.policy_version,
        settlement.total,
        settlement.eligible,
        settlement.insurance,
        settlement.veteran_subsidy,
        settlement.hardship_aid,
        settlement.out_of_pocket,
        msgspec.json.encode(request).decode(),
        msgspec.json.encode(settlement).decode(),
        created,
    )
    await connection.executemany(
        """INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type,
               year, booked_on, created_at) VALUES ($1, $2, 'settlement', $3, $4, 'C001', 'inpatient', 2026, $5, $6)""",
        [(person_key, settlement_id, account, amount, BOOKED, created) for account, amount in ledger_lines(settlement)],
    )
    await connection.execute(
        """INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
           VALUES ('term-C001', $1, 'settle', $2, 200, '\\x7b7d', $3)""",
        request["request_id"],
        bytes(range(32)),
        created,
    )
    return settlement_id


async def _seed(connection: asyncpg.Connection) -> tuple[bytes, list[tuple[uuid.UUID, Settlement]]]:
    book = load_policy_book(policy_dir())
    policy = book.in_force(dt.date(2026, 5, 1))
    person_key = bytes(32)
    await connection.execute(
        "INSERT INTO clinics (clinic_id, name, level, region) VALUES ('C001', 'County hospital', 'county', '410103')"
    )
    await connection.execute(
        "INSERT INTO policy_versions (policy_id, effective_from, source, document) VALUES ($1, $2, 'test', '{}')",
        policy.id,
        policy.effective_from,
    )
    await connection.execute("INSERT INTO people (person_key, masked_id) VALUES ($1, '410*************12')", person_key)
    written = []
    for amount in (300_000, 120_000):
        request, settlement = _settle(amount)
        written.append((await _write_old_settlement(connection, person_key, request, settlement), settlement))
    total = [sum(getattr(s, field) for _, s in written) for field in ("insurance", "hardship_aid")]
    await connection.execute(
        """INSERT INTO accumulators (person_key, year, insurance_inpatient_paid, aid_paid, unpaid_eligible,
               insurance_inpatient_cap, aid_cap, version)
           VALUES ($1, 2026, $2, $3, $4, 1000000000, 1000000000, 2)""",
        person_key,
        total[0],
        total[1],
        sum(s.accumulators_after.unpaid_eligible for _, s in written),
    )
    # The second settlement was reversed a week later: its reversal, negated lines and idempotency record.
    reversed_id, reversed_settlement = written[1]
    reversal_id = uuid.uuid4()
    at = dt.datetime(2026, 5, 9, 3, 0, tzinfo=dt.UTC)
    await connection.execute(
        """INSERT INTO reversals (person_key, reversal_id, settlement_id, terminal_id, request_id, reason, created_at)
           VALUES ($1, $2, $3, 'term-C001', 'rev-1', 'wrong patient', $4)""",
        person_key,
        reversal_id,
        reversed_id,
        at,
    )
    await connection.executemany(
        """INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type,
               year, booked_on, created_at) VALUES ($1, $2, 'reversal', $3, $4, 'C001', 'inpatient', 2026, $5, $6)""",
        [
            (person_key, reversed_id, account, amount, REVERSED_ON, at)
            for account, amount in ledger_lines(reversed_settlement, sign=-1)
        ],
    )
    await connection.execute(
        "UPDATE settlements SET reversed_at = $2, reversal_id = $3 WHERE settlement_id = $1",
        reversed_id,
        at,
        reversal_id,
    )
    await connection.execute(
        """UPDATE accumulators SET insurance_inpatient_paid = insurance_inpatient_paid - $1, aid_paid = aid_paid - $2,
               unpaid_eligible = unpaid_eligible - $3""",
        reversed_settlement.insurance,
        reversed_settlement.hardship_aid,
        reversed_settlement.accumulators_after.unpaid_eligible
        - reversed_settlement.accumulators_before.unpaid_eligible,
    )
    await connection.execute(
        """INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
           VALUES ('term-C001', 'rev-1', 'reverse', $1, 200, '\\x7b7d', $2)""",
        bytes(range(100, 132)),
        at,
    )
    return person_key, written


async def test_old_rows_keep_every_figure_booking_day_fingerprint_and_ledger_line(old_database):
    connection = old_database
    _, written = await _seed(connection)
    before = {
        (row["settlement_id"], row["kind"], row["account"]): (row["amount"], row["booked_on"])
        for row in await connection.fetch("SELECT * FROM ledger_entries")
    }
    assert (await db.migrate(connection))[0] == "0010_lean_settlements.sql"

    after = {
        (row["settlement_id"], row["kind"], row["account"]): (row["amount"], row["booked_on"])
        for row in await connection.fetch("SELECT * FROM ledger_entries")
    }
    assert after == before and len(after) == 15
    for settlement_id, settlement in written:
        row = await connection.fetchrow("SELECT * FROM settlements WHERE settlement_id = $1", settlement_id)
        record = decode_record(row["record"])
        assert record.result == settlement
        assert record.person == "410*************12" and record.items[0].name == "阿莫西林"
        assert row["booked_on"] == BOOKED
        assert row["request_hash"] == bytes(range(16))
        assert row["insured"] and row["hardship_tier"] == "destitute" and row["veteran_category"] is None
        assert row["deductible_taken"] == 0
        assert row["unpaid_added"] == settlement.accumulators_after.unpaid_eligible
    reversal = await connection.fetchrow("SELECT booked_on, request_hash FROM reversals")
    assert (reversal["booked_on"], reversal["request_hash"]) == (REVERSED_ON, bytes(range(100, 116)))
    assert await check_invariants(connection) == []


async def test_a_ledger_that_disagrees_with_its_settlements_stops_the_migration(old_database):
    connection = old_database
    _, written = await _seed(connection)
    await connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
    await connection.execute(
        "UPDATE ledger_entries SET amount = amount + 1 WHERE settlement_id = $1 AND account = 'aid_fund'",
        written[0][0],
    )
    await connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only")
    with pytest.raises(asyncpg.RaiseError, match="ledger_entries disagree with their settlements"):
        await db.migrate(connection)
    # Nothing of 0010 stayed: the old tables are all there, and the migration is not recorded.
    assert await connection.fetchval("SELECT to_regclass('idempotency_keys') IS NOT NULL")
    assert await connection.fetchval("SELECT max(version) FROM schema_migrations") == 9
