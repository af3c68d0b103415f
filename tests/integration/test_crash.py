"""Crash test: kill -9 the gateway under load, restart it, and let terminals resend.

Twenty village terminals send settlements to one ``medsettle serve`` process without
retrying. At a random moment, not before the first settlement is acknowledged, the process
is killed with SIGKILL, so some requests die in flight and their outcome is unknown to the
terminal. After a restart every terminal
resends each unacknowledged request with the same body until it is acknowledged, and
resends a sample of acknowledged ones. Nothing acknowledged may be lost, nothing may be
settled twice, and replays must return the first settlement.

Every random choice comes from the ``rng`` fixture, so the run seed (``tests/conftest.py``,
``MEDSETTLE_TEST_SEED``) replays the schedule: bill amounts and lines, which person each bill
is for, the gaps between a terminal's requests, the kill's offset and the replay sample.
National ID numbers come from the suite's own generator and request ids carry a per-run
token, and which requests are in flight at the kill still depends on timing.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from adapters.check import check_invariants, missing_acknowledged
from adapters.terminal_client import TerminalClient
from tests.integration.conftest import bill, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TERMINALS = 20
REQUESTS_PER_TERMINAL = 50
PEOPLE = 20
KILL_WINDOW = (0.3, 1.0)  # seconds after the load starts, and not before its first acknowledgement
LOAD_GOING = 30.0  # seconds the load may take to get its first acknowledgement
RECOVERY_ATTEMPTS = 10
REPLAY_SAMPLE = 60
CONNECTION_ERRORS = (TimeoutError, aiohttp.ClientConnectionError)


@dataclass
class Request:
    terminal: str
    body: dict[str, Any]
    gap: float  # seconds the terminal waits before sending it
    settlement_id: str | None = None  # the first acknowledged answer
    acked_before_kill: bool = False
    attempted_before_kill: bool = False
    statuses: list[int | str] = field(default_factory=list)
    round_trip: float = 0.0  # of the acknowledged crash-phase attempt
    committed_unacknowledged: bool = False  # settled before the kill, but the answer never reached the terminal


async def _register_people(client, rng: random.Random) -> list[str]:
    people = []
    for _ in range(PEOPLE):
        programmes = [("insurance", "resident")]
        if rng.random() < 0.3:
            programmes.append(("veteran_subsidy", rng.choice(["priority_care", "disabled_veteran"])))
        if rng.random() < 0.4:
            programmes.append(
                ("hardship_aid", rng.choice(["destitute", "minimum_allowance", "marginal", "low_income"]))
            )
        people.append(await register(client, *programmes))
    return people


def _schedule(rng: random.Random, people: list[str], run: str) -> dict[str, list[Request]]:
    schedule: dict[str, list[Request]] = {}
    for number in range(1, TERMINALS + 1):
        clinic_id = f"V{number:03d}"
        terminal = f"term-{clinic_id}"
        requests = []
        for index in range(REQUESTS_PER_TERMINAL):
            items = [(rng.choice("AAABC"), rng.randrange(500, 80_000)) for _ in range(rng.randint(1, 60))]
            body = bill(
                rng.choice(people),
                *items,
                clinic_id=clinic_id,
                visit_type="outpatient",
                service_date=f"2026-09-{rng.randint(1, 28):02d}",  # a month no other test settles in
                request_id=f"crash-{run}-{terminal}-{index:03d}",
            )
            requests.append(Request(terminal, body, gap=rng.uniform(0.012, 0.035)))
        schedule[terminal] = requests
    return schedule


def _acknowledged(status: int, body: Any) -> str | None:
    if status in (200, 201) and isinstance(body, dict) and body.get("settlement_id"):
        return str(body["settlement_id"])
    return None


async def _crash_phase(terminal: TerminalClient, requests: list[Request], killed: asyncio.Event) -> None:
    """Send in order without retrying; after the first connection error the gateway is gone, so stop."""
    for request in requests:
        await asyncio.sleep(request.gap)
        if killed.is_set():
            return
        request.attempted_before_kill = True
        sent = time.monotonic()
        try:
            reply = await terminal.request("POST", "/v1/settlements", request.body, retry=False)
        except CONNECTION_ERRORS as error:
            request.statuses.append(type(error).__name__)
            return
        request.round_trip = time.monotonic() - sent
        request.statuses.append(reply.status)
        settlement_id = _acknowledged(reply.status, reply.body)
        if settlement_id and not killed.is_set():
            request.settlement_id = settlement_id
            request.acked_before_kill = True
        elif settlement_id:
            # Answered, but after the kill signal went out: still an acknowledgement the terminal holds.
            request.settlement_id = settlement_id


async def _recover(terminal: TerminalClient, requests: list[Request], replays: set[int]) -> list[str]:
    """Resend every unacknowledged request (same body) until acknowledged; replay a sample of acknowledged ones."""
    problems = []
    for position, request in enumerate(requests):
        if request.settlement_id is not None and position not in replays:
            continue
        first = request.settlement_id
        for _ in range(RECOVERY_ATTEMPTS):
            try:
                reply = await terminal.request("POST", "/v1/settlements", request.body, retry=False)
            except CONNECTION_ERRORS as error:
                request.statuses.append(type(error).__name__)
                await asyncio.sleep(0.2)
                continue
            request.statuses.append(reply.status)
            settlement_id = _acknowledged(reply.status, reply.body)
            if settlement_id:
                if first is not None:
                    if reply.status != 200 or not reply.replayed or settlement_id != first:
                        problems.append(
                            f"{request.body['request_id']}: replay {reply.status} {settlement_id} != {first}"
                        )
                else:
                    request.settlement_id = settlement_id
                    request.committed_unacknowledged = reply.replayed
                break
            if reply.status not in (429, 503):
                problems.append(f"{request.body['request_id']}: {reply.status} {reply.body}")
                break
            await asyncio.sleep(0.2)
        else:
            problems.append(f"{request.body['request_id']}: not acknowledged after {RECOVERY_ATTEMPTS} attempts")
    return problems


async def test_kill_9_under_load_loses_nothing_and_settles_nothing_twice(client, pool, database_url, tmp_path, rng):
    run = uuid.uuid4().hex[:8]  # request ids unique to this run; not a schedule choice
    people = await _register_people(client, rng)
    schedule = _schedule(rng, people, run)
    kill_after = rng.uniform(*KILL_WINDOW)
    replay_rng = random.Random(rng.getrandbits(64))  # drawn after the crash, from what was acknowledged
    everything = [request for requests in schedule.values() for request in requests]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[str]] = []
    try:
        first = start_gateway(database_url, port, tmp_path / "first")
        processes.append(first)
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, first)
            terminals = {
                name: TerminalClient(
                    base, client.by_terminal[name].key_id, client.by_terminal[name].secret, session=session, attempts=1
                )
                for name in schedule
            }

            # Crash phase: load, and kill -9 at a seeded moment inside the window.
            killed = asyncio.Event()
            load = asyncio.gather(*(_crash_phase(terminals[name], schedule[name], killed) for name in schedule))
            started = time.monotonic()
            await asyncio.sleep(kill_after)
            # A loaded machine may not have answered anything yet: the kill waits for the load to get going.
            deadline = time.monotonic() + LOAD_GOING
            while not any(r.acked_before_kill for r in everything) and not load.done():
                assert time.monotonic() < deadline, f"no settlement acknowledged within {LOAD_GOING:g} s"
                await asyncio.sleep(0.01)
            load_finished_first = load.done()
            killed.set()
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL  # reaped
            first.stderr.close()
            print(f"killed the gateway {time.monotonic() - started:.3f} s into the load (planned {kill_after:.3f} s)")
            await asyncio.wait_for(load, timeout=30)

            attempted = sum(request.attempted_before_kill for request in everything)
            acked_before_kill = sum(request.acked_before_kill for request in everything)
            unacked = [request for request in everything if request.settlement_id is None]
            in_flight = sum(1 for request in unacked if request.statuses and isinstance(request.statuses[-1], str))
            asked_to_resend = sum(1 for request in unacked if request.statuses and request.statuses[-1] == 503)
            # A 503 (the database did not answer in time, say on a disk stalled by other work) asks for the
            # resend that recovery makes; any other answer that is not an acknowledgement is a refusal.
            refused_before_kill = [
                request.statuses
                for request in everything
                if request.attempted_before_kill
                and request.settlement_id is None
                and not isinstance(request.statuses[-1], str)
                and request.statuses[-1] != 503
            ]
            not_sent = len(unacked) - in_flight - len(refused_before_kill) - asked_to_resend

            # Recovery: a new process on the same port; terminals resend with the same bodies.
            second = start_gateway(database_url, port, tmp_path / "second")
            processes.append(second)
            await wait_ready(session, base, second)
            mark = {id(request): len(request.statuses) for request in everything}
            acknowledged = [
                (name, position)
                for name in schedule
                for position, request in enumerate(schedule[name])
                if request.settlement_id is not None
            ]
            replay_sample: dict[str, set[int]] = {name: set() for name in schedule}
            for name, position in replay_rng.sample(acknowledged, min(REPLAY_SAMPLE, len(acknowledged))):
                replay_sample[name].add(position)
            replays_checked = sum(len(sample) for sample in replay_sample.values())
            problems = await asyncio.gather(
                *(_recover(terminals[name], schedule[name], replay_sample[name]) for name in schedule)
            )
            after_restart = [status for request in everything for status in request.statuses[mark[id(request)] :]]
            # 503 asks for a resend, which _recover makes; any other 5xx is a fault of the gateway.
            server_errors = [
                status for status in after_restart if isinstance(status, int) and status >= 500 and status != 503
            ]

        async with pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT terminal_id, request_id, settlement_id::text AS settlement_id FROM settlements"
                " WHERE request_id LIKE $1",
                f"crash-{run}-%",
            )
            violations = await check_invariants(connection)
            # What the terminals hold as acknowledged and the database does not (medsettle check --acknowledged).
            lost = await missing_acknowledged(connection, [r.settlement_id for r in everything if r.settlement_id])
        stored: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            stored.setdefault((row["terminal_id"], row["request_id"]), []).append(row["settlement_id"])
        double_counted = [key for key, ids in stored.items() if len(ids) > 1]
        never_acknowledged = [r.body["request_id"] for r in everything if r.settlement_id is None]
        mismatched = [
            r.body["request_id"]
            for r in everything
            if r.settlement_id is not None and stored.get((r.terminal, r.body["request_id"])) != [r.settlement_id]
        ]

        print(
            f"requests {len(everything)} (sent before the kill {attempted}), "
            f"acknowledged before the kill {acked_before_kill}, "
            f"unacknowledged {len(unacked)} (in flight {in_flight}, refused {len(refused_before_kill)}, "
            f"503 {asked_to_resend}, not yet sent {not_sent}; "
            f"committed but unacknowledged {sum(r.committed_unacknowledged for r in everything)}), "
            f"replays checked {replays_checked}, lost {len(lost)}, double-counted {len(double_counted)}, "
            f"5xx after restart {len(server_errors)}, settlements stored {len(rows)}"
            + (" [the load finished before the kill]" if load_finished_first else "")
        )
        round_trips = sorted(r.round_trip for r in everything if r.acked_before_kill)
        if round_trips:
            print(f"crash-phase round trip median {1000 * round_trips[len(round_trips) // 2]:.1f} ms")
        assert refused_before_kill == [], refused_before_kill
        assert [problem for group in problems for problem in group] == []
        assert lost == []
        assert double_counted == []
        assert never_acknowledged == []
        assert mismatched == []
        assert len(rows) == len(everything)
        assert server_errors == []
        assert violations == []

        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
        assert second.returncode == 0, stderr
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            if process.stderr is not None and not process.stderr.closed:
                process.stderr.close()
