"""Smoke test of the load harness: ``benchmarks/load.py`` end to end, for a few seconds.

The runner is a subprocess (locust and gevent never enter the pytest process). With
DATABASE_URL set it makes, then drops, a database of its own on that server, so the county
never meets the suite's demo data; without it, it starts its own embedded PostgreSQL in a
temporary folder of its own. (Not the session's embedded server: that one lives under
pytest's basetemp, whose permissions another pytest starting on the machine resets to 0700,
which the embedded server's unprivileged user then cannot reach.)

A vendor points the same harness at a deployment it did not start, by URL and a terminal keys
file: the second test starts a gateway of its own, apart from the harness, and runs it so.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import _admin, _with_database
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RAW_ID = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9X](?![0-9A-Za-z])")


# Each run loads for RUN_TIME. Four users in a closed loop make some 350 requests a second here, of them about 20
# reversals and 30 retries a second (the rarest kinds, weighted up below): a machine ten times slower still sees some.
RUN_TIME = "3s"


def test_a_short_load_run_settles_everything_it_acknowledges(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "load.py"),
        *("--users", "4", "--spawn-rate", "4", "--run-time", RUN_TIME),
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


SMALL_COUNTY = ("--people", "300", "--villages", "4", "--townships", "2", "--counties", "1")


def _load_py(*arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MEDSETTLE_")}
    environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load.py"), *arguments],
        cwd=ROOT,
        env={**environment, **variables},
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_the_harness_loads_a_deployment_it_did_not_start_by_url_and_keys_file(
    database_url: str, tmp_path: Path
) -> None:
    name = f"medsettle_deployment_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    deployed = _with_database(database_url, name)
    # The deployment's own secrets: the county is loaded under them, as its gateway reads them.
    secrets_of_deployment = {
        "MEDSETTLE_ID_PEPPER": secrets.token_hex(32),
        "MEDSETTLE_TERMINAL_KEY_KEY": secrets.token_hex(32),
    }
    keys = tmp_path / "county-keys.json"
    gateway = None
    try:
        written = _load_py("--write-keys", str(keys), *SMALL_COUNTY, DATABASE_URL=deployed, **secrets_of_deployment)
        assert written.returncode == 0, written.stdout + written.stderr
        assert keys.stat().st_mode & 0o077 == 0, "the keys file holds signing secrets"
        port = free_port()
        gateway = start_gateway(deployed, port, tmp_path / "gateway", **secrets_of_deployment)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, gateway)
        run = ("--url", url, "--keys", str(keys), "--users", "4", "--spawn-rate", "4", "--run-time", RUN_TIME)
        weights = ("--", "--weight-retry", "10", "--weight-reversal", "5")

        checked = _load_py(*run, "--database-url", deployed, "--out", str(tmp_path / "checked"), *weights)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        summary = json.loads((tmp_path / "checked" / "load-summary.json").read_text(encoding="utf-8"))
        assert summary["passed"] and summary["database_checked"] and summary["url"] == url
        assert summary["failures"] == 0, summary["top_failures"]
        assert summary["acknowledged_settlements"] > 0 and summary["acknowledged_reversals"] > 0
        assert summary["acknowledged_but_missing"] == 0 and summary["invariant_violations"] == []
        assert summary["settlements_in_database"] >= summary["acknowledged_settlements"]

        # Without the database: the same load, the checks skipped and said to be.
        unchecked = _load_py(*run, "--out", str(tmp_path / "unchecked"), *weights)
        assert unchecked.returncode == 0, unchecked.stdout + unchecked.stderr
        summary = json.loads((tmp_path / "unchecked" / "load-summary.json").read_text(encoding="utf-8"))
        assert summary["passed"] and not summary["database_checked"]
        assert summary["failures"] == 0, summary["top_failures"]  # a fresh run: no request id of the first reused
        assert summary["acknowledged_settlements"] > 0 and summary["acknowledged_but_missing"] is None
        assert "checks: skipped" in unchecked.stdout
        assert not RAW_ID.search(checked.stdout + unchecked.stdout)

        assert gateway.poll() is None, "the harness must leave a gateway it did not start running"
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.communicate(timeout=40)
        await _admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
