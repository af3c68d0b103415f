"""Replay protection shared by every gateway process: nonces of signed writes, claimed in PostgreSQL.

Each process also remembers nonces in memory (gateway/auth.py), which refuses a replay to
the same process without a round trip. A replay to another worker or replica is refused
here: the first request to claim a (key id, nonce) wins, and the claim outlives the
request's timestamp window, after which the timestamp check refuses a replay anyway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

# A claim of nothing ($1 NULL) inserts nothing and counts as fresh: the settle read uses one text for both.
CLAIM = """
INSERT INTO request_nonces (digest, expires_at) SELECT $1::bytea, $2::timestamptz WHERE $1::bytea IS NOT NULL
ON CONFLICT (digest) DO NOTHING RETURNING digest
"""

# One process at a time (replicas take turns through the advisory lock), and ten minutes' grace so
# a database clock ahead of the gateways' never drops a claim whose timestamp is still accepted.
_PRUNE = """
WITH turn AS (SELECT pg_try_advisory_xact_lock(hashtext('medsettle.prune_request_nonces')) AS mine)
DELETE FROM request_nonces WHERE expires_at < now() - interval '10 minutes' AND (SELECT mine FROM turn)
"""


@dataclass(frozen=True, slots=True)
class NonceClaim:
    """One signed request's nonce, to be claimed once across every process until ``expires_at``."""

    digest: bytes
    expires_at: dt.datetime

    @classmethod
    def of(cls, key_id: str, nonce: str, expires_at: int) -> NonceClaim:
        digest = hashlib.blake2b(f"{key_id}\n{nonce}".encode(), digest_size=16).digest()
        return cls(digest, dt.datetime.fromtimestamp(expires_at, dt.UTC))


async def claim(connection: Any, nonce: NonceClaim) -> bool:
    """True when no process has claimed this nonce before; the claim commits at once."""
    return await connection.fetchval(CLAIM, nonce.digest, nonce.expires_at) is not None


async def prune(connection: Any) -> int:
    """Drop claims whose window has passed (ten minutes' grace for clocks); returns how many."""
    status = await connection.execute(_PRUNE)
    return int(status.split()[-1])
