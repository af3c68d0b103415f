"""The daily statement as a finance office files it: one table per scope, for xlsx and CSV.

``daily_tables`` turns a ``DailyStatement`` (``adapters.finance``) into five tables: by clinic, by
level, by region, the total, and the day's reversals (冲正). Each scope's table has the same money
columns: the bills and the reversals booked on the day, then every fund's (and the patient's) paid,
reversed and net, then the net of each of the four buckets. ``adapters.xlsx_export`` writes them: the
workbook has one sheet per scope, each with a totals row; a CSV file is one scope (``SCOPES``), with
no totals row, so a SUM in a spreadsheet never counts a figure twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, Literal, get_args

from adapters.bill_buckets import BUCKET_NAMES, BUCKETS
from adapters.fund_names import code_of
from adapters.report_models import DailyStatement, FundEntry, StatementBuckets, StatementFunds
from adapters.xlsx_export import Column, Table

Scope = Literal["clinic", "level", "region", "total", "reversals"]
SCOPES: Final[tuple[str, ...]] = get_args(Scope)

# Clinic levels in both languages, as the receipt prints them.
LEVEL_NAMES: Final[dict[str, str]] = {
    "village": "村卫生服务站 village",
    "township": "镇(社区)卫生服务中心 township",
    "county": "县级医院 county",
}


PLACE_COLUMNS: Final = (
    Column("机构编码", "Clinic ID"),
    Column("机构名称", "Clinic"),
    Column("级别", "Level"),
    Column("区域", "Region"),
)


VISIT_NAMES: Final[dict[str, str]] = {"outpatient": "门诊 outpatient", "inpatient": "住院 inpatient"}
# Moments are shown in China time, as the booking day is a China date (no daylight saving: a fixed offset).
CHINA_TIME = dt.timezone(dt.timedelta(hours=8))


def level_name(level: str) -> str:
    return LEVEL_NAMES.get(level, level)


def china_time(moment: str) -> str:
    """An ISO 8601 moment (as PostgreSQL gave it) in China time, to the second: ``2026-11-30 11:12:00``."""
    return dt.datetime.fromisoformat(moment).astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")


def _fund_entries(statement: DailyStatement) -> list[FundEntry]:
    """The statement's funds with their names; a fund the statement has no entry for is named by its code."""
    entries = {entry.account: entry for entry in statement.accounts}
    return [
        entries.get(account) or FundEntry(code=code_of(account), account=account, name=account, name_en=account)
        for account in statement.funds
    ]


def money_columns(funds: list[FundEntry], *, detail: bool = True) -> list[Column]:
    """The columns every scope shares: counts, the bills, each fund's paid, reversed, adjusted (re-adjudication)
    and net, each bucket's net.
    Without ``detail`` (a printed statement, which must fit a page), each fund's net only and no buckets."""
    columns = [
        Column("结算笔数", "Settlements", "count"),
        Column("冲正笔数", "Reversals", "count"),
        Column("结算金额", "Billed", "money"),
        Column("冲正金额", "Reversed", "money"),
        Column("净额", "Net", "money"),
    ]
    for fund in funds:
        if detail:
            columns += [
                Column(f"{fund.name}支付", f"{fund.name_en} paid", "money"),
                Column(f"{fund.name}冲正", f"{fund.name_en} reversed", "money"),
                Column(f"{fund.name}调整", f"{fund.name_en} adjusted", "money"),
            ]
        columns.append(Column(f"{fund.name}净额", f"{fund.name_en} net", "money"))
    if not detail:
        return columns
    for bucket in BUCKETS:
        zh, en = BUCKET_NAMES[bucket]
        columns.append(Column(f"{zh}净额", f"{en} net", "money"))
    return columns


def money_cells(
    accounts: list[str],
    block_funds: StatementFunds,
    buckets: StatementBuckets,
    counts: tuple[int, ...],
    *,
    detail: bool = True,
) -> list[Any]:
    """One scope's cells under ``money_columns``; ``counts`` is (settlements, reversals, billed, reversed, net)."""
    cells: list[Any] = list(counts)
    for account in accounts:
        fund = block_funds[account]
        cells += (
            [fund.settlements_fen, fund.reversals_fen, fund.adjustments_fen, fund.net_fen] if detail else [fund.net_fen]
        )
    if detail:
        cells += [getattr(buckets, bucket).net_fen for bucket in BUCKETS]
    return cells


def daily_tables(statement: DailyStatement, *, detail: bool = True) -> dict[str, Table]:
    """The statement's tables by scope (``SCOPES``), in the order a workbook shows them; without ``detail``,
    as a printed statement has them (``money_columns``)."""
    funds = _fund_entries(statement)
    accounts = statement.funds
    shared = money_columns(funds, detail=detail)

    def cells(block: Any) -> list[Any]:
        counts = (block.settlements, block.reversals, block.billed_fen, block.reversed_fen, block.net_fen)
        return money_cells(accounts, block.funds, block.buckets, counts, detail=detail)

    day = statement.date.isoformat()
    return {
        "clinic": Table(
            f"机构 Clinics {day}",
            [*PLACE_COLUMNS, *shared],
            [
                [block.clinic_id, block.name, level_name(block.level), block.region, *cells(block)]
                for block in statement.by_clinic
            ],
        ),
        "level": Table(
            f"级别 Levels {day}",
            [Column("级别", "Level"), *shared],
            [[level_name(block.level), *cells(block)] for block in statement.by_level],
        ),
        "region": Table(
            f"区域 Regions {day}",
            [Column("区域", "Region"), *shared],
            [[block.region, *cells(block)] for block in statement.by_region],
        ),
        "total": Table(
            f"合计 Total {day}",
            [Column("结算日", "Booking day", "date"), *shared],
            [[statement.date, *cells(statement.total)]],
            totals=False,
        ),
        "reversals": reversals_table(statement, funds),
    }


def reversals_table(statement: DailyStatement, funds: list[FundEntry]) -> Table:
    """Every reversal booked on the day, with the settlement it gives back and what each fund returns."""
    paid_by = [fund for fund in funds if fund.account != "patient"]
    columns = [
        Column("冲正号", "Reversal ID"),
        Column("结算号", "Settlement ID"),
        Column("机构编码", "Clinic ID"),
        Column("就诊类型", "Visit"),
        Column("就诊日期", "Service date", "date"),
        Column("原结算日", "Settled on", "date"),
        Column("冲正时间(北京时间)", "Reversed at (China time)"),
        Column("终端", "Terminal"),
        Column("原因", "Reason"),
        Column("费用总额", "Total", "money"),
        *[Column(f"{fund.name}退回", f"{fund.name_en} returned", "money") for fund in paid_by],
        Column("个人自付退回", "Patient returned", "money"),
    ]
    rows = []
    for item in statement.reversals:
        by_code = {
            "insurance": item.insurance_fen,
            "veteran_subsidy": item.veteran_subsidy_fen,
            "hardship_aid": item.hardship_aid_fen,
            **item.other_funds_fen,
        }
        rows.append(
            [
                str(item.reversal_id),
                str(item.settlement_id),
                item.clinic_id,
                VISIT_NAMES.get(item.visit_type, item.visit_type),
                item.service_date,
                item.settled_on,
                china_time(item.reversed_at),
                item.terminal_id,
                item.reason or "",
                item.total_fen,
                *[by_code.get(fund.code, 0) for fund in paid_by],
                item.out_of_pocket_fen,
            ]
        )
    return Table(f"冲正 Reversals {statement.date.isoformat()}", columns, rows)
