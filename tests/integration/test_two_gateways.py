"""Two gateway processes on one PostgreSQL: the races and the duplicate storm hold across them.

Requests alternate between the two processes, so nothing in one process's memory
can be what keeps the caps or the one-settlement-per-request rule: only the
database's row locks and keys can.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters import identity
from adapters.check import check_invariants
from adapters.terminal_client import TerminalClient
from tests.integration.conftest import PEPPER, bill, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def gateways(database_url, tmp_path_factory) -> AsyncIterator[list[str]]:
    processes, bases = [], []
    for index in range(2):
        port = free_port()
        processes.append(start_gateway(database_url, port, tmp_path_factory.mktemp(f"gateway{index}")))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            for base, process in zip(bases, processes, strict=True):
                await wait_ready(session, base, process)
        yield bases
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, stderr


async def _terminals(client, bases: list[str], session: aiohttp.ClientSession) -> list[TerminalClient]:
    key = client.by_terminal["term-T001"]
    return [TerminalClient(base, key.key_id, key.secret, session=session) for base in bases]


async def test_caps_hold_with_requests_alternating_between_two_gateways(client, pool, gateways):
    person = await register(
        client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"), ("hardship_aid", "destitute")
    )
    async with aiohttp.ClientSession() as session:
        terminals = await _terminals(client, gateways, session)
        replies = await asyncio.gather(
            *(terminals[n % 2].settle(bill(person, ("A", 5_000_000), clinic_id="T001")) for n in range(50))
        )
    assert [reply.status for reply in replies] == [201] * 50, [reply.body for reply in replies if reply.status != 201]
    # The same three caps as the one-process race test, reached exactly and never passed.
    assert sum(reply.body["insurance"] for reply in replies) == 20_000_000
    assert sum(reply.body["veteran_subsidy"] for reply in replies) == 1_000_000
    assert sum(reply.body["hardship_aid"] for reply in replies) == 6_000_000
    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []


async def test_duplicate_storm_across_two_gateways_settles_once(client, pool, gateways):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    body = bill(person, ("A", 600_000), ("B", 90_000), clinic_id="T001")
    async with aiohttp.ClientSession() as session:
        terminals = await _terminals(client, gateways, session)
        replies = await asyncio.gather(*(terminals[n % 2].settle(body) for n in range(100)))
    statuses = sorted(reply.status for reply in replies)
    assert statuses.count(201) == 1 and statuses.count(200) == 99, statuses
    assert len({reply.body["settlement_id"] for reply in replies}) == 1
    async with pool.acquire() as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM settlements WHERE terminal_id = 'term-T001' AND request_id = $1", body["request_id"]
        )
        assert count == 1
        assert await check_invariants(connection) == []


async def test_a_back_dated_registry_change_re_adjudicates_while_bills_settle_on_both_gateways(client, pool, gateways):
    """While 40 new bills of one person settle on two gateway processes, a registry change grants aid from
    1 January: the person-year is re-adjudicated by whichever process takes it, under the same row lock the
    settlements take. Nothing is lost or counted twice: every bill is stored once, the cause adjusts once,
    the bills settled before the change get their aid, and counters equal the ledger with the adjustments."""
    person = await register(client, ("insurance", "resident"))
    earlier = [bill(person, ("A", 400_000), clinic_id="T001", service_date=f"2026-02-{day:02d}") for day in (2, 9, 16)]
    later = [bill(person, ("A", 300_000), clinic_id="T001", service_date="2026-06-01") for _ in range(40)]
    async with aiohttp.ClientSession() as session:
        terminals = await _terminals(client, gateways, session)
        first = [await terminals[0].settle(body) for body in earlier]
        assert [reply.status for reply in first] == [201] * 3 and all(r.body["hardship_aid"] == 0 for r in first)

        async def grant() -> int:
            await asyncio.sleep(0.05)  # among the bills, not before them all
            response = await client.post(
                "/v1/people",
                json={
                    "person_id": person,
                    "memberships": [
                        {"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"},
                        {"programme": "hardship_aid", "code": "minimum_allowance", "effective_from": "2026-01-01"},
                    ],
                },
                headers={"X-Terminal-Id": "admin-1"},
            )
            return response.status

        *replies, granted = await asyncio.gather(
            *(terminals[n % 2].settle(body) for n, body in enumerate(later)), grant()
        )
    assert granted == 200
    assert [reply.status for reply in replies] == [201] * 40, [r.body for r in replies if r.status != 201]
    key = identity.person_key(person, PEPPER)
    deadline = asyncio.get_running_loop().time() + 60
    while await pool.fetchval("SELECT count(*) FROM readjudications WHERE person_key = $1 AND status = 'pending'", key):
        assert asyncio.get_running_loop().time() < deadline, "re-adjudication did not finish within 60 s"
        await asyncio.sleep(0.1)
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM settlements WHERE person_key = $1", key) == 43
        causes = await connection.fetch("SELECT cause_kind, status FROM readjudications WHERE person_key = $1", key)
        assert [(row["cause_kind"], row["status"]) for row in causes] == [("registry", "done")]
        # The bills settled before the change now pay aid, each adjusted once.
        adjusted = await connection.fetch(
            """SELECT s.settlement_id, count(a.*) AS times, coalesce(sum(a.hardship_aid), 0) AS aid
               FROM settlements s LEFT JOIN adjustments a USING (person_key, settlement_id)
               WHERE s.person_key = $1 AND s.service_date < '2026-03-01' GROUP BY 1""",
            key,
        )
        assert len(adjusted) == 3 and all(row["times"] == 1 and row["aid"] > 0 for row in adjusted)
        assert await check_invariants(connection) == []
