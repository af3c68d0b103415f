"""``medsettle``: one command-line tool for serve, migrate, demo data, the registry, the item catalogue,
terminals and reports.

This module builds the command tree and runs the chosen command; each group of commands
lives in a module of its own beside it (``serve``, ``registry``, ``terminals``, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import importlib.metadata
import os
import sys

from gateway.cli.adjustments import add_adjustments_parser
from gateway.cli.catalogue import add_catalogue_parser
from gateway.cli.client import cmd_client
from gateway.cli.dashboard_link import add_dashboard_link_parser
from gateway.cli.database import DatabaseUnreachable
from gateway.cli.demo import cmd_demo
from gateway.cli.insurer_sim import add_insurer_sim_parser
from gateway.cli.maintenance import cmd_audit, cmd_check, cmd_migrate
from gateway.cli.policy import add_policy_parser
from gateway.cli.reader_sim import add_reader_sim_parser
from gateway.cli.reconcile import add_reconcile_parser
from gateway.cli.registry import DRY_RUN_SHOWN, FULL_LIST_HELP, cmd_clinics_import, cmd_import, cmd_registry_stats
from gateway.cli.reports import add_finance_parser
from gateway.cli.serve import cmd_serve, serve_defaults
from gateway.cli.terminals import cmd_terminals_add, cmd_terminals_key, cmd_terminals_list
from gateway.config import ConfigError, load_settings
from gateway.logs import configure_logging


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def _version() -> str:
    try:
        return importlib.metadata.version("medsettle")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsettle", description="Real-time medical settlement gateway")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP gateway (embedded PostgreSQL unless DATABASE_URL)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true", help="seed the demo county on first start")
    serve.add_argument("--workers", type=int, help="processes sharing the port (default MEDSETTLE_WORKERS, 1)")
    serve.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # the parent's pid, given to its workers
    serve.add_argument(
        "--insurer-sim",
        action="store_true",
        help="run the insurer simulator in this process and settle beside it: policies/examples/beside-the-insurer"
        " on .data-insurer/ unless MEDSETTLE_POLICY_DIR or MEDSETTLE_DATA_DIR say otherwise (docs/insurer.md)",
    )
    serve.add_argument(
        "--insurer-sim-port",
        type=int,
        help="the simulator's port, its control routes on the next (default: free ports)",
    )
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    commands.add_parser("demo", help="seed the demo county (idempotent)").set_defaults(run=cmd_demo)
    check = commands.add_parser("check", help="verify ledger, conservation and accumulator invariants")
    check.add_argument("--json", action="store_true", help="print violations as JSON")
    check.add_argument(
        "--acknowledged",
        metavar="FILE",
        help="also check that every settlement or reversal id in FILE (one per line, or a JSON list),"
        " as a client saw them acknowledged, is stored",
    )
    check.set_defaults(run=cmd_check)

    actor = f"cli:{getpass.getuser()}"
    imports = commands.add_parser(
        "import",
        help="import a bureau list, or a list of another programme the policy names (CSV or XLSX)",
        description="Import a civil-affairs (hardship tiers), veterans (priority-care) or insurance list, or a "
        "list of another programme the policy in force names under [programmes] (charity), whose codes are "
        "the ones the policy declares for it. See samples/README.md for the column layout. Bad rows are "
        "reported with their line and never stop the good ones; importing the same file twice changes nothing. "
        "Exit status: 0 all rows taken, 1 some rows rejected (the good ones are written) or strike-offs not "
        "confirmed, 2 the file, the kind or the policy is unusable.",
    )
    imports.add_argument(
        "kind",
        metavar="KIND",
        help="civil-affairs, veterans, insurance, or a programme the latest policy names (for example charity)",
    )
    imports.add_argument("file")
    imports.add_argument(
        "--dry-run",
        action="store_true",
        help=f"write nothing to the registry: print the counts and the first {DRY_RUN_SHOWN} changes",
    )
    imports.add_argument(
        "--write-list",
        metavar="FILE",
        help="write every row of the list to FILE (.csv or .xlsx), accepted ones with what the import does "
        "(or would do, with --dry-run) and rejected ones with the reason; IDs masked",
    )
    imports.add_argument("--full-list", action="store_true", help=FULL_LIST_HELP)
    imports.add_argument("--as-of", type=_date, help="strike-off date for people missing from a full list")
    imports.add_argument("--yes", action="store_true", help="confirm full-list strike-offs without asking")
    imports.add_argument("--verbose", action="store_true", help="print every change (a dry run prints the first ones)")
    imports.add_argument("--actor", default=actor, help="who is importing, for the audit trail")
    imports.set_defaults(run=cmd_import)

    clinics = commands.add_parser("clinics", help="manage clinics").add_subparsers(dest="action", required=True)
    clinics_import = clinics.add_parser(
        "import", help="load clinics from CSV (code,name,level,region); existing codes are updated"
    )
    clinics_import.add_argument("file")
    clinics_import.add_argument("--actor", default=actor)
    clinics_import.set_defaults(run=cmd_clinics_import)

    terminals = commands.add_parser("terminals", help="manage terminals").add_subparsers(dest="action", required=True)
    terminals_add = terminals.add_parser("add", help="register a terminal for a clinic")
    terminals_add.add_argument("--clinic", required=True)
    terminals_add.add_argument("--role", choices=["terminal", "finance", "admin"], default="terminal")
    terminals_add.add_argument("--id", help="terminal id (default: term-<clinic>-<n>)")
    terminals_add.add_argument("--actor", default=actor)
    terminals_add.set_defaults(run=cmd_terminals_add)
    terminals_list = terminals.add_parser(
        "list", help="terminals with clinic, role, status and their keys' ids and states (never secrets)"
    )
    terminals_list.add_argument("--clinic", metavar="CODE", help="only this clinic's terminals")
    terminals_list.add_argument("--format", choices=["table", "json"], default="table")
    terminals_list.set_defaults(run=cmd_terminals_list)
    for action, target, text in (
        ("rotate", "terminal", "add a second key to a terminal (both work until you retire one)"),
        ("retire-key", "key_id", "stop accepting one key"),
        ("revoke", "terminal", "stop accepting every key of a terminal"),
    ):
        command = terminals.add_parser(action, help=text)
        command.add_argument("target", metavar=target.upper())
        command.add_argument("--actor", default=actor)
        command.set_defaults(run=cmd_terminals_key)

    audit_commands = commands.add_parser(
        "audit", help="the hash chains of the audit trail and of settlements and reversals"
    ).add_subparsers(dest="action", required=True)
    audit_commands.add_parser(
        "seal", help="chain audit rows not yet sealed, and the ended minutes of settlements and reversals"
    ).set_defaults(run=cmd_audit)
    audit_commands.add_parser(
        "verify", help="seal what is waiting, then walk both chains and name the first altered or removed row"
    ).set_defaults(run=cmd_audit)

    client = commands.add_parser("client", help="send a signed request as a terminal")
    client.add_argument("method", help="GET or POST")
    client.add_argument("path", help="for example /v1/settlements")
    client.add_argument("--data", help="JSON body, or @FILE")
    client.add_argument("--terminal", default="term-C001", help="terminal whose key to use (from --keys)")
    client.add_argument("--keys", help="JSON file of terminal keys (default: the demo's .data/terminal-keys.json)")
    client.add_argument("--key-id")
    client.add_argument("--secret")
    client.add_argument("--url", help="gateway base URL (default from MEDSETTLE_HOST and MEDSETTLE_PORT)")
    client.set_defaults(run=cmd_client)
    add_reader_sim_parser(commands)  # medsettle reader-sim: a card reader by hand (gateway/cli/reader_sim.py)
    add_insurer_sim_parser(commands)  # medsettle insurer-sim: the insurer's core, simulated (cli/insurer_sim.py)
    add_dashboard_link_parser(commands)  # medsettle dashboard-link: a browser login link (cli/dashboard_link.py)
    add_finance_parser(commands)  # medsettle report daily (gateway/cli/reports.py)
    add_reconcile_parser(commands, date=_date)  # medsettle reconcile insurer (cli/reconcile.py)
    add_catalogue_parser(commands, actor=actor, date=_date)  # medsettle catalogue import (cli/catalogue.py)
    add_policy_parser(commands)  # medsettle policy what-if (cli/policy.py)
    add_adjustments_parser(commands, actor=actor, date=_date)  # medsettle adjustments list|run|close

    registry = commands.add_parser("registry", help="registry reports").add_subparsers(dest="action", required=True)
    stats = registry.add_parser("stats", help="people in force on a date, added and struck off in a period")
    stats.add_argument("--date", type=_date, help="count people in force on this date (default today)")
    stats.add_argument("--from", dest="period_from", type=_date, help="period start (default first of the month)")
    stats.add_argument("--to", dest="period_to", type=_date, help="period end (default --date)")
    stats.add_argument("--format", choices=["json", "csv"], default="json")
    stats.set_defaults(run=cmd_registry_stats)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            workers=getattr(args, "workers", None),
            **serve_defaults(args, os.environ),
        )
    except ConfigError as error:
        print(f"medsettle: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format or ("console" if sys.stderr.isatty() else "json"), settings.log_level)
    try:
        status = args.run(settings, args)
    except DatabaseUnreachable as error:
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"medsettle {command}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except BrokenPipeError:
        # The reader went away (`medsettle terminals list | head`): stop quietly, as other tools do. Point
        # stdout at /dev/null so the interpreter's final flush does not fail the same way.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    raise SystemExit(status)
