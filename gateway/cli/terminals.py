"""``medsettle terminals``: add a clinic's terminal, rotate, retire and revoke its keys, list them."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from typing import Any

from adapters import db, terminal_keys
from adapters.registry_admin import add_terminal
from adapters.terminal_keys import create_key, list_terminals
from gateway.cli.database import Connection, database_url, with_connection
from gateway.config import Settings


def cmd_terminals_add(settings: Settings, args: argparse.Namespace) -> int:
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
