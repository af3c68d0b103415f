"""The demo county: ``medsettle demo`` and ``serve --demo`` seed it, and its terminals' keys are kept in a
file that ``client``, ``reader-sim`` and ``dashboard-link`` read by default."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from adapters import db
from adapters.demo import ensure_terminal_keys, has_clinics, seed_demo
from gateway.cli.database import Connection, database_url, with_connection
from gateway.config import Settings


def demo_keys_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "terminal-keys.json"


async def seed(connection: Connection, settings: Settings, *, only_if_empty: bool) -> dict[str, int] | None:
    await db.migrate(connection)
    if only_if_empty and await has_clinics(connection):
        await ensure_terminal_keys(connection, settings.terminal_key_key)
        return None
    return await seed_demo(connection, settings.id_pepper, settings.terminal_key_key)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    url = database_url(settings)
    counts = asyncio.run(with_connection(url, lambda c: seed(c, settings, only_if_empty=False)))
    print(f"demo county seeded: {counts}")
    return 0
