"""The Coalescer on its own: batches, keys kept apart, errors shared or isolated, callers that gave up.

tests/integration/test_batching.py proves the same rules through the real settle path and
PostgreSQL; these pin each rule in milliseconds with a recording ``run``.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.batching import Coalescer


class Recorder:
    """A batch runner that records every batch and answers each item with itself doubled."""

    def __init__(self, *, hold: asyncio.Event | None = None, fail_with: BaseException | None = None) -> None:
        self.batches: list[list[int]] = []
        self.hold = hold
        self.fail_with = fail_with

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_with is not None and len(items) > 1:
            raise self.fail_with
        if self.fail_with is not None and items == [13]:
            raise self.fail_with
        return [item * 2 for item in items]


async def _started(coalescer: Coalescer[int, int]) -> Coalescer[int, int]:
    coalescer.start()
    await asyncio.sleep(0)
    return coalescer


def test_concurrent_calls_share_batches_and_each_gets_its_own_answer() -> None:
    async def scenario() -> None:
        run = Recorder()
        coalescer = await _started(Coalescer(run, max_batch=8, lanes=1))
        answers = await asyncio.gather(*(coalescer.submit(n) for n in range(20)))
        await coalescer.stop()
        assert answers == [n * 2 for n in range(20)]
        assert max(len(batch) for batch in run.batches) > 1
        assert all(len(batch) <= 8 for batch in run.batches)
        assert sorted(item for batch in run.batches for item in batch) == list(range(20))

    asyncio.run(scenario())


def test_one_by_one_runs_each_call_alone_in_its_caller() -> None:
    async def scenario() -> None:
        run = Recorder()
        coalescer = await _started(Coalescer(run, max_batch=1, lanes=4))
        assert not coalescer.running
        assert await asyncio.gather(*(coalescer.submit(n) for n in range(5))) == [0, 2, 4, 6, 8]
        assert run.batches == [[0], [1], [2], [3], [4]]

    asyncio.run(scenario())


def test_calls_with_one_key_never_share_a_batch() -> None:
    async def scenario() -> None:
        run = Recorder()
        # Even numbers share a key, odd numbers another: at most one of each per batch.
        coalescer = await _started(Coalescer(run, max_batch=8, lanes=1, keys=lambda item: (item % 2,)))
        await asyncio.gather(*(coalescer.submit(n) for n in range(10)))
        await coalescer.stop()
        for batch in run.batches:
            assert len({item % 2 for item in batch}) == len(batch), run.batches

    asyncio.run(scenario())


def test_an_error_named_in_split_on_reruns_each_alone_so_only_the_culprit_fails() -> None:
    async def scenario() -> None:
        run = Recorder(fail_with=LookupError("a duplicate"))
        coalescer = await _started(Coalescer(run, max_batch=8, lanes=1, split_on=(LookupError,)))
        results = await asyncio.gather(*(coalescer.submit(n) for n in (11, 12, 13, 14)), return_exceptions=True)
        await coalescer.stop()
        assert results[0] == 22 and results[1] == 24 and results[3] == 28
        assert isinstance(results[2], LookupError)

    asyncio.run(scenario())


def test_any_other_error_fails_the_whole_batch_with_the_same_error() -> None:
    async def scenario() -> None:
        run = Recorder(fail_with=ConnectionError("the connection went away"))
        coalescer = await _started(Coalescer(run, max_batch=8, lanes=1, split_on=(LookupError,)))
        results = await asyncio.gather(*(coalescer.submit(n) for n in (1, 2, 3)), return_exceptions=True)
        await coalescer.stop()
        batched = [result for result in results if isinstance(result, ConnectionError)]
        assert batched and all(result is batched[0] for result in batched)

    asyncio.run(scenario())


def test_a_caller_that_gave_up_before_its_batch_is_not_run() -> None:
    async def scenario() -> None:
        hold = asyncio.Event()
        run = Recorder(hold=hold)
        coalescer = await _started(Coalescer(run, max_batch=8, lanes=1))
        first = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.sleep(0.01)  # the lane holds [1] open
        gave_up = asyncio.ensure_future(coalescer.submit(2))
        kept = asyncio.ensure_future(coalescer.submit(3))
        await asyncio.sleep(0)
        gave_up.cancel()  # its deadline passed while it queued
        hold.set()
        assert await first == 2 and await kept == 6
        await coalescer.stop()
        assert [item for batch in run.batches for item in batch] == [1, 3]

    asyncio.run(scenario())


def test_stopping_fails_what_is_still_queued_instead_of_leaving_it_waiting() -> None:
    async def scenario() -> None:
        hold = asyncio.Event()
        coalescer = await _started(Coalescer(Recorder(hold=hold), max_batch=2, lanes=1, keys=lambda _: ("k",)))
        running = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(coalescer.submit(2))  # same key: waits behind the running batch
        await asyncio.sleep(0.01)
        await coalescer.stop()
        for call in (running, queued):
            with pytest.raises(ConnectionError, match="shutting down"):
                await call

    asyncio.run(scenario())
