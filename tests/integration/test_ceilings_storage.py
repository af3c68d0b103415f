"""``benchmarks/ceilings.py`` against a real PostgreSQL: storage snapshots and pgbench's schema check.

Each test makes a private database of its own with a few tables of its own making, because
the storage figures must not depend on what the migrations create (any table of the public
schema counts), and the database ceiling must be skipped, not crash, when pgbench's scripts
name tables the schema no longer has.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from benchmarks import ceilings

pytestmark = pytest.mark.integration


@pytest.fixture
async def private_url(database_url: str) -> AsyncIterator[str]:
    name = f"medsettle_ceilings_test_{uuid.uuid4().hex[:10]}"
    await ceilings._execute(database_url, f'CREATE DATABASE "{name}"')
    yield ceilings.with_database(database_url, name)
    await ceilings._execute(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_storage_counts_every_public_table_s_bytes_and_rows_per_settlement(private_url: str) -> None:
    await ceilings._execute(
        private_url,
        "CREATE TABLE settlements (id bigint PRIMARY KEY, note text)",
        "CREATE TABLE lines (settlement_id bigint, amount bigint)",
        "CREATE INDEX ON lines (settlement_id)",
        "CREATE TABLE totals (id int PRIMARY KEY, amount bigint)",
        "CREATE TABLE untouched (id int)",
        "INSERT INTO totals SELECT g, 0 FROM generate_series(1, 10) g",
        "INSERT INTO settlements SELECT g, 'before' FROM generate_series(1, 5) g",
    )
    before, settled_before, _ = await ceilings.quiet_storage_snapshot(private_url)
    assert settled_before == 5
    assert before["untouched"]["bytes"] == 0

    # Another session writes, as the gateway's would, and ends; its statistics reach the server lazily.
    writer = await asyncpg.connect(private_url)
    try:
        for start in range(6, 2006, 100):
            async with writer.transaction():
                await writer.execute(
                    "INSERT INTO settlements SELECT g, repeat('x', 300) FROM generate_series($1::bigint, $1 + 99) g",
                    start,
                )
                await writer.execute(
                    "INSERT INTO lines SELECT s, 100"
                    " FROM generate_series($1::bigint, $1 + 99) s, generate_series(1, 3)",
                    start,
                )
                await writer.execute("UPDATE totals SET amount = amount + 1 WHERE id <= 5")
    finally:
        await writer.close()
    after, settled_after, _ = await ceilings.quiet_storage_snapshot(private_url)
    assert settled_after == 2005

    figures = ceilings.storage_per_settlement(before, after, settled_after - settled_before)
    by_table = {row["table"]: row for row in figures["tables"]}
    assert set(by_table) == {"settlements", "lines", "totals"}
    assert by_table["settlements"]["inserted_per_settlement"] == pytest.approx(1.0)
    assert by_table["lines"]["inserted_per_settlement"] == pytest.approx(3.0)
    assert by_table["totals"]["updated_per_settlement"] == pytest.approx(100 / 2000)
    assert figures["rows_per_settlement"] == pytest.approx(4.05)
    # 300 bytes of note, the row and the primary key at least; the lines table with its index.
    assert by_table["settlements"]["bytes_per_settlement"] > 300
    assert by_table["lines"]["bytes_per_settlement"] > 3 * 40
    assert figures["bytes_per_settlement"] == pytest.approx(figures["bytes"] / 2000)


async def test_sampling_pgbench_documents_on_a_schema_without_their_tables_skips_the_database_ceiling(
    private_url: str,
) -> None:
    await ceilings._execute(private_url, "CREATE TABLE settlements (settlement_id uuid PRIMARY KEY)")
    with pytest.raises(ceilings.Skipped, match="pgbench scripts do not match the schema"):
        await ceilings.prepare_pgbench(private_url, private_url, [])
