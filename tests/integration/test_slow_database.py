"""A slow database and an exhausted pool: every request is answered in bounded time, 201 or 503, never 500.

The gateway runs in-process with a small pool (3 connections, 1 s to get one) and a 2 s
request deadline (``MEDSETTLE_REQUEST_TIMEOUT``), its database connections going through
``pgproxy.py``. More requests arrive at once than the pool has connections, while:

* the proxy adds latency to every packet, so each settlement holds its connection far
  longer: requests wait for the pool (503 ``database_unavailable``) or run out of time
  mid-settlement (503 ``deadline_exceeded``), some of them while their commit is in
  flight, when the outcome is unknown even to the gateway. The latency is drawn from the
  seed; if no request was refused, the round runs again with new bills and a higher
  latency, up to one at which a settlement's own round trips outlast the deadline, so the
  fault always bites whatever the seed and however fast the machine;
* or every settlement stalls at ``settle.after_lock`` past the deadline.

Every answer is a 201 or a 503 with Retry-After, within the deadline plus the time to
cancel the query and roll back through the slow proxy. Once the fault clears, each
terminal resends what was not acknowledged, with the same request id, until it is: a
cancelled settlement was rolled back and settles once, one whose commit got through
replays. Nothing acknowledged is lost, nothing is settled twice, the invariants hold, and
a new settlement goes through at its first attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app_keys import service_key
from gateway.http.app import create_app
from tests.integration.conftest import COUNTY, SignedClient, register
from tests.integration.fault_tally import Tally, programmes, random_bill, settle_up, stored
from tests.integration.pgproxy import PgProxy

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TERMINAL = "term-C001"
POOL_MAX = 3
ACQUIRE_TIMEOUT = 1.0
REQUEST_TIMEOUT = 2.0
# Answered at the deadline, not when the database finally answers: far below every stall and hold
# the faults here make (STALL, HELD_AT_MOST), with seconds of slack for a machine busy with other work.
ANSWER_BOUND = REQUEST_TIMEOUT * 3
STALL = REQUEST_TIMEOUT * 6
CONCURRENT = 24
ARRIVALS = 1.5  # seconds over which they arrive
PEOPLE = 8  # fewer people than bills: some bills for one person meet on the row lock
RECOVERY_ATTEMPTS = 8
HELD_AT_MOST = 30.0  # seconds a trapped write or its answer waits for the test to let it go
# Latency per packet, each way. The first round draws from LATENCY; a round in which nothing was
# refused runs again at a higher one, at most CERTAIN_LATENCY: a settlement makes at least two round
# trips (read, then write and commit), each two packets, so at that latency it alone outlasts the deadline.
LATENCY = (REQUEST_TIMEOUT / 50, REQUEST_TIMEOUT / 16)
CERTAIN_LATENCY = REQUEST_TIMEOUT / 3


@dataclass
class Sent:
    body: dict[str, Any]
    arrives: float = 0.0  # seconds after the start of the round
    attempts: list[tuple[int, str | None, float]] = field(default_factory=list)  # status, code, seconds
    acknowledged: str | None = None


@pytest.fixture(scope="module")
async def slow(client, database_url: str, settings: Any) -> AsyncIterator[tuple[PgProxy, SignedClient]]:
    """An in-process gateway with a small pool and a short deadline, its database behind the proxy."""
    small = msgspec.structs.replace(
        settings,
        pool_min=1,
        pool_max=POOL_MAX,
        pool_acquire_timeout=ACQUIRE_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
    )
    async with PgProxy(database_url) as proxy:
        app = create_app(small, dsn=proxy.url)
        async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
            yield proxy, SignedClient(test_client, {key.key_id: key for key in client.by_terminal.values()})


async def send(gateway: SignedClient, sent: Sent, tally: Tally, *, wait: float = 0.0) -> None:
    """One attempt, bounded in time whatever the gateway does."""
    await asyncio.sleep(wait)
    tally.sent(TERMINAL, sent.body)
    started = time.monotonic()
    async with asyncio.timeout(ANSWER_BOUND + 5):  # a hang fails here, not in the CI job's timeout
        response = await gateway.post("/v1/settlements", json=sent.body, headers=COUNTY)
        answer = await response.json()
    elapsed = time.monotonic() - started
    acknowledged = tally.answered(response.status, answer)
    sent.attempts.append((response.status, answer.get("code"), elapsed))
    if acknowledged:
        sent.acknowledged = acknowledged
    if response.status == 503:
        assert int(response.headers["Retry-After"]) >= 1, answer
        assert answer["code"] in ("database_unavailable", "deadline_exceeded"), answer


async def recover(gateway: SignedClient, everything: list[Sent], tally: Tally) -> None:
    """The fault has cleared: each terminal resends what was not acknowledged, same body, until it is."""
    for _ in range(RECOVERY_ATTEMPTS):
        waiting = [sent for sent in everything if sent.acknowledged is None]
        if not waiting:
            return
        await asyncio.gather(*(send(gateway, sent, tally) for sent in waiting))
        await asyncio.sleep(0.2)
    assert [sent.body["request_id"] for sent in everything if sent.acknowledged is None] == []


def report(everything: list[Sent], first_round: int) -> dict[str, Any]:
    under_fault = [attempt for sent in everything for attempt in sent.attempts[:first_round]]
    return {
        "statuses": sorted({(status, code) for status, code, _ in under_fault}, key=str),
        "slowest": max(seconds for _, _, seconds in under_fault),
        "replayed_after_recovery": sum(
            1 for sent in everything if any(status == 200 for status, _, _ in sent.attempts[first_round:])
        ),
    }


async def check_settles_again(gateway: SignedClient, client, rng, tally: Tally) -> float:
    """A new settlement once the fault has cleared: 201 at its first attempt (so within the deadline)."""
    person = await register(client, *programmes(rng))
    sent = Sent(random_bill(rng, person, "after-the-fault"))
    await send(gateway, sent, tally)
    status, _, seconds = sent.attempts[0]
    assert status == 201, sent.attempts
    return seconds


async def test_slow_database_and_an_exhausted_pool_answer_201_or_503_in_bounded_time(slow, client, pool, rng):
    proxy, gateway = slow
    tally = Tally("slow database (latency on every packet) and more requests than the pool has connections")
    people = [await register(client, *programmes(rng)) for _ in range(PEOPLE)]
    everything: list[Sent] = []
    latency = rng.uniform(*LATENCY)
    while True:  # bounded: the latency at least doubles each round, up to CERTAIN_LATENCY
        round_ = [
            Sent(random_bill(rng, rng.choice(people), "slow-db"), arrives=rng.uniform(0, ARRIVALS))
            for _ in range(CONCURRENT)
        ]
        everything += round_
        proxy.latency = latency
        try:
            await asyncio.gather(*(send(gateway, sent, tally, wait=sent.arrives) for sent in round_))
        finally:
            proxy.latency = 0.0
        bit = any(sent.attempts[0][0] == 503 for sent in round_)
        print(
            f"latency {latency * 1000:.0f} ms per packet each way: {'' if bit else 'no request refused, '}"
            f"{report(round_, 1)}"
        )
        if bit or latency >= CERTAIN_LATENCY:
            break
        latency = min(CERTAIN_LATENCY, latency * rng.uniform(2.0, 3.0))
    seen = report(everything, 1)
    print(f"under the fault: {seen}")
    statuses = {status for status, _ in seen["statuses"]}
    assert statuses <= {201, 503}, seen
    assert 503 in statuses, "the fault did not bite: no request waited for the pool or ran out of time"
    assert seen["slowest"] < ANSWER_BOUND, seen

    await recover(gateway, everything, tally)
    print(f"after recovery: {report(everything, 1)}")
    seconds = await check_settles_again(gateway, client, rng, tally)
    print(f"a settlement after the fault: {seconds * 1000:.0f} ms")

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
    assert tally.internal_errors == 0


async def test_stalled_settlements_answer_503_at_the_deadline_and_write_nothing(slow, client, pool, rng):
    _, gateway = slow
    tally = Tally("every settlement stalls past the deadline at settle.after_lock, pool exhausted")
    faults = gateway.client.app[service_key].store.faults
    people = [await register(client, *programmes(rng)) for _ in range(POOL_MAX * 2)]
    everything = [Sent(random_bill(rng, person, "stalled")) for person in people]
    faults.arm("settle.after_lock", "stall", seconds=STALL)
    try:
        await asyncio.gather(*(send(gateway, sent, tally) for sent in everything))
    finally:
        faults.disarm()
    seen = report(everything, 1)
    print(f"under the fault: {seen}")
    assert {status for status, _ in seen["statuses"]} == {503}, seen
    assert (503, "deadline_exceeded") in seen["statuses"], seen
    assert seen["slowest"] < ANSWER_BOUND, seen
    async with pool.acquire() as connection:
        written = await connection.fetchval(
            "SELECT count(*) FROM settlements WHERE terminal_id = $1 AND request_id = ANY($2::text[])",
            TERMINAL,
            [sent.body["request_id"] for sent in everything],
        )
    assert written == 0  # cancelled before the write: nothing half-done, nothing done

    await recover(gateway, everything, tally)
    assert all(sent.attempts[-1][0] == 201 for sent in everything)
    seconds = await check_settles_again(gateway, client, rng, tally)
    print(f"a settlement after the fault: {seconds * 1000:.0f} ms")

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
    assert tally.internal_errors == 0


async def person_with_or_without_a_year_row(client, rng) -> str:
    """A new person, half the time with a settlement already this year, so both settle writes are covered:
    the one that creates the person-year accumulator row and the one that updates it."""
    person = await register(client, *programmes(rng))
    earlier = rng.random() < 0.5
    if earlier:
        response = await client.post("/v1/settlements", json=random_bill(rng, person, "earlier"), headers=COUNTY)
        assert response.status == 201
    print(f"the person {'already has an' if earlier else 'has no'} accumulator row for the year")
    return person


async def test_a_deadline_while_the_commit_is_in_flight_answers_503_and_the_retry_replays(slow, client, pool, rng):
    proxy, gateway = slow
    tally = Tally("deadline while the settlement's commit is in flight (committed, answer late)")
    sent = Sent(random_bill(rng, await person_with_or_without_a_year_row(client, rng), "commit-in-flight"))
    # The server commits at once; its answer is held until the test lets it go, after the deadline
    # and the retry, so the gateway cannot know.
    released = asyncio.Event()
    trap = proxy.delay_at(lambda sql: "INSERT INTO settlements" in sql, HELD_AT_MOST, what="answer", release=released)
    try:
        await send(gateway, sent, tally)
        status, code, seconds = sent.attempts[0]
        assert trap.sprung.is_set(), "the settle write never went through the proxy: has its SQL changed?"
        assert (status, code) == (503, "deadline_exceeded")
        assert seconds < ANSWER_BOUND  # answered at the deadline, not when the database finally answered
        await asyncio.wait_for(trap.finished.wait(), timeout=10)  # the server has committed and answered
        committed = await stored(pool, "settle", TERMINAL, sent.body["request_id"])
        assert len(committed) == 1

        await send(gateway, sent, tally)  # the retry, while the first connection still waits for its answer
        assert sent.attempts[-1][:2] == (200, None), sent.attempts
        assert sent.acknowledged == committed[0]["id"]
    finally:
        released.set()

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []


async def test_a_write_that_reaches_the_database_after_the_retry_settles_nothing_twice(slow, client, pool, rng):
    proxy, gateway = slow
    tally = Tally("deadline while the settlement's write is still on its way (arrives after the retry settled)")
    sent = Sent(random_bill(rng, await person_with_or_without_a_year_row(client, rng), "late-write"))
    # The write itself is held until the test lets it go: the gateway gives up at the deadline, the
    # retry settles, then the first write reaches the server. The accumulator version (or its new
    # row) and the request id's idempotency key must make that late write a no-op.
    released = asyncio.Event()
    trap = proxy.delay_at(lambda sql: "INSERT INTO settlements" in sql, HELD_AT_MOST, what="message", release=released)
    try:
        await send(gateway, sent, tally)
        assert trap.sprung.is_set(), "the settle write never went through the proxy: has its SQL changed?"
        assert sent.attempts[0][:2] == (503, "deadline_exceeded")
        assert sent.attempts[0][2] < ANSWER_BOUND

        await send(gateway, sent, tally)
        assert sent.attempts[-1][:2] == (201, None), sent.attempts
    finally:
        released.set()  # the late write goes on to the server now
    await asyncio.wait_for(trap.finished.wait(), timeout=10)  # the late write has been run and answered
    final = await stored(pool, "settle", TERMINAL, sent.body["request_id"])
    assert [row["id"] for row in final] == [sent.acknowledged]

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
