"""Micro-batching: settlements committed together are each still all or nothing and answered right.

A gateway with batching on gets a burst that mixes everything a batch must keep
apart: many people at once, several bills for one person, a duplicate storm of one
request, a person nobody registered, and a bill the engine refuses. Each must get
the answer it would get alone, and the money must add up. The same burst also runs
through a gateway settling each bill on its own (``MEDSETTLE_SETTLE_BATCH_MAX=1``),
so both paths stay proven.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.check import check_invariants
from gateway.app import create_app, service_key
from tests.integration.conftest import TOWNSHIP, VILLAGE, SignedClient, bill, fresh_national_id, register

pytestmark = pytest.mark.integration


@pytest.fixture(params=[16, 1], ids=["batched", "alone"])
async def batching(request, database_url: str, settings: Any, client: SignedClient) -> AsyncIterator[SignedClient]:
    """A gateway settling in batches of up to 16, and one settling each bill on its own."""
    app = create_app(
        msgspec.structs.replace(settings, settle_batch_max=request.param, settle_batch_lanes=2), dsn=database_url
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield SignedClient(test_client, {key.key_id: key for key in client.by_terminal.values()})


async def test_a_mixed_burst_settles_each_bill_once_and_correctly(batching, client, pool):
    store = batching.client.app[service_key].store
    batcher = store.batcher
    people = [await register(client, ("insurance", "resident"), ("hardship_aid", "low_income")) for _ in range(30)]
    busy = await register(client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"))
    storm = bill(people[0], ("A", 50_000), clinic_id="T001", visit_type="outpatient")
    bodies = [bill(person, ("A", 80_000), ("B", 20_000), clinic_id="T001") for person in people]
    bodies += [bill(busy, ("A", 3_000_000), clinic_id="T001") for _ in range(6)]
    bodies += [storm] * 8
    bodies.append(bill(fresh_national_id(), ("A", 10_000), clinic_id="T001"))  # nobody registered
    village_inpatient = bill(people[1], ("A", 10_000), clinic_id="V001")  # villages take no inpatient bills

    async def send(body: dict[str, Any], headers: dict[str, str] = TOWNSHIP) -> tuple[int, Any]:
        response = await batching.post("/v1/settlements", json=body, headers=headers)
        return response.status, await response.json()

    before = (batcher.batches, batcher.batched) if batcher else (0, 0)
    retries_before = store.optimistic_retries
    answers = await asyncio.gather(*(send(body) for body in bodies), send(village_inpatient, VILLAGE))

    fresh, busy_answers, storm_answers, unknown, refused = (
        answers[:30],
        answers[30:36],
        answers[36:44],
        answers[44],
        answers[45],
    )
    assert [status for status, _ in fresh] == [201] * 30, fresh
    assert [status for status, _ in busy_answers] == [201] * 6, busy_answers
    assert sorted(status for status, _ in storm_answers) == [200] * 7 + [201], storm_answers
    assert len({answer["settlement_id"] for _, answer in storm_answers}) == 1
    assert unknown[0] == 422 and unknown[1]["code"] == "unknown_person"
    assert refused[0] == 422, refused
    for _, answer in fresh + busy_answers + storm_answers:
        assert (
            answer["insurance"] + answer["veteran_subsidy"] + answer["hardship_aid"] + answer["out_of_pocket"]
            == (answer["total"])
        )
    # The six bills of one person were settled one after another: the subsidy cap is shared, never doubled.
    assert sum(answer["veteran_subsidy"] for _, answer in busy_answers) <= 1_000_000

    if batcher is not None:
        batches, batched = batcher.batches - before[0], batcher.batched - before[1]
        assert batched > batches, "no batch carried more than one settlement"
        # A person's next bill waits for the batch holding their last one, so lanes never race for a row.
        assert store.optimistic_retries == retries_before
    else:  # settled alone, the six bills of one person race: the losers rerun under the row lock
        assert store.optimistic_retries > retries_before
    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []
        settled = await connection.fetchval(
            "SELECT count(*) FROM settlements WHERE request_id = ANY($1::text[])",
            [body["request_id"] for body in bodies],
        )
    assert settled == 30 + 6 + 1
