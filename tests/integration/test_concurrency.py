"""Races: the accumulator version and row lock keep caps, and the idempotency key keeps one settlement per request."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from adapters.check import check_invariants
from gateway.app_keys import service_key
from tests.integration.conftest import TOWNSHIP, bill, post_as_a_terminal, register, row_counts

pytestmark = pytest.mark.integration

# Default policy caps, in fen.
INSURANCE_INPATIENT_CAP = 20_000_000
PRIORITY_CARE_CAP = 1_000_000
DESTITUTE_CAP = 6_000_000


async def test_concurrent_settlements_never_pass_a_cap(client, pool):
    """50 inpatient bills of 50,000.00 at once for one person: every payer's cap runs out part-way.

    Without the version check and the row lock, transactions read the same accumulators
    and each pays as if it were first, so the sums pass the caps and the accumulators stop
    matching the ledger. All 50 read the same accumulator version, so all but one lose the
    optimistic race and are decided again under the row lock, batched or not.
    """
    store = client.client.app[service_key].store
    retries_before = store.optimistic_retries
    person = await register(
        client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"), ("hardship_aid", "destitute")
    )
    bodies = [bill(person, ("A", 5_000_000), clinic_id="T001") for _ in range(50)]
    answers = await asyncio.gather(*(post_as_a_terminal(client, "/v1/settlements", body) for body in bodies))
    # 201 settled; 200 only where a retried request had settled before its 503 went out.
    assert all(status in (201, 200) for status, _ in answers), [
        (status, result.get("code")) for status, result in answers
    ]
    results = [result for _, result in answers]
    assert len({result["settlement_id"] for result in results}) == 50

    insurance = sum(result["insurance"] for result in results)
    subsidy = sum(result["veteran_subsidy"] for result in results)
    aid = sum(result["hardship_aid"] for result in results)
    # Each cap is reached exactly: the bills are large enough to exhaust all three.
    assert insurance == INSURANCE_INPATIENT_CAP
    assert subsidy == PRIORITY_CARE_CAP
    assert aid == DESTITUTE_CAP
    assert store.optimistic_retries > retries_before, "the race never reached the row-locked path"
    for result in results:
        assert (
            result["insurance"] + result["veteran_subsidy"] + result["hardship_aid"] + result["out_of_pocket"]
            == (result["total"])
        )

    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT (counters ->> 'insurance_inpatient_paid')::bigint, (counters ->> 'subsidy_paid')::bigint,"
            " (counters ->> 'aid_paid')::bigint FROM accumulators a"
            " JOIN settlements s USING (person_key) WHERE s.settlement_id = $1::uuid AND a.year = 2026",
            results[0]["settlement_id"],
        )
        assert tuple(row) == (insurance, subsidy, aid)
        assert await check_invariants(connection) == []


async def test_duplicate_storm_settles_once(client, pool):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "low_income"))
    body = bill(person, ("A", 800_000), ("B", 120_000), clinic_id="T001")
    before = await row_counts(pool)
    answers = await asyncio.gather(*(post_as_a_terminal(client, "/v1/settlements", body) for _ in range(100)))
    results = [result for _, result in answers]
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(201) == 1 and statuses.count(200) == 99, statuses

    ids = {result["settlement_id"] for result in results}
    assert len(ids) == 1
    first = next(result for result in results if not result["replayed"])
    for result in results:
        assert {**result, "replayed": False} == first
    after = await row_counts(pool)
    assert after["settlements"] == before["settlements"] + 1
    assert after["ledger_entries"] == before["ledger_entries"] + 5

    changed = {**body, "items": [{**body["items"][0], "amount": 800_001}, body["items"][1]]}
    response = await client.post("/v1/settlements", json=changed, headers=TOWNSHIP)
    problem = await response.json()
    assert response.status == 422 and problem["code"] == "idempotency_key_reused"
    assert await row_counts(pool) == after


async def test_concurrent_reversals_reverse_once(client, pool):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    created = await (
        await client.post("/v1/settlements", json=bill(person, ("A", 2_000_000), clinic_id="T001"), headers=TOWNSHIP)
    ).json()
    path = f"/v1/settlements/{created['settlement_id']}/reversal"
    answers = await asyncio.gather(
        *(post_as_a_terminal(client, path, {"request_id": f"rev-{uuid.uuid4().hex}"}) for _ in range(20))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * 19, answers
    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []


async def test_duplicate_reversal_storm_replays(client, pool):
    person = await register(client, ("insurance", "resident"), ("veteran_subsidy", "disabled_veteran"))
    created = await (
        await client.post("/v1/settlements", json=bill(person, ("A", 900_000), clinic_id="T001"), headers=TOWNSHIP)
    ).json()
    path = f"/v1/settlements/{created['settlement_id']}/reversal"
    body = {"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billed twice"}
    answers = await asyncio.gather(*(post_as_a_terminal(client, path, body) for _ in range(20)))
    results = [result for _, result in answers]
    assert sorted(status for status, _ in answers) == [200] * 19 + [201], results
    assert len({result["reversal_id"] for result in results}) == 1
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM reversals WHERE settlement_id = $1::uuid", created["settlement_id"]
            )
            == 1
        )


async def test_any_update_of_an_accumulator_bumps_its_version(client, pool):
    """A writer that forgets the version (an old replica mid-rollout, a manual fix) still invalidates
    every settlement computed on the totals before it."""
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements", json=bill(person, ("A", 100_000), clinic_id="T001"), headers=TOWNSHIP
    )
    assert response.status == 201
    settlement_id = (await response.json())["settlement_id"]
    async with pool.acquire() as connection:
        key = await connection.fetchval(
            "SELECT person_key FROM settlements WHERE settlement_id = $1::uuid", settlement_id
        )
        before = await connection.fetchval("SELECT version FROM accumulators WHERE person_key = $1", key)
        await connection.execute("UPDATE accumulators SET updated_at = now() WHERE person_key = $1", key)
        after = await connection.fetchval("SELECT version FROM accumulators WHERE person_key = $1", key)
    assert after == before + 1
