"""The item catalogue in PostgreSQL and on the command line: versions, changes, loading, refusals.

Each test has a database of its own (a copy of one migrated for the module), so catalogues never reach
the shared test database, whose bills are settled without one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from adapters import db
from adapters.catalogue_files import CatalogueRow, read_catalogue, write_sample_catalogue
from adapters.catalogue_store import (
    ImportRefused,
    ImportSummary,
    catalogue_item,
    catalogue_stamp,
    catalogue_versions,
    import_catalogue,
    load_catalogue,
    load_catalogue_with_stamp,
)
from adapters.demo import seed_demo, seed_demo_catalogue
from settlement.catalogue import CatalogueItem
from tests.integration.conftest import KEY_ENCRYPTION_KEY, PEPPER, _admin, _with_database
from tests.integration.processes import medsettle

pytestmark = pytest.mark.integration

D = dt.date
SAMPLE_CATALOGUE = Path(__file__).resolve().parents[2] / "samples" / "catalogue-2026.csv"
JANUARY = D(2026, 1, 1)
JULY = D(2026, 7, 1)
SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64


@pytest.fixture(scope="module")
async def template(database_url: str) -> AsyncIterator[str]:
    name = f"medsettle_catalogue_template_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    connection = await asyncpg.connect(_with_database(database_url, name))
    try:
        await db.migrate(connection)
    finally:
        await connection.close()
    yield name
    await _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def fresh_url(database_url: str, template: str) -> AsyncIterator[str]:
    """A migrated database of this test's own, with no catalogue."""
    name = f"medsettle_catalogue_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _with_database(database_url, name)
    await _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def connection(fresh_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_url)
    yield connection
    await connection.close()


def item(
    code: str,
    category: str = "A",
    *,
    name: str | None = None,
    share: int | None = None,
    unit: str = "次",
    cap: int | None = None,
) -> CatalogueRow:
    return CatalogueRow(
        line=0,
        code=code,
        name=name or f"item {code}",
        category=category,  # type: ignore[arg-type]
        self_pay_share=share,
        unit=unit,
        price_cap=cap,
    )


FIRST = [
    item("DRUG-001", "A"),
    item("MAT-002", "B"),
    item("SVC-003", "C"),
    item("IMG-001", "B", share=200_000, cap=18_000),
    item("OLD-001", "A"),
    item("NAME-001", "A", name="old name"),
    item("UNIT-001", "A", unit="盒"),
    item("CAP-001", "B", cap=10_000),
    item("SHARE-001", "B", share=50_000),
    item("CAT-001", "A"),
]
# From July: OLD-001 gone, NEW-001 new, CAT-001 now B, IMG-001 now A (so its own share goes too), CAP-001's
# cap up, SHARE-001's share up, NAME-001 renamed and UNIT-001 counted in bottles.
SECOND = [
    item("DRUG-001", "A"),
    item("MAT-002", "B"),
    item("SVC-003", "C"),
    item("IMG-001", "A", cap=18_000),
    item("NAME-001", "A", name="new name"),
    item("UNIT-001", "A", unit="瓶"),
    item("CAP-001", "B", cap=12_000),
    item("SHARE-001", "B", share=100_000),
    item("CAT-001", "B"),
    item("NEW-001", "B", share=150_000),
]


async def imported(
    connection: asyncpg.Connection,
    rows: list[CatalogueRow],
    effective_from: dt.date,
    sha: str,
    *,
    dry_run: bool = False,
) -> ImportSummary:
    return await import_catalogue(
        connection,
        rows,
        effective_from=effective_from,
        source=f"catalogue-{effective_from}.csv",
        file_sha256=sha,
        actor="test",
        dry_run=dry_run,
    )


async def counts(connection: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        await connection.fetchval("SELECT count(*) FROM catalogue_versions"),
        await connection.fetchval("SELECT count(*) FROM catalogue_items"),
        await connection.fetchval("SELECT count(*) FROM audit_log WHERE action = 'catalogue.imported'"),
    )


# ---------------------------------------------------------------- importing


async def test_a_first_version_adds_every_item_and_is_audited(connection):
    summary = await imported(connection, FIRST, JANUARY, SHA_A)
    assert summary.outcome == "imported"
    assert summary.counts()["items"] == summary.added.count == 10
    assert summary.previous is None and summary.removed.count == summary.changed.count == 0
    assert summary.added.examples == ("CAP-001", "CAT-001", "DRUG-001", "IMG-001", "MAT-002")  # the first 5 codes
    assert summary.actor == "test" and summary.imported_at is not None
    assert await counts(connection) == (1, 10, 1)
    [version] = await catalogue_versions(connection)
    assert (version.effective_from, version.source, version.file_sha256) == (JANUARY, "catalogue-2026-01-01.csv", SHA_A)
    assert version.items == version.added == 10
    audit = await connection.fetchrow("SELECT * FROM audit_log WHERE action = 'catalogue.imported'")
    assert (audit["actor"], audit["subject"]) == ("test", "2026-01-01")
    assert audit["source"] == f"catalogue:catalogue-2026-01-01.csv sha256:{SHA_A[:16]}"
    details = json.loads(audit["details"])
    assert (details["items"], details["added"], details["previous"], details["file_sha256"]) == (10, 10, None, SHA_A)


async def test_a_second_version_stores_and_reports_only_its_changes(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    summary = await imported(connection, SECOND, JULY, SHA_B)
    assert summary.previous == JANUARY
    assert summary.items == 10
    assert summary.added.count == 1 and summary.added.examples == ("NEW-001",)
    assert summary.removed.count == 1 and summary.removed.examples == ("OLD-001",)
    assert summary.changed.count == 6
    assert summary.changed.examples == ("CAP-001", "CAT-001", "IMG-001", "NAME-001", "SHARE-001")
    assert summary.changed_category.examples == ("CAT-001", "IMG-001")
    assert summary.changed_cap.examples == ("CAP-001",)
    assert summary.changed_share.examples == ("IMG-001", "SHARE-001")
    assert summary.changed_other.examples == ("NAME-001", "UNIT-001")
    assert summary.changed_category.count == summary.changed_share.count == summary.changed_other.count == 2
    stored = await connection.fetch(
        "SELECT code, category, removed FROM catalogue_items WHERE effective_from = $1 ORDER BY code", JULY
    )
    assert [(row["code"], row["category"], row["removed"]) for row in stored] == [
        ("CAP-001", "B", False),
        ("CAT-001", "B", False),
        ("IMG-001", "A", False),
        ("NAME-001", "A", False),
        ("NEW-001", "B", False),
        ("OLD-001", None, True),
        ("SHARE-001", "B", False),
        ("UNIT-001", "A", False),
    ]  # 8 rows, not 10: unchanged codes write nothing
    versions = await catalogue_versions(connection)
    assert [(v.effective_from, v.items, v.added, v.removed, v.changed) for v in versions] == [
        (JANUARY, 10, 10, 0, 0),
        (JULY, 10, 1, 1, 6),
    ]


async def test_the_loaded_catalogue_answers_the_day_before_and_the_day_of_a_new_version(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    await imported(connection, SECOND, JULY, SHA_B)
    catalogue = await load_catalogue(connection)
    assert catalogue.versions == (JANUARY, JULY)
    assert len(catalogue) == 10
    assert catalogue.on(D(2025, 12, 31)) is None  # before the first version: terminals' categories stand
    before, on_the_day = catalogue.on(D(2026, 6, 30)), catalogue.on(JULY)
    assert before is not None and on_the_day is not None
    assert (before.version, on_the_day.version) == ("2026-01-01", "2026-07-01")
    expected = {
        "DRUG-001": (CatalogueItem(category="A"), CatalogueItem(category="A")),
        "CAT-001": (CatalogueItem(category="A"), CatalogueItem(category="B")),
        "IMG-001": (
            CatalogueItem(category="B", self_pay_share=200_000, price_cap=18_000),
            CatalogueItem(category="A", price_cap=18_000),
        ),
        "CAP-001": (CatalogueItem(category="B", price_cap=10_000), CatalogueItem(category="B", price_cap=12_000)),
        "SHARE-001": (
            CatalogueItem(category="B", self_pay_share=50_000),
            CatalogueItem(category="B", self_pay_share=100_000),
        ),
        "OLD-001": (CatalogueItem(category="A"), None),
        "NEW-001": (None, CatalogueItem(category="B", self_pay_share=150_000)),
        "NEVER-001": (None, None),
    }
    for code, (then, now) in expected.items():
        assert (before.get(code), on_the_day.get(code)) == (then, now), code
    assert on_the_day.get("SVC-003") == CatalogueItem(category="C")


async def test_a_removed_code_can_come_back_in_a_later_version(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    await imported(connection, SECOND, JULY, SHA_B)
    third = [*SECOND, item("OLD-001", "B", cap=500)]
    summary = await imported(connection, third, D(2027, 1, 1), SHA_C)
    assert (summary.added.examples, summary.removed.count, summary.changed.count) == (("OLD-001",), 0, 0)
    catalogue = await load_catalogue(connection)
    answers = [view.get("OLD-001") for view in map(catalogue.on, (JANUARY, JULY, D(2027, 1, 1)))]  # type: ignore[union-attr]
    assert answers == [CatalogueItem(category="A"), None, CatalogueItem(category="B", price_cap=500)]


async def test_show_an_item_on_a_date(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    await imported(connection, SECOND, JULY, SHA_B)
    before = await catalogue_item(connection, "SHARE-001", on=D(2026, 6, 30))
    assert before is not None and before.in_catalogue
    assert (before.version, before.since, before.category, before.self_pay_share) == (JANUARY, JANUARY, "B", 50_000)
    later = await catalogue_item(connection, "DRUG-001", on=D(2026, 9, 1))
    assert later is not None
    assert (later.version, later.since, later.name, later.unit) == (JULY, JANUARY, "item DRUG-001", "次")
    removed = await catalogue_item(connection, "OLD-001", on=JULY)
    assert removed is not None and (removed.in_catalogue, removed.since, removed.category) == (False, JULY, None)
    assert await catalogue_item(connection, "NEW-001", on=D(2026, 6, 30)) is None
    assert await catalogue_item(connection, "DRUG-001", on=D(2025, 12, 31)) is None


async def test_a_dry_run_works_out_the_changes_and_writes_nothing(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    before = await counts(connection)
    stamp = await catalogue_stamp(connection)
    dry = await imported(connection, SECOND, JULY, SHA_B, dry_run=True)
    assert dry.outcome == "dry_run" and dry.imported_at is None
    assert await counts(connection) == before
    assert await catalogue_stamp(connection) == stamp
    real = await imported(connection, SECOND, JULY, SHA_B)
    assert real.counts() == dry.counts()
    assert (real.added, real.removed, real.changed_category) == (dry.added, dry.removed, dry.changed_category)


async def test_importing_the_same_file_again_is_a_no_op_that_says_so(connection):
    first = await imported(connection, FIRST, JANUARY, SHA_A)
    second = await imported(connection, SECOND, JULY, SHA_B)
    before = await counts(connection)
    stamp = await catalogue_stamp(connection)
    again = await imported(connection, SECOND, JULY, SHA_B)
    assert again.outcome == "already_imported"
    assert again.counts() == second.counts() and again.changed_share == second.changed_share
    assert (again.imported_at, again.actor) == (second.imported_at, "test")
    # The first version too, though another version came after it.
    assert (await imported(connection, FIRST, JANUARY, SHA_A)).counts() == first.counts()
    assert await counts(connection) == before
    assert await catalogue_stamp(connection) == stamp


async def test_a_different_file_for_an_imported_date_is_refused(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    before = await counts(connection)
    with pytest.raises(ImportRefused, match="a different file for the same date is refused"):
        await imported(connection, SECOND, JANUARY, SHA_B)
    with pytest.raises(ImportRefused, match="same sha256, but it reads differently now"):
        await imported(connection, SECOND, JANUARY, SHA_A)
    assert await counts(connection) == before


async def test_an_earlier_date_than_the_latest_version_is_refused(connection):
    await imported(connection, FIRST, JULY, SHA_A)
    before = await counts(connection)
    with pytest.raises(ImportRefused) as refused:
        await imported(connection, SECOND, JANUARY, SHA_B)
    assert str(refused.value).startswith(
        "the latest catalogue version is effective from 2026-07-01: versions are imported in date order, so one "
        "effective from 2026-01-01 cannot be imported now"
    )
    assert await counts(connection) == before


async def test_a_version_without_items_is_refused(connection):
    with pytest.raises(ImportRefused, match="holds no items"):
        await imported(connection, [], JANUARY, SHA_A)
    assert await counts(connection) == (0, 0, 0)


async def test_a_version_that_changes_nothing_is_still_a_version(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    summary = await imported(connection, FIRST, JULY, SHA_B)
    assert summary.counts() == {
        "items": 10,
        "added": 0,
        "removed": 0,
        "changed": 0,
        "changed_category": 0,
        "changed_cap": 0,
        "changed_share": 0,
        "changed_other": 0,
    }
    catalogue = await load_catalogue(connection)
    assert catalogue.versions == (JANUARY, JULY)
    assert catalogue.on(JULY).get("IMG-001") == CatalogueItem(category="B", self_pay_share=200_000, price_cap=18_000)  # type: ignore[union-attr]


async def test_the_stamp_changes_with_each_import_and_loads_with_its_catalogue(connection, fresh_url):
    assert await catalogue_stamp(connection) is None
    stamp, catalogue = await load_catalogue_with_stamp(connection)
    assert stamp is None and not catalogue and catalogue.on(JULY) is None
    await imported(connection, FIRST, JANUARY, SHA_A)
    first = await catalogue_stamp(connection)
    await imported(connection, SECOND, JULY, SHA_B)
    second = await catalogue_stamp(connection)
    assert None is not first != second is not None
    pool = await asyncpg.create_pool(fresh_url, min_size=1, max_size=1)
    try:
        stamp, catalogue = await load_catalogue_with_stamp(pool)
    finally:
        await pool.close()
    assert stamp == second
    assert catalogue.versions == (JANUARY, JULY)


async def test_the_tables_keep_their_rules(connection):
    await imported(connection, FIRST, JANUARY, SHA_A)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await connection.execute("UPDATE catalogue_items SET name = 'x' WHERE code = 'DRUG-001'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await connection.execute("DELETE FROM catalogue_versions")
    insert = (
        "INSERT INTO catalogue_items (code, effective_from, name, category, self_pay_share_ppm, unit, price_cap)"
        " VALUES ($1, $2, 'n', $3, $4, '', $5)"
    )
    for category, share, cap, constraint in [
        ("A", 100_000, None, "catalogue_items_share_on_b"),
        ("B", 1_000_001, None, "self_pay_share_ppm_check"),
        ("B", None, -1, "price_cap_check"),
        ("D", None, None, "category_check"),
    ]:
        with pytest.raises(asyncpg.CheckViolationError, match=constraint):
            await connection.execute(insert, "X-1", JANUARY, category, share, cap)


async def test_a_large_catalogue_imports_whole_and_a_revision_by_its_changes(connection, tmp_path):
    """Correctness at a size where set-based SQL matters; the time is the benchmark's to judge."""
    write_sample_catalogue(tmp_path / "v0.csv", 20_000, seed=5)
    write_sample_catalogue(tmp_path / "v1.csv", 20_000, seed=5, revision=1)
    first, _ = read_catalogue(tmp_path / "v0.csv")
    second, _ = read_catalogue(tmp_path / "v1.csv")
    await imported(connection, first, JANUARY, SHA_A)
    summary = await imported(connection, second, JULY, SHA_B)
    assert (summary.added.count, summary.removed.count) == (100, 100)
    assert await connection.fetchval("SELECT count(*) FROM catalogue_items WHERE effective_from = $1", JULY) == (
        summary.added.count + summary.removed.count + summary.changed.count
    )
    catalogue = await load_catalogue(connection)
    assert len(catalogue) == 20_000
    view = catalogue.on(JULY)
    assert view is not None
    for row in second[::97]:
        found = view.get(row.code)
        assert found == CatalogueItem(category=row.category, self_pay_share=row.self_pay_share, price_cap=row.price_cap)


async def test_the_demo_county_brings_its_catalogue_only_when_asked(connection):
    counts = await seed_demo(connection, PEPPER, KEY_ENCRYPTION_KEY, population=10)
    assert "catalogue_items" not in counts
    assert await catalogue_stamp(connection) is None  # the default the integration tests settle on
    # A county seeded before catalogues existed gets one once, effective 1 January.
    assert await seed_demo_catalogue(connection, SAMPLE_CATALOGUE) == 74
    assert await seed_demo_catalogue(connection, SAMPLE_CATALOGUE) == 0
    counts = await seed_demo(connection, PEPPER, KEY_ENCRYPTION_KEY, population=10, catalogue=SAMPLE_CATALOGUE)
    assert counts["catalogue_items"] == 0
    [version] = await catalogue_versions(connection)
    assert (version.effective_from, version.source, version.actor, version.items) == (
        JANUARY,
        "catalogue-2026.csv",
        "demo",
        74,
    )


# ---------------------------------------------------------------- the command line


async def test_the_command_line_end_to_end(fresh_url, connection, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "医保目录编码,医保目录名称,收费项目等级,先行自付比例,计价单位,最高限价\n"
        "X-1,good,A,,次,\nX-2,share on A,A,0.1,次,\nX-1,again,B,,次,\nX-3,cap,B,,次,1.005\n",
        encoding="utf-8",
    )
    result = medsettle(fresh_url, "catalogue", "import", str(bad), "--effective-from", "2026-01-01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "rejected line 3: 先行自付比例: '0.1' on a category A item; only a B item has a self-pay-first share "
        "(leave it empty, or write 0)",
        "rejected line 4: 医保目录编码: X-1 is already on line 2",
        "rejected line 5: 最高限价: '1.005' has more than 2 decimals (a cap is whole fen)",
    ]
    assert "3 of 4 rows rejected" in result.stderr and "nothing was written" in result.stderr
    assert await counts(connection) == (0, 0, 0)

    first, second = tmp_path / "catalogue-2026.csv", tmp_path / "catalogue-2026-07.xlsx"
    write_sample_catalogue(first, 300, seed=9)
    write_sample_catalogue(second, 300, seed=9, revision=1)
    result = medsettle(fresh_url, "catalogue", "import", str(first), "--effective-from", "2026-01-01", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("catalogue-2026.csv: catalogue version effective from 2026-01-01, 300 items;")
    assert "dry run: nothing written" in result.stdout
    assert await counts(connection) == (0, 0, 0)

    result = medsettle(fresh_url, "catalogue", "import", str(first), "--effective-from", "2026-01-01")
    assert result.returncode == 0, result.stderr
    assert "  added                     300  e.g. " in result.stdout
    assert result.stdout.endswith("imported\n")
    result = medsettle(fresh_url, "catalogue", "import", str(first), "--effective-from", "2026-01-01")
    assert result.returncode == 0, result.stderr
    assert "already imported from this file on " in result.stdout and "nothing changed" in result.stdout

    result = medsettle(fresh_url, "catalogue", "import", str(second), "--effective-from", "2026-07-01")
    assert result.returncode == 0, result.stderr
    # The same file again through the store: a no-op that answers with the version's own summary.
    summary = await imported(
        connection, read_catalogue(second)[0], JULY, hashlib.sha256(second.read_bytes()).hexdigest()
    )
    assert summary.outcome == "already_imported"
    for field, label in (("removed", "removed"), ("changed", "changed"), ("changed_category", "  category")):
        changes = getattr(summary, field)
        assert f"  {label:<20} {changes.count:>8,}  e.g. {', '.join(changes.examples)}" in result.stdout

    result = medsettle(fresh_url, "catalogue", "import", str(first), "--effective-from", "2026-03-01")
    assert result.returncode == 1
    assert "versions are imported in date order" in result.stderr

    result = medsettle(fresh_url, "catalogue", "versions")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("EFFECTIVE FROM  ITEMS  ADDED  REMOVED  CHANGED  IMPORTED")
    assert lines[1].startswith("2026-01-01") and "catalogue-2026.csv (" in lines[1]
    assert lines[2].startswith("2026-07-01") and "catalogue-2026-07.xlsx (" in lines[2]
    listed = json.loads(medsettle(fresh_url, "catalogue", "versions", "--format", "json").stdout)
    assert [(version["effective_from"], version["items"]) for version in listed] == [
        ("2026-01-01", 300),
        ("2026-07-01", 300),
    ]

    changed = summary.changed_category.examples[0]
    result = medsettle(fresh_url, "catalogue", "show", changed, "--on", "2026-07-01")
    assert result.returncode == 0, result.stderr
    entry = await catalogue_item(connection, changed, on=JULY)
    assert entry is not None
    assert f"category        {entry.category}" in result.stdout
    assert "version         2026-07-01 (in force on 2026-07-01); this item as set by version 2026-07-01" in (
        result.stdout
    )
    result = medsettle(fresh_url, "catalogue", "show", summary.removed.examples[0], "--on", "2026-07-01")
    assert result.returncode == 1
    assert "is not in the catalogue in force on 2026-07-01 (version 2026-07-01, removed by version 2026-07-01)" in (
        result.stderr
    )
    result = medsettle(fresh_url, "catalogue", "show", changed, "--on", "2025-12-31")
    assert result.returncode == 1
    assert "no catalogue version is in force on 2025-12-31 (the first is effective from 2026-01-01)" in result.stderr

    result = medsettle(
        fresh_url, "catalogue", "import", str(tmp_path / "missing.csv"), "--effective-from", "2027-01-01"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "medsettle catalogue import: missing.csv: cannot be read: No such file or directory"
