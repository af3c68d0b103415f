"""A database that stored the default policy in its old form starts with the chain form.

The default policy was restated as a chain with the same meaning (tests/property/
test_chain_matches_engine.py). A gateway refuses a policy id whose stored document differs from the
file, so without the restatement every existing database would refuse to start after the upgrade.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
import msgspec
import pytest

from adapters.policy_files import load_policy_file
from adapters.store import RESTATED, Store
from settlement.chain import policy_document
from settlement.policy import parse_policy

REPO = Path(__file__).resolve().parents[2]
ENCODER = msgspec.json.Encoder()
LEGACY = parse_policy(
    (REPO / "tests/fixtures/legacy-default-2026.toml").read_text(encoding="utf-8"), "legacy-default-2026.toml"
)
CHAIN = load_policy_file(REPO / "policies" / "default.toml")


async def stored_document(pool: asyncpg.Pool) -> str:
    return await pool.fetchval("SELECT document FROM policy_versions WHERE policy_id = 'default-2026'")


async def test_the_old_form_of_the_default_policy_is_restated_and_audited(pool: asyncpg.Pool) -> None:
    new_document = policy_document(CHAIN)
    store = Store(pool)
    await store.sync_policies([(CHAIN, "policies", new_document)])  # the row exists, as in any database
    await pool.execute(
        "UPDATE policy_versions SET document = $1 WHERE policy_id = 'default-2026'", ENCODER.encode(LEGACY).decode()
    )
    audits_before = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'policy.restated'")

    await store.sync_policies([(CHAIN, "policies", new_document)])

    assert await stored_document(pool) == new_document
    audits = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'policy.restated'")
    assert audits == audits_before + 1


async def test_any_other_stored_text_under_the_id_is_still_refused(pool: asyncpg.Pool) -> None:
    new_document = policy_document(CHAIN)
    store = Store(pool)
    await store.sync_policies([(CHAIN, "policies", new_document)])
    edited = ENCODER.encode(LEGACY).decode().replace('"outpatient_cap":300000', '"outpatient_cap":300001')
    assert edited != ENCODER.encode(LEGACY).decode()
    await pool.execute("UPDATE policy_versions SET document = $1 WHERE policy_id = 'default-2026'", edited)
    try:
        with pytest.raises(RuntimeError, match="differs from the version already stored"):
            await store.sync_policies([(CHAIN, "policies", new_document)])
    finally:
        await pool.execute("UPDATE policy_versions SET document = $1 WHERE policy_id = 'default-2026'", new_document)


def test_the_restatement_names_the_shipped_default_policy() -> None:
    # A change to the chain's engine form changes the stored document of every policy: databases that
    # stored the previous form would refuse to start. Record the previous form as a restatement too.
    before, after = RESTATED["default-2026"]
    assert hashlib.sha256(ENCODER.encode(LEGACY)).hexdigest() == before
    assert hashlib.sha256(policy_document(CHAIN).encode()).hexdigest() == after


async def test_a_second_version_on_a_stored_versions_day_is_refused_with_what_to_do(pool: asyncpg.Pool) -> None:
    # The three-tier example takes effect on the default policy's day: one database serves one of them.
    three_tier = load_policy_file(REPO / "policies/examples/three-tier/three-tier-2026.toml")
    with pytest.raises(RuntimeError, match="takes effect on 2026-01-01, the day this database's policy default-2026"):
        await Store(pool).sync_policies([(three_tier, "three-tier", policy_document(three_tier))])
    assert await pool.fetchval("SELECT count(*) FROM policy_versions WHERE policy_id = 'three-tier-2026'") == 0
