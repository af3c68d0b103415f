"""The settlement row is the request's idempotency record: it never ages out, and a request id never settles twice."""

from __future__ import annotations

import pytest

from tests.integration.conftest import TOWNSHIP, bill, register, row_counts

pytestmark = pytest.mark.integration


async def test_a_retry_replays_the_first_answer_from_the_settlement_row(client, pool):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "low_income"))
    body = bill(person, ("A", 40_000), ("B", 5_000), clinic_id="T001", visit_type="outpatient")
    first = await client.post("/v1/settlements", json=body, headers=TOWNSHIP)
    assert first.status == 201
    answer = await first.json()
    before = await row_counts(pool)
    again = await client.post("/v1/settlements", json=body, headers=TOWNSHIP)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert {**(await again.json()), "replayed": False} == answer
    assert await row_counts(pool) == before


async def test_a_settlement_stored_without_its_fingerprint_is_refused_not_settled_again(client, pool):
    """Rows migrated from before 0010 whose idempotency record had aged out have no fingerprint: a retry
    cannot be told from a reuse of the id, so it is refused (409) and nothing is written."""
    person = await register(client, ("insurance", "resident"))
    body = bill(person, ("A", 20_000), clinic_id="T001", visit_type="outpatient")
    assert (await client.post("/v1/settlements", json=body, headers=TOWNSHIP)).status == 201
    async with pool.acquire() as connection:
        await connection.execute("ALTER TABLE settlements DISABLE TRIGGER settlements_append_only")
        try:
            await connection.execute(
                "UPDATE settlements SET request_hash = NULL WHERE terminal_id = 'term-T001' AND request_id = $1",
                body["request_id"],
            )
        finally:
            await connection.execute("ALTER TABLE settlements ENABLE TRIGGER settlements_append_only")
    before = await row_counts(pool)
    response = await client.post("/v1/settlements", json=body, headers=TOWNSHIP)
    problem = await response.json()
    assert (response.status, problem["code"]) == (409, "request_already_settled")
    assert await row_counts(pool) == before


async def test_a_request_id_reused_for_another_patient_is_refused_and_writes_nothing(client, pool):
    first = await register(client, ("insurance", "resident"))
    second = await register(client, ("insurance", "resident"))
    body = bill(first, ("A", 30_000), clinic_id="T001", visit_type="outpatient")
    assert (await client.post("/v1/settlements", json=body, headers=TOWNSHIP)).status == 201
    before = await row_counts(pool)
    reused = {**body, "person_id": second}
    response = await client.post("/v1/settlements", json=reused, headers=TOWNSHIP)
    problem = await response.json()
    assert (response.status, problem["code"], problem["field"]) == (422, "idempotency_key_reused", "request_id")
    assert await row_counts(pool) == before
