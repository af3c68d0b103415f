"""The real ``medsettle serve`` process: start-up, one JSON log line per request, no raw IDs, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from adapters.terminal_client import TerminalClient
from tests.integration.conftest import KEY_ENCRYPTION_KEY, PEPPER, bill, fresh_national_id, register

pytestmark = pytest.mark.integration

ID_PATTERN = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")  # as identity._LOOKS_LIKE_ID


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_logs_requests_without_national_ids_and_stops_cleanly(client, database_url, tmp_path):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    port = _free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDSETTLE_ID_PEPPER": PEPPER.decode(),
        "MEDSETTLE_TERMINAL_KEY_KEY": KEY_ENCRYPTION_KEY.hex(),
        "MEDSETTLE_PORT": str(port),
        "MEDSETTLE_READER_PORT": "0",  # not 8081, which a running `make run` may hold; test_card_reader covers it
        "MEDSETTLE_LOG_FORMAT": "json",
        "MEDSETTLE_DATA_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    sent_ids = [person, fresh_national_id(), person[:17] + ("0" if person[17] != "0" else "1")]
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "gateway did not become ready in 30 s"
                assert process.poll() is None, process.communicate()
                await asyncio.sleep(0.2)
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
