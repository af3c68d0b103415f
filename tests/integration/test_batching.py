"""Micro-batching: settlements committed together are each still all or nothing and answered right.

A gateway with batching on gets a burst that mixes everything a batch must keep
apart: many people at once, several bills for one person, a duplicate storm of one
request, a person nobody registered, and a bill the engine refuses. Each must get
the answer it would get alone, and the money must add up. The same burst also runs
through a gateway settling each bill on its own (``MEDSETTLE_SETTLE_BATCH_MAX=1``),
so both paths stay proven.

Two writes for one person-year in one statement would race for one accumulator row, so
the write batcher never puts them together, nor two copies of one request. The test
watches every batch the write lanes take, and makes that rule bite on purpose instead of
waiting for a machine slow enough: the lanes hold their batches until the busy person's
later bills have waited past the hold-back (``Coalescer.BUSY_WAIT_SECONDS``), when the
batcher lets them go beside the batch still holding that person, and so must pick them
one at a time. Settling each bill on its own, two of that person's bills are held after
their reads until both have read, so they race for the accumulator row on purpose and
the loser settles again under the row lock. Neither outcome depends on how fast the
machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import identity
from adapters.batching import Coalescer
from adapters.check import check_invariants
from adapters.faults import Fault, Faults
from adapters.store import Store
from gateway.app_keys import service_key
from gateway.http.app import create_app
from tests.integration.conftest import (
    PEPPER,
    TOWNSHIP,
    VILLAGE,
    SignedClient,
    bill,
    fresh_national_id,
    post_as_a_terminal,
    register,
)

pytestmark = pytest.mark.integration

HOLD_LIMIT = 5.0  # seconds a batch or a settlement is held at most while the burst lines up


@pytest.fixture(params=[16, 1], ids=["batched", "alone"])
async def batching(request, database_url: str, settings: Any, client: SignedClient) -> AsyncIterator[SignedClient]:
    """A gateway settling in batches of up to 16, and one settling each bill on its own."""
    app = create_app(
        msgspec.structs.replace(settings, settle_batch_max=request.param, settle_batch_lanes=2), dsn=database_url
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield SignedClient(test_client, {key.key_id: key for key in client.by_terminal.values()})


def _short(person_key: bytes) -> str:
    """Enough of a person key to tell people apart in a failure message."""
    return person_key.hex()[:12]


@dataclass(frozen=True)
class Take:
    """One batch a lane took, and what was waiting when it did."""

    running: frozenset[object]  # people and request ids in batches still running on another lane
    waiting: tuple[tuple[str, float], ...]  # each waiting bill's person, and seconds it had waited
    taken: tuple[tuple[str, tuple[str, str], float], ...]  # person, (terminal, request id), seconds waited


class BatchWatch:
    """Records every batch the lanes take, and holds each at its start until ``person`` has two bills
    waiting past the hold-back (or HOLD_LIMIT has passed): the moment a slow batch brings."""

    def __init__(self, batcher: Coalescer[Any, Any], person: bytes) -> None:
        self.batcher, self.person = batcher, person
        self.takes: list[Take] = []
        self.lined_up = False
        self._released = asyncio.Event()
        take, run = batcher._take, batcher._run_batch
        loop = asyncio.get_running_loop()

        def observed_take() -> list[Any]:
            now = loop.time()
            running = frozenset(_short(key[0]) if isinstance(key[0], bytes) else key for key in batcher._busy)
            waiting = tuple(
                (_short(p.item.key.person_key), now - p.queued_at) for p in batcher._queue if not p.future.done()
            )
            batch = take()
            taken = tuple(
                (_short(p.item.key.person_key), (p.item.key.terminal_id, p.item.key.request_id), now - p.queued_at)
                for p in batch
            )
            self.takes.append(Take(running, waiting, taken))
            return batch

        async def held_run(batch: list[Any]) -> None:
            await self._hold()
            await run(batch)

        batcher._take = observed_take  # type: ignore[method-assign]
        batcher._run_batch = held_run  # type: ignore[method-assign]

    async def _hold(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_LIMIT
        while not self._released.is_set() and loop.time() < deadline:
            now = loop.time()
            past = [
                p
                for p in self.batcher._queue
                if p.item.key.person_key == self.person and now - p.queued_at >= Coalescer.BUSY_WAIT_SECONDS
            ]
            if len(past) >= 2:
                self.lined_up = True
                break
            await asyncio.sleep(0.01)
        self._released.set()


_settling = contextvars.ContextVar[bytes]("settling")


class RaceTwo(Faults):
    """Settling alone: the first two settlements of ``person`` wait after their reads until both have read,
    so both compute from the same accumulators and race to write them."""

    def __init__(self, store: Store, person: bytes) -> None:
        super().__init__({"settle.after_lock": Fault("stall")})  # armed: the store calls reach()
        self.person = person
        self.read = 0
        self.both_read = asyncio.Event()
        read = store.reads._run

        async def read_marked(keys: list[Any]) -> Any:  # settling alone, a read runs in its caller's task
            _settling.set(keys[0].person_key)
            return await read(keys)

        store.reads._run = read_marked

    async def reach(self, point: str) -> None:
        if point != "settle.after_lock" or _settling.get(None) != self.person or self.read >= 2:
            return
        self.read += 1
        if self.read == 2:
            self.both_read.set()
        with contextlib.suppress(TimeoutError):  # then the test's assertion on the race says so
            await asyncio.wait_for(self.both_read.wait(), HOLD_LIMIT)


async def test_a_mixed_burst_settles_each_bill_once_and_correctly(batching, client, pool):
    store = batching.client.app[service_key].store
    batcher = store.writes if store.writes.running else None
    people = [await register(client, ("insurance", "resident"), ("hardship_aid", "low_income")) for _ in range(30)]
    busy = await register(client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"))
    busy_key = identity.person_key(busy, PEPPER)
    storm = bill(people[0], ("A", 50_000), clinic_id="T001", visit_type="outpatient")
    bodies = [bill(person, ("A", 80_000), ("B", 20_000), clinic_id="T001") for person in people]
    bodies += [bill(busy, ("A", 3_000_000), clinic_id="T001") for _ in range(6)]
    bodies += [storm] * 8
    bodies.append(bill(fresh_national_id(), ("A", 10_000), clinic_id="T001"))  # nobody registered
    village_inpatient = bill(people[1], ("A", 10_000), clinic_id="V001")  # villages take no inpatient bills

    async def send(body: dict[str, Any], headers: dict[str, str] = TOWNSHIP) -> tuple[int, Any]:
        return await post_as_a_terminal(batching, "/v1/settlements", body, headers)

    if batcher is not None:
        watch = BatchWatch(batcher, busy_key)
        before = (batcher.batches, batcher.batched)
    else:
        race = store.faults = RaceTwo(store, busy_key)
    retries_before = store.optimistic_retries
    answers = await asyncio.gather(*(send(body) for body in bodies), send(village_inpatient, VILLAGE))

    if batcher is not None:
        batches, batched = batcher.batches - before[0], batcher.batched - before[1]
        assert batched > batches, "no batch carried more than one settlement"
        # Operators see the same: each batch's size, by batcher.
        metrics = await (await batching.get("/metrics")).text()
        sizes = re.search(r'^medsettle_batch_size_count\{batcher="settle-write"\} (\S+)$', metrics, re.MULTILINE)
        total = re.search(r'^medsettle_batch_size_sum\{batcher="settle-write"\} (\S+)$', metrics, re.MULTILINE)
        assert sizes and total, "no medsettle_batch_size for the settlement writes"
        assert float(sizes[1]) == batcher.batches and float(total[1]) == batcher.batched
        assert watch.lined_up, f"the busy person's bills never waited past the hold-back together: {watch.takes}"
        wait = Coalescer.BUSY_WAIT_SECONDS
        for take in watch.takes:
            people_taken = Counter(person for person, _, _ in take.taken)
            requests_taken = Counter(request for _, request, _ in take.taken)
            # Never two settlements of one person, or two copies of one request, in one batch.
            assert max(people_taken.values(), default=0) <= 1, f"one person twice in a batch: {take}"
            assert max(requests_taken.values(), default=0) <= 1, f"one request twice in a batch: {take}"
            # A bill goes beside a running batch of its person or request only once it waited the hold-back out.
            for person, request, waited in take.taken:
                if person in take.running or request in take.running:
                    assert waited >= wait, f"went beside its own running batch after {waited:.3f} s: {take}"
        # The rule bit: a batch was taken while two of one person's bills could both have gone.
        assert any(
            max(Counter(person for person, waited in take.waiting if waited >= wait).values(), default=0) >= 2
            for take in watch.takes
        ), watch.takes
    else:  # settled alone, two bills of one person raced for the row: the loser reran under the row lock
        assert race.read == 2, "two of the busy person's settlements never read at the same time"
        assert store.optimistic_retries > retries_before

    fresh, busy_answers, storm_answers, unknown, refused = (
        answers[:30],
        answers[30:36],
        answers[36:44],
        answers[44],
        answers[45],
    )
    assert [status for status, _ in fresh] == [201] * 30, fresh
    assert [status for status, _ in busy_answers] == [201] * 6, busy_answers
    assert sorted(status for status, _ in storm_answers) == [200] * 7 + [201], storm_answers
    assert len({answer["settlement_id"] for _, answer in storm_answers}) == 1
    assert unknown[0] == 422 and unknown[1]["code"] == "unknown_person"
    assert refused[0] == 422, refused
    for _, answer in fresh + busy_answers + storm_answers:
        assert (
            answer["insurance"] + answer["veteran_subsidy"] + answer["hardship_aid"] + answer["out_of_pocket"]
            == (answer["total"])
        )
    # The six bills of one person share one subsidy cap, never doubled, even when they raced.
    assert sum(answer["veteran_subsidy"] for _, answer in busy_answers) <= 1_000_000

    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []
        settled = await connection.fetchval(
            "SELECT count(*) FROM settlements WHERE request_id = ANY($1::text[])",
            [body["request_id"] for body in bodies],
        )
    assert settled == 30 + 6 + 1
