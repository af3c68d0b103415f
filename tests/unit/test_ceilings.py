"""The report of ``benchmarks/ceilings.py``, without running anything.

A measurement that cannot run on the schema as it is (pgbench's scripts name tables that may
be gone) is skipped with its reason, and does not fail the run.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import ceilings


def arguments(**overrides: Any) -> argparse.Namespace:
    return ceilings.parse_arguments(
        [f"--{name.replace('_', '-')}={value}" for name, value in overrides.items() if value is not None]
    )


def results_with(only: str, **measurements: Any) -> dict[str, Any]:
    """Results as main() gathers them, for a run of ``--only ONLY``."""
    skipped = sorted(set(ceilings.MEASUREMENTS) - set(only.split(",")))
    return {"skipped": skipped, "skip_notes": {}, "failures": {}, **measurements}


def test_a_measurement_that_does_not_fit_the_schema_is_skipped_with_its_reason_not_failed() -> None:
    results = results_with("database")

    def work() -> None:
        raise ceilings.Skipped('pgbench scripts do not match the schema: relation "idempotency_keys" does not exist')

    assert ceilings.phase(results, "database", work) is None
    assert results["failures"] == {}
    assert "database" in results["skipped"]
    assert "pgbench scripts do not match the schema" in results["skip_notes"]["database"]

    figures, targets, all_met = ceilings.build_report(results, arguments(only="database"))
    row = next(row for row in figures if row[0].startswith("DB ceiling"))
    assert row[1] == "skipped"
    assert "pgbench scripts do not match the schema" in row[2]
    assert next(row for row in targets if row[0].startswith("gateway / DB ceiling"))[3] == "n/a"
    assert all_met
