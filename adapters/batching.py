"""Micro-batching: concurrent calls share one round trip and, for writes, one commit.

Under load, many terminals settle at once. On its own each settlement costs a read round
trip and a write that commits (a WAL flush). A ``Coalescer`` takes the calls waiting at that
moment (up to ``max_batch``) and runs them as one statement on one of ``lanes`` connections:
the settle path has one for its reads and one for its writes (adapters/store.py). Each call
is still answered on its own, and each settlement is still all or nothing: the write
statement applies each settlement only at the accumulator version it was decided on.

The trade-off: a call waits for the batch it joins, so at low load (batches of one) nothing
changes, and under load latency includes one batch's round trip. A batch shares its fate
only for errors that stop the statement: a lost connection fails every call of the batch
with the same error (each terminal retries with its request id), and the errors named in
``split_on`` (a constraint violation, a deadlock) run each call again alone, so only the
one at fault fails.

Calls with the same conflict key (a person-year, a request id) never share a batch, and a
call whose key is in a batch still running waits for it, up to ``BUSY_WAIT_SECONDS``: two
settlements of one person in flight at once would otherwise race for one accumulator row.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    __slots__ = ("future", "item", "keys", "queued_at")

    def __init__(self, item: T, keys: Sequence[Hashable], future: asyncio.Future[R], queued_at: float) -> None:
        self.item = item
        self.keys = keys
        self.future = future
        self.queued_at = queued_at


class Coalescer(Generic[T, R]):
    """Runs concurrent calls of ``run`` together: ``run(items)`` answers each item, in order."""

    BUSY_WAIT_SECONDS = 0.2

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int,
        lanes: int,
        keys: Callable[[T], Sequence[Hashable]] = lambda item: (),
        split_on: tuple[type[BaseException], ...] = (),
        name: str = "batch",
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.lanes = lanes
        self._keys = keys
        self._split_on = split_on
        self._name = name
        self._on_batch = on_batch  # hears (name, size) of every batch run together: for metrics
        self._queue: collections.deque[_Pending[T, R]] = collections.deque()
        self._ready = asyncio.Event()
        self._busy: set[Hashable] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # For metrics and the benchmark: how many batches, and how many calls they carried.
        self.batches = 0
        self.batched = 0

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        if self.max_batch > 1:
            self._tasks = [asyncio.create_task(self._lane(), name=f"{self._name}-lane-{n}") for n in range(self.lanes)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("the gateway is shutting down"))

    async def submit(self, item: T) -> R:
        if not self._tasks:  # one by one: the caller runs its own batch of one
            return (await self._run([item]))[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(item, self._keys(item), future, loop.time()))
        self._ready.set()
        return await future

    def _take(self) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        deferred: list[_Pending[T, R]] = []
        taken: set[Hashable] = set()
        now = asyncio.get_running_loop().time()
        while self._queue and len(batch) < self.max_batch:
            pending = self._queue.popleft()
            if pending.future.done():  # the caller gave up (its deadline) before it started
                continue
            if any(key in taken for key in pending.keys):
                deferred.append(pending)  # never twice in one batch
                continue
            busy = any(key in self._busy for key in pending.keys)
            if busy and now - pending.queued_at < self.BUSY_WAIT_SECONDS:
                deferred.append(pending)
                continue
            taken.update(pending.keys)
            batch.append(pending)
        self._busy.update(taken)
        self._queue.extendleft(reversed(deferred))
        if not self._queue or not batch:
            # Nothing a lane could take now: the batch holding the rest back sets it again when it
            # ends, or the wait runs out (a stuck batch must not hold a retry back past its deadline).
            self._ready.clear()
            if self._queue:
                asyncio.get_running_loop().call_later(self.BUSY_WAIT_SECONDS, self._ready.set)
        return batch

    def _release(self, batch: list[_Pending[T, R]]) -> None:
        for pending in batch:
            self._busy.difference_update(pending.keys)
        if batch and self._queue:
            self._ready.set()

    async def _lane(self) -> None:
        while True:
            await self._ready.wait()
            batch: list[_Pending[T, R]] = []
            try:
                batch = self._take()
                if batch:
                    await self._run_batch(batch)
            except asyncio.CancelledError:
                self._fail(batch, ConnectionError("the gateway is shutting down"))
                raise
            finally:
                self._fail(batch, ConnectionError("the gateway is shutting down"))
                self._release(batch)

    async def _run_batch(self, batch: list[_Pending[T, R]]) -> None:
        try:
            results = await self._run([pending.item for pending in batch])
        except self._split_on:
            await asyncio.gather(*(self._alone(pending) for pending in batch if not pending.future.done()))
            return
        except Exception as error:  # the connection or a fault point: every call learns the same
            self._fail(batch, error)
            return
        self.batches += 1
        self.batched += len(batch)
        if self._on_batch is not None:
            self._on_batch(self._name, len(batch))
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    async def _alone(self, pending: _Pending[T, R]) -> None:
        try:
            result = (await self._run([pending.item]))[0]
        except Exception as error:
            if not pending.future.done():
                pending.future.set_exception(error)
        else:
            if not pending.future.done():
                pending.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Pending[T, R]], error: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
