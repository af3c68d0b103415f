"""Smoke test of the load target beside the insurer (benchmarks/insurer_bench.py): a few seconds, end to end.

The benchmark starts its own simulator and gateway processes, on a database of its own (a new one on
DATABASE_URL's server, or an embedded server in a temporary folder), so it runs as a subprocess here. Speed
is never asserted: what is checked is that both sides were measured, nothing failed, and the checks that
make the figures mean something held (every message finished, the insurer and the gateway agreeing on every
settlement, the ledger's invariants).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RAW_ID = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9X](?![0-9A-Za-z])")


def test_a_short_run_measures_both_sides_and_the_books_agree(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "insurer_bench.py"),
        *("--terminals", "4", "--seconds", "2", "--rounds", "2", "--warmup", "0.5", "--people", "300"),
        *("--out", str(tmp_path), "--json"),
    ]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MEDSETTLE_")}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: the target missed, 2: a failure

    figures = json.loads(result.stdout)
    assert figures["checks_pass"], figures["checks"]
    checks = figures["checks"]
    assert checks["open_messages"] == checks["only_here"] == checks["only_at_the_insurer"] == 0
    assert checks["amounts_differ"] == 0 and checks["invariant_violations"] == []
    assert checks["booked_here"] == checks["in_force_at_the_insurer"] >= checks["acknowledged_201"] > 0
    for side in ("simulator", "gateway"):
        measured = figures["sides"][side]
        assert measured["requests"] > 0 and measured["errors"] == 0, (side, measured["error_kinds"])
        assert len(measured["rounds"]) == 2
        assert measured["p50_ms"] <= measured["p99_ms"] <= measured["max_ms"]
    target = figures["target"]
    assert target["difference_ms"] == pytest.approx(target["gateway_p99_ms"] - target["simulator_p99_ms"])
    assert len(target["difference_by_round_ms"]) == 2
    assert target["met"] == (target["median_round_difference_ms"] <= target["margin_ms"]) == (result.returncode == 0)

    # The county's people have real-shaped national IDs: none may reach the output or the processes' logs.
    logs = "".join(path.read_text(encoding="utf-8", errors="replace") for path in tmp_path.glob("insurer-*.log"))
    assert not RAW_ID.search(result.stdout + result.stderr + logs)
