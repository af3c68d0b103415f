"""Retention of idempotency records.

A record answers retries of its request with the first answer. It is kept for the
retention period (default 7 days, far beyond any terminal's retry window of
minutes), then deleted in batches. After that a retry of a settled request is
still refused by the unique index on settlements (terminal, request id), with
409 ``request_already_settled``, so nothing ever settles twice.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

PRUNE_LOCK = 7_215_003


async def prune(connection: asyncpg.Connection, *, older_than: dt.timedelta, batch: int = 10_000) -> int:
    """Delete records older than ``older_than``, a batch at a time. Returns how many."""
    deleted = 0
    while True:
        async with connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK):
                return deleted  # another replica is pruning
            count = await connection.fetchval(
                """WITH old AS (
                       SELECT terminal_id, request_id FROM idempotency_keys
                       WHERE created_at < now() - $1::interval ORDER BY created_at LIMIT $2)
                   , gone AS (
                       DELETE FROM idempotency_keys k USING old
                       WHERE k.terminal_id = old.terminal_id AND k.request_id = old.request_id
                       RETURNING 1)
                   SELECT count(*) FROM gone""",
                older_than,
                batch,
            )
        deleted += count
        if count < batch:
            return deleted
