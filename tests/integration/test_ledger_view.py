"""The ledger view books exactly the engine's double-entry lines, for a settlement and for its reversal."""

from __future__ import annotations

import uuid

import pytest

from adapters.settlement_sql import decode_record
from settlement.decision import ledger_lines
from tests.integration.conftest import COUNTY, bill, register

pytestmark = pytest.mark.integration


async def test_the_ledger_shows_each_settlement_and_reversal_line_once_and_balanced(client, pool):
    person = await register(
        client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"), ("hardship_aid", "destitute")
    )
    response = await client.post("/v1/settlements", json=bill(person, ("A", 400_000), ("B", 90_000)), headers=COUNTY)
    assert response.status == 201
    settlement_id = uuid.UUID((await response.json())["settlement_id"])
    reversal = await client.post(
        f"/v1/settlements/{settlement_id}/reversal", json={"request_id": f"rev-{settlement_id}"}, headers=COUNTY
    )
    assert reversal.status == 201
    async with pool.acquire() as connection:
        record = await connection.fetchval("SELECT record FROM settlements WHERE settlement_id = $1", settlement_id)
        rows = await connection.fetch(
            "SELECT kind, account, amount FROM ledger_entries WHERE settlement_id = $1 ORDER BY kind, account",
            settlement_id,
        )
    settlement = decode_record(record).result
    assert settlement.hardship_aid > 0 and settlement.veteran_subsidy > 0  # every account has a real line
    booked = {(row["kind"], row["account"]): row["amount"] for row in rows}
    assert len(rows) == len(booked) == 10
    assert {account: amount for (kind, account), amount in booked.items() if kind == "settlement"} == dict(
        ledger_lines(settlement)
    )
    assert {account: amount for (kind, account), amount in booked.items() if kind == "reversal"} == dict(
        ledger_lines(settlement, sign=-1)
    )
    assert sum(booked.values()) == 0
