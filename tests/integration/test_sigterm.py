"""SIGTERM with settlements in flight: readiness fails first, nothing in flight is cut off, exit 0.

A real ``medsettle serve`` stalls every settlement for 3 s at ``settle.after_lock`` (holding
its connection, as a slow database would), so requests are in flight when SIGTERM comes.
What a load balancer and the terminals must see (gateway/http/shutdown.py):

1. ``/readyz`` answers 503 at once, while the in-flight settlements are still running,
   and ``/healthz`` stays 200 (the orchestrator must not kill a draining process);
2. for ``MEDSETTLE_SHUTDOWN_DRAIN_SECONDS`` the gateway still takes requests: a settlement
   sent halfway through the drain is served (201), although it finishes after the listener
   has closed;
3. then the listener closes: a new connection is refused, so nothing is half-sent and the
   refused settlement leaves no trace;
4. every in-flight settlement completes with 201, and the process exits 0 well within
   the drain plus ``MEDSETTLE_SHUTDOWN_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest

from adapters.terminal_client import TerminalClient
from tests.integration.conftest import register
from tests.integration.fault_tally import Tally, programmes, random_bill, settle_up, stored
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TERMINAL = "term-C001"
DRAIN = 2.0
# A settlement sent halfway through the drain runs past the listener's close by STALL - DRAIN / 2: the
# time the probe loop may lag behind the close on a loaded machine and still see it still running.
STALL = DRAIN * 1.5
SHUTDOWN_TIMEOUT = 10.0
IN_FLIGHT = 4
SETTLED_IN = 0.8  # seconds the in-flight requests get to reach the stall before SIGTERM
PROBE_EVERY = 0.1
LISTENING_AT_MOST = DRAIN + 5.0  # seconds after SIGTERM the probes wait for the listener to close


async def probe(base: str) -> int | str:
    """/readyz on a fresh connection (a refused connection is what a new client would meet)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        try:
            async with session.get(f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status
        except aiohttp.ClientConnectorError:
            return "refused"


async def test_sigterm_fails_readiness_first_finishes_in_flight_settlements_and_exits_0(
    client, pool, database_url, tmp_path, rng
):
    tally = Tally("SIGTERM with settlements in flight")
    people = [await register(client, *programmes(rng)) for _ in range(IN_FLIGHT + 2)]  # one each: no lock waits
    bodies = [random_bill(rng, person, "sigterm") for person in people]
    in_flight_bodies, during_drain, after_drain = bodies[:IN_FLIGHT], bodies[IN_FLIGHT], bodies[IN_FLIGHT + 1]
    key = client.by_terminal[TERMINAL]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_gateway(
        database_url,
        port,
        tmp_path,
        MEDSETTLE_FAULTS=f"settle.after_lock=stall:{STALL}",
        MEDSETTLE_SHUTDOWN_DRAIN_SECONDS=str(DRAIN),
        MEDSETTLE_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
    )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, process)
            terminal = TerminalClient(base, key.key_id, key.secret, session=session, attempts=1, timeout=20)

            async def settle(body: dict[str, Any]) -> Any:
                tally.sent(TERMINAL, body)
                reply = await terminal.request("POST", "/v1/settlements", body, retry=False)
                tally.answered(reply.status, reply.body)
                return reply

            in_flight = [asyncio.create_task(settle(body)) for body in in_flight_bodies]
            await asyncio.sleep(SETTLED_IN)
            assert not any(task.done() for task in in_flight), "the stall did not hold the settlements"

            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            probes: list[tuple[float, int | str, int]] = []  # seconds after SIGTERM, answer, in flight still
            drain_request: asyncio.Task[Any] | None = None
            while time.monotonic() - signalled < LISTENING_AT_MOST:
                answer = await probe(base)
                still_running = sum(not task.done() for task in in_flight)
                probes.append((time.monotonic() - signalled, answer, still_running))
                if answer == "refused":
                    break
                if drain_request is None and probes[-1][0] >= DRAIN / 2:  # arrives mid-drain, not ready
                    drain_request = asyncio.create_task(settle(during_drain))
                    async with session.get(f"{base}/healthz") as response:
                        assert response.status == 200  # alive: draining is not dying
                await asyncio.sleep(PROBE_EVERY)
            print("readiness after SIGTERM (s, answer, settlements still in flight):")
            print(", ".join(f"{at:.2f} {answer} {running}" for at, answer, running in probes))

            first_at, first_answer, first_running = probes[0]
            assert first_answer == 503 and first_at < DRAIN, probes  # readiness fails first ...
            assert first_running == IN_FLIGHT, probes  # ... while every settlement is still in flight
            refused = [at for at, answer, _ in probes if answer == "refused"]
            assert refused, f"the listener was still open {LISTENING_AT_MOST:g} s after SIGTERM: {probes}"
            assert all(answer == 503 for _, answer, _ in probes[:-1]), probes  # listening, not ready, till then
            assert refused[0] >= DRAIN - PROBE_EVERY, probes  # not before the drain is over
            assert drain_request is not None
            assert not drain_request.done()  # taken during the drain, still running after the listener closed

            # After the drain: refused, so nothing of the request reached the gateway.
            tally.sent(TERMINAL, after_drain)
            async with TerminalClient(base, key.key_id, key.secret, attempts=1, timeout=5) as newcomer:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await newcomer.request("POST", "/v1/settlements", after_drain, retry=False)
            tally.statuses["refused"] += 1

            replies = await asyncio.wait_for(asyncio.gather(*in_flight, drain_request), timeout=SHUTDOWN_TIMEOUT)
            assert [reply.status for reply in replies] == [201] * (IN_FLIGHT + 1), [r.body for r in replies]

        _, stderr = await asyncio.to_thread(process.communicate, timeout=SHUTDOWN_TIMEOUT + DRAIN)
        stopped = time.monotonic() - signalled
        print(f"exited {process.returncode} {stopped:.2f} s after SIGTERM")
        assert process.returncode == 0, stderr
        assert stopped < DRAIN + SHUTDOWN_TIMEOUT
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)

    assert await stored(pool, "settle", TERMINAL, after_drain["request_id"]) == []
    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
    assert tally.server_errors == 0
