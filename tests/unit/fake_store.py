"""An in-memory ``SettlementStore`` (settlement/ports.py), for fast tests of the use cases.

It keeps the same rules the database keeps: one settlement per terminal and request id,
accumulator writes only at the version they were decided on, a reversal once per settlement.
``lose_next_race`` makes the next settlement write find the version moved, as when another
bill of the person commits between the read and the write. The integration tests run the same
use cases against PostgreSQL (adapters/store.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adapters import readjudication
from settlement.decision import give_back
from settlement.models import ACCUMULATOR_FIELDS, Accumulators
from settlement.ports import (
    AlreadySettled,
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


@dataclass
class FakeClinic:
    clinic_id: str
    name: str
    level: str
    region: str

    def keys(self) -> list[str]:
        return ["clinic_id", "name", "level", "region"]

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


@dataclass
class FakeStore:
    clinic_rows: list[FakeClinic] = field(default_factory=list)
    people: dict[bytes, tuple[Membership, ...]] = field(default_factory=dict)
    accumulators: dict[tuple[bytes, int], tuple[Accumulators, int]] = field(default_factory=dict)
    settlements: dict[uuid.UUID, StoredSettlement] = field(default_factory=dict)
    reversals: dict[tuple[str, str], StoredReversal] = field(default_factory=dict)
    nonces: set[bytes] = field(default_factory=set)
    names: dict[bytes, str] = field(default_factory=dict)
    # (terminal, request id) -> settlement id: the primary key of the settlements table leads with these.
    requests: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    lose_next_race: int = 0
    writes: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The default policy has no remote steps: nothing is ever sent to an insurer, so nothing is recorded.
    insurer_log: Any = None

    # ------------------------------------------------------------ reference data

    async def clinics(self, level: str | None = None, *, only: str | None = None) -> list[FakeClinic]:
        return [
            clinic
            for clinic in self.clinic_rows
            if (level is None or clinic.level == level) and (only is None or clinic.clinic_id == only)
        ]

    async def terminal_keys(self, key_encryption_key: bytes, only: str | None = None) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------ settle

    def _by_request(self, key: SettleKey) -> StoredSettlement | None:
        settlement_id = self.requests.get((key.terminal_id, key.request_id))
        return None if settlement_id is None else self.settlements[settlement_id]

    def _snapshot(self, key: SettleKey) -> PersonSnapshot:
        found = self.accumulators.get((key.person_key, key.year))
        return PersonSnapshot(
            memberships=self.people[key.person_key],
            counters=_counters(found[0]) if found else {},
            version=found[1] if found else None,
        )

    async def read_for_settle(self, key: SettleKey) -> ReadOutcome:
        existing = self._by_request(key)
        if existing is not None:
            return AlreadySettled(
                settlement_id=existing.settlement_id, request_hash=existing.request_hash, nonce=existing.nonce
            )
        if key.nonce is not None and key.nonce in self.nonces:
            return NonceSpent()
        if key.person_key not in self.people:
            return UnknownPerson()
        return self._snapshot(key)

    def _apply(self, new: NewSettlement) -> WriteOutcome:
        if self._by_request(new.key) is not None:
            return DuplicateRequest()
        slot = (new.key.person_key, new.key.year)
        current = self.accumulators.get(slot)
        if (current[1] if current else None) != new.version:
            return VersionMoved()
        self.accumulators[slot] = (new.decision.settlement.accumulators(), (current[1] if current else 0) + 1)
        self.requests[(new.key.terminal_id, new.key.request_id)] = new.settlement_id
        self.settlements[new.settlement_id] = StoredSettlement(
            settlement_id=new.settlement_id,
            person_key=new.key.person_key,
            terminal_id=new.key.terminal_id,
            request_id=new.key.request_id,
            clinic_id=new.clinic_id,
            person=new.person,
            items=new.items,
            settlement=new.decision.settlement,
            created_at=new.created_at,
            request_hash=new.request_hash,
            nonce=new.key.nonce,
            reversal_id=None,
        )
        self.writes += 1
        return Written()

    async def write_settlement(self, new: NewSettlement) -> WriteOutcome:
        if self.lose_next_race:
            self.lose_next_race -= 1
            # Another bill of the person commits first: its accumulators move the version on.
            slot = (new.key.person_key, new.key.year)
            before = self.accumulators.get(slot, (Accumulators(), 0))
            moved = msgspec.structs.replace(before[0], aid_paid=before[0].aid_paid + 1)
            self.accumulators[slot] = (moved, before[1] + 1)
            return VersionMoved()
        return self._apply(new)

    @asynccontextmanager
    async def locked_person(self, key: SettleKey) -> AsyncIterator[_Locked]:
        async with self._lock:
            yield _Locked(self, self._snapshot(key))

    async def stored_settlement(
        self, *, settlement_id: uuid.UUID | None = None, request: SettleKey | None = None
    ) -> StoredSettlement | None:
        if settlement_id is not None:
            return self.settlements.get(settlement_id)
        assert request is not None
        return self._by_request(request)

    # ------------------------------------------------------------ reverse

    async def read_for_reversal(
        self, terminal_id: str, request_id: str, settlement_id: uuid.UUID
    ) -> tuple[AlreadySettled | None, tuple[bytes, str] | None]:
        found = self.settlements.get(settlement_id)
        settlement = (found.person_key, found.clinic_id) if found else None
        existing = self.reversals.get((terminal_id, request_id))
        if existing is None:
            return None, settlement
        return AlreadySettled(
            settlement_id=existing.reversal_id, request_hash=existing.request_hash, nonce=existing.nonce
        ), settlement

    async def stored_reversal(self, terminal_id: str, request_id: str) -> StoredReversal | None:
        return self.reversals.get((terminal_id, request_id))

    async def reverse(self, new: NewReversal, insurer_message: str | None = None) -> ReverseOutcome:
        found = self.settlements.get(new.settlement_id)
        if found is None:
            return NoSuchSettlement()
        if found.reversal_id is not None:
            return ReversedBefore()
        if (new.terminal_id, new.request_id) in self.reversals:
            return DuplicateRequest()
        slot = (found.person_key, found.settlement.service_date.year)
        current, version = self.accumulators[slot]
        self.accumulators[slot] = (Accumulators(**give_back(found.settlement, _counters(current))), version + 1)
        self.settlements[new.settlement_id] = msgspec.structs.replace(found, reversal_id=new.reversal_id)
        self.reversals[(new.terminal_id, new.request_id)] = StoredReversal(
            reversal_id=new.reversal_id,
            settlement_id=new.settlement_id,
            terminal_id=new.terminal_id,
            request_id=new.request_id,
            created_at=new.created_at,
            request_hash=new.request_hash,
            nonce=new.nonce,
            settlement=found.settlement,
        )
        return Reversed(found.settlement)

    # ------------------------------------------------------------ the rest

    async def adjustments_on(self, person_key: bytes, settlement_id: uuid.UUID) -> list[Any]:
        return []  # no re-adjudication without a database

    def readjudicator(self, **options: Any) -> Any:
        """No database, no re-adjudication list: a runner that is never started, and is woken for nothing."""
        return readjudication.Runner(None, **options)  # type: ignore[arg-type]

    async def claim_nonce(self, digest: bytes, expires_at: dt.datetime) -> bool:
        if digest in self.nonces:
            return False
        self.nonces.add(digest)
        return True

    async def person_for_eligibility(
        self, person_key: bytes, year: int
    ) -> tuple[str | None, list[Membership], Accumulators]:
        if person_key not in self.people:
            return None, [], Accumulators()
        found = self.accumulators.get((person_key, year))
        return self.names.get(person_key, ""), list(self.people[person_key]), found[0] if found else Accumulators()


class _Locked:
    def __init__(self, store: FakeStore, snapshot: PersonSnapshot) -> None:
        self._store = store
        self.snapshot = snapshot

    async def write(self, new: NewSettlement) -> WriteOutcome:
        outcome = self._store._apply(new)
        assert not isinstance(outcome, VersionMoved), "under the lock the version cannot move"
        return outcome


def _counters(accumulators: Accumulators) -> dict[str, int]:
    return {name: getattr(accumulators, name) for name in ACCUMULATOR_FIELDS}
