"""The finance dashboard's figures: settlements (reversed ones left out) for a period of service dates.

Totals, per day, per clinic level, the out-of-pocket ratio's histogram, every clinic with
settlements (the busiest first), and which clinics' booking days were reconciled; and, for a
drill-down, the settlements behind a figure (``settlements_behind``): one clinic's, one level's or
all of the period's, a page at a time, with the totals that equal the figure. ``gateway/dashboard/pages.py`` draws
them; it reads them through ``adapters.reports.Reports``. Amounts are per fund for any chain:
what the funds beyond the three with columns of their own paid is summed from the settlements'
``other_funds`` by fund code, and ``DashboardFigures.funds`` names every fund shown. Every set of
amounts also splits the bills into the four buckets (全自费, 超限价自付, 先行自付, 政策范围内;
``adapters.bill_buckets``), with ``unsplit`` for what bills settled before the buckets were kept have
outside eligible.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import asyncpg

from adapters.bill_buckets import BUCKETS, bucket_sums
from adapters.fund_names import NAMED_FUNDS, FundDirectory
from adapters.report_models import (
    Amounts,
    ClinicAmounts,
    ClinicReconciliation,
    DashboardFigures,
    DashboardSettlements,
)
from adapters.settlement_search import SUMMARY_COLUMNS, Cursor, summary

# A county has a few hundred clinics at most; the bound keeps a page from growing without end.
MAX_CLINICS = 2000
# The settlements behind a figure: a page of DEFAULT_PAGE on screen; an export takes up to MAX_LIST at once.
DEFAULT_PAGE = 100
MAX_LIST = 20_000

_AMOUNTS = f"""count(*) AS count, coalesce(sum(total), 0)::bigint AS total,
    coalesce(sum(insurance), 0)::bigint AS insurance, coalesce(sum(veteran_subsidy), 0)::bigint AS veteran_subsidy,
    coalesce(sum(hardship_aid), 0)::bigint AS hardship_aid, coalesce(sum(out_of_pocket), 0)::bigint AS out_of_pocket,
    {bucket_sums("settlements")}"""
_PERIOD = "reversal_id IS NULL AND service_date BETWEEN $1 AND $2"

# What the other funds paid in the period: in total, per day, per clinic level and per clinic, in one scan.
_OTHER_FUNDS = f"""
SELECT GROUPING(s.service_date, s.clinic_level, s.clinic_id) AS grouping, s.service_date, s.clinic_level,
       s.clinic_id, f.key AS fund, sum(f.value::bigint)::bigint AS paid
FROM settlements s CROSS JOIN LATERAL jsonb_each_text(s.other_funds) f
WHERE {_PERIOD}
GROUP BY GROUPING SETS ((f.key), (s.service_date, f.key), (s.clinic_level, f.key), (s.clinic_id, f.key))
"""
# GROUPING() of each set above: a bit per grouped-by column left out (service_date 4, clinic_level 2, clinic_id 1).
_BY = {7: "total", 3: "service_date", 5: "clinic_level", 6: "clinic_id"}

_RECONCILIATION_STATUS = """
SELECT l.clinic_id, c.name, c.level,
       count(DISTINCT l.settlement_id) FILTER (WHERE l.kind = 'settlement') AS settlements,
       count(DISTINCT l.settlement_id) FILTER (WHERE l.kind = 'reversal') AS reversals,
       EXISTS (SELECT 1 FROM audit_log a
               WHERE a.action = 'reconciliation.confirmed' AND a.details->>'date' = $2
                 AND a.details->>'clinic_id' = l.clinic_id) AS confirmed
FROM ledger_entries l JOIN clinics c USING (clinic_id)
WHERE l.booked_on = $1
GROUP BY l.clinic_id, c.name, c.level ORDER BY l.clinic_id
"""


def _amounts(row: asyncpg.Record, other_funds: dict[str, int] | None = None) -> Amounts:
    return Amounts(
        count=int(row["count"]),
        total=int(row["total"]),
        insurance=int(row["insurance"]),
        veteran_subsidy=int(row["veteran_subsidy"]),
        hardship_aid=int(row["hardship_aid"]),
        out_of_pocket=int(row["out_of_pocket"]),
        other_funds=other_funds or {},
        **{bucket: int(row[bucket]) for bucket in BUCKETS},
    )


async def reconciliation_status(connection: asyncpg.Connection, day: dt.date) -> list[ClinicReconciliation]:
    """Every clinic with ledger lines booked on ``day``, and whether a clean reconciliation of that
    clinic's day was confirmed (an audit row written by POST /v1/finance/reconciliation)."""
    rows = await connection.fetch(_RECONCILIATION_STATUS, day, day.isoformat())
    return [
        ClinicReconciliation(
            clinic_id=row["clinic_id"],
            name=row["name"],
            level=row["level"],
            settlements=row["settlements"],
            reversals=row["reversals"],
            confirmed=row["confirmed"],
        )
        for row in rows
    ]


async def figures(
    connection: asyncpg.Connection,
    period_from: dt.date,
    period_to: dt.date,
    *,
    reconciliation_day: dt.date | None = None,
    funds: FundDirectory | None = None,
) -> DashboardFigures:
    """The period's figures straight from the settlements table; reversed settlements left out."""
    directory = funds or FundDirectory()
    others: dict[tuple[str, Any], dict[str, int]] = {}
    for row in await connection.fetch(_OTHER_FUNDS, period_from, period_to):
        by = _BY[row["grouping"]]
        key = None if by == "total" else row[by]
        others.setdefault((by, key), {})[row["fund"]] = row["paid"]
    codes = directory.ordered({code for paid in others.values() for code in paid if code not in NAMED_FUNDS})

    def other(by: str, key: Any) -> dict[str, int]:
        paid = others.get((by, key), {})
        return {code: paid[code] for code in codes if code in paid}

    totals = _amounts(
        await connection.fetchrow(f"SELECT {_AMOUNTS} FROM settlements WHERE {_PERIOD}", period_from, period_to),
        other("total", None),
    )
    by_day = {
        row["service_date"]: _amounts(row, other("service_date", row["service_date"]))
        for row in await connection.fetch(
            f"SELECT service_date, {_AMOUNTS} FROM settlements WHERE {_PERIOD} GROUP BY service_date",
            period_from,
            period_to,
        )
    }
    empty = Amounts()
    days = [
        (day, by_day.get(day, empty))
        for day in (period_from + dt.timedelta(days=n) for n in range((period_to - period_from).days + 1))
    ]
    levels = {
        row["clinic_level"]: _amounts(row, other("clinic_level", row["clinic_level"]))
        for row in await connection.fetch(
            f"SELECT clinic_level, {_AMOUNTS} FROM settlements WHERE {_PERIOD} GROUP BY clinic_level",
            period_from,
            period_to,
        )
    }
    histogram = [0] * 10
    for row in await connection.fetch(
        f"""SELECT CASE WHEN total = 0 THEN 0 ELSE least(out_of_pocket * 10 / total, 9) END AS bucket,
                   count(*) AS count
            FROM settlements WHERE {_PERIOD} GROUP BY 1""",
        period_from,
        period_to,
    ):
        histogram[int(row["bucket"])] = int(row["count"])
    clinics = [
        ClinicAmounts(
            clinic_id=row["clinic_id"],
            name=row["name"],
            level=row["level"],
            amounts=_amounts(row, other("clinic_id", row["clinic_id"])),
        )
        for row in await connection.fetch(
            f"""SELECT clinic_id, name, level, {_AMOUNTS}
                FROM settlements JOIN clinics USING (clinic_id)
                WHERE {_PERIOD}
                GROUP BY clinic_id, name, level ORDER BY count(*) DESC, sum(total) DESC, clinic_id
                LIMIT $3""",
            period_from,
            period_to,
            MAX_CLINICS,
        )
    ]
    day = reconciliation_day or period_to
    return DashboardFigures(
        period_from=period_from,
        period_to=period_to,
        totals=totals,
        days=days,
        levels=levels,
        histogram=histogram,
        clinics=clinics,
        reconciliation_day=day,
        reconciliation=await reconciliation_status(connection, day),
        funds=directory.entries([*NAMED_FUNDS, *codes]),
    )


# ---------------------------------------------------------------- the settlements behind a figure

# Of one clinic ($3), of one clinic level ($4), or all; each NULL filter lets every row through.
_BEHIND = f"{_PERIOD} AND ($3::text IS NULL OR clinic_id = $3) AND ($4::text IS NULL OR clinic_level = $4)"
_BEHIND_TOTALS = f"SELECT {_AMOUNTS} FROM settlements WHERE {_BEHIND}"
_BEHIND_OTHER_FUNDS = f"""
SELECT f.key AS fund, sum(f.value::bigint)::bigint AS paid
FROM settlements CROSS JOIN LATERAL jsonb_each_text(settlements.other_funds) f
WHERE {_BEHIND} GROUP BY f.key
"""
# A page in service-date order, cut by keyset (adapters.settlement_search.Cursor) on (service date, time, id).
_BEHIND_PAGE = f"""
SELECT {SUMMARY_COLUMNS}
FROM settlements s JOIN people p ON p.person_key = s.person_key
WHERE s.reversal_id IS NULL AND s.service_date BETWEEN $1 AND $2
  AND ($3::text IS NULL OR s.clinic_id = $3) AND ($4::text IS NULL OR s.clinic_level = $4)
  AND ($5::date IS NULL OR (s.service_date, s.created_at, s.settlement_id) > ($5, $6, $7))
ORDER BY s.service_date, s.created_at, s.settlement_id
LIMIT $8
"""


class Behind(NamedTuple):
    """Which settlements a figure stands for: service dates ``period_from``..``period_to``, and one clinic,
    one clinic level, or (both None) every clinic; a page of ``limit`` after ``after``."""

    period_from: dt.date
    period_to: dt.date
    clinic_id: str | None = None
    level: str | None = None
    limit: int = DEFAULT_PAGE
    after: Cursor | None = None


async def settlements_behind(
    connection: asyncpg.Connection, behind: Behind, *, funds: FundDirectory | None = None
) -> DashboardSettlements:
    """A page of the settlements behind a figure, in service-date order, and the totals of them all."""
    if not 1 <= behind.limit <= MAX_LIST:
        raise ValueError(f"a page holds 1 to {MAX_LIST} settlements")
    directory = funds or FundDirectory()
    filters = (behind.period_from, behind.period_to, behind.clinic_id, behind.level)
    other_paid = {row["fund"]: row["paid"] for row in await connection.fetch(_BEHIND_OTHER_FUNDS, *filters)}
    codes = directory.ordered({code for code in other_paid if code not in NAMED_FUNDS})
    totals = _amounts(await connection.fetchrow(_BEHIND_TOTALS, *filters), {code: other_paid[code] for code in codes})
    after = behind.after
    rows = await connection.fetch(
        _BEHIND_PAGE,
        *filters,
        after.day if after else None,
        after.created_at if after else None,
        after.settlement_id if after else None,
        behind.limit + 1,  # one more than the page: whether there is a next page
    )
    page = rows[: behind.limit]
    last = page[-1] if len(rows) > behind.limit else None
    names = await connection.fetch(
        "SELECT clinic_id, name FROM clinics WHERE clinic_id = ANY($1::text[])",
        sorted({row["clinic_id"] for row in page} | ({behind.clinic_id} if behind.clinic_id else set())),
    )
    return DashboardSettlements(
        period_from=behind.period_from,
        period_to=behind.period_to,
        clinic_id=behind.clinic_id,
        level=behind.level,
        totals=totals,
        items=[summary(row) for row in page],
        clinic_names={row["clinic_id"]: row["name"] for row in names},
        next=Cursor(last["service_date"], last["created_at"], last["settlement_id"]).token() if last else None,
        funds=directory.entries([*NAMED_FUNDS, *codes]),
    )
