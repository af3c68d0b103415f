"""The monthly statement per fund and clinic by booking month: what each fund owes each clinic (拨付, 清算).

Like the daily statement (``adapters.finance``) it is computed only from ``ledger_entries`` by
``booked_on``, over every day of one month (China dates): for each fund (and the patient) and each
clinic, the settlements, reversals and re-adjudication's adjustments booked in the month, and the net.
A reversal or an adjustment booked in a later month shows in that month, against the clinic and fund it
moves, so a closed month never changes, the months add up to the ledger, and a month's figures are the
sum of its days' daily statements (``adapters.finance``), adjustments included.

It answers ``MonthlyStatement`` (``adapters.report_models``); ``monthly_tables`` lays it out for
``adapters.xlsx_export``: a sheet per fund (its clinics, with a totals row), a summary by fund, and
one table of every fund × clinic line for CSV, where a SUM over a money column is the month's total
(each amount is one fund's to one clinic, counted once).
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

import asyncpg

from adapters.finance import LEDGER_KIND_TOTALS, statement_accounts
from adapters.fund_names import FundDirectory
from adapters.report_models import FundEntry, MonthlyClinicLine, MonthlyFund, MonthlyStatement, Period
from adapters.statement_export import PLACE_COLUMNS, level_name
from adapters.xlsx_export import Column, Table

_MONTH_LINES = f"""
SELECT l.account, l.clinic_id,
       {LEDGER_KIND_TOTALS}
FROM ledger_entries l
WHERE l.booked_on BETWEEN $1 AND $2 AND l.account <> 'clinic'
GROUP BY 1, 2
ORDER BY 2
"""

_CLINICS = "SELECT clinic_id, name, level, region FROM clinics WHERE clinic_id = any($1::text[])"


def month_bounds(month: dt.date) -> Period:
    """The first and last day of ``month``'s month."""
    days = calendar.monthrange(month.year, month.month)[1]
    return Period(from_=month.replace(day=1), to=month.replace(day=days))


def parse_month(text: str) -> dt.date:
    """``YYYY-MM`` as the month's first day; ValueError for anything else."""
    if len(text) != 7 or text[4] != "-" or not (text[:4] + text[5:]).isascii():
        raise ValueError(f"{text!r} is not a month, YYYY-MM")
    return dt.date.fromisoformat(f"{text}-01")


async def monthly_statement(
    connection: asyncpg.Connection, month: dt.date, *, today: dt.date, funds: FundDirectory | None = None
) -> MonthlyStatement:
    """Each fund's (and the patient's) settlements, reversals, adjustments and net per clinic, booked in
    ``month``'s month."""
    directory = funds or FundDirectory()
    period = month_bounds(month)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        lines = await connection.fetch(_MONTH_LINES, period.from_, period.to)
        clinic_ids = sorted({row["clinic_id"] for row in lines})
        clinics = {row["clinic_id"]: row for row in await connection.fetch(_CLINICS, clinic_ids)}
    accounts = statement_accounts(directory, (row["account"] for row in lines))
    by_account: dict[str, list[asyncpg.Record]] = {entry.account: [] for entry in accounts}
    for row in lines:
        by_account[row["account"]].append(row)
    return MonthlyStatement(
        month=period.from_.strftime("%Y-%m"),
        period=period,
        closed=period.to < today,
        basis="ledger_entries booked in this month (China dates); the ledger is append-only, so a closed month "
        "never changes",
        funds=accounts,
        by_fund=[_fund(entry, by_account[entry.account], clinics) for entry in accounts],
    )


def _fund(entry: FundEntry, rows: list[asyncpg.Record], clinics: dict[str, asyncpg.Record]) -> MonthlyFund:
    lines = []
    for row in rows:
        clinic = clinics.get(row["clinic_id"])
        lines.append(
            MonthlyClinicLine(
                clinic_id=row["clinic_id"],
                name=clinic["name"] if clinic else "",
                level=clinic["level"] if clinic else "",
                region=clinic["region"] if clinic else "",
                settlements_count=row["settlements_count"],
                settlements_fen=row["settlements_fen"],
                reversals_count=row["reversals_count"],
                reversals_fen=row["reversals_fen"],
                net_fen=row["settlements_fen"] - row["reversals_fen"] + row["adjustments_fen"],
                adjustments_count=row["adjustments_count"],
                adjustments_fen=row["adjustments_fen"],
            )
        )
    return MonthlyFund(
        code=entry.code,
        account=entry.account,
        name=entry.name,
        name_en=entry.name_en,
        settlements_count=sum(line.settlements_count for line in lines),
        settlements_fen=sum(line.settlements_fen for line in lines),
        reversals_count=sum(line.reversals_count for line in lines),
        reversals_fen=sum(line.reversals_fen for line in lines),
        net_fen=sum(line.net_fen for line in lines),
        adjustments_count=sum(line.adjustments_count for line in lines),
        adjustments_fen=sum(line.adjustments_fen for line in lines),
        clinics=lines,
    )


# ---------------------------------------------------------------- tables for xlsx and CSV

AMOUNT_COLUMNS = (
    Column("结算笔数", "Settlements", "count"),
    Column("结算金额", "Paid", "money"),
    Column("冲正笔数", "Reversals", "count"),
    Column("冲正金额", "Reversed", "money"),
    Column("调整笔数", "Adjustments", "count"),
    Column("调整金额", "Adjusted", "money"),
    Column("净额", "Net", "money"),
)
FUND_COLUMNS = (Column("基金编码", "Fund code"), Column("基金名称", "Fund"))


def _amounts(line: MonthlyClinicLine | MonthlyFund) -> list[Any]:
    return [
        line.settlements_count,
        line.settlements_fen,
        line.reversals_count,
        line.reversals_fen,
        line.adjustments_count,
        line.adjustments_fen,
        line.net_fen,
    ]


def _place(line: MonthlyClinicLine) -> list[Any]:
    return [line.clinic_id, line.name, level_name(line.level), line.region]


def monthly_tables(statement: MonthlyStatement) -> dict[str, Table]:
    """``summary`` (one row per fund), ``lines`` (every fund × clinic line, the CSV), then one table per fund
    by its code, its clinics in rows."""
    month = statement.month
    tables = {
        "summary": Table(
            f"按基金 By fund {month}",
            [*FUND_COLUMNS, *AMOUNT_COLUMNS],
            [[fund.code, f"{fund.name} {fund.name_en}", *_amounts(fund)] for fund in statement.by_fund],
        ),
        "lines": Table(
            f"明细 Fund x clinic {month}",
            [Column("月份", "Month"), *FUND_COLUMNS, *PLACE_COLUMNS, *AMOUNT_COLUMNS],
            [
                [month, fund.code, f"{fund.name} {fund.name_en}", *_place(line), *_amounts(line)]
                for fund in statement.by_fund
                for line in fund.clinics
            ],
        ),
    }
    for fund in statement.by_fund:
        tables[fund.code] = Table(
            f"{fund.name} {fund.name_en}",
            [*PLACE_COLUMNS, *AMOUNT_COLUMNS],
            [[*_place(line), *_amounts(line)] for line in fund.clinics],
        )
    return tables
