"""``benchmarks/ceilings.py`` against a real PostgreSQL: pgbench's schema check.

Each test makes a private database of its own with a few tables of its own making: the
database ceiling must be skipped, not crash, when pgbench's scripts name tables the schema
no longer has.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from benchmarks import ceilings

pytestmark = pytest.mark.integration


@pytest.fixture
async def private_url(database_url: str) -> AsyncIterator[str]:
    name = f"medsettle_ceilings_test_{uuid.uuid4().hex[:10]}"
    await ceilings._execute(database_url, f'CREATE DATABASE "{name}"')
    yield ceilings.with_database(database_url, name)
    await ceilings._execute(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_sampling_pgbench_documents_on_a_schema_without_their_tables_skips_the_database_ceiling(
    private_url: str,
) -> None:
    await ceilings._execute(private_url, "CREATE TABLE settlements (settlement_id uuid PRIMARY KEY)")
    with pytest.raises(ceilings.Skipped, match="pgbench scripts do not match the schema"):
        await ceilings.prepare_pgbench(private_url, private_url, [])
