"""Policy what-if over a database of real settlements (DESIGN Part 2, "Replay"): the default policy
against itself changes nothing; a candidate's difference is what hand computation says, person-year by
person-year from 1 January; the registry is read as it stood on each service date; nothing is written.

Figures are hand-computed beside each assertion; money is int fen (``Y`` is one yuan).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.fund_names import FundDirectory
from adapters.what_if import WhatIfReport, what_if, what_if_csv
from settlement.catalogue import Catalogue
from settlement.chain import Chain
from settlement.chain_policy import parse_chain
from tests.integration.conftest import (
    COUNTY,
    TOWNSHIP,
    SignedClient,
    bill,
    own_gateway,
    register,
    row_counts,
)
from tests.integration.processes import medsettle

FINANCE = {"X-Terminal-Id": "finance-1"}

pytestmark = pytest.mark.integration

Y = 100
DEFAULT_TEXT = (Path(__file__).resolve().parents[2] / "policies" / "default.toml").read_text(encoding="utf-8")
DEFAULT = parse_chain(DEFAULT_TEXT, "default.toml")
# The candidate: county admissions paid at 0.80 instead of 0.75, and a county deductible of 800 instead of 600.
CANDIDATE = parse_chain(
    DEFAULT_TEXT.replace('id = "default-2026"', 'id = "candidate-2027"')
    .replace("rate = { township = 0.85, county = 0.75 }", "rate = { township = 0.85, county = 0.80 }")
    .replace(
        "per_admission_yuan = { township = 300, county = 600 }", "per_admission_yuan = { township = 300, county = 800 }"
    ),
    "candidate.toml",
)
FUNDS = FundDirectory([DEFAULT, CANDIDATE])

Gateway = tuple[SignedClient, asyncpg.Pool, str]


@pytest.fixture(scope="module")
async def gateway(database_url: str, settings: Any) -> AsyncIterator[Gateway]:
    async with own_gateway(database_url, settings) as running:
        yield running


async def run(pool: asyncpg.Pool, candidate: Chain, start: str, end: str, by: str = "level") -> WhatIfReport:
    async with pool.acquire() as connection:
        return await what_if(
            connection, candidate, start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end),
            by=by, catalogue=Catalogue(), funds=FUNDS,  # type: ignore[arg-type]
        )  # fmt: skip


def fund(report_group: Any, code: str) -> tuple[int, int, int]:
    impact = next(impact for impact in [*report_group.funds, report_group.out_of_pocket] if impact.fund == code)
    return impact.today, impact.would, impact.difference


async def settle(client: SignedClient, body: dict[str, Any], terminal: dict[str, str] = COUNTY) -> dict[str, Any]:
    response = await client.post("/v1/settlements", json=body, headers=terminal)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_a_candidate_is_replayed_from_the_first_of_january_and_reported_inside_the_window(
    gateway: Gateway,
) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    # March and May admissions at the county hospital, A 10,000.00 each; a township one in April.
    await settle(client, bill(person, ("A", 10_000 * Y), service_date="2026-03-10"))
    await settle(client, bill(person, ("A", 5_000 * Y), service_date="2026-04-10", clinic_id="T001"), TOWNSHIP)
    await settle(client, bill(person, ("A", 10_000 * Y), service_date="2026-05-10"))
    before = await row_counts(pool)

    report = await run(pool, CANDIDATE, "2026-05-01", "2026-05-31")
    # Only May's bill is in the window; March's and April's are replayed for the counters.
    assert (report.settlements, report.replayed) >= (1, 3)
    county = next(group for group in report.groups if group.group == "county")
    # Today: (10,000 − 600) × 0.75 = 7,050.00. Candidate: (10,000 − 800) × 0.80 = 7,360.00 (no cap near).
    assert fund(county, "insurance") == (7_050 * Y, 7_360 * Y, 310 * Y)
    assert fund(county, "out_of_pocket") == (2_950 * Y, 2_640 * Y, -310 * Y)
    assert (county.better_off, county.worse_off) == (1, 0)
    assert await row_counts(pool) == before  # nothing written


async def test_the_default_policy_against_itself_changes_nothing(gateway: Gateway) -> None:
    client, pool, _ = gateway
    for tier in ("minimum_allowance", "medical_hardship", "destitute"):
        person = await register(client, ("insurance", "resident"), ("hardship_aid", tier))
        await settle(client, bill(person, ("A", 3_000 * Y), ("B", 800 * Y), ("C", 100 * Y), service_date="2026-02-01"))
        await settle(client, bill(person, ("A", 40_000 * Y), service_date="2026-06-01"))
        await settle(
            client, bill(person, ("A", 200 * Y), visit_type="outpatient", service_date="2026-06-02", clinic_id="T001"),
            TOWNSHIP,
        )  # fmt: skip
    for by in ("fund", "tier", "level", "region"):
        report = await run(pool, DEFAULT, "2026-01-01", "2026-12-31", by)
        assert report.settlements > 0 and report.refused == {}
        for group in [*report.groups, report.total]:
            assert all(impact.difference == 0 for impact in [*group.funds, group.out_of_pocket]), group
            assert (group.better_off, group.worse_off, group.unchanged) == (0, 0, group.people)
            assert group.share_today == group.share_would
    csv_text = what_if_csv(report)
    assert csv_text.splitlines()[0].startswith("group,fund,fund_name,today_fen,would_fen,difference_fen")


async def test_the_registry_is_read_as_it_stands_on_each_service_date(gateway: Gateway) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    await settle(client, bill(person, ("A", 10_000 * Y), service_date="2026-08-10"))
    # Confirmed as minimum_allowance from 1 August after the bill was settled: replayed with the registry
    # as it now stands, the same policy pays aid on it: (10,000 − 7,050) = 2,950.00 in the first inpatient
    # band at 0.70 = 2,065.00 (docs/settlement-rules.md).
    response = await client.post(
        "/v1/people",
        json={"person_id": person, "memberships": [
            {"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"},
            {"programme": "hardship_aid", "code": "minimum_allowance", "effective_from": "2026-08-01"},
        ]},
        headers={"X-Terminal-Id": "admin-1"},
    )  # fmt: skip
    assert response.status in (200, 201), await response.text()
    report = await run(pool, DEFAULT, "2026-08-10", "2026-08-10", "tier")
    group = next(group for group in report.groups if group.group == "minimum_allowance")
    assert fund(group, "hardship_aid")[2] == 2_065 * Y


async def test_bills_the_candidate_refuses_are_counted_and_left_out(gateway: Gateway) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    await settle(client, bill(person, ("A", 1_000 * Y), service_date="2026-09-09", clinic_id="T001"), TOWNSHIP)
    no_township_wards = parse_chain(
        DEFAULT_TEXT.replace('inpatient_levels = ["township", "county"]', 'inpatient_levels = ["county"]'), "c.toml"
    )
    report = await run(pool, no_township_wards, "2026-09-09", "2026-09-09")
    assert report.refused == {"inpatient_not_offered": 1}
    assert all(group.group != "township" for group in report.groups)


async def test_the_api_and_the_command_line_give_the_same_report(gateway: Gateway, tmp_path: Path) -> None:
    client, _, url = gateway
    person = await register(client, ("insurance", "resident"))
    await settle(client, bill(person, ("A", 10_000 * Y), service_date="2026-10-10"))
    candidate_text = DEFAULT_TEXT.replace('id = "default-2026"', 'id = "candidate-2027"').replace(
        "rate = { township = 0.85, county = 0.75 }", "rate = { township = 0.85, county = 0.80 }"
    )
    body = {"policy": candidate_text, "from": "2026-10-10", "to": "2026-10-10", "by": "level"}
    response = await client.post("/v1/finance/what-if", json=body, headers=FINANCE)
    assert response.status == 200, await response.text()
    answer = await response.json()
    county = next(group for group in answer["groups"] if group["group"] == "county")
    # (10,000 − 600) × (0.80 − 0.75) = 470.00 more from insurance, 470.00 less for the patient.
    insurance = next(impact for impact in county["funds"] if impact["fund"] == "insurance")
    assert insurance["difference"] == 470 * Y
    assert county["out_of_pocket"]["difference"] == -470 * Y

    path = tmp_path / "candidate.toml"
    path.write_text(candidate_text, encoding="utf-8")
    result = medsettle(url, "policy", "what-if", str(path), "--from", "2026-10-10", "--to", "2026-10-10",
                       "--by", "level", "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == answer
    table = medsettle(
        url, "policy", "what-if", str(path), "--from", "2026-10-10", "--to", "2026-10-10", "--by", "level"
    )
    assert table.returncode == 0, table.stderr
    assert "+470.00" in table.stdout and "-470.00" in table.stdout

    csv_response = await client.post("/v1/finance/what-if?format=csv", json=body, headers=FINANCE)
    assert csv_response.status == 200
    assert "county,insurance," in await csv_response.text()


async def test_a_candidate_that_does_not_load_is_refused_naming_where(gateway: Gateway) -> None:
    client, _, _ = gateway
    broken = DEFAULT_TEXT.replace(
        "rate = { township = 0.85, county = 0.75 }", "rate = { township = 1.85, county = 0.75 }"
    )
    response = await client.post(
        "/v1/finance/what-if", json={"policy": broken, "from": "2026-01-01", "to": "2026-01-31"}, headers=FINANCE
    )
    assert response.status == 422
    problem = await response.json()
    assert (problem["code"], problem["field"]) == ("invalid_policy", "policy")
    assert "rate" in problem["detail"]
    terminal = await client.post(
        "/v1/finance/what-if", json={"policy": DEFAULT_TEXT, "from": "2026-01-01", "to": "2026-01-31"}, headers=COUNTY
    )
    assert terminal.status == 403  # a billing terminal may not run a what-if


async def test_a_candidate_id_cannot_break_out_of_the_csv_download_header(gateway: Gateway) -> None:
    client, _, _ = gateway
    hostile = DEFAULT_TEXT.replace('id = "default-2026"', 'id = "x\\"; evil=\\"1 \\r\\nSet-Cookie: a=b"')
    body = {"policy": hostile, "from": "2026-10-10", "to": "2026-10-10"}
    response = await client.post("/v1/finance/what-if?format=csv", json=body, headers=FINANCE)
    assert response.status == 200, await response.text()
    assert "Set-Cookie" not in response.headers
    disposition = response.headers["Content-Disposition"]
    assert disposition.count('"') == 2 and "\r" not in disposition and "\n" not in disposition
