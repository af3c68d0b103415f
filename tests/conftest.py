"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded random source for tests that draw random schedules, inputs or fault moments.

    The seed is printed (pytest shows it with the output of a failing test) and recorded
    in the test's report; ``MEDSETTLE_TEST_SEED=<seed>`` replays the same schedule.
    """
    seed = int(os.environ.get("MEDSETTLE_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\n{request.node.nodeid}: MEDSETTLE_TEST_SEED={seed}")
    request.node.user_properties.append(("seed", seed))
    return random.Random(seed)
