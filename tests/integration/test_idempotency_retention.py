"""Idempotency records age out, and a request whose record has gone still never settles twice."""

from __future__ import annotations

import pytest

from tests.integration.conftest import TOWNSHIP, bill, register, row_counts
from tests.integration.test_cli import medsettle

pytestmark = pytest.mark.integration


async def test_pruned_request_is_refused_not_settled_again(client, pool, database_url):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "low_income"))
    old = bill(person, ("A", 40_000), clinic_id="T001", visit_type="outpatient")
    recent = bill(person, ("A", 20_000), clinic_id="T001", visit_type="outpatient")
    for body in (old, recent):
        assert (await client.post("/v1/settlements", json=body, headers=TOWNSHIP)).status == 201
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '8 days'"
            " WHERE terminal_id = 'term-T001' AND request_id = $1",
            old["request_id"],
        )
    result = medsettle(database_url, "idempotency", "prune")
    assert result.returncode == 0, result.stderr
    assert "deleted 1 idempotency record(s) older than 7 day(s)" in result.stdout

    before = await row_counts(pool)
    response = await client.post("/v1/settlements", json=old, headers=TOWNSHIP)
    problem = await response.json()
    assert (response.status, problem["code"]) == (409, "request_already_settled")
    assert await row_counts(pool) == before
    # The recent one still replays its first answer.
    response = await client.post("/v1/settlements", json=recent, headers=TOWNSHIP)
    assert response.status == 200 and (await response.json())["replayed"] is True
