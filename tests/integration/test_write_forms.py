"""The settle write in each of its forms: a batch is written by the smallest form that covers it.

A batch whose settlements all update their person-year (each read its row's version) leaves out the
INSERT of new person-years, one whose settlements all create one leaves out the UPDATE, and a mixed
batch takes both (adapters/settlement_sql.py, WRITE_FORMS). Each form must write what the full statement
wrote: every settlement at the version it was decided on or not at all, counters that equal the ledger.
"""

from __future__ import annotations

import msgspec
import pytest

from adapters.check import check_invariants
from adapters.settlement_sql import WRITE_FORMS, WRITE_SETTLEMENTS, write_statement
from adapters.store import Store
from gateway import api_models as api
from gateway.app_keys import service_key
from settlement.ports import NewSettlement, VersionMoved, Written
from tests.integration.conftest import bill, register
from tests.integration.test_request_key_races import COUNTY, _decided

pytestmark = pytest.mark.integration

UPDATING, CREATING, BOTH = WRITE_FORMS[False, True, False], WRITE_FORMS[False, False, True], WRITE_SETTLEMENTS


async def _version(pool, new: NewSettlement) -> int | None:
    async with pool.acquire() as connection:
        return await connection.fetchval(
            "SELECT version FROM accumulators WHERE person_key = $1 AND year = $2", new.key.person_key, new.key.year
        )


async def test_each_form_writes_its_batch_at_the_versions_read(client, pool):
    service = client.client.app[service_key]
    store = Store(pool, batch_max=1)
    returning = [await register(client, ("insurance", "resident"), ("hardship_aid", "destitute")) for _ in range(3)]
    first_time = [await register(client, ("insurance", "resident")) for _ in range(3)]
    for person in returning:  # each has a person-year row already
        await service.settle(COUNTY, msgspec.convert(bill(person, ("A", 30_000)), api.SettleRequest))

    async def decided(person: str, amount: int) -> NewSettlement:
        return await _decided(service, store, bill(person, ("A", amount)))

    updating = [await decided(person, 20_000) for person in returning[:2]]
    assert write_statement(updating) == UPDATING
    assert await store._write_batch(updating) == [Written(), Written()]

    creating = [await decided(person, 15_000) for person in first_time[:2]]
    assert write_statement(creating) == CREATING
    assert await store._write_batch(creating) == [Written(), Written()]

    mixed = [await decided(returning[2], 12_000), await decided(first_time[2], 11_000)]
    assert write_statement(mixed) == BOTH
    assert await store._write_batch(mixed) == [Written(), Written()]

    for new in [*updating, *creating, *mixed]:
        expected = 1 if new.version is None else new.version + 1
        assert await _version(pool, new) == expected

    # Decided on a version another write has since moved: the update-only and the create-only forms write
    # nothing of such a settlement, as the full statement would not, and still write the rest of its batch.
    behind, ahead = await decided(returning[0], 9_000), await decided(returning[0], 7_000)
    assert await store._write_batch([ahead]) == [Written()]
    batch = [behind, await decided(returning[1], 6_000)]
    assert write_statement(batch) == UPDATING
    assert await store._write_batch(batch) == [VersionMoved(), Written()]
    late_creation = msgspec.structs.replace(await decided(first_time[0], 8_000), version=None)
    assert write_statement([late_creation]) == CREATING
    assert await store._write_batch([late_creation]) == [VersionMoved()]

    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []
