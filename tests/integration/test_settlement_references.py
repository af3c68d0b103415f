"""Migration 0022 checks a settlement's clinic and policy version once per statement, without the foreign keys'
row locks: a statement that names an unknown one writes nothing and fails as the foreign key did, and what
settlements name can be neither removed nor re-keyed, so the check never needs a lock to stay true.

Each test works in a transaction it rolls back, on copies of a settlement the gateway wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from adapters.check import CHECKS
from tests.integration.conftest import COUNTY, bill, register

pytestmark = pytest.mark.integration


class _RolledBack(Exception):
    pass


@pytest.fixture
async def settled(client: Any, pool: asyncpg.Pool) -> dict[str, Any]:
    """A settlement the gateway wrote, as its stored row."""
    person = await register(client, ("insurance", "resident"))
    response = await client.post("/v1/settlements", json=bill(person, ("A", 10_000)), headers=COUNTY)
    assert response.status == 201, await response.text()
    settlement_id = uuid.UUID((await response.json())["settlement_id"])
    row = await pool.fetchrow("SELECT * FROM settlements WHERE settlement_id = $1", settlement_id)
    return dict(row)


@pytest.fixture
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as connection:
        yield connection


def copy_of(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The settlement as another request of its terminal: a new id and request id, with ``changes``."""
    return {**row, "settlement_id": uuid.uuid4(), "request_id": f"copy-{uuid.uuid4().hex}", **changes}


async def insert(connection: asyncpg.Connection, *rows: dict[str, Any]) -> None:
    """The rows in one INSERT statement, as a batch of the settle write is."""
    columns = list(rows[0])
    values = ", ".join(
        "(" + ", ".join(f"${n * len(columns) + i + 1}" for i in range(len(columns))) + ")" for n in range(len(rows))
    )
    arguments = [row[column] for row in rows for column in columns]
    await connection.execute(f"INSERT INTO settlements ({', '.join(columns)}) VALUES {values}", *arguments)


async def outcome(connection: asyncpg.Connection, statement: Any) -> object:
    """What ``statement()`` came to in a transaction rolled back: 'done', or the refusal's SQLSTATE and
    constraint (or, with none, the first word of its message)."""
    try:
        async with connection.transaction():
            await statement()
            raise _RolledBack
    except _RolledBack:
        return "done"
    except asyncpg.PostgresError as error:
        return (error.sqlstate, getattr(error, "constraint_name", None) or str(error).split()[0])


async def test_a_settlement_naming_an_unknown_clinic_or_policy_is_refused_as_by_a_foreign_key(
    settled: dict[str, Any], connection: asyncpg.Connection
) -> None:
    good = copy_of(settled)
    assert await outcome(connection, lambda: insert(connection, good)) == "done"
    unknown_clinic = copy_of(settled, clinic_id="NO-SUCH-CLINIC")
    assert await outcome(connection, lambda: insert(connection, unknown_clinic)) == (
        "23503",
        "settlements_clinic_id_fkey",
    )
    unknown_policy = copy_of(settled, policy_id="no-such-policy-2026")
    assert await outcome(connection, lambda: insert(connection, unknown_policy)) == (
        "23503",
        "settlements_policy_id_fkey",
    )
    # The error names the key that is missing, as PostgreSQL's own does.
    with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
        async with connection.transaction():
            await insert(connection, unknown_clinic)
    assert refused.value.detail == 'Key (clinic_id)=(NO-SUCH-CLINIC) is not present in table "clinics".'


async def test_one_unknown_reference_in_a_batch_writes_none_of_it(
    settled: dict[str, Any], connection: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    batch = [copy_of(settled) for _ in range(6)] + [copy_of(settled, policy_id="no-such-policy-2026")]
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await insert(connection, *batch)
    ids = [row["settlement_id"] for row in batch]
    assert await pool.fetchval("SELECT count(*) FROM settlements WHERE settlement_id = ANY($1)", ids) == 0


async def test_what_settlements_name_is_never_removed_or_re_keyed(
    settled: dict[str, Any], connection: asyncpg.Connection
) -> None:
    clinic, policy = settled["clinic_id"], settled["policy_id"]

    async def unnamed_clinic_deleted() -> None:
        # Even a clinic no settlement names yet: a settlement may be naming it in a transaction not yet committed.
        await connection.execute(
            "INSERT INTO clinics (clinic_id, name, level, region) VALUES ('C-NEW', 'new', 'village', '410103')"
        )
        await connection.execute("DELETE FROM clinics WHERE clinic_id = 'C-NEW'")

    refused_by = {table: ("42501", f"{table}:") for table in ("clinics", "policy_versions")}
    statements = {
        "DELETE FROM clinics WHERE clinic_id = $1": ((clinic,), "clinics"),
        "UPDATE clinics SET clinic_id = 'C-RENAMED' WHERE clinic_id = $1": ((clinic,), "clinics"),
        "TRUNCATE clinics CASCADE": ((), "clinics"),
        "DELETE FROM policy_versions WHERE policy_id = $1": ((policy,), "policy_versions"),
        "UPDATE policy_versions SET policy_id = 'renamed' WHERE policy_id = $1": ((policy,), "policy_versions"),
        "TRUNCATE policy_versions": ((), "policy_versions"),
    }
    for statement, (arguments, table) in statements.items():
        found = await outcome(connection, lambda s=statement, a=arguments: connection.execute(s, *a))
        assert found == refused_by[table], statement
    assert await outcome(connection, unnamed_clinic_deleted) == refused_by["clinics"]
    # Everything else about them may change, as before: a clinic's name, a policy version's restated source.
    kept_key_changes = {
        "UPDATE clinics SET name = name || ' (renamed)' WHERE clinic_id = $1": (clinic,),
        "UPDATE clinics SET clinic_id = clinic_id WHERE clinic_id = $1": (clinic,),
        "UPDATE policy_versions SET source = source || ' (restated)' WHERE policy_id = $1": (policy,),
    }
    for statement, arguments in kept_key_changes.items():
        assert await outcome(connection, lambda s=statement, a=arguments: connection.execute(s, *a)) == "done", (
            statement
        )


async def test_check_names_a_settlement_written_past_the_trigger(
    settled: dict[str, Any], connection: asyncpg.Connection
) -> None:
    """A session without triggers (session_replication_role = replica, as a logical replica's apply) is not
    checked at all; ``medsettle check`` reads the whole table for what it let through."""
    orphan = copy_of(settled, clinic_id="NO-SUCH-CLINIC")
    rule = CHECKS["settlement_names_its_clinic_and_policy"]
    try:
        async with connection.transaction():
            assert await connection.fetch(rule) == []
            await connection.execute("SET LOCAL session_replication_role = replica")
            await insert(connection, orphan)
            await connection.execute("SET LOCAL session_replication_role = origin")
            assert [row["id"] for row in await connection.fetch(rule)] == [str(orphan["settlement_id"])]
            raise _RolledBack
    except _RolledBack:
        pass
