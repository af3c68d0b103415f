"""The item catalogue from the command line: ``catalogue import``, ``catalogue versions`` and ``catalogue show``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters import db
from adapters.catalogue_files import CatalogueFormatError, read_catalogue
from adapters.catalogue_store import (
    CatalogueEntry,
    CatalogueVersion,
    Changes,
    ImportRefused,
    ImportSummary,
    catalogue_item,
    catalogue_versions,
    import_catalogue,
)
from gateway.cli.database import Connection, database_url, with_connection
from gateway.cli.registry import progress_bar
from gateway.config import Settings
from gateway.service import china_today
from settlement.money import format_rate, format_yuan

IMPORT_DESCRIPTION = (
    "Import the insurer's item catalogue (医保目录) from a CSV or XLSX file, as the version in force from "
    "--effective-from. The file is the FULL catalogue: codes missing from it are removed from that date. "
    "Only the changes from the version before are stored, and they are summarised (added, removed, changed "
    "category, price cap, self-pay share, name or unit). Versions are imported in date order. If any row is "
    "rejected, every rejected row is listed with its line and NOTHING is written: a catalogue version must "
    "be whole. Importing the same file again for the same date changes nothing. See docs/catalogue.md. "
    "Exit status: 0 imported (or a dry run, or already imported), 1 rows rejected or the import refused, "
    "nothing written, 2 the file cannot be read."
)
SUMMARY_LINES = (
    ("added", "added"),
    ("removed", "removed"),
    ("changed", "changed"),
    ("changed_category", "  category"),
    ("changed_cap", "  price cap"),
    ("changed_share", "  self-pay share"),
    ("changed_other", "  name or unit only"),
)


def add_catalogue_parser(commands: Any, *, actor: str, date: Callable[[str], dt.date]) -> None:
    catalogue = commands.add_parser(
        "catalogue", help="the insurer's item catalogue: import a version, list versions, show an item"
    ).add_subparsers(dest="action", required=True)
    imports = catalogue.add_parser(
        "import", help="import a catalogue file (CSV or XLSX) as a version", description=IMPORT_DESCRIPTION
    )
    imports.add_argument("file")
    imports.add_argument(
        "--effective-from", type=date, required=True, help="the first day the version is in force, YYYY-MM-DD"
    )
    imports.add_argument("--dry-run", action="store_true", help="show what would change and write nothing")
    imports.add_argument("--actor", default=actor, help="who is importing, for the audit trail")
    imports.set_defaults(run=cmd_catalogue_import)
    versions = catalogue.add_parser("versions", help="every imported version: date, items, changes, file")
    versions.add_argument("--format", choices=["table", "json"], default="table")
    versions.set_defaults(run=cmd_catalogue_versions)
    show = catalogue.add_parser("show", help="what the catalogue in force on a date says about one item code")
    show.add_argument("code")
    show.add_argument("--on", type=date, help="the date, YYYY-MM-DD (default today, China time)")
    show.set_defaults(run=cmd_catalogue_show)


# ---------------------------------------------------------------- import


def cmd_catalogue_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        rows, rejected = read_catalogue(path, progress=progress_bar(f"reading {path.name}"))
        digest = _sha256(path)
    except CatalogueFormatError as error:  # names the file and the problem
        print(f"medsettle catalogue import: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"medsettle catalogue import: {path}: {error.strerror or error}", file=sys.stderr)
        return 2
    _end_bar()
    if rejected:
        for row in rejected:
            print(f"rejected line {row.line}: {row.reason}")
        print(
            f"medsettle catalogue import: {path.name}: {len(rejected)} of {len(rows) + len(rejected)} rows rejected. "
            "A catalogue version must be whole, so nothing was written: fix the rows and import the file again.",
            file=sys.stderr,
        )
        return 1

    async def work(connection: Connection) -> ImportSummary:
        await db.migrate(connection)
        return await import_catalogue(
            connection,
            rows,
            effective_from=args.effective_from,
            source=path.name,
            file_sha256=digest,
            actor=args.actor,
            dry_run=args.dry_run,
            progress=progress_bar("storing"),
        )

    try:
        summary = asyncio.run(with_connection(database_url(settings), work))
    except ImportRefused as error:
        _end_bar()
        print(f"medsettle catalogue import: {path.name}: {error}", file=sys.stderr)
        return 1
    _end_bar()
    print(_summary_text(path.name, summary), end="")
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _end_bar() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)  # the progress bar's line is done


def _summary_text(file_name: str, summary: ImportSummary) -> str:
    since = (
        f"compared with the version effective from {summary.previous.isoformat()}"
        if summary.previous
        else "the first version"
    )
    lines = [
        f"{file_name}: catalogue version effective from {summary.effective_from.isoformat()}, "
        f"{summary.items:,} items; {since}"
    ]
    for field, label in SUMMARY_LINES:
        changes: Changes = getattr(summary, field)
        if field.startswith("changed_") and not summary.changed.count:
            continue
        examples = f"  e.g. {', '.join(changes.examples)}" if changes.examples else ""
        lines.append(f"  {label:<20} {changes.count:>8,}{examples}")
    if summary.outcome == "dry_run":
        lines.append("dry run: nothing written")
    elif summary.outcome == "already_imported":
        assert summary.imported_at is not None
        lines.append(
            f"already imported from this file on {summary.imported_at.astimezone(dt.UTC):%Y-%m-%d %H:%MZ} by "
            f"{summary.actor}: nothing changed"
        )
    else:
        lines.append("imported")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- versions and show


def cmd_catalogue_versions(settings: Settings, args: argparse.Namespace) -> int:
    async def work(connection: Connection) -> list[CatalogueVersion]:
        await db.migrate(connection)
        return await catalogue_versions(connection)

    versions = asyncio.run(with_connection(database_url(settings), work))
    if args.format == "json":
        print(json.dumps([_version_document(version) for version in versions], ensure_ascii=False, indent=2))
        return 0
    if not versions:
        print("no catalogue imported: terminals' categories are used (medsettle catalogue import FILE)")
        return 0
    rows = [("EFFECTIVE FROM", "ITEMS", "ADDED", "REMOVED", "CHANGED", "IMPORTED", "BY", "FILE (SHA-256)")]
    for version in versions:
        rows.append(
            (
                version.effective_from.isoformat(),
                f"{version.items:,}",
                f"{version.added:,}",
                f"{version.removed:,}",
                f"{version.changed:,}",
                version.imported_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ"),
                version.actor,
                f"{version.source} ({version.file_sha256[:16]})",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _version_document(version: CatalogueVersion) -> dict[str, Any]:
    return {
        "effective_from": version.effective_from.isoformat(),
        "items": version.items,
        "added": version.added,
        "removed": version.removed,
        "changed": version.changed,
        "imported_at": version.imported_at.astimezone(dt.UTC).isoformat(),
        "actor": version.actor,
        "source": version.source,
        "file_sha256": version.file_sha256,
    }


def cmd_catalogue_show(settings: Settings, args: argparse.Namespace) -> int:
    on = args.on or china_today()

    async def work(connection: Connection) -> tuple[list[CatalogueVersion], CatalogueEntry | None]:
        await db.migrate(connection)
        return await catalogue_versions(connection), await catalogue_item(connection, args.code, on=on)

    versions, entry = asyncio.run(with_connection(database_url(settings), work))
    in_force = [version.effective_from for version in versions if version.effective_from <= on]
    if not in_force:
        first = f" (the first is effective from {versions[0].effective_from})" if versions else ""
        print(f"no catalogue version is in force on {on}{first}: terminals' categories are used", file=sys.stderr)
        return 1
    version = in_force[-1]
    if entry is None or not entry.in_catalogue:
        removed = f", removed by version {entry.since}" if entry is not None else ""
        print(
            f"{args.code} is not in the catalogue in force on {on} (version {version}{removed}): "
            "a line with it is fully self-pay",
            file=sys.stderr,
        )
        return 1
    if entry.self_pay_share is not None:
        share = f"{format_rate(entry.self_pay_share)} (its own)"
    else:
        share = "the policy's" if entry.category == "B" else "none (only B items have one)"
    cap = f"{format_yuan(entry.price_cap)} yuan per unit" if entry.price_cap is not None else "none"
    print(
        f"code            {entry.code}\n"
        f"name            {entry.name}\n"
        f"category        {entry.category}\n"
        f"self-pay share  {share}\n"
        f"unit            {entry.unit or '-'}\n"
        f"price cap       {cap}\n"
        f"version         {entry.version} (in force on {on}); this item as set by version {entry.since}"
    )
    return 0
