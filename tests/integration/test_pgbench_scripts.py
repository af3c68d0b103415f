"""The generated pgbench scripts run on the migrated schema and store what the gateway would.

A private database with a small synthetic county, prepared as ``benchmarks/ceilings.py`` prepares
pgbench's copy (stand-in records, since no gateway settled there); then pgbench itself runs each
script a few times on one client. Every transaction must store its settlement, and, with only a
few people, later ones for the same person must find the accumulator row at the version they read
and move it on by one.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters import db
from adapters.settlement_sql import decode_record
from benchmarks import ceilings, pgbench_scripts
from benchmarks.county import bill_stream, build_county, load_county

pytestmark = pytest.mark.integration

PEOPLE = 4
TRANSACTIONS = 12


def pgbench() -> str:
    found = shutil.which("pgbench") or ceilings.pgserver_binary("pgbench")
    if found is None or not Path(found).exists():
        pytest.skip("pgbench is not installed")
    return str(found)


@pytest.fixture
async def prepared(database_url: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name = f"medsettle_pgbench_test_{uuid.uuid4().hex[:10]}"
    await ceilings._execute(database_url, f'CREATE DATABASE "{name}"')
    url = ceilings.with_database(database_url, name)
    try:
        county = build_county(7, villages=4, townships=1, counties=1, people=PEOPLE)
        connection = await asyncpg.connect(url)
        try:
            await db.migrate(connection)
            await load_county(connection, county, pepper=b"pgbench-test", key_encryption_key=bytes(32))
        finally:
            await connection.close()
        stream = bill_stream(county, random.Random(3))
        stand_ins = ceilings.stand_in_records(county, [next(stream)[1] for _ in range(5)])
        facts = await ceilings.prepare_pgbench(url, url, stand_ins)
        yield url, facts
    finally:
        await ceilings._execute(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, facts: dict[str, Any], script: str, tmp_path: Path) -> str:
    path = tmp_path / "script.sql"
    path.write_text(script, encoding="utf-8")
    variables = {
        "people": facts["people"],
        "terminals": facts["terminals"],
        "records": facts["records"],
        "year": dt.date.today().year,
        "policy": facts["policy"],
    }
    command = [pgbench(), "-n", "-M", "prepared", "-c", "1", "-t", str(TRANSACTIONS), "-f", str(path)]
    for name, value in variables.items():
        command += ["-D", f"{name}={value}"]
    completed = subprocess.run([*command, url], capture_output=True, text=True, timeout=120)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-2000:]
    assert f"number of transactions actually processed: {TRANSACTIONS}/{TRANSACTIONS}" in output, output[-2000:]
    return output


@pytest.mark.parametrize("name", ["write", "read-write"])
async def test_each_transaction_of_the_generated_script_stores_one_settlement(
    prepared: tuple[str, dict[str, Any]], name: str, tmp_path: Path
) -> None:
    url, facts = prepared
    assert facts["people"] == PEOPLE
    assert not facts["records_from_gateway"]

    run(url, facts, pgbench_scripts.SCRIPTS[name](), tmp_path)

    connection = await asyncpg.connect(url)
    try:
        settlements = await connection.fetch(
            "SELECT s.*, t.n AS terminal_n, r.n AS record_n FROM settlements s"
            " LEFT JOIN bench_terminals t ON (t.terminal_id, t.clinic_id, t.level)"
            " = (s.terminal_id, s.clinic_id, s.clinic_level)"
            " LEFT JOIN bench_records r ON (r.record, r.request_hash, r.nonce) = (s.record, s.request_hash, s.nonce)"
        )
        accumulators = await connection.fetch("SELECT * FROM accumulators")
        people = {row["person_key"] for row in await connection.fetch("SELECT person_key FROM people")}
    finally:
        await connection.close()

    assert len(settlements) == TRANSACTIONS
    for row in settlements:
        assert row["person_key"] in people
        assert row["terminal_n"] is not None, "terminal, clinic and level must come from one bench_terminals row"
        assert row["record_n"] is not None, "record, fingerprint and nonce must come from one sampled row"
        assert decode_record(row["record"]).result.total > 0
        assert row["policy_id"] == facts["policy"]
        assert row["insurance"] + row["veteran_subsidy"] + row["hardship_aid"] + row["out_of_pocket"] == row["total"]
    assert len({row["request_id"] for row in settlements}) == TRANSACTIONS
    # Four people, twelve settlements: each person's first created the row at version 1, each later one
    # found it at the version it read and moved it on by one.
    assert {row["person_key"] for row in accumulators} == {row["person_key"] for row in settlements}
    assert len(accumulators) < TRANSACTIONS
    assert sum(row["version"] for row in accumulators) == TRANSACTIONS
    assert all(json.loads(row["caps"])["insurance_inpatient_paid"] == pgbench_scripts.BENCH_CAP for row in accumulators)
