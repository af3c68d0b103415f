"""Reconciliation of totals over a range of booking days, as the national interface's 3201 (对总账) does it.

A clinic (or the finance office for every clinic) sends its count and sums of the settlements booked
from ``from`` to ``to`` that stand at the end of ``to`` (not reversed by then); the gateway computes the
same from the settlements and reversals tables and answers whether they balance, each field that
differs with both values, and its own count and total per booking day, so a range that does not
balance is narrowed to the days to reconcile settlement by settlement (``POST /v1/finance/reconciliation``).

"Stands at the end of ``to``" reads only rows booked on or before ``to``, and those never change, so a
closed range reconciles the same whenever it is asked, as a closed day does. A reversal booked after
``to`` of a settlement in the range leaves it standing here; it shows in the range it is booked in.

Re-adjudication's adjustments (adapters/readjudication.py) are not the clinic's: the clinic was paid each
bill's total once, and an adjustment only moves money between the funds and the patient. So they are never
compared with the submitted totals; the answer shows them beside, as the daily statements do, on the day
they are booked: how many were booked in the range (and on each day), what each fund and the patient pay
more or less by them (``adjustments_sums_fen``, whose ``total`` is always 0), and each fund's net
(``net_sums_fen``: the standing settlements' sums plus the adjustments).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import asyncpg
import msgspec

from adapters.finance import FundCode, ReconciliationError
from adapters.fund_names import NAMED_FUNDS, FundDirectory
from adapters.report_models import DayTotals, PayerSums, Period, TotalsDifference, TotalsReconciliation

# A range is at most a year and a day (a leap year's 1 January to the next 1 January).
MAX_RANGE_DAYS = 367

# Sums over a range are larger than a bill: up to a million yuan a day for a year and more.
RangeFen = Annotated[int, msgspec.Meta(ge=0, le=10**15)]

_COLUMNS = ("total", "insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket")

# The settlements booked in the range that stand at its end. $1 from, $2 to, $3 a clinic or NULL for every one.
_STANDING = """
WITH standing AS (
    SELECT s.booked_on, s.total, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket, s.other_funds
    FROM settlements s
    WHERE s.booked_on BETWEEN $1 AND $2 AND ($3::text IS NULL OR s.clinic_id = $3)
      AND NOT EXISTS (SELECT 1 FROM reversals r
                      WHERE r.person_key = s.person_key AND r.settlement_id = s.settlement_id AND r.booked_on <= $2)
)
SELECT 'day' AS part, booked_on, NULL AS fund, count(*) AS settlements,
       sum(total)::bigint AS total, sum(insurance)::bigint AS insurance,
       sum(veteran_subsidy)::bigint AS veteran_subsidy, sum(hardship_aid)::bigint AS hardship_aid,
       sum(out_of_pocket)::bigint AS out_of_pocket
FROM standing GROUP BY booked_on
UNION ALL
SELECT 'fund', NULL, o.key, count(*), sum(o.value::bigint)::bigint, 0, 0, 0, 0
FROM standing CROSS JOIN LATERAL jsonb_each_text(standing.other_funds) o GROUP BY o.key
ORDER BY 1, 2, 3
"""

# The adjustments booked in the range on the bills of a clinic (or of every one), per day; and what they moved
# of the funds beyond the three with columns of their own, by fund code.
_ADJUSTED_DAYS = """
SELECT booked_on, count(*) AS adjustments,
       sum(insurance)::bigint AS insurance, sum(veteran_subsidy)::bigint AS veteran_subsidy,
       sum(hardship_aid)::bigint AS hardship_aid, sum(out_of_pocket)::bigint AS out_of_pocket
FROM adjustments
WHERE booked_on BETWEEN $1 AND $2 AND ($3::text IS NULL OR clinic_id = $3)
GROUP BY booked_on
"""
_ADJUSTED_FUNDS = """
SELECT o.key AS fund, sum(o.value::bigint)::bigint AS amount
FROM adjustments a CROSS JOIN LATERAL jsonb_each_text(a.other_funds) o
WHERE a.booked_on BETWEEN $1 AND $2 AND ($3::text IS NULL OR a.clinic_id = $3)
GROUP BY o.key
"""

_FUND_COLUMNS = ("insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket")


class SubmittedTotals(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The clinic's count and sums over the range, in fen; ``other_funds`` by fund code, as in a list line."""

    settlements: Annotated[int, msgspec.Meta(ge=0, le=10**9)]
    total: RangeFen
    insurance: RangeFen
    veteran_subsidy: RangeFen
    hardship_aid: RangeFen
    out_of_pocket: RangeFen
    other_funds: Annotated[dict[FundCode, RangeFen], msgspec.Meta(max_length=32)] = {}


class TotalsReconciliationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Totals over booking days ``from``..``to`` (both included); ``clinic_id`` omitted is every clinic."""

    from_: dt.date = msgspec.field(name="from")
    to: dt.date
    totals: SubmittedTotals
    clinic_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None


def check_range(start: dt.date, end: dt.date) -> None:
    """Refuse a range that ends before it starts, or is longer than ``MAX_RANGE_DAYS``."""
    if start > end:
        raise ReconciliationError("from is after to", "from")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ReconciliationError(
            f"a range is at most {MAX_RANGE_DAYS} days; reconcile a longer one a year at a time", "to", "range_too_wide"
        )


async def reconcile_totals(
    connection: asyncpg.Connection, request: TotalsReconciliationRequest, *, funds: FundDirectory | None = None
) -> TotalsReconciliation:
    """The gateway's count and sums over the range beside the submitted ones; every field that differs."""
    directory = funds or FundDirectory()
    check_range(request.from_, request.to)
    for code in request.totals.other_funds:
        if code in NAMED_FUNDS or code in _COLUMNS:
            raise ReconciliationError(
                f"{code} has a field of its own, not an entry in other_funds", "totals.other_funds"
            )
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = await connection.fetch(_STANDING, request.from_, request.to, request.clinic_id)
        adjusted_days = await connection.fetch(_ADJUSTED_DAYS, request.from_, request.to, request.clinic_id)
        adjusted_funds = await connection.fetch(_ADJUSTED_FUNDS, request.from_, request.to, request.clinic_id)
    days = [row for row in rows if row["part"] == "day"]
    columns = {name: sum(row[name] for row in days) for name in _COLUMNS}
    other = {row["fund"]: row["total"] for row in rows if row["part"] == "fund" and row["total"]}
    gateway_sums = PayerSums(**columns, other_funds={code: other[code] for code in directory.ordered(other)})
    submitted = request.totals
    submitted_sums = PayerSums(
        **{name: getattr(submitted, name) for name in _COLUMNS},
        other_funds={code: submitted.other_funds[code] for code in directory.ordered(submitted.other_funds)},
    )
    gateway_count = sum(row["settlements"] for row in days)
    differences = []
    if gateway_count != submitted.settlements:
        differences.append(
            TotalsDifference(field="settlements", gateway=gateway_count, submitted=submitted.settlements)
        )
    for name in _COLUMNS:
        if columns[name] != getattr(submitted, name):
            differences.append(TotalsDifference(field=name, gateway=columns[name], submitted=getattr(submitted, name)))
    for code in directory.ordered(set(other) | set(submitted.other_funds)):
        if other.get(code, 0) != submitted.other_funds.get(code, 0):
            differences.append(
                TotalsDifference(field=code, gateway=other.get(code, 0), submitted=submitted.other_funds.get(code, 0))
            )
    adjustments = _adjustment_sums(adjusted_days, adjusted_funds, directory)
    return TotalsReconciliation(
        period=Period(from_=request.from_, to=request.to),
        clinic_id=request.clinic_id,
        balanced=not differences,
        basis="settlements booked in the period and not reversed by its last day (a reversal booked on or before "
        "it); adjustments booked in the period are shown beside, never compared: they are not the clinic's",
        gateway_count=gateway_count,
        submitted_count=submitted.settlements,
        gateway_sums_fen=gateway_sums,
        submitted_sums_fen=submitted_sums,
        differences=differences,
        days=_days(days, {row["booked_on"]: row for row in adjusted_days}),
        adjustments_count=sum(row["adjustments"] for row in adjusted_days),
        adjustments_sums_fen=adjustments,
        net_sums_fen=_plus(gateway_sums, adjustments, directory),
    )


def _days(standing: list[asyncpg.Record], adjusted: dict[dt.date, asyncpg.Record]) -> list[DayTotals]:
    """Each day of the range with standing settlements or adjustments booked, in order."""
    settled = {row["booked_on"]: row for row in standing}
    return [
        DayTotals(
            date=day,
            settlements=settled[day]["settlements"] if day in settled else 0,
            total=settled[day]["total"] if day in settled else 0,
            adjustments=adjusted[day]["adjustments"] if day in adjusted else 0,
        )
        for day in sorted(settled.keys() | adjusted.keys())
    ]


def _adjustment_sums(days: list[asyncpg.Record], funds: list[asyncpg.Record], directory: FundDirectory) -> PayerSums:
    """What each fund and the patient pay more (positive) or less by the range's adjustments. ``total`` is 0:
    an adjustment never changes what the clinic was paid."""
    columns = {name: sum(row[name] for row in days) for name in _FUND_COLUMNS}
    other = {row["fund"]: row["amount"] for row in funds if row["amount"]}
    return PayerSums(total=0, **columns, other_funds={code: other[code] for code in directory.ordered(other)})


def _plus(a: PayerSums, b: PayerSums, directory: FundDirectory) -> PayerSums:
    other = {code: a.other_funds.get(code, 0) + b.other_funds.get(code, 0) for code in a.other_funds | b.other_funds}
    return PayerSums(
        **{name: getattr(a, name) + getattr(b, name) for name in _COLUMNS},
        other_funds={code: other[code] for code in directory.ordered(other)},
    )
