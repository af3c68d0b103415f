"""``medsettle``: one command-line tool for serve, migrate, demo data and the invariant check."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg

from adapters import db
from adapters.check import check_invariants
from adapters.demo import SHOWCASE, demo_population, seed_demo
from gateway.config import ConfigError, Settings, load_settings
from gateway.logs import configure_logging, log

_embedded_servers: list[Any] = []  # keep the embedded server alive for the life of the process


def database_url(settings: Settings) -> str:
    """``DATABASE_URL`` when set; otherwise the embedded PostgreSQL in the data folder."""
    if settings.database_url:
        return settings.database_url
    url, server = db.start_embedded(Path(settings.data_dir).resolve() / "pg")
    _embedded_servers.append(server)
    return url


async def _with_connection(url: str, work: Any) -> Any:
    await db.wait_for_database(url)
    connection = await asyncpg.connect(url)
    try:
        return await work(connection)
    finally:
        await connection.close()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(_with_connection(database_url(settings), db.migrate))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none, schema is current'}")
    return 0


async def _seed(connection: asyncpg.Connection, settings: Settings, *, only_if_empty: bool) -> dict[str, int] | None:
    await db.migrate(connection)
    if only_if_empty and await connection.fetchval("SELECT EXISTS (SELECT 1 FROM clinics)"):
        return None
    return await seed_demo(connection, settings.id_pepper)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    url = database_url(settings)
    counts = asyncio.run(_with_connection(url, lambda c: _seed(c, settings, only_if_empty=False)))
    print(f"demo county seeded: {counts}")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    violations = asyncio.run(_with_connection(database_url(settings), check_invariants))
    if args.json:
        print(json.dumps([{"rule": v.rule, "detail": v.detail} for v in violations]))
    elif violations:
        for violation in violations:
            print(f"VIOLATION {violation.rule}: {violation.detail}")
    else:
        print(
            "all invariants hold: ledgers balance, money is conserved, accumulators equal the ledger and "
            "stay within caps, one settlement per request id"
        )
    return 1 if violations else 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import create_app

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    url = database_url(settings)
    if args.demo:
        seeded = asyncio.run(_with_connection(url, lambda c: _seed(c, settings, only_if_empty=True)))
        if seeded:
            log.info("demo_seeded", **seeded)
    app = create_app(settings, dsn=url)
    base = f"http://{settings.host}:{settings.port}"
    _print_banner(base, embedded=not settings.database_url)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        print=None,
        handle_signals=True,
    )
    return 0


def _print_banner(base: str, *, embedded: bool) -> None:
    person = demo_population(len(SHOWCASE))[1]  # Li Na: insured, priority_care, minimum_allowance
    body = {
        "request_id": "demo-0001",
        "clinic_id": "C001",
        "person_id": person.national_id,
        "visit_type": "inpatient",
        "service_date": "2026-05-01",
        "items": [
            {"code": "DRUG-001", "name": "Ceftriaxone", "category": "A", "amount": 1400000},
            {"code": "MAT-002", "name": "Stent", "category": "B", "amount": 400000},
            {"code": "SVC-003", "name": "Single room", "category": "C", "amount": 200000},
        ],
    }
    print(
        f"""
medsettle gateway listening on {base}  ({"embedded PostgreSQL in .data/pg" if embedded else "DATABASE_URL"})
  OpenAPI: {base}/openapi.json   metrics: {base}/metrics   ready: {base}/readyz

Settle the DESIGN.md worked example (county inpatient, priority_care + minimum_allowance):

curl -s -X POST {base}/v1/settlements -H 'Content-Type: application/json' -H 'X-Terminal-Id: term-C001' \\
  -d '{json.dumps(body)}'
""",
        flush=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsettle", description="Real-time medical settlement gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP gateway (embedded PostgreSQL unless DATABASE_URL)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true", help="seed the demo county on first start")
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    commands.add_parser("demo", help="seed the demo county (idempotent)").set_defaults(run=cmd_demo)
    check = commands.add_parser("check", help="verify ledger, conservation and accumulator invariants")
    check.add_argument("--json", action="store_true", help="print violations as JSON")
    check.set_defaults(run=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(host=getattr(args, "host", None), port=getattr(args, "port", None))
    except ConfigError as error:
        print(f"medsettle: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format or ("console" if sys.stderr.isatty() else "json"), settings.log_level)
    raise SystemExit(args.run(settings, args))


if __name__ == "__main__":
    main()
