"""The settle-path benchmark's own code paths (benchmarks/readjudication_settle_bench.py), tiny: both modes
settle, the runner works the list only in its windows and stops without leaving a transaction open, and the
ledger holds after it. Speed is never asserted here: the benchmark measures it on 10,000 person-years.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import pytest

from benchmarks import readjudication_settle_bench as bench
from benchmarks import replay_bench
from tests.integration.conftest import empty_database

pytestmark = pytest.mark.integration

PEOPLE = 20


@pytest.fixture
async def history_url(database_url: str) -> AsyncIterator[str]:
    """A database of its own: the benchmark's county would share national IDs with the demo county's people."""
    async with empty_database(database_url, "medsettle_settle_bench") as url:
        yield url


async def test_both_modes_settle_and_the_runner_works_only_in_its_windows(history_url: str) -> None:
    settlements = PEOPLE * bench.SETTLEMENTS_PER_PERSON
    await replay_bench.build_history(history_url, settlements, 1, catalogue=replay_bench.SAMPLE_CATALOGUE)
    # Two-second windows: a loaded machine can lose a second, and each window must see work done in it.
    args = argparse.Namespace(rate=20.0, pairs=1, window_seconds=2.0, warm_up=0.2, seed=1)
    result = await bench.side_by_side(history_url, PEOPLE, args)
    off, on = bench.figures(result["windows"], False), bench.figures(result["windows"], True)
    assert [window.runner for window in result["windows"]] == [False, True]
    assert off["settled"] > 0 and on["settled"] > 0
    assert off["person_years"] == 0 < on["person_years"] <= result["queued"]
    assert result["stuck"] == 0 and result["violations"] == []
