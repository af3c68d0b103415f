"""The real ``medsettle serve`` process: start-up, one JSON log line per request, no raw IDs, clean SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import aiohttp
import pytest

from adapters.terminal_client import TerminalClient
from tests.integration.conftest import bill, fresh_national_id, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration

ID_PATTERN = re.compile(r"[0-9]{17}")  # as identity._LOOKS_LIKE_ID masks: any run that may hold an ID


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
