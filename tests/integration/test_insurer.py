"""Beside the insurer's core (docs/insurer.md), against the bundled simulator over real HTTP on 127.0.0.1.

The gateway runs policies/examples/beside-the-insurer (insurance and critical illness paid by the insurer)
with the insurer's timeout cut to 400 ms, so a fault bites quickly; the simulator pays those funds with the
same rules. Every fault test ends with both sides agreeing, settlement by settlement (``agree``): what the
insurer holds in force is exactly what this gateway booked, to the fen, and nothing is left open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from adapters import db, insurer_messages
from adapters.insurer.simulator import Delay, Faults, FaultScope, SimulatorServer, start_simulator
from adapters.policy_files import load_policy_book
from gateway import api_models as api
from gateway.app_keys import service_key
from gateway.insurer import visit_of
from gateway.service import Terminal, china_today, request_hash
from settlement.decision import decide
from settlement.models import InsurerReference
from settlement.ports import AnswerGone, NewSettlement, PersonSnapshot, SettleKey, VersionMoved, Written
from tests.integration.conftest import ADMIN, COUNTY, SignedClient, bill, fresh_national_id, own_gateway
from tests.integration.fault_tally import Tally, settle_up

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BESIDE = REPO / "policies" / "examples" / "beside-the-insurer" / "beside-the-insurer-2026.toml"
Y = 100
# The insurer's timeout here, cut from the example's 3 s so that the faults below cost little time, but not
# so short that a loaded machine (the simulator, the gateway and the test share one event loop) passes it on
# an ordinary call. A delayed answer is DELAY_MS late: three timeouts, so it still comes after the reversal.
TIMEOUT_MS = 1_000
DELAY_MS = 3 * TIMEOUT_MS


def fast_policy(folder: Path, timeout_ms: int = TIMEOUT_MS) -> Path:
    """The example policy with the insurer's timeout cut to ``timeout_ms`` (connecting stays at 500 ms)."""
    text = BESIDE.read_text(encoding="utf-8")
    text = text.replace("timeout_ms = 3000", f"timeout_ms = {timeout_ms}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BESIDE.name).write_text(text, encoding="utf-8")
    return folder


class County:
    def __init__(self, client: SignedClient, pool: asyncpg.Pool, insurer: SimulatorServer) -> None:
        self.client = client
        self.pool = pool
        self.insurer = insurer
        # Every settle request the terminal sent and what it saw, for the counts (fault_tally.settle_up).
        self.tally = Tally("beside the insurer's core")

    @property
    def service(self) -> Any:
        return self.client.client.server.app[service_key]

    async def register(self, *programmes: tuple[str, str]) -> str:
        national_id = fresh_national_id()
        memberships = [{"programme": p, "code": c, "effective_from": "2026-01-01"} for p, c in programmes]
        response = await self.client.post(
            "/v1/people", json={"person_id": national_id, "memberships": memberships}, headers=ADMIN
        )
        assert response.status == 201, await response.text()
        return national_id

    async def settle(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
        self.tally.sent("term-C001", body)
        response = await self.client.post("/v1/settlements", json=body, headers=COUNTY)
        answer = await response.json()
        self.tally.answered(response.status, answer)
        return response.status, answer, response.headers

    async def faults(self, **faults: Any) -> None:
        await self.insurer.set_faults(msgspec.convert(faults, Faults))

    async def agree(self) -> None:
        """Both sides agree, nothing the terminal saw acknowledged is lost, nothing is counted twice, no 500."""
        await self.faults()
        in_force = await both_sides_agree(self.pool, self.insurer)
        outcome = await settle_up(self.pool, self.tally)
        print(f"[{self.tally.scenario}] in force at the insurer {in_force}, orphans 0")
        assert outcome.lost == [] and outcome.double_counted == [] and outcome.violations == []
        assert self.tally.internal_errors == 0
        # And the day's three-way reconciliation (tests/integration/test_insurer_reconciliation.py) finds nothing.
        response = await self.client.post(
            "/v1/finance/reconciliation/insurer",
            json={"day": str(china_today())},
            headers={"X-Terminal-Id": "finance-1"},
        )
        report = await response.json()
        assert response.status == 200 and report["clean"] and report["discrepancies"] == [], report


async def both_sides_agree(pool: asyncpg.Pool, insurer: SimulatorServer) -> int:
    """Both sides hold the same settlements in force, each with the same split, and no message is left open.
    Returns how many settlements are in force at the insurer (none of them an orphan)."""
    state = insurer.simulator.state()
    in_force = {s.msgid: s.paid_by_fund_type for s in state.settlements if s.state == "settled"}
    async with pool.acquire() as connection:
        open_messages = await connection.fetch(
            "SELECT message_id, state FROM insurer_messages"
            " WHERE state IN ('sent', 'answered', 'reversing', 'cancelling')"
        )
        booked = await connection.fetch(
            """SELECT m.message_id, s.insurance, s.other_funds FROM insurer_messages m
               JOIN settlements s ON s.person_key = m.person_key AND s.settlement_id = m.settlement_id
               WHERE m.kind = 'settle' AND m.state = 'committed' AND s.reversal_id IS NULL"""
        )
    assert open_messages == []
    ours = {
        row["message_id"]: {
            fund_type: amount
            for fund_type, amount in (
                ("390100", row["insurance"]),
                ("390200", msgspec.json.decode(row["other_funds"]).get("critical_illness", 0)),
            )
            if amount
        }
        for row in booked
    }
    theirs = {msgid: {t: a for t, a in paid.items() if a} for msgid, paid in in_force.items()}
    assert ours == theirs
    return len(theirs)


@pytest.fixture(scope="module")
async def county(database_url: str, settings: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[County]:
    folder = fast_policy(tmp_path_factory.mktemp("beside"))
    async with (
        await start_simulator(load_policy_book(folder)) as insurer,
        own_gateway(
            database_url, settings, policy_dir=folder, insurer_url=insurer.url, insurer_breaker_seconds=1.0
        ) as (client, pool, _),
    ):
        yield County(client, pool, insurer)


def referred(national_id: str, *items: tuple[str, int], request_id: str | None = None) -> dict[str, Any]:
    return bill(national_id, *items, request_id=request_id) | {"referral": True}


def paid(answer: dict[str, Any]) -> dict[str, int]:
    return {payer["fund"]: payer["amount"] for payer in answer["payers"]}


async def test_the_worked_example_through_the_insurer_gives_the_local_chains_amounts(county: County) -> None:
    # DESIGN Part 2, example 3, settled by the three-tier chain locally in tests/integration/test_three_tier.py:
    # insurance 200,000.00 and critical illness 135,125.00 (the insurer's), aid 48,656.25, tilted 3,109.38,
    # out of pocket 13,109.37.
    person = await county.register(("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    status, answer, _ = await county.settle(referred(person, ("A", 400_000 * Y)))
    assert status == 201, answer
    assert paid(answer) == {
        "insurance": 200_000 * Y,
        "critical_illness": 135_125 * Y,
        "hardship_aid": 48_656_25,
        "tilted_aid": 3_109_38,
        "veteran_subsidy": 0,
        "charity": 0,
    }
    assert answer["out_of_pocket"] == 13_109_37
    remote = [payer for payer in answer["payers"] if payer["trace"]["remote"]]
    assert [payer["fund"] for payer in remote] == ["insurance", "critical_illness"]
    (theirs,) = [s for s in county.insurer.simulator.state().settlements if s.state == "settled"]
    assert theirs.paid_by_fund_type == {"390100": 200_000 * Y, "390200": 135_125 * Y}
    await county.agree()


async def test_a_quote_asks_the_insurers_pre_settle_and_records_nothing(county: County) -> None:
    person = await county.register(("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    body = referred(person, ("A", 400_000 * Y))
    before = county.insurer.simulator.state()
    response = await county.client.post("/v1/quotes", json=body, headers=COUNTY)
    assert response.status == 200, await response.text()
    quote = await response.json()
    after = county.insurer.simulator.state()
    assert after.calls.get("2303", 0) == before.calls.get("2303", 0) + 1  # the inpatient pre-settle
    assert after.settlements == before.settlements
    assert quote["warnings"] == []
    # Worked example 3 again: the insurer's 200,000.00 + 135,125.00, then the county's funds.
    assert paid(quote)["insurance"] == 200_000 * Y and paid(quote)["critical_illness"] == 135_125 * Y
    assert quote["out_of_pocket"] == 13_109_37
    # With the insurer down, the quote still answers, from the policy's rules, and says so.
    await county.faults(down=True)
    try:
        response = await county.client.post("/v1/quotes", json=body, headers=COUNTY)
        assert response.status == 200, await response.text()
        down = await response.json()
    finally:
        await county.faults()
    assert [warning["code"] for warning in down["warnings"]] == ["insurer_not_asked"]
    assert paid(down) == paid(quote)  # the rules stand for the insurer's, and agree with it here


async def test_a_person_the_insurer_need_not_see_settles_without_it(county: County) -> None:
    calls = dict(county.insurer.simulator.state().calls)
    person = await county.register(("hardship_aid", "destitute"))  # not insured
    status, answer, _ = await county.settle(referred(person, ("A", 1_000 * Y)))
    assert status == 201, answer
    assert paid(answer)["insurance"] == 0 and paid(answer)["hardship_aid"] == 1_000 * Y
    assert county.insurer.simulator.state().calls == calls


async def test_a_reversal_cancels_at_the_insurer_then_here(county: County) -> None:
    person = await county.register(("insurance", "resident"))
    status, answer, _ = await county.settle(referred(person, ("A", 10_000 * Y)))
    assert status == 201, answer
    response = await county.client.post(
        f"/v1/settlements/{answer['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billed twice"},
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()
    visit = visit_of("term-C001", answer["request_id"])
    theirs = [s for s in county.insurer.simulator.state().settlements if s.mdtrt_id == visit]
    assert [s.state for s in theirs] == ["cancelled"]
    await county.agree()


FAULTS = {
    "timeout before the insurer commits": {"delay_ms": Delay(ms=DELAY_MS, calls=1)},
    "timeout after the insurer commits": {"delay_after_commit_ms": Delay(ms=DELAY_MS, calls=1)},
    "reset before the insurer commits": {"drop_before_commit": FaultScope(calls=1)},
    "reset after the insurer commits": {"drop_after_commit": FaultScope(calls=1)},
    "a duplicate answer": {"duplicate_answer": FaultScope(calls=1)},
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_an_unknown_outcome_is_reversed_and_the_retry_settles_once(county: County, fault: str) -> None:
    person = await county.register(("insurance", "resident"), ("hardship_aid", "marginal"))
    body = referred(person, ("A", 30_000 * Y))
    if fault == "a duplicate answer":
        # A duplicate answer copies the insurer's previous answer: give it one to copy.
        other = await county.register(("insurance", "resident"))
        status, _, _ = await county.settle(referred(other, ("A", 100 * Y)))
        assert status == 201
    await county.faults(**FAULTS[fault])
    first = asyncio.create_task(county.settle(body))
    if "timeout" in fault:
        # The terminal retries while the first attempt is still at the insurer: told to wait, not settled twice.
        await asyncio.sleep(0.15)
        status, problem, headers = await county.settle(body)
        assert status == 409 and problem["code"] == "request_in_flight", problem
        assert headers["Retry-After"] == "1"
    status, problem, headers = await first
    assert status == 503 and problem["code"] == "insurer_unavailable", problem
    assert "Retry-After" in headers
    await county.faults()
    if "timeout" in fault:  # the delayed message arrives late (after the 503 came at the timeout), and is refused
        await asyncio.sleep((DELAY_MS - TIMEOUT_MS) / 1000 + 0.5)
    status, answer, _ = await county.settle(body)
    assert status == 201, answer
    # Marginal tier, county, referred, A 30,000, the person's first bill: insurance (30,000 - 600) x 0.75 =
    # 22,050.00 leaves 7,950.00; critical illness (7,950 - 7,500) x 0.65 = 292.50; aid (7,950 - 292.50 -
    # 2,000) x 0.65 = 3,677.375 -> 3,677.38; tilted 0 (3,980.12 below 10,000); out of pocket 3,980.12.
    assert paid(answer)["insurance"] == 22_050 * Y
    assert paid(answer)["critical_illness"] == 292_50
    assert paid(answer)["hardship_aid"] == 3_677_38
    assert answer["out_of_pocket"] == 3_980_12
    visit = visit_of("term-C001", body["request_id"])
    states = [s.state for s in county.insurer.simulator.state().settlements if s.mdtrt_id == visit]
    # Once in force at the insurer; an attempt it committed before the outcome was lost is cancelled.
    committed = "after" in fault or "duplicate" in fault
    assert sorted(states) == (["cancelled", "settled"] if committed else ["settled"])
    await county.agree()


async def test_the_insurer_down_fails_fast_then_recovers(county: County) -> None:
    person = await county.register(("insurance", "resident"))
    breaker = county.service.remote.breaker
    # The breaker's clock stands still while the test looks at it open (its cooldown is 1 s here, which a
    # loaded machine can spend between two requests) and moves on when the test says the cooldown is over.
    now = [time.monotonic()]
    breaker.clock = lambda: now[0]
    try:
        await county.faults(down=True)
        try:
            for _ in range(5):  # five failures in a row open the breaker
                status, problem, _ = await county.settle(referred(person, ("A", 1_000 * Y)))
                assert status == 503 and problem["code"] == "insurer_unavailable", problem
            status, problem, headers = await county.settle(referred(person, ("A", 1_000 * Y)))
            assert status == 503 and "failing" in problem["detail"]
            assert int(headers["Retry-After"]) >= 1
            ready = await county.client.get("/readyz")
            assert ready.status == 200 and (await ready.json())["insurer"] == "open"
            # Bills the insurer need not see still settle.
            uninsured = await county.register(("hardship_aid", "destitute"))
            status, _, _ = await county.settle(referred(uninsured, ("A", 500 * Y)))
            assert status == 201
        finally:
            await county.faults()
        body = referred(person, ("A", 1_000 * Y))
        for _ in range(10):  # bounded in count; each turn the cooldown passes, and one request may probe
            now[0] += breaker.cooldown
            status, answer, _ = await county.settle(body)
            if status == 201:
                break
            await asyncio.sleep(0.1)
        assert status == 201, answer
    finally:
        breaker.clock = time.monotonic
    await county.agree()


@asynccontextmanager
async def losing_the_first_commit(database_url: str, settings: Any, folder: Path) -> AsyncIterator[County]:
    """A county whose gateway loses its database connection right after the first answer from the insurer
    is recorded (the fault point ``insurer.after_answer``): nothing of that bill is booked here."""
    async with (
        await start_simulator(load_policy_book(folder)) as insurer,
        own_gateway(
            database_url, settings, policy_dir=folder, insurer_url=insurer.url, faults="insurer.after_answer=raise@1"
        ) as (client, pool, _),
    ):
        yield County(client, pool, insurer)


async def test_an_answer_never_booked_is_cancelled_by_the_sweeper(
    database_url: str, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Nothing is booked here, so the sweeper cancels the insurer's settlement; the terminal's retry then
    # settles afresh, once.
    folder = fast_policy(tmp_path_factory.mktemp("beside-lost"))
    async with losing_the_first_commit(database_url, settings, folder) as lost:
        sweeper = lost.service.sweeper
        sweeper.link_for = lambda: None  # the background sweeper waits until this test sweeps by hand
        person = await lost.register(("insurance", "resident"))
        body = referred(person, ("A", 2_000 * Y))
        status, problem, _ = await lost.settle(body)
        assert status == 503, problem
        async with lost.pool.acquire() as connection:
            assert await connection.fetchval("SELECT state FROM insurer_messages") == "answered"
        await asyncio.sleep(1 + 3 * TIMEOUT_MS / 1000)  # past the grace
        sweeper.link_for = lost.service.insurer_link
        assert await sweeper.sweep() == 1
        assert [s.state for s in lost.insurer.simulator.state().settlements] == ["cancelled"]
        status, answer, _ = await lost.settle(body)
        assert status == 201, answer
        assert answer["insurance"] == (2_000 - 600) * Y * 75 // 100
        await lost.agree()


async def test_a_retry_books_the_recorded_answer_without_settling_twice_at_the_insurer(
    database_url: str, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = fast_policy(tmp_path_factory.mktemp("beside-retry"))
    async with losing_the_first_commit(database_url, settings, folder) as county:
        insurer = county.insurer
        person = await county.register(("insurance", "resident"))
        body = referred(person, ("A", 2_000 * Y))
        status, problem, _ = await county.settle(body)
        assert status == 503, problem
        settles = insurer.simulator.state().calls.get("2304", 0)
        assert settles == 1
        status, answer, _ = await county.settle(body)
        assert status == 201, answer
        # Inpatient, county: (2,000 - 600) x 0.75 = 1,050.00 from insurance, as the insurer answered once.
        assert answer["insurance"] == 1_050 * Y
        assert insurer.simulator.state().calls.get("2304", 0) == 1
        again, replayed, _ = await county.settle(body)
        assert again == 200 and replayed["settlement_id"] == answer["settlement_id"]
        await county.agree()


async def test_the_booking_takes_the_answer_only_while_it_is_answered_and_only_with_its_settlement(
    database_url: str, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The settlement write books the insurer's answered message (WRITE_SETTLEMENTS, AccumulatorWrite.claim): it
    # flips the message to committed in the statement that writes the settlement, only while the message is
    # answered, and only with a settlement actually written; a booking rolled back leaves the answer for a retry.
    folder = fast_policy(tmp_path_factory.mktemp("beside-claim"))
    async with own_gateway(database_url, settings, policy_dir=folder) as (client, pool, url):
        county = County(client, pool, insurer=None)  # type: ignore[arg-type]  # the insurer is never called
        person = await county.register(("insurance", "resident"))
        service = county.service
        store = service.store
        log = store.insurer_log
        person_key, _ = service.person_key(person)

        async def message_in(state: str, request_id: str) -> str:
            message_id = await log.record(
                institution_code="H33042400001", person_key=person_key, kind="settle", transaction_code="2304",
                terminal_id="term-C001", request_id=request_id, visit_id="claim", clinic_id="C001",
                service_date=dt.date(2026, 5, 1),
            )  # fmt: skip
            assert await log.mark((person_key, message_id), "answered", expect=("sent",), insurer_settlement_id="S1")
            if state != "answered":
                assert await log.mark((person_key, message_id), state, expect=("answered",))
            return message_id

        async def state_of(message_id: str) -> tuple[str, uuid.UUID | None]:
            async with pool.acquire() as connection:
                row = await connection.fetchrow(
                    "SELECT state, settlement_id FROM insurer_messages WHERE message_id = $1", message_id
                )
            return row["state"], row["settlement_id"]

        async def booking(message_id: str, request_id: str) -> NewSettlement:
            """What the gateway writes to book ``message_id``: the insurer paid nothing, the local steps the rest."""
            body = bill(person, ("A", 50_000), request_id=request_id)
            request = msgspec.convert(body, api.SettleRequest)
            terminal = Terminal("term-C001", "C001", "terminal")
            clinic, bill_, policy, catalogue, _, masked = await service._prepare_bill(terminal, request)
            key = SettleKey(person_key=person_key, year=2026, terminal_id="term-C001", request_id=request_id)
            found = await store.read_for_settle(key)
            assert isinstance(found, PersonSnapshot), found
            decision = decide(bill_, policy, found.memberships, found.counters, catalogue, {})
            reference = InsurerReference(message_id=message_id, settlement_id="S1")
            return NewSettlement(
                key=key, settlement_id=uuid.uuid4(), clinic_id=clinic.clinic_id, person=masked, items=bill_.items,
                decision=msgspec.structs.replace(
                    decision, settlement=msgspec.structs.replace(decision.settlement, insurer=reference)
                ),
                request_hash=request_hash(service.pepper, "settle", request.fingerprinted()),
                booked_on=china_today(), created_at=dt.datetime.now(dt.UTC),
                version=found.version,
            )  # fmt: skip

        # Rolled back with the booking's transaction: the answer stays answered, and a retry books it.
        answered = await message_in("answered", "claim-1")
        new = await booking(answered, "claim-1")
        with pytest.raises(RuntimeError):
            async with store.locked_person(new.key) as locked:
                assert isinstance(await locked.write(new), Written)
                raise RuntimeError("the booking failed after the write")
        assert await state_of(answered) == ("answered", None)
        assert isinstance(await store.write_settlement(new), Written)
        assert await state_of(answered) == ("committed", new.settlement_id)

        # The sweeper took it first: nothing is written, and the message stays the sweeper's.
        being_cancelled = await message_in("cancelling", "claim-2")
        new = await booking(being_cancelled, "claim-2")
        assert isinstance(await store.write_settlement(new), AnswerGone)
        async with store.locked_person(new.key) as locked:
            assert isinstance(await locked.write(new), AnswerGone)
        assert await state_of(being_cancelled) == ("cancelling", None)
        assert await store.stored_settlement(request=new.key) is None

        # Written at a version that has moved since: nothing is written and the answer is not taken.
        stale = await message_in("answered", "claim-3")
        new = await booking(stale, "claim-3")
        other = await booking(await message_in("answered", "claim-4"), "claim-4")
        assert isinstance(await store.write_settlement(other), Written)
        assert isinstance(await store.write_settlement(new), VersionMoved)
        assert await state_of(stale) == ("answered", None)

        # The answer's commit does not wait for its WAL flush, and only its own: the settlement that books it,
        # and everything else on the same pooled connection, still waits.
        alone = insurer_messages.MessageLog(await db.create_pool(url, min_size=1, max_size=1))  # no reset, as served
        try:
            recorded = await alone.record(
                institution_code="H33042400001", person_key=person_key, kind="settle", transaction_code="2304",
                terminal_id="term-C001", request_id="claim-5", visit_id="claim", clinic_id="C001",
                service_date=dt.date(2026, 5, 1),
            )  # fmt: skip
            assert recorded is not None
            assert await alone.answered(insurer_messages.Answered(person_key, recorded, "S5", {"insurance": 100}))
            assert await state_of(recorded) == ("answered", None)
            async with alone.pool.acquire() as connection:
                assert await connection.fetchval("SHOW synchronous_commit") == "on"
        finally:
            await alone.pool.close()

        async with pool.acquire() as connection:  # leave nothing open for the sweeper or the invariants
            await connection.execute(
                "UPDATE insurer_messages SET state = 'cancelled' WHERE person_key = $1 AND state <> 'committed'",
                person_key,
            )
