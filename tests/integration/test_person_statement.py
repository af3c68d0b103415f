"""A person's annual statement (every settlement, every fund, caps left) and finance statistics by clinic and
by person, over real settlements made through the API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from settlement.money import format_yuan_grouped
from tests.integration.conftest import bill, register

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
CLINIC = "V089"
TERMINAL = {"X-Terminal-Id": f"term-{CLINIC}"}
SERVICE_DATE = "2026-04-17"  # a day no other test settles on


async def year_of_bills(client: Any) -> tuple[str, list[dict[str, Any]]]:
    """A veteran's three bills at one clinic in 2026, the second reversed."""
    person = await register(client, ("insurance", "resident"), ("veteran_subsidy", "disabled_veteran"))
    answers = []
    for amount in (80_000, 45_000, 12_000):
        response = await client.post(
            "/v1/settlements",
            json=bill(
                person,
                ("A", amount),
                ("C", 2_500),
                clinic_id=CLINIC,
                visit_type="outpatient",
                service_date=SERVICE_DATE,
            ),
            headers=TERMINAL,
        )
        answers.append(await response.json())
        assert response.status == 201, answers[-1]
    response = await client.post(
        f"/v1/settlements/{answers[1]['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "wrong patient"},
        headers=TERMINAL,
    )
    assert response.status == 201, await response.text()
    return person, answers


async def test_the_annual_statement_lists_every_settlement_every_fund_and_the_caps_left(client):
    person, answers = await year_of_bills(client)
    response = await client.post("/v1/people/statement", json={"person_id": person, "year": 2026}, headers=FINANCE)
    statement = await response.json()
    assert response.status == 200, statement
    assert person not in await response.text()  # the masked ID only
    assert statement["person"] == answers[0]["person"] and statement["year"] == 2026
    listed = [item["settlement_id"] for item in statement["settlements"]]
    assert listed == [answer["settlement_id"] for answer in answers]
    assert [item["reversed"] for item in statement["settlements"]] == [False, True, False]
    assert (statement["settlements_count"], statement["reversed_count"]) == (2, 1)
    standing = [answers[0], answers[2]]
    assert statement["total_fen"] == sum(answer["total"] for answer in standing)
    paid = {fund["code"]: fund["paid_fen"] for fund in statement["funds"]}
    assert list(paid)[-1] == "out_of_pocket"
    for code in ("insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket"):
        assert paid[code] == sum(answer[code] for answer in standing), code
    assert paid["insurance"] > 0 and paid["veteran_subsidy"] > 0
    assert sum(paid.values()) == statement["total_fen"]

    # The caps left are what the eligibility check shows the clinic today.
    response = await client.post("/v1/eligibility", json={"person_id": person}, headers=TERMINAL)
    assert statement["caps"] == (await response.json())["funds"]
    insurance_cap = next(cap for cap in statement["caps"] if cap["fund"] == "insurance")
    assert insurance_cap["used"] >= paid["insurance"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"year": 2099}, 422, "validation_failed", "year"),
        ({"year": 2025}, 422, "no_policy_in_force", "year"),
        ({"year": 2026, "person_id": "11010519491231002X"}, 422, "unknown_person", "person_id"),
        ({"year": 2026, "person_id": "110105194912310021"}, 422, "invalid_national_id", "person_id"),
    ],
)
async def test_a_statement_that_cannot_be_given_is_refused_naming_the_field(client, body, status, code, field):
    person = await register(client, ("insurance", "resident"))
    response = await client.post("/v1/people/statement", json={"person_id": person} | body, headers=FINANCE)
    problem = await response.json()
    assert (response.status, problem["code"], problem["field"]) == (status, code, field), problem
    response = await client.post("/v1/people/statement", json={"person_id": person, "year": 2026}, headers=TERMINAL)
    assert response.status == 403


async def test_statistics_by_clinic_and_by_person(client):
    person, answers = await year_of_bills(client)
    standing = [answers[0], answers[2]]
    period = f"from={SERVICE_DATE}&to={SERVICE_DATE}"
    response = await client.get(f"/v1/finance/stats?by=clinic&{period}", headers=FINANCE)
    stats = await response.json()
    assert response.status == 200, stats
    clinic = next(group for group in stats["groups"] if group["clinic"] == CLINIC)
    assert clinic["total_fen"] >= sum(answer["total"] for answer in standing)

    response = await client.get(f"/v1/finance/stats?by=person&{period}", headers=FINANCE)
    stats = await response.json()
    assert response.status == 200 and person not in await response.text()
    totals = [group["total_fen"] for group in stats["groups"]]
    assert totals == sorted(totals, reverse=True)  # the highest totals first
    ours = [group for group in stats["groups"] if group["total_fen"] == sum(answer["total"] for answer in standing)]
    assert any(group["person"] == answers[0]["person"] and group["settlements"] == 2 for group in ours)
    response = await client.get(f"/v1/finance/stats?by=person&{period}&format=csv", headers=FINANCE)
    assert response.status == 200 and answers[0]["person"] in await response.text()


async def test_the_printed_annual_statement_shows_each_fund_the_caps_and_every_settlement(client):
    person, answers = await year_of_bills(client)
    response = await client.post(
        "/v1/people/statement?format=html", json={"person_id": person, "year": 2026}, headers=FINANCE
    )
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert person not in page and answers[0]["person"] in page
    assert "个人年度结算单 Annual statement" in page and "单位盖章 Seal" in page
    standing = [answers[0], answers[2]]
    # The paid-by-fund table closes with the year's bills that stand; the reversed one is listed, marked.
    assert f'<td class="money">{format_yuan_grouped(sum(answer["total"] for answer in standing))}</td>' in page
    assert all(answer["settlement_id"] in page for answer in answers) and page.count("已冲正 reversed") == 1
    assert "年度限额<br>Annual cap" in page
