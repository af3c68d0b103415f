"""What the settle and reversal use cases ask of storage, and the outcomes it answers with.

The use cases (gateway/service.py) are written against ``SettlementStore``; PostgreSQL
implements it in adapters/store.py, and tests/unit/fake_store.py in memory. Every outcome is a
value, never an exception, so a use case reads as one ``match`` per step: a refusal is a code
the use case chooses, not an error class some layer below happened to raise.
"""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from uuid import UUID

import msgspec

from settlement.decision import Decision
from settlement.models import LineItem, Settlement
from settlement.registry import Membership


class SettleKey(msgspec.Struct, frozen=True, kw_only=True):
    """Who is settling what: the person-year whose accumulators move, and the request's identity."""

    person_key: bytes
    year: int
    terminal_id: str
    request_id: str
    # 16-byte digest of the signed request's key id and nonce (adapters/nonces.py), None when unsigned.
    nonce: bytes | None = None


# ---------------------------------------------------------------- what a read finds


class PersonSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The person's memberships and this year's counters by name, with the row's version (None: no row
    yet)."""

    memberships: tuple[Membership, ...]
    counters: dict[str, int]
    version: int | None


class AlreadySettled(msgspec.Struct, frozen=True, kw_only=True):
    """The request id already has a settlement: a retry (replay it) or a reuse (refuse it)."""

    settlement_id: UUID
    request_hash: bytes | None  # None for a settlement stored before fingerprints were kept with it
    nonce: bytes | None


class UnknownPerson(msgspec.Struct, frozen=True):
    """No person is registered under the key."""


class NonceSpent(msgspec.Struct, frozen=True):
    """Another request already used this signed request's nonce: a replay."""


ReadOutcome = PersonSnapshot | AlreadySettled | UnknownPerson | NonceSpent


# ---------------------------------------------------------------- what a write does


class NewSettlement(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one settlement writes, decided."""

    key: SettleKey
    settlement_id: UUID
    clinic_id: str
    person: str  # the masked national ID
    items: tuple[LineItem, ...]
    decision: Decision
    request_hash: bytes
    booked_on: dt.date
    created_at: dt.datetime
    version: int | None  # the accumulator version the decision was made on


class Written(msgspec.Struct, frozen=True):
    """Committed."""


class VersionMoved(msgspec.Struct, frozen=True):
    """Another settlement of the person committed since the read: nothing was written; decide again."""


class DuplicateRequest(msgspec.Struct, frozen=True):
    """A concurrent copy of the request committed first: nothing was written; replay the winner."""


class AnswerGone(msgspec.Struct, frozen=True):
    """Beside the insurer: the answered settle this settlement was to book is no longer answered (the
    sweeper has begun to cancel it): nothing was written."""


WriteOutcome = Written | VersionMoved | DuplicateRequest | AnswerGone


# ---------------------------------------------------------------- what is stored


class StoredSettlement(msgspec.Struct, frozen=True, kw_only=True):
    """A settlement as stored: enough to answer a replay, a read or a receipt again."""

    settlement_id: UUID
    person_key: bytes
    terminal_id: str
    request_id: str
    clinic_id: str
    person: str
    items: tuple[LineItem, ...]
    settlement: Settlement
    created_at: dt.datetime
    request_hash: bytes | None
    nonce: bytes | None
    reversal_id: UUID | None


class StoredReversal(msgspec.Struct, frozen=True, kw_only=True):
    reversal_id: UUID
    settlement_id: UUID
    terminal_id: str
    request_id: str
    created_at: dt.datetime
    request_hash: bytes | None
    nonce: bytes | None
    settlement: Settlement


class NewReversal(msgspec.Struct, frozen=True, kw_only=True):
    reversal_id: UUID
    settlement_id: UUID
    person_key: bytes
    terminal_id: str
    request_id: str
    reason: str
    request_hash: bytes
    nonce: bytes | None
    booked_on: dt.date
    created_at: dt.datetime


class Reversed(msgspec.Struct, frozen=True):
    settlement: Settlement


class NoSuchSettlement(msgspec.Struct, frozen=True):
    pass


class ReversedBefore(msgspec.Struct, frozen=True):
    """The settlement was reversed already (by another request, or by a concurrent copy of this one)."""


ReverseOutcome = Reversed | NoSuchSettlement | ReversedBefore | DuplicateRequest


class LockedPerson(Protocol):
    """A person-year held under its row lock until the block ends: read, decide, write, commit."""

    snapshot: PersonSnapshot

    async def write(self, new: NewSettlement) -> WriteOutcome: ...


class SettlementStore(Protocol):
    async def read_for_settle(self, key: SettleKey) -> ReadOutcome: ...

    async def write_settlement(self, new: NewSettlement) -> WriteOutcome: ...

    def locked_person(self, key: SettleKey) -> AbstractAsyncContextManager[LockedPerson]: ...

    async def stored_settlement(
        self, *, settlement_id: UUID | None = None, request: SettleKey | None = None
    ) -> StoredSettlement | None: ...

    async def stored_reversal(self, terminal_id: str, request_id: str) -> StoredReversal | None: ...

    async def reverse(self, new: NewReversal) -> ReverseOutcome: ...

    async def claim_nonce(self, digest: bytes, expires_at: dt.datetime) -> bool: ...

    async def person_for_eligibility(
        self, person_key: bytes, year: int
    ) -> tuple[str | None, list[Membership], dict[str, int]]: ...
