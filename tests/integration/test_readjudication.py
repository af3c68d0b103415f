"""Re-adjudication end to end: a registry change with a past date, or a refund of an earlier bill, corrects
the person-year's other settlements by adjustments, and finance gets the orders.

Each case compares with a **twin**: another person whose registry was right from the start (or who never had
the refunded bill), settling the same bills. What the twin was paid is what the law says the person should
have been paid, bill by bill; after re-adjudication, each of the person's settlements plus its adjustments
must pay exactly that, fund by fund, and their counters must be the twin's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters import identity
from adapters.settlement_sql import counters_from
from tests.integration.conftest import ADMIN, COUNTY, PEPPER, SignedClient, bill, register
from tests.integration.processes import medsettle

pytestmark = pytest.mark.integration

FUNDS = ("insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket")
# Four inpatient stays at the county hospital after 1 May, and the programme granted from 1 May.
STAYS = ("2026-05-10", "2026-06-12", "2026-07-20", "2026-08-30")


def key_of(national_id: str) -> bytes:
    return identity.person_key(national_id, PEPPER)


async def settle_stays(client: SignedClient, person: str, days: tuple[str, ...]) -> list[dict[str, Any]]:
    answers = []
    for number, day in enumerate(days):
        amounts = (("A", 800_000 + 150_000 * number), ("B", 120_000), ("C", 30_000))
        response = await client.post("/v1/settlements", json=bill(person, *amounts, service_date=day), headers=COUNTY)
        assert response.status == 201, await response.text()
        answers.append(await response.json())
    return answers


def memberships(aid: str | None = None, struck_off_on: str | None = None) -> list[dict[str, str]]:
    """Insured from 1 January, and 低保 (minimum_allowance) from ``aid`` until ``struck_off_on`` when given."""
    held = [{"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"}]
    if aid is not None:
        tier = {"programme": "hardship_aid", "code": "minimum_allowance", "effective_from": aid}
        held.append({**tier, "struck_off_on": struck_off_on} if struck_off_on else tier)
    return held


async def change_registry(client: SignedClient, person: str, memberships: list[dict[str, str]]) -> dict[str, Any]:
    response = await client.post("/v1/people", json={"person_id": person, "memberships": memberships}, headers=ADMIN)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def readjudicated(pool: asyncpg.Pool, person: str, within: float = 60.0) -> list[asyncpg.Record]:
    """The person's re-adjudications once none is pending (the gateway's background runner works them)."""
    deadline = time.monotonic() + within
    while True:
        rows = await pool.fetch(
            "SELECT * FROM readjudications WHERE person_key = $1 ORDER BY readjudication_id", key_of(person)
        )
        if rows and all(row["status"] != "pending" for row in rows):
            return rows
        assert time.monotonic() < deadline, f"still pending after {within} s: {[dict(row) for row in rows]}"
        await asyncio.sleep(0.1)


async def paid_now(pool: asyncpg.Pool, settlement_id: str) -> dict[str, int]:
    """What a settlement pays now, by fund: its columns (0 once reversed) plus every adjustment on it."""
    row = await pool.fetchrow(
        """SELECT s.reversal_id IS NULL AS live, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket,
                  coalesce(sum(a.insurance), 0) AS a_insurance,
                  coalesce(sum(a.veteran_subsidy), 0) AS a_veteran_subsidy,
                  coalesce(sum(a.hardship_aid), 0) AS a_hardship_aid,
                  coalesce(sum(a.out_of_pocket), 0) AS a_out_of_pocket
           FROM settlements s
           LEFT JOIN adjustments a ON a.person_key = s.person_key AND a.settlement_id = s.settlement_id
           WHERE s.settlement_id = $1::uuid
           GROUP BY s.settlement_id, s.reversal_id, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket""",
        settlement_id,
    )
    return {fund: int((row[fund] if row["live"] else 0) + row[f"a_{fund}"]) for fund in FUNDS}


def as_paid(answer: dict[str, Any]) -> dict[str, int]:
    return {fund: answer[fund] for fund in FUNDS}


async def counters(pool: asyncpg.Pool, person: str) -> dict[str, int]:
    text = await pool.fetchval(
        "SELECT counters FROM accumulators WHERE person_key = $1 AND year = 2026", key_of(person)
    )
    return {name: value for name, value in counters_from(text).items() if value}


async def orders(pool: asyncpg.Pool, person: str) -> dict[str, tuple[str, int, str]]:
    rows = await pool.fetch(
        "SELECT fund, kind, amount, status FROM adjustment_orders WHERE person_key = $1", key_of(person)
    )
    return {row["fund"]: (row["kind"], row["amount"], row["status"]) for row in rows}


async def aid_granted_after_a_stay(
    client: SignedClient, pool: asyncpg.Pool
) -> tuple[str, dict[str, Any], list[asyncpg.Record]]:
    """A resident settles one stay, then is granted 低保 from 1 January: the person, the stay's answer and the
    re-adjudications that granting started, once worked."""
    person = await register(client, ("insurance", "resident"))
    (settled,) = await settle_stays(client, person, STAYS[:1])
    await change_registry(client, person, memberships(aid="2026-01-01"))
    return person, settled, await readjudicated(pool, person)


async def test_aid_granted_from_three_months_ago_pays_the_patient_what_each_bill_would_have_had(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    twin = await register(client, ("insurance", "resident"))
    await change_registry(
        client,
        twin,
        memberships(aid="2026-05-01"),
    )
    should = await settle_stays(client, twin, STAYS)
    person = await register(client, ("insurance", "resident"))
    settled = await settle_stays(client, person, STAYS)
    assert all(answer["hardship_aid"] == 0 for answer in settled)
    assert all(answer["hardship_aid"] > 0 for answer in should)

    # The civil-affairs bureau confirms, in September, 低保 from 1 May.
    answer = await change_registry(
        client,
        person,
        memberships(aid="2026-05-01"),
    )
    assert answer["changes"]["readjudications"] == 1
    (work,) = await readjudicated(pool, person)
    assert work["status"] == "done" and work["cause_kind"] == "registry" and work["adjusted"] == 4
    assert work["from_date"] == dt.date(2026, 5, 1)
    assert "minimum_allowance" in work["cause"] and person not in work["cause"]  # masked ID only

    for mine, twins in zip(settled, should, strict=True):
        assert await paid_now(pool, mine["settlement_id"]) == as_paid(twins)
    aid = sum(twins["hardship_aid"] for twins in should)
    assert await orders(pool, person) == {"hardship_aid": ("payable", aid, "open")}
    assert await counters(pool, person) == await counters(pool, twin)

    # The same change sent again changes nothing and queues nothing.
    again = await change_registry(
        client,
        person,
        memberships(aid="2026-05-01"),
    )
    assert again["changes"]["readjudications"] == 0
    assert len(await readjudicated(pool, person)) == 1


async def test_a_tier_struck_off_retroactively_reports_the_overpayment_without_recovering_it(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    settled = await settle_stays(client, person, STAYS[:2])
    struck = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    await change_registry(
        client,
        struck,
        memberships(aid="2026-01-01", struck_off_on="2026-06-01"),
    )
    should = await settle_stays(client, struck, STAYS[:2])
    assert should[1]["hardship_aid"] == 0

    await change_registry(
        client,
        person,
        memberships(aid="2026-01-01", struck_off_on="2026-06-01"),
    )
    (work,) = await readjudicated(pool, person)
    assert work["status"] == "done" and work["adjusted"] == 1 and work["from_date"] == dt.date(2026, 6, 1)
    assert await paid_now(pool, settled[0]["settlement_id"]) == as_paid(settled[0])  # before the strike-off
    assert await paid_now(pool, settled[1]["settlement_id"]) == as_paid(should[1])
    # The default policy does not recover overpayments: they are reported to finance, not claimed back.
    assert await orders(pool, person) == {"hardship_aid": ("overpayment", settled[1]["hardship_aid"], "reported")}
    assert await counters(pool, person) == await counters(pool, struck)


async def test_refunding_the_first_of_three_bills_moves_the_deductible_to_the_later_ones(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    programmes = (("insurance", "resident"), ("hardship_aid", "medical_hardship"))
    days = ("2026-03-02", "2026-03-09", "2026-03-16")

    async def three_visits(person: str, which: tuple[int, ...]) -> list[dict[str, Any]]:
        answers = []
        for number in which:
            visit = bill(
                person,
                ("A", 30_000 + 10_000 * number),
                ("B", 8_000),
                clinic_id="T001",
                visit_type="outpatient",
                service_date=days[number],
            )
            response = await client.post("/v1/settlements", json=visit, headers={"X-Terminal-Id": "term-T001"})
            assert response.status == 201, await response.text()
            answers.append(await response.json())
        return answers

    person = await register(client, *programmes)
    settled = await three_visits(person, (0, 1, 2))
    assert settled[0]["accumulators_after"]["outpatient_deductible_used"] > 0
    twin = await register(client, *programmes)
    should = await three_visits(twin, (1, 2))
    assert [as_paid(answer) for answer in should] != [as_paid(answer) for answer in settled[1:]]

    response = await client.post(
        f"/v1/settlements/{settled[0]['settlement_id']}/reversal",
        json={"request_id": "refund-first-visit", "reason": "refund"},
        headers={"X-Terminal-Id": "term-T001"},
    )
    assert response.status == 201, await response.text()
    (work,) = await readjudicated(pool, person)
    assert work["cause_kind"] == "reversal" and work["status"] == "done" and work["adjusted"] >= 1
    for mine, twins in zip(settled[1:], should, strict=True):
        assert await paid_now(pool, mine["settlement_id"]) == as_paid(twins)
    assert await paid_now(pool, settled[0]["settlement_id"]) == dict.fromkeys(FUNDS, 0)
    assert await counters(pool, person) == await counters(pool, twin)


async def test_a_bill_reversed_after_it_was_adjusted_takes_its_adjustments_back_with_it(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    person, settled, _ = await aid_granted_after_a_stay(client, pool)
    aid = (await paid_now(pool, settled["settlement_id"]))["hardship_aid"]
    assert aid > 0

    response = await client.post(
        f"/v1/settlements/{settled['settlement_id']}/reversal",
        json={"request_id": f"refund-{settled['settlement_id']}", "reason": "refund"},
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()
    _, second = await readjudicated(pool, person)
    assert second["cause_kind"] == "reversal" and second["status"] == "done"
    assert await paid_now(pool, settled["settlement_id"]) == dict.fromkeys(FUNDS, 0)
    assert await counters(pool, person) == {}
    # The aid the first order owed the patient went with the bill: the reversal cancelled the order, unpaid,
    # and nothing is left to re-issue (tests/integration/test_reversed_orders.py has the other cases).
    rows = await pool.fetch(
        "SELECT readjudication_id, kind, amount, status FROM adjustment_orders WHERE person_key = $1 ORDER BY 1",
        key_of(person),
    )
    assert [(row["kind"], row["amount"], row["status"]) for row in rows] == [("payable", aid, "cancelled")]


async def test_finance_lists_the_orders_and_closes_an_open_one_once(client: SignedClient, pool: asyncpg.Pool) -> None:
    person, _, (work,) = await aid_granted_after_a_stay(client, pool)
    today = work["booked_on"].isoformat()
    response = await client.get(f"/v1/finance/adjustments?from={today}&to={today}&status=open", headers=ADMIN)
    assert response.status == 200, await response.text()
    listed = await response.json()
    (order,) = [order for order in listed["orders"] if order["readjudication_id"] == work["readjudication_id"]]
    assert order["kind"] == "payable" and order["fund"] == "hardship_aid" and order["status"] == "open"
    assert order["person"] != person and "*" in order["person"]  # the masked ID, never the number
    assert listed["totals"]["payable.open"] >= order["amount"]

    response = await client.get(f"/v1/finance/adjustments?from={today}&to={today}&format=csv", headers=ADMIN)
    text = await response.text()
    assert response.status == 200 and order["order_id"] in text and person not in text
    assert f"{order['amount'] // 100}.{order['amount'] % 100:02d}" in text  # yuan with two decimals

    close = f"/v1/finance/adjustments/{order['order_id']}/close"
    response = await client.post(close, json={"reference": "TRANSFER-0042"}, headers=ADMIN)
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "paid"
    response = await client.post(close, json={"reference": "TRANSFER-0043"}, headers=ADMIN)
    assert response.status == 409 and (await response.json())["code"] == "order_not_open"
    row = await pool.fetchrow(
        "SELECT status, reference FROM adjustment_orders WHERE order_id = $1::uuid", order["order_id"]
    )
    assert (row["status"], row["reference"]) == ("paid", "TRANSFER-0042")

    response = await client.post(
        "/v1/finance/adjustments/00000000-0000-0000-0000-000000000000/close", json={"reference": "x"}, headers=ADMIN
    )
    assert response.status == 404 and (await response.json())["code"] == "order_not_found"
    response = await client.get("/v1/finance/adjustments?status=lost", headers=ADMIN)
    assert response.status == 422 and (await response.json())["field"] == "status"
    # A terminal may not see or close them.
    response = await client.get("/v1/finance/adjustments", headers=COUNTY)
    assert response.status == 403


async def test_a_list_import_dry_run_lists_the_adjustments_and_the_real_import_queues_them(
    client: SignedClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    person = await register(client, ("insurance", "resident"))
    settled = await settle_stays(client, person, STAYS[:2])
    path = tmp_path / "civil-affairs.csv"
    path.write_text(f"身份证号码,姓名,类别,认定日期,退出日期\n{person},王芳,低保,2026-05-01,\n", encoding="utf-8")

    dry = medsettle(database_url, "import", "civil-affairs", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.count("would adjust:") == 2 and person not in dry.stdout
    for answer in settled:
        assert answer["settlement_id"] in dry.stdout
    assert "re-adjudication would adjust 2 settlements in 1 person-years: hardship_aid +" in dry.stdout
    assert await pool.fetchval("SELECT count(*) FROM readjudications WHERE person_key = $1", key_of(person)) == 0

    done = medsettle(database_url, "import", "civil-affairs", str(path))
    assert done.returncode == 0 and "queued 1 person-years for re-adjudication" in done.stdout
    # Whichever takes it first, the test gateway's background runner or this command, works it once.
    ran = medsettle(database_url, "adjustments", "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (work,) = await readjudicated(pool, person)
    assert work["adjusted"] == 2
    listed = medsettle(database_url, "adjustments", "list", "--format", "csv", "--from", work["booked_on"].isoformat())
    order_id = str(
        await pool.fetchval(
            "SELECT order_id FROM adjustment_orders WHERE readjudication_id = $1", work["readjudication_id"]
        )
    )
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(order_id)]
    assert ",hardship_aid," in line and ",payable," in line and person not in line
    closed = medsettle(database_url, "adjustments", "close", order_id, "--reference", "BANK-7")
    assert closed.returncode == 0 and "paid" in closed.stdout
    again = medsettle(database_url, "adjustments", "close", order_id, "--reference", "BANK-8")
    assert again.returncode == 1 and "only an open order is closed" in again.stdout


async def test_the_receipt_of_a_corrected_settlement_shows_its_adjustment(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    _, settled, (work,) = await aid_granted_after_a_stay(client, pool)
    aid = (await paid_now(pool, settled["settlement_id"]))["hardship_aid"]
    yuan = f"{aid // 100:,}.{aid % 100:02d}"
    receipt = f"/v1/settlements/{settled['settlement_id']}/receipt"
    response = await client.get(f"{receipt}?format=text", headers=COUNTY)
    text = await response.text()
    assert response.status == 200
    assert f"追补调整 {work['booked_on'].isoformat()}:" in text and f"+{yuan}" in text and f"-{yuan}" in text
    text.encode("gbk")  # a thermal printer's encoding
    response = await client.get(f"{receipt}?lang=en", headers=COUNTY)
    assert f"Adjusted {work['booked_on'].isoformat()}:" in await response.text()
