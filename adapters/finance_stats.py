"""Statistics for finance and policy staff, over settlements not reversed, by service date.

One dimension at a time: programme, hardship tier, priority-care category, clinic
level, region, month, clinic or person. By person, each group is one person, shown by the
masked national ID, and only the ``PERSON_GROUPS`` people with the highest totals are listed,
highest first. For each group: settlements, people served, amounts per payer, out of pocket
as a share of the total (median and a ten-bucket distribution), and how often each payer's
annual cap cut a payment. Shares are
exact decimals from PostgreSQL ``numeric``, never floats.

Amounts are per fund for any chain: the three funds with columns of their own in their
fields, every other fund in ``other_funds_fen`` by code, and the report's ``funds`` names
them all (``adapters.fund_names``). By programme, a fund beyond the three counts the
settlements it paid something on. Caps reached are counted for the three only (the
settlements table keeps which of their caps cut a bill; another fund's is in the record).

Each group also splits its bills into the four buckets of the national settlement answer
(全自费, 超限价自付, 先行自付, 政策范围内; ``adapters.bill_buckets``): what bills settled before the
buckets were kept have outside eligible is ``unsplit_fen``, not guessed, so the five add up to
``total_fen``.

Re-adjudication's adjustments (adapters/readjudication.py) count on the day they are booked, as the daily
statement counts them: each group shows the adjustments booked in the period on its bills not reversed
(``adjustments_count``), what each fund and the patient pay more or less by them (``adjustments_fen``, by
fund code, ``out_of_pocket`` last), and each one's net (``net_fen``: what the group's settlements paid plus
the adjustments). An adjustment belongs to the group of the bill it corrects (its clinic, person, level,
the tier and category the bill was settled under), but to the month it is booked in; by programme, to each
fund it moves. A group may have adjustments and no settlement in the period (bills served earlier).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import asyncpg

from adapters.bill_buckets import BUCKETS, bucket_sums
from adapters.fund_names import NAMED_FUNDS, PATIENT, FundDirectory
from adapters.report_models import FINANCE_STATS, Dimension, FinanceStatsReport, Period

# The grouping expression for each dimension (report_models.Dimension); a fixed list, so no caller text reaches the SQL.
DIMENSIONS: dict[Dimension, str] = {
    "level": "s.clinic_level",
    "region": "c.region",
    "month": "to_char(s.service_date, 'YYYY-MM')",
    "category": "coalesce(s.veteran_category, 'none')",
    "tier": "coalesce(s.hardship_tier, 'none')",
    "programme": "p.payer",
    "clinic": "s.clinic_id",
    "person": "s.person_key",  # shown by the masked national ID (people.masked_id), never the key
}
# By person, the groups are the people with the highest totals, this many at most.
PERSON_GROUPS = 1_000

_QUERY = f"""
SELECT {{group}} AS grp,
       count(*) AS settlements,
       count(DISTINCT s.person_key) AS people_served,
       sum(s.total) AS total,
       sum(s.insurance) AS insurance,
       sum(s.veteran_subsidy) AS veteran_subsidy,
       sum(s.hardship_aid) AS hardship_aid,
       sum(s.out_of_pocket) AS out_of_pocket,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY s.out_of_pocket::numeric / nullif(s.total, 0))
           AS median_out_of_pocket_share,
       array_agg(least(width_bucket(s.out_of_pocket::numeric / nullif(s.total, 0), 0, 1, 10), 10))
           FILTER (WHERE s.total > 0) AS buckets,
       count(*) FILTER (WHERE s.caps_reached & 1 <> 0) AS insurance_cap_reached,
       count(*) FILTER (WHERE s.caps_reached & 2 <> 0) AS veteran_subsidy_cap_reached,
       count(*) FILTER (WHERE s.caps_reached & 4 <> 0) AS hardship_aid_cap_reached,
       {bucket_sums("s")}
FROM settlements s
JOIN clinics c USING (clinic_id)
{{lateral}}
WHERE s.reversal_id IS NULL AND s.service_date BETWEEN $1 AND $2
GROUP BY 1
ORDER BY 1
"""

# The programmes that applied to the person, one row each (bits as in settlement.decision.CAP_BITS),
# and every other fund of the chain, applied when it paid.
_LATERAL_PROGRAMME = """CROSS JOIN LATERAL (
    VALUES ('insurance', s.insured), ('veteran_subsidy', s.veteran_category IS NOT NULL),
           ('hardship_aid', s.hardship_tier IS NOT NULL)
    UNION ALL
    SELECT f.key, f.value::bigint > 0 FROM jsonb_each_text(s.other_funds) f) AS p(payer, applied)"""

# What the other funds paid, per group and fund code.
_OTHER_FUNDS = """
SELECT {group} AS grp, o.key AS fund, sum(o.value::bigint)::bigint AS paid
FROM settlements s
JOIN clinics c USING (clinic_id)
{lateral}
CROSS JOIN LATERAL jsonb_each_text(s.other_funds) o
WHERE {applied} s.reversal_id IS NULL AND s.service_date BETWEEN $1 AND $2
GROUP BY 1, 2
"""

# An adjustment's group is its bill's, but its month is the month it is booked in.
_ADJUSTMENT_GROUPS: dict[Dimension, str] = DIMENSIONS | {"month": "to_char(a.booked_on, 'YYYY-MM')"}

# By programme, an adjustment counts for each fund it moves.
_LATERAL_ADJUSTED_PROGRAMME = """CROSS JOIN LATERAL (
    VALUES ('insurance', a.insurance <> 0), ('veteran_subsidy', a.veteran_subsidy <> 0),
           ('hardship_aid', a.hardship_aid <> 0)
    UNION ALL
    SELECT f.key, f.value::bigint <> 0 FROM jsonb_each_text(a.other_funds) f) AS p(payer, applied)"""

# The adjustments booked in the period on bills not reversed, per group: how many, and what each fund and the
# patient pay more or less by them. Then what they moved of the funds beyond the three, per group and fund code.
_ADJUSTED_FROM = """
FROM adjustments a
JOIN settlements s ON s.person_key = a.person_key AND s.settlement_id = a.settlement_id
JOIN clinics c ON c.clinic_id = s.clinic_id
{lateral}"""
_ADJUSTED_WHERE = "WHERE {applied} s.reversal_id IS NULL AND a.booked_on BETWEEN $1 AND $2"
_ADJUSTED = f"""
SELECT {{group}} AS grp, count(*) AS adjustments,
       sum(a.insurance)::bigint AS insurance, sum(a.veteran_subsidy)::bigint AS veteran_subsidy,
       sum(a.hardship_aid)::bigint AS hardship_aid, sum(a.out_of_pocket)::bigint AS out_of_pocket
{_ADJUSTED_FROM}
{_ADJUSTED_WHERE}
GROUP BY 1
"""
_ADJUSTED_OTHER_FUNDS = f"""
SELECT {{group}} AS grp, o.key AS fund, sum(o.value::bigint)::bigint AS amount
{_ADJUSTED_FROM}
CROSS JOIN LATERAL jsonb_each_text(a.other_funds) o
{_ADJUSTED_WHERE}
GROUP BY 1, 2
"""

MONEY = ("total", "insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket")
CAPS = ("insurance_cap_reached", "veteran_subsidy_cap_reached", "hardship_aid_cap_reached")
BUCKET_FIELDS = tuple(f"{bucket}_fen" for bucket in BUCKETS)


def _share(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.0001")))


async def finance_stats(
    connection: asyncpg.Connection,
    *,
    by: str,
    period_from: dt.date,
    period_to: dt.date,
    funds: FundDirectory | None = None,
) -> FinanceStatsReport:
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    directory = funds or FundDirectory()
    lateral = _LATERAL_PROGRAMME if by == "programme" else ""
    query = _QUERY.format(group=DIMENSIONS[by], lateral=lateral)
    if by == "programme":  # only the payers that applied to the person
        query = query.replace("WHERE s.reversal_id", "WHERE p.applied AND s.reversal_id")
    applied = "p.applied AND" if by == "programme" else ""
    adjusted_lateral = _LATERAL_ADJUSTED_PROGRAMME if by == "programme" else ""
    adjusted_group = _ADJUSTMENT_GROUPS[by]
    others: dict[Any, dict[str, int]] = {}
    adjusted_others: dict[Any, dict[str, int]] = {}
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = {row["grp"]: row for row in await connection.fetch(query, period_from, period_to)}
        for row in await connection.fetch(
            _OTHER_FUNDS.format(group=DIMENSIONS[by], lateral=lateral, applied=applied), period_from, period_to
        ):
            others.setdefault(row["grp"], {})[row["fund"]] = row["paid"]
        adjusted = {
            row["grp"]: row
            for row in await connection.fetch(
                _ADJUSTED.format(group=adjusted_group, lateral=adjusted_lateral, applied=applied),
                period_from,
                period_to,
            )
        }
        for row in await connection.fetch(
            _ADJUSTED_OTHER_FUNDS.format(group=adjusted_group, lateral=adjusted_lateral, applied=applied),
            period_from,
            period_to,
        ):
            adjusted_others.setdefault(row["grp"], {})[row["fund"]] = row["amount"]
        keys = sorted(rows.keys() | adjusted.keys(), key=lambda key: (key is None, key))
        if by == "person":
            keys = sorted(keys, key=lambda key: -rows[key]["total"] if key in rows else 0)[:PERSON_GROUPS]
            masked = dict(
                await connection.fetch(
                    "SELECT person_key, masked_id FROM people WHERE person_key = any($1::bytea[])", keys
                )
            )
    codes = directory.ordered(
        {code for paid in [*others.values(), *adjusted_others.values()] for code in paid if code not in NAMED_FUNDS}
    )
    report, group = FINANCE_STATS[by]
    groups = []
    for key in keys:
        settled = _settled(rows.get(key), others.get(key, {}), codes)
        moved = _adjusted(adjusted.get(key), adjusted_others.get(key, {}), codes)
        paid = {
            **{fund: settled[f"{fund}_fen"] for fund in NAMED_FUNDS},
            **settled["other_funds_fen"],
            PATIENT.code: settled["out_of_pocket_fen"],
        }
        groups.append(
            group(
                **{by: masked[key] if by == "person" else key},  # the group's own key
                **settled,
                adjustments_count=adjusted[key]["adjustments"] if key in adjusted else 0,
                adjustments_fen=moved,
                net_fen={fund: paid[fund] + moved[fund] for fund in moved},
            )
        )
    # FINANCE_STATS pairs each dimension's report with its own groups' Struct, which mypy cannot follow.
    return report(
        period=Period(from_=period_from, to=period_to),
        groups=groups,  # type: ignore[arg-type]
        funds=directory.entries([*NAMED_FUNDS, *codes]),
    )


def _settled(row: asyncpg.Record | None, paid: dict[str, int], codes: list[str]) -> dict[str, Any]:
    """A group's settlement figures (zeros for a group with adjustments only), by the Struct's field names."""
    if row is None:
        return {
            "settlements": 0,
            "people_served": 0,
            **{f"{name}_fen": 0 for name in MONEY},
            "median_out_of_pocket_share": None,
            "out_of_pocket_share_distribution": [0] * 10,
            **dict.fromkeys(CAPS, 0),
            "other_funds_fen": dict.fromkeys(codes, 0),
            **dict.fromkeys(BUCKET_FIELDS, 0),
        }
    distribution = [0] * 10
    for bucket in row["buckets"] or ():
        distribution[max(bucket, 1) - 1] += 1
    return {
        "settlements": row["settlements"],
        "people_served": row["people_served"],
        **{f"{name}_fen": int(row[name]) for name in MONEY},
        "median_out_of_pocket_share": _share(row["median_out_of_pocket_share"]),
        "out_of_pocket_share_distribution": distribution,
        **{name: row[name] for name in CAPS},
        "other_funds_fen": {code: paid.get(code, 0) for code in codes},
        **{f"{bucket}_fen": int(row[bucket]) for bucket in BUCKETS},
    }


def _adjusted(row: asyncpg.Record | None, other: dict[str, int], codes: list[str]) -> dict[str, int]:
    """What a group's adjustments moved, by fund code in the report's order, the patient last; zeros kept, so
    every group names the same funds."""
    named = {fund: int(row[fund]) if row is not None else 0 for fund in NAMED_FUNDS}
    return {
        **named,
        **{code: other.get(code, 0) for code in codes},
        PATIENT.code: int(row["out_of_pocket"]) if row is not None else 0,
    }


def stats_csv(stats: FinanceStatsReport) -> str:
    """One row per group; the distribution as ten columns (share 0-10 %, 10-20 %, ... 90-100 %); the
    four buckets and ``unsplit_fen`` after the caps; then one column per fund beyond the three,
    ``<code>_fen``, in the report's order; then the adjustments: their count, and per fund (the patient
    last) ``<code>_adjustments_fen`` and ``<code>_net_fen``."""
    by = stats.by
    others = [entry.code for entry in stats.funds if entry.code not in NAMED_FUNDS]
    moved = [*(entry.code for entry in stats.funds), PATIENT.code]
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    buckets = [f"share_{10 * i}_{10 * (i + 1)}_pct" for i in range(10)]
    writer.writerow(
        [by, "settlements", "people_served", *(f"{name}_fen" for name in MONEY), "median_out_of_pocket_share",
         *buckets, *CAPS, *BUCKET_FIELDS, *(f"{code}_fen" for code in others), "adjustments_count",
         *(f"{code}_adjustments_fen" for code in moved), *(f"{code}_net_fen" for code in moved)]
    )  # fmt: skip
    for group in stats.groups:
        writer.writerow(
            [getattr(group, by), group.settlements, group.people_served,
             *(getattr(group, f"{name}_fen") for name in MONEY), group.median_out_of_pocket_share,
             *group.out_of_pocket_share_distribution, *(getattr(group, name) for name in CAPS),
             *(getattr(group, name) for name in BUCKET_FIELDS),
             *(group.other_funds_fen.get(code, 0) for code in others), group.adjustments_count,
             *(group.adjustments_fen.get(code, 0) for code in moved), *(group.net_fen.get(code, 0) for code in moved)]
        )  # fmt: skip
    return buffer.getvalue()
