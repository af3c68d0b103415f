"""Migration 0013 lets memberships hold any programme a policy may name, and still refuses a malformed name.

A database at the schema before 0013 gets memberships of the three payers' programmes as the gateway
of that schema wrote them; migrating must keep every row as it was, then take a charity membership,
and the database itself must refuse a programme name no policy could declare.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters import db
from tests.integration.conftest import database_before

pytestmark = pytest.mark.integration

PERSON = bytes(range(32))
OLD_ROWS = [
    ("hardship_aid", "minimum_allowance", dt.date(2025, 1, 1), dt.date(2026, 3, 1)),
    ("hardship_aid", "marginal", dt.date(2026, 3, 1), None),
    ("insurance", "resident", dt.date(2020, 1, 1), None),
    ("veteran_subsidy", "priority_care", dt.date(2024, 5, 1), None),
]


@pytest.fixture
async def old_database(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database migrated up to the last migration before 0013."""
    async with database_before(database_url, 13) as connection:
        yield connection


async def _add(connection: asyncpg.Connection, programme: str, code: str = "x") -> None:
    await connection.execute(
        "INSERT INTO memberships (person_key, programme, code, effective_from, source) VALUES ($1, $2, $3, $4, 'test')",
        PERSON,
        programme,
        code,
        dt.date(2026, 1, 1),
    )


async def _rows(connection: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await connection.fetch(
        "SELECT membership_id, programme, code, effective_from, struck_off_on, source, created_at, updated_at"
        " FROM memberships ORDER BY membership_id"
    )
    return [tuple(row.values()) for row in rows]


async def test_old_memberships_survive_and_any_well_formed_programme_is_then_stored(old_database):
    connection = old_database
    await connection.execute(
        "INSERT INTO people (person_key, masked_id, name, region_code) VALUES ($1, '410***********1234', '', '410102')",
        PERSON,
    )
    await connection.executemany(
        "INSERT INTO memberships (person_key, programme, code, effective_from, struck_off_on, source)"
        " VALUES ($1, $2, $3, $4, $5, 'civil-affairs:old.csv')",
        [(PERSON, *row) for row in OLD_ROWS],
    )
    with pytest.raises(asyncpg.CheckViolationError):  # what 0013 is for: before it, only the payers' three
        await _add(connection, "charity", "child_major_disease")
    before = await _rows(connection)

    applied = await db.migrate(connection)
    assert applied[0] == "0013_any_programme.sql"  # then any later migration

    assert await _rows(connection) == before
    await _add(connection, "charity", "child_major_disease")
    await _add(connection, "a" * 40)  # the longest name a policy may declare
    await _add(connection, "critical_illness_2")
    programmes = await connection.fetch("SELECT programme FROM memberships ORDER BY membership_id")
    assert [row["programme"] for row in programmes][len(OLD_ROWS) :] == ["charity", "a" * 40, "critical_illness_2"]


BAD_NAMES = ["", "Charity", "charity-fund", "2charity", "_charity", "charity\n", "慈善", "a" * 41, "charity fund"]


async def test_the_database_refuses_a_programme_name_no_policy_could_declare(old_database):
    connection = old_database
    await db.migrate(connection)
    await connection.execute(
        "INSERT INTO people (person_key, masked_id, name, region_code) VALUES ($1, '410***********1234', '', '410102')",
        PERSON,
    )
    for programme in BAD_NAMES:
        with pytest.raises(asyncpg.CheckViolationError, match="memberships_programme_check"):
            await _add(connection, programme)
    assert await connection.fetchval("SELECT count(*) FROM memberships") == 0
