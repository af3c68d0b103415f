"""``medsettle report daily|monthly|stats|adjustments``: the daily statement for one booking day and the monthly
one per fund and clinic (JSON, CSV or xlsx), finance statistics, and re-adjudication's orders (the same
listing as ``medsettle adjustments list``, gateway/cli/adjustments.py)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from adapters import finance_stats, statement_export, xlsx_export
from adapters.fund_names import FundDirectory
from adapters.monthly_statement import monthly_tables, parse_month
from adapters.policy_files import load_policy_book, policy_dir
from adapters.report_models import DailyStatement, FinanceStatsReport, MonthlyStatement, Report
from adapters.reports import Reports
from adapters.xlsx_export import Table
from gateway.cli.adjustments import add_listing_parser
from gateway.cli.database import Connection, database_url, with_connection
from gateway.service import china_today


def report_json(report: Report) -> str:
    """A report as indented JSON with the field names the HTTP API uses."""
    return json.dumps(msgspec.to_builtins(report), ensure_ascii=False, indent=2) + "\n"


def funds(settings: Any) -> FundDirectory:
    """The funds of every policy version in the policy folder, for their names, as the gateway has them."""
    return FundDirectory(load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir()))


def cmd_report_daily(settings: Any, args: argparse.Namespace) -> int:
    day = args.date or china_today()
    directory = funds(settings)

    async def work(connection: Connection) -> DailyStatement:
        return await Reports.over_connection(connection, funds=directory).daily_statement(day, today=china_today())

    statement = asyncio.run(with_connection(database_url(settings), work))
    return write_report(args, statement, statement_export.daily_tables(statement), args.scope)


def write_report(args: argparse.Namespace, report: Report, tables: dict[str, Table], csv_table: str) -> int:
    """The report in ``args.format``: JSON; the table ``csv_table`` as CSV; or every table as a workbook."""
    if args.format == "xlsx":
        return write_workbook(list(tables.values()), args.output)
    sys.stdout.write(xlsx_export.table_csv(tables[csv_table]) if args.format == "csv" else report_json(report))
    return 0


def write_workbook(tables: list[Table], output: Path | None) -> int:
    """An xlsx workbook to ``output``, or to standard output when it is not a terminal; 2 when neither."""
    if output is None and sys.stdout.isatty():
        print("medsettle report: an xlsx workbook is binary: give --output FILE or redirect", file=sys.stderr)
        return 2
    book = xlsx_export.workbook(tables)
    if output is None:
        sys.stdout.buffer.write(book)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(book)
    return 0


def cmd_report_monthly(settings: Any, args: argparse.Namespace) -> int:
    month = args.month or china_today()
    directory = funds(settings)

    async def work(connection: Connection) -> MonthlyStatement:
        return await Reports.over_connection(connection, funds=directory).monthly_statement(month, today=china_today())

    statement = asyncio.run(with_connection(database_url(settings), work))
    return write_report(args, statement, monthly_tables(statement), "lines")


def cmd_report_stats(settings: Any, args: argparse.Namespace) -> int:
    period_to = args.period_to or china_today()
    period_from = args.period_from or period_to.replace(day=1)
    directory = funds(settings)

    async def work(connection: Connection) -> FinanceStatsReport:
        return await Reports.over_connection(connection, funds=directory).finance_stats(
            by=args.by, period_from=period_from, period_to=period_to
        )

    stats = asyncio.run(with_connection(database_url(settings), work))
    sys.stdout.write(finance_stats.stats_csv(stats) if args.format == "csv" else report_json(stats))
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def _month(text: str) -> dt.date:
    try:
        return parse_month(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month in YYYY-MM form") from None


def _file_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--format json|csv|xlsx`` (``what`` says what the files hold) and ``--output`` for the workbook."""
    parser.add_argument("--format", choices=["json", "csv", "xlsx"], default="json", help=what)
    parser.add_argument("--output", type=Path, help="write the xlsx workbook to FILE (else standard output)")


def add_finance_parser(commands: Any) -> None:
    report = commands.add_parser("report", help="finance reports").add_subparsers(dest="action", required=True)
    daily = report.add_parser(
        "daily",
        help="daily statement per clinic and fund, by level and region, with the day's reversals",
        description="Computed from the append-only ledger by booking day (China date), so a closed day's "
        "statement never changes; a later reversal shows on the day it is made.",
    )
    daily.add_argument("--date", type=_date, help="booking day, YYYY-MM-DD (default today, China time)")
    _file_arguments(
        daily, "csv: one scope (--scope) in yuan with Chinese and English headers; xlsx: one sheet per scope"
    )
    daily.add_argument("--scope", choices=statement_export.SCOPES, default="clinic", help="the scope a CSV holds")
    daily.set_defaults(run=cmd_report_daily)
    monthly = report.add_parser(
        "monthly",
        help="monthly statement per fund and clinic by booking month (the basis of 拨付 and 清算)",
        description="Computed from the append-only ledger over the booking days of one month (China dates); a "
        "reversal booked in a later month shows in that month.",
    )
    monthly.add_argument("--month", type=_month, help="booking month, YYYY-MM (default this month, China time)")
    _file_arguments(
        monthly, "csv: every fund x clinic line in yuan; xlsx: a summary by fund, the lines, a sheet per fund"
    )
    monthly.set_defaults(run=cmd_report_monthly)
    stats = report.add_parser(
        "stats",
        help="amounts per payer, out-of-pocket share, caps reached and people served, by one dimension",
        description="Over settlements not reversed, by service date. Shares are exact decimals.",
    )
    stats.add_argument("--by", choices=list(finance_stats.DIMENSIONS), default="level")
    stats.add_argument("--from", dest="period_from", type=_date, help="first service date (default first of the month)")
    stats.add_argument("--to", dest="period_to", type=_date, help="last service date (default today)")
    stats.add_argument("--format", choices=["json", "csv"], default="json")
    stats.set_defaults(run=cmd_report_stats)
    add_listing_parser(report, "adjustments", date=_date)  # the orders for finance, as `adjustments list`
