"""Migration 0019 rewrites the CHECK functions of 0012 in PL/pgSQL: each must answer, or refuse, as before.

The 0012 bodies are created again as temporary functions beside the migrated ones (with_0012_functions), and
both are called on the same values, well-formed and not: the same result, or an error of the same SQLSTATE,
every time.
"""

from __future__ import annotations

import itertools

import asyncpg
import pytest

from tests.integration.conftest import FUNCTIONS_OF_0012

pytestmark = pytest.mark.integration

FUNCTIONS = FUNCTIONS_OF_0012

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


async def _outcome(connection: asyncpg.Connection, function: str, values: tuple[str, ...]) -> object:
    placeholders = ", ".join(f"${n}::jsonb" for n in range(1, len(values) + 1))
    try:
        async with connection.transaction():
            return await connection.fetchval(f"SELECT {function}({placeholders})::text", *values)
    except asyncpg.PostgresError as error:
        return ("error", error.sqlstate)


async def test_the_rewritten_functions_answer_and_refuse_as_0012s(with_0012_functions: asyncpg.Connection) -> None:
    connection = with_0012_functions
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


async def test_the_functions_are_plpgsql_now(with_0012_functions: asyncpg.Connection) -> None:
    connection = with_0012_functions
    languages = dict(
        await connection.fetch(
            "SELECT p.proname, l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
            " WHERE p.proname = ANY($1::text[]) AND p.pronamespace = 'public'::regnamespace",
            list(FUNCTIONS),
        )
    )
    assert languages == dict.fromkeys(FUNCTIONS, "plpgsql")
