"""Migration 0021 checks the accumulators' counters against their caps once per statement (two statement-level
triggers) instead of a CHECK per row: it must refuse exactly what the CHECK refused, with the same error.

Each (counters, caps) pair of well-formed and malformed JSON values is written to a person-year, by INSERT,
by UPDATE and by INSERT ... ON CONFLICT DO UPDATE, in a transaction rolled back afterwards; the outcome (written,
or the SQLSTATE and constraint of the refusal) must be what the 0012 CHECK expression gives for the pair.
"""

from __future__ import annotations

import itertools
import os

import asyncpg
import pytest

from tests.integration.test_migration_0019 import OBJECTS

pytestmark = pytest.mark.integration

PERSON = os.urandom(32)  # a person-year of this test's own
YEAR = 2031


class _RolledBack(Exception):
    pass


async def _expected(connection: asyncpg.Connection, counters: str, caps: str) -> object:
    """What the 0012 CHECK made of the pair: written, or the refusal's SQLSTATE and constraint."""
    try:
        async with connection.transaction():
            within = await connection.fetchval(
                "SELECT pg_temp.old_counters_within_caps($1::jsonb, $2::jsonb)", counters, caps
            )
    except asyncpg.PostgresError as error:
        return ("error", error.sqlstate, None)
    # A CHECK refuses only false; true and NULL (neither can be NULL here: both columns are NOT NULL) pass.
    return "written" if within is not False else ("error", "23514", "accumulators_counters_within_caps")


async def _outcome(connection: asyncpg.Connection, statements: list[str], counters: str, caps: str) -> object:
    try:
        async with connection.transaction():
            for statement in statements:
                pair = (counters, caps) if "$3" in statement else ()
                await connection.execute(statement, PERSON, YEAR, *pair)
            raise _RolledBack
    except _RolledBack:
        return "written"
    except asyncpg.PostgresError as error:
        constraint = getattr(error, "constraint_name", None)
        return ("error", error.sqlstate, constraint if error.sqlstate == "23514" else None)


CREATE = "INSERT INTO accumulators (person_key, year) VALUES ($1, $2)"  # empty counters and caps
INSERT = "INSERT INTO accumulators (person_key, year, counters, caps) VALUES ($1, $2, $3::jsonb, $4::jsonb)"
UPDATE = "UPDATE accumulators SET counters = $3::jsonb, caps = $4::jsonb WHERE person_key = $1 AND year = $2"
UPSERT = INSERT + " ON CONFLICT (person_key, year) DO UPDATE SET counters = EXCLUDED.counters, caps = EXCLUDED.caps"

# How a pair reaches a row: a new row, an update of a row, and the upsert that updates one (it proposes the
# row for insertion first, then updates).
WAYS = {"insert": [INSERT], "update": [CREATE, UPDATE], "upsert over a row": [CREATE, UPSERT]}


@pytest.mark.parametrize("way", list(WAYS))
async def test_the_triggers_refuse_what_the_check_refused(with_0012_functions: asyncpg.Connection, way: str) -> None:
    connection = with_0012_functions
    differ = []
    for counters, caps in itertools.product(OBJECTS, repeat=2):
        expected = await _expected(connection, counters, caps)
        found = await _outcome(connection, WAYS[way], counters, caps)
        if found != expected:
            differ.append((counters, caps, expected, found))
    assert differ == []
    assert await connection.fetchval("SELECT count(*) FROM accumulators WHERE person_key = $1", PERSON) == 0


async def test_one_row_past_its_cap_refuses_the_whole_statement(pool: asyncpg.Pool) -> None:
    """A batch writes many person-years in one statement: one counter past its cap writes none of them."""
    people = [os.urandom(32) for _ in range(7)]
    counters = ['{"aid_paid": 10}'] * 6 + ['{"aid_paid": 11}']
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await pool.execute(
            "INSERT INTO accumulators (person_key, year, counters, caps)"
            " SELECT p, $2, c::jsonb, '{\"aid_paid\": 10}' FROM unnest($1::bytea[], $3::text[]) AS u(p, c)",
            people,
            YEAR,
            counters,
        )
    assert refused.value.constraint_name == "accumulators_counters_within_caps"
    written = await pool.fetchval("SELECT count(*) FROM accumulators WHERE person_key = ANY($1)", people)
    assert written == 0


async def test_the_row_check_is_gone_and_the_triggers_are_there(pool: asyncpg.Pool) -> None:
    checks = await pool.fetch(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'accumulators'::regclass AND contype = 'c'"
    )
    assert "accumulators_counters_within_caps" not in {row["conname"] for row in checks}
    triggers = await pool.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'accumulators'::regclass AND NOT tgisinternal"
    )
    assert {"accumulators_counters_within_caps_inserted", "accumulators_counters_within_caps_updated"} <= {
        row["tgname"] for row in triggers
    }
