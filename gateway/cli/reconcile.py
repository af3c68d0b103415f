"""``medsettle reconcile insurer``: a day beside the insurer's core, three ways (adapters/insurer_reconciliation.py),
as a table for a person or as the JSON ``POST /v1/finance/reconciliation/insurer`` answers."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from adapters import insurer_messages, insurer_reconciliation
from adapters.finance import ReconciliationError, SubmittedSettlement
from adapters.fund_names import FundDirectory
from adapters.insurer.client import InsurerError, InsurerRefused, open_client
from adapters.insurer.protocol import CHINA_TIME
from adapters.insurer_reconciliation import InsurerReconciliation
from adapters.policy_files import load_policy_book, policy_dir
from adapters.reports import Reports
from gateway.cli.database import Connection, database_url, with_connection
from gateway.cli.reports import report_json
from gateway.config import Settings
from gateway.insurer import insurer_config
from gateway.problems import shown
from settlement.errors import PolicyError
from settlement.money import format_yuan_grouped

DESCRIPTION = (
    "Reconcile one day beside the insurer's core three ways: the insurer's totals and detail (3201, 3202), this "
    "gateway's ledger (its settle messages booked, less the settlements reversed here) and, with --clinic-list, "
    "the clinic's own list, per fund. The day is the China date the insurer committed a settlement (for a "
    "message it does not hold, the date it was sent); a message sent before midnight and committed after it is "
    "matched by id across the two days and named. Every discrepancy comes with the repair it needs. The insurer "
    "is the one the latest policy version names ([insurer]; MEDSETTLE_INSURER_URL overrides its url). Exit "
    "status: 0 clean, 1 a discrepancy or the insurer not balanced, 2 no insurer, a list that cannot be read, or "
    "the insurer or the database cannot be reached."
)
# A day's 3202 can be long: the command line waits longer for it than a settle waits (there is no request
# deadline here, as there is over HTTP).
QUERY_TIMEOUT_SECONDS = 30.0


class _ClinicListFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    clinic_list: insurer_reconciliation.ClinicList


def add_reconcile_parser(commands: Any, *, date: Callable[[str], dt.date]) -> None:
    """``medsettle reconcile insurer``: registered by ``gateway.cli.main.build_parser``."""
    reconcile = commands.add_parser("reconcile", help="reconcile a day with the insurer's core").add_subparsers(
        dest="action", required=True
    )
    insurer = reconcile.add_parser(
        "insurer",
        help="a day three ways: the insurer's 3201/3202, the ledger, and the clinic's list if given",
        description=DESCRIPTION,
    )
    insurer.add_argument("--day", type=date, required=True, help="the day, YYYY-MM-DD (China date)")
    insurer.add_argument(
        "--clinic-list",
        metavar="FILE",
        type=Path,
        help="the clinic's list of the day as JSON: the lines POST /v1/finance/reconciliation takes (settlement_id,"
        " total, insurance, veteran_subsidy, hardship_aid, out_of_pocket, other_funds, reversed, request_id), as a"
        ' list or as {"clinic_list": [...]}',
    )
    insurer.add_argument("--clinic", metavar="CODE", help="compare the list with this clinic's settlements only")
    insurer.add_argument("--format", choices=["table", "json"], default="table")
    insurer.set_defaults(run=cmd_reconcile_insurer)


def read_clinic_list(path: Path) -> list[SubmittedSettlement]:
    """The lines of a clinic's list file (a JSON list, or an object holding it as ``clinic_list``). Raises
    ValueError naming what is wrong and where."""
    try:
        body = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    try:
        if body.lstrip()[:1] == b"[":
            return msgspec.json.decode(body, type=insurer_reconciliation.ClinicList)
        return msgspec.json.decode(body, type=_ClinicListFile).clinic_list
    except msgspec.MsgspecError as error:
        raise ValueError(f"{path}: {error}") from None


def cmd_reconcile_insurer(settings: Settings, args: argparse.Namespace) -> int:
    name = "medsettle reconcile insurer"
    try:
        book = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir())
        clinic_list = None if args.clinic_list is None else read_clinic_list(args.clinic_list)
    except (PolicyError, ValueError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    link = next((policy.insurer for policy in reversed(list(book)) if policy.insurer), None)
    if link is None:
        print(f"{name}: no policy version settles beside an insurer's core ([insurer])", file=sys.stderr)
        return 2
    funds = FundDirectory(book)
    config = insurer_config(link, settings.insurer_url or None)
    config = msgspec.structs.replace(config, total_timeout=max(config.total_timeout, QUERY_TIMEOUT_SECONDS))

    async def work(connection: Connection) -> InsurerReconciliation:
        reports = Reports.over_connection(connection, funds=funds)
        async with open_client(config, connections=2) as client:
            return await insurer_reconciliation.reconcile(
                args.day,
                client=client,
                new_message_id=lambda: insurer_messages.new_message_id(connection, link.institution_code),
                ledger=reports.insurer_ledger,
                fund_types=insurer_reconciliation.remote_fund_types(book),
                funds=funds,
                clinic_list=clinic_list,
                clinic_id=args.clinic,
            )

    try:
        report = asyncio.run(with_connection(database_url(settings), work))
    except ReconciliationError as error:
        print(f"{name}: {error.field}: {error}", file=sys.stderr)
        return 2
    except InsurerRefused as refused:
        print(f"{name}: the insurer refused a query ({refused.infcode}): {shown(refused.message)}", file=sys.stderr)
        return 2
    except InsurerError as error:
        print(f"{name}: the insurer's core at {config.base_url} did not answer: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(report_json(report) if args.format == "json" else table(report))
    return 0 if report.clean else 1


def table(report: InsurerReconciliation) -> str:
    """The report for a person at a terminal: each side's totals per fund in yuan, then each discrepancy with
    its repair, then the messages that crossed midnight."""
    lines = [
        f"Reconciliation with the insurer's core {report.institution_code} for {report.day}"
        " (China date of the insurer's commit)",
        f"The insurer's 3201: {'balanced' if report.balanced else 'NOT balanced: ' + report.insurer_says}",
        "",
    ]
    sides = [("insurer", report.insurer), ("gateway", report.gateway)]
    if report.clinic is not None:
        sides.append(("clinic", report.clinic))
    rows = [("", *(side for side, _ in sides))]
    rows.append(("settlements", *(str(totals.settlements) for _, totals in sides)))
    rows.append(("bills' total (yuan)", *(format_yuan_grouped(totals.total) for _, totals in sides)))
    for fund in report.funds:
        label = (
            f"{fund.code} ({fund.fund_type})"
            if fund.name == fund.code
            else f"{fund.name} {fund.code} ({fund.fund_type})"
        )
        rows.append((label, *(format_yuan_grouped(totals.funds.get(fund.code, 0)) for _, totals in sides)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines += ["", f"Matched: {report.matched_count} settlements in force on both sides, to the fen."]
    for title, found in (
        ("with the insurer", report.discrepancies),
        ("of the clinic's list with the gateway", report.clinic_discrepancies),
    ):
        if found:
            lines += ["", f"Discrepancies {title} ({len(found)}):"]
            for discrepancy in found:
                lines.append(f"  {_subject(discrepancy)}")
                lines.append(f"    repair: {discrepancy.repair}")
    if report.crossed_midnight:
        lines += ["", "Sent before midnight, committed by the insurer after it (matched by message id):"]
        for crossed in report.crossed_midnight:
            sent = crossed.sent_at.astimezone(CHINA_TIME)
            lines.append(
                f"  {crossed.message_id}: sent {sent:%Y-%m-%d %H:%M:%S}, committed {crossed.settled_at}:"
                f" reconciled on {crossed.reconciled_on}"
            )
    count = len(report.discrepancies) + len(report.clinic_discrepancies)
    if report.clean:
        verdict = "Clean."
    elif report.balanced:
        verdict = f"Not clean: {count} discrepancies."
    else:
        verdict = f"Not clean: {count} discrepancies, and the insurer's totals do not balance."
    lines += ["", verdict, ""]
    return "\n".join(lines)


def _subject(discrepancy: Any) -> str:
    """What a discrepancy is about, in one line: its kind, the message or settlement, and the figures."""
    kind = discrepancy.__struct_config__.tag
    about = [kind]
    for field in ("message_id", "settlement_id", "request_id"):
        value = getattr(discrepancy, field, None)
        if value is not None:
            about.append(f"{field} {value}")
    if hasattr(discrepancy, "insurer"):
        about.append(f"{discrepancy.field}: gateway {discrepancy.gateway} fen, insurer {discrepancy.insurer} fen")
    elif hasattr(discrepancy, "submitted"):
        about.append(f"{discrepancy.field}: gateway {discrepancy.gateway} fen, clinic {discrepancy.submitted} fen")
    return ", ".join(about)
