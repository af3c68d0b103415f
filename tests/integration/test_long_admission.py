"""A long county admission settles whole, and a bill past the line limit costs the gateway next to nothing.

A two-week admission at a county hospital is itemised day by day: drugs, nursing, tests and bed
days run to a couple of thousand lines. The gateway takes 2,000 (``MEDSETTLE_MAX_LINES``) and
refuses the 2,001st line's bill with 413 ``too_many_lines`` before it decodes any line. How cheap
that refusal is is measured on a real ``medsettle serve`` by its own CPU time (from /proc), against
what settling a bill at the limit costs the same process, so the comparison holds on a fast machine
and a slow one alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters import signing
from gateway.config import Settings
from tests.integration.conftest import SignedClient, bill, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration

LINE_LIMIT = Settings().max_lines
# Bills sent to measure CPU time: enough that /proc's 10 ms clock ticks are a small part of each figure.
SETTLEMENTS = 10
REFUSALS = 100


def long_admission(person: str, lines: int, request_id: str) -> dict[str, Any]:
    """An inpatient bill of ``lines`` lines billed by quantity, in all three categories."""
    body = bill(person, request_id=request_id)
    body["items"] = [
        {
            "code": f"ITEM-{index % 300:04d}",
            "name": f"第{index // 150 + 1}天 项目{index}",
            "category": "ABC"[index % 3],
            "quantity": 1 + index % 4,
            "unit_price": 250 + index % 50,
            "amount": (1 + index % 4) * (250 + index % 50),
        }
        for index in range(lines)
    ]
    return body


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc; clock ticks of 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post(session: aiohttp.ClientSession, base: str, key: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/settlements", body)
    headers["Content-Type"] = "application/json"
    async with session.post(f"{base}/v1/settlements", data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads a process's CPU time from Linux /proc")
async def test_a_long_admission_settles_and_a_longer_bill_is_refused_for_a_sliver_of_its_cost(
    client: SignedClient, database_url: str, tmp_path: Path
) -> None:
    assert LINE_LIMIT == 2_000
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    at_limit = [long_admission(person, LINE_LIMIT, f"admission-{person}-{number}") for number in range(SETTLEMENTS)]
    over_limit = msgspec.json.encode(long_admission(person, LINE_LIMIT + 1, f"over-{person}"))
    key = client.by_terminal["term-C001"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_gateway(database_url, port, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, process)
            status, _ = await post(session, base, key, over_limit)  # warm: the line counter's decoder is made
            assert status == 413

            before = cpu_seconds(process.pid)
            for admission in at_limit:
                status, settled = await post(session, base, key, msgspec.json.encode(admission))
                assert status == 201, settled
                assert len(settled["lines"]) == LINE_LIMIT
                assert settled["total"] == sum(item["amount"] for item in admission["items"])
                paid = sum(payer["amount"] for payer in settled["payers"])
                assert paid > 0 and paid + settled["out_of_pocket"] == settled["total"]
            settle_cpu = (cpu_seconds(process.pid) - before) / SETTLEMENTS

            before = cpu_seconds(process.pid)
            for _ in range(REFUSALS):
                status, problem = await post(session, base, key, over_limit)
                assert (status, problem["code"], problem["field"]) == (413, "too_many_lines", "items")
            refusal_cpu = (cpu_seconds(process.pid) - before) / REFUSALS
    finally:
        process.terminate()
        process.communicate(timeout=30)
    print(f"gateway CPU: {settle_cpu * 1000:.1f} ms to settle {LINE_LIMIT} lines, ", end="")
    print(f"{refusal_cpu * 1000:.2f} ms to refuse {LINE_LIMIT + 1} ({len(over_limit)} bytes of JSON)")
    # The refusal reads the body and counts the lines, no more: a small part of settling the bill. (About a
    # ninth on this project's 2-core VM since the chain engine's speed-ups; a fifth leaves room for noise.)
    assert refusal_cpu < settle_cpu / 5, (refusal_cpu, settle_cpu)
