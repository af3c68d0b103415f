"""Migration 0019 rewrites the CHECK functions of 0012 in PL/pgSQL: each must answer, or refuse, as before.

The 0012 bodies are created again as temporary functions beside the migrated ones, and both are called on
the same values, well-formed and not: the same result, or an error of the same SQLSTATE, every time.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest

pytestmark = pytest.mark.integration

FUNCTIONS = ("counters_within_caps", "greatest_caps", "fund_amounts_valid", "fund_amounts_total")

OBJECTS = [
    "{}",
    '{"aid_paid": 0}',
    '{"aid_paid": 5, "subsidy_paid": 7}',
    '{"aid_paid": 12, "subsidy_paid": 7}',
    '{"aid_paid": 3, "other": 1}',
    '{"charity": 655469, "tilted_aid": 310938}',
    '{"critical_illness": 0}',
    '{"aid_paid": -1}',
    '{"aid_paid": 1.5}',
    '{"aid_paid": "5"}',
    '{"aid_paid": null}',
    '{"aid_paid": true}',
    '{"aid_paid": 9223372036854775808}',
    '{"Charity": 1}',
    '{"1charity": 1}',
    '{"insurance": 1}',
    '{"hardship_aid": 0}',
    '{"a234567890123456789012345678901234567890": 1}',
    '{"a23456789012345678901234567890123456789": 1}',
    '{"with space": 1}',
    "[]",
    "[1, 2]",
    "5",
    '"text"',
    "null",
]


def _old_bodies() -> str:
    """The four functions exactly as 0012 created them, as temporary functions named old_<name>."""
    sql = (resources.files("adapters") / "migrations" / "0012_chain_counters.sql").read_text(encoding="utf-8")
    found = re.findall(r"CREATE FUNCTION (\w+)\((.*?)\$\$;", sql, flags=re.DOTALL)
    bodies = [f"CREATE FUNCTION pg_temp.old_{name}({rest}$$;" for name, rest in found if name in FUNCTIONS]
    assert len(bodies) == len(FUNCTIONS)
    return "\n".join(bodies)


@pytest.fixture
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as connection:
        await connection.execute(_old_bodies())
        try:
            yield connection
        finally:
            await connection.execute("DISCARD TEMP")


async def _outcome(connection: asyncpg.Connection, function: str, values: tuple[str, ...]) -> object:
    placeholders = ", ".join(f"${n}::jsonb" for n in range(1, len(values) + 1))
    try:
        async with connection.transaction():
            return await connection.fetchval(f"SELECT {function}({placeholders})::text", *values)
    except asyncpg.PostgresError as error:
        return ("error", error.sqlstate)


async def test_the_rewritten_functions_answer_and_refuse_as_0012s(connection: asyncpg.Connection) -> None:
    cases = [
        *(("fund_amounts_valid", (value,)) for value in OBJECTS),
        *(("fund_amounts_total", (value,)) for value in OBJECTS),
        *(("counters_within_caps", pair) for pair in itertools.product(OBJECTS, repeat=2)),
        *(("greatest_caps", pair) for pair in itertools.product(OBJECTS, repeat=2)),
    ]
    differ = []
    for function, values in cases:
        new = await _outcome(connection, function, values)
        old = await _outcome(connection, f"pg_temp.old_{function}", values)
        if new != old:
            differ.append((function, values, old, new))
    assert differ == []


async def test_the_functions_are_plpgsql_now(connection: asyncpg.Connection) -> None:
    languages = dict(
        await connection.fetch(
            "SELECT p.proname, l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
            " WHERE p.proname = ANY($1::text[]) AND p.pronamespace = 'public'::regnamespace",
            list(FUNCTIONS),
        )
    )
    assert languages == dict.fromkeys(FUNCTIONS, "plpgsql")
