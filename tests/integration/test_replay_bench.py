"""The what-if benchmark's own code paths on a few hundred settlements (benchmarks/replay_bench.py): the year
it builds holds what the settle path would have written (``medsettle check`` finds nothing), and replaying it
under the policy it was settled with changes nothing, while the candidate changes what it should.

Speed is never asserted here: the benchmark measures it on a million settlements.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from adapters.check import check_invariants
from benchmarks import replay_bench
from tests.integration.conftest import empty_database

pytestmark = pytest.mark.integration

SETTLEMENTS = 300


@pytest.fixture
async def history_url(database_url: str) -> AsyncIterator[str]:
    """A database of its own: the benchmark's county would share national IDs with the demo county's people."""
    async with empty_database(database_url, "medsettle_replay") as url:
        yield url


def fund(group: dict[str, Any], code: str) -> dict[str, Any]:
    return next(impact for impact in [*group["funds"], group["out_of_pocket"]] if impact["fund"] == code)


async def test_the_built_year_replays_under_its_own_policy_to_no_difference(history_url: str) -> None:
    built = await replay_bench.build_history(history_url, SETTLEMENTS, 1, catalogue=replay_bench.SAMPLE_CATALOGUE)
    assert built.settlements + sum(built.refused.values()) == SETTLEMENTS
    assert built.settlements > 0 and built.catalogue_items > 0
    connection = await asyncpg.connect(history_url)
    try:
        stored = await connection.fetchval("SELECT count(*) FROM settlements")
        person_years = await connection.fetchval("SELECT count(*) FROM accumulators")
        assert await check_invariants(connection) == []  # counters = ledger = the records, as medsettle check runs
    finally:
        await connection.close()
    assert (stored, person_years) == (built.settlements, built.person_years)

    runs = await replay_bench.replay_runs(history_url)

    window, year = runs["window"], runs["year"]
    assert 0 < window["replayed"] < year["replayed"] == year["settlements"] == stored
    assert window["differences"] == [] and year["differences"] == []
    total = year["report"]["total"]
    assert (total["better_off"], total["worse_off"], total["unchanged"]) == (0, 0, total["people"])
    assert fund(total, "insurance")["today"] > 0

    # The candidate pays county admissions at 0.80 instead of 0.75: insurance pays more there and the patients
    # less. (Other levels can move too, through the year's counters: a person's aid cap or threshold reached
    # earlier or later by a county admission changes their later bills.)
    candidate = runs["candidate"]["report"]
    county = next(group for group in candidate["groups"] if group["group"] == "county")
    assert fund(county, "insurance")["difference"] > 0
    assert fund(county, "out_of_pocket")["difference"] < 0
    assert candidate["total"]["better_off"] > 0
