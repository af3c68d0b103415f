"""What finance acts on after re-adjudication: the orders, listed and closed.

A re-adjudication (adapters/readjudication.py) writes, per fund, a payable order (the fund owes the patient),
a recovery order (the patient owes the fund, where the policy recovers overpayments), an overpayment
reported, or a waived order below the policy's de-minimis amount. Finance lists them by booking day and
status (``GET /v1/finance/adjustments``, ``medsettle adjustments list`` or ``report adjustments``, JSON or
CSV) and marks an open one paid or recovered with its own reference (a transfer's number), once; the
database refuses any other change but one: the reversal of a bill whose money an open order holds cancels
it (adapters/readjudication.py ``settle_reversed_orders``), naming the re-adjudication that re-issues what
is still owed of it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Final, Literal

import asyncpg

from adapters.fund_names import FundDirectory
from adapters.report_models import Period, Report
from settlement.money import format_yuan

OrderStatus = Literal["open", "paid", "recovered", "waived", "reported", "cancelled"]
STATUSES: Final[tuple[OrderStatus, ...]] = ("open", "paid", "recovered", "waived", "reported", "cancelled")
LIST_AT_MOST: Final = 10_000


class AdjustmentOrderOut(Report, frozen=True, kw_only=True):
    """One order: who (masked ID and name), which fund, how much (fen, always positive), why."""

    order_id: uuid.UUID
    person: str
    name: str
    year: int
    fund: str
    fund_name: str
    kind: Literal["payable", "recovery", "overpayment"]
    amount: int
    status: OrderStatus
    booked_on: dt.date
    readjudication_id: int
    cause: str
    closed_at: dt.datetime | None
    closed_by: str | None
    reference: str | None
    # A cancelled order: the re-adjudication that re-issues what is still owed of it, and why (a reversal).
    cancelled_by: int | None = None
    cancel_reason: str | None = None


class AdjustmentOrders(Report, frozen=True, kw_only=True):
    """Orders booked in a period, with the sums per kind and status (fen)."""

    period: Period
    status: OrderStatus | None
    orders: list[AdjustmentOrderOut]
    truncated: bool
    totals: dict[str, int]  # "<kind>.<status>" -> fen


_LIST: Final = f"""
SELECT o.order_id, p.masked_id, p.name, o.year, o.fund, o.kind, o.amount, o.status, o.booked_on,
       o.readjudication_id, r.cause, o.closed_at, o.closed_by, o.reference, o.cancelled_by, o.cancel_reason
FROM adjustment_orders o
JOIN readjudications r USING (person_key, readjudication_id)
JOIN people p ON p.person_key = o.person_key
WHERE o.booked_on BETWEEN $1 AND $2 AND ($3::text IS NULL OR o.status = $3)
ORDER BY o.booked_on, o.created_at, o.order_id
LIMIT {LIST_AT_MOST + 1}
"""

_TOTALS: Final = """
SELECT kind || '.' || status AS bucket, sum(amount)::bigint AS amount FROM adjustment_orders
WHERE booked_on BETWEEN $1 AND $2 AND ($3::text IS NULL OR status = $3)
GROUP BY 1 ORDER BY 1
"""


async def list_orders(
    connection: asyncpg.Connection,
    *,
    start: dt.date,
    end: dt.date,
    status: OrderStatus | None,
    funds: FundDirectory,
) -> AdjustmentOrders:
    """The orders booked from ``start`` to ``end`` (both included), of one status or all, oldest first."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = await connection.fetch(_LIST, start, end, status)
        totals = {row["bucket"]: row["amount"] for row in await connection.fetch(_TOTALS, start, end, status)}
    orders = [
        AdjustmentOrderOut(
            order_id=row["order_id"],
            person=row["masked_id"],
            name=row["name"],
            year=row["year"],
            fund=row["fund"],
            fund_name=funds.entry(row["fund"]).name,
            kind=row["kind"],
            amount=row["amount"],
            status=row["status"],
            booked_on=row["booked_on"],
            readjudication_id=row["readjudication_id"],
            cause=row["cause"],
            closed_at=row["closed_at"],
            closed_by=row["closed_by"],
            reference=row["reference"],
            cancelled_by=row["cancelled_by"],
            cancel_reason=row["cancel_reason"],
        )
        for row in rows[:LIST_AT_MOST]
    ]
    return AdjustmentOrders(
        period=Period(from_=start, to=end),
        status=status,
        orders=orders,
        truncated=len(rows) > LIST_AT_MOST,
        totals=totals,
    )


_CSV_HEADER: Final = (
    "订单号 order_id",
    "人员 person",
    "姓名 name",
    "年度 year",
    "基金 fund",
    "基金名称 fund_name",
    "类别 kind",
    "金额(元) amount_yuan",
    "状态 status",
    "记账日 booked_on",
    "原因 cause",
    "凭证号 reference",
    "取消原因 cancel_reason",
)


def orders_csv(report: AdjustmentOrders) -> str:
    """One order per row, money in yuan with two decimals, Chinese headers with the English beside them."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_HEADER)
    for order in report.orders:
        writer.writerow(
            (
                order.order_id,
                order.person,
                order.name,
                order.year,
                order.fund,
                order.fund_name,
                order.kind,
                format_yuan(order.amount),
                order.status,
                order.booked_on.isoformat(),
                order.cause,
                order.reference or "",
                order.cancel_reason or "",
            )
        )
    return out.getvalue()


class OrderNotFound(Exception):
    pass


class OrderNotOpen(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the order is {status}; only an open order is closed")
        self.status = status


async def close_order(
    connection: asyncpg.Connection, order_id: uuid.UUID, *, actor: str, reference: str, request_id: str
) -> str:
    """Mark an open order paid (payable) or recovered (recovery), with finance's reference, audited.
    Returns the new status. Raises OrderNotFound, or OrderNotOpen for an order already closed, waived or
    only reported."""
    async with connection.transaction():
        row = await connection.fetchrow(
            "SELECT person_key, kind, status FROM adjustment_orders WHERE order_id = $1 FOR UPDATE", order_id
        )
        if row is None:
            raise OrderNotFound
        if row["status"] != "open":
            raise OrderNotOpen(row["status"])
        status = "paid" if row["kind"] == "payable" else "recovered"
        await connection.execute(
            """UPDATE adjustment_orders SET status = $3, closed_at = now(), closed_by = $4, reference = $5
               WHERE person_key = $1 AND order_id = $2""",
            row["person_key"],
            order_id,
            status,
            actor,
            reference,
        )
        await connection.execute(
            """INSERT INTO audit_log (actor, action, subject, request_id, details)
               VALUES ($1, $2, $3, $4, jsonb_build_object('reference', $5::text))""",
            actor,
            f"adjustment_order.{status}",
            str(order_id),
            request_id,
            reference,
        )
    return status
