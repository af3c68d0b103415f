"""The demo county: ``medsettle demo`` and ``serve --demo`` seed it, with the sample item catalogue, and its
terminals' keys are kept in a file that ``client``, ``reader-sim`` and ``dashboard-link`` read by default."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from adapters import db
from adapters.demo import ensure_terminal_keys, has_clinics, seed_demo, seed_demo_catalogue
from gateway.cli.database import Connection, database_url, with_connection
from gateway.config import Settings
from gateway.logs import log

# The demo's catalogue, effective 2026-01-01; a gateway installed without the repository's samples has none.
SAMPLE_CATALOGUE = Path(__file__).resolve().parents[2] / "samples" / "catalogue-2026.csv"


def demo_keys_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "terminal-keys.json"


async def seed(connection: Connection, settings: Settings, *, only_if_empty: bool) -> dict[str, int] | None:
    """Seed the demo county, and its catalogue when the database has none yet (also into a county seeded
    before catalogues existed). With ``only_if_empty``, a database with clinics keeps them as they are;
    returns what was added, or None when nothing was."""
    await db.migrate(connection)
    catalogue = SAMPLE_CATALOGUE if SAMPLE_CATALOGUE.exists() else None
    if catalogue is None:
        log.warning("demo_catalogue_missing", path=str(SAMPLE_CATALOGUE))
    if only_if_empty and await has_clinics(connection):
        await ensure_terminal_keys(connection, settings.terminal_key_key)
        imported = await seed_demo_catalogue(connection, catalogue) if catalogue is not None else 0
        return {"catalogue_items": imported} if imported else None
    return await seed_demo(connection, settings.id_pepper, settings.terminal_key_key, catalogue=catalogue)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    url = database_url(settings)
    counts = asyncio.run(with_connection(url, lambda c: seed(c, settings, only_if_empty=False)))
    print(f"demo county seeded: {counts}")
    return 0
