"""The item catalogue in PostgreSQL: importing a version, loading every version into memory, reading one item.

A catalogue file is the whole catalogue in force from its effective date. Versions are imported in
date order, and each stores only what it changed from the version before it (migration 0014):
``import_catalogue`` copies the file's rows into a temporary table (COPY), compares them with the
catalogue in force the day before in a few set-based statements, and writes the differences, the
version's row and an audit row in one transaction. 200,000 items take seconds
(benchmarks/catalogue_bench.py).

``load_catalogue`` builds ``settlement.catalogue.Catalogue`` from every version and every change, for
a gateway to hold in memory; ``catalogue_stamp`` is a cheap value that changes with every import, for
gateways to poll and reload.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import asyncpg

from adapters.catalogue_files import CatalogueRow
from adapters.table_files import Progress
from settlement.catalogue import Catalogue, CatalogueItem
from settlement.models import Category

IMPORT_LOCK: Final = 7_215_004  # pg_advisory_xact_lock key: one catalogue import at a time
EXAMPLES: Final = 5  # codes a summary names for each kind of change
PROGRESS_EVERY: Final = 10_000  # rows copied between two progress calls
LOAD_BATCH: Final = 20_000  # change rows fetched at a time when loading

Outcome = Literal["imported", "dry_run", "already_imported"]


class ImportRefused(Exception):
    """The version cannot be imported as asked; the message says why and what to do. Nothing was written."""


@dataclass(frozen=True, slots=True)
class Changes:
    """How many codes changed in one way, and the first few of them in code order."""

    count: int = 0
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What a catalogue file changes, compared with the version in force the day before its date.

    A code counts once in ``changed`` and once under each of category, cap and share that changed
    (so a B item turned A with its own share dropped counts under both); ``changed_other`` holds the
    codes whose only changes are their name or unit."""

    effective_from: dt.date
    outcome: Outcome
    items: int  # codes in force in this version
    previous: dt.date | None  # the version it was compared with; None: the first version
    added: Changes
    removed: Changes
    changed: Changes
    changed_category: Changes
    changed_cap: Changes
    changed_share: Changes
    changed_other: Changes
    imported_at: dt.datetime | None = None  # when the version was stored (None on a dry run)
    actor: str = ""  # who stored it

    def counts(self) -> dict[str, int]:
        return {
            "items": self.items,
            "added": self.added.count,
            "removed": self.removed.count,
            "changed": self.changed.count,
            "changed_category": self.changed_category.count,
            "changed_cap": self.changed_cap.count,
            "changed_share": self.changed_share.count,
            "changed_other": self.changed_other.count,
        }


@dataclass(frozen=True, slots=True)
class CatalogueVersion:
    """One imported version, as ``medsettle catalogue versions`` lists it."""

    effective_from: dt.date
    imported_at: dt.datetime
    actor: str
    source: str
    file_sha256: str
    items: int
    added: int
    removed: int
    changed: int


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """What the catalogue in force on a date says about one code."""

    code: str
    version: dt.date  # the version in force on the date
    since: dt.date  # the version that last added, changed or removed the code
    in_catalogue: bool  # False: version ``since`` removed it, and the fields below are empty
    name: str = ""
    category: Category | None = None
    self_pay_share: int | None = None  # parts per million; None: the policy's share
    unit: str = ""
    price_cap: int | None = None  # fen per unit; None: no cap


# ---------------------------------------------------------------- importing a version

_IMPORT_TABLE = """CREATE TEMPORARY TABLE catalogue_import (
    code text NOT NULL, name text NOT NULL, category text NOT NULL, self_pay_share_ppm integer,
    unit text NOT NULL, price_cap bigint
) ON COMMIT DROP"""
_IMPORT_COLUMNS = ["code", "name", "category", "self_pay_share_ppm", "unit", "price_cap"]

# The catalogue in force on the day before $1 (or on $1 itself, for a re-import) against the file: a row
# per code added, removed or changed, with what changed. A code's row in force is its latest on or
# before that day; a removal row there means the code is not in force.
_CHANGES = """CREATE TEMPORARY TABLE catalogue_changes ON COMMIT DROP AS
WITH in_force AS (
    SELECT * FROM (
        SELECT DISTINCT ON (code) code, name, category, self_pay_share_ppm, unit, price_cap, removed
        FROM catalogue_items WHERE effective_from {compare} $1
        ORDER BY code, effective_from DESC
    ) latest WHERE NOT removed
)
SELECT code,
       CASE WHEN o.code IS NULL THEN 'added' WHEN n.code IS NULL THEN 'removed' ELSE 'changed' END AS change,
       n.name, n.category, n.self_pay_share_ppm, n.unit, n.price_cap,
       o.code IS NOT NULL AND n.code IS NOT NULL AND o.category IS DISTINCT FROM n.category AS category_changed,
       o.code IS NOT NULL AND n.code IS NOT NULL AND o.price_cap IS DISTINCT FROM n.price_cap AS cap_changed,
       o.code IS NOT NULL AND n.code IS NOT NULL
           AND o.self_pay_share_ppm IS DISTINCT FROM n.self_pay_share_ppm AS share_changed
FROM catalogue_import n FULL JOIN in_force o USING (code)
WHERE o.code IS NULL OR n.code IS NULL
   OR (o.name, o.category, o.self_pay_share_ppm, o.unit, o.price_cap)
      IS DISTINCT FROM (n.name, n.category, n.self_pay_share_ppm, n.unit, n.price_cap)"""

_SUMMARY_KINDS = {
    "added": "change = 'added'",
    "removed": "change = 'removed'",
    "changed": "change = 'changed'",
    "changed_category": "category_changed",
    "changed_cap": "cap_changed",
    "changed_share": "share_changed",
    "changed_other": "change = 'changed' AND NOT (category_changed OR cap_changed OR share_changed)",
}
_SUMMARY = (
    "SELECT "
    + ", ".join(
        f"count(*) FILTER (WHERE {condition}) AS {kind}, "
        f"(array_agg(code ORDER BY code) FILTER (WHERE {condition}))[1:{EXAMPLES}] AS {kind}_examples"
        for kind, condition in _SUMMARY_KINDS.items()
    )
    + " FROM catalogue_changes"
)

_WRITE_CHANGES = """INSERT INTO catalogue_items
    (code, effective_from, name, category, self_pay_share_ppm, unit, price_cap, removed)
SELECT code, $1, name, category, self_pay_share_ppm, unit, price_cap, change = 'removed'
FROM catalogue_changes ORDER BY code"""


async def import_catalogue(
    connection: asyncpg.Connection,
    rows: Sequence[CatalogueRow],
    *,
    effective_from: dt.date,
    source: str,
    file_sha256: str,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import ``rows``, the FULL catalogue in force from ``effective_from`` (``source`` is the file's name,
    ``file_sha256`` the hex SHA-256 of its bytes). Writes the codes added, removed and changed since the
    version before, the version's row and a ``catalogue.imported`` audit row, in one transaction; a dry
    run works it all out and writes nothing.

    The same file again for an imported date is a no-op (outcome ``already_imported``). Raises
    ``ImportRefused`` for a date before the latest version's, a different file for an imported date,
    or no rows. ``progress(done, total)`` follows the rows copied to the database."""
    if not rows:
        raise ImportRefused("the file holds no items: a catalogue version lists every item in force")
    codes = {row.code for row in rows}
    if len(codes) != len(rows):
        raise ValueError("each code must come once in a catalogue version")
    async with connection.transaction():
        await connection.execute("SET LOCAL statement_timeout = '5min'")  # 200,000 rows take seconds
        await connection.execute("SELECT pg_advisory_xact_lock($1)", IMPORT_LOCK)
        stored = await connection.fetchrow("SELECT * FROM catalogue_versions WHERE effective_from = $1", effective_from)
        if stored is not None:
            return await _already_imported(connection, rows, stored, file_sha256=file_sha256, progress=progress)
        latest = await connection.fetchval("SELECT max(effective_from) FROM catalogue_versions")
        if latest is not None and effective_from < latest:
            raise ImportRefused(
                f"the latest catalogue version is effective from {latest.isoformat()}: versions are imported in "
                f"date order, so one effective from {effective_from.isoformat()} cannot be imported now (each "
                "version is stored as its changes from the version before it)"
            )
        await _copy_in(connection, rows, progress)
        summary = await _compare(connection, effective_from, items=len(rows), previous=latest)
        if dry_run:
            return summary
        counts = summary.counts()
        imported_at = await connection.fetchval(
            """INSERT INTO catalogue_versions
                   (effective_from, actor, source, file_sha256, items, added, removed, changed)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING imported_at""",
            effective_from,
            actor,
            source,
            file_sha256,
            counts["items"],
            counts["added"],
            counts["removed"],
            counts["changed"],
        )
        await connection.execute(_WRITE_CHANGES, effective_from)
        await connection.execute(
            "INSERT INTO audit_log (actor, action, subject, source, details)"
            " VALUES ($1, 'catalogue.imported', $2, $3, $4)",
            actor,
            effective_from.isoformat(),
            f"catalogue:{source} sha256:{file_sha256[:16]}",
            json.dumps(_audit_details(summary, file_sha256), ensure_ascii=False),
        )
    return dataclasses.replace(summary, outcome="imported", imported_at=imported_at, actor=actor)


async def _already_imported(
    connection: asyncpg.Connection,
    rows: Sequence[CatalogueRow],
    stored: asyncpg.Record,
    *,
    file_sha256: str,
    progress: Progress | None,
) -> ImportSummary:
    """The same file for an imported date: a no-op when it still says what the version says, refused else.
    The summary is the version's own: what it changed from the version before it."""
    day: dt.date = stored["effective_from"]
    where = (
        f"the catalogue version effective from {day.isoformat()} was imported from {stored['source']} "
        f"on {stored['imported_at']:%Y-%m-%d %H:%M} by {stored['actor']}"
    )
    if stored["file_sha256"] != file_sha256:
        raise ImportRefused(
            f"{where} (sha256 {stored['file_sha256'][:16]}…); a different file for the same date is refused. A "
            "correction is a new version: import the corrected file with a later --effective-from"
        )
    await _copy_in(connection, rows, progress)
    await connection.execute(_CHANGES.format(compare="<="), day)
    if await connection.fetchval("SELECT EXISTS (SELECT 1 FROM catalogue_changes)"):
        raise ImportRefused(f"{where} from a file with the same sha256, but it reads differently now; nothing done")
    await connection.execute("DROP TABLE catalogue_changes")
    previous = await connection.fetchval(
        "SELECT max(effective_from) FROM catalogue_versions WHERE effective_from < $1", day
    )
    summary = await _compare(connection, day, items=len(rows), previous=previous)
    return dataclasses.replace(
        summary, outcome="already_imported", imported_at=stored["imported_at"], actor=stored["actor"]
    )


async def _copy_in(connection: asyncpg.Connection, rows: Sequence[CatalogueRow], progress: Progress | None) -> None:
    """The file's rows into the temporary table catalogue_import."""
    await connection.execute(_IMPORT_TABLE)
    await connection.copy_records_to_table(
        "catalogue_import", records=_records(rows, progress), columns=_IMPORT_COLUMNS
    )
    await connection.execute("ANALYZE catalogue_import")  # a temporary table has no statistics otherwise


async def _compare(
    connection: asyncpg.Connection, effective_from: dt.date, *, items: int, previous: dt.date | None
) -> ImportSummary:
    """The changes from the catalogue in force the day before ``effective_from`` to catalogue_import, left
    in the temporary table catalogue_changes, and their summary."""
    await connection.execute(_CHANGES.format(compare="<"), effective_from)
    found = await connection.fetchrow(_SUMMARY)

    def changes(kind: str) -> Changes:
        return Changes(found[kind], tuple(found[f"{kind}_examples"] or ()))

    return ImportSummary(
        effective_from=effective_from,
        outcome="dry_run",
        items=items,
        previous=previous,
        added=changes("added"),
        removed=changes("removed"),
        changed=changes("changed"),
        changed_category=changes("changed_category"),
        changed_cap=changes("changed_cap"),
        changed_share=changes("changed_share"),
        changed_other=changes("changed_other"),
    )


def _records(rows: Sequence[CatalogueRow], progress: Progress | None) -> Iterator[tuple[Any, ...]]:
    total = len(rows)
    for done, row in enumerate(rows, start=1):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, total)
        yield row.code, row.name, row.category, row.self_pay_share, row.unit, row.price_cap
    if progress is not None and total % PROGRESS_EVERY:
        progress(total, total)


def _audit_details(summary: ImportSummary, file_sha256: str) -> dict[str, Any]:
    return {
        "file_sha256": file_sha256,
        "previous": summary.previous.isoformat() if summary.previous else None,
        **summary.counts(),
        "examples": {
            kind: list(getattr(summary, kind).examples) for kind in _SUMMARY_KINDS if getattr(summary, kind).examples
        },
    }


# ---------------------------------------------------------------- the catalogue in memory


async def catalogue_stamp(connection: asyncpg.Connection) -> str | None:
    """A value that changes whenever a version is imported (None: no catalogue), for gateways to poll.

    Read it before loading, never after: a version imported in between then shows as a new stamp at
    the next poll. ``load_catalogue_with_stamp`` reads both from one snapshot."""
    row = await connection.fetchrow(
        "SELECT count(*) AS versions, max(effective_from) AS latest, max(imported_at) AS imported"
        " FROM catalogue_versions"
    )
    if not row["versions"]:
        return None
    return f"{row['versions']}:{row['latest'].isoformat()}:{row['imported'].isoformat()}"


async def load_catalogue(source: asyncpg.Pool | asyncpg.Connection) -> Catalogue:
    """Every catalogue version, for the engine (empty when none is imported: terminals' categories stand)."""
    return (await load_catalogue_with_stamp(source))[1]


async def load_catalogue_with_stamp(source: asyncpg.Pool | asyncpg.Connection) -> tuple[str | None, Catalogue]:
    """``catalogue_stamp`` and ``load_catalogue`` from one snapshot of the database."""
    if isinstance(source, asyncpg.Pool):
        async with source.acquire() as connection:
            return await _load(connection)
    return await _load(source)


async def _load(connection: asyncpg.Connection) -> tuple[str | None, Catalogue]:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        stamp = await catalogue_stamp(connection)
        if stamp is None:
            return None, Catalogue()
        versions = [
            row[0] for row in await connection.fetch("SELECT effective_from FROM catalogue_versions ORDER BY 1")
        ]
        # Items are few distinct (category, share, cap) triples: make each CatalogueItem once. A row names its
        # version by number, so 200,000 rows share a few date objects rather than making one each.
        items: dict[tuple[str, int | None, int | None], CatalogueItem] = {}
        changes: list[tuple[str, dt.date, CatalogueItem | None]] = []
        cursor = await connection.cursor(
            """SELECT i.code, v.number, i.category, i.self_pay_share_ppm, i.price_cap
               FROM catalogue_items i
               JOIN (SELECT effective_from, (row_number() OVER (ORDER BY effective_from))::int - 1 AS number
                     FROM catalogue_versions) v USING (effective_from)"""
        )
        while batch := await cursor.fetch(LOAD_BATCH):
            for code, number, category, share, cap in batch:
                if category is None:  # a removal
                    changes.append((code, versions[number], None))
                    continue
                key = (category, share, cap)
                item = items.get(key)
                if item is None:
                    item = items[key] = CatalogueItem(category=category, self_pay_share=share, price_cap=cap)
                changes.append((code, versions[number], item))
    return stamp, Catalogue.build(versions, changes)


# ---------------------------------------------------------------- listing and looking up


async def catalogue_versions(connection: asyncpg.Connection) -> list[CatalogueVersion]:
    """Every imported version, oldest first."""
    rows = await connection.fetch(
        """SELECT effective_from, imported_at, actor, source, file_sha256, items, added, removed, changed
           FROM catalogue_versions ORDER BY effective_from"""
    )
    return [CatalogueVersion(**dict(row)) for row in rows]


async def catalogue_item(connection: asyncpg.Connection, code: str, *, on: dt.date) -> CatalogueEntry | None:
    """What the catalogue in force on ``on`` says about ``code``; None when no version is in force on that
    date or no version up to it ever listed the code."""
    row = await connection.fetchrow(
        """SELECT i.effective_from AS since, i.name, i.category, i.self_pay_share_ppm, i.unit, i.price_cap,
                  i.removed, (SELECT max(effective_from) FROM catalogue_versions WHERE effective_from <= $2) AS version
           FROM catalogue_items i WHERE i.code = $1 AND i.effective_from <= $2
           ORDER BY i.effective_from DESC LIMIT 1""",
        code,
        on,
    )
    if row is None:
        return None
    if row["removed"]:
        return CatalogueEntry(code=code, version=row["version"], since=row["since"], in_catalogue=False)
    return CatalogueEntry(
        code=code,
        version=row["version"],
        since=row["since"],
        in_catalogue=True,
        name=row["name"],
        category=row["category"],
        self_pay_share=row["self_pay_share_ppm"],
        unit=row["unit"],
        price_cap=row["price_cap"],
    )
