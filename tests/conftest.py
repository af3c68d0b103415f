"""Fixtures shared by every test folder, and one seed that drives every random choice of a run.

The run seed is chosen once per run: ``--hypothesis-seed=N`` if given, else
``MEDSETTLE_TEST_SEED=N``, else a fresh random one. It is printed in the header and
again after the summary (``run seed: N``), and beside every failing test. From it:

* every Hypothesis test draws its examples (Hypothesis's own seed is the run seed, and
  with a forced seed it neither reads nor writes its example database);
* the ``rng`` fixture gives each test a ``random.Random`` seeded from the run seed and
  the test's node id, so a test draws the same values whether it runs alone or in the
  whole suite, and whatever ran before it;
* the ``random`` module is seeded the same way before each test, for code that draws
  from it (a terminal client's retry jitter).

To replay a run, or one test of it, pass the printed seed::

    MEDSETTLE_TEST_SEED=N make test
    MEDSETTLE_TEST_SEED=N .venv/bin/python -m pytest 'tests/integration/test_x.py::test_y[param]'
    make test PYTEST_ARGS=--hypothesis-seed=N          (the same thing; wins over the variable)

What a seed cannot replay is timing: which requests a crash or a deadline catches in
flight still depends on the machine. Every ``settings`` made in tests inherits
``print_blob=True``, so a failing Hypothesis test also prints ``@reproduce_failure(...)``
for its one example.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Generator, Iterator

import hypothesis
import pytest
from hypothesis import core as hypothesis_core

from gateway.service import china_today

# Before any test module builds its settings: they inherit these values.
hypothesis.settings.register_profile("medsettle", print_blob=True)
hypothesis.settings.load_profile("medsettle")

SEED_VARIABLE = "MEDSETTLE_TEST_SEED"
_run_seed = pytest.StashKey[int | str]()


def derived_seed(run_seed: int | str, *labels: str) -> int:
    """A 64-bit seed from the run seed and labels (a node id), the same in every process and run."""
    text = ":".join([str(run_seed), *labels])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def run_seed_of(config: pytest.Config) -> int | str:
    return config.stash[_run_seed]


def _replay_hint(seed: int | str) -> str:
    return f"run seed: {seed} (replay with {SEED_VARIABLE}={seed} or --hypothesis-seed={seed})"


def pytest_configure(config: pytest.Config) -> None:
    """Choose the run seed once, before any test runs, and hand it to Hypothesis."""
    seed: int | str | None = config.getoption("hypothesis_seed", None)
    if seed is None:
        seed = os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32)
    if isinstance(seed, str) and seed.strip().lstrip("-").isdigit():
        seed = int(seed)  # else text: Hypothesis takes any text as a seed, and so does derived_seed
    config.stash[_run_seed] = seed
    hypothesis_core.global_force_seed = seed
    # `make test` runs the suite in worker processes (pytest-xdist): they start after this and inherit the
    # variable, so every worker draws from this seed, and collects the same tests.
    os.environ[SEED_VARIABLE] = str(seed)


def pytest_report_header(config: pytest.Config) -> str:
    return _replay_hint(run_seed_of(config))


@pytest.fixture(scope="session")
def run_seed(pytestconfig: pytest.Config) -> int | str:
    """The run's seed, for a test that must hand it on (to a subprocess, for example)."""
    return run_seed_of(pytestconfig)


@pytest.fixture(autouse=True)
def _seeded_random_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """The ``random`` module seeded from the run seed and this test, its state restored afterwards."""
    state = random.getstate()
    random.seed(derived_seed(run_seed_of(request.config), request.node.nodeid, "random"))
    yield
    random.setstate(state)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source for tests that draw schedules, inputs or fault moments.

    Seeded from the run seed and the test's node id: running this test alone with the
    run's seed draws exactly what it drew in the whole run.
    """
    seed = run_seed_of(request.config)
    print(f"\n{request.node.nodeid}: {SEED_VARIABLE}={seed}")
    request.node.user_properties.append(("seed", seed))
    return random.Random(derived_seed(seed, request.node.nodeid))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test that fails while the date in China changes under it is skipped instead, saying so.

    The gateway books by the date in China (UTC+8: midnight is 16:00 UTC), and tests that settle and then
    read today's statement, export or month read "today" after their writes: one that straddles midnight
    reads a day its writes are not in. Only a failure becomes a skip, and only when the date changed
    between the test's start and its end, a window of a second or so in a day.
    """
    day = china_today()
    try:
        return (yield)
    except (Exception, pytest.fail.Exception):
        if china_today() != day:
            pytest.skip(f"the date in China changed during the test ({day} to {china_today()}); run it again")
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.failed:
        seed = run_seed_of(item.config)
        report.sections.append(("run seed", f"replay with {SEED_VARIABLE}={seed} pytest '{item.nodeid}'"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The seed again at the end, where ``-q`` (which drops the header) still shows it."""
    terminalreporter.write_line(_replay_hint(run_seed_of(config)))
