"""``medsettle``: one command-line tool for serve, migrate, demo data and the invariant check."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import hashlib
import importlib.metadata
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import aiohttp

from adapters import db
from adapters.check import Violation, check_invariants, missing_acknowledged, parse_acknowledged
from adapters.demo import demo_key_file, ensure_terminal_keys, has_clinics, seed_demo
from adapters.report_models import RegistryStats
from adapters.reports import Reports
from gateway.card_reader.client import add_reader_sim_parser
from gateway.cli.database import Connection, DatabaseUnreachable, database_url, nothing, with_connection
from gateway.cli.reports import add_finance_parser, report_json
from gateway.config import ConfigError, Settings, load_settings
from gateway.dashboard.pages import add_dashboard_link_parser
from gateway.logs import configure_logging, log


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(with_connection(database_url(settings), db.migrate))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none, schema is current'}")
    return 0


async def _seed(connection: Connection, settings: Settings, *, only_if_empty: bool) -> dict[str, int] | None:
    await db.migrate(connection)
    if only_if_empty and await has_clinics(connection):
        await ensure_terminal_keys(connection, settings.terminal_key_key)
        return None
    return await seed_demo(connection, settings.id_pepper, settings.terminal_key_key)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    url = database_url(settings)
    counts = asyncio.run(with_connection(url, lambda c: _seed(c, settings, only_if_empty=False)))
    print(f"demo county seeded: {counts}")
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


FULL_LIST_HELP = (
    "the file is a FULL list: it names everyone currently in the programme, so anyone in force now but "
    "missing from it is struck off as of --as-of (default today). You are asked to confirm the count "
    "first (or pass --yes). Without --full-list the file is a partial list: it only adds and changes."
)


VERBS = {
    "added": ("would add", "added"),
    "changed": ("would change", "changed"),
    "struck_off": ("would strike off", "struck off"),
}


def _progress(label: str) -> Any:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total:
            filled = int(30 * done / total)
            print(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", file=sys.stderr)
        else:
            print(f"\r{label} {done} rows", end="", file=sys.stderr)

    return show


def _confirm(assume_yes: bool, as_of: dt.date) -> Any:
    def ask(count: int) -> bool:
        if assume_yes:
            return True
        if not sys.stdin.isatty():
            print(
                f"{count} people would be struck off as of {as_of}; re-run with --yes to confirm. Nothing written.",
                file=sys.stderr,
            )
            return False
        answer = input(
            f"{count} people in force are missing from this full list and will be struck off as of "
            f"{as_of}. Continue? [y/N] "
        )
        return answer.strip().lower() in ("y", "yes")

    return ask


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.registry_files import PROGRAMME, ListFormatError, read_list
    from adapters.registry_store import PersonEntry, apply_entries
    from settlement.registry import ListEntry

    path = Path(args.file)
    try:
        rows, rejected = read_list(path, args.kind, progress=_progress(f"reading {path.name}"))
    except (ListFormatError, OSError) as error:
        print(f"medsettle import: {path}: {error}", file=sys.stderr)
        return 2
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.full_list and rejected:
        # A rejected row's person would look missing from the list and be struck off by mistake.
        for row in rejected:
            print(f"rejected line {row.line}: {row.reason}")
        print(
            f"medsettle import: {path.name} has {len(rejected)} rejected row(s); a full list must be clean before "
            "anyone is struck off. Fix the rows, or import it without --full-list. Nothing written.",
            file=sys.stderr,
        )
        return 2
    programme = PROGRAMME[args.kind]
    entries = [
        PersonEntry(
            row.line,
            row.national_id,
            row.name,
            ListEntry(
                programme=programme, code=row.code, effective_from=row.effective_from, struck_off_on=row.struck_off_on
            ),
        )
        for row in rows
    ]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    as_of = args.as_of or dt.date.today()

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        return await apply_entries(
            connection,
            entries,
            pepper=settings.id_pepper,
            actor=args.actor,
            source=f"{args.kind}:{path.name} sha256:{digest}",
            dry_run=args.dry_run,
            full_list=(programme, as_of) if args.full_list else None,
            confirm=_confirm(args.yes, as_of),
            rejected=[(row.line, row.reason) for row in rejected],
        )

    report = asyncio.run(with_connection(database_url(settings), work))
    for line, reason in sorted(report.rejected):
        print(f"rejected line {line}: {reason}")
    if args.dry_run or args.verbose:
        for change in report.changes:
            where = f"line {change.line}" if change.line else "not on list"
            verb = VERBS[change.outcome][0 if args.dry_run else 1]
            print(f"{verb}: {where}: {change.person} {change.description}")
    summary = report.summary()
    print(
        f"{path.name}: added {summary['added']}, changed {summary['changed']}, struck off {summary['struck_off']}, "
        f"unchanged {summary['unchanged']}, rejected {summary['rejected']}"
        + (
            " (dry run: nothing written)"
            if args.dry_run
            else ""
            if report.applied
            else " (not confirmed: nothing written)"
        )
    )
    if not args.dry_run and not report.applied:
        return 1
    return 1 if report.rejected else 0


def cmd_clinics_import(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.registry_admin import import_clinics

    path = Path(args.file)

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        return await import_clinics(connection, path, actor=args.actor)

    try:
        result = asyncio.run(with_connection(database_url(settings), work))
    except ValueError as error:
        print(f"medsettle clinics import: {error}", file=sys.stderr)
        return 2
    print(f"{path.name}: added {result['added']}, changed {result['changed']}, unchanged {result['unchanged']}")
    return 0


def cmd_terminals_add(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.registry_admin import add_terminal
    from adapters.terminal_keys import create_key

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        terminal_id = await add_terminal(
            connection, clinic_id=args.clinic, role=args.role, terminal_id=args.id, actor=args.actor
        )
        return terminal_id, *await create_key(connection, settings.terminal_key_key, terminal_id, actor=args.actor)

    try:
        terminal_id, key_id, secret = asyncio.run(with_connection(database_url(settings), work))
    except ValueError as error:
        print(f"medsettle terminals add: {error}", file=sys.stderr)
        return 2
    print(f"terminal {terminal_id} added for clinic {args.clinic} with role {args.role}")
    _print_key(key_id, secret)
    return 0


def _print_key(key_id: str, secret: str) -> None:
    print(f"key_id: {key_id}\nsecret: {secret}")
    print("The secret is shown only now; it is stored encrypted. Configure the terminal with both values.")


def cmd_terminals_key(settings: Settings, args: argparse.Namespace) -> int:
    from adapters import terminal_keys

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        if args.action == "rotate":
            return await terminal_keys.create_key(connection, settings.terminal_key_key, args.target, actor=args.actor)
        if args.action == "retire-key":
            return await terminal_keys.retire_key(connection, args.target, actor=args.actor)
        return await terminal_keys.revoke_terminal(connection, args.target, actor=args.actor)

    try:
        result = asyncio.run(with_connection(database_url(settings), work))
    except ValueError as error:
        print(f"medsettle terminals {args.action}: {error}", file=sys.stderr)
        return 2
    if args.action == "rotate":
        print(f"new key for {args.target}; the old key keeps working until you retire it")
        _print_key(*result)
    else:
        print(f"{args.action}: {args.target} done; gateways stop accepting it within a few seconds")
    return 0


def cmd_terminals_list(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.terminal_keys import list_terminals

    try:
        terminals = asyncio.run(with_connection(database_url(settings), lambda c: list_terminals(c, args.clinic)))
    except ValueError as error:
        print(f"medsettle terminals list: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps([_terminal_document(terminal) for terminal in terminals], indent=2))
        return 0
    rows = [("TERMINAL", "CLINIC", "ROLE", "STATUS", "CREATED", "ROTATED", "KEYS")]
    for terminal in terminals:
        rows.append(
            (
                terminal.terminal_id,
                terminal.clinic_id,
                terminal.role,
                terminal.status,
                _minute(terminal.created_at),
                _minute(terminal.rotated_at),
                ", ".join(f"{key.key_id} ({key.state})" for key in terminal.keys) or "none",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _utc(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def _minute(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ") if moment else "-"


def _terminal_document(terminal: Any) -> dict[str, Any]:
    return {
        "terminal_id": terminal.terminal_id,
        "clinic_id": terminal.clinic_id,
        "role": terminal.role,
        "status": terminal.status,
        "created_at": _utc(terminal.created_at),
        "revoked_at": _utc(terminal.revoked_at),
        "rotated_at": _utc(terminal.rotated_at),
        "keys": [
            {
                "key_id": key.key_id,
                "state": key.state,
                "created_at": _utc(key.created_at),
                "retired_at": _utc(key.retired_at),
            }
            for key in terminal.keys
        ],
    }


def demo_keys_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "terminal-keys.json"


def cmd_client(settings: Settings, args: argparse.Namespace) -> int:
    """Send one signed request as a terminal, for people trying the gateway by hand."""
    from adapters.terminal_client import TerminalClient

    if args.key_id and args.secret:
        key_id, secret = args.key_id, args.secret
    else:
        keys_file = Path(args.keys) if args.keys else demo_keys_path(settings)
        try:
            key = json.loads(keys_file.read_text(encoding="utf-8"))[args.terminal]
        except (OSError, KeyError, ValueError):
            print(
                f"medsettle client: no key for {args.terminal} in {keys_file}; pass --key-id and --secret",
                file=sys.stderr,
            )
            return 2
        key_id, secret = key["key_id"], key["secret"]
    body = None
    if args.data:
        source = args.data[1:] if args.data.startswith("@") else None
        try:
            text = args.data if source is None else Path(source).read_text(encoding="utf-8")
        except OSError as error:
            print(f"medsettle client: cannot read {source}: {error.strerror or error}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:
            print(f"medsettle client: cannot read {source}: not UTF-8 text", file=sys.stderr)
            return 2
        try:
            body = json.loads(text)
        except ValueError as error:
            print(f"medsettle client: {source or '--data'} is not valid JSON: {error}", file=sys.stderr)
            return 2
    base = args.url or f"http://{settings.host}:{settings.port}"

    async def send() -> Any:
        async with TerminalClient(base, key_id, secret) as client:
            return await client.request(args.method.upper(), args.path, body)

    try:
        reply = asyncio.run(send())
    except (OSError, TimeoutError, aiohttp.ClientError) as error:
        print(
            f"medsettle client: cannot reach the gateway at {base}: {_why_unreachable(error)}."
            " Is it running there? --url names another.",
            file=sys.stderr,
        )
        return 2
    print(f"HTTP {reply.status}" + (" (replayed)" if reply.replayed else ""), file=sys.stderr)
    print(json.dumps(reply.body, ensure_ascii=False, indent=2) if not isinstance(reply.body, str) else reply.body)
    return 0 if reply.status < 400 else 1


def _why_unreachable(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(getattr(error, "os_error", error), ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__


def cmd_registry_stats(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.registry_stats import stats_csv

    on = args.date or dt.date.today()
    period_from = args.period_from or on.replace(day=1)
    period_to = args.period_to or on

    async def work(connection: Connection) -> RegistryStats:
        return await Reports.over_connection(connection).registry_stats(
            on=on, period_from=period_from, period_to=period_to
        )

    stats = asyncio.run(with_connection(database_url(settings), work))
    sys.stdout.write(stats_csv(stats) if args.format == "csv" else report_json(stats))
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from adapters import audit

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        sealed = 0
        while (count := await audit.seal(connection)) > 0:
            sealed += count
        return sealed, (await audit.verify(connection) if args.action == "verify" else None)

    sealed, report = asyncio.run(with_connection(database_url(settings), work))
    if report is None:
        print(f"sealed {sealed} audit row(s)")
        return 0
    if report.problem:
        print(f"AUDIT CHAIN BROKEN: {report.problem}")
        return 1
    print(f"audit chain intact: {report.sealed} row(s) sealed and verified, {report.unsealed} waiting to be sealed")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.http.app import create_app
    from gateway.http.server import run
    from gateway.http.shutdown import drain_on_sigterm

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    url = database_url(settings)
    if args.worker_of is None:  # say so at once if the database is out of reach; workers start after this
        asyncio.run(with_connection(url, nothing))
    if args.demo:
        seeded = asyncio.run(with_connection(url, lambda c: _seed(c, settings, only_if_empty=True)))
        if seeded:
            log.info("demo_seeded", **seeded)
        if settings.environment == "development":
            asyncio.run(
                with_connection(url, lambda c: demo_key_file(c, settings.terminal_key_key, demo_keys_path(settings)))
            )
    if settings.workers > 1 and args.worker_of is None:
        from gateway.http.workers import supervise  # the parent serves nothing; its workers do

        return supervise(settings, url, announce=lambda: _print_banner(settings))
    app = create_app(settings, dsn=url)
    drain_on_sigterm(app)  # SIGTERM fails readiness first and closes the listener after the drain
    if args.worker_of is not None:
        from gateway.http.workers import serve_as_worker

        serve_as_worker(app, args.worker_of)
    else:
        _print_banner(settings)
    # web.run_app, on a runner with the header timeout and problem+json refusals (gateway/http/server.py)
    run(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=args.worker_of is not None,  # workers share the port; the kernel spreads connections
    )
    return 0


SAMPLE_BILL = Path(__file__).resolve().parents[2] / "samples" / "bill-worked-example.json"


def client_base_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a gateway listening on ``host``:``port``."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # wildcards: connect locally
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _shown_path(path: Path) -> str:
    """``path`` as a person pastes it from where the gateway was started: relative below here, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def _print_banner(settings: Settings) -> None:
    base = client_base_url(settings.host, settings.port)
    # The example names the URL and the keys file, so it works pasted into a shell without this one's settings.
    script = Path(sys.executable).parent / "medsettle"
    program = _shown_path(script) if script.exists() else "medsettle"
    keys = _shown_path(demo_keys_path(settings))
    bill = _shown_path(SAMPLE_BILL) if SAMPLE_BILL.exists() else "samples/bill-worked-example.json"
    database = (
        "DATABASE_URL"
        if settings.database_url
        else f"embedded PostgreSQL in {_shown_path(Path(settings.data_dir) / 'pg')}"
    )
    print(
        f"""
medsettle gateway listening on http://{settings.host}:{settings.port}  ({database})
  OpenAPI: /openapi.json (signed)   metrics: {base}/metrics   ready: {base}/readyz

Every request is signed with a terminal's key (README: "Signing requests"). The demo terminals'
keys are in {keys}. Settle worked example 2 of docs/worked-examples.md (county
inpatient, priority_care + minimum_allowance) from another shell:

  {shlex.quote(program)} client POST /v1/settlements --terminal term-C001 \\
      --url {shlex.quote(base)} --keys {shlex.quote(keys)} --data {shlex.quote("@" + bill)}
""",
        flush=True,
    )


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
        help="import a bureau list (CSV or XLSX)",
        description="Import a civil-affairs (hardship tiers), veterans (priority-care) or insurance list. "
        "See samples/README.md for the column layout. Bad rows are reported with their line and never stop "
        "the good ones; importing the same file twice changes nothing. Exit status: 0 all rows taken, "
        "1 some rows rejected (the good ones are written) or strike-offs not confirmed, 2 the file is unusable.",
    )
    imports.add_argument("kind", choices=["civil-affairs", "veterans", "insurance"])
    imports.add_argument("file")
    imports.add_argument("--dry-run", action="store_true", help="show what would change and write nothing")
    imports.add_argument("--full-list", action="store_true", help=FULL_LIST_HELP)
    imports.add_argument("--as-of", type=_date, help="strike-off date for people missing from a full list")
    imports.add_argument("--yes", action="store_true", help="confirm full-list strike-offs without asking")
    imports.add_argument("--verbose", action="store_true", help="list every change")
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

    audit_commands = commands.add_parser("audit", help="the audit trail's hash chain").add_subparsers(
        dest="action", required=True
    )
    audit_commands.add_parser("seal", help="chain audit rows not yet sealed").set_defaults(run=cmd_audit)
    audit_commands.add_parser(
        "verify", help="seal what is waiting, then walk the chain and name the first altered or removed row"
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
    add_reader_sim_parser(commands)  # medsettle reader-sim: a card reader by hand (gateway/card_reader/client.py)
    add_dashboard_link_parser(commands)  # medsettle dashboard-link: a browser login link (gateway/dashboard/pages.py)
    add_finance_parser(commands)  # medsettle report daily (gateway/cli/reports.py)

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
            host=getattr(args, "host", None), port=getattr(args, "port", None), workers=getattr(args, "workers", None)
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


if __name__ == "__main__":
    main()
