"""Re-adjudication's adjustments in the finance reports, on the day they are booked: the daily and monthly
statements, the range reconciliation and the statistics agree with each other and with figures worked out by
hand, and a month's figures are the sum of its days'.

On a database of its own (``own_gateway``), so every figure is exact, with the background runner off: the
test works the list itself, as ``medsettle adjustments run`` does, choosing the booking day of each
re-adjudication, so the adjustments of one story fall on two days in two months.

The story: a resident, insured, has two county admissions (10 May and 12 June 2026), settled today (T)
without aid. Today the civil-affairs bureau confirms 低保 (``minimum_allowance``) from 1 May: re-adjudicated
on T, both stays get their aid. Then the 低保 is found to have ended on 1 June: re-adjudicated on N, the first
day of the next month, the June stay gives its aid back.

Worked by hand from policies/default.toml (county, inpatient; category B has 10 % 先行自付, C is not covered):

=============  =========  ==========  =========  ===============  ===============  ===========
stay           total      eligible    insurance  unpaid eligible  低保 aid (70 %)  patient
=============  =========  ==========  =========  ===============  ===============  ===========
10 May         9,500.00   9,080.00    6,360.00   2,720.00         1,904.00         3,140.00
12 June        11,000.00  10,580.00   7,485.00   3,095.00         2,166.50         3,515.00
=============  =========  ==========  =========  ===============  ===============  ===========

insurance = (eligible - 600.00 county deductible) x 0.75; the aid's first band (to 10,000.00) pays 70 % of
what insurance left unpaid of the eligible amount. The patient column is what they paid on the day, no aid.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from adapters import readjudication
from adapters.catalogue_store import load_catalogue
from adapters.policy_files import load_policy_book, policy_dir
from gateway.service import china_today
from tests.integration.conftest import SignedClient, own_gateway, register
from tests.integration.processes import medsettle
from tests.integration.test_readjudication import STAYS, change_registry, memberships, settle_stays

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
CLINIC = "C001"  # the county hospital, where settle_stays settles
INSURANCE = 636_000 + 748_500
PATIENT_PAID = 314_000 + 351_500
TOTAL = 950_000 + 1_100_000
AID_MAY, AID_JUNE = 190_400, 216_650


class Story(msgspec.Struct, frozen=True):
    client: SignedClient
    pool: asyncpg.Pool
    url: str
    today: dt.date  # T: the settlements and the first re-adjudication are booked on it
    next_month: dt.date  # N: the second re-adjudication is booked on it


async def work_the_list(pool: asyncpg.Pool, booked_on: dt.date) -> list[readjudication.Outcome]:
    """Re-adjudicate every pending person-year now, booking on ``booked_on`` (the runner books on its today)."""
    book = load_policy_book(policy_dir())
    async with pool.acquire() as connection:
        catalogue = await load_catalogue(connection)
    done = []
    for _ in range(100):
        outcome = await readjudication.run_one(pool, policy_for=book.in_force, catalogue=catalogue, today=booked_on)
        if outcome is None:
            return done
        assert not outcome.needs_review, outcome
        done.append(outcome)
    raise AssertionError("the list did not empty")


def first_of_next_month(day: dt.date) -> dt.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1]) + dt.timedelta(days=1)


@pytest.fixture(scope="module")
async def story(database_url: str, settings: Any) -> AsyncIterator[Story]:
    quiet = msgspec.structs.replace(settings, readjudicate_per_second=0)  # the test books the days itself
    async with own_gateway(database_url, quiet) as (client, pool, url):
        today = china_today()
        person = await register(client, ("insurance", "resident"))
        settled = await settle_stays(client, person, STAYS[:2])
        assert [answer["hardship_aid"] for answer in settled] == [0, 0]
        assert [answer["insurance"] for answer in settled] == [636_000, 748_500]
        await change_registry(client, person, memberships(aid="2026-05-01"))
        assert len(await work_the_list(pool, today)) == 1
        await change_registry(client, person, memberships(aid="2026-05-01", struck_off_on="2026-06-01"))
        next_month = first_of_next_month(today)
        assert len(await work_the_list(pool, next_month)) == 1
        yield Story(client, pool, url, today, next_month)


async def get(client: SignedClient, path: str) -> Any:
    response = await client.get(path, headers=FINANCE)
    assert response.status == 200, await response.text()
    return await response.json()


async def daily_at_clinic(story: Story, day: dt.date) -> dict[str, dict[str, int]]:
    statement = await get(story.client, f"/v1/finance/daily?date={day.isoformat()}")
    (clinic,) = [block for block in statement["by_clinic"] if block["clinic_id"] == CLINIC]
    return clinic["funds"]


async def monthly_at_clinic(story: Story, day: dt.date) -> dict[str, dict[str, Any]]:
    statement = await get(story.client, f"/v1/finance/monthly?month={day.strftime('%Y-%m')}")
    return {
        fund["account"]: next((line for line in fund["clinics"] if line["clinic_id"] == CLINIC), None)
        for fund in statement["by_fund"]
    }


FIGURES = ("settlements_count", "settlements_fen", "reversals_count", "reversals_fen", "adjustments_count",
           "adjustments_fen", "net_fen")  # fmt: skip


def figures(line: dict[str, Any] | None) -> dict[str, int]:
    return {name: line[name] if line else 0 for name in FIGURES}


async def test_the_daily_statement_books_each_re_adjudication_on_its_own_day(story: Story) -> None:
    on_t = await daily_at_clinic(story, story.today)
    assert figures(on_t["aid_fund"]) | {"net_fen": 0} == figures(None) | {
        "adjustments_count": 2,
        "adjustments_fen": AID_MAY + AID_JUNE,
    }
    assert on_t["aid_fund"]["net_fen"] == AID_MAY + AID_JUNE
    assert on_t["patient"]["adjustments_fen"] == -(AID_MAY + AID_JUNE)
    assert on_t["patient"]["net_fen"] == PATIENT_PAID - AID_MAY - AID_JUNE
    assert (on_t["insurance_fund"]["adjustments_count"], on_t["insurance_fund"]["net_fen"]) == (0, INSURANCE)
    on_n = await daily_at_clinic(story, story.next_month)
    assert (on_n["aid_fund"]["adjustments_count"], on_n["aid_fund"]["adjustments_fen"]) == (1, -AID_JUNE)
    assert (on_n["patient"]["adjustments_count"], on_n["patient"]["net_fen"]) == (1, AID_JUNE)


async def test_a_month_is_the_sum_of_its_days_adjustments_included(story: Story) -> None:
    for day in (story.today, story.next_month):
        month = await monthly_at_clinic(story, day)
        days = await daily_at_clinic(story, day)  # the only day of its month with anything booked
        for account in ("insurance_fund", "priority_care_fund", "aid_fund", "patient"):
            assert figures(month[account]) == figures(days[account]), (day, account)
    this_month = await monthly_at_clinic(story, story.today)
    assert this_month["aid_fund"]["adjustments_count"] == 2
    assert this_month["aid_fund"]["net_fen"] == AID_MAY + AID_JUNE
    assert this_month["patient"]["net_fen"] == PATIENT_PAID - AID_MAY - AID_JUNE
    next_month = await monthly_at_clinic(story, story.next_month)
    assert figures(next_month["aid_fund"]) == figures(None) | {
        "adjustments_count": 1,
        "adjustments_fen": -AID_JUNE,
        "net_fen": -AID_JUNE,
    }
    statement = await get(story.client, f"/v1/finance/monthly?month={story.next_month.strftime('%Y-%m')}")
    (aid,) = [fund for fund in statement["by_fund"] if fund["account"] == "aid_fund"]
    assert (aid["adjustments_count"], aid["adjustments_fen"], aid["net_fen"]) == (1, -AID_JUNE, -AID_JUNE)

    # The CSV (and the workbook, from the same tables) has the two columns; a SUM over Net is the month's net.
    result = medsettle(story.url, "report", "monthly", "--month", story.next_month.strftime("%Y-%m"), "--format", "csv")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.lstrip("\ufeff").splitlines()
    assert "调整笔数 Adjustments,调整金额 Adjusted,净额 Net" in header
    assert any(row.endswith(",1,-2166.50,-2166.50") for row in rows), rows


async def test_the_range_reconciliation_shows_the_adjustments_beside_and_never_compares_them(story: Story) -> None:
    body = {
        "clinic_id": CLINIC,
        "from": story.today.isoformat(),
        "to": story.next_month.isoformat(),
        "totals": {
            "settlements": 2,
            "total": TOTAL,
            "insurance": INSURANCE,
            "veteran_subsidy": 0,
            "hardship_aid": 0,
            "out_of_pocket": PATIENT_PAID,
        },
    }
    response = await story.client.post("/v1/finance/reconciliation/totals", json=body, headers=FINANCE)
    assert response.status == 200, await response.text()
    result = await response.json()
    # The clinic's figures are the settlements' as they were settled: adjustments are not the clinic's.
    assert result["balanced"] is True and result["differences"] == []
    assert result["days"] == [
        {"date": story.today.isoformat(), "settlements": 2, "total": TOTAL, "adjustments": 2},
        {"date": story.next_month.isoformat(), "settlements": 0, "total": 0, "adjustments": 1},
    ]
    assert result["adjustments_count"] == 3
    assert result["adjustments_sums_fen"] == {
        "total": 0,
        "insurance": 0,
        "veteran_subsidy": 0,
        "hardship_aid": AID_MAY,
        "out_of_pocket": -AID_MAY,
        "other_funds": {},
    }
    assert result["net_sums_fen"] == {
        "total": TOTAL,
        "insurance": INSURANCE,
        "veteran_subsidy": 0,
        "hardship_aid": AID_MAY,
        "out_of_pocket": PATIENT_PAID - AID_MAY,
        "other_funds": {},
    }
    # The same as the daily statements of the range add up to.
    days = [await daily_at_clinic(story, day) for day in (story.today, story.next_month)]
    assert sum(day["aid_fund"]["adjustments_fen"] for day in days) == result["adjustments_sums_fen"]["hardship_aid"]
    assert sum(day["patient"]["net_fen"] for day in days) == result["net_sums_fen"]["out_of_pocket"]

    # Another clinic's range has none.
    nothing = dict.fromkeys(("settlements", "total", "insurance", "out_of_pocket"), 0)
    response = await story.client.post(
        "/v1/finance/reconciliation/totals",
        json=body | {"clinic_id": "T001", "totals": body["totals"] | nothing},
        headers=FINANCE,
    )
    other = await response.json()
    assert (other["adjustments_count"], other["adjustments_sums_fen"]["hardship_aid"], other["days"]) == (0, 0, [])


async def stats(story: Story, by: str, start: dt.date, end: dt.date) -> dict[str, dict[str, Any]]:
    report = await get(story.client, f"/v1/finance/stats?by={by}&from={start.isoformat()}&to={end.isoformat()}")
    return {group[by]: group for group in report["groups"]}


NO_MONEY = {"insurance": 0, "veteran_subsidy": 0, "hardship_aid": 0, "out_of_pocket": 0}


async def test_statistics_count_adjustments_in_the_period_they_are_booked(story: Story) -> None:
    year = dt.date(2026, 1, 1), story.next_month  # the stays' service dates and both booking days
    (clinic,) = (await stats(story, "clinic", *year)).values()
    assert (clinic["clinic"], clinic["settlements"], clinic["adjustments_count"]) == (CLINIC, 2, 3)
    assert clinic["adjustments_fen"] == NO_MONEY | {"hardship_aid": AID_MAY, "out_of_pocket": -AID_MAY}
    assert clinic["net_fen"] == {
        "insurance": INSURANCE,
        "veteran_subsidy": 0,
        "hardship_aid": AID_MAY,
        "out_of_pocket": PATIENT_PAID - AID_MAY,
    }
    (person,) = (await stats(story, "person", *year)).values()
    assert person["net_fen"] == clinic["net_fen"] and person["adjustments_count"] == 3
    assert "*" in person["person"]

    # By month, the settlements count in the months they were served, the adjustments in those they were booked.
    months = await stats(story, "month", *year)
    may, june = months["2026-05"], months["2026-06"]
    assert (may["settlements"], may["adjustments_count"], june["settlements"]) == (1, 0, 1)
    booked_t, booked_n = months[story.today.strftime("%Y-%m")], months[story.next_month.strftime("%Y-%m")]
    assert (booked_t["settlements"], booked_t["adjustments_count"], booked_n["adjustments_count"]) == (0, 2, 1)
    assert booked_t["adjustments_fen"]["hardship_aid"] == AID_MAY + AID_JUNE
    assert booked_n["net_fen"] == NO_MONEY | {"hardship_aid": -AID_JUNE, "out_of_pocket": AID_JUNE}

    # A period of this month's booking days only: the adjustments of T, and no settlement (served in May, June).
    (level,) = (await stats(story, "level", story.today.replace(day=1), story.today)).values()
    assert (level["level"], level["settlements"], level["adjustments_count"]) == ("county", 0, 2)
    programme = await stats(story, "programme", *year)
    assert programme["hardship_aid"]["adjustments_count"] == 3 and programme["insurance"]["adjustments_count"] == 0

    response = await story.client.get(
        f"/v1/finance/stats?by=clinic&from={year[0].isoformat()}&to={year[1].isoformat()}&format=csv", headers=FINANCE
    )
    header, row = (await response.text()).lstrip("\ufeff").splitlines()
    columns = dict(zip(header.split(","), row.split(","), strict=True))
    assert columns["adjustments_count"] == "3" and columns["hardship_aid_adjustments_fen"] == str(AID_MAY)
    assert columns["out_of_pocket_net_fen"] == str(PATIENT_PAID - AID_MAY)


async def test_the_orders_are_listed_by_report_adjustments_as_by_adjustments_list(story: Story) -> None:
    options = ("--from", story.today.isoformat(), "--to", story.next_month.isoformat())
    for form in ("table", "csv", "json"):
        listed = medsettle(story.url, "adjustments", "list", *options, "--format", form)
        reported = medsettle(story.url, "report", "adjustments", *options, "--format", form)
        assert listed.returncode == reported.returncode == 0, reported.stderr
        assert reported.stdout == listed.stdout
    assert "payable" in reported.stdout and "overpayment" in reported.stdout
    assert "hardship_aid" in reported.stdout
    only_open = medsettle(story.url, "report", "adjustments", *options, "--status", "open", "--format", "csv")
    assert only_open.returncode == 0 and "overpayment" not in only_open.stdout and ",payable," in only_open.stdout
    assert medsettle(story.url, "report", "adjustments", "--status", "lost").returncode == 2
