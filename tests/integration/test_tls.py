"""``medsettle serve`` answering over TLS itself, for a county on one machine with no proxy in front.

The certificate is made here (self-signed, for 127.0.0.1), handed to the gateway through
MEDSETTLE_TLS_CERT_FILE and MEDSETTLE_TLS_KEY_FILE, and trusted by the test's client alone.
"""

from __future__ import annotations

import signal
import ssl

import aiohttp
import pytest

from adapters.terminal_client import TerminalClient
from tests.certificates import self_signed
from tests.integration.conftest import bill, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration


async def test_gateway_serves_tls_itself_and_settles_over_https(client, database_url, tmp_path):
    person = await register(client, ("insurance", "resident"))
    cert_file, key_file = self_signed(tmp_path)
    port = free_port()
    process = start_gateway(
        database_url, port, tmp_path, MEDSETTLE_TLS_CERT_FILE=str(cert_file), MEDSETTLE_TLS_KEY_FILE=str(key_file)
    )
    base = f"https://127.0.0.1:{port}"
    trusting = ssl.create_default_context(cafile=str(cert_file))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session:
            await wait_ready(session, base, process)
            key = client.by_terminal["term-C001"]
            async with TerminalClient(base, key.key_id, key.secret, session=session) as terminal:
                reply = await terminal.settle(bill(person, ("A", 10_000), visit_type="outpatient"))
            assert reply.status == 201, reply.body
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
        # A client that does not trust the certificate is stopped by TLS, and plain HTTP gets no answer.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{base}/healthz")
            with pytest.raises(aiohttp.ClientError):
                await session.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
