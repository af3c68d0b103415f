"""Finance exports as a finance office opens them: the daily statement as an xlsx workbook (one scope per
sheet, yuan with two decimals, Chinese and English headers, a totals row, the day's reversals) and as CSV
files (one scope each), over HTTP and from the command line; each read back with a real reader and its
totals checked against SQL sums over the ledger."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import openpyxl
import pytest

from gateway.service import china_today
from settlement.money import format_yuan_grouped
from tests.integration.conftest import bill, register
from tests.integration.processes import medsettle

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
CLINIC = "V083"
SCOPE_SHEETS = ["机构 Clinics", "级别 Levels", "区域 Regions", "合计 Total", "冲正 Reversals"]


async def settle_and_reverse(client: Any) -> tuple[list[dict[str, Any]], str]:
    """Three bills settled today at one village clinic, the insurance paying part; the second reversed."""
    person = await register(client, ("insurance", "resident"))
    answers = []
    for amount in (40_000, 25_050, 7_301):
        response = await client.post(
            "/v1/settlements",
            json=bill(person, ("A", amount), ("C", 1_999), clinic_id=CLINIC, visit_type="outpatient"),
            headers={"X-Terminal-Id": f"term-{CLINIC}"},
        )
        answers.append(await response.json())
        assert response.status == 201, answers[-1]
    assert answers[0]["insurance"] > 0
    reversed_id = answers[1]["settlement_id"]
    response = await client.post(
        f"/v1/settlements/{reversed_id}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billed twice"},
        headers={"X-Terminal-Id": f"term-{CLINIC}"},
    )
    assert response.status == 201, await response.text()
    return answers, reversed_id


async def ledger_sums(pool: asyncpg.Pool, day: dt.date) -> dict[str, int]:
    """The day's figures straight from the ledger, in fen, keyed by the export's English header."""
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            """
            SELECT count(*) FILTER (WHERE account = 'clinic' AND kind = 'settlement' AND amount <> 0) AS settlements,
                   count(*) FILTER (WHERE account = 'clinic' AND kind = 'reversal' AND amount <> 0) AS reversals,
                   coalesce(-sum(amount) FILTER (WHERE account = 'clinic' AND kind = 'settlement'), 0) AS billed,
                   coalesce(sum(amount) FILTER (WHERE account = 'clinic' AND kind = 'reversal'), 0) AS reversed,
                   coalesce(-sum(amount) FILTER (WHERE account = 'clinic'), 0) AS net,
                   coalesce(sum(amount) FILTER (WHERE account = 'insurance_fund' AND kind = 'settlement'), 0) AS ins,
                   coalesce(-sum(amount) FILTER (WHERE account = 'insurance_fund' AND kind = 'reversal'), 0) AS ins_rev,
                   coalesce(sum(amount) FILTER (WHERE account = 'patient'), 0) AS patient_net
            FROM ledger_entries WHERE booked_on = $1
            """,
            day,
        )
    row = {name: int(value) for name, value in row.items()}  # sum() of bigint is numeric
    return {
        "Settlements": row["settlements"],
        "Reversals": row["reversals"],
        "Billed": row["billed"],
        "Reversed": row["reversed"],
        "Net": row["net"],
        "insurance paid": row["ins"],
        "insurance reversed": row["ins_rev"],
        "patient net": row["patient_net"],
    }


def fen(value: Any) -> int:
    """A money cell (a number) or CSV field (yuan text) back in fen, exactly."""
    amount = Decimal(str(value)) * 100
    assert amount == amount.to_integral_value(), value
    return int(amount)


def by_english(header: list[str], row: list[Any]) -> dict[str, Any]:
    """A row keyed by the English part of each header ("结算金额 Billed" -> "Billed")."""
    keyed = {}
    for name, value in zip(header, row, strict=True):
        english = name.split(" ", 1)[1] if " " in name else name
        keyed[english.replace("basic medical insurance ", "insurance ")] = value
    return keyed


def sheet_rows(sheet: Any) -> tuple[list[str], list[list[Any]]]:
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    return rows[0], rows[1:]


def figures(keyed: dict[str, Any], names: list[str]) -> dict[str, int]:
    return {name: int(keyed[name]) if name in ("Settlements", "Reversals") else fen(keyed[name]) for name in names}


async def test_daily_xlsx_has_one_scope_per_sheet_totals_equal_to_the_ledger_and_the_reversals(client, pool):
    answers, reversed_id = await settle_and_reverse(client)
    today = china_today()
    response = await client.get(f"/v1/finance/daily?date={today.isoformat()}&format=xlsx", headers=FINANCE)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert f'filename="daily-{today.isoformat()}.xlsx"' in response.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(await response.read()))
    assert book.sheetnames == [f"{name} {today.isoformat()}" for name in SCOPE_SHEETS]

    expected = await ledger_sums(pool, today)
    insurance = next(name for name in expected if name.startswith("insurance "))
    names = list(expected)
    totals = {}
    for scope_sheet in book.worksheets[:3]:  # clinics, levels, regions: each closes with its totals row
        header, rows = sheet_rows(scope_sheet)
        assert header[0].split(" ")[0] in ("机构编码", "级别", "区域")
        assert "结算金额 Billed" in header and "净额 Net" in header
        *lines, total = rows
        assert total[0] == "合计 Total"
        keyed_total = by_english(header, total)
        totals[scope_sheet.title] = figures(keyed_total, names)
        assert totals[scope_sheet.title] == expected, (scope_sheet.title, insurance)
        # Each line is one scope value, so the totals row is the plain sum of the lines above it.
        assert sum(fen(by_english(header, line)["Net"]) for line in lines) == expected["Net"]
        money_cell = scope_sheet.cell(row=2, column=header.index("结算金额 Billed") + 1)
        assert money_cell.number_format == "#,##0.00"
    header, (total_row,) = sheet_rows(book.worksheets[3])
    assert figures(by_english(header, total_row), names) == expected

    header, rows = sheet_rows(book.worksheets[0])
    (clinic,) = [by_english(header, row) for row in rows if row[0] == CLINIC]
    assert clinic["Level"] == "村卫生服务站 village"
    assert clinic["Settlements"] == 3 and clinic["Reversals"] == 1
    assert fen(clinic["Billed"]) == sum(answer["total"] for answer in answers)
    assert fen(clinic["Reversed"]) == answers[1]["total"]
    assert fen(clinic["insurance reversed"]) == answers[1]["insurance"]

    header, rows = sheet_rows(book.worksheets[4])
    (reversal,) = [by_english(header, row) for row in rows if row[1] == reversed_id]
    assert reversal["Clinic ID"] == CLINIC and reversal["Reason"] == "billed twice"
    assert fen(reversal["Total"]) == answers[1]["total"]
    assert fen(reversal["Patient returned"]) == answers[1]["out_of_pocket"]
    assert rows[-1][0] == "合计 Total"


async def test_daily_csv_is_one_scope_a_file_in_yuan_that_a_sum_counts_once(client, pool, database_url):
    answers, reversed_id = await settle_and_reverse(client)
    today = china_today()
    expected = await ledger_sums(pool, today)
    files = {}
    for scope in ("clinic", "level", "region", "total", "reversals"):
        response = await client.get(
            f"/v1/finance/daily?date={today.isoformat()}&format=csv&scope={scope}", headers=FINANCE
        )
        assert response.status == 200, await response.text()
        files[scope] = (await response.read()).decode("utf-8")
        assert files[scope].startswith("\ufeff")
    for scope in ("clinic", "level", "region"):
        reader = csv.reader(io.StringIO(files[scope].lstrip("\ufeff")))
        header, *rows = list(reader)
        assert "合计 Total" not in [row[0] for row in rows]  # no totals row: a SUM counts each bill once
        keyed = [by_english(header, row) for row in rows]
        assert all(row["Net"].count(".") == 1 and len(row["Net"].split(".")[1]) == 2 for row in keyed)
        for name in ("Billed", "Reversed", "Net", "insurance paid", "patient net"):
            assert sum(fen(row[name]) for row in keyed) == expected[name], (scope, name)
    header, total = list(csv.reader(io.StringIO(files["total"].lstrip("\ufeff"))))
    assert figures(by_english(header, total), list(expected)) == expected
    assert reversed_id in files["reversals"] and "billed twice" in files["reversals"]

    result = medsettle(
        database_url, "report", "daily", "--date", today.isoformat(), "--format", "csv", "--scope", "total"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == files["total"].replace("\r\n", "\n")  # the subprocess is read in text mode
    assert answers


async def test_the_cli_writes_the_same_workbook_as_the_api(client, database_url, tmp_path):
    await settle_and_reverse(client)
    today = china_today()
    path = tmp_path / "daily.xlsx"
    result = medsettle(
        database_url, "report", "daily", "--date", today.isoformat(), "--format", "xlsx", "--output", str(path)
    )
    assert result.returncode == 0, result.stderr
    response = await client.get(f"/v1/finance/daily?date={today.isoformat()}&format=xlsx", headers=FINANCE)
    from_api = openpyxl.load_workbook(io.BytesIO(await response.read()))
    from_cli = openpyxl.load_workbook(path)
    assert from_cli.sheetnames == from_api.sheetnames
    for ours, theirs in zip(from_cli.worksheets, from_api.worksheets, strict=True):
        assert list(ours.iter_rows(values_only=True)) == list(theirs.iter_rows(values_only=True))


@pytest.mark.parametrize(
    ("query", "field"),
    [("format=pdf", "format"), ("format=csv&scope=everything", "scope"), ("format=xlsx&date=2026-13-01", "date")],
)
async def test_bad_export_parameters_are_named(client, query, field):
    response = await client.get(f"/v1/finance/daily?{query}", headers=FINANCE)
    assert response.status == 422 and response.content_type == "application/problem+json"
    assert (await response.json())["field"] == field


async def test_the_printable_statement_has_every_scope_its_totals_the_reversals_and_room_to_sign(client, pool):
    answers, reversed_id = await settle_and_reverse(client)
    today = china_today()
    response = await client.get(f"/v1/finance/daily?date={today.isoformat()}&format=html", headers=FINANCE)
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert "医疗费用结算日报表 Daily settlement statement" in page and "@page { size: A4 landscape" in page
    assert "未结 Not closed" in page  # today can still change, and the paper says so
    for caption in ("合计 Total", "机构 Clinics", "级别 Levels", "区域 Regions", "冲正 Reversals"):
        assert f"<caption>{caption} {today.isoformat()}</caption>" in page
    for signature in ("制表人 Prepared by", "审核人 Checked by", "负责人 Approved by", "单位盖章 Seal"):
        assert signature in page
    expected = await ledger_sums(pool, today)
    # The total scope's one row, money with thousands separators: the day's net as the ledger has it.
    assert f'<td class="money">{format_yuan_grouped(expected["Net"])}</td>' in page
    assert reversed_id in page and "billed twice" in page
    assert page.count('<tr class="totals">') == 4  # clinics, levels, regions, reversals: the total is its own row

    closed = await client.get("/v1/finance/daily?date=2026-02-04&format=html", headers=FINANCE)
    assert "已结 Closed" in await closed.text()
    assert answers
