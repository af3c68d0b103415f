"""The settle and reversal use cases against an in-memory store: every outcome, no database.

tests/integration/ runs the same use cases against PostgreSQL; these pin the decisions the
use cases make on each outcome the store can answer with (settlement/ports.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import msgspec
import pytest

from adapters import identity
from adapters.nonces import NonceClaim
from adapters.policy_files import load_policy_book, policy_dir
from gateway import api_models as api
from gateway.metrics import Metrics
from gateway.service import Service, Terminal
from settlement.errors import Refused, SettlementError
from settlement.registry import Membership
from tests.unit.fake_store import FakeClinic, FakeStore

PEPPER = b"unit-test-pepper"
START = dt.date(2026, 1, 1)
COUNTY = Terminal("term-C001", "C001", "terminal")


def national_id(sequence: int) -> str:
    return identity.make_id("410103", dt.date(1950, 3, 4), sequence)


def service_with(*people: tuple[str, tuple[Membership, ...]]) -> tuple[Service, FakeStore]:
    store = FakeStore(clinic_rows=[FakeClinic("C001", "County hospital", "county", "410103")])
    for raw, memberships in people:
        store.people[identity.person_key(raw, PEPPER)] = memberships
    service = Service(store, load_policy_book(policy_dir()), PEPPER, Metrics(), key_encryption_key=bytes(32))  # type: ignore[arg-type]
    asyncio.run(service.load_reference())
    return service, store


INSURED = (Membership(programme="insurance", code="resident", effective_from=START),)
INSURED_AND_AIDED = (*INSURED, Membership(programme="hardship_aid", code="destitute", effective_from=START))


def request(person: str, *amounts: int, request_id: str = "req-1", visit_type: str = "inpatient") -> api.SettleRequest:
    return api.SettleRequest(
        request_id=request_id,
        clinic_id="C001",
        person_id=person,
        visit_type=visit_type,  # type: ignore[arg-type]
        service_date=dt.date(2026, 5, 1),
        items=[
            api.ItemIn(code=f"I{n}", name=f"item {n}", category="A", amount=amount) for n, amount in enumerate(amounts)
        ],
    )


def signed(nonce: str) -> Terminal:
    return Terminal("term-C001", "C001", "terminal", NonceClaim.of("key-1", nonce, 2_000_000_000))


def test_a_settlement_is_decided_written_and_conserves_money() -> None:
    person = national_id(1)
    service, store = service_with((person, INSURED_AND_AIDED))
    answer = asyncio.run(service.settle(COUNTY, request(person, 300_000, 45_000)))
    out = answer.value
    assert isinstance(out, api.SettlementOut) and not answer.replayed
    assert out.insurance > 0 and out.hardship_aid > 0
    assert out.insurance + out.veteran_subsidy + out.hardship_aid + out.out_of_pocket == out.total == 345_000
    assert store.writes == 1
    (stored,) = store.settlements.values()
    assert stored.person == identity.mask(person) and person not in msgspec.json.encode(stored).decode()
    assert store.accumulators[(identity.person_key(person, PEPPER), 2026)][0] == out.accumulators_after


def test_a_retry_replays_the_first_answer_and_writes_nothing() -> None:
    person = national_id(2)
    service, store = service_with((person, INSURED))
    first = asyncio.run(service.settle(signed("n-1"), request(person, 10_000)))
    again = asyncio.run(service.settle(signed("n-2"), request(person, 10_000)))
    assert again.replayed and store.writes == 1
    assert msgspec.structs.replace(again.value, replayed=False) == first.value


def test_a_request_id_reused_for_another_bill_is_refused() -> None:
    person = national_id(3)
    service, store = service_with((person, INSURED))
    asyncio.run(service.settle(COUNTY, request(person, 10_000)))
    with pytest.raises(Refused) as refused:
        asyncio.run(service.settle(COUNTY, request(person, 10_001)))
    assert (refused.value.code, refused.value.field) == ("idempotency_key_reused", "request_id")
    assert store.writes == 1


def test_a_request_id_reused_for_another_patient_is_refused_not_settled() -> None:
    first, second = national_id(11), national_id(12)
    service, store = service_with((first, INSURED), (second, INSURED))
    asyncio.run(service.settle(COUNTY, request(first, 10_000)))
    with pytest.raises(Refused) as refused:
        asyncio.run(service.settle(COUNTY, request(second, 10_000)))
    assert refused.value.code == "idempotency_key_reused"
    assert store.writes == 1


def test_the_same_signed_request_again_is_a_replayed_nonce() -> None:
    person = national_id(4)
    service, _ = service_with((person, INSURED))
    asyncio.run(service.settle(signed("n-1"), request(person, 10_000)))
    with pytest.raises(Refused) as refused:
        asyncio.run(service.settle(signed("n-1"), request(person, 10_000)))
    assert refused.value.code == "nonce_reused"


def test_an_unknown_person_is_refused_and_the_nonce_is_spent_for_every_process() -> None:
    service, store = service_with()
    stranger = national_id(5)
    with pytest.raises(Refused) as refused:
        asyncio.run(service.settle(signed("n-9"), request(stranger, 10_000)))
    assert (refused.value.code, refused.value.field) == ("unknown_person", "person_id")
    assert NonceClaim.of("key-1", "n-9", 2_000_000_000).digest in store.nonces
    assert store.writes == 0


def test_a_bill_the_engine_refuses_writes_nothing_and_spends_the_nonce() -> None:
    person = national_id(6)
    service, store = service_with((person, INSURED))
    bad = msgspec.structs.replace(
        request(person, 10_000),
        items=[api.ItemIn(code="I0", name="x", category="A", amount=10_000, quantity=3, unit_price=1)],
    )
    with pytest.raises(SettlementError) as refused:
        asyncio.run(service.settle(signed("n-7"), bad))
    assert refused.value.code == "invalid_bill"
    assert store.writes == 0 and store.nonces


def test_a_lost_race_is_decided_again_on_the_accumulators_that_won() -> None:
    """Another bill of the person commits between the read and the write: the decision is made again
    under the row lock, on the accumulators as they now are, never written on the stale ones."""
    person = national_id(7)
    service, store = service_with((person, INSURED_AND_AIDED))
    store.lose_next_race = 1
    answer = asyncio.run(service.settle(COUNTY, request(person, 300_000)))
    out = answer.value
    assert isinstance(out, api.SettlementOut)
    # The winner moved aid_paid on by one fen; the settlement was decided after it.
    assert out.traces[2].policy_version and store.writes == 1
    key = identity.person_key(person, PEPPER)
    accumulators, version = store.accumulators[(key, 2026)]
    assert accumulators == out.accumulators_after and accumulators.aid_paid == out.hardship_aid + 1
    assert version == 2


def test_a_reversal_gives_back_and_replays_and_refuses_a_second() -> None:
    person = national_id(8)
    service, store = service_with((person, INSURED))
    settled = asyncio.run(service.settle(COUNTY, request(person, 200_000)))
    settlement_id = settled.value.settlement_id
    reversal = asyncio.run(service.reverse(COUNTY, settlement_id, api.ReversalRequest(request_id="rev-1")))
    again = asyncio.run(service.reverse(COUNTY, settlement_id, api.ReversalRequest(request_id="rev-1")))
    assert not reversal.replayed and again.replayed
    assert msgspec.structs.replace(again.value, replayed=False) == reversal.value
    with pytest.raises(Refused) as refused:
        asyncio.run(service.reverse(COUNTY, settlement_id, api.ReversalRequest(request_id="rev-2")))
    assert refused.value.code == "already_reversed"
    key = identity.person_key(person, PEPPER)
    assert store.accumulators[(key, 2026)][0].insurance_inpatient_paid == 0
    assert asyncio.run(service.get_settlement(COUNTY, settlement_id)).reversed


def test_another_clinics_terminal_finds_no_settlement() -> None:
    person = national_id(9)
    service, _ = service_with((person, INSURED))
    settled = asyncio.run(service.settle(COUNTY, request(person, 10_000)))
    elsewhere = Terminal("term-T001", "T001", "terminal")
    for attempt in (
        lambda: service.get_settlement(elsewhere, settled.value.settlement_id),
        lambda: service.reverse(elsewhere, settled.value.settlement_id, api.ReversalRequest(request_id="r")),
        lambda: service.get_settlement(COUNTY, uuid.uuid4()),
    ):
        with pytest.raises(Refused) as refused:
            asyncio.run(attempt())
        assert refused.value.code == "settlement_not_found"


def test_a_clinic_imported_a_moment_after_the_reference_reload_is_known_at_once() -> None:
    """The reference data was just loaded, so a miss cannot reload it for a second: the one clinic is
    looked up, and a clinic that does not exist is still refused."""
    service, store = service_with()
    store.clinic_rows.append(FakeClinic("V901", "Hilltop Village 901 Health Station", "village", "410103"))
    found = asyncio.run(service.clinic("V901"))
    assert (found.clinic_id, found.level) == ("V901", "village")
    with pytest.raises(Refused) as caught:
        asyncio.run(service.clinic("X999"))
    assert caught.value.code == "unknown_clinic"
