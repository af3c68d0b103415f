"""The four buckets of settled bills as the reports add them up: 全自费, 超限价自付, 先行自付, 政策范围内.

The item catalogue splits each bill (DESIGN Part 2, ``settlement.catalogue.classify``) into fully
self-pay (``not_covered``), over-limit self-pay (``over_limit``), self-pay first (``self_pay_first``)
and in scope (``eligible``), which add up to its total. A settlement row keeps ``eligible``,
``self_pay_first`` and ``over_limit`` (migration 0015); ``not_covered`` is what is left of ``total``.

Rows settled before migration 0015 hold NULL in ``self_pay_first`` and ``over_limit``: their split is
only inside their compressed record, and settled rows are never rewritten. The reports do not guess
it: such a row's ``eligible`` is known, and the rest of its total (``total - eligible``) is counted as
``unsplit`` (not split), never as one of the three other buckets. So over any set of settlements

    not_covered + over_limit + self_pay_first + eligible + unsplit == total

to the fen, and ``unsplit`` is 0 for any day, clinic or group settled entirely after the migration.
"""

from __future__ import annotations

from typing import Final, Literal

Bucket = Literal["not_covered", "over_limit", "self_pay_first", "eligible", "unsplit"]

# In the national settlement answer's order; ``unsplit`` last, as it is only there for older rows.
BUCKETS: Final[tuple[Bucket, ...]] = ("not_covered", "over_limit", "self_pay_first", "eligible", "unsplit")

# Each bucket's name in Chinese and in English, as the reports and the dashboard print them.
BUCKET_NAMES: Final[dict[Bucket, tuple[str, str]]] = {
    "not_covered": ("全自费", "fully self-pay"),
    "over_limit": ("超限价自付", "over the price cap"),
    "self_pay_first": ("先行自付", "self-pay first"),
    "eligible": ("政策范围内", "in scope"),
    "unsplit": ("未拆分", "not split"),  # settled before the buckets were kept
}


def bucket_amounts(row: str) -> dict[Bucket, str]:
    """Each bucket of one settlements row as an SQL expression, by bucket; ``row`` names the row (the
    table's alias, or ``settlements``). Migration 0015's CHECK makes ``self_pay_first`` and
    ``over_limit`` NULL together, so one of them tells a row settled before it."""
    split = f"{row}.self_pay_first IS NOT NULL"
    return {
        "not_covered": (
            f"(CASE WHEN {split} THEN {row}.total - {row}.eligible - {row}.self_pay_first - {row}.over_limit"
            " ELSE 0 END)"
        ),
        "over_limit": f"coalesce({row}.over_limit, 0)",
        "self_pay_first": f"coalesce({row}.self_pay_first, 0)",
        "eligible": f"{row}.eligible",
        "unsplit": f"(CASE WHEN {split} THEN 0 ELSE {row}.total - {row}.eligible END)",
    }


def bucket_sums(row: str) -> str:
    """``coalesce(sum(...), 0)::bigint AS not_covered, ...``: every bucket summed, for a SELECT list."""
    return ", ".join(
        f"coalesce(sum({amount}), 0)::bigint AS {bucket}" for bucket, amount in bucket_amounts(row).items()
    )


def bucket_values(row: str) -> str:
    """``('not_covered', ...), ...``: one (bucket, amount) pair per bucket, for a ``VALUES`` list that
    turns a settlements row into five rows (a ``CROSS JOIN LATERAL``)."""
    return ", ".join(f"('{bucket}', {amount})" for bucket, amount in bucket_amounts(row).items())
