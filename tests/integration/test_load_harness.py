"""Smoke test of the load harness: ``benchmarks/load.py`` end to end, for a few seconds.

The runner is a subprocess (locust and gevent never enter the pytest process). With
DATABASE_URL set it makes, then drops, a database of its own on that server, so the county
never meets the suite's demo data; without it, it starts its own embedded PostgreSQL in a
temporary folder of its own. (Not the session's embedded server: that one lives under
pytest's basetemp, whose permissions another pytest starting on the machine resets to 0700,
which the embedded server's unprivileged user then cannot reach.)
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


def test_a_short_load_run_settles_everything_it_acknowledges(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "load.py"),
        *("--users", "4", "--spawn-rate", "4", "--run-time", "5s"),
        *("--people", "300", "--villages", "4", "--townships", "2", "--counties", "1"),
        *("--out", str(tmp_path)),
        # Locust arguments: enough retries and reversals that a few seconds surely include some.
        *("--", "--weight-retry", "10", "--weight-reversal", "5"),
    ]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MEDSETTLE_")}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output

    summary = json.loads((tmp_path / "load-summary.json").read_text(encoding="utf-8"))
    assert summary["passed"], summary["problems"]
    assert summary["requests"] > 0
    assert summary["failures"] == 0, summary["top_failures"]
    for request_type in ("settle", "eligibility", "quote", "settle retry", "reversal"):
        assert summary["by_type"][request_type]["requests"] > 0, request_type
    assert summary["invariant_violations"] == []
    assert summary["acknowledged_settlements"] > 0
    assert summary["acknowledged_reversals"] > 0
    assert summary["acknowledged_but_missing"] == 0
    assert summary["settlements_in_database"] >= summary["acknowledged_settlements"]
    assert "PASS" in result.stdout
    for path in (tmp_path / "load_stats.csv", tmp_path / "load_failures.csv", tmp_path / "load_stats_history.csv"):
        assert path.stat().st_size > 0, path

    # The county's people have real-shaped national IDs: none may reach the output or the logs.
    logs = output + "".join(
        (tmp_path / name).read_text(encoding="utf-8", errors="replace")
        for name in ("load-gateway.log", "load-locust.log")
    )
    assert not RAW_ID.search(logs)
