"""One request id, two patients, two gateway processes at the same instant: the database settles one.

A terminal that reuses a request id for another patient is refused by the read when the first
settlement has committed. These tests make the two requests overlap on purpose, so only the
database's request keys can refuse the second: for a settlement, the first is held inside its
row-locked transaction, written but not committed, while the second writes; for reversals, both
stall after taking their locks, so both have read "no reversal of this id" before either writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import msgspec
import pytest

from adapters.faults import Fault, Faults
from adapters.store import Store
from gateway import api_models as api
from gateway.app_keys import service_key
from gateway.metrics import Metrics
from gateway.service import Service, Terminal, request_hash
from settlement.decision import decide
from settlement.errors import Refused
from settlement.ports import DuplicateRequest, NewSettlement, PersonSnapshot, SettleKey, Written
from tests.integration.conftest import KEY_ENCRYPTION_KEY, PEPPER, bill, register

pytestmark = pytest.mark.integration
COUNTY = Terminal("term-C001", "C001", "terminal")


async def _decided(service: Service, store: Store, body: dict[str, object]) -> NewSettlement:
    """The settlement ``body`` would write, decided on what ``store`` reads now."""
    request = msgspec.convert(body, api.SettleRequest)
    clinic, bill_, policy, catalogue, person_key, masked = await service._prepare_bill(COUNTY, request)
    key = SettleKey(
        person_key=person_key, year=bill_.service_date.year, terminal_id="term-C001", request_id=request.request_id
    )
    found = await store.read_for_settle(key)
    assert isinstance(found, PersonSnapshot), found
    return NewSettlement(
        key=key,
        settlement_id=uuid.uuid4(),
        clinic_id=clinic.clinic_id,
        person=masked,
        items=bill_.items,
        decision=decide(bill_, policy, found.memberships, found.counters, catalogue),
        request_hash=request_hash(PEPPER, "settle", request),
        booked_on=dt.date.today(),
        created_at=dt.datetime.now(dt.UTC),
        version=found.version,
    )


async def _count(pool, table: str, request_id: str) -> int:
    async with pool.acquire() as connection:
        return await connection.fetchval(
            f"SELECT count(*) FROM {table} WHERE terminal_id = 'term-C001' AND request_id = $1", request_id
        )


async def test_a_request_id_written_for_one_patient_blocks_it_for_another_until_refused(client, pool):
    service = client.client.app[service_key]
    first, second = await register(client, ("insurance", "resident")), await register(client, ("insurance", "resident"))
    request_id = f"req-{uuid.uuid4().hex}"
    one, other = Store(pool, batch_max=1), Store(pool, batch_max=1)  # two gateway processes
    new_first = await _decided(service, one, bill(first, ("A", 10_000), request_id=request_id))
    new_second = await _decided(service, other, bill(second, ("A", 20_000), request_id=request_id))
    async with one.locked_person(new_first.key) as locked:  # the first, in its row-locked retry
        new_first = msgspec.structs.replace(new_first, version=locked.snapshot.version)
        assert isinstance(await locked.write(new_first), Written)
        # The other process writes the other patient's bill under the same id: it must wait on the key.
        racing = asyncio.create_task(other.write_settlement(new_second))
        done, _ = await asyncio.wait({racing}, timeout=0.5)
        assert not done, "a second settlement of one request id did not wait for the first"
    assert isinstance(await racing, DuplicateRequest)
    assert await _count(pool, "settlements", request_id) == 1


async def test_one_reversal_request_id_reverses_one_settlement_however_the_requests_overlap(client, pool):
    first, second = await register(client, ("insurance", "resident")), await register(client, ("insurance", "resident"))
    service = client.client.app[service_key]
    settled = [
        await service.settle(COUNTY, msgspec.convert(bill(person, ("A", 10_000)), api.SettleRequest))
        for person in (first, second)
    ]
    stalled = []
    for _ in range(2):  # two gateway processes, each stalling after its locks
        store = Store(pool, batch_max=1, faults=Faults(armed={"reverse.after_lock": Fault("stall", 0.5)}))
        process = Service(store, service.policies, PEPPER, Metrics(), key_encryption_key=KEY_ENCRYPTION_KEY)
        await process.load_reference()
        stalled.append(process)
    request = api.ReversalRequest(request_id=f"rev-{uuid.uuid4().hex}", reason="overlap")
    results = await asyncio.gather(
        *(
            process.reverse(COUNTY, answer.value.settlement_id, request)
            for process, answer in zip(stalled, settled, strict=True)
        ),
        return_exceptions=True,
    )
    assert await _count(pool, "reversals", request.request_id) == 1
    refused = [result for result in results if isinstance(result, Refused)]
    assert [result.code for result in refused] == ["idempotency_key_reused"], results
