"""A person-year keeps the highest cap each counter was ever settled under, whatever programme changes come.

The row's caps back its CHECK (no counter past its cap). If a settlement under fewer or lower caps could
lower them, a person struck off mid-year, or moved to a tier with a lower cap, would leave counters above
the row's caps, and every later settlement of theirs would be refused by the database.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest

from adapters import identity
from tests.integration.conftest import ADMIN, PEPPER, TOWNSHIP, bill, register

pytestmark = pytest.mark.integration

DESTITUTE_CAP = 6_000_000  # hardship aid, 60,000.00 a year
PRIORITY_CARE_CAP = 1_000_000  # priority-care subsidy, 10,000.00 a year


async def settle(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/settlements", json=body, headers=TOWNSHIP)
    result = await response.json()
    assert response.status == 201, result
    return result


async def row_of(pool: asyncpg.Pool, national_id: str) -> tuple[dict[str, int], int]:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT caps, version FROM accumulators WHERE person_key = $1 AND year = 2026",
            identity.person_key(national_id, PEPPER),
        )
    return json.loads(row["caps"]), row["version"]


def outpatient(person: str, day: str) -> dict[str, Any]:
    return bill(person, ("A", 100_000), clinic_id="T001", visit_type="outpatient", service_date=day)


async def test_caps_stay_as_they_are_when_a_settlement_is_decided_under_the_same_ones(client, pool):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    await settle(client, outpatient(person, "2026-02-10"))
    caps, version = await row_of(pool, person)
    assert caps["aid_paid"] == DESTITUTE_CAP
    await settle(client, outpatient(person, "2026-02-11"))
    assert await row_of(pool, person) == (caps, version + 1)


async def test_a_person_struck_off_mid_year_keeps_the_aid_cap_their_aid_was_paid_under(client, pool):
    person = await register(
        client, ("insurance", "resident"), ("hardship_aid", "destitute"), struck_off_on=dt.date(2026, 3, 1)
    )
    paid = await settle(client, outpatient(person, "2026-02-10"))
    assert paid["hardship_aid"] > 0
    caps, _ = await row_of(pool, person)
    assert caps["aid_paid"] == DESTITUTE_CAP

    # Decided with no aid step for this person: no aid cap of its own to write.
    later = await settle(client, outpatient(person, "2026-05-01"))
    assert later["hardship_aid"] == 0
    assert (await row_of(pool, person))[0] == caps
    await settle(client, outpatient(person, "2026-05-02"))
    assert (await row_of(pool, person))[0] == caps


async def test_a_programme_joined_mid_year_adds_its_cap_to_the_row(client, pool):
    person = await register(client, ("insurance", "resident"))
    await settle(client, outpatient(person, "2026-02-10"))
    before, _ = await row_of(pool, person)
    assert "subsidy_paid" not in before

    response = await client.post(
        "/v1/people",
        json={
            "person_id": person,
            "memberships": [
                {"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"},
                {"programme": "veteran_subsidy", "code": "priority_care", "effective_from": "2026-04-01"},
            ],
        },
        headers=ADMIN,
    )
    assert response.status == 200, await response.text()
    joined = await settle(client, outpatient(person, "2026-05-01"))
    assert joined["veteran_subsidy"] > 0
    after, _ = await row_of(pool, person)
    assert after == {**before, "subsidy_paid": PRIORITY_CARE_CAP}
