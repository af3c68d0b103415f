"""The PostgreSQL store: every query the gateway runs, and the settle and reversal transactions.

A settlement takes two round trips on one connection. The first reads the
idempotency record, the person, their memberships and their person-year
accumulator row with its version. The engine computes in between. The second is
one statement that writes the accumulators, the settlement, its ledger lines, the
audit row and the idempotency record, and commits. It applies only if the
accumulator version is still the one read (optimistic concurrency), so a
settlement never rests on stale totals. A settlement that loses that race (two
checkouts of one person at the same moment, which is rare) runs again inside a
transaction holding the row lock. Different people never wait on each other. A
concurrent duplicate of the same request fails on the idempotency key, and the
caller replays the stored answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from adapters import nonces
from adapters.faults import Faults
from adapters.nonces import NonceClaim
from adapters.registry_stats import registry_stats
from adapters.registry_store import ImportReport, PersonEntry, apply_entries
from adapters.terminal_keys import ActiveKey, load_keys
from settlement.models import ACCUMULATOR_FIELDS, Accumulators, Settlement
from settlement.policy import Policy
from settlement.registry import Membership

if TYPE_CHECKING:
    from adapters.batching import SettleBatcher

_json_encoder = msgspec.json.Encoder()
ACCOUNTS = ("insurance_fund", "priority_care_fund", "aid_fund", "patient", "clinic")
_ACC_COLUMNS = ", ".join(ACCUMULATOR_FIELDS)

_LOCK_ACCUMULATORS = f"""
INSERT INTO accumulators (person_key, year) VALUES ($1, $2)
ON CONFLICT (person_key, year) DO UPDATE SET person_key = EXCLUDED.person_key
RETURNING {_ACC_COLUMNS}, version
"""

# The first round trip of a settlement: everything the decision needs, in one snapshot, and the
# claim of the request's nonce ($5, $6; adapters/nonces.py), which commits with this statement.
_READ_FOR_SETTLE = f"""
WITH claimed AS (
    INSERT INTO request_nonces (digest, expires_at) SELECT $5::bytea, $6::timestamptz WHERE $5::bytea IS NOT NULL
    ON CONFLICT (digest) DO NOTHING RETURNING digest
)
SELECT
    ($5::bytea IS NULL OR EXISTS (SELECT 1 FROM claimed)) AS nonce_fresh,
    (SELECT row(request_hash, status, response, operation) FROM idempotency_keys
      WHERE terminal_id = $1 AND request_id = $2) AS idempotency,
    EXISTS (SELECT 1 FROM people WHERE person_key = $3) AS person_exists,
    (SELECT coalesce(array_agg(row(programme, code, effective_from, struck_off_on)), '{{}}')
       FROM memberships WHERE person_key = $3) AS memberships,
    (SELECT row({_ACC_COLUMNS}, version) FROM accumulators WHERE person_key = $3 AND year = $4) AS accumulators
"""

# The second round trip: the whole settlement in one statement, which commits on its own.
# Every insert selects from the accumulator write (``acc``), so nothing is written unless
# that write applied: the row still has the version that was read ($38), or, when there
# was no row, a new one could be created (a unique violation means another settlement
# created it first). Both variants keep the caps CHECKs strict.
_WRITE_REST_OF_SETTLEMENT = """
, settlement AS (
    INSERT INTO settlements (person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level,
                             visit_type, service_date, policy_id, total, eligible, insurance, veteran_subsidy,
                             hardship_aid, out_of_pocket, request, result, created_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 FROM acc
), ledger AS (
    INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type, year,
                                booked_on, created_at)
    SELECT $1, $2, 'settlement', line.account, line.amount, $5, $7, $19, $20, $18
    FROM acc, unnest($21::text[], $22::bigint[]) AS line(account, amount)
), audit AS (
    INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
    SELECT $18, $3, 'settlement.created', $2::text, $4, $37::jsonb FROM acc
)
INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
SELECT $3, $4, 'settle', $34, $35, $36, $18 FROM acc
RETURNING true
"""

_WRITE_SETTLEMENT_IF_UNCHANGED = (
    """
WITH acc AS (
    UPDATE accumulators SET
        outpatient_deductible_used = $23, insurance_outpatient_paid = $24, insurance_inpatient_paid = $25,
        subsidy_paid = $26, aid_paid = $27, unpaid_eligible = $28,
        outpatient_deductible_cap = GREATEST(outpatient_deductible_cap, $29),
        insurance_outpatient_cap = GREATEST(insurance_outpatient_cap, $30),
        insurance_inpatient_cap = GREATEST(insurance_inpatient_cap, $31),
        subsidy_cap = GREATEST(subsidy_cap, $32),
        aid_cap = GREATEST(aid_cap, $33),
        version = version + 1,
        updated_at = $18
    WHERE person_key = $1 AND year = $19 AND version = $38
    RETURNING 1
)"""
    + _WRITE_REST_OF_SETTLEMENT
)

_WRITE_SETTLEMENT_WITH_NEW_ROW = (
    """
WITH acc AS (
    INSERT INTO accumulators (person_key, year, outpatient_deductible_used, insurance_outpatient_paid,
                              insurance_inpatient_paid, subsidy_paid, aid_paid, unpaid_eligible,
                              outpatient_deductible_cap, insurance_outpatient_cap, insurance_inpatient_cap,
                              subsidy_cap, aid_cap, version, updated_at)
    VALUES ($1, $19, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, 1, $18)
    RETURNING 1
)"""
    + _WRITE_REST_OF_SETTLEMENT
)

_LOCK_SETTLEMENT = """
SELECT clinic_id, visit_type, service_date, result, reversed_at
FROM settlements WHERE person_key = $1 AND settlement_id = $2
FOR UPDATE
"""

_LOCK_ACCUMULATORS_FOR_REVERSAL = f"""
SELECT {_ACC_COLUMNS} FROM accumulators WHERE person_key = $1 AND year = $2 FOR UPDATE
"""

_WRITE_REVERSAL = """
WITH reversal AS (
    INSERT INTO reversals (person_key, reversal_id, settlement_id, terminal_id, request_id, reason, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
), ledger AS (
    INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type, year,
                                booked_on, created_at)
    SELECT $1, $3, 'reversal', account, amount, $8, $9, $10, $11, $7
    FROM unnest($12::text[], $13::bigint[]) AS line(account, amount)
), accumulators_update AS (
    UPDATE accumulators SET
        outpatient_deductible_used = $14, insurance_outpatient_paid = $15, insurance_inpatient_paid = $16,
        subsidy_paid = $17, aid_paid = $18, unpaid_eligible = $19, version = version + 1, updated_at = $7
    WHERE person_key = $1 AND year = $10
), settlement_update AS (
    UPDATE settlements SET reversed_at = $7, reversal_id = $2
    WHERE person_key = $1 AND settlement_id = $3
), audit AS (
    INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
    VALUES ($7, $4, 'settlement.reversed', $3::text, $5, $23::jsonb)
)
INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
VALUES ($4, $5, 'reverse', $20, $21, $22, $7)
"""

_PRE_REVERSE = """
SELECT
    (SELECT row(request_hash, status, response, operation) FROM idempotency_keys
      WHERE terminal_id = $1 AND request_id = $2) AS idempotency,
    (SELECT row(person_key, clinic_id) FROM settlements WHERE settlement_id = $3 LIMIT 1) AS settlement
"""


class StoredAnswer(msgspec.Struct, frozen=True):
    request_hash: bytes
    status: int
    response: bytes
    operation: str


class Caps(msgspec.Struct, frozen=True, kw_only=True):
    """The caps in force for a settlement, written beside the accumulators for the CHECK constraints."""

    outpatient_deductible: int
    insurance_outpatient: int
    insurance_inpatient: int
    subsidy: int
    aid: int


def ledger_lines(settlement: Settlement, sign: int = 1) -> tuple[list[str], list[int]]:
    """Double-entry lines: each payer and the patient debited, the clinic credited the total."""
    amounts = [
        settlement.insurance,
        settlement.veteran_subsidy,
        settlement.hardship_aid,
        settlement.out_of_pocket,
        -settlement.total,
    ]
    return list(ACCOUNTS), [sign * amount for amount in amounts]


def _answer(record: Any) -> StoredAnswer | None:
    if record is None:
        return None
    return StoredAnswer(bytes(record[0]), record[1], bytes(record[2]), record[3])


@dataclass(frozen=True, slots=True)
class SettleJob:
    """Everything one settlement needs from the service: its identity, and how to compute and render it."""

    person_key: bytes
    year: int
    compute: Callable[[list[Membership], Accumulators], tuple[Settlement, Caps]]
    render: Callable[[uuid.UUID, Settlement, dt.datetime], bytes]
    settlement_id: uuid.UUID
    terminal_id: str
    request_id: str
    request_hash: bytes
    clinic_id: str
    request_document: str
    booked_on: dt.date
    now: dt.datetime
    # The signed request's nonce, claimed for every process in the settlement's first read; None when
    # it was claimed already (a settlement run again on its own after its batch read claimed it).
    nonce: NonceClaim | None = None

    def arguments(self, settlement: Settlement, caps: Caps, response: bytes) -> list[Any]:
        """Parameters $1-$37 of both settlement writes."""
        after = settlement.accumulators_after
        accounts, amounts = ledger_lines(settlement)
        return [
            self.person_key,
            self.settlement_id,
            self.terminal_id,
            self.request_id,
            self.clinic_id,
            settlement.clinic_level,
            settlement.visit_type,
            settlement.service_date,
            settlement.policy_version,
            settlement.total,
            settlement.eligible,
            settlement.insurance,
            settlement.veteran_subsidy,
            settlement.hardship_aid,
            settlement.out_of_pocket,
            self.request_document,
            _json_encoder.encode(settlement).decode(),
            self.now,
            self.year,
            self.booked_on,
            accounts,
            amounts,
            after.outpatient_deductible_used,
            after.insurance_outpatient_paid,
            after.insurance_inpatient_paid,
            after.subsidy_paid,
            after.aid_paid,
            after.unpaid_eligible,
            caps.outpatient_deductible,
            caps.insurance_outpatient,
            caps.insurance_inpatient,
            caps.subsidy,
            caps.aid,
            self.request_hash,
            200,
            response,
            _audit_details(self.clinic_id, settlement),
        ]


class AlreadyAnswered(Exception):
    """The request id already has a stored answer: replay it."""

    def __init__(self, stored: StoredAnswer) -> None:
        super().__init__("request already answered")
        self.stored = stored


class NonceReused(Exception):
    """Another gateway process already took a request with this key id and nonce: a replay."""


class UnknownPerson(Exception):
    """No person is registered under the key."""


class DuplicateRequest(Exception):
    """A concurrent copy of the request committed first; replay its answer."""


class RequestAlreadySettled(Exception):
    """The request settled long ago and its idempotency record has aged out: refuse, never settle again."""


class SettlementMissing(Exception):
    pass


class AlreadyReversed(Exception):
    pass


class Store:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        acquire_timeout: float = 5.0,
        reports_pool: asyncpg.Pool | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.pool = pool
        # Named fault points (adapters/faults.py): empty outside fault tests.
        self.faults = faults or Faults()
        # Settlements that lost the optimistic race and ran again under the row lock (for metrics and tests).
        self.optimistic_retries = 0
        # Set by the app when micro-batching is on (MEDSETTLE_SETTLE_BATCH_MAX > 1).
        self.batcher: SettleBatcher | None = None
        # Reports may read from a replica (REPORTS_DATABASE_URL); money is only ever read from the primary.
        self.reports_pool = reports_pool or pool
        # Waiting for a connection is bounded, so pool exhaustion answers 503 instead of hanging.
        self.acquire_timeout = acquire_timeout

    def _connection(self) -> Any:
        return self.pool.acquire(timeout=self.acquire_timeout)

    def reports_connection(self) -> Any:
        """A connection for read-only reports: the replica when one is configured."""
        return self.reports_pool.acquire(timeout=self.acquire_timeout)

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

    async def clinics(self, level: str | None = None) -> list[asyncpg.Record]:
        if level is None:
            return await self._fetch("SELECT clinic_id, name, level, region FROM clinics ORDER BY clinic_id")
        return await self._fetch(
            "SELECT clinic_id, name, level, region FROM clinics WHERE level = $1 ORDER BY clinic_id", level
        )

    async def terminal_keys(self, key_encryption_key: bytes, only: str | None = None) -> dict[str, ActiveKey]:
        async with self._connection() as connection:
            return await load_keys(connection, key_encryption_key, only)

    async def sync_policies(self, policies: list[tuple[Policy, str, str]]) -> None:
        """Record each loaded policy version. A version id already stored with other text is refused,
        because settlements that name it must keep meaning what they meant."""
        async with self._connection() as connection, connection.transaction():
            for policy, source, document in policies:
                stored = await connection.fetchrow(
                    "SELECT document, effective_from FROM policy_versions WHERE policy_id = $1", policy.id
                )
                if stored is None:
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

    async def registry_stats(self, *, on: dt.date, period_from: dt.date, period_to: dt.date) -> dict[str, object]:
        async with self.reports_connection() as connection:
            return await registry_stats(connection, on=on, period_from=period_from, period_to=period_to)

    async def memberships(self, person_key: bytes) -> list[Membership]:
        rows = await self._fetch(
            "SELECT programme, code, effective_from, struck_off_on FROM memberships WHERE person_key = $1"
            " ORDER BY programme, effective_from",
            person_key,
        )
        return _memberships(rows)

    async def person_for_eligibility(self, person_key: bytes, year: int) -> tuple[bool, list[Membership], Accumulators]:
        row = await self._fetchrow(
            f"""SELECT EXISTS (SELECT 1 FROM people WHERE person_key = $1) AS person_exists,
                   (SELECT coalesce(array_agg(row(programme, code, effective_from, struck_off_on)), '{{}}')
                      FROM memberships WHERE person_key = $1) AS memberships,
                   (SELECT row({_ACC_COLUMNS}) FROM accumulators WHERE person_key = $1 AND year = $2) AS acc""",
            person_key,
            year,
        )
        accumulators = (
            Accumulators(**dict(zip(ACCUMULATOR_FIELDS, row["acc"], strict=True))) if row["acc"] else Accumulators()
        )
        return row["person_exists"], _memberships(row["memberships"]), accumulators

    # ------------------------------------------------------------ settle

    async def stored_answer(self, terminal_id: str, request_id: str) -> StoredAnswer | None:
        record = await self._fetchval(
            "SELECT row(request_hash, status, response, operation) FROM idempotency_keys"
            " WHERE terminal_id = $1 AND request_id = $2",
            terminal_id,
            request_id,
        )
        return _answer(record)

    async def settle(self, job: SettleJob) -> tuple[Settlement, bytes]:
        """Settle once: read, compute, and write-and-commit in one statement if nothing changed in between.

        Raises NonceReused when another process took the request's nonce, AlreadyAnswered when the
        request id has a stored answer, UnknownPerson, DuplicateRequest
        when a concurrent copy committed first, and RequestAlreadySettled when an aged-out request id
        comes back. With a batcher, concurrent settlements of different people share the round trips
        and the commit (adapters/batching.py); each is still all or nothing.
        """
        if self.batcher is not None:
            return await self.batcher.submit(job)
        return await self.settle_one(job)

    async def settle_one(self, job: SettleJob) -> tuple[Settlement, bytes]:
        """One settlement on its own connection: two round trips, or a row-locked retry after a lost race."""
        person_key, year, terminal_id, request_id = job.person_key, job.year, job.terminal_id, job.request_id
        compute, render, settlement_id, now = job.compute, job.render, job.settlement_id, job.now
        arguments = job.arguments

        async with self._connection() as connection:
            try:
                nonce = job.nonce
                row = await connection.fetchrow(
                    _READ_FOR_SETTLE,
                    terminal_id,
                    request_id,
                    person_key,
                    year,
                    nonce.digest if nonce else None,
                    nonce.expires_at if nonce else None,
                )
                if not row["nonce_fresh"]:
                    raise NonceReused
                stored = _answer(row["idempotency"])
                if stored is not None:
                    raise AlreadyAnswered(stored)
                if not row["person_exists"]:
                    raise UnknownPerson
                memberships = _memberships(row["memberships"])
                found = row["accumulators"]
                accumulators = Accumulators(**dict(zip(ACCUMULATOR_FIELDS, found, strict=False))) if found else None
                version = found[len(ACCUMULATOR_FIELDS)] if found else None
                if self.faults.armed:
                    await self.faults.reach("settle.after_lock")
                settlement, caps = compute(memberships, accumulators or Accumulators())
                response = render(settlement_id, settlement, now)
                if self.faults.armed:
                    await self.faults.reach("settle.before_commit")
                try:
                    if found:
                        written = await connection.fetchval(
                            _WRITE_SETTLEMENT_IF_UNCHANGED, *arguments(settlement, caps, response), version
                        )
                    else:
                        written = await connection.fetchval(
                            _WRITE_SETTLEMENT_WITH_NEW_ROW, *arguments(settlement, caps, response)
                        )
                except asyncpg.UniqueViolationError as error:
                    if error.constraint_name != "accumulators_pkey":
                        raise
                    written = False
                if not written:
                    # Another settlement of this person committed in between: do it again under the row lock.
                    self.optimistic_retries += 1
                    async with connection.transaction():
                        locked = await connection.fetchrow(_LOCK_ACCUMULATORS, person_key, year)
                        current = Accumulators(**{field: locked[field] for field in ACCUMULATOR_FIELDS})
                        settlement, caps = compute(memberships, current)
                        response = render(settlement_id, settlement, now)
                        # Under the row lock the version cannot move, so this write applies; if it ever did
                        # not, the transaction must fail rather than acknowledge a settlement never written.
                        if not await connection.fetchval(
                            _WRITE_SETTLEMENT_IF_UNCHANGED, *arguments(settlement, caps, response), locked["version"]
                        ):
                            raise RuntimeError("the row-locked settlement write applied to no row")
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == "idempotency_keys_pkey":
                    raise DuplicateRequest from None
                if error.constraint_name == "settlements_one_per_request":
                    raise RequestAlreadySettled from None
                raise
            if self.faults.armed:
                await self.faults.reach("settle.after_commit")
        return settlement, response

    async def get_settlement(self, settlement_id: uuid.UUID) -> asyncpg.Record | None:
        return await self._fetchrow(
            """SELECT settlement_id, terminal_id, request_id, clinic_id, request->>'person_id' AS person, result,
                      created_at, reversal_id
               FROM settlements WHERE settlement_id = $1 LIMIT 1""",
            settlement_id,
        )

    # ------------------------------------------------------------ reverse

    async def before_reverse(
        self, terminal_id: str, request_id: str, settlement_id: uuid.UUID
    ) -> tuple[StoredAnswer | None, tuple[bytes, str] | None]:
        row = await self._fetchrow(_PRE_REVERSE, terminal_id, request_id, settlement_id)
        found = row["settlement"]
        return _answer(row["idempotency"]), (bytes(found[0]), found[1]) if found else None

    async def reverse(
        self,
        *,
        person_key: bytes,
        settlement_id: uuid.UUID,
        reversal_id: uuid.UUID,
        terminal_id: str,
        request_id: str,
        request_hash: bytes,
        reason: str,
        give_back: Callable[[Settlement, Accumulators], Accumulators],
        render: Callable[[Settlement, dt.datetime], bytes],
        booked_on: dt.date,
        now: dt.datetime,
    ) -> tuple[Settlement, bytes]:
        async with self._connection() as connection:
            try:
                async with connection.transaction():
                    row = await connection.fetchrow(_LOCK_SETTLEMENT, person_key, settlement_id)
                    if row is None:
                        raise SettlementMissing
                    if row["reversed_at"] is not None:
                        raise AlreadyReversed
                    settlement = msgspec.json.decode(row["result"], type=Settlement)
                    year = settlement.service_date.year
                    current = await connection.fetchrow(_LOCK_ACCUMULATORS_FOR_REVERSAL, person_key, year)
                    if self.faults.armed:
                        await self.faults.reach("reverse.after_lock")
                    restored = give_back(settlement, Accumulators(**dict(current)))
                    response = render(settlement, now)
                    accounts, amounts = ledger_lines(settlement, sign=-1)
                    await connection.execute(
                        _WRITE_REVERSAL,
                        person_key,
                        reversal_id,
                        settlement_id,
                        terminal_id,
                        request_id,
                        reason,
                        now,
                        row["clinic_id"],
                        row["visit_type"],
                        year,
                        booked_on,
                        accounts,
                        amounts,
                        restored.outpatient_deductible_used,
                        restored.insurance_outpatient_paid,
                        restored.insurance_inpatient_paid,
                        restored.subsidy_paid,
                        restored.aid_paid,
                        restored.unpaid_eligible,
                        request_hash,
                        200,
                        response,
                        _audit_details(row["clinic_id"], settlement, reason=reason),
                    )
                    if self.faults.armed:
                        await self.faults.reach("reverse.before_commit")
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name == "idempotency_keys_pkey":
                    raise DuplicateRequest from None
                if error.constraint_name == "reversals_person_key_settlement_id_key":
                    raise AlreadyReversed from None
                raise
            if self.faults.armed:
                await self.faults.reach("reverse.after_commit")
        return settlement, response

    async def claim_nonce(self, nonce: NonceClaim) -> bool:
        """Claim a signed write's nonce for every gateway process: False when another took it first."""
        async with self._connection() as connection:
            return await nonces.claim(connection, nonce)

    async def prune_nonces(self) -> int:
        async with self._connection() as connection:
            return await nonces.prune(connection)

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")


def _audit_details(clinic_id: str, settlement: Settlement, reason: str | None = None) -> str:
    details: dict[str, object] = {
        "clinic_id": clinic_id,
        "total": settlement.total,
        "insurance": settlement.insurance,
        "veteran_subsidy": settlement.veteran_subsidy,
        "hardship_aid": settlement.hardship_aid,
        "out_of_pocket": settlement.out_of_pocket,
        "policy_version": settlement.policy_version,
    }
    if reason is not None:
        details["reason"] = reason
    return _json_encoder.encode(details).decode()


def _memberships(rows: Any) -> list[Membership]:
    return [
        Membership(programme=row[0], code=row[1], effective_from=row[2], struck_off_on=row[3]) for row in rows or ()
    ]
