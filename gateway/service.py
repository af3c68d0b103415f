"""Use cases behind the API: settle, quote, reverse, read, eligibility, people, clinics.

Handlers translate HTTP; this module decides. Everything that can be refused
without touching money is refused before the settlement transaction starts, so
no refusal ever leaves a partial write.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from adapters import identity
from adapters.db import is_database_error
from adapters.insurer.protocol import id_for_logs
from adapters.insurer_messages import Message
from adapters.nonces import NonceClaim
from adapters.readjudication import Outcome as ReadjudicationOutcome
from adapters.registry_store import PersonEntry
from adapters.store import Store
from adapters.terminal_keys import ActiveKey
from gateway import api_models as api
from gateway.insurer import Breaker, RemoteSteps, Sweeper, unavailable, visit_of
from gateway.logs import log
from gateway.metrics import Metrics
from settlement import chain as chain_engine
from settlement import engine
from settlement.catalogue import Catalogue, CatalogueView
from settlement.chain import Chain, InsurerLink, remote_applies
from settlement.decision import decide
from settlement.eligibility import eligibility
from settlement.errors import Refused, SettlementError
from settlement.models import Bill, BillDetails, LineItem, Notice, PersonStatus, Settlement
from settlement.money import format_rate
from settlement.policy_book import PolicyBook
from settlement.ports import (
    AlreadySettled,
    AnswerGone,
    DuplicateRequest,
    NewReversal,
    NewSettlement,
    NonceSpent,
    NoSuchSettlement,
    PersonSnapshot,
    Reversed,
    ReversedBefore,
    SettleKey,
    StoredSettlement,
    UnknownPerson,
    VersionMoved,
)
from settlement.registry import ListEntry, status_on

MAX_KEY_LOOKUPS_PER_SECOND = 20  # database lookups of key ids missing from the cache, all terminals together
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")  # no daylight saving: a fixed offset is exact

_json_encoder = msgspec.json.Encoder()


def china_today() -> dt.date:
    return dt.datetime.now(CHINA).date()


@dataclass(frozen=True, slots=True)
class Clinic:
    clinic_id: str
    name: str
    level: str
    region: str


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str
    clinic_id: str
    role: str
    # The signed request's nonce. A write claims it for every gateway process (settlements inside
    # their first read, other writes through ``Service.claim_nonce``), so a captured request
    # replayed to another worker or replica is refused as it is by the process that saw it.
    nonce: NonceClaim | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A settlement's or a reversal's answer, and whether it is the first answer given again (a retry)."""

    value: api.SettlementOut | api.ReversalOut
    replayed: bool


def request_hash(pepper: bytes, operation: str, request: msgspec.Struct | dict[str, Any] | bytes, *extra: str) -> bytes:
    """Fingerprint of what was asked, independent of JSON vs MessagePack and key order (16 bytes).

    Keyed with the ID pepper: a request carries the raw national ID, and a plain hash
    stored beside the masked ID could be brute-forced back to the number.
    """
    digest = hmac.new(pepper, operation.encode(), hashlib.sha256)
    for part in extra:
        digest.update(b"\x00" + part.encode())
    digest.update(b"\x00" + (request if isinstance(request, bytes) else _json_encoder.encode(request)))
    return digest.digest()[:16]


def bill_details(request: api.SettleRequest) -> BillDetails | None:
    """The bill's HIS details, or None when it has none; refused when its dates cannot be an admission's."""
    if request.visit_type == "outpatient" and request.admitted_on is not None:
        raise Refused("invalid_bill", "an outpatient bill has no admission date", field="admitted_on")
    if request.visit_type == "outpatient" and request.discharged_on is not None:
        raise Refused("invalid_bill", "an outpatient bill has no discharge date", field="discharged_on")
    if request.admitted_on and request.discharged_on and request.discharged_on < request.admitted_on:
        raise Refused("invalid_bill", "the discharge date is before the admission date", field="discharged_on")
    fields = {name: getattr(request, name) for name in request.DETAIL_FIELDS if getattr(request, name)}
    if not fields:
        return None
    return BillDetails(**fields | {"diagnoses": tuple(request.diagnoses)})


class Service:
    def __init__(
        self,
        store: Store,
        policies: PolicyBook,
        pepper: bytes,
        metrics: Metrics,
        *,
        key_encryption_key: bytes,
        future_date_tolerance_days: int = 1,
        readjudicate_per_second: float = 20.0,
        insurer_url: str | None = None,
        insurer_breaker_seconds: float = 5.0,
    ) -> None:
        self.key_encryption_key = key_encryption_key
        self.store = store
        self.policies = policies
        self.pepper = pepper
        self.metrics = metrics
        self.future_tolerance = dt.timedelta(days=future_date_tolerance_days)
        self._clinics: dict[str, Clinic] = {}
        self._keys: dict[str, ActiveKey] = {}
        self._missing_keys: dict[str, float] = {}
        self._missing_clinics: dict[str, float] = {}
        self._miss_window_start = 0.0
        self._miss_lookups = 0
        self._reference_loaded_at = 0.0
        self._reference_lock = asyncio.Lock()
        # Every item catalogue version, in memory: the settle path classifies lines without a query.
        self.catalogue = Catalogue()
        self._catalogue_stamp: str | None = None
        # Re-adjudication of person-years a back-dated registry change or a refund queued, in the background
        # (started with the other loops, gateway/http/app.py), under the policy and catalogue this process holds.
        self.readjudication = store.readjudicator(
            policy_for=self.policy_on,
            catalogue=lambda: self.catalogue,
            today=china_today,
            per_second=readjudicate_per_second,
            on_done=self._readjudicated,
        )
        # The insurer's core, for chains with remote steps (gateway/insurer.py): its messages, its breaker,
        # and the sweeper that finishes what a crash or a lost connection left open.
        self.remote = RemoteSteps(
            store.insurer_log, metrics, url_override=insurer_url, breaker=Breaker(cooldown=insurer_breaker_seconds)
        )
        self.sweeper = Sweeper(self.remote, self.insurer_link, self._finish_reversal)

    # ------------------------------------------------------------ reference data

    async def load_reference(self) -> None:
        """Clinics and terminal keys, cached; reloaded on a miss and every few seconds, so a revoked
        terminal or a retired key stops working within that interval."""
        clinics = await self.store.clinics()
        keys = await self.store.terminal_keys(self.key_encryption_key)
        self._clinics = {row["clinic_id"]: Clinic(**dict(row)) for row in clinics}
        self._keys = keys
        self._reference_loaded_at = time.monotonic()

    async def refresh_catalogue(self) -> bool:
        """Load the item catalogue again when a version was imported since the last load (a cheap query
        tells); the settle path keeps using the old one until the new one is whole. Returns whether it
        loaded."""
        if await self.store.catalogue_stamp() == self._catalogue_stamp:
            return False
        self._catalogue_stamp, self.catalogue = await self.store.catalogue()
        return True

    def insurer_link(self) -> InsurerLink | None:
        """The insurer the latest policy version settles with (None: no version has remote steps)."""
        return next((policy.insurer for policy in reversed(list(self.policies)) if policy.insurer), None)

    def _readjudicated(self, outcome: ReadjudicationOutcome) -> None:
        kind = "needs_review" if outcome.needs_review else "adjusted" if outcome.adjusted else "unchanged"
        self.metrics.child(self.metrics.readjudications, kind).inc()
        if outcome.needs_review:
            log.warning("readjudication_needs_review", readjudication_id=outcome.readjudication_id)

    async def _refresh_reference(self) -> None:
        """Reload on a miss at most once a second, so unknown ids cannot flood the database."""
        async with self._reference_lock:
            if time.monotonic() - self._reference_loaded_at >= 1.0:
                await self.load_reference()

    def _may_look_up(self, missing: dict[str, float], name: str) -> bool:
        """Whether a cache miss may ask the database: not for an id it missed within the last second,
        and (random ids are all different) at most MAX_KEY_LOOKUPS_PER_SECOND lookups a second in all."""
        now = time.monotonic()
        missed_at = missing.get(name)
        if missed_at is not None and now - missed_at < 1.0:
            return False
        if now - self._miss_window_start >= 1.0:
            self._miss_window_start, self._miss_lookups = now, 0
        if self._miss_lookups >= MAX_KEY_LOOKUPS_PER_SECOND:
            return False
        self._miss_lookups += 1
        return True

    async def key(self, key_id: str) -> ActiveKey | None:
        """A terminal key by id. A miss looks that one key up (a key made a moment ago by the CLI
        works at once); misses are remembered for a second so unknown ids cannot flood the database."""
        found = self._keys.get(key_id)
        if found is not None:
            return found
        if not self._may_look_up(self._missing_keys, key_id):
            return None
        fetched = await self.store.terminal_keys(self.key_encryption_key, only=key_id[:64])
        found = fetched.get(key_id)
        if found is None:
            _remember_miss(self._missing_keys, key_id)
            return None
        self._keys = {**self._keys, key_id: found}
        return found

    async def clinic(self, clinic_id: str) -> Clinic:
        """A clinic by id. A miss reloads the reference data (at most once a second) and, if the reload
        was too recent, looks that one clinic up, so a clinic imported a moment ago works at once; misses
        are remembered for a second and bounded with the key lookups, so unknown ids cannot flood the
        database."""
        found = self._clinics.get(clinic_id)
        if found is None:
            await self._refresh_reference()
            found = self._clinics.get(clinic_id) or await self._look_up_clinic(clinic_id)
        if found is None:
            raise Refused("unknown_clinic", f"no clinic with id {clinic_id!r}", field="clinic_id")
        return found

    async def _look_up_clinic(self, clinic_id: str) -> Clinic | None:
        if not self._may_look_up(self._missing_clinics, clinic_id):
            return None
        rows = await self.store.clinics(only=clinic_id[:64])
        if not rows:
            _remember_miss(self._missing_clinics, clinic_id)
            return None
        found = Clinic(**dict(rows[0]))
        self._clinics = {**self._clinics, clinic_id: found}
        return found

    # ------------------------------------------------------------ helpers

    @staticmethod
    def national_id(raw_id: str, field: str = "person_id") -> str:
        """The normalised national ID, or the refusal naming what is wrong with it (never echoing it)."""
        try:
            return identity.validate(raw_id)
        except identity.InvalidNationalId as error:
            raise Refused("invalid_national_id", f"person_id {error}", field=field) from None

    def person_key(self, raw_id: str, field: str = "person_id") -> tuple[bytes, str]:
        national_id = self.national_id(raw_id, field)
        return identity.person_key(national_id, self.pepper), identity.mask(national_id)

    def policy_on(self, service_date: dt.date) -> Chain:
        return self.policies.in_force(service_date)

    def check_service_date(self, service_date: dt.date) -> None:
        if service_date > china_today() + self.future_tolerance:
            raise Refused("service_date_in_future", "the service date is later than today", field="service_date")

    async def _prepare_bill(
        self, terminal: Terminal, request: api.SettleRequest
    ) -> tuple[Clinic, Bill, Chain, CatalogueView | None, bytes, str]:
        if request.clinic_id != terminal.clinic_id:
            raise Refused("terminal_not_for_clinic", "a terminal settles only for its own clinic", field="clinic_id")
        clinic = await self.clinic(request.clinic_id)
        key, masked = self.person_key(request.person_id)
        self.check_service_date(request.service_date)
        policy = self.policy_on(request.service_date)
        bill = Bill(
            clinic_level=clinic.level,  # type: ignore[arg-type]
            visit_type=request.visit_type,
            service_date=request.service_date,
            referral=request.referral,
            details=bill_details(request),
            items=tuple(
                LineItem(
                    code=item.code,
                    name=item.name,
                    category=item.category,
                    amount=item.amount,
                    quantity=item.quantity,
                    unit_price=item.unit_price,
                )
                for item in request.items
            ),
        )
        if bill.visit_type == "inpatient" and not policy.offers_inpatient(bill.clinic_level):
            raise Refused(
                "inpatient_not_offered",
                f"{clinic.level} clinics offer no inpatient care",
                field="visit_type",
            )
        return clinic, bill, policy, self.catalogue.on(bill.service_date), key, masked

    # ------------------------------------------------------------ settle and quote

    async def settle(self, terminal: Terminal, request: api.SettleRequest) -> Answer:
        known = self._clinics.get(request.clinic_id)
        level = known.level if known else "unknown"
        try:
            answer = await self._settle(terminal, request)
        except SettlementError as refused:
            self.metrics.child(self.metrics.settlements, level, request.visit_type, "refused").inc()
            if refused.code != "nonce_reused":
                # Nothing was written under this signed request's nonce: spend it for every process,
                # so the same request replayed to another worker or replica is refused too.
                await self._spend_nonce(terminal)
            raise
        outcome = "replayed" if answer.replayed else "settled"
        self.metrics.child(self.metrics.settlements, level, request.visit_type, outcome).inc()
        return answer

    async def _settle(self, terminal: Terminal, request: api.SettleRequest) -> Answer:
        clinic, bill, policy, catalogue, person_key, masked = await self._prepare_bill(terminal, request)
        fingerprint = request_hash(self.pepper, "settle", request.fingerprinted())
        key = SettleKey(
            person_key=person_key,
            year=bill.service_date.year,
            terminal_id=terminal.terminal_id,
            request_id=request.request_id,
            nonce=terminal.nonce.digest if terminal.nonce else None,
        )
        found = await self.store.read_for_settle(key)
        if isinstance(found, AlreadySettled):
            return await self._replay_settlement(key, found, fingerprint)
        if isinstance(found, NonceSpent):
            raise _nonce_reused()
        if isinstance(found, UnknownPerson):
            raise Refused("unknown_person", "no person is registered under this national ID", field="person_id")
        if policy.insurer is not None and remote_applies(policy, bill, status_on(found.memberships, bill.service_date)):
            return await self._settle_remote(terminal, request, key, clinic, bill, policy, catalogue, masked, found)
        new = NewSettlement(
            key=key,
            settlement_id=uuid.uuid4(),
            clinic_id=clinic.clinic_id,
            person=masked,
            items=bill.items,
            decision=decide(bill, policy, found.memberships, found.counters, catalogue),
            request_hash=fingerprint,
            booked_on=china_today(),
            created_at=dt.datetime.now(dt.UTC),
            version=found.version,
        )
        outcome = await self.store.write_settlement(new)
        if isinstance(outcome, VersionMoved):
            # Another bill of this person committed since the read: decide again under the row lock.
            async with self.store.locked_person(key) as locked:
                new = msgspec.structs.replace(
                    new,
                    decision=decide(bill, policy, locked.snapshot.memberships, locked.snapshot.counters, catalogue),
                    version=locked.snapshot.version,
                )
                outcome = await locked.write(new)
        if isinstance(outcome, DuplicateRequest):
            return await self._replay_duplicate(key, fingerprint)
        return self._settled(terminal, request, clinic, masked, new)

    async def _replay_duplicate(self, key: SettleKey, fingerprint: bytes) -> Answer:
        """Another copy of this request settled first: its answer, as for a retry."""
        stored = await self.store.stored_settlement(request=key)
        if stored is None:  # the winner rolled back after all: let the client retry
            raise Refused("request_in_flight", "retry with the same request id")
        existing = AlreadySettled(
            settlement_id=stored.settlement_id, request_hash=stored.request_hash, nonce=stored.nonce
        )
        return await self._replay_settlement(key, existing, fingerprint)

    async def _settle_remote(
        self,
        terminal: Terminal,
        request: api.SettleRequest,
        key: SettleKey,
        clinic: Clinic,
        bill: Bill,
        policy: Chain,
        catalogue: CatalogueView | None,
        masked: str,
        found: PersonSnapshot,
    ) -> Answer:
        """Settle a bill whose first payers are the insurer's core (gateway/insurer.py): the insurer settles
        its funds, then the local steps pay from what is left. The booking is written like any settlement,
        through the write batcher at the version read before the insurer was asked, with the insurer's
        message flipped to committed in the same statement; if the person-year moved meanwhile, it is
        decided again under the row lock."""
        fingerprint = request_hash(self.pepper, "settle", request.fingerprinted())
        # Whatever the engine refuses is refused before the insurer is asked.
        estimate = decide(bill, policy, found.memberships, found.counters, catalogue)
        paid = await self.remote.settle(
            policy,
            person_key=key.person_key,
            terminal_id=terminal.terminal_id,
            request_id=request.request_id,
            clinic_id=clinic.clinic_id,
            bill=bill,
            status=estimate.status,
            estimate=estimate.settlement,
        )
        if self.store.faults.armed:
            await self.store.faults.reach("insurer.after_answer")

        def booking(snapshot: PersonSnapshot, new: NewSettlement | None) -> NewSettlement:
            decision = decide(bill, policy, snapshot.memberships, snapshot.counters, catalogue, paid.paid)
            decision = msgspec.structs.replace(
                decision, settlement=msgspec.structs.replace(decision.settlement, insurer=paid.reference)
            )
            if new is not None:
                return msgspec.structs.replace(new, decision=decision, version=snapshot.version)
            return NewSettlement(
                key=key,
                settlement_id=uuid.uuid4(),
                clinic_id=clinic.clinic_id,
                person=masked,
                items=bill.items,
                decision=decision,
                request_hash=fingerprint,
                booked_on=china_today(),
                created_at=dt.datetime.now(dt.UTC),
                version=snapshot.version,
            )

        try:
            new = booking(found, None)
            outcome = await self.store.write_settlement(new)
            if isinstance(outcome, VersionMoved):
                # Another bill of this person committed while the insurer was asked: decide the local steps
                # again under the row lock (the insurer's split stands).
                async with self.store.locked_person(key) as locked:
                    new = booking(locked.snapshot, new)
                    outcome = await locked.write(new)
        except SettlementError:
            # The local steps refuse the bill after all (the insurer's split exceeds the eligible amount, the
            # registry changed meanwhile): undo the insurer's settlement.
            await self.remote.cancel_unbooked(policy, paid, key.person_key, bill.visit_type)
            raise
        if isinstance(outcome, AnswerGone):
            raise unavailable("the insurer's settlement was cancelled before it could be booked; retry")
        if isinstance(outcome, DuplicateRequest):
            # Another copy of the request booked first; this attempt's answer stays answered and the sweeper
            # cancels it at the insurer.
            return await self._replay_duplicate(key, fingerprint)
        return self._settled(terminal, request, clinic, masked, new)

    def _settled(
        self, terminal: Terminal, request: api.SettleRequest, clinic: Clinic, masked: str, new: NewSettlement
    ) -> Answer:
        settlement = new.decision.settlement
        self.metrics.add_payers(self.metrics.paid, settlement)
        out = api.SettlementOut(
            **api.SettlementFigures.fields_from(
                settlement, clinic_id=clinic.clinic_id, person=masked, fund_names=self.fund_names(settlement)
            ),
            settlement_id=new.settlement_id,
            request_id=request.request_id,
            terminal_id=terminal.terminal_id,
            accumulators_after=settlement.accumulators(),
            counters_after=settlement.counters()[1],
            created_at=new.created_at,
        )
        return Answer(out, replayed=False)

    async def _replay_settlement(self, key: SettleKey, existing: AlreadySettled, fingerprint: bytes) -> Answer:
        """The first answer again for a retry; a refusal for a replayed nonce or a reused request id."""
        if key.nonce is not None and existing.nonce == key.nonce:
            raise _nonce_reused()
        if existing.request_hash is None:
            raise Refused(
                "request_already_settled",
                "this request id settled before its request was fingerprinted; look the settlement up instead",
                field="request_id",
            )
        if existing.request_hash != fingerprint:
            raise _request_id_reused()
        stored = await self.store.stored_settlement(settlement_id=existing.settlement_id)
        if stored is None:  # pragma: no cover - settlements are never removed
            raise Refused("request_in_flight", "retry with the same request id")
        self.metrics.child(self.metrics.replays, "settle").inc()
        return Answer(msgspec.structs.replace(self.settlement_out(stored), replayed=True), replayed=True)

    async def _spend_nonce(self, terminal: Terminal) -> None:
        if terminal.nonce is None:
            return
        try:
            await self.store.claim_nonce(terminal.nonce.digest, terminal.nonce.expires_at)
        except Exception as error:
            # The refusal still stands without it: this process remembers the nonce anyway
            # (gateway/auth.py), and its timestamp leaves the window within minutes.
            if not is_database_error(error):
                raise

    def fund_names(self, settlement: Settlement, language: Literal["zh", "en"] = "zh") -> dict[str, str]:
        """Each fund's name (``name``, or ``name_en`` in English) in the policy version the settlement was
        decided under."""
        try:
            policy = self.policies.by_id(settlement.policy_version)
        except KeyError:  # a version no longer in the policy folder: the codes stand for the names
            return {}
        return {fund.code: fund.name if language == "zh" else fund.name_en for fund in policy.funds}

    def settlement_out(self, stored: StoredSettlement) -> api.SettlementOut:
        settlement = stored.settlement
        return api.SettlementOut(
            **api.SettlementFigures.fields_from(
                settlement, clinic_id=stored.clinic_id, person=stored.person, fund_names=self.fund_names(settlement)
            ),
            settlement_id=stored.settlement_id,
            request_id=stored.request_id,
            terminal_id=stored.terminal_id,
            accumulators_after=settlement.accumulators(),
            counters_after=settlement.counters()[1],
            created_at=stored.created_at,
            reversed=stored.reversal_id is not None,
            reversal_id=stored.reversal_id,
        )

    async def quote(self, terminal: Terminal, request: api.SettleRequest) -> api.QuoteOut:
        clinic, bill, policy, catalogue, key, masked = await self._prepare_bill(terminal, request)
        name, memberships, counters = await self.store.person_for_eligibility(key, bill.service_date.year)
        if name is None:
            raise Refused("unknown_person", "no person is registered under this national ID", field="person_id")
        status = status_on(memberships, bill.service_date)
        settlement = chain_engine.settle(bill, status, counters, policy, catalogue)
        if policy.insurer is not None and remote_applies(policy, bill, status):
            settlement = await self._quote_remote(terminal, key, bill, policy, catalogue, status, counters, settlement)
        return api.QuoteOut(
            **api.SettlementFigures.fields_from(
                settlement, clinic_id=clinic.clinic_id, person=masked, fund_names=self.fund_names(settlement)
            )
        )

    async def _quote_remote(
        self,
        terminal: Terminal,
        person_key: bytes,
        bill: Bill,
        policy: Chain,
        catalogue: CatalogueView | None,
        status: PersonStatus,
        counters: dict[str, int],
        estimate: Settlement,
    ) -> Settlement:
        """A quote beside the insurer's core: its pre-settle's split (nothing recorded there), the local steps
        on what it leaves; when the insurer cannot say, the policy's rules for its funds, with a notice."""
        remote = await self.remote.pre_settle(
            policy, person_key=person_key, terminal_id=terminal.terminal_id, bill=bill, status=status, estimate=estimate
        )
        if remote is not None:
            try:
                return chain_engine.settle(bill, status, counters, policy, catalogue, remote)
            except SettlementError:
                pass  # the insurer's estimate cannot be booked on this bill: the rules' estimate stands
        notice = Notice(
            code="insurer_not_asked",
            message="the insurer's core gave no estimate; its funds are estimated by the policy's rules",
        )
        return msgspec.structs.replace(estimate, warnings=(*estimate.warnings, notice))

    # ------------------------------------------------------------ read and reverse

    async def stored_settlement(self, terminal: Terminal, settlement_id: uuid.UUID) -> StoredSettlement:
        """A settlement as the caller may see it: another clinic's is "not found" to a terminal."""
        stored = await self.store.stored_settlement(settlement_id=settlement_id)
        if stored is None or (terminal.role == "terminal" and stored.clinic_id != terminal.clinic_id):
            raise Refused("settlement_not_found", "no such settlement")
        return stored

    async def get_settlement(self, terminal: Terminal, settlement_id: uuid.UUID) -> api.SettlementOut:
        return self.settlement_out(await self.stored_settlement(terminal, settlement_id))

    async def claim_nonce(self, terminal: Terminal) -> None:
        """Refuse a write whose nonce another gateway process has already taken (a replay); one round trip."""
        if terminal.nonce is None:
            return
        if not await self.store.claim_nonce(terminal.nonce.digest, terminal.nonce.expires_at):
            raise _nonce_reused()

    async def reverse(self, terminal: Terminal, settlement_id: uuid.UUID, request: api.ReversalRequest) -> Answer:
        fingerprint = request_hash(self.pepper, "reverse", request, str(settlement_id))
        existing, found = await self.store.read_for_reversal(terminal.terminal_id, request.request_id, settlement_id)
        if existing is not None:
            return await self._replay_reversal(terminal, request.request_id, existing.request_hash, fingerprint)
        if found is None or (terminal.role == "terminal" and found[1] != terminal.clinic_id):
            raise Refused("settlement_not_found", "no such settlement")
        new = NewReversal(
            reversal_id=uuid.uuid4(),
            settlement_id=settlement_id,
            person_key=found[0],
            terminal_id=terminal.terminal_id,
            request_id=request.request_id,
            reason=request.reason,
            request_hash=fingerprint,
            nonce=terminal.nonce.digest if terminal.nonce else None,
            booked_on=china_today(),
            created_at=dt.datetime.now(dt.UTC),
        )
        outcome = await self.store.reverse(new, await self._cancel_remote_part(terminal, new, found[1]))
        if isinstance(outcome, NoSuchSettlement):
            raise Refused("settlement_not_found", "no such settlement")
        if isinstance(outcome, ReversedBefore | DuplicateRequest):
            # A concurrent copy of this very request may have reversed it first: that is a replay.
            stored = await self.store.stored_reversal(terminal.terminal_id, request.request_id)
            if stored is not None:
                return await self._replay_reversal(terminal, request.request_id, stored.request_hash, fingerprint)
            if isinstance(outcome, DuplicateRequest):
                raise Refused("request_in_flight", "retry with the same request id")
            raise Refused("already_reversed", "this settlement has already been reversed")
        self.metrics.reversals.inc()
        self.readjudication.wake()  # the reversal may have queued the person-year's later bills
        given_back = outcome.settlement
        self.metrics.add_payers(self.metrics.reversed, given_back)
        return Answer(_reversal_out(new.reversal_id, new.settlement_id, new.request_id, new.terminal_id,
                                    outcome.settlement, new.created_at), replayed=False)  # fmt: skip

    async def _cancel_remote_part(self, terminal: Terminal, new: NewReversal, clinic_id: str) -> str | None:
        """When the settlement was paid in part by the insurer's core, cancel that part first; the cancel's
        message id, for the reversal's transaction to flip (None: nothing to cancel)."""
        link = self.insurer_link()
        if link is None:
            return None
        stored = await self.store.stored_settlement(settlement_id=new.settlement_id)
        if stored is None or stored.settlement.insurer is None or stored.reversal_id is not None:
            return None
        return await self.remote.cancel_for_reversal(
            link,
            stored.settlement,
            person_key=new.person_key,
            terminal_id=terminal.terminal_id,
            request_id=new.request_id,
            clinic_id=clinic_id,
            settlement_id=new.settlement_id,
            visit_id=visit_of(stored.terminal_id, stored.request_id),
            reversal=_reversal_record(new),
        )

    async def _finish_reversal(self, message: Message) -> None:
        """The sweeper's half of a reversal whose remote part the insurer has cancelled: book it locally, as
        the terminal asked (the reversal's own id, reason and fingerprint), with the cancel flipped."""
        if message.request is None or message.settlement_id is None:  # pragma: no cover - a CHECK-free corner
            return
        record = message.request
        new = NewReversal(
            reversal_id=uuid.UUID(record["reversal_id"]),
            settlement_id=message.settlement_id,
            person_key=message.person_key,
            terminal_id=record["terminal_id"],
            request_id=record["request_id"],
            reason=record["reason"],
            request_hash=bytes.fromhex(record["request_hash"]),
            nonce=bytes.fromhex(record["nonce"]) if record["nonce"] else None,
            booked_on=dt.date.fromisoformat(record["booked_on"]),
            created_at=dt.datetime.fromisoformat(record["created_at"]),
        )
        outcome = await self.store.reverse(new, message.message_id)
        if isinstance(outcome, Reversed):
            log.info("insurer_reversal_finished", message_id=id_for_logs(message.message_id))
            self.readjudication.wake()
        else:  # reversed meanwhile by the terminal's own retry, which flipped the message itself
            await self.store.insurer_log.mark(message, "committed", expect=("answered",), detail="reversed already")

    async def _replay_reversal(
        self, terminal: Terminal, request_id: str, stored_hash: bytes | None, fingerprint: bytes
    ) -> Answer:
        if stored_hash != fingerprint:
            raise _request_id_reused()
        stored = await self.store.stored_reversal(terminal.terminal_id, request_id)
        if stored is None:  # pragma: no cover - reversals are never removed
            raise Refused("request_in_flight", "retry with the same request id")
        self.metrics.child(self.metrics.replays, "reverse").inc()
        out = _reversal_out(stored.reversal_id, stored.settlement_id, stored.request_id, stored.terminal_id,
                            stored.settlement, stored.created_at)  # fmt: skip
        return Answer(msgspec.structs.replace(out, replayed=True), replayed=True)

    # ------------------------------------------------------------ eligibility, people, clinics

    async def eligibility(self, terminal: Terminal, request: api.EligibilityRequest) -> api.EligibilityOut:
        if request.clinic_id is not None and request.clinic_id != terminal.clinic_id:
            raise Refused("terminal_not_for_clinic", "a terminal asks only for its own clinic", field="clinic_id")
        key, masked = self.person_key(request.person_id)
        day = request.service_date or china_today()
        policy = self.policy_on(day)
        name, memberships, acc = await self.store.person_for_eligibility(key, day.year)
        if name is None:
            raise Refused("unknown_person", "no person is registered under this national ID", field="person_id")
        figures = eligibility(policy, memberships, acc, day)
        national_id = self.national_id(request.person_id)
        return api.EligibilityOut(
            person=masked,
            name=name,
            sex=identity.sex(national_id),
            age=identity.age_on(national_id, day),
            **{
                field: getattr(figures, field)
                for field in figures.__struct_fields__
                if field not in ("programmes", "funds")
            },
            funds=list(figures.funds),
            programmes=[api.ProgrammeOut(**msgspec.structs.asdict(standing)) for standing in figures.programmes],
            **self._catalogue_entries(request.codes, day, policy),
        )

    def _catalogue_entries(self, codes: list[str], day: dt.date, policy: Chain) -> dict[str, Any]:
        """What the item catalogue in force on ``day`` says about each code, for an eligibility answer."""
        view = self.catalogue.on(day)
        if view is None:
            return {
                "catalogue_version": None,
                "items": [api.CatalogueEntryOut(code=code, listed=None) for code in codes],
            }
        entries = []
        for code in codes:
            item = view.get(code)
            if item is None:
                entries.append(api.CatalogueEntryOut(code=code, listed=False))
                continue
            share = None
            if item.category == "B":
                share = format_rate(
                    policy.b_self_pay_first_share if item.self_pay_share is None else item.self_pay_share
                )
            entries.append(
                api.CatalogueEntryOut(
                    code=code, listed=True, category=item.category, self_pay_share=share, price_cap=item.price_cap
                )
            )
        return {"catalogue_version": view.version, "items": entries}

    async def upsert_person(self, request: api.PersonRequest, *, actor: str, request_id: str) -> api.PersonOut:
        key, masked = self.person_key(request.person_id)
        national_id = identity.validate(request.person_id)
        policy = self.policies.latest()
        # Insurance, the payers' two programmes, and every other programme the latest version names.
        known: dict[str, tuple[str, ...]] = {
            "insurance": ("resident",),
            "veteran_subsidy": (),
            "hardship_aid": (),
            **policy.programmes,
        }
        entries = []
        for index, item in enumerate(request.memberships):
            if item.programme not in known:
                raise Refused(
                    "invalid_membership",
                    f"unknown programme; policy {policy.id} names {', '.join(known)}",
                    field=f"memberships[{index}].programme",
                )
            if item.code not in known[item.programme]:
                raise Refused(
                    "invalid_membership",
                    f"unknown {item.programme} code; expected one of {', '.join(known[item.programme])}",
                    field=f"memberships[{index}].code",
                )
            entry = ListEntry(
                programme=item.programme,
                code=item.code,
                effective_from=item.effective_from,
                struck_off_on=item.struck_off_on,
            )
            entries.append(PersonEntry(index, national_id, request.name, entry))
        # History may arrive in any order; plan it oldest first.
        entries.sort(key=lambda person_entry: (person_entry.entry.programme, person_entry.entry.effective_from))
        created, report = await self.store.apply_registry(
            entries,
            person=(key, masked, request.name, national_id[:6]),
            pepper=self.pepper,
            actor=actor,
            request_id=request_id,
        )
        if report.rejected:
            line, reason = report.rejected[0]
            raise Refused("invalid_membership", reason, field=f"memberships[{line}]")
        if report.readjudications:
            self.readjudication.wake()
        memberships = await self.store.memberships(key)
        return api.PersonOut(
            person=masked,
            name=request.name,
            created=created,
            memberships=[
                api.MembershipIn(
                    programme=m.programme, code=m.code, effective_from=m.effective_from, struck_off_on=m.struck_off_on
                )
                for m in memberships
            ],
            changes=report.summary(),
        )

    async def clinics(self, level: str | None) -> api.ClinicsOut:
        if level is not None and level not in ("village", "township", "county"):
            raise Refused("validation_failed", "level must be village, township or county", field="level")
        rows = await self.store.clinics(level)
        return api.ClinicsOut(clinics=[api.ClinicOut(**dict(row)) for row in rows])


def _nonce_reused() -> Refused:
    return Refused("nonce_reused", "this nonce was already used; send a fresh one with every request")


def _request_id_reused() -> Refused:
    return Refused(
        "idempotency_key_reused",
        "this request_id was already used by this terminal with a different request",
        field="request_id",
    )


def _reversal_record(new: NewReversal) -> dict[str, Any]:
    """What the sweeper needs to book this reversal if the process asking cannot (JSON-safe)."""
    return {
        "reversal_id": str(new.reversal_id),
        "terminal_id": new.terminal_id,
        "request_id": new.request_id,
        "reason": new.reason,
        "request_hash": new.request_hash.hex(),
        "nonce": new.nonce.hex() if new.nonce else None,
        "booked_on": new.booked_on.isoformat(),
        "created_at": new.created_at.isoformat(),
    }


def _reversal_out(
    reversal_id: uuid.UUID,
    settlement_id: uuid.UUID,
    request_id: str,
    terminal_id: str,
    settlement: Settlement,
    created_at: dt.datetime,
) -> api.ReversalOut:
    return api.ReversalOut(
        reversal_id=reversal_id,
        settlement_id=settlement_id,
        request_id=request_id,
        terminal_id=terminal_id,
        insurance=settlement.insurance,
        veteran_subsidy=settlement.veteran_subsidy,
        hardship_aid=settlement.hardship_aid,
        out_of_pocket=settlement.out_of_pocket,
        total=settlement.total,
        accumulators_returned=engine.settlement_deltas(settlement),
        created_at=created_at,
    )


def _remember_miss(missing: dict[str, float], name: str) -> None:
    """Remember an id the database does not know, for a second; the memory is bounded."""
    if len(missing) > 10_000:
        missing.clear()
    missing[name] = time.monotonic()
