"""Micro-batching: concurrent settlements of different people share round trips and one commit.

Under load, many terminals settle at once. Each settlement on its own costs two
round trips and one durable commit (a WAL flush). The batcher takes the
settlements waiting at that moment (up to ``max_batch``, one per person and one
per request id), reads everything they need in one query, runs the engine for
each, and writes them all in one statement that commits once. Each settlement is
still all or nothing: its rows are written only if its own accumulator version
still matches, and the caller is answered only after the commit.

The trade-off: a settlement waits for the batch it joins, so at low load (batches
of one) nothing changes, and under load latency includes one batch's round trips.
A batch shares its fate only for errors that stop the statement: a lost database
connection fails every settlement in the batch with the same 503 (each retried
with its request id), and a constraint violation (a concurrent duplicate request,
a CHECK) reruns each settlement of the batch on its own, so only the offending one
fails. A settlement whose version moved in between reruns on its own under the
row lock.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import TYPE_CHECKING, Any

import asyncpg

from settlement.models import ACCUMULATOR_FIELDS, Accumulators, Settlement

if TYPE_CHECKING:
    from adapters.store import SettleJob, Store

_A = ", ".join(f"a.{field}" for field in ACCUMULATOR_FIELDS)

_READ_BATCH = f"""
WITH claimed AS (
    INSERT INTO request_nonces (digest, expires_at)
    SELECT n.digest, n.expires_at FROM unnest($5::bytea[], $6::timestamptz[]) AS n(digest, expires_at)
     WHERE n.digest IS NOT NULL
    ON CONFLICT (digest) DO NOTHING RETURNING digest
)
SELECT
    (r.digest IS NULL OR r.digest IN (SELECT digest FROM claimed)) AS nonce_fresh,
    (SELECT row(k.request_hash, k.status, k.response, k.operation) FROM idempotency_keys k
      WHERE k.terminal_id = r.terminal_id AND k.request_id = r.request_id) AS idempotency,
    EXISTS (SELECT 1 FROM people p WHERE p.person_key = r.person_key) AS person_exists,
    (SELECT coalesce(array_agg(row(m.programme, m.code, m.effective_from, m.struck_off_on)), '{{}}')
       FROM memberships m WHERE m.person_key = r.person_key) AS memberships,
    (SELECT row({_A}, a.version) FROM accumulators a
      WHERE a.person_key = r.person_key AND a.year = r.year) AS accumulators
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::bytea[]) WITH ORDINALITY
    AS r(terminal_id, request_id, person_key, year, digest, i)
ORDER BY r.i
"""

# Items are numbered ($1); each insert takes only the items whose accumulator write applied.
_WRITE_BATCH = """
WITH v AS (
    SELECT * FROM unnest($1::int[], $2::bytea[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                         $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
                         $14::bigint[], $15::bigint[], $36::timestamptz[])
        AS v(i, person_key, year, version, odu, iop, iip, sp, ap, ue, c_od, c_io, c_ii, c_s, c_a, at)
), updated AS (
    UPDATE accumulators a SET
        outpatient_deductible_used = v.odu, insurance_outpatient_paid = v.iop, insurance_inpatient_paid = v.iip,
        subsidy_paid = v.sp, aid_paid = v.ap, unpaid_eligible = v.ue,
        outpatient_deductible_cap = GREATEST(a.outpatient_deductible_cap, v.c_od),
        insurance_outpatient_cap = GREATEST(a.insurance_outpatient_cap, v.c_io),
        insurance_inpatient_cap = GREATEST(a.insurance_inpatient_cap, v.c_ii),
        subsidy_cap = GREATEST(a.subsidy_cap, v.c_s),
        aid_cap = GREATEST(a.aid_cap, v.c_a),
        version = a.version + 1,
        updated_at = v.at
    FROM v
    WHERE v.version IS NOT NULL AND a.person_key = v.person_key AND a.year = v.year AND a.version = v.version
    RETURNING v.i
), created AS (
    INSERT INTO accumulators (person_key, year, outpatient_deductible_used, insurance_outpatient_paid,
                              insurance_inpatient_paid, subsidy_paid, aid_paid, unpaid_eligible,
                              outpatient_deductible_cap, insurance_outpatient_cap, insurance_inpatient_cap,
                              subsidy_cap, aid_cap, version, updated_at)
    SELECT person_key, year, odu, iop, iip, sp, ap, ue, c_od, c_io, c_ii, c_s, c_a, 1, at FROM v
    WHERE v.version IS NULL
    ON CONFLICT (person_key, year) DO NOTHING
    RETURNING person_key, year
), applied AS (
    SELECT i FROM updated
    UNION ALL
    SELECT v.i FROM created JOIN v USING (person_key, year)
), s AS (
    SELECT * FROM unnest($1::int[], $2::bytea[], $16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[],
                         $21::text[], $22::date[], $23::text[], $24::bigint[], $25::bigint[], $26::bigint[],
                         $27::bigint[], $28::bigint[], $29::bigint[], $30::text[], $31::text[], $3::int[],
                         $32::date[], $33::bytea[], $34::bytea[], $35::text[], $36::timestamptz[])
        AS s(i, person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level, visit_type,
             service_date, policy_id, total, eligible, insurance, veteran_subsidy, hardship_aid, out_of_pocket,
             request, result, year, booked_on, request_hash, response, details, at)
    WHERE s.i IN (SELECT i FROM applied)
), settlement AS (
    INSERT INTO settlements (person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level,
                             visit_type, service_date, policy_id, total, eligible, insurance, veteran_subsidy,
                             hardship_aid, out_of_pocket, request, result, created_at)
    SELECT person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level, visit_type, service_date,
           policy_id, total, eligible, insurance, veteran_subsidy, hardship_aid, out_of_pocket, request::jsonb,
           result::jsonb, at
    FROM s
), ledger AS (
    INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type, year,
                                booked_on, created_at)
    SELECT s.person_key, s.settlement_id, 'settlement', l.account, l.amount, s.clinic_id, s.visit_type, s.year,
           s.booked_on, s.at
    FROM unnest($37::int[], $38::text[], $39::bigint[]) AS l(i, account, amount) JOIN s USING (i)
), audit AS (
    INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
    SELECT at, terminal_id, 'settlement.created', settlement_id::text, request_id, details::jsonb FROM s
)
INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
SELECT terminal_id, request_id, 'settle', request_hash, 200, response, at FROM s
RETURNING terminal_id, request_id
"""


class _Pending:
    __slots__ = ("future", "job", "queued_at")

    def __init__(self, job: SettleJob, future: asyncio.Future[tuple[Settlement, bytes]], queued_at: float) -> None:
        self.job = job
        self.future = future
        self.queued_at = queued_at


class SettleBatcher:
    """Collects concurrent settlements and runs them in shared transactions on ``lanes`` connections."""

    # How long a settlement waits for a running batch that holds the same person or request id. Past
    # it, it goes anyway and the version check sorts out the race: a retry must not wait out a batch
    # stuck on a slow database.
    BUSY_WAIT_SECONDS = 0.2

    def __init__(self, store: Store, *, max_batch: int = 32, lanes: int = 4) -> None:
        self.store = store
        self.max_batch = max_batch
        self.lanes = lanes
        self._queue: collections.deque[_Pending] = collections.deque()
        self._ready = asyncio.Event()
        # People and request ids in batches now running: a later bill of the same person waits for the
        # batch before it to commit, so lanes never race each other for one accumulator row.
        self._busy_people: set[bytes] = set()
        self._busy_requests: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # For metrics and the benchmark: how many batches, and how many settlements they carried.
        self.batches = 0
        self.batched = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lane(), name=f"settle-batch-lane-{n}") for n in range(self.lanes)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("the gateway is shutting down"))

    async def submit(self, job: SettleJob) -> tuple[Settlement, bytes]:
        if not self._tasks:
            return await self.store.settle_one(job)
        future: asyncio.Future[tuple[Settlement, bytes]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(job, future, asyncio.get_running_loop().time()))
        self._ready.set()
        return await future

    def _take(self) -> list[_Pending]:
        """Up to max_batch waiting settlements, at most one per person and per request id, and none whose
        person or request id is in a batch still running on another lane, unless it has waited
        BUSY_WAIT_SECONDS for that batch; the rest wait for a later batch."""
        batch: list[_Pending] = []
        deferred: list[_Pending] = []
        people: set[bytes] = set()
        requests: set[tuple[str, str]] = set()
        now = asyncio.get_running_loop().time()
        while self._queue and len(batch) < self.max_batch:
            pending = self._queue.popleft()
            if pending.future.done():  # the caller gave up before it started
                continue
            request = (pending.job.terminal_id, pending.job.request_id)
            busy = pending.job.person_key in self._busy_people or request in self._busy_requests
            if busy and now - pending.queued_at < self.BUSY_WAIT_SECONDS:
                deferred.append(pending)
                continue
            if busy and (pending.job.person_key in people or request in requests):
                deferred.append(pending)  # never twice in one batch
                continue
            people.add(pending.job.person_key)
            requests.add(request)
            self._busy_people.add(pending.job.person_key)
            self._busy_requests.add(request)
            batch.append(pending)
        self._queue.extendleft(reversed(deferred))
        if not self._queue or not batch:
            # Nothing left that a lane could take now: the batch holding the rest back sets it again when
            # it ends, or the wait runs out (a stuck batch must not hold a retry back past its deadline).
            self._ready.clear()
            if self._queue:
                asyncio.get_running_loop().call_later(self.BUSY_WAIT_SECONDS, self._ready.set)
        # One lock order for every batch, so batches of two gateways touching the same people
        # are less likely to deadlock (a deadlock still only reruns each settlement on its own).
        batch.sort(key=lambda pending: pending.job.person_key)
        return batch

    def _release(self, batch: list[_Pending]) -> None:
        for pending in batch:
            self._busy_people.discard(pending.job.person_key)
            self._busy_requests.discard((pending.job.terminal_id, pending.job.request_id))
        if batch and self._queue:  # what this batch held back may go now
            self._ready.set()

    async def _lane(self) -> None:
        while True:
            await self._ready.wait()
            batch: list[_Pending] = []
            try:
                batch = self._take()
                if batch:
                    await self._run(batch)
            except asyncio.CancelledError:
                self._fail(batch, ConnectionError("the gateway is shutting down"))
                raise
            except (asyncpg.IntegrityConstraintViolationError, asyncpg.DeadlockDetectedError):
                # A duplicate request, a constraint or a deadlock with another gateway stopped the whole
                # statement, which wrote nothing: run each on its own, so only the one at fault fails.
                await asyncio.gather(*(self._alone(pending) for pending in batch if not pending.future.done()))
            except Exception as error:  # the connection or a fault point: every settlement learns the same
                self._fail(batch, error)
            finally:
                # Shutdown can cancel a lane anywhere, also mid-rerun: nobody may be left waiting.
                self._fail(batch, ConnectionError("the gateway is shutting down"))
                self._release(batch)

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    async def _alone(self, pending: _Pending) -> None:
        """Run one settlement of a batch on its own, after the batch's read claimed its nonce."""
        try:
            result = await self.store.settle_one(dataclasses.replace(pending.job, nonce=None))
        except Exception as error:
            if not pending.future.done():
                pending.future.set_exception(error)
        else:
            if not pending.future.done():
                pending.future.set_result(result)

    async def _run(self, batch: list[_Pending]) -> None:
        from adapters.store import AlreadyAnswered, NonceReused, UnknownPerson, _answer, _memberships, ledger_lines

        store = self.store
        async with store._connection() as connection:
            rows = await connection.fetch(
                _READ_BATCH,
                [p.job.terminal_id for p in batch],
                [p.job.request_id for p in batch],
                [p.job.person_key for p in batch],
                [p.job.year for p in batch],
                [p.job.nonce.digest if p.job.nonce else None for p in batch],
                [p.job.nonce.expires_at if p.job.nonce else None for p in batch],
            )
            if store.faults.armed:
                await store.faults.reach("settle.after_lock")
            ready: list[tuple[_Pending, Settlement, Any, bytes, int | None]] = []
            for pending, row in zip(batch, rows, strict=True):
                stored = _answer(row["idempotency"])
                try:
                    if not row["nonce_fresh"]:
                        raise NonceReused
                    if stored is not None:
                        raise AlreadyAnswered(stored)
                    if not row["person_exists"]:
                        raise UnknownPerson
                    found = row["accumulators"]
                    accumulators = (
                        Accumulators(**dict(zip(ACCUMULATOR_FIELDS, found, strict=False))) if found else Accumulators()
                    )
                    settlement, caps = pending.job.compute(_memberships(row["memberships"]), accumulators)
                    response = pending.job.render(pending.job.settlement_id, settlement, pending.job.now)
                except Exception as error:  # refused by the engine, replay, unknown person: this one only
                    if not pending.future.done():  # its caller may have been cancelled by the deadline
                        pending.future.set_exception(error)
                    continue
                ready.append((pending, settlement, caps, response, found[len(ACCUMULATOR_FIELDS)] if found else None))
            if store.faults.armed:
                await store.faults.reach("settle.before_commit")
            # A caller the request deadline gave up on (503, "retry with the same request id") is not
            # written: as on the unbatched path, work cancelled before its write leaves nothing behind.
            ready = [item for item in ready if not item[0].future.done()]
            if not ready:
                return
            columns: list[list[Any]] = [[] for _ in range(36)]
            ledger_items: list[int] = []
            ledger_accounts: list[str] = []
            ledger_amounts: list[int] = []
            for index, (pending, settlement, caps, response, version) in enumerate(ready):
                args = pending.job.arguments(settlement, caps, response)
                (
                    person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level, visit_type,
                    service_date, policy_id, total, eligible, insurance, subsidy, aid, out_of_pocket, request_document,
                    result, now, year, booked_on, _accounts, _amounts, odu, iop, iip, sp, ap, ue,
                    c_od, c_io, c_ii, c_s, c_a, request_hash, _status, body, details,
                ) = args  # fmt: skip
                values = (
                    index, person_key, year, version, odu, iop, iip, sp, ap, ue, c_od, c_io, c_ii, c_s, c_a,
                    settlement_id, terminal_id, request_id, clinic_id, clinic_level, visit_type, service_date,
                    policy_id, total, eligible, insurance, subsidy, aid, out_of_pocket, request_document, result,
                    booked_on, request_hash, body, details, now,
                )  # fmt: skip
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
                accounts, amounts = ledger_lines(settlement)
                ledger_items.extend([index] * len(accounts))
                ledger_accounts.extend(accounts)
                ledger_amounts.extend(amounts)
            written = await connection.fetch(_WRITE_BATCH, *columns, ledger_items, ledger_accounts, ledger_amounts)
            self.batches += 1
            self.batched += len(ready)
        if store.faults.armed:
            await store.faults.reach("settle.after_commit")
        done = {(row["terminal_id"], row["request_id"]) for row in written}
        losers = []
        for pending, settlement, _caps, response, _version in ready:
            if (pending.job.terminal_id, pending.job.request_id) in done:
                if not pending.future.done():
                    pending.future.set_result((settlement, response))
            else:
                store.optimistic_retries += 1
                losers.append(pending)
        if losers:  # another settlement of the same person committed in between: again, on its own
            await asyncio.gather(*(self._alone(pending) for pending in losers))
