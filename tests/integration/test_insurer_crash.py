"""A gateway killed (SIGKILL) between the insurer's answer and its own commit loses nothing and settles
nothing twice at the insurer (docs/insurer.md, "No outcome left unknown").

Two ``medsettle serve`` processes share a database of their own and the simulator: ``doomed`` is killed at
the fault point ``insurer.after_answer`` (the insurer has settled and its answer is recorded; nothing is
booked here), ``clean`` takes the terminal's retries and runs the sweeper. Two scenarios: the terminal
retries at once (the recorded answer is booked, the insurer is not asked again), and the terminal
retries only after the sweeper has cancelled the unbooked settlement (it settles afresh, once). Each
ends with the scenario's counts, nothing lost or counted twice, no orphan at the insurer, and every
invariant of ``medsettle check``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from adapters.insurer.simulator import start_simulator
from adapters.policy_files import load_policy_book
from adapters.terminal_client import TerminalClient
from gateway.insurer import visit_of
from gateway.service import china_today
from tests.integration.conftest import bill, fresh_national_id, own_database
from tests.integration.fault_tally import Tally, settle_up
from tests.integration.processes import free_port, start_gateway, wait_ready
from tests.integration.test_insurer import both_sides_agree, fast_policy

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TERMINAL = "term-C001"
Y = 100
CONNECTION_ERRORS = (TimeoutError, aiohttp.ClientConnectionError)


async def message_state(pool: asyncpg.Pool, request_id: str) -> list[str]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT state FROM insurer_messages WHERE request_id = $1 ORDER BY sent_at", request_id
        )
    return [row["state"] for row in rows]


async def test_a_gateway_killed_after_the_insurers_answer_loses_nothing(database_url: str, tmp_path: Path) -> None:
    # A 1.5 s timeout gives a 5.5 s grace: the retry "at once" always comes before the sweeper may act, however
    # loaded the machine.
    folder = fast_policy(tmp_path / "policy", timeout_ms=1_500)
    processes: list[subprocess.Popen[str]] = []

    def gateway(port: int, name: str, **settings: str) -> subprocess.Popen[str]:
        process = start_gateway(
            url, port, tmp_path / name, MEDSETTLE_POLICY_DIR=str(folder), MEDSETTLE_INSURER_URL=insurer.url, **settings
        )
        processes.append(process)
        return process

    async with await start_simulator(load_policy_book(folder)) as insurer, own_database(database_url) as (url, keys):
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        tally = Tally("kill between the insurer's answer and the local commit")
        try:
            clean_port, doomed_port = free_port(), free_port()
            clean_base, doomed_base = f"http://127.0.0.1:{clean_port}", f"http://127.0.0.1:{doomed_port}"
            clean_process = gateway(clean_port, "clean")
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, clean_base, clean_process)
                by_terminal = {key.terminal_id: key for key in keys.values() if key.secret}
                admin_key, key = by_terminal["admin-1"], by_terminal[TERMINAL]
                admin = TerminalClient(clean_base, admin_key.key_id, admin_key.secret, session=session)
                clean = TerminalClient(clean_base, key.key_id, key.secret, session=session, attempts=1)
                doomed = TerminalClient(doomed_base, key.key_id, key.secret, session=session, attempts=1, timeout=20)

                for scenario in ("retry at once", "retry after the sweeper"):
                    national_id = fresh_national_id()
                    reply = await admin.request(
                        "POST",
                        "/v1/people",
                        {"person_id": national_id, "memberships": [
                            {"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"}]},
                    )  # fmt: skip
                    assert reply.status == 201, reply.body
                    body = bill(national_id, ("A", 2_000 * Y)) | {"referral": True}
                    process = gateway(
                        doomed_port, f"doomed-{len(processes)}", MEDSETTLE_FAULTS="insurer.after_answer=kill"
                    )
                    await wait_ready(session, doomed_base, process)
                    tally.sent(TERMINAL, body)
                    with pytest.raises(CONNECTION_ERRORS):
                        reply = await doomed.request("POST", "/v1/settlements", body, retry=False)
                        tally.answered(reply.status, reply.body)  # only reached if it answered after all
                    tally.dropped()
                    assert process.wait(timeout=15) == -signal.SIGKILL
                    # The insurer settled and the answer is recorded; nothing is booked here.
                    assert await message_state(pool, body["request_id"]) == ["answered"]
                    settles_before = insurer.simulator.state().calls.get("2304", 0)

                    if scenario == "retry after the sweeper":
                        deadline = time.monotonic() + 30
                        while await message_state(pool, body["request_id"]) != ["cancelled"]:
                            assert time.monotonic() < deadline, "the sweeper never cancelled the unbooked settlement"
                            await asyncio.sleep(0.2)

                    tally.sent(TERMINAL, body)
                    reply = await clean.request("POST", "/v1/settlements", body, retry=False)
                    tally.answered(reply.status, reply.body)
                    assert reply.status == 201, reply.body
                    # County inpatient: (2,000 - 600) x 0.75 = 1,050.00 from insurance.
                    assert reply.body["insurance"] == 1_050 * Y
                    settles_after = insurer.simulator.state().calls.get("2304", 0)
                    visit = visit_of(TERMINAL, body["request_id"])
                    states = sorted(s.state for s in insurer.simulator.state().settlements if s.mdtrt_id == visit)
                    if scenario == "retry at once":
                        assert settles_after == settles_before  # the recorded answer was booked
                        assert states == ["settled"]
                        assert await message_state(pool, body["request_id"]) == ["committed"]
                    else:
                        assert settles_after == settles_before + 1
                        assert states == ["cancelled", "settled"]
                        assert await message_state(pool, body["request_id"]) == ["cancelled", "committed"]

                # The day's three-way reconciliation with the insurer finds nothing.
                finance_key = by_terminal["finance-1"]
                finance = TerminalClient(clean_base, finance_key.key_id, finance_key.secret, session=session)
                reply = await finance.request(
                    "POST", "/v1/finance/reconciliation/insurer", {"day": str(china_today())}, retry=False
                )
                assert reply.status == 200 and reply.body["clean"], reply.body
                assert reply.body["discrepancies"] == []

            in_force = await both_sides_agree(pool, insurer)
            outcome = await settle_up(pool, tally)
            print(f"[{tally.scenario}] in force at the insurer {in_force}, orphans 0")
            assert in_force == 2
            assert outcome.lost == [] and outcome.double_counted == [] and outcome.violations == []
            assert tally.internal_errors == 0
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    process.communicate(timeout=30)  # also closes the pipes of the killed ones
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate(timeout=30)
            await pool.close()
