"""The hash chains: of the audit trail, and of settlements and reversals; sealing and verifying.

Audit rows are inserted by concurrent transactions (reversals, registry changes),
so hashing at insert time would serialise those writers on one lock. Instead a
sealer, one at a time by advisory lock, appends a seal per audit row in a
separate append-only table: ``row_hash = SHA-256(prev_hash || canonical(row))``.
``verify`` walks the seals in order and names the first audit row that was
altered or removed, or the first broken link. Rows younger than a few seconds
are not yet sealed; ``verify`` reports how many are waiting.

Settlements and reversals are sealed by the minute instead (``seal_ledger`` and
``verify_ledger``, below): one seal per minute that had any, not one per row.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

SEAL_LOCK = 7_215_002
GENESIS = b"\x00" * 32
EMPTY = hashlib.sha256(b"").digest()  # the digest of a period without rows
SEAL_DELAY_SECONDS = 2  # let concurrent writers commit before their rows are chained
STRAGGLER_WINDOW = 100_000  # how far below the newest seal to look for late-committing rows

_COLUMNS = "a.audit_id, a.occurred_at, a.actor, a.action, a.subject, a.request_id, a.source, a.details::text AS details"


def canonical(row: asyncpg.Record) -> bytes:
    """The audit row's content in a fixed form. jsonb's text form is already normalised."""
    return json.dumps(
        [
            row["audit_id"],
            row["occurred_at"].isoformat(),
            row["actor"],
            row["action"],
            row["subject"],
            row["request_id"],
            row["source"],
            row["details"],
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def chain(prev_hash: bytes, row: asyncpg.Record) -> bytes:
    return hashlib.sha256(prev_hash + canonical(row)).digest()


async def seal(
    connection: asyncpg.Connection, *, limit: int = 10_000, delay_seconds: float = SEAL_DELAY_SECONDS
) -> int:
    """Seal up to ``limit`` unsealed audit rows. Returns how many; 0 if another sealer is busy."""
    async with connection.transaction():
        if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK):
            return 0
        head = await connection.fetchrow("SELECT audit_id, row_hash FROM audit_seals ORDER BY seal_seq DESC LIMIT 1")
        prev_hash = bytes(head["row_hash"]) if head else GENESIS
        low = max(0, (head["audit_id"] if head else 0) - STRAGGLER_WINDOW)
        rows = await connection.fetch(
            f"""SELECT {_COLUMNS} FROM audit_log a
                WHERE a.audit_id > $1
                  AND a.occurred_at < now() - make_interval(secs => $2)
                  AND NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.audit_id = a.audit_id)
                ORDER BY a.audit_id LIMIT $3""",
            low,
            delay_seconds,
            limit,
        )
        seals = []
        for row in rows:
            row_hash = chain(prev_hash, row)
            seals.append((row["audit_id"], prev_hash, row_hash))
            prev_hash = row_hash
        if seals:
            await connection.copy_records_to_table(
                "audit_seals", records=seals, columns=["audit_id", "prev_hash", "row_hash"]
            )
        return len(seals)


@dataclass(frozen=True)
class VerifyReport:
    sealed: int
    unsealed: int
    problem: str | None


async def verify(connection: asyncpg.Connection) -> VerifyReport:
    """Walk the whole chain, streaming; stop at the first problem and name it."""
    sealed = 0
    prev_hash = GENESIS
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        query = f"""SELECT s.seal_seq, s.audit_id AS sealed_id, s.prev_hash, s.row_hash, {_COLUMNS}
                    FROM audit_seals s LEFT JOIN audit_log a ON a.audit_id = s.audit_id
                    ORDER BY s.seal_seq"""
        async for row in connection.cursor(query, prefetch=2_000):
            if bytes(row["prev_hash"]) != prev_hash:
                return VerifyReport(
                    sealed,
                    0,
                    f"chain broken at seal {row['seal_seq']} (audit row "
                    f"{row['sealed_id']}): a seal before it was altered or removed",
                )
            if row["audit_id"] is None:
                return VerifyReport(sealed, 0, f"audit row {row['sealed_id']} was removed")
            if chain(prev_hash, row) != bytes(row["row_hash"]):
                return VerifyReport(sealed, 0, f"audit row {row['sealed_id']} was altered")
            prev_hash = bytes(row["row_hash"])
            sealed += 1
        unsealed = await connection.fetchval(
            "SELECT count(*) FROM audit_log a"
            " WHERE NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.audit_id = a.audit_id)"
        )
    return VerifyReport(sealed, unsealed, None)


# ---------------------------------------------------------------- settlements and reversals
#
# Money rows write no audit row (a settlement is one row: adapters/settlement_sql.py), so they
# get a chain of their own, by the minute rather than by the row (adapters/migrations/0011):
# a seal per minute of ``created_at`` that had any settlement or reversal, covering every row
# from the previous seal's end to its own. The rows' digests are computed where the rows are,
# in SQL: only the period's digest and 8 bytes a row (the locator) reach the sealer.

LEDGER_SEAL_LOCK = 7_215_003
LEDGER_FORM = 1  # the canonical form below; a new column in either table means a form 2
PERIOD = dt.timedelta(minutes=1)
QUIET_SEAL = dt.timedelta(hours=1)  # a stretch this long without rows gets an empty seal
MIN_LEDGER_GRACE_SECONDS = 120.0
LOCATOR_BYTES = 8

# Every column but a settlement's reversal mark (set later, once, and proved by the reversal's
# own row), by type, in text forms that do not depend on session settings (TimeZone, DateStyle,
# bytea_output). A settlement's ``record`` is appended as raw bytes after the row's text.
SETTLEMENT_COLUMNS: Final = (
    ("person_key", "bytea"),
    ("settlement_id", "uuid"),
    ("terminal_id", "text"),
    ("request_id", "text"),
    ("clinic_id", "text"),
    ("clinic_level", "text"),
    ("visit_type", "text"),
    ("service_date", "date"),
    ("booked_on", "date"),
    ("policy_id", "text"),
    ("total", "bigint"),
    ("eligible", "bigint"),
    ("insurance", "bigint"),
    ("veteran_subsidy", "bigint"),
    ("hardship_aid", "bigint"),
    ("out_of_pocket", "bigint"),
    ("insured", "boolean"),
    ("veteran_category", "text"),
    ("hardship_tier", "text"),
    ("caps_reached", "smallint"),
    ("deductible_taken", "bigint"),
    ("unpaid_added", "bigint"),
    ("request_hash", "bytea"),
    ("nonce", "bytea"),
    ("created_at", "timestamp with time zone"),
)
SETTLEMENT_RAW_COLUMN: Final = ("record", "bytea")
SETTLEMENT_UNSEALED_COLUMNS: Final = ("reversed_at", "reversal_id")
REVERSAL_COLUMNS: Final = (
    ("person_key", "bytea"),
    ("reversal_id", "uuid"),
    ("settlement_id", "uuid"),
    ("terminal_id", "text"),
    ("request_id", "text"),
    ("reason", "text"),
    ("booked_on", "date"),
    ("request_hash", "bytea"),
    ("nonce", "bytea"),
    ("created_at", "timestamp with time zone"),
)


def _text_form(alias: str, column: str, sql_type: str) -> str:
    value = f"{alias}.{column}"
    if sql_type == "bytea":
        return f"encode({value}, 'hex')"
    if sql_type == "date":
        return f"to_char({value}::timestamp, 'YYYY-MM-DD')"
    if sql_type == "timestamp with time zone":
        return f"""to_char({value} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')"""
    return value  # uuid, text, integers and booleans print the same under any setting


def _row_text(alias: str, columns: tuple[tuple[str, str], ...]) -> str:
    return f"convert_to(row({', '.join(_text_form(alias, name, kind) for name, kind in columns)})::text, 'UTF8')"


# Columns added after form 1 whose value was fixed for every earlier row: a row whose value is still
# that default adds nothing, so every earlier seal verifies as it was; any other value is covered by
# its normalised text (jsonb's text form does not depend on session settings). Columns after
# other_funds are labelled with their name, so that adjacent numbers cannot trade digits
# (self_pay_first 11 and over_limit 5 must not read like 1 and 15).
SETTLEMENT_SPARSE_COLUMNS: Final = (
    ("other_funds", "jsonb", "'{}'::jsonb"),
    ("self_pay_first", "bigint", "NULL"),
    ("over_limit", "bigint", "NULL"),
)
_UNLABELLED_SPARSE: Final = frozenset({"other_funds"})


def _sparse_text(alias: str) -> str:
    parts = []
    for name, _, default in SETTLEMENT_SPARSE_COLUMNS:
        value = f"{alias}.{name}::text" if name in _UNLABELLED_SPARSE else f"'{name}=' || {alias}.{name}::text || ';'"
        parts.append(
            f"(CASE WHEN {alias}.{name} IS NOT DISTINCT FROM {default} THEN ''::bytea"
            f" ELSE convert_to({value}, 'UTF8') END)"
        )
    return " || ".join(parts)


SETTLEMENT_DIGEST: Final = (
    f"sha256({_row_text('s', SETTLEMENT_COLUMNS)} || {_sparse_text('s')} || s.{SETTLEMENT_RAW_COLUMN[0]})"
)
REVERSAL_DIGEST: Final = f"sha256({_row_text('r', REVERSAL_COLUMNS)})"

_SINCE: Final = "coalesce($1::timestamptz, '-infinity')"  # $1 NULL: from the beginning
_MINUTE_ORIGIN: Final = "timestamptz '2000-01-01 00:00:00+00'"  # minutes on UTC minute boundaries

# The rows of [$1, $2), each with its digest; kind 0 settlements, 1 reversals.
_LEDGER_ROWS: Final = f"""
SELECT 0 AS kind, s.created_at, s.settlement_id AS id, s.person_key, {SETTLEMENT_DIGEST} AS digest
FROM settlements s WHERE s.created_at >= {_SINCE} AND s.created_at < $2::timestamptz
UNION ALL
SELECT 1, r.created_at, r.reversal_id, r.person_key, {REVERSAL_DIGEST}
FROM reversals r WHERE r.created_at >= {_SINCE} AND r.created_at < $2::timestamptz
"""
_ROW_ORDER: Final = "ORDER BY kind, created_at, id, person_key"
_PERIOD_AGGREGATES: Final = f"""
count(*) FILTER (WHERE kind = 0)::int AS settlements,
count(*) FILTER (WHERE kind = 1)::int AS reversals,
sha256(string_agg(digest, ''::bytea {_ROW_ORDER})) AS digest,
string_agg(substr(digest, 1, {LOCATOR_BYTES}), ''::bytea {_ROW_ORDER}) AS locator
"""
# The last seal's end and hash (NULL before the first), and where sealing stops: $1, or the start
# of the minute that began $2 seconds ago.
_HEAD: Final = f"""
SELECT l.period_end, l.row_hash,
       coalesce($1::timestamptz, date_bin('1 minute', now() - make_interval(secs => $2), {_MINUTE_ORIGIN})) AS until
FROM (SELECT) AS one
LEFT JOIN LATERAL (SELECT period_end, row_hash FROM ledger_seals ORDER BY period_end DESC LIMIT 1) AS l ON true
"""
# The first row's time in [$1, $2).
_FIRST_ROW: Final = f"""
SELECT least((SELECT min(created_at) FROM settlements WHERE created_at >= {_SINCE} AND created_at < $2::timestamptz),
             (SELECT min(created_at) FROM reversals WHERE created_at >= {_SINCE} AND created_at < $2::timestamptz))
"""
_FIRST_BOOKING_DAY: Final = """
SELECT least((SELECT min(booked_on) FROM settlements), (SELECT min(booked_on) FROM reversals))
"""
# The rows of one period to seal, all in one group (a period with no rows returns none).
_PERIODS_TO_SEAL: Final = f"SELECT {_PERIOD_AGGREGATES} FROM ({_LEDGER_ROWS}) AS rows HAVING count(*) > 0"
# The same, recomputed for a run of consecutive seals: $3 holds their ends, so a row's bucket is
# how many of them it is at or past, which is the index of its seal in the run.
_PERIODS_TO_VERIFY: Final = f"""
SELECT width_bucket(created_at, $3::timestamptz[]) AS seal, {_PERIOD_AGGREGATES}
FROM ({_LEDGER_ROWS}) AS rows GROUP BY 1
"""
_SEAL_COLUMNS: Final = "period_start, period_end, form, settlements, reversals, digest, locator, prev_hash, row_hash"


def ledger_seal_grace(request_timeout: float) -> float:
    """How long after a minute ends it is sealed: no write in flight may still commit into it.

    A settlement's or reversal's ``created_at`` is set by the gateway just before its write. A
    write queued for a batch is dropped once its request's deadline (``request_timeout``) has
    passed (adapters/batching.py), and one that started holds its connection at most a pool
    acquire (5 s) and two statements (15 s statement_timeout each, and another acquire): about
    ``request_timeout`` + 40 s. Twice that, and never under two minutes, leaves room for clock
    skew between gateways and the database. A row that still commits into a sealed minute is
    reported by ``verify_ledger`` as added after its minute was sealed.
    """
    return max(MIN_LEDGER_GRACE_SECONDS, 2 * (request_timeout + 40.0))


def _minute(instant: dt.datetime) -> dt.datetime:
    """The start of the UTC minute ``instant`` falls in."""
    return instant.astimezone(dt.UTC).replace(second=0, microsecond=0)


def _utc(instant: dt.datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(dt.UTC).isoformat()


def ledger_chain(prev_hash: bytes, seal: Mapping[str, Any]) -> bytes:
    """The seal's hash: its period, form, counts, digest and locator, chained to the seal before."""
    canonical = json.dumps(
        [
            seal["form"],
            _utc(seal["period_start"]),
            _utc(seal["period_end"]),
            seal["settlements"],
            seal["reversals"],
            bytes(seal["digest"]).hex(),
            hashlib.sha256(bytes(seal["locator"])).hexdigest(),
        ],
        separators=(",", ":"),
    ).encode()
    return hashlib.sha256(prev_hash + canonical).digest()


async def seal_ledger(
    connection: asyncpg.Connection,
    *,
    grace_seconds: float = MIN_LEDGER_GRACE_SECONDS,
    until: dt.datetime | None = None,
) -> int:
    """Seal the next minute of settlements and reversals, if it ended ``grace_seconds`` ago or more.

    ``until`` (tests) seals rows created before it instead, even part of a minute. One call seals
    one minute with rows, together with the empty minutes before it, and returns how many rows it
    sealed: 0 when none were ready or another sealer is busy. A quiet stretch of ``QUIET_SEAL`` or
    more gets one empty seal, so the search for the next row never has far to look.
    """
    async with connection.transaction():
        if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", LEDGER_SEAL_LOCK):
            return 0
        head = await connection.fetchrow(_HEAD, until, grace_seconds)
        start: dt.datetime | None = head["period_end"]
        prev_hash = bytes(head["row_hash"]) if start is not None else GENESIS
        until = head["until"]
        if start is not None and until <= start:
            return 0
        # Most often the next minute has rows; else look further, in growing steps.
        end = until if start is None else min(until, _minute(start) + PERIOD)
        periods = [] if start is None else await connection.fetch(_PERIODS_TO_SEAL, start, end)
        if not periods:
            first = await _first_row(connection, start if start is not None else await _first_day(connection), until)
            if first is None and start is None:
                first = await _first_row(connection, None, until)  # rows dated before their booking day
            if first is not None:
                end = min(until, _minute(first) + PERIOD)
                periods = await connection.fetch(_PERIODS_TO_SEAL, start, end)
            elif start is None or until - start < QUIET_SEAL:
                return 0
            else:
                end = until
                periods = [{"settlements": 0, "reversals": 0, "digest": EMPTY, "locator": b""}]
        (period,) = periods
        seal = {
            "period_start": start,
            "period_end": end,
            "form": LEDGER_FORM,
            "settlements": period["settlements"],
            "reversals": period["reversals"],
            "digest": bytes(period["digest"]),
            "locator": bytes(period["locator"]),
            "prev_hash": prev_hash,
        }
        seal["row_hash"] = ledger_chain(prev_hash, seal)
        await connection.execute(
            f"INSERT INTO ledger_seals ({_SEAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            *(seal[name] for name in _SEAL_COLUMNS.split(", ")),
        )
        return int(seal["settlements"] + seal["reversals"])


async def _first_day(connection: asyncpg.Connection) -> dt.datetime | None:
    """Where to start looking for the very first row: a day before the first booking day.

    Both tables have an index on the booking day, none that orders ``created_at``, so this is
    two index lookups where a minimum of ``created_at`` would read every row. A row is booked
    on the day of its ``created_at`` in China (UTC+8), so it is never created before this.
    """
    day: dt.date | None = await connection.fetchval(_FIRST_BOOKING_DAY)
    return None if day is None else dt.datetime.combine(day - dt.timedelta(days=1), dt.time(), dt.UTC)


async def _first_row(
    connection: asyncpg.Connection, start: dt.datetime | None, until: dt.datetime
) -> dt.datetime | None:
    """When the first row at or after ``start`` and before ``until`` was created, if any.

    A BRIN index finds no minimum without reading the rows it covers, so look one minute ahead,
    then four, sixteen...: a long backlog is never read whole just to find where it begins.
    """
    window = PERIOD
    while True:
        upper = until if start is None else min(until, start + window)
        first: dt.datetime | None = await connection.fetchval(_FIRST_ROW, start, upper)
        if first is not None or upper >= until:
            return first
        start, window = upper, window * 4


@dataclass(frozen=True)
class LedgerReport:
    periods: int
    settlements: int
    reversals: int
    waiting: int
    head: bytes
    problem: str | None


def _when(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f" if instant.microsecond else "%Y-%m-%d %H:%M:%S")


def _period(seal: Mapping[str, Any]) -> str:
    start = "the beginning" if seal["period_start"] is None else _when(seal["period_start"])
    return f"the period from {start} to {_when(seal['period_end'])} UTC"


async def verify_ledger(connection: asyncpg.Connection, *, batch_rows: int = 50_000) -> LedgerReport:
    """Walk the seals in order and recompute each period's digest from the live rows.

    Stops at the first problem: a seal altered or removed (the chain breaks), or a period whose
    rows no longer match its seal; then the seal's locator names the row that changed. Periods
    are recomputed in runs of about ``batch_rows`` rows, each one range read of both tables.
    """
    counts = [0, 0, 0]
    prev_hash = GENESIS
    prev_end: dt.datetime | None = None
    run: list[asyncpg.Record] = []
    run_rows = 0
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        while True:
            page = await connection.fetch(
                f"SELECT {_SEAL_COLUMNS} FROM ledger_seals WHERE period_end > {_SINCE} ORDER BY period_end LIMIT 1000",
                prev_end,
            )
            for seal in page:
                if bytes(seal["prev_hash"]) != prev_hash or seal["period_start"] != prev_end:
                    problem = f"ledger chain broken at {_period(seal)}: a seal before it was altered or removed"
                    return LedgerReport(*counts, 0, prev_hash, problem)
                if ledger_chain(prev_hash, seal) != bytes(seal["row_hash"]):
                    return LedgerReport(*counts, 0, prev_hash, f"the seal of {_period(seal)} was altered")
                prev_hash = bytes(seal["row_hash"])
                prev_end = seal["period_end"]
                run.append(seal)
                run_rows += seal["settlements"] + seal["reversals"]
                if run_rows >= batch_rows or len(run) >= 5_000:
                    if problem := await _verify_run(connection, run):
                        return LedgerReport(*counts, 0, prev_hash, problem)
                    counts = _add(counts, run)
                    run, run_rows = [], 0
            if len(page) < 1000:
                break
        if run:
            if problem := await _verify_run(connection, run):
                return LedgerReport(*counts, 0, prev_hash, problem)
            counts = _add(counts, run)
        waiting = await connection.fetchval(
            f"SELECT (SELECT count(*) FROM settlements WHERE created_at >= {_SINCE})"
            f" + (SELECT count(*) FROM reversals WHERE created_at >= {_SINCE})",
            prev_end,
        )
    return LedgerReport(*counts, waiting, prev_hash, None)


def _add(counts: list[int], run: list[asyncpg.Record]) -> list[int]:
    return [
        counts[0] + len(run),
        counts[1] + sum(seal["settlements"] for seal in run),
        counts[2] + sum(seal["reversals"] for seal in run),
    ]


async def _verify_run(connection: asyncpg.Connection, run: list[asyncpg.Record]) -> str | None:
    ends = [seal["period_end"] for seal in run]
    live = {
        row["seal"]: (row["settlements"], row["reversals"], bytes(row["digest"]))
        for row in await connection.fetch(_PERIODS_TO_VERIFY, run[0]["period_start"], ends[-1], ends)
    }
    for index, seal in enumerate(run):
        if live.get(index, (0, 0, EMPTY)) != (seal["settlements"], seal["reversals"], bytes(seal["digest"])):
            return await _name_the_change(connection, seal)
    return None


async def _name_the_change(connection: asyncpg.Connection, seal: asyncpg.Record) -> str:
    """Which rows of a period no longer match its seal, told by the seal's locator."""
    rows = await connection.fetch(
        f"SELECT kind, id, substr(digest, 1, {LOCATOR_BYTES}) AS prefix FROM ({_LEDGER_ROWS}) AS rows {_ROW_ORDER}",
        seal["period_start"],
        seal["period_end"],
    )
    locator = bytes(seal["locator"])
    prefixes = [locator[n : n + LOCATOR_BYTES] for n in range(0, len(locator), LOCATOR_BYTES)]
    sealed = (prefixes[: seal["settlements"]], prefixes[seal["settlements"] :])
    changes = []
    for kind, name in enumerate(("settlement", "reversal")):
        unmatched = collections.Counter(sealed[kind])
        changed = []
        for row in rows:
            if row["kind"] != kind:
                continue
            prefix = bytes(row["prefix"])
            if unmatched[prefix] > 0:
                unmatched[prefix] -= 1
            else:
                changed.append(row["id"])
        removed = sum(unmatched.values())
        altered = min(removed, len(changed))
        changes += [f"{name} {id_} was altered" for id_ in changed[:altered]]
        changes += [f"{name} {id_} was added after its period was sealed" for id_ in changed[altered:]]
        if removed > altered:
            changes.append(await _removed(connection, seal, name, removed - altered))
    detail = "; ".join(changes) or "its rows were changed"
    return f"{_period(seal)} no longer matches its seal: {detail}"


async def _removed(connection: asyncpg.Connection, seal: asyncpg.Record, name: str, count: int) -> str:
    """A removed reversal is named by the mark it left on its settlement; a settlement only counted."""
    if name == "reversal":
        marks = await connection.fetch(
            f"""SELECT s.settlement_id, s.reversal_id FROM settlements s
               WHERE s.reversal_id IS NOT NULL
                 AND s.reversed_at >= {_SINCE} AND s.reversed_at < $2::timestamptz
                 AND NOT EXISTS (SELECT 1 FROM reversals r
                                 WHERE r.person_key = s.person_key AND r.reversal_id = s.reversal_id)
               ORDER BY s.reversed_at""",
            seal["period_start"],
            seal["period_end"],
        )
        if len(marks) == count:
            return "; ".join(
                f"reversal {mark['reversal_id']} of settlement {mark['settlement_id']} was removed" for mark in marks
            )
    return f"{count} {name}(s) sealed in it were removed"
