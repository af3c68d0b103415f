"""The live schema keeps the rules that let it be distributed with Citus.

Against the fully migrated test database: every table in schema ``public`` is placed
in deploy/citus/distribute.sql (reference, distributed, or coordinator-only), every
per-person table (one with a ``person_key`` column) is distributed by person_key, and
every primary key and unique constraint or index of a distributed table includes its
distribution column, which Citus requires. The checks themselves are tested too: a
table added in a rolled-back transaction must be reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTE_SQL = ROOT / "deploy" / "citus" / "distribute.sql"

_CALL = re.compile(
    r"create_(?P<kind>distributed|reference)_table\s*\(\s*'(?P<table>\w+)'(?:\s*,\s*'(?P<column>\w+)')?",
    re.IGNORECASE,
)
_COORDINATOR_ONLY = re.compile(r"^\s*--\s*coordinator-only:\s*(?P<tables>.+)$", re.IGNORECASE | re.MULTILINE)
# Unique keys a single server keeps narrower than Citus allows, which distribute.sql widens first.
_WIDENED = re.compile(r"^\s*--\s*widened before distributing:\s*(?P<indexes>.+)$", re.IGNORECASE | re.MULTILINE)

_TABLES = """
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""

_COLUMNS = """
SELECT a.attname
FROM pg_attribute a
WHERE a.attrelid = ('public.' || quote_ident($1))::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""

# Every unique index: primary keys, UNIQUE constraints and CREATE UNIQUE INDEX alike.
_UNIQUE_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, i.indisprimary AS is_primary,
       array(SELECT a.attname FROM unnest(i.indkey::int2[]) AS k(attnum)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS columns
FROM pg_index i
WHERE i.indrelid = ('public.' || quote_ident($1))::regclass AND i.indisunique
"""


class Placement:
    """What deploy/citus/distribute.sql says about each table."""

    def __init__(self, text: str) -> None:
        self.reference: set[str] = set()
        self.distributed: dict[str, str] = {}  # table -> distribution column
        self.coordinator_only: set[str] = set()
        self.named_twice: list[str] = []
        self.widened: set[str] = set()
        for match in _WIDENED.finditer(text):
            self.widened |= {name.strip() for name in match["indexes"].split(",") if name.strip()}
        for match in _COORDINATOR_ONLY.finditer(text):
            for table in (name.strip() for name in match["tables"].split(",")):
                if table:
                    self._add(table)
                    self.coordinator_only.add(table)
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())  # calls in comments do not count
        for match in _CALL.finditer(code):
            table = match["table"]
            self._add(table)
            if match["kind"].lower() == "reference":
                self.reference.add(table)
            else:
                assert match["column"], f"create_distributed_table('{table}') without a distribution column"
                self.distributed[table] = match["column"]

    def _add(self, table: str) -> None:
        if table in self.named:
            self.named_twice.append(table)

    @property
    def named(self) -> set[str]:
        return self.reference | set(self.distributed) | self.coordinator_only


def _placement() -> Placement:
    return Placement(DISTRIBUTE_SQL.read_text(encoding="utf-8"))


async def _problems(connection: asyncpg.Connection, placement: Placement) -> list[str]:
    """Every way the live schema disagrees with the distribution plan or with Citus's rules."""
    problems = [f"{table}: named more than once in distribute.sql" for table in placement.named_twice]
    tables = [row["relname"] for row in await connection.fetch(_TABLES)]
    for table in sorted(placement.named - set(tables)):
        problems.append(f"{table}: named in distribute.sql but not in the database")
    for table in tables:
        if table not in placement.named:
            problems.append(f"{table}: not named in distribute.sql (reference, distributed or coordinator-only)")
            continue
        columns = {row["attname"] for row in await connection.fetch(_COLUMNS, table)}
        unique = await connection.fetch(_UNIQUE_INDEXES, table)
        if "person_key" in columns:
            if placement.distributed.get(table) != "person_key":
                problems.append(f"{table}: has person_key but is not distributed by person_key")
            primary = [index for index in unique if index["is_primary"]]
            if not primary or (
                "person_key" not in primary[0]["columns"] and primary[0]["name"] not in placement.widened
            ):
                problems.append(f"{table}: person_key is not in the primary key")
        column = placement.distributed.get(table)
        if column is None:
            continue
        if column not in columns:
            problems.append(f"{table}: distributed by {column}, which it does not have")
        for index in unique:
            if column not in index["columns"] and index["name"] not in placement.widened:
                problems.append(f"{table}: unique index {index['name']} {index['columns']} lacks {column}")
    return problems


def test_every_widened_key_is_widened_with_its_distribution_column():
    """A request key kept narrow on one server is re-made with person_key before its table is distributed."""
    placement = _placement()
    text = DISTRIBUTE_SQL.read_text(encoding="utf-8")
    assert placement.widened == {
        "settlements_one_per_request",
        "reversals_one_per_request",
        "insurer_messages_message_id",
    }
    for name in placement.widened:
        statement = re.search(rf"ADD CONSTRAINT {name} (?:PRIMARY KEY|UNIQUE) \((?P<columns>[^)]*)\)", text)
        assert statement, f"{name} is said to be widened but distribute.sql never re-adds it"
        assert "person_key" in statement["columns"], name
        assert text.index(statement[0]) < text.index("SELECT create_distributed_table"), f"{name} widened too late"


def test_distribute_sql_places_the_expected_tables():
    placement = _placement()
    assert not placement.named_twice
    assert {"clinics", "terminals", "terminal_keys", "policy_versions", "schema_migrations"} <= placement.reference
    for table in ("people", "memberships", "accumulators", "settlements", "reversals"):
        assert placement.distributed[table] == "person_key", table
    assert placement.distributed["request_nonces"] == "digest"
    assert placement.coordinator_only == {"audit_log", "audit_seals", "ledger_seals"}


async def test_every_table_is_placed_and_keeps_the_citus_rules(pool):
    async with pool.acquire() as connection:
        tables = {row["relname"] for row in await connection.fetch(_TABLES)}
        problems = await _problems(connection, _placement())
    # The migrated schema really has the tables we expect, so the check is not vacuous.
    assert {"people", "settlements", "reversals", "request_nonces", "audit_log", "schema_migrations"} <= tables
    assert problems == []


async def test_a_new_table_fails_until_it_is_placed(pool):
    placement = _placement()
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("CREATE TABLE scratch_unplaced (id bigint PRIMARY KEY)")
            await connection.execute(
                "CREATE TABLE scratch_per_person (person_key bytea NOT NULL, visit_id bigint PRIMARY KEY,"
                " code text UNIQUE)"
            )
            problems = await _problems(connection, placement)
            assert any(problem.startswith("scratch_unplaced: not named") for problem in problems), problems
            assert any(problem.startswith("scratch_per_person: not named") for problem in problems), problems

            # Named as distributed by person_key, the per-person table still breaks Citus's rule.
            placement.distributed["scratch_per_person"] = "person_key"
            placement.reference.add("scratch_unplaced")
            problems = await _problems(connection, placement)
            assert "scratch_per_person: person_key is not in the primary key" in problems, problems
            assert any("scratch_per_person: unique index" in problem for problem in problems), problems
            assert not any(problem.startswith("scratch_unplaced") for problem in problems), problems
        finally:
            await transaction.rollback()
        assert await connection.fetchval("SELECT to_regclass('public.scratch_unplaced')") is None
