"""A person's annual statement: every settlement of one service year, what every fund paid, and the caps left.

The year is the service year, as the annual caps and the deductible count it. Every settlement of the
person with a service date in the year is listed (reversed ones too, marked), in service-date order;
the fund totals count only the settlements that stand. The caps are the eligibility figures
(``settlement.eligibility``) as of the year's last day, or today for the current year, which the gateway
computes from the policy and hands in: this module reads the settlements.

Settlements are read by ``person_key`` (the table's primary key leads with it), so a statement costs a
few index pages, whatever the county's size. The person is shown by the masked national ID only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from adapters.fund_names import NAMED_FUNDS, PATIENT, FundDirectory
from adapters.report_models import FundYear, PersonYearStatement, SettlementSummary
from adapters.settlement_search import SUMMARY_COLUMNS, summary
from adapters.statement_export import VISIT_NAMES
from adapters.xlsx_export import Column, Table
from settlement.eligibility import FundStanding

_YEAR = f"""
SELECT {SUMMARY_COLUMNS}
FROM settlements s
JOIN people p ON p.person_key = s.person_key
WHERE s.person_key = $1 AND s.service_date BETWEEN $2 AND $3
ORDER BY s.service_date, s.created_at, s.settlement_id
"""


async def person_year(
    connection: asyncpg.Connection,
    person_key: bytes,
    year: int,
    *,
    person: str,
    name: str,
    as_of: dt.date,
    caps: Sequence[FundStanding],
    funds: FundDirectory | None = None,
) -> PersonYearStatement:
    """The statement of ``year`` for the person with ``person_key`` (shown as ``person``, the masked ID)."""
    directory = funds or FundDirectory()
    rows = await connection.fetch(_YEAR, person_key, dt.date(year, 1, 1), dt.date(year, 12, 31))
    settlements = [summary(row) for row in rows]
    standing = [item for item in settlements if not item.reversed]
    paid: dict[str, int] = dict.fromkeys(NAMED_FUNDS, 0)
    for item in standing:
        paid["insurance"] += item.insurance
        paid["veteran_subsidy"] += item.veteran_subsidy
        paid["hardship_aid"] += item.hardship_aid
        for code, amount in item.other_funds.items():
            paid[code] = paid.get(code, 0) + amount
    entries = [*directory.entries(paid), PATIENT]
    paid[PATIENT.code] = sum(item.out_of_pocket for item in standing)
    return PersonYearStatement(
        person=person,
        name=name,
        year=year,
        as_of=as_of,
        settlements_count=len(standing),
        reversed_count=len(settlements) - len(standing),
        total_fen=sum(item.total for item in standing),
        funds=[
            FundYear(code=entry.code, name=entry.name, name_en=entry.name_en, paid_fen=paid[entry.code])
            for entry in entries
        ],
        caps=list(caps),
        settlements=settlements,
    )


# ---------------------------------------------------------------- tables for the printed statement


def person_year_tables(statement: PersonYearStatement) -> list[Table]:
    """What each fund paid (its totals row is the year's bills that stand), the caps left, every settlement."""
    paid = Table(
        f"各方支付 Paid by fund {statement.year}",
        [Column("基金", "Fund"), Column("支付", "Paid", "money")],
        [[f"{fund.name} {fund.name_en}", fund.paid_fen] for fund in statement.funds],
    )
    caps = Table(
        f"年度限额 Annual caps, as of {statement.as_of.isoformat()}",
        [
            Column("基金", "Fund"),
            Column("适用", "Applies"),
            Column("年度限额", "Annual cap", "money"),
            Column("已用", "Used", "money"),
            Column("剩余", "Left", "money"),
        ],
        [
            [cap.name, "是 yes" if cap.applies else "否 no", cap.annual_cap, cap.used, cap.remaining]
            for cap in statement.caps
        ],
        totals=False,  # caps of different funds do not add up
    )
    funds = [fund for fund in statement.funds if fund.code != PATIENT.code]
    settlements = Table(
        f"结算明细 Settlements {statement.year}",
        [
            Column("就诊日期", "Service date", "date"),
            Column("机构", "Clinic"),
            Column("就诊类型", "Visit"),
            Column("结算号", "Settlement"),
            Column("费用总额", "Total", "money"),
            *[Column(fund.name, fund.name_en, "money") for fund in funds],
            Column(PATIENT.name, PATIENT.name_en, "money"),
            Column("状态", "State"),
        ],
        [
            [
                item.service_date,
                item.clinic_id,
                VISIT_NAMES.get(item.visit_type, item.visit_type),
                str(item.settlement_id),
                item.total,
                *[_paid(item, fund.code) for fund in funds],
                item.out_of_pocket,
                "已冲正 reversed" if item.reversed else "",
            ]
            for item in statement.settlements
        ],
        totals=False,  # reversed settlements are listed but not counted: the paid table has the totals
    )
    return [paid, caps, settlements]


def _paid(item: SettlementSummary, code: str) -> int:
    """What the fund with this code paid on one settlement."""
    if code in NAMED_FUNDS:
        amount: int = getattr(item, code)
        return amount
    return item.other_funds.get(code, 0)
