"""The finance dashboard's tables as files: what a table on screen shows, as xlsx or CSV.

``figures_table`` makes the per-day, per-level or per-clinic table of ``DashboardFigures`` and
``settlements_table`` the list of settlements behind a figure (``DashboardSettlements``), with the
columns the page shows: counts, the total, every fund the period's settlements paid from, and the
patient's share, money as int fen. ``adapters.xlsx_export`` writes them, as every finance export is
written: Chinese headers with English beside them, yuan with two decimals, and in a workbook a
totals row (合计 Total) summed in int fen; a CSV file has no totals row.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from adapters.fund_names import NAMED_FUNDS
from adapters.report_models import Amounts, DashboardFigures, DashboardSettlements, FundEntry
from adapters.statement_export import VISIT_NAMES, china_time, level_name
from adapters.xlsx_export import Column, Table

DashboardTable = Literal["days", "levels", "clinics", "settlements"]
TABLES: Final[tuple[str, ...]] = get_args(DashboardTable)
LEVELS: Final = ("village", "township", "county")


def _funds(entries: list[FundEntry]) -> list[FundEntry]:
    """The funds shown: those the report names, or the three when it names none."""
    return entries or [FundEntry(code=code, account="", name=code, name_en=code) for code in NAMED_FUNDS]


def amount_columns(funds: list[FundEntry], *, count: bool = True) -> list[Column]:
    """The settlements counted, the total, what each fund paid, and the patient's share."""
    columns = [Column("结算笔数", "Settlements", "count")] if count else []
    columns.append(Column("费用总额", "Total", "money"))
    columns += [Column(f"{fund.name}支付", f"{fund.name_en} paid", "money") for fund in funds]
    columns.append(Column("个人自付", "Patient paid", "money"))
    return columns


def amount_cells(amounts: Amounts, funds: list[FundEntry]) -> list[int]:
    """One row's cells under ``amount_columns``."""
    return [amounts.count, amounts.total, *[amounts.paid(fund.code) for fund in funds], amounts.out_of_pocket]


def figures_table(figures: DashboardFigures, table: str) -> Table:
    """One of the dashboard's tables (days, levels or clinics) for its period, as the page shows it."""
    funds = _funds(figures.funds)
    shared = amount_columns(funds)
    period = f"{figures.period_from.isoformat()}~{figures.period_to.isoformat()}"
    if table == "days":
        rows: list[list[Any]] = [[day, *amount_cells(amounts, funds)] for day, amounts in figures.days if amounts.count]
        return Table(f"每日 Days {period}", [Column("服务日期", "Service date", "date"), *shared], rows)
    if table == "levels":
        rows = [[level_name(level), *amount_cells(figures.levels.get(level, Amounts()), funds)] for level in LEVELS]
        return Table(f"级别 Levels {period}", [Column("级别", "Level"), *shared], rows)
    if table == "clinics":
        rows = [
            [clinic.clinic_id, clinic.name, level_name(clinic.level), *amount_cells(clinic.amounts, funds)]
            for clinic in figures.clinics
        ]
        places = [Column("机构编码", "Clinic ID"), Column("机构名称", "Clinic"), Column("级别", "Level")]
        return Table(f"机构 Clinics {period}", [*places, *shared], rows)
    raise ValueError(f"the figures have no table {table!r}")


def settlements_table(listing: DashboardSettlements) -> Table:
    """Every settlement of a list (one page of it: the caller asks for all of them at once)."""
    funds = _funds(listing.funds)
    columns = [
        Column("服务日期", "Service date", "date"),
        Column("结算时间(北京时间)", "Settled at (China time)"),
        Column("机构编码", "Clinic ID"),
        Column("机构名称", "Clinic"),
        Column("级别", "Level"),
        Column("就诊类型", "Visit"),
        Column("机构请求号", "Clinic's request ID"),
        Column("参保人(脱敏)", "Person (masked)"),
        Column("结算号", "Settlement ID"),
        *amount_columns(funds, count=False),
    ]
    rows = [
        [
            item.service_date,
            china_time(item.settled_at),
            item.clinic_id,
            listing.clinic_names.get(item.clinic_id, ""),
            level_name(item.clinic_level),
            VISIT_NAMES.get(item.visit_type, item.visit_type),
            item.request_id,
            item.person,
            str(item.settlement_id),
            item.total,
            *[
                getattr(item, fund.code) if fund.code in NAMED_FUNDS else item.other_funds.get(fund.code, 0)
                for fund in funds
            ],
            item.out_of_pocket,
        ]
        for item in listing.items
    ]
    where = listing.clinic_id or (level_name(listing.level) if listing.level else "全部 all")
    period = f"{listing.period_from.isoformat()}~{listing.period_to.isoformat()}"
    return Table(f"结算 {where} {period}", columns, rows)
