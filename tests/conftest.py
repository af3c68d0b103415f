"""Fixtures shared by every test folder, and one seed for every random test of a run.

Hypothesis tests all draw from one seed per run, printed in the header
(``hypothesis seed: N``) and attached to every failing Hypothesis test's report.
``--hypothesis-seed=N`` (or ``MEDSETTLE_TEST_SEED=N``, which also replays the ``rng``
fixture's draws) runs the same examples again. Every ``settings`` made in tests inherits
``print_blob=True``, so a failure also prints ``@reproduce_failure(...)`` for that one example.
"""

from __future__ import annotations

import os
import random

import hypothesis
import pytest
from hypothesis import core as hypothesis_core

# Before any test module builds its settings: they inherit these values.
hypothesis.settings.register_profile("medsettle", print_blob=True)
hypothesis.settings.load_profile("medsettle")


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


def pytest_configure(config: pytest.Config) -> None:
    """Choose the run's Hypothesis seed unless ``--hypothesis-seed`` did."""
    seed = config.getoption("hypothesis_seed", None)
    if seed is None:
        seed = int(os.environ.get("MEDSETTLE_TEST_SEED") or random.SystemRandom().randrange(2**32))
    hypothesis_core.global_force_seed = int(seed)


def pytest_report_header(config: pytest.Config) -> str:
    seed = hypothesis_core.global_force_seed
    return f"hypothesis seed: {seed} (replay with --hypothesis-seed={seed} or MEDSETTLE_TEST_SEED={seed})"


_ran_hypothesis = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if call.when == "call" and hypothesis.is_hypothesis_test(getattr(item, "obj", None)):
        item.config.stash[_ran_hypothesis] = True
        if report.failed:
            seed = hypothesis_core.global_force_seed
            report.sections.append(("hypothesis seed", f"replay with --hypothesis-seed={seed}"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The seed again at the end, where ``-q`` (which drops the header) still shows it."""
    if config.stash.get(_ran_hypothesis, False):
        terminalreporter.write_line(pytest_report_header(config))
