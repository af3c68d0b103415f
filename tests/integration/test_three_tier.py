"""The three-tier chain served over HTTP: its worked examples, the demo's sample bills, concurrent
settlements against its caps, reversals, and the invariant check over what they wrote.

The gateway here runs policies/examples/three-tier on a database of its own: a database holds one
policy version per effective date, and this one takes effect on the same day as the default.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.check import check_invariants
from adapters.terminal_client import TerminalClient
from tests.integration.conftest import (
    ADMIN,
    COUNTY,
    THREE_TIER,
    TOWNSHIP,
    SignedClient,
    ThreeTier,
    bill,
    fresh_national_id,
    post_as_a_terminal,
)
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Y = 100
CHAIN = ["insurance", "critical_illness", "hardship_aid", "tilted_aid", "veteran_subsidy", "charity"]


async def register(client: SignedClient, *programmes: tuple[str, str]) -> str:
    national_id = fresh_national_id()
    memberships = [{"programme": p, "code": c, "effective_from": "2026-01-01"} for p, c in programmes]
    response = await client.post(
        "/v1/people", json={"person_id": national_id, "memberships": memberships}, headers=ADMIN
    )
    assert response.status == 201, await response.text()
    return national_id


async def settle(client: SignedClient, body: dict[str, Any], headers: dict[str, str] = COUNTY) -> dict[str, Any]:
    status, answer = await post_as_a_terminal(client, "/v1/settlements", body, headers)
    # 200 only where a 503'd attempt had committed after all and its resend replayed it.
    assert status == 201 or (status == 200 and answer["replayed"]), answer
    assert [payer["fund"] for payer in answer["payers"]] == CHAIN
    assert sum(payer["amount"] for payer in answer["payers"]) + answer["out_of_pocket"] == answer["total"]
    return answer


def paid(answer: dict[str, Any]) -> dict[str, int]:
    return {payer["fund"]: payer["amount"] for payer in answer["payers"]}


def referred(national_id: str, *items: tuple[str, int], **options: Any) -> dict[str, Any]:
    return bill(national_id, *items, **options) | {"referral": True}


async def test_worked_example_1_over_http(three_tier: ThreeTier) -> None:
    client, _, _ = three_tier
    person = await register(
        client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"), ("veteran_subsidy", "priority_care")
    )
    answer = await settle(client, referred(person, ("A", 14_000 * Y), ("B", 4_000 * Y), ("C", 2_000 * Y)))
    assert paid(answer) == {
        "insurance": 1_275_000,
        "critical_illness": 0,
        "hardship_aid": 363_750,
        "tilted_aid": 0,
        "veteran_subsidy": 72_750,
        "charity": 0,
    }
    # Today's fields hold the funds with those codes.
    assert (answer["insurance"], answer["veteran_subsidy"], answer["hardship_aid"]) == (1_275_000, 72_750, 363_750)
    assert answer["out_of_pocket"] == 288_500
    assert answer["referral"] is True
    assert answer["payers"][1]["name"] == "城乡居民大病保险"
    assert answer["counters_after"]["critical_illness_base"] == 485_000


async def test_worked_example_2_over_http_carries_the_counters_to_the_next_admission(
    three_tier: ThreeTier,
) -> None:
    client, pool, _ = three_tier
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    first = await settle(client, referred(person, ("A", 180_000 * Y)))
    assert paid(first)["critical_illness"] == 2_466_750
    assert paid(first)["hardship_aid"] == 1_220_863
    assert first["out_of_pocket"] == 857_387
    second = await settle(client, referred(person, ("A", 30_000 * Y), clinic_id="T001"), TOWNSHIP)
    assert paid(second) == {
        "insurance": 2_524_500,
        "critical_illness": 309_075,
        "hardship_aid": 108_176,
        "tilted_aid": 0,
        "veteran_subsidy": 0,
        "charity": 0,
    }
    assert second["out_of_pocket"] == 58_249
    # The ledger books one line per fund, new funds under <code>_fund.
    async with pool.acquire() as connection:
        accounts = await connection.fetch(
            "SELECT account, sum(amount) AS amount FROM ledger_entries WHERE settlement_id = $1::uuid GROUP BY 1",
            second["settlement_id"],
        )
    assert {row["account"]: row["amount"] for row in accounts} == {
        "insurance_fund": 2_524_500,
        "critical_illness_fund": 309_075,
        "aid_fund": 108_176,
        "tilted_aid_fund": 0,
        "priority_care_fund": 0,
        "charity_fund": 0,
        "patient": 58_249,
        "clinic": -3_000_000,
    }


async def test_worked_example_3_with_charity_and_the_demo_sample_bills(
    three_tier: ThreeTier,
) -> None:
    client, _, _ = three_tier
    # samples/bill-charity-admission.json: the demo's Sun Hao, minimum_allowance and charity, A 400,000 referred.
    body = json.loads((REPO / "samples" / "bill-charity-admission.json").read_text(encoding="utf-8"))
    answer = await settle(client, body)
    assert paid(answer) == {
        "insurance": 20_000_000,
        "critical_illness": 13_512_500,
        "hardship_aid": 4_865_625,
        "tilted_aid": 310_938,
        "veteran_subsidy": 0,
        "charity": 655_469,
    }
    assert answer["out_of_pocket"] == 655_468
    # samples/bill-referred-admission.json: the demo's Li Na, worked example 1.
    body = json.loads((REPO / "samples" / "bill-referred-admission.json").read_text(encoding="utf-8"))
    assert (await settle(client, body))["out_of_pocket"] == 288_500


async def test_eligibility_lists_every_fund_with_what_is_left(three_tier: ThreeTier) -> None:
    client, _, _ = three_tier
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    await settle(client, referred(person, ("A", 180_000 * Y)))
    response = await client.post(
        "/v1/eligibility", json={"person_id": person, "service_date": "2026-06-01"}, headers=COUNTY
    )
    assert response.status == 200, await response.text()
    funds = {fund["fund"]: fund for fund in (await response.json())["funds"]}
    assert list(funds) == CHAIN
    # Critical illness pays an aid recipient without a cap; tilted aid is capped at 30,000.
    assert (funds["critical_illness"]["applies"], funds["critical_illness"]["annual_cap"]) == (True, None)
    assert funds["hardship_aid"]["remaining"] == 50_000 * Y - 1_220_863
    assert (funds["tilted_aid"]["annual_cap"], funds["tilted_aid"]["used"]) == (30_000 * Y, 0)
    assert funds["charity"]["applies"] is False


async def test_concurrent_admissions_never_pass_a_shared_cap(three_tier: ThreeTier) -> None:
    """Twelve referred admissions at once for one person: tilted aid (cap 30,000) and aid (cap 60,000) are
    each reached exactly, however the requests interleave, and the counters equal the ledger."""
    client, pool, _ = three_tier
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    bodies = [referred(person, ("A", 100_000 * Y)) for _ in range(12)]
    answers = await asyncio.gather(*(settle(client, body) for body in bodies))
    tilted = sum(paid(answer)["tilted_aid"] for answer in answers)
    aid = sum(paid(answer)["hardship_aid"] for answer in answers)
    assert sum(paid(answer)["insurance"] for answer in answers) == 200_000 * Y  # the inpatient cap
    assert tilted == 30_000 * Y
    assert aid == 60_000 * Y
    async with pool.acquire() as connection:
        counters = json.loads(
            await connection.fetchval(
                "SELECT counters FROM accumulators WHERE person_key = (SELECT person_key FROM settlements"
                " WHERE settlement_id = $1::uuid) AND year = 2026",
                answers[0]["settlement_id"],
            )
        )
        assert (counters["tilted_aid_paid"], counters["aid_paid"]) == (tilted, aid)
        assert await check_invariants(connection) == []


async def test_a_reversal_gives_back_every_counter(three_tier: ThreeTier) -> None:
    client, pool, _ = three_tier
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    first = await settle(client, referred(person, ("A", 180_000 * Y)))
    second = await settle(client, referred(person, ("A", 30_000 * Y), clinic_id="T001"), TOWNSHIP)
    response = await client.post(
        f"/v1/settlements/{first['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billed in error"},
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()
    async with pool.acquire() as connection:
        counters = json.loads(
            await connection.fetchval(
                "SELECT counters FROM accumulators WHERE person_key = (SELECT person_key FROM settlements"
                " WHERE settlement_id = $1::uuid) AND year = 2026",
                second["settlement_id"],
            )
        )
    # Only the second admission is left: its own additions, counted from zero.
    added = {
        name: second["counters_after"][name] - first["counters_after"].get(name, 0) for name in second["counters_after"]
    }
    assert {name: value for name, value in counters.items() if value} == {
        name: value for name, value in added.items() if value
    }


async def payer_totals(client: SignedClient) -> dict[tuple[str, str], float]:
    """``medsettle_paid_fen_total`` and ``medsettle_reversed_fen_total`` by metric and payer label."""
    exposition = await (await client.get("/metrics")).text()
    return {
        (sample.name, sample.labels["payer"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name in ("medsettle_paid_fen_total", "medsettle_reversed_fen_total")
    }


async def test_the_paid_and_reversed_metrics_count_every_fund_of_the_chain(three_tier: ThreeTier) -> None:
    client, _, _ = three_tier
    person = await register(
        client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"), ("charity", "child_major_disease")
    )
    before = await payer_totals(client)
    answer = await settle(client, referred(person, ("A", 400_000 * Y)))
    response = await client.post(
        f"/v1/settlements/{answer['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billed in error"},
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()
    after = await payer_totals(client)
    amounts = {**paid(answer), "out_of_pocket": answer["out_of_pocket"]}
    assert all(amounts[fund] > 0 for fund in ("critical_illness", "tilted_aid", "charity")), amounts
    for metric in ("medsettle_paid_fen_total", "medsettle_reversed_fen_total"):
        added = {payer: after[metric, payer] - before.get((metric, payer), 0) for payer in amounts}
        assert added == amounts


async def test_a_storm_of_one_referred_admission_settles_it_once(three_tier: ThreeTier) -> None:
    """Fifty copies of one request at once: one settlement, every answer the same, every counter moved once."""
    client, pool, _ = three_tier
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    body = referred(person, ("A", 180_000 * Y))
    replies = await asyncio.gather(*(post_as_a_terminal(client, "/v1/settlements", body, COUNTY) for _ in range(50)))
    answers = [answer for _, answer in replies]
    assert sorted({status for status, _ in replies}) in ([201], [200, 201])
    assert [status for status, _ in replies].count(201) == 1
    assert {answer["settlement_id"] for answer in answers} == {answers[0]["settlement_id"]}
    assert {tuple(payer["amount"] for payer in answer["payers"]) for answer in answers} == {
        (13_455_000, 2_466_750, 1_220_863, 0, 0, 0)
    }
    async with pool.acquire() as connection:
        counters = json.loads(
            await connection.fetchval(
                "SELECT counters FROM accumulators WHERE person_key = (SELECT person_key FROM settlements"
                " WHERE settlement_id = $1::uuid) AND year = 2026",
                answers[0]["settlement_id"],
            )
        )
    assert counters["aid_paid"] == 1_220_863 and counters["aid_deductible_met"] == 2_000 * Y


async def test_caps_hold_with_referred_admissions_alternating_between_two_gateway_processes(
    three_tier: ThreeTier, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two `medsettle serve` processes on the three-tier database: nothing in one process's memory can keep
    the shared caps, only the person-year's row and its CHECK."""
    client, pool, url = three_tier
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    processes, bases = [], []
    for index in range(2):
        port = free_port()
        processes.append(
            start_gateway(
                url, port, tmp_path_factory.mktemp(f"three-tier-{index}"), MEDSETTLE_POLICY_DIR=str(THREE_TIER)
            )
        )
        bases.append(f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            for base, process in zip(bases, processes, strict=True):
                await wait_ready(session, base, process)
            key = client.by_terminal["term-C001"]
            terminals = [TerminalClient(base, key.key_id, key.secret, session=session) for base in bases]
            replies = await asyncio.gather(
                *(terminals[n % 2].settle(referred(person, ("A", 100_000 * Y))) for n in range(16))
            )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.communicate(timeout=30)
    assert [reply.status for reply in replies] == [201] * 16, [reply.body for reply in replies if reply.status != 201]
    amounts = [{payer["fund"]: payer["amount"] for payer in reply.body["payers"]} for reply in replies]
    assert sum(paid["insurance"] for paid in amounts) == 200_000 * Y
    assert sum(paid["hardship_aid"] for paid in amounts) == 60_000 * Y
    assert sum(paid["tilted_aid"] for paid in amounts) == 30_000 * Y
    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []
