"""The settle write's cost benchmark (benchmarks/write_cost.py) on a small county: every copy, the schema as it
is and a variant, writes every settlement of the same stream through the gateway's own statement, and the run
leaves no database behind.

Speed is never asserted here: the benchmark measures it on a quiet machine.
"""

from __future__ import annotations

import argparse
import uuid

import asyncpg
import pytest

from benchmarks import write_cost

pytestmark = pytest.mark.integration


def _prefix() -> str:
    """A prefix of this test's own: the two run tests may run at once in two workers."""
    return f"medsettle_write_cost_test_{uuid.uuid4().hex[:8]}"


async def _databases(url: str, prefix: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix)
        return {row["datname"] for row in rows}
    finally:
        await connection.close()


def _arguments(*variants: str) -> argparse.Namespace:
    return argparse.Namespace(
        variant=[write_cost.variant(text) for text in variants],
        people=150,
        batch=4,
        warmup=3,
        batches=6,
        rounds=2,
        seed=3,
    )


async def test_each_copy_writes_the_whole_stream_and_the_run_cleans_up(database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    prefix = _prefix()
    results = await write_cost.run(_arguments("no-person-day=DROP INDEX settlements_by_person_day"), prefix=prefix)
    assert list(results) == [write_cost.AS_IS, "no-person-day"]
    assert all(len(rounds) == 2 and min(rounds) >= 0 for rounds in results.values())
    assert "no-person-day" in write_cost.report(results)
    assert await _databases(database_url, prefix) == set()


async def test_a_variant_whose_sql_fails_stops_the_run(database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    prefix = _prefix()
    with pytest.raises(asyncpg.UndefinedObjectError):
        await write_cost.run(_arguments("typo=DROP INDEX settlements_by_nothing"), prefix=prefix)
    assert await _databases(database_url, prefix) == set()


def test_the_report_gives_each_variant_its_median_and_ratio() -> None:
    report = write_cost.report({write_cost.AS_IS: [100.0, 120.0, 110.0], "faster": [90.0, 80.0, 100.0]})
    assert "as-is                       110.0   1.00  100.0, 120.0, 110.0" in report
    assert "faster                       90.0   0.82  90.0, 80.0, 100.0" in report
    # A run too short for one tick of the clock reads 0 µs: no ratio to it, rather than a division by zero.
    assert "    -" in write_cost.report({write_cost.AS_IS: [0.0, 0.0], "other": [0.0, 833.3]})


def test_a_variant_is_named_sql_or_a_file(tmp_path) -> None:
    script = tmp_path / "variant.sql"
    script.write_text("DROP INDEX settlements_by_person_day", encoding="utf-8")
    assert write_cost.variant(f"from-file={script}") == ("from-file", "DROP INDEX settlements_by_person_day")
    assert write_cost.variant("inline=SELECT 1") == ("inline", "SELECT 1")
    for bad in ("no-equals", "=SELECT 1", "empty=", f"{write_cost.AS_IS}=SELECT 1"):
        with pytest.raises(argparse.ArgumentTypeError):
            write_cost.variant(bad)
