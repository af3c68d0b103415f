"""The audit trail's hash chain: sealing new rows and verifying the whole chain.

Audit rows are inserted by concurrent transactions (every settlement writes one),
so hashing at insert time would serialise all settlements on one lock. Instead a
sealer, one at a time by advisory lock, appends a seal per audit row in a
separate append-only table: ``row_hash = SHA-256(prev_hash || canonical(row))``.
``verify`` walks the seals in order and names the first audit row that was
altered or removed, or the first broken link. Rows younger than a few seconds
are not yet sealed; ``verify`` reports how many are waiting.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import asyncpg

SEAL_LOCK = 7_215_002
GENESIS = b"\x00" * 32
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
