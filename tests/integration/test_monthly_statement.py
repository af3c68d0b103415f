"""The monthly statement per fund and clinic by booking month (拨付, 清算): JSON, xlsx and CSV over HTTP and
from the command line, each fund's figures equal to SQL sums over the ledger, and a reversal booked in a
later month shown in that month, leaving the closed month as it was."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import asyncpg
import openpyxl
import pytest

from gateway.service import china_today
from settlement.money import format_yuan_grouped
from tests.integration.processes import medsettle
from tests.integration.test_finance import synthetic_day, synthetic_reversal
from tests.integration.test_finance_exports import CLINIC, FINANCE, fen, settle_and_reverse

pytestmark = pytest.mark.integration


async def monthly(client: Any, month: str, form: str = "json") -> Any:
    response = await client.get(f"/v1/finance/monthly?month={month}&format={form}", headers=FINANCE)
    assert response.status == 200, await response.text()
    return await response.json() if form == "json" else await response.read()


async def ledger_by_account(pool: asyncpg.Pool, first: dt.date, last: dt.date) -> dict[str, tuple[int, int, int]]:
    """Each fund's (and the patient's) paid, reversed and adjusted in fen over the days, straight from the
    ledger (other tests of the run re-adjudicate on these days too)."""
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT account, coalesce(sum(amount) FILTER (WHERE kind = 'settlement'), 0) AS paid,"
            " coalesce(-sum(amount) FILTER (WHERE kind = 'reversal'), 0) AS given_back,"
            " coalesce(sum(amount) FILTER (WHERE kind = 'adjustment'), 0) AS adjusted"
            " FROM ledger_entries WHERE booked_on BETWEEN $1 AND $2 AND account <> 'clinic' GROUP BY 1",
            first,
            last,
        )
    # numeric sums as int
    return {row["account"]: (int(row["paid"]), int(row["given_back"]), int(row["adjusted"])) for row in rows}


def month_of(day: dt.date) -> tuple[str, dt.date, dt.date]:
    first = day.replace(day=1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return first.strftime("%Y-%m"), first, last


async def test_the_month_per_fund_and_clinic_equals_the_ledger_in_json_xlsx_and_csv(client, pool, database_url):
    answers, _ = await settle_and_reverse(client)
    month, first, last = month_of(china_today())
    statement = await monthly(client, month)
    assert statement["month"] == month and statement["closed"] is False
    assert statement["period"] == {"from": first.isoformat(), "to": last.isoformat()}
    expected = await ledger_by_account(pool, first, last)
    funds = {fund["account"]: fund for fund in statement["by_fund"]}
    assert list(funds)[-1] == "patient" and {"insurance_fund", "priority_care_fund", "aid_fund"} <= set(funds)
    for account, (paid, given_back, adjusted) in expected.items():
        fund = funds[account]
        assert (fund["settlements_fen"], fund["reversals_fen"], fund["adjustments_fen"], fund["net_fen"]) == (
            paid,
            given_back,
            adjusted,
            paid - given_back + adjusted,
        )
        assert sum(line["net_fen"] for line in fund["clinics"]) == fund["net_fen"]
    (insurance_here,) = [line for line in funds["insurance_fund"]["clinics"] if line["clinic_id"] == CLINIC]
    assert insurance_here["level"] == "village"
    assert insurance_here["settlements_fen"] >= sum(answer["insurance"] for answer in answers)
    assert insurance_here["reversals_fen"] >= answers[1]["insurance"]

    book = openpyxl.load_workbook(io.BytesIO(await monthly(client, month, "xlsx")))
    assert book.sheetnames[:2] == [f"按基金 By fund {month}", f"明细 Fund x clinic {month}"]
    assert len(book.sheetnames) == 2 + len(funds)  # and a sheet per fund
    summary = [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    assert summary[0] == [
        "基金编码 Fund code", "基金名称 Fund", "结算笔数 Settlements", "结算金额 Paid", "冲正笔数 Reversals",
        "冲正金额 Reversed", "调整笔数 Adjustments", "调整金额 Adjusted", "净额 Net",
    ]  # fmt: skip
    by_code = {row[0]: row for row in summary[1:-1]}
    assert by_code["insurance"][1] == "城乡居民基本医疗保险 basic medical insurance"
    assert fen(by_code["insurance"][3]) == expected["insurance_fund"][0]
    assert summary[-1][0] == "合计 Total"
    net = sum(paid - given_back + adjusted for paid, given_back, adjusted in expected.values())
    assert fen(summary[-1][8]) == net
    insurance_sheet = [list(row) for row in book.worksheets[2].iter_rows(values_only=True)]
    assert insurance_sheet[-1][0] == "合计 Total" and fen(insurance_sheet[-1][-1]) == funds["insurance_fund"]["net_fen"]

    text = (await monthly(client, month, "csv")).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    # Every line is one fund's to one clinic: a SUM over the Net column is the month's bills, net.
    assert sum(fen(row["净额 Net"]) for row in rows) == net
    result = medsettle(database_url, "report", "monthly", "--month", month, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == text.replace("\r\n", "\n")


async def test_a_reversal_booked_next_month_shows_next_month_and_the_closed_month_stays(client, pool):
    clinic = "V086"
    ids = await synthetic_day(client, pool, clinic_id=clinic, booked_on=dt.date(2026, 3, 10), count=3)
    march = await monthly(client, "2026-03")
    await synthetic_reversal(pool, ids[0], dt.date(2026, 4, 2))
    assert await monthly(client, "2026-03") == march
    assert march["closed"] is True

    def patient_at_clinic(statement: dict[str, Any]) -> dict[str, Any]:
        (patient,) = [fund for fund in statement["by_fund"] if fund["account"] == "patient"]
        (line,) = [line for line in patient["clinics"] if line["clinic_id"] == clinic]
        return line

    assert patient_at_clinic(march)["settlements_count"] == 3 and patient_at_clinic(march)["net_fen"] == 3 * 12_345
    april = patient_at_clinic(await monthly(client, "2026-04"))
    assert (april["settlements_count"], april["reversals_count"], april["net_fen"]) == (0, 1, -12_345)


@pytest.mark.parametrize("month", ["2026-13", "2026-3", "may", "2026-03-01"])
async def test_a_bad_month_is_named(client, month):
    response = await client.get(f"/v1/finance/monthly?month={month}", headers=FINANCE)
    assert response.status == 422 and response.content_type == "application/problem+json"
    assert (await response.json())["field"] == "month"


async def test_a_terminal_may_not_read_the_monthly_statement(client):
    response = await client.get("/v1/finance/monthly", headers={"X-Terminal-Id": f"term-{CLINIC}"})
    assert response.status == 403


async def test_the_printable_monthly_statement_has_a_table_per_fund_with_its_totals(client, pool):
    await settle_and_reverse(client)
    month, first, last = month_of(china_today())
    response = await client.get(f"/v1/finance/monthly?month={month}&format=html", headers=FINANCE)
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert "基金拨付月报表 Monthly statement by fund and clinic" in page and "负责人 Approved by" in page
    assert f"<caption>按基金 By fund {month}</caption>" in page
    assert "<caption>城乡居民基本医疗保险 basic medical insurance</caption>" in page
    expected = await ledger_by_account(pool, first, last)
    paid, given_back, adjusted = expected["insurance_fund"]
    assert f'<td class="money">{format_yuan_grouped(paid - given_back + adjusted)}</td>' in page
