"""The insurer client against the insurer simulator over real HTTP on 127.0.0.1 (no PostgreSQL needed).

Each test starts its own simulator (in memory, on free ports) and client. The simulator's clock and the
client's stand still at ``NOW``, so a reconciliation day is known.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
import pytest

from adapters.insurer import protocol
from adapters.insurer.client import (
    InsurerClient,
    InsurerConfig,
    InsurerRefused,
    InsurerUnreachable,
    Outcome,
    OutcomeUnknown,
    SettleResult,
    Totals,
    open_client,
)
from adapters.insurer.simulator import Delay, Down, Faults, FaultScope, SimulatorServer, insurer_chain, start_simulator
from adapters.policy_files import load_policy_book
from settlement.chain import settle
from settlement.models import Bill, LineItem, PersonStatus

ROOT = Path(__file__).resolve().parents[2]
THREE_TIER = load_policy_book(ROOT / "policies" / "examples" / "three-tier")
DEFAULT = load_policy_book(ROOT / "policies")
INSTITUTION = "H41010200001"
NOW = dt.datetime(2026, 6, 30, 10, 0, tzinfo=protocol.CHINA_TIME)
DAY = NOW.date()
BASIC, CRITICAL = "390100", "390200"


def clock() -> dt.datetime:
    return NOW


def inpatient(amount_a: int, *, level: str = "county", referral: bool = True) -> Bill:
    return Bill(
        clinic_level=level,  # type: ignore[arg-type]
        visit_type="inpatient",
        service_date=DAY,
        items=(LineItem(code="A-0001", name="ward and surgery", category="A", amount=amount_a),),
        referral=referral,
    )


@dataclass
class Insurer:
    """A simulator and a client on it, the calls the client reported, and fresh message ids."""

    sim: SimulatorServer
    client: InsurerClient
    calls: list[tuple[str, Outcome]] = field(default_factory=list)
    ids: protocol.MessageIds = field(default_factory=lambda: protocol.MessageIds(INSTITUTION, first=0, last=8999))

    def msgid(self) -> str:
        return self.ids.next(NOW)

    async def settle(
        self, bill: Bill, *, psn_no: str = "P-0001", visit: str = "ZY-0001", tier: str | None = "minimum_allowance"
    ) -> tuple[str, SettleResult]:
        msgid = self.msgid()
        payload = protocol.settle_input(bill, psn_no=psn_no, mdtrt_id=visit, hardship_tier=tier)
        return msgid, await self.client.settle(msgid, payload)

    def counters(self, psn_no: str = "P-0001") -> dict[str, int]:
        return self.sim.simulator.state().counters.get(psn_no, {}).get(str(DAY.year), {})

    def settlements(self) -> list[tuple[str, str]]:
        return [(row.msgid, row.state) for row in self.sim.simulator.state().settlements]


def config(url: str, *, total_timeout: float = 10.0) -> InsurerConfig:
    return InsurerConfig(
        base_url=url,
        institution_code=INSTITUTION,
        institution_name="County People's Hospital",
        area_code="410102",
        connect_timeout=2.0,
        total_timeout=total_timeout,
    )


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = await start_simulator(THREE_TIER, clock=clock)
    yield server
    await server.close()


@pytest.fixture
async def insurer(sim: SimulatorServer) -> AsyncIterator[Insurer]:
    calls: list[tuple[str, Outcome]] = []
    async with open_client(
        config(sim.url), clock=clock, on_call=lambda infno, outcome, seconds: calls.append((infno, outcome))
    ) as client:
        yield Insurer(sim=sim, client=client, calls=calls)


# ---------------------------------------------------------------- settling and undoing


async def test_the_worked_example_pays_basic_and_critical_illness_insurance(insurer: Insurer) -> None:
    """DESIGN Part 2, three-tier example 3: inpatient, referred, minimum_allowance, A 400,000 at a county
    hospital: insurance 299,550 capped at 200,000.00; critical illness 135,125.00."""
    bill = inpatient(40_000_000)
    _, result = await insurer.settle(bill)
    assert result.paid_by_fund_type == {BASIC: 20_000_000, CRITICAL: 13_512_500}
    assert (result.total, result.fund_paid, result.psn_cash_pay) == (40_000_000, 33_512_500, 6_487_500)
    assert result.buckets.eligible == 40_000_000
    assert result.insurer_settlement_id
    # The same amounts as the whole chain settled locally: the insurer's steps are its first two.
    local = settle(bill, PersonStatus(insured=True, hardship_tier="minimum_allowance"), {}, THREE_TIER.latest())
    assert [local.paid("insurance"), local.paid("critical_illness")] == [20_000_000, 13_512_500]
    assert insurer.calls == [("9001", "ok"), ("2304", "ok")]


async def test_settle_then_cancel_gives_the_counters_back(insurer: Insurer) -> None:
    msgid, first = await insurer.settle(inpatient(3_000_000))
    assert insurer.counters()["insurance_inpatient_paid"] == first.paid_by_fund_type[BASIC] > 0
    assert first.insurer_settlement_id is not None
    cancelled = await insurer.client.cancel(
        insurer.msgid(),
        visit_type="inpatient",
        insurer_settlement_id=first.insurer_settlement_id,
        mdtrt_id="ZY-0001",
        psn_no="P-0001",
    )
    assert (cancelled.already, cancelled.fund_paid) == (False, first.fund_paid)
    assert set(insurer.counters().values()) == {0}
    assert insurer.settlements() == [(msgid, "cancelled")]
    # Given back exactly: the same visit settles again to the same amounts, as for a first bill of the year.
    _, again = await insurer.settle(inpatient(3_000_000))
    assert again.paid_by_fund_type == first.paid_by_fund_type


async def test_cancelling_twice_is_a_success_that_says_so(insurer: Insurer) -> None:
    _, settled = await insurer.settle(inpatient(3_000_000))
    assert settled.insurer_settlement_id is not None
    ids = {"insurer_settlement_id": settled.insurer_settlement_id, "mdtrt_id": "ZY-0001", "psn_no": "P-0001"}
    first = await insurer.client.cancel(insurer.msgid(), visit_type="inpatient", **ids)
    second = await insurer.client.cancel(insurer.msgid(), visit_type="inpatient", **ids)
    assert (first.already, second.already) == (False, True)
    assert set(insurer.counters().values()) == {0}
    with pytest.raises(InsurerRefused, match="cancel it by its own code"):
        await insurer.client.cancel(insurer.msgid(), visit_type="outpatient", **ids)


async def test_a_reversal_undoes_a_settle_once_and_answers_found_false_after(insurer: Insurer) -> None:
    msgid, _ = await insurer.settle(inpatient(3_000_000))
    first = await insurer.client.reverse(insurer.msgid(), omsgid=msgid, oinfno="2304", psn_no="P-0001")
    again = await insurer.client.reverse(insurer.msgid(), omsgid=msgid, oinfno="2304", psn_no="P-0001")
    assert (first.found, again.found) == (True, False)
    assert set(insurer.counters().values()) == {0}
    assert insurer.settlements() == [(msgid, "cancelled")]


async def test_a_message_reversed_before_it_arrives_is_refused_when_it_does(insurer: Insurer) -> None:
    late = insurer.msgid()
    reversal = await insurer.client.reverse(insurer.msgid(), omsgid=late, oinfno="2304", psn_no="P-0001")
    assert reversal.found is False
    payload = protocol.settle_input(inpatient(3_000_000), psn_no="P-0001", mdtrt_id="ZY-0001")
    with pytest.raises(OutcomeUnknown, match="reversed before it arrived"):
        await insurer.client.settle(late, payload)
    assert insurer.settlements() == []
    assert insurer.sim.simulator.state().reversed_before_arrival == (late,)


async def test_a_msgid_settles_once_and_a_visit_has_one_settlement_in_force(insurer: Insurer) -> None:
    msgid, _ = await insurer.settle(inpatient(3_000_000), visit="ZY-0001")
    payload = protocol.settle_input(inpatient(3_000_000), psn_no="P-0001", mdtrt_id="ZY-0002")
    with pytest.raises(OutcomeUnknown, match="taken already"):
        await insurer.client.settle(msgid, payload)
    with pytest.raises(InsurerRefused) as refused:
        await insurer.settle(inpatient(3_000_000), visit="ZY-0001")
    assert refused.value.infcode == protocol.VISIT_ALREADY_SETTLED
    assert insurer.settlements() == [(msgid, "settled")]


async def test_pre_settle_changes_nothing(insurer: Insurer) -> None:
    payload = protocol.settle_input(
        inpatient(40_000_000), psn_no="P-0001", mdtrt_id="ZY-0001", hardship_tier="marginal"
    )
    quote = await insurer.client.pre_settle(insurer.msgid(), payload)
    assert quote.insurer_settlement_id is None
    assert insurer.settlements() == []
    assert insurer.counters() == {}
    settled = await insurer.client.settle(insurer.msgid(), payload)
    assert settled.paid_by_fund_type == quote.paid_by_fund_type
    assert insurer.calls[-2:] == [("2303", "ok"), ("2304", "ok")]


async def test_a_national_id_is_never_sent_as_the_person_number(insurer: Insurer) -> None:
    national_id = "410102196003020026"
    with pytest.raises(ValueError, match="pseudonym") as refused:
        await insurer.client.cancel(
            insurer.msgid(), visit_type="inpatient", insurer_settlement_id="S1", mdtrt_id="V1", psn_no=national_id
        )
    assert national_id not in str(refused.value)
    assert insurer.calls == []  # not even a sign-in


async def test_a_bill_the_rules_refuse_is_refused_and_nothing_is_done(insurer: Insurer) -> None:
    with pytest.raises(InsurerRefused, match="village clinics offer no inpatient care") as refused:
        await insurer.settle(inpatient(100_000, level="village"))
    assert refused.value.infcode == protocol.REFUSED
    with pytest.raises(InsurerRefused, match="no rule in policy"):
        await insurer.settle(inpatient(100_000), tier="not_a_tier")
    assert insurer.settlements() == []
    assert ("2304", "refused") in insurer.calls


async def test_concurrent_settles_for_one_person_never_pass_the_cap(insurer: Insurer) -> None:
    """20 admissions at once, each (30,000 - 600) x 0.75 = 22,050 of insurance: the cap (200,000) holds."""
    results = await asyncio.gather(
        *(insurer.settle(inpatient(3_000_000), visit=f"ZY-{index:04d}") for index in range(20))
    )
    paid = [result.paid_by_fund_type[BASIC] for _, result in results]
    assert sum(paid) == 20_000_000
    assert sorted(set(paid)) == [0, 155_000, 2_205_000]  # 9 whole, one cut to the cap, the rest nothing
    assert insurer.counters()["insurance_inpatient_paid"] == 20_000_000


async def test_a_sign_no_that_expired_is_renewed_and_the_call_resent(insurer: Insurer) -> None:
    await insurer.settle(inpatient(100_000), visit="ZY-0001")
    first_sign_no = insurer.client.sign_no
    async with aiohttp.ClientSession() as session, session.post(f"{insurer.sim.url}/sim/expire-sign-ins") as answer:
        assert answer.status == 204
    msgid, _ = await insurer.settle(inpatient(100_000), visit="ZY-0002")
    assert insurer.client.sign_no != first_sign_no
    assert insurer.calls[-3:] == [("2304", "refused"), ("9001", "ok"), ("2304", "ok")]
    assert insurer.settlements()[-1] == (msgid, "settled")


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("faults", "error", "committed"),
    [
        (Faults(drop_before_commit=FaultScope(infno="2304")), OutcomeUnknown, False),
        (Faults(drop_after_commit=FaultScope(infno="2304")), OutcomeUnknown, True),
        (Faults(duplicate_answer=FaultScope(infno="2304")), OutcomeUnknown, True),
        (Faults(down=True), InsurerUnreachable, False),
    ],
    ids=["drop_before_commit", "drop_after_commit", "duplicate_answer", "down"],
)
async def test_each_fault_gives_the_client_what_it_knows_and_a_reversal_settles_the_doubt(
    insurer: Insurer, faults: Faults, error: type[Exception], committed: bool
) -> None:
    await insurer.client.sign_in()
    await insurer.sim.set_faults(faults)
    payload = protocol.settle_input(
        inpatient(3_000_000), psn_no="P-0001", mdtrt_id="ZY-0001", hardship_tier="minimum_allowance"
    )
    msgid = insurer.msgid()
    with pytest.raises(error):
        await insurer.client.settle(msgid, payload)
    await insurer.sim.set_faults(Faults())
    assert insurer.settlements() == ([(msgid, "settled")] if committed else [])
    reversal = await insurer.client.reverse(insurer.msgid(), omsgid=msgid, oinfno="2304", psn_no="P-0001")
    assert reversal.found is committed
    assert set(insurer.counters().values()) <= {0}
    assert insurer.settlements() == ([(msgid, "cancelled")] if committed else [])
    # The visit is free again and the person's year untouched: a new attempt settles as a first bill.
    _, result = await insurer.settle(inpatient(3_000_000))
    assert result.paid_by_fund_type == {BASIC: 2_205_000, CRITICAL: 29_250}  # (7,950 - 7,500) x 0.65


@pytest.mark.parametrize("answer_id", ["platform", "echo"])
async def test_a_duplicate_answer_is_caught_whether_the_platform_echoes_our_id_or_not(answer_id: str) -> None:
    """The duplicate copies the answer to another visit's settle (not a sign-in's, as above): under "echo"
    its id gives it away, under "platform" the visit it names."""
    async with (
        await start_simulator(THREE_TIER, clock=clock, answer_id=answer_id) as sim,  # type: ignore[arg-type]
        open_client(msgspec.structs.replace(config(sim.url), answer_id=answer_id), clock=clock) as client,
    ):
        insurer = Insurer(sim=sim, client=client)
        first, _ = await insurer.settle(inpatient(100_000), visit="ZY-0001")
        await sim.set_faults(Faults(duplicate_answer=FaultScope(calls=1)))
        with pytest.raises(OutcomeUnknown):
            await insurer.settle(inpatient(100_000), visit="ZY-0002")
        msgid = insurer.settlements()[-1][0]
        reversal = await client.reverse(insurer.msgid(), omsgid=msgid, oinfno="2304", psn_no="P-0001")
        assert reversal.found
        assert insurer.settlements() == [(first, "settled"), (msgid, "cancelled")]
        if answer_id == "echo":
            assert reversal.receipt_id == reversal.msgid
        else:
            assert protocol.RECEIPT_ID.fullmatch(reversal.receipt_id)


async def test_a_timeout_before_the_commit_is_unknown_and_the_reversal_beats_the_late_message(
    sim: SimulatorServer,
) -> None:
    """The client gives up while the insurer still holds the message; its reversal arrives first, so the
    message, when the insurer gets to it, is refused: no settlement is left behind."""
    calls: list[tuple[str, Outcome]] = []
    async with open_client(
        config(sim.url, total_timeout=1.0),  # the sign-in and the reversal must fit in it on a loaded machine
        clock=clock,
        on_call=lambda infno, outcome, _: calls.append((infno, outcome)),
    ) as client:
        insurer = Insurer(sim=sim, client=client, calls=calls)
        await client.sign_in()
        await sim.set_faults(Faults(delay_ms=Delay(ms=3_000, calls=1, infno="2304")))
        msgid = insurer.msgid()
        with pytest.raises(OutcomeUnknown, match="Timeout"):
            await client.settle(msgid, protocol.settle_input(inpatient(3_000_000), psn_no="P-0001", mdtrt_id="V1"))
        reversal = await client.reverse(insurer.msgid(), omsgid=msgid, oinfno="2304", psn_no="P-0001")
        assert reversal.found is False
        for _ in range(200):  # until the late message has been handled (at most 10 s)
            if sim.simulator.state().calls.get("2304"):
                break
            await asyncio.sleep(0.05)
        state = sim.simulator.state()
        assert state.calls.get("2304") == 1
        assert state.settlements == ()
        assert state.reversed_before_arrival == (msgid,)
        assert calls[1] == ("2304", "unknown")


async def test_faults_switch_over_http_for_a_number_of_calls_of_one_transaction(insurer: Insurer) -> None:
    control = insurer.sim.control_url
    async with aiohttp.ClientSession() as session:
        body = {"drop_after_commit": {"calls": 1, "infno": "2304"}, "delay_ms": 5}
        async with session.post(f"{control}/sim/faults", json=body) as answer:
            assert answer.status == 200
            assert await answer.json() == {
                **msgspec.to_builtins(Faults()),
                "drop_after_commit": {"calls": 1, "infno": "2304"},
                "delay_ms": 5,
            }
        with pytest.raises(OutcomeUnknown):
            await insurer.settle(inpatient(100_000), visit="ZY-0001")
        _, result = await insurer.settle(inpatient(100_000), visit="ZY-0002")  # the one call is used up
        assert result.insurer_settlement_id is not None
        async with session.get(f"{control}/sim/faults") as answer:
            assert (await answer.json())["drop_after_commit"] is False
        async with session.post(f"{control}/sim/faults", json={"drop_after_commit": "yes"}) as answer:
            assert answer.status == 422
            assert answer.content_type == "application/problem+json"
            problem = await answer.json()
            assert (problem["code"], problem["field"]) == ("invalid_faults", "$.drop_after_commit")
    assert [row[1] for row in insurer.settlements()] == ["settled", "settled"]  # the dropped one committed


async def test_down_refuses_connections_and_comes_back_by_itself(insurer: Insurer) -> None:
    await insurer.client.sign_in()
    # Down long enough that the failing call and the control port's answer both come while it is down.
    await insurer.sim.set_faults(Faults(down=Down(seconds=2.0)))
    with pytest.raises(InsurerUnreachable):
        await insurer.settle(inpatient(100_000))
    async with aiohttp.ClientSession() as session, session.get(f"{insurer.sim.control_url}/sim/faults") as answer:
        assert (await answer.json())["down"] == {"seconds": 2.0}  # the control port stays up
    for _ in range(200):  # back within 10 s
        try:
            _, result = await insurer.settle(inpatient(100_000))
            break
        except InsurerUnreachable:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the simulator did not come back up")
    assert result.insurer_settlement_id is not None
    assert insurer.sim.faults.down is False


async def test_an_insurer_that_was_never_there_is_unreachable() -> None:
    server = await start_simulator(THREE_TIER, clock=clock, control_port=None)
    url = server.url
    await server.close()  # the port is free now: nothing listens
    async with open_client(config(url), clock=clock) as client:
        with pytest.raises(InsurerUnreachable, match="could not sign in first"):
            await client.settle(
                protocol.message_id(INSTITUTION, NOW, 1),
                protocol.settle_input(inpatient(100_000), psn_no="P-0001", mdtrt_id="V1"),
            )


# ---------------------------------------------------------------- reconciliation


async def test_totals_and_detail_list_what_was_settled_on_the_day(insurer: Insurer) -> None:
    kept_id, kept = await insurer.settle(inpatient(3_000_000), visit="ZY-0001")
    gone_id, gone = await insurer.settle(inpatient(2_000_000), psn_no="P-0002", visit="ZY-0002")
    assert gone.insurer_settlement_id is not None
    cancel_id = insurer.msgid()
    await insurer.client.cancel(
        cancel_id,
        visit_type="inpatient",
        insurer_settlement_id=gone.insurer_settlement_id,
        mdtrt_id="ZY-0002",
        psn_no="P-0002",
    )
    ours = Totals(count=1, total=kept.total, fund_paid=kept.fund_paid, by_fund_type=kept.paid_by_fund_type)
    balanced = await insurer.client.totals(insurer.msgid(), first_day=DAY, last_day=DAY, ours=ours)
    assert balanced.balanced, balanced.description
    assert balanced.insurer == Totals(
        count=1, total=3_000_000, fund_paid=kept.fund_paid, by_fund_type={BASIC: 2_205_000, CRITICAL: 29_250}
    )
    also_gone = msgspec.structs.replace(ours, count=2, total=kept.total + gone.total)
    unbalanced = await insurer.client.totals(insurer.msgid(), first_day=DAY, last_day=DAY, ours=also_gone)
    assert not unbalanced.balanced
    assert "count: ours 1, yours 2" in unbalanced.description

    rows = await insurer.client.detail(insurer.msgid(), first_day=DAY, last_day=DAY)
    assert [(row.msgid, row.state, row.cancel_msgid) for row in rows] == [
        (kept_id, "settled", None),
        (gone_id, "cancelled", cancel_id),
    ]
    assert rows[1].cancel_infno == "2305"
    assert rows[1].paid_by_fund_type == gone.paid_by_fund_type
    assert (
        await insurer.client.detail(
            insurer.msgid(), first_day=DAY - dt.timedelta(days=1), last_day=DAY - dt.timedelta(days=1)
        )
        == ()
    )


# ---------------------------------------------------------------- the insurer's chain


def test_the_insurer_chain_keeps_its_steps_and_renames_their_places() -> None:
    three_tier = THREE_TIER.latest()
    default = insurer_chain(three_tier)
    assert [step.fund.code for step in default.steps] == ["insurance", "critical_illness"]
    assert default.named_steps == (0, None, None)
    assert set(default.counters) == {
        "outpatient_deductible_used",
        "insurance_outpatient_paid",
        "insurance_inpatient_paid",
        "critical_illness_base",
        "critical_illness_paid",
    }
    with_aid = insurer_chain(three_tier, ["insurance", "hardship_aid"])
    assert with_aid.named_steps == (0, None, 1)
    assert [step.fund.code for step in insurer_chain(DEFAULT.latest()).steps] == ["insurance"]


async def test_under_the_default_policy_the_insurer_pays_basic_insurance_alone() -> None:
    async with (
        await start_simulator(DEFAULT, clock=clock) as server,
        open_client(config(server.url), clock=clock) as client,
    ):
        outpatient = Bill(
            clinic_level="village",
            visit_type="outpatient",
            service_date=DAY,
            items=(LineItem(code="A-1", name="consultation", category="A", amount=50_000),),
        )
        result = await client.settle(
            protocol.message_id(INSTITUTION, NOW, 1), protocol.settle_input(outpatient, psn_no="P-1", mdtrt_id="MZ-1")
        )
    assert result.paid_by_fund_type == {BASIC: 15_000}  # (500 - 200 deductible) x 0.50


# ---------------------------------------------------------------- as a process


async def test_the_simulator_runs_as_a_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "insurer-sim",
        "--port",
        "0",
        "--policy-dir",
        str(ROOT / "policies" / "examples" / "three-tier"),
        "--delay-ms",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "MEDSETTLE_LOG_FORMAT": "json"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert "pays three-tier-2026: insurance, critical_illness" in line, line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        async with open_client(config(url)) as client:
            result = await client.settle(
                protocol.message_id(INSTITUTION, dt.datetime.now(protocol.CHINA_TIME), 1),
                protocol.settle_input(
                    inpatient(40_000_000), psn_no="P-1", mdtrt_id="V1", hardship_tier="minimum_allowance"
                ),
            )
        assert result.paid_by_fund_type == {BASIC: 20_000_000, CRITICAL: 13_512_500}
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), timeout=30)
    assert status == 0
