"""``medsettle policy what-if``: replay past settlements under a candidate policy file (adapters/what_if.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from adapters.catalogue_store import load_catalogue
from adapters.fund_names import FundDirectory
from adapters.policy_files import load_policy_book, load_policy_file, policy_dir
from adapters.what_if import GROUP_BYS, WhatIfReport, what_if, what_if_csv
from gateway.cli.database import Connection, database_url, with_connection
from gateway.cli.registry import progress_bar
from gateway.cli.reports import _date, report_json
from gateway.config import Settings
from settlement.errors import PolicyError
from settlement.money import format_yuan

WHAT_IF_DESCRIPTION = (
    "Replay every settlement not reversed whose service date is in [--from, --to] under the CANDIDATE policy "
    "file, with the registry as it stood on each service date and the item catalogue in force then, and "
    "report per fund and per group what was paid and what would be paid, the difference, the people who "
    "would pay less, more or the same out of pocket, and the out-of-pocket shares before and after. Each "
    "person-year is replayed from 1 January, so the candidate's deductibles, year-to-date bases and caps "
    "count the bills before the window too. Nothing is written. Exit status: 0 done, 2 the candidate does "
    "not load or the database cannot be reached."
)


def cmd_what_if(settings: Settings, args: argparse.Namespace) -> int:
    try:
        candidate = load_policy_file(Path(args.candidate))
        book = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir())
    except PolicyError as error:
        print(f"medsettle policy what-if: {error}", file=sys.stderr)
        return 2
    if args.period_from > args.period_to:
        print("medsettle policy what-if: --from is after --to", file=sys.stderr)
        return 2
    funds = FundDirectory([*book, candidate])
    progress = progress_bar("replaying")

    async def work(connection: Connection) -> WhatIfReport:
        catalogue = await load_catalogue(connection)
        return await what_if(
            connection, candidate, start=args.period_from, end=args.period_to, by=args.by,
            catalogue=catalogue, funds=funds, progress=progress,
        )  # fmt: skip

    report = asyncio.run(with_connection(database_url(settings), work))
    if progress is not None:
        print(file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(what_if_csv(report))
    elif args.format == "json":
        sys.stdout.write(report_json(report))
    else:
        sys.stdout.write(what_if_table(report))
    return 0


def what_if_table(report: WhatIfReport) -> str:
    """The report for a person to read: the total, then each group; money in yuan."""
    lines = [
        f"candidate {report.candidate}, service dates {report.period.from_} to {report.period.to}, by {report.by}: "
        f"{report.settlements:,} settlements compared ({report.replayed:,} replayed from 1 January)",
    ]
    if report.refused:
        refused = ", ".join(f"{code} {count:,}" for code, count in report.refused.items())
        lines.append(f"refused by the candidate (left out): {refused}")
    for group in [report.total, *report.groups]:
        lines.append("")
        lines.append(
            f"{group.group}: {group.settlements:,} settlements, {group.people:,} people "
            f"({group.better_off:,} would pay less, {group.worse_off:,} more, {group.unchanged:,} the same); "
            f"median out-of-pocket share {group.share_today.median or '-'} -> {group.share_would.median or '-'}"
        )
        lines.append(f"  {'fund':<28} {'today':>16} {'would':>16} {'difference':>16}")
        for impact in [*group.funds, group.out_of_pocket]:
            sign = "+" if impact.difference > 0 else ""
            lines.append(
                f"  {impact.name:<28} {format_yuan(impact.today):>16} {format_yuan(impact.would):>16} "
                f"{sign + format_yuan(impact.difference):>16}"
            )
    return "\n".join(lines) + "\n"


def add_policy_parser(commands: Any) -> None:
    policy = commands.add_parser("policy", help="policy tools").add_subparsers(dest="action", required=True)
    command = policy.add_parser(
        "what-if", help="replay past settlements under a candidate policy file", description=WHAT_IF_DESCRIPTION
    )
    command.add_argument("candidate", help="the candidate policy file (TOML, docs/policy-files.md)")
    command.add_argument("--from", dest="period_from", type=_date, required=True, help="first service date")
    command.add_argument("--to", dest="period_to", type=_date, required=True, help="last service date")
    command.add_argument("--by", choices=GROUP_BYS, default="fund", help="group by fund, tier, level or region")
    command.add_argument("--format", choices=["table", "json", "csv"], default="table")
    command.set_defaults(run=cmd_what_if)
