"""Re-adjudication from the command line: ``adjustments list`` (also ``report adjustments``), ``adjustments run``
and ``adjustments close``.

Gateways work the re-adjudication list in the background (MEDSETTLE_READJUDICATE_PER_SECOND); ``run`` works
it now, unthrottled, from this process (after a large back-dated import, in a quiet hour, or with the
background runner turned off). ``list`` shows finance the orders; ``close`` marks one paid or recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from adapters import adjustment_orders, db, readjudication
from adapters.fund_names import FundDirectory
from adapters.policy_files import load_policy_book, policy_dir
from adapters.reports import Reports
from gateway.cli.database import Connection, database_url, with_connection
from gateway.config import Settings
from gateway.service import china_today
from settlement.money import format_yuan


def add_adjustments_parser(commands: Any, *, actor: str, date: Callable[[str], dt.date]) -> None:
    adjustments = commands.add_parser(
        "adjustments", help="re-adjudication: the orders for finance, and working the list now"
    ).add_subparsers(dest="action", required=True)
    add_listing_parser(adjustments, "list", date=date)
    run = adjustments.add_parser("run", help="re-adjudicate the pending person-years now, unthrottled")
    run.add_argument("--limit", type=int, default=100_000, help="at most this many person-years (default 100,000)")
    run.set_defaults(run=cmd_adjustments_run)
    close = adjustments.add_parser("close", help="mark an open order paid (payable) or recovered (recovery)")
    close.add_argument("order_id", type=uuid.UUID)
    close.add_argument("--reference", required=True, help="finance's own reference, such as a transfer number")
    close.add_argument("--actor", default=actor, help="who closes it, for the audit trail")
    close.set_defaults(run=cmd_adjustments_close)


LISTING_HELP = "orders booked in a period: payable, recovery, overpayment"


def add_listing_parser(commands: Any, name: str, *, date: Callable[[str], dt.date]) -> None:
    """The orders' listing as the subcommand ``name`` of ``commands``: ``adjustments list``, and ``report
    adjustments`` beside the other finance reports (gateway/cli/reports.py), the same options and output."""
    listing = commands.add_parser(name, help=LISTING_HELP)
    listing.add_argument(
        "--from", dest="period_from", type=date, help="first booking day (default: first of --to's month)"
    )
    listing.add_argument("--to", dest="period_to", type=date, help="last booking day (default today, China time)")
    listing.add_argument("--status", choices=adjustment_orders.STATUSES, help="only orders of this status")
    listing.add_argument("--format", choices=["table", "json", "csv"], default="table")
    listing.set_defaults(run=cmd_adjustments_list)


def cmd_adjustments_list(settings: Settings, args: argparse.Namespace) -> int:
    end = args.period_to or china_today()
    start = args.period_from or end.replace(day=1)
    book = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir())

    async def work(connection: Connection) -> adjustment_orders.AdjustmentOrders:
        await db.migrate(connection)
        reports = Reports.over_connection(connection, funds=FundDirectory(book))
        return await reports.adjustment_orders(start=start, end=end, status=args.status)

    report = asyncio.run(with_connection(database_url(settings), work))
    if args.format == "json":
        print(json.dumps(msgspec.to_builtins(report), ensure_ascii=False, indent=2))
    elif args.format == "csv":
        print(adjustment_orders.orders_csv(report), end="")
    else:
        rows = [("ORDER", "BOOKED", "PERSON", "FUND", "KIND", "AMOUNT", "STATUS", "CAUSE")]
        for order in report.orders:
            rows.append(
                (
                    str(order.order_id),
                    order.booked_on.isoformat(),
                    order.person,
                    order.fund,
                    order.kind,
                    format_yuan(order.amount),
                    order.status,
                    order.cause[:60],
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        for bucket, amount in report.totals.items():
            print(f"{bucket}: {format_yuan(amount)}")
        if report.truncated:
            print(f"(the first {adjustment_orders.LIST_AT_MOST:,} orders; narrow the period or use --status)")
    return 0


def cmd_adjustments_run(settings: Settings, args: argparse.Namespace) -> int:
    book = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir())

    async def work() -> list[readjudication.Outcome]:
        url = database_url(settings)
        await with_connection(url, db.migrate)
        return await readjudication.run_pending(url, policy_for=book.in_force, today=china_today, limit=args.limit)

    outcomes = asyncio.run(work())
    adjusted = sum(1 for outcome in outcomes if outcome.adjusted and not outcome.needs_review)
    review = [outcome for outcome in outcomes if outcome.needs_review]
    print(
        f"re-adjudicated {len(outcomes):,} person-years: {adjusted:,} adjusted, "
        f"{len(outcomes) - adjusted - len(review):,} unchanged, {len(review):,} need review"
    )
    for outcome in review:
        print(f"  needs review: re-adjudication {outcome.readjudication_id}: {outcome.needs_review}")
    return 1 if review else 0


def cmd_adjustments_close(settings: Settings, args: argparse.Namespace) -> int:
    async def work(connection: Connection) -> str:
        await db.migrate(connection)
        return await adjustment_orders.close_order(
            connection, args.order_id, actor=args.actor, reference=args.reference, request_id=""
        )

    try:
        status = asyncio.run(with_connection(database_url(settings), work))
    except adjustment_orders.OrderNotFound:
        print(f"no adjustment order {args.order_id}")
        return 1
    except adjustment_orders.OrderNotOpen as error:
        print(str(error))
        return 1
    print(f"order {args.order_id} {status}, reference {args.reference}")
    return 0
