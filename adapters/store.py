"""The PostgreSQL store: the settle path's reads and writes, reversals, and reference data.

A settlement takes two round trips. The first reads, in one snapshot and without writing,
whether the request id already settled, the person, their memberships and their person-year
accumulator row with its version. The use case decides (gateway/service.py). The second is
one statement (adapters/settlement_sql.py) that writes the accumulators and the settlement
row, and commits; it applies only if the accumulator version is still the one read
(optimistic concurrency), so a settlement never rests on stale totals. A settlement that
loses that race (two checkouts of one person at the same moment, which is rare) is decided
again under the row lock (``locked_person``). Different people never wait on each other.

Under load, concurrent reads share one round trip and concurrent writes one statement and
one commit (adapters/batching.py). Every outcome is a value (settlement/ports.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
import msgspec

from adapters import catalogue_store, insurer_messages, nonces, readjudication
from adapters.batching import Coalescer
from adapters.faults import Faults
from adapters.registry_store import ImportReport, PersonEntry, apply_entries
from adapters.settlement_sql import (
    LOCK_ACCUMULATORS,
    LOCK_PERSON_YEAR,
    LOCK_SETTLEMENT,
    READ_FOR_REVERSAL,
    READ_FOR_SETTLE,
    STORED_COLUMNS,
    STORED_REVERSAL,
    WRITE_REVERSAL,
    counters_from,
    decode_record,
    json_text,
    write_arguments,
    write_statement,
)
from adapters.terminal_keys import ActiveKey, load_keys
from settlement.catalogue import Catalogue
from settlement.chain import Chain
from settlement.decision import give_back
from settlement.ports import (
    AlreadySettled,
    AnswerGone,
    DuplicateRequest,
    NewReversal,
    NewSettlement,
    NonceSpent,
    NoSuchSettlement,
    PersonSnapshot,
    ReadOutcome,
    Reversed,
    ReversedBefore,
    ReverseOutcome,
    SettleKey,
    StoredReversal,
    StoredSettlement,
    UnknownPerson,
    VersionMoved,
    WriteOutcome,
    Written,
)
from settlement.registry import Membership

_json_encoder = msgspec.json.Encoder()

# Policy versions restated in a new form with the same meaning, by the SHA-256 of their stored
# document before and after. The default policy moved to the chain form; tests/property/
# test_chain_matches_engine.py proves both forms settle every bill alike. A database that stored the
# old form takes the new one (and audits it) instead of refusing to start.
RESTATED: Final = {
    "default-2026": (
        "276be7c52cee3cd95c31409acd28fb6ad0ffec68c718a7f0f8f8858ff6942a30",
        "f29f587aba43768bec0bb8868872662f14d538e73f564a5aab2993dbb49bd150",
    ),
}


def _sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def _restated(policy_id: str, stored: str, loaded: str) -> bool:
    before_after = RESTATED.get(policy_id)
    return before_after is not None and (_sha256(stored), _sha256(loaded)) == before_after


class Store:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        acquire_timeout: float = 5.0,
        faults: Faults | None = None,
        batch_max: int = 1,
        batch_lanes: int = 4,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.pool = pool
        # Named fault points (adapters/faults.py): empty outside fault tests.
        self.faults = faults or Faults()
        # Settlements that lost the optimistic race and ran again under the row lock (for metrics and tests).
        self.optimistic_retries = 0
        # The settle path's reads and writes, each coalesced into shared round trips under load
        # (adapters/batching.py); with batch_max 1 each call runs alone. Started by start().
        self.reads: Coalescer[SettleKey, ReadOutcome] = Coalescer(
            self._read_batch, max_batch=batch_max, lanes=batch_lanes, name="settle-read", on_batch=on_batch
        )
        self.writes: Coalescer[NewSettlement, WriteOutcome] = Coalescer(
            self._write_batch,
            max_batch=batch_max,
            lanes=batch_lanes,
            # One settlement per person-year and per request id in a batch: two would race in one statement.
            keys=lambda new: ((new.key.person_key, new.key.year), (new.key.terminal_id, new.key.request_id)),
            # A duplicate request, a CHECK or a deadlock stops the whole statement, which wrote nothing:
            # each settlement runs again alone, so only the one at fault fails.
            split_on=(asyncpg.IntegrityConstraintViolationError, asyncpg.DeadlockDetectedError),
            name="settle-write",
            on_batch=on_batch,
        )
        # Waiting for a connection is bounded, so pool exhaustion answers 503 instead of hanging.
        self.acquire_timeout = acquire_timeout
        # Every message to the insurer's core, recorded before it is sent (adapters/insurer_messages.py).
        self.insurer_log = insurer_messages.MessageLog(
            pool, acquire_timeout, batch_max=batch_max, batch_lanes=max(1, batch_lanes // 2), on_batch=on_batch
        )

    def start(self) -> None:
        self.reads.start()
        self.writes.start()
        self.insurer_log.start()

    async def stop(self) -> None:
        await self.insurer_log.stop()
        await self.writes.stop()
        await self.reads.stop()

    def _connection(self) -> Any:
        return self.pool.acquire(timeout=self.acquire_timeout)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as connection:
            return await connection.fetch(query, *args)

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._connection() as connection:
            return await connection.fetchrow(query, *args)

    async def _fetchval(self, query: str, *args: Any) -> Any:
        async with self._connection() as connection:
            return await connection.fetchval(query, *args)

    # ------------------------------------------------------------ reference data

    async def clinics(self, level: str | None = None, *, only: str | None = None) -> list[asyncpg.Record]:
        if only is not None:
            return await self._fetch("SELECT clinic_id, name, level, region FROM clinics WHERE clinic_id = $1", only)
        if level is None:
            return await self._fetch("SELECT clinic_id, name, level, region FROM clinics ORDER BY clinic_id")
        return await self._fetch(
            "SELECT clinic_id, name, level, region FROM clinics WHERE level = $1 ORDER BY clinic_id", level
        )

    async def terminal_keys(self, key_encryption_key: bytes, only: str | None = None) -> dict[str, ActiveKey]:
        async with self._connection() as connection:
            return await load_keys(connection, key_encryption_key, only)

    async def catalogue_stamp(self) -> str | None:
        """A value that changes whenever an item catalogue version is imported (None: none is)."""
        async with self._connection() as connection:
            return await catalogue_store.catalogue_stamp(connection)

    async def catalogue(self) -> tuple[str | None, Catalogue]:
        """Every item catalogue version, and the stamp it was read at (one snapshot)."""
        async with self._connection() as connection:
            return await catalogue_store.load_catalogue_with_stamp(connection)

    async def sync_policies(self, policies: list[tuple[Chain, str, str]]) -> None:
        """Record each loaded policy version. A version id already stored with other text is refused,
        because settlements that name it must keep meaning what they meant."""
        async with self._connection() as connection, connection.transaction():
            for policy, source, document in policies:
                stored = await connection.fetchrow(
                    "SELECT document, effective_from FROM policy_versions WHERE policy_id = $1", policy.id
                )
                if stored is None:
                    # (Another process starting at the same moment may have stored this same version in
                    # between: then the INSERT below fails on the key, and the caller's second pass compares.)
                    other = await connection.fetchval(
                        "SELECT policy_id FROM policy_versions WHERE effective_from = $1 AND policy_id <> $2",
                        policy.effective_from,
                        policy.id,
                    )
                    if other is not None:
                        raise RuntimeError(
                            f"policy {policy.id} ({source}) takes effect on {policy.effective_from.isoformat()}, the"
                            f" day this database's policy {other} took effect; settlements name the version in force,"
                            " so one day has one version: give the new version a later effective_from, or serve it"
                            " from its own database (DATABASE_URL, or MEDSETTLE_DATA_DIR for the embedded one)"
                        )
                    await connection.execute(
                        "INSERT INTO policy_versions (policy_id, effective_from, source, document)"
                        " VALUES ($1, $2, $3, $4)",
                        policy.id,
                        policy.effective_from,
                        source,
                        document,
                    )
                    await connection.execute(
                        "INSERT INTO audit_log (actor, action, subject, source, details)"
                        " VALUES ('gateway', 'policy.loaded', $1, $2, $3)",
                        policy.id,
                        source,
                        msgspec.json.encode({"effective_from": policy.effective_from}).decode(),
                    )
                elif stored["effective_from"] == policy.effective_from and _restated(
                    policy.id, stored["document"], document
                ):
                    await connection.execute(
                        "UPDATE policy_versions SET document = $2, source = $3 WHERE policy_id = $1",
                        policy.id,
                        document,
                        source,
                    )
                    await connection.execute(
                        "INSERT INTO audit_log (actor, action, subject, source, details)"
                        " VALUES ('gateway', 'policy.restated', $1, $2, $3)",
                        policy.id,
                        source,
                        msgspec.json.encode({"from_sha256": _sha256(stored["document"])}).decode(),
                    )
                elif stored["document"] != document or stored["effective_from"] != policy.effective_from:
                    raise RuntimeError(
                        f"policy {policy.id} ({source}) differs from the version already stored under that id;"
                        " give a changed policy a new id and effective_from instead of editing it"
                    )

    # ------------------------------------------------------------ people

    async def apply_registry(
        self,
        entries: list[PersonEntry],
        *,
        person: tuple[bytes, str, str, str],
        pepper: bytes,
        actor: str,
        request_id: str,
    ) -> tuple[bool, ImportReport]:
        """A person and their membership changes from the API, all or nothing, audited like a list
        import. ``person`` is (key, masked ID, name, region code). Returns whether the person is new."""

        class Refused(Exception):
            pass

        key, masked, name, region = person
        report = None
        created = False
        async with self._connection() as connection:
            try:
                async with connection.transaction():
                    created = bool(
                        await connection.fetchval(
                            """INSERT INTO people (person_key, masked_id, name, region_code) VALUES ($1, $2, $3, $4)
                               ON CONFLICT (person_key) DO NOTHING RETURNING true""",
                            key,
                            masked,
                            name,
                            region,
                        )
                    )
                    report = await apply_entries(
                        connection,
                        entries,
                        pepper=pepper,
                        actor=actor,
                        source="api",
                        request_id=request_id,
                        all_or_nothing=True,
                    )
                    if not report.applied:
                        raise Refused
                    if name and not created:
                        await connection.execute(
                            "UPDATE people SET name = $2, updated_at = now() WHERE person_key = $1 AND name <> $2",
                            key,
                            name,
                        )
            except Refused:
                created = False
        assert report is not None
        return created, report

    async def memberships(self, person_key: bytes) -> list[Membership]:
        rows = await self._fetch(
            "SELECT programme, code, effective_from, struck_off_on FROM memberships WHERE person_key = $1"
            " ORDER BY programme, effective_from",
            person_key,
        )
        return list(_memberships(rows))

    async def person_for_eligibility(
        self, person_key: bytes, year: int
    ) -> tuple[str | None, list[Membership], dict[str, int]]:
        """The person's registered name (None: no such person), memberships and this year's counters."""
        row = await self._fetchrow(
            """SELECT (SELECT name FROM people WHERE person_key = $1) AS name,
                   (SELECT coalesce(array_agg(row(programme, code, effective_from, struck_off_on)), '{}')
                      FROM memberships WHERE person_key = $1) AS memberships,
                   (SELECT counters FROM accumulators WHERE person_key = $1 AND year = $2) AS counters""",
            person_key,
            year,
        )
        return row["name"], list(_memberships(row["memberships"])), counters_from(row["counters"])

    # ------------------------------------------------------------ settle

    async def read_for_settle(self, key: SettleKey) -> ReadOutcome:
        return await self.reads.submit(key)

    async def write_settlement(self, new: NewSettlement) -> WriteOutcome:
        return await self.writes.submit(new)

    async def _read_batch(self, keys: list[SettleKey]) -> list[ReadOutcome]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                READ_FOR_SETTLE,
                [key.terminal_id for key in keys],
                [key.request_id for key in keys],
                [key.person_key for key in keys],
                [key.year for key in keys],
                [key.nonce for key in keys],
            )
        if self.faults.armed:
            await self.faults.reach("settle.after_lock")
        return [_read_outcome(row) for row in rows]

    async def _write_batch(self, batch: list[NewSettlement]) -> list[WriteOutcome]:
        if self.faults.armed:
            await self.faults.reach("settle.before_commit")
        async with self._connection() as connection:
            try:
                rows = await connection.fetch(write_statement(batch), *write_arguments(batch))
            except asyncpg.UniqueViolationError as error:
                if len(batch) == 1 and error.constraint_name == "settlements_one_per_request":
                    return [DuplicateRequest()]
                raise
        if self.faults.armed:
            await self.faults.reach("settle.after_commit")
        outcomes = [_write_outcome(row) for row in sorted(rows, key=lambda row: row["i"])]
        self.optimistic_retries += sum(isinstance(outcome, VersionMoved) for outcome in outcomes)
        return outcomes

    @asynccontextmanager
    async def locked_person(self, key: SettleKey) -> AsyncIterator[_LockedPerson]:
        """The person-year under its row lock: decide and write inside the block, which commits at its end."""
        async with self._connection() as connection, connection.transaction():
            row = await connection.fetchrow(LOCK_PERSON_YEAR, key.person_key, key.year)
            snapshot = PersonSnapshot(
                memberships=_memberships(row["memberships"]),
                counters=counters_from(row["counters"]),
                version=row["version"],
            )
            yield _LockedPerson(connection, snapshot, key.person_key)

    async def settlements_in_range(self, low: uuid.UUID, high: uuid.UUID) -> int:
        """How many settlements have an id in ``[low, high]``, counting to two: whether the ids starting
        with one prefix are shared. PostgreSQL orders UUIDs byte by byte, so a prefix is a range of
        ``settlements_by_id``."""
        return int(
            await self._fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM settlements WHERE settlement_id BETWEEN $1 AND $2 LIMIT 2) AS s",
                low,
                high,
            )
        )

    async def stored_settlement(
        self, *, settlement_id: uuid.UUID | None = None, request: SettleKey | None = None
    ) -> StoredSettlement | None:
        """A settlement by id, or by the request that made it."""
        if settlement_id is not None:
            row = await self._fetchrow(
                f"SELECT {STORED_COLUMNS} FROM settlements WHERE settlement_id = $1 LIMIT 1", settlement_id
            )
        elif request is not None:
            row = await self._fetchrow(
                f"SELECT {STORED_COLUMNS} FROM settlements WHERE terminal_id = $1 AND request_id = $2 LIMIT 1",
                request.terminal_id,
                request.request_id,
            )
        else:
            raise TypeError("name a settlement_id or a request")
        return _stored(row) if row is not None else None

    # ------------------------------------------------------------ reverse

    async def read_for_reversal(
        self, terminal_id: str, request_id: str, settlement_id: uuid.UUID
    ) -> tuple[AlreadySettled | None, tuple[bytes, str] | None]:
        """Whether this reversal request was answered before (its reversal's id, fingerprint and nonce),
        and the settlement's person and clinic."""
        row = await self._fetchrow(READ_FOR_REVERSAL, terminal_id, request_id, settlement_id)
        assert row is not None  # a SELECT without FROM always answers one row
        found = row["settlement"]
        settlement = (bytes(found[0]), found[1]) if found else None
        existing = row["existing"]
        if existing is None:
            return None, settlement
        return AlreadySettled(
            settlement_id=existing[0], request_hash=_bytes(existing[1]), nonce=_bytes(existing[2])
        ), settlement

    async def stored_reversal(self, terminal_id: str, request_id: str) -> StoredReversal | None:
        row = await self._fetchrow(STORED_REVERSAL, terminal_id, request_id)
        if row is None:
            return None
        return StoredReversal(
            reversal_id=row["reversal_id"],
            settlement_id=row["settlement_id"],
            terminal_id=row["terminal_id"],
            request_id=row["request_id"],
            created_at=row["created_at"],
            request_hash=_bytes(row["request_hash"]),
            nonce=_bytes(row["nonce"]),
            settlement=decode_record(row["record"]).result,
        )

    async def reverse(self, new: NewReversal, insurer_message: str | None = None) -> ReverseOutcome:
        """Reverse a settlement; ``insurer_message`` names the answered cancel of its remote part, flipped to
        committed in the same transaction (gateway/insurer.py)."""
        async with self._connection() as connection:
            try:
                async with connection.transaction():
                    row = await connection.fetchrow(LOCK_SETTLEMENT, new.person_key, new.settlement_id)
                    if row is None:
                        return NoSuchSettlement()
                    if row["reversal_id"] is not None:
                        return ReversedBefore()
                    settlement = decode_record(row["record"]).result
                    year = settlement.service_date.year
                    current = await connection.fetchrow(LOCK_ACCUMULATORS, new.person_key, year)
                    if self.faults.armed:
                        await self.faults.reach("reverse.after_lock")
                    # Adjustments booked on the bill since it was settled are taken back with it.
                    adjusted = await readjudication.adjusted_on(connection, new.person_key, new.settlement_id)
                    restored = give_back(settlement, counters_from(current["counters"]), adjusted.counters)
                    readjudication_id = await connection.fetchval(
                        WRITE_REVERSAL,
                        new.person_key,
                        new.reversal_id,
                        new.settlement_id,
                        new.terminal_id,
                        new.request_id,
                        new.reason,
                        new.booked_on,
                        new.request_hash,
                        new.nonce,
                        new.created_at,
                        json_text(restored),
                        year,
                        _json_encoder.encode({"clinic_id": row["clinic_id"], "reason": new.reason}).decode(),
                    )
                    if readjudication_id is not None:  # its adjustments and their orders go with the bill
                        await readjudication.take_back(
                            connection,
                            readjudication_id,
                            new.person_key,
                            year,
                            new.settlement_id,
                            (row["clinic_id"], settlement.visit_type),
                            adjusted,
                            booked_on=new.booked_on,
                            now=new.created_at,
                        )
                    if insurer_message is not None:
                        await insurer_messages.claim_answered(
                            connection, new.person_key, insurer_message, new.settlement_id
                        )
                    if self.faults.armed:
                        await self.faults.reach("reverse.before_commit")
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == "reversals_one_per_request":
                    return DuplicateRequest()
                if error.constraint_name == "reversals_person_key_settlement_id_key":
                    return ReversedBefore()
                raise
            if self.faults.armed:
                await self.faults.reach("reverse.after_commit")
        return Reversed(settlement)

    async def adjustments_on(self, person_key: bytes, settlement_id: uuid.UUID) -> list[tuple[dt.date, dict[str, int]]]:
        """The adjustments booked on one settlement, oldest first: each one's booking day and what each fund
        and the patient (``out_of_pocket``) pay more or less, by fund code."""
        async with self._connection() as connection:
            return await readjudication.adjustments_of(connection, person_key, settlement_id)

    def readjudicator(self, **options: Any) -> readjudication.Runner:
        """The background worker of the re-adjudication list over this store's pool (adapters/readjudication.py)."""
        return readjudication.Runner(self.pool, **options)

    async def claim_nonce(self, digest: bytes, expires_at: dt.datetime) -> bool:
        """Claim a signed write's nonce for every gateway process: False when another took it first."""
        async with self._connection() as connection:
            return await nonces.claim(connection, nonces.NonceClaim(digest, expires_at))

    async def prune_nonces(self) -> int:
        async with self._connection() as connection:
            return await nonces.prune(connection)

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")


class _LockedPerson:
    """A person-year under its row lock, inside the transaction ``Store.locked_person`` holds open."""

    def __init__(self, connection: asyncpg.Connection, snapshot: PersonSnapshot, person_key: bytes) -> None:
        self._connection = connection
        self.snapshot = snapshot
        self.snapshot_key = person_key

    async def write(self, new: NewSettlement) -> WriteOutcome:
        # Under the row lock the version cannot move, so this write applies; if it ever did not, the
        # transaction must fail rather than acknowledge a settlement never written.
        try:
            rows = await self._connection.fetch(write_statement([new]), *write_arguments([new]))
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == "settlements_one_per_request":
                return DuplicateRequest()
            raise
        (row,) = rows
        outcome = _write_outcome(row)
        if isinstance(outcome, VersionMoved):
            raise RuntimeError("the row-locked settlement write applied to no row")
        return outcome


def _write_outcome(row: asyncpg.Record) -> WriteOutcome:
    if row["written"]:
        return Written()
    if row["duplicate"]:
        return DuplicateRequest()
    if row["unclaimed"]:
        return AnswerGone()
    return VersionMoved()


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _read_outcome(row: asyncpg.Record) -> ReadOutcome:
    existing = row["existing"]
    if existing is not None:
        return AlreadySettled(settlement_id=existing[0], request_hash=_bytes(existing[1]), nonce=_bytes(existing[2]))
    if row["nonce_spent"]:
        return NonceSpent()
    if not row["person_exists"]:
        return UnknownPerson()
    found = row["accumulators"]
    if found is None:
        return PersonSnapshot(memberships=_memberships(row["memberships"]), counters={}, version=None)
    return PersonSnapshot(
        memberships=_memberships(row["memberships"]), counters=counters_from(found[0]), version=found[1]
    )


def _stored(row: asyncpg.Record) -> StoredSettlement:
    record = decode_record(row["record"])
    return StoredSettlement(
        settlement_id=row["settlement_id"],
        person_key=bytes(row["person_key"]),
        terminal_id=row["terminal_id"],
        request_id=row["request_id"],
        clinic_id=row["clinic_id"],
        person=record.person,
        items=record.items,
        settlement=record.result,
        created_at=row["created_at"],
        request_hash=_bytes(row["request_hash"]),
        nonce=_bytes(row["nonce"]),
        reversal_id=row["reversal_id"],
    )


def _memberships(rows: Any) -> tuple[Membership, ...]:
    return tuple(
        Membership(programme=row[0], code=row[1], effective_from=row[2], struck_off_on=row[3]) for row in rows or ()
    )
