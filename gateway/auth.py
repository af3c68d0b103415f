"""Who is calling: signed-request verification, replay protection and per-terminal rate limits.

The scheme is in ``adapters.signing``. Every refusal is a 401 with its own code,
and a nonce is remembered only after
the signature has been checked, so nobody can burn another terminal's nonces.
Key ids are not secret, so an unknown key is named as such.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from adapters import signing
from adapters.terminal_keys import ActiveKey
from gateway.problems import ApiError

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class Caller:
    terminal_id: str
    clinic_id: str
    role: str
    key_id: str
    nonce: str = ""
    nonce_expires_at: int = 0  # Unix seconds: until then a replay of this request's nonce must be refused


@dataclass(frozen=True, slots=True)
class Claim:
    """A request whose headers passed: a live key, a fresh timestamp, a well-formed nonce; body not yet seen."""

    key: ActiveKey
    timestamp: str
    nonce: str
    signature: str


class NonceCache:
    """Nonces in use, per key, each remembered until its request's timestamp leaves the window.

    A nonce only needs remembering while its signed timestamp would still be accepted
    (timestamp + max skew); after that the timestamp check refuses a replay anyway. With
    terminals' clocks right that is about five minutes, so at a thousand reads a second
    the cache holds about 300,000 nonces and stops growing after five minutes (writes'
    nonces are claimed in PostgreSQL instead, see ``verify_body``). Each is kept small: a
    64-bit digest of (key id, nonce) in a set per 10-second slot of expiry, 63-142 bytes
    as measured (a set's table grows in steps) against about 250 for the strings and a
    timestamp, and a slot is dropped whole once it has expired. Memory therefore follows
    the rate of reads, up and down, and does not grow at a steady rate. Two different nonces sharing a digest (odds
    about 1 in 10^8 with a full cache) would refuse one fresh request as
    ``nonce_reused``; the terminal resends it with a new nonce, so no money is at stake.
    """

    SLOT_SECONDS = 10

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._slots: dict[int, set[int]] = {}  # expiry slot number -> digests

    def first_use(self, key_id: str, nonce: str, *, expires_at: float) -> bool:
        """Record the nonce until ``expires_at`` (wall-clock seconds); False when it is already recorded."""
        digest = self._digest(key_id, nonce)
        if self._holds(digest):
            return False
        self._slots.setdefault(math.floor(expires_at / self.SLOT_SECONDS), set()).add(digest)
        return True

    def seen(self, key_id: str, nonce: str) -> bool:
        """Whether the nonce is recorded, without recording it."""
        return self._holds(self._digest(key_id, nonce))

    @staticmethod
    def _digest(key_id: str, nonce: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{key_id}\n{nonce}".encode(), digest_size=8).digest(), "little")

    def _holds(self, digest: int) -> bool:
        now = self.clock()
        expired = [slot for slot in self._slots if (slot + 1) * self.SLOT_SECONDS < now]
        for slot in expired:
            del self._slots[slot]
        return any(digest in seen for seen in self._slots.values())

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._slots.values())


class RateLimiter:
    """A token bucket per terminal: ``rate`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, terminal_id: str) -> None:
        now = self.clock()
        tokens, updated = self._buckets.get(terminal_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if tokens < 1.0:
            self._buckets[terminal_id] = (tokens, now)
            retry_after = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.rate:g} requests a second from this terminal",
                retry_after=retry_after,
            )
        self._buckets[terminal_id] = (tokens - 1.0, now)


class Authenticator:
    def __init__(
        self,
        find_key: Callable[[str], Awaitable[ActiveKey | None]],
        *,
        max_skew: int = signing.MAX_SKEW_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.find_key = find_key
        self.max_skew = max_skew
        self.wall_clock = wall_clock
        self.nonces = NonceCache(clock=wall_clock)

    async def verify(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, *, claimed_in_database: bool = False
    ) -> Caller:
        """The caller of a signed request: ``identify`` then ``verify_body`` in one step."""
        claim = await self.identify(headers)
        return self.verify_body(claim, method, path, body, claimed_in_database=claimed_in_database)

    async def identify(self, headers: Mapping[str, str]) -> Claim:
        """Everything that can be checked from the headers alone, before a byte of the body is read.

        An unsigned request, a stale timestamp, a malformed nonce or an unknown, retired or
        revoked key is refused here, so nobody without a live key can make the gateway read
        a large body.
        """
        key_id = headers.get("X-Key-Id", "")
        timestamp = headers.get("X-Timestamp", "")
        nonce = headers.get("X-Nonce", "")
        signature = headers.get("X-Signature", "")
        if not (key_id and timestamp and nonce and signature):
            raise ApiError(
                401, "signature_missing", "sign the request: X-Key-Id, X-Timestamp, X-Nonce and X-Signature headers"
            )
        # ASCII digits only, bounded: str.isdigit() takes "²", and int() refuses 5,000 digits.
        now = int(self.wall_clock())
        if not _TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > self.max_skew:
            # The gateway's own time, so a terminal whose clock is wrong can tell it is and by how much.
            raise ApiError(
                401,
                "timestamp_out_of_window",
                f"X-Timestamp must be within {self.max_skew} s of the gateway's clock, which reads {now}",
                server_time=now,
            )
        if not signing.NONCE_PATTERN.fullmatch(nonce):
            raise ApiError(401, "bad_nonce", "X-Nonce must be 16-64 characters of A-Z, a-z, 0-9, _ and -")
        key = await self.find_key(key_id)
        if key is None:
            raise ApiError(401, "unknown_key", "no terminal key with this X-Key-Id")
        if not key.secret:
            raise ApiError(401, "terminal_revoked", "this key is retired or its terminal has been revoked")
        return Claim(key, timestamp, nonce, signature)

    def remember(self, caller: Caller) -> None:
        """Keep a write's nonce in memory after all: the write was refused before it claimed it.

        A write claims its nonce in PostgreSQL only when it reaches the store. One refused
        earlier (403, 429, a refusal before the store, a deadline while it waited) would
        otherwise leave its nonce free, and a captured copy could be replayed to this
        process once the refusal no longer applies. Refusals are rare, so memory stays small.
        """
        if caller.nonce:
            self.nonces.first_use(caller.key_id, caller.nonce, expires_at=caller.nonce_expires_at)

    def verify_body(
        self, claim: Claim, method: str, path: str, body: bytes, *, claimed_in_database: bool = False
    ) -> Caller:
        """Check the signature over the body, then remember the nonce (only now: nobody can burn another's).

        A write's nonce (``claimed_in_database``) is not remembered here: the caller claims it in
        PostgreSQL for every gateway process (adapters/nonces.py), which refuses a replay to this
        process as well, so memory holds only the nonces of reads and grows with their rate alone.
        """
        key = claim.key
        if not signing.matches(key.secret, claim.signature, method, path, claim.timestamp, claim.nonce, body):
            raise ApiError(401, "bad_signature", "the signature does not match")
        expires_at = int(claim.timestamp) + self.max_skew
        if claimed_in_database:  # only a refused write is remembered here (``remember``)
            fresh = not self.nonces.seen(key.key_id, claim.nonce)
        else:
            fresh = self.nonces.first_use(key.key_id, claim.nonce, expires_at=expires_at)
        if not fresh:
            raise ApiError(401, "nonce_reused", "this nonce was already used; send a fresh one with every request")
        return Caller(key.terminal_id, key.clinic_id, key.role, key.key_id, claim.nonce, expires_at)
