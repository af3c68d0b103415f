"""Statistics for finance and policy staff, on a hand-computed week of settlements."""

from __future__ import annotations

import pytest

from tests.integration.conftest import COUNTY, TOWNSHIP, VILLAGE, bill, register

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
WEEK = "from=2026-01-05&to=2026-01-09"  # no other test settles in this week


async def settle(client, body, headers):
    response = await client.post("/v1/settlements", json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


@pytest.fixture(scope="module")
async def week(client):
    worked = await register(
        client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"), ("hardship_aid", "minimum_allowance")
    )
    # docs/worked-examples.md, example 2: 20,000.00 total; out of pocket 2,982.00 = 14.91 % (bucket 10-20 %).
    await settle(
        client,
        bill(worked, ("A", 1_400_000), ("B", 400_000), ("C", 200_000), service_date="2026-01-06"),
        COUNTY,
    )
    plain = await register(client, ("insurance", "resident"))
    # 300.00 outpatient at a township: 200.00 deductible, 100.00 x 0.45 = 45.00; out of pocket 85 % (bucket 80-90 %).
    await settle(
        client,
        bill(plain, ("A", 30_000), clinic_id="T001", visit_type="outpatient", service_date="2026-01-07"),
        TOWNSHIP,
    )
    # A reversed settlement does not count.
    reversed_one = await settle(
        client,
        bill(plain, ("A", 10_000), clinic_id="T001", visit_type="outpatient", service_date="2026-01-09"),
        TOWNSHIP,
    )
    response = await client.post(
        f"/v1/settlements/{reversed_one['settlement_id']}/reversal", json={"request_id": "stats-rev"}, headers=TOWNSHIP
    )
    assert response.status == 201
    capped = await register(client, ("insurance", "resident"))
    # 7,000.00 at a village: (7,000 - 200) x 0.50 = 3,400.00, cut to the 3,000.00 outpatient cap;
    # out of pocket 4,000.00 = 57.14 % (bucket 50-60 %).
    await settle(
        client,
        bill(capped, ("A", 700_000), clinic_id="V001", visit_type="outpatient", service_date="2026-01-08"),
        VILLAGE,
    )


async def stats(client, by: str) -> dict:
    response = await client.get(f"/v1/finance/stats?by={by}&{WEEK}", headers=FINANCE)
    assert response.status == 200, await response.text()
    return {group[by]: group for group in (await response.json())["groups"]}


async def test_month_totals_median_and_distribution(client, week):
    month = (await stats(client, "month"))["2026-01"]
    assert month["settlements"] == 3 and month["people_served"] == 3
    assert month["total_fen"] == 2_000_000 + 30_000 + 700_000
    assert month["insurance_fen"] == 1_275_000 + 4_500 + 300_000
    assert month["veteran_subsidy_fen"] == 291_000 and month["hardship_aid_fen"] == 135_800
    assert month["out_of_pocket_fen"] == 298_200 + 25_500 + 400_000
    assert month["median_out_of_pocket_share"] == "0.5714"
    assert month["out_of_pocket_share_distribution"] == [0, 1, 0, 0, 0, 1, 0, 0, 1, 0]
    assert (month["insurance_cap_reached"], month["veteran_subsidy_cap_reached"]) == (1, 0)


async def test_by_level_programme_and_tier(client, week):
    level = await stats(client, "level")
    assert {name: group["settlements"] for name, group in level.items()} == {"county": 1, "township": 1, "village": 1}
    assert level["village"]["insurance_cap_reached"] == 1
    programme = await stats(client, "programme")
    assert {name: group["settlements"] for name, group in programme.items()} == {
        "insurance": 3,
        "veteran_subsidy": 1,
        "hardship_aid": 1,
    }
    tier = await stats(client, "tier")
    assert tier["minimum_allowance"]["hardship_aid_fen"] == 135_800 and tier["none"]["settlements"] == 2
    category = await stats(client, "category")
    assert category["priority_care"]["veteran_subsidy_fen"] == 291_000
    region = await stats(client, "region")
    assert sum(group["settlements"] for group in region.values()) == 3


async def test_csv_and_refusals(client, week):
    response = await client.get(f"/v1/finance/stats?by=level&{WEEK}&format=csv", headers=FINANCE)
    text = (await response.read()).decode("utf-8")
    assert text.startswith("\ufefflevel,settlements,people_served,total_fen")
    assert len(text.strip().splitlines()) == 4
    assert (await client.get(f"/v1/finance/stats?by=level&{WEEK}", headers=COUNTY)).status == 403
    response = await client.get("/v1/finance/stats?by=colour", headers=FINANCE)
    assert response.status == 422 and (await response.json())["field"] == "by"
