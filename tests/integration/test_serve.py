"""The real ``medsettle serve`` process: start-up, one JSON log line per request, no raw IDs, clean SIGTERM;
and ``serve --demo --insurer-sim`` (``make run-insurer``), the demo county beside the simulated insurer."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from adapters.terminal_client import TerminalClient
from gateway.insurer import visit_of
from tests.integration.conftest import _admin, _with_database, bill, fresh_national_id, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration

ID_PATTERN = re.compile(r"[0-9]{17}")  # as identity._LOOKS_LIKE_ID masks: any run that may hold an ID
REPO = Path(__file__).resolve().parents[2]


async def test_serve_logs_requests_without_national_ids_and_stops_cleanly(client, database_url, tmp_path):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    port = free_port()
    process = start_gateway(
        database_url,
        port,
        tmp_path,
        stdout=subprocess.PIPE,
        MEDSETTLE_LOG_FORMAT="json",
        MEDSETTLE_LOG_LEVEL="info",
    )
    base = f"http://127.0.0.1:{port}"
    sent_ids = [person, fresh_national_id(), person[:17] + ("0" if person[17] != "0" else "1")]
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, process)
            key = client.by_terminal["term-C001"]
            statuses = []
            async with TerminalClient(base, key.key_id, key.secret, session=session) as terminal:
                for national_id in sent_ids:
                    reply = await terminal.settle(bill(national_id, ("A", 10_000), visit_type="outpatient"))
                    statuses.append(reply.status)
                reply = await terminal.request("POST", "/v1/settlements", {"note": person})
                statuses.append(reply.status)
        assert statuses == [201, 422, 422, 422]
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    output = stdout + stderr
    for national_id in sent_ids:
        assert national_id not in output
    assert not ID_PATTERN.search(stderr), "something shaped like a national ID reached the log"
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 4
    assert {line["route"] for line in requests} == {"/v1/settlements"}
    assert all({"request_id", "status", "duration_ms", "clinic"} <= line.keys() for line in requests)
    assert [line["status"] for line in requests] == [201, 422, 422, 422]
    # Each line names the bill it was about, and the settlement once there is one.
    assert all(line["bill_request_id"] for line in requests[:3])
    assert requests[0]["settlement_id"] and all(line["settlement_id"] is None for line in requests[1:])


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A database of its own: the beside-the-insurer policy cannot share one with the default demo's policy
    (a database holds one policy version per effective date)."""
    name = f"medsettle_serve_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(database_url, name)
    finally:
        await _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')


def _simulator_urls(stdout: IO[str] | None) -> tuple[str, str]:
    """The simulator's URL and its control URL, as the banner prints them (read up to the banner's end)."""
    pattern = re.compile(r"insurer simulator in this process on (\S+) \(MEDSETTLE_INSURER_URL\), control (\S+)")
    assert stdout is not None
    for _ in range(100):
        line = stdout.readline()
        found = pattern.search(line)
        if found:
            return found[1], found[2]
        assert line, "the gateway stopped before printing the simulator's address"
    raise AssertionError("no simulator address in the first 100 lines of the banner")


async def test_serve_insurer_sim_settles_the_demo_county_through_the_simulator(
    empty_database: str, tmp_path: Path
) -> None:
    port = free_port()
    # As `make run-insurer` runs it: no data folder named, so it takes .data-insurer below where it starts.
    process = start_gateway(
        empty_database, port, None, cwd=tmp_path, stdout=subprocess.PIPE, extra_args=["--demo", "--insurer-sim"]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        insurer_url, control_url = await asyncio.wait_for(asyncio.to_thread(_simulator_urls, process.stdout), 90)
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, process, timeout=90)
            async with session.get(f"{base}/readyz") as response:
                assert await response.json() == {"status": "ready", "insurer": "closed"}
            keys = json.loads((tmp_path / ".data-insurer" / "terminal-keys.json").read_text(encoding="utf-8"))
            assert not (tmp_path / ".data").exists(), "the default demo's data folder was touched"
            sample = json.loads((REPO / "samples" / "bill-worked-example.json").read_text(encoding="utf-8"))
            key = keys["term-C001"]
            async with TerminalClient(base, key["key_id"], key["secret"], session=session) as terminal:
                reply = await terminal.settle(sample)
            assert reply.status == 201, reply.body
            async with session.get(f"{control_url}/sim/state") as response:
                state = await response.json()
            async with session.get(f"{base}/readyz") as response:
                assert await response.json() == {"status": "ready", "insurer": "closed"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert insurer_url.startswith("http://127.0.0.1:")

    # The insurer's funds were paid by the simulator, over HTTP, and booked as it answered; the county's own
    # funds were settled here on what it left.
    answer = reply.body
    payers = {payer["fund"]: payer for payer in answer["payers"]}
    assert [fund for fund, payer in payers.items() if payer["trace"]["remote"]] == ["insurance", "critical_illness"]
    assert sum(payer["amount"] for payer in payers.values()) + answer["out_of_pocket"] == answer["total"]
    (theirs,) = state["settlements"]
    assert theirs["state"] == "settled" and theirs["mdtrt_id"] == visit_of("term-C001", sample["request_id"])
    assert theirs["paid_by_fund_type"] == {
        "390100": payers["insurance"]["amount"],
        "390200": payers["critical_illness"]["amount"],
    }
    assert payers["insurance"]["amount"] > 0 and payers["hardship_aid"]["amount"] > 0
    assert state["calls"]["2304"] == 1
