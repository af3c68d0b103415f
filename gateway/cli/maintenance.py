"""Keeping the database sound: ``medsettle migrate``, ``check`` (the ledger's invariants) and ``audit``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from adapters import audit, db
from adapters.check import Violation, check_invariants, missing_acknowledged, parse_acknowledged
from gateway.cli.database import Connection, database_url, with_connection
from gateway.config import Settings


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(with_connection(database_url(settings), db.migrate))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none, schema is current'}")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    acknowledged = None
    if args.acknowledged:
        try:
            acknowledged = parse_acknowledged(Path(args.acknowledged).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            print(f"{args.acknowledged}: {error}", file=sys.stderr)
            return 2

    async def check(connection: Connection) -> list[Violation]:
        found = await check_invariants(connection)
        if acknowledged is not None:
            found += await missing_acknowledged(connection, acknowledged)
        return found

    violations = asyncio.run(with_connection(database_url(settings), check))
    if args.json:
        print(json.dumps([{"rule": v.rule, "detail": v.detail} for v in violations]))
    elif violations:
        for violation in violations:
            print(f"VIOLATION {violation.rule}: {violation.detail}")
    else:
        print(
            "all invariants hold: ledgers balance, money is conserved, accumulators equal the ledger and "
            "stay within caps, one settlement per request id"
            + (f"; all {len(acknowledged)} acknowledged ids are stored" if acknowledged is not None else "")
        )
    return 1 if violations else 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    grace = audit.ledger_seal_grace(settings.request_timeout)

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        sealed = ledger = 0
        while (count := await audit.seal(connection)) > 0:
            sealed += count
        while (count := await audit.seal_ledger(connection, grace_seconds=grace)) > 0:
            ledger += count
        if args.action != "verify":
            return sealed, ledger, None, None
        return sealed, ledger, await audit.verify(connection), await audit.verify_ledger(connection)

    sealed, ledger, report, ledger_report = asyncio.run(with_connection(database_url(settings), work))
    if report is None:
        print(f"sealed {sealed} audit row(s) and {ledger} settlement and reversal row(s)")
        return 0
    if report.problem:
        print(f"AUDIT CHAIN BROKEN: {report.problem}")
    else:
        print(f"audit chain intact: {report.sealed} row(s) sealed and verified, {report.unsealed} waiting to be sealed")
    if ledger_report.problem:
        print(f"LEDGER CHAIN BROKEN: {ledger_report.problem}")
    else:
        print(
            f"ledger chain intact: {ledger_report.settlements} settlement(s) and {ledger_report.reversals} reversal(s)"
            f" in {ledger_report.periods} sealed period(s) verified, {ledger_report.waiting} waiting to be sealed"
            f" (a minute is sealed {grace:g} s after it ends); head {ledger_report.head.hex()}"
        )
    return 1 if report.problem or ledger_report.problem else 0
