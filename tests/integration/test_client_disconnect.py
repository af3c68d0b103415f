"""A terminal that hangs up mid-request is the terminal's network, not a database outage.

Runs against a real ``medsettle serve`` process: aiohttp's test server cancels a handler
whose client went away, while the production server lets it run into the reset.
"""

from __future__ import annotations

import asyncio
import re
import signal

import aiohttp
import pytest

from adapters import signing
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration


def _count(metrics: str, code: str) -> float:
    found = re.search(rf'^medsettle_errors_total\{{code="{code}"\}} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_client_hanging_up_mid_body_is_not_counted_as_a_database_outage(client, database_url, tmp_path):
    # Signed with a live key: the gateway checks the headers first and reads the body only then.
    key = client.by_terminal["term-C001"]
    announced = b" " * 5000
    signed = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/settlements", announced)
    head = "".join(f"{name}: {value}\r\n" for name, value in signed.items()).encode()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_gateway(database_url, port, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, process)
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000\r\n" + head + b"\r\n" + b'{"request_id": "hang-up", "items": ['
            )
            await writer.drain()
            await asyncio.sleep(0.2)  # the gateway is now waiting for the rest of the body
            writer.close()
            await writer.wait_closed()
            metrics = ""
            for _ in range(50):  # bounded: up to 5 s for the handler to notice
                async with session.get(f"{base}/metrics") as response:
                    metrics = await response.text()
                if _count(metrics, "client_disconnected"):
                    break
                await asyncio.sleep(0.1)
        assert _count(metrics, "client_disconnected") == 1
        assert _count(metrics, "database_unavailable") == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
