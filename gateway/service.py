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

import asyncpg
import msgspec

from adapters import identity
from adapters.nonces import NonceClaim
from adapters.registry_store import PersonEntry
from adapters.store import (
    AlreadyAnswered,
    AlreadyReversed,
    Caps,
    DuplicateRequest,
    NonceReused,
    RequestAlreadySettled,
    SettleJob,
    SettlementMissing,
    Store,
    StoredAnswer,
    UnknownPerson,
)
from adapters.terminal_keys import ActiveKey
from gateway import api_models as api
from gateway.metrics import Metrics
from gateway.problems import ApiError
from settlement import engine
from settlement.errors import SettlementError
from settlement.models import Accumulators, Bill, LineItem, Notice, PersonStatus, Settlement
from settlement.policy import Policy, PolicyBook
from settlement.registry import ListEntry, Membership, status_on

MAX_KEY_LOOKUPS_PER_SECOND = 20  # database lookups of key ids missing from the cache, all terminals together
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")  # no daylight saving: a fixed offset is exact

_json_encoder = msgspec.json.Encoder()
_settlement_out = msgspec.json.Decoder(api.SettlementOut)
_reversal_out = msgspec.json.Decoder(api.ReversalOut)


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
    """A response body (JSON bytes) and whether it was replayed from the idempotency store."""

    body: bytes
    replayed: bool


def request_hash(pepper: bytes, operation: str, request: msgspec.Struct, *extra: str) -> bytes:
    """Fingerprint of what was asked, independent of JSON vs MessagePack and key order.

    Keyed with the ID pepper: a request carries the raw national ID, and a plain hash
    stored beside the masked ID could be brute-forced back to the number.
    """
    digest = hmac.new(pepper, operation.encode(), hashlib.sha256)
    for part in extra:
        digest.update(b"\x00" + part.encode())
    digest.update(b"\x00" + _json_encoder.encode(request))
    return digest.digest()


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
        self._miss_window_start = 0.0
        self._miss_lookups = 0
        self._reference_loaded_at = 0.0
        self._reference_lock = asyncio.Lock()

    # ------------------------------------------------------------ reference data

    async def load_reference(self) -> None:
        """Clinics and terminal keys, cached; reloaded on a miss and every few seconds, so a revoked
        terminal or a retired key stops working within that interval."""
        clinics = await self.store.clinics()
        keys = await self.store.terminal_keys(self.key_encryption_key)
        self._clinics = {row["clinic_id"]: Clinic(**dict(row)) for row in clinics}
        self._keys = keys
        self._reference_loaded_at = time.monotonic()

    async def _refresh_reference(self) -> None:
        """Reload on a miss at most once a second, so unknown ids cannot flood the database."""
        async with self._reference_lock:
            if time.monotonic() - self._reference_loaded_at >= 1.0:
                await self.load_reference()

    async def key(self, key_id: str) -> ActiveKey | None:
        """A terminal key by id. A miss looks that one key up (a key made a moment ago by the CLI
        works at once); misses are remembered for a second so unknown ids cannot flood the database."""
        found = self._keys.get(key_id)
        if found is not None:
            return found
        now = time.monotonic()
        missed_at = self._missing_keys.get(key_id)
        if missed_at is not None and now - missed_at < 1.0:
            return None
        # Random key ids are all different: bound the lookups of unknown ids across all of them.
        if now - self._miss_window_start >= 1.0:
            self._miss_window_start, self._miss_lookups = now, 0
        if self._miss_lookups >= MAX_KEY_LOOKUPS_PER_SECOND:
            return None
        self._miss_lookups += 1
        fetched = await self.store.terminal_keys(self.key_encryption_key, only=key_id[:64])
        found = fetched.get(key_id)
        if found is None:
            if len(self._missing_keys) > 10_000:
                self._missing_keys.clear()
            self._missing_keys[key_id] = time.monotonic()
            return None
        self._keys = {**self._keys, key_id: found}
        return found

    async def clinic(self, clinic_id: str) -> Clinic:
        found = self._clinics.get(clinic_id)
        if found is None:
            await self._refresh_reference()
            found = self._clinics.get(clinic_id)
        if found is None:
            raise ApiError(422, "unknown_clinic", f"no clinic with id {clinic_id!r}", field="clinic_id")
        return found

    # ------------------------------------------------------------ helpers

    def person_key(self, raw_id: str, field: str = "person_id") -> tuple[bytes, str]:
        try:
            national_id = identity.validate(raw_id)
        except identity.InvalidNationalId as error:
            raise ApiError(422, "invalid_national_id", f"person_id {error}", field=field) from None
        return identity.person_key(national_id, self.pepper), identity.mask(national_id)

    def policy_on(self, service_date: dt.date) -> Policy:
        try:
            return self.policies.in_force(service_date)
        except SettlementError as error:
            raise ApiError.from_engine(error) from None

    def check_service_date(self, service_date: dt.date) -> None:
        if service_date > china_today() + self.future_tolerance:
            raise ApiError(422, "service_date_in_future", "the service date is later than today", field="service_date")

    async def _prepare_bill(
        self, terminal: Terminal, request: api.SettleRequest
    ) -> tuple[Clinic, Bill, Policy, bytes, str]:
        if request.clinic_id != terminal.clinic_id:
            raise ApiError(
                403, "terminal_not_for_clinic", "a terminal settles only for its own clinic", field="clinic_id"
            )
        clinic = await self.clinic(request.clinic_id)
        key, masked = self.person_key(request.person_id)
        self.check_service_date(request.service_date)
        policy = self.policy_on(request.service_date)
        bill = Bill(
            clinic_level=clinic.level,  # type: ignore[arg-type]
            visit_type=request.visit_type,
            service_date=request.service_date,
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
        if bill.visit_type == "inpatient" and not policy.insurance.levels[bill.clinic_level].offers_inpatient:
            raise ApiError(
                422,
                "inpatient_not_offered",
                f"{clinic.level} clinics offer no inpatient care",
                field="visit_type",
            )
        return clinic, bill, policy, key, masked

    @staticmethod
    def _caps(policy: Policy, status: PersonStatus) -> Caps:
        category = policy.veteran_categories.get(status.veteran_category or "")
        tier = policy.hardship_tiers.get(status.hardship_tier or "")
        return Caps(
            outpatient_deductible=policy.insurance.outpatient_deductible,
            insurance_outpatient=policy.insurance.outpatient_cap,
            insurance_inpatient=policy.insurance.inpatient_cap,
            subsidy=category.annual_cap if category else 0,
            aid=tier.annual_cap if tier else 0,
        )

    def _replay(self, stored: StoredAnswer, operation: str, fingerprint: bytes) -> Answer:
        if stored.operation != operation or stored.request_hash != fingerprint:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this request_id was already used by this terminal with a different request",
                field="request_id",
            )
        self.metrics.replays.labels(operation).inc()
        return Answer(stored.response, replayed=True)

    # ------------------------------------------------------------ settle and quote

    async def settle(self, terminal: Terminal, request: api.SettleRequest) -> Answer:
        known = self._clinics.get(request.clinic_id)
        level = known.level if known else "unknown"
        try:
            answer = await self._settle(terminal, request)
        except ApiError as error:
            if error.status < 500:
                self.metrics.settlements.labels(level, request.visit_type, "refused").inc()
            raise
        outcome = "replayed" if answer.replayed else "settled"
        self.metrics.settlements.labels(level, request.visit_type, outcome).inc()
        return answer

    async def _settle(self, terminal: Terminal, request: api.SettleRequest) -> Answer:
        clinic, bill, policy, key, masked = await self._prepare_bill(terminal, request)
        fingerprint = request_hash(self.pepper, "settle", request)

        def compute(memberships: list[Membership], accumulators: Accumulators) -> tuple[Settlement, Caps]:
            status = status_on(memberships, bill.service_date)
            return engine.settle(bill, status, accumulators, policy), self._caps(policy, status)

        def render(settlement_id: uuid.UUID, settlement: Settlement, now: dt.datetime) -> bytes:
            return _json_encoder.encode(
                self._settlement_out(settlement_id, terminal, clinic, masked, request.request_id, settlement, now)
            )

        document = _json_encoder.encode(msgspec.structs.replace(request, person_id=masked)).decode()
        try:
            settlement, body = await self.store.settle(
                SettleJob(
                    person_key=key,
                    year=bill.service_date.year,
                    compute=compute,
                    render=render,
                    settlement_id=uuid.uuid4(),
                    terminal_id=terminal.terminal_id,
                    request_id=request.request_id,
                    request_hash=fingerprint,
                    clinic_id=clinic.clinic_id,
                    request_document=document,
                    booked_on=china_today(),
                    now=dt.datetime.now(dt.UTC),
                    nonce=terminal.nonce,
                )
            )
        except SettlementError as error:
            raise ApiError.from_engine(error) from None
        except NonceReused:
            raise _nonce_reused() from None
        except AlreadyAnswered as answered:
            return self._replay(answered.stored, "settle", fingerprint)
        except UnknownPerson:
            raise ApiError(
                422, "unknown_person", "no person is registered under this national ID", field="person_id"
            ) from None
        except DuplicateRequest:
            stored = await self.store.stored_answer(terminal.terminal_id, request.request_id)
            if stored is None:  # the winner rolled back after all: let the client retry
                raise ApiError(409, "request_in_flight", "retry with the same request id") from None
            return self._replay(stored, "settle", fingerprint)
        except RequestAlreadySettled:
            raise ApiError(
                409,
                "request_already_settled",
                "this request id settled earlier and its stored answer has expired; look the settlement up instead",
                field="request_id",
            ) from None
        self.metrics.paid.labels("insurance").inc(settlement.insurance)
        self.metrics.paid.labels("veteran_subsidy").inc(settlement.veteran_subsidy)
        self.metrics.paid.labels("hardship_aid").inc(settlement.hardship_aid)
        self.metrics.paid.labels("out_of_pocket").inc(settlement.out_of_pocket)
        return Answer(body, replayed=False)

    @staticmethod
    def _settlement_out(
        settlement_id: uuid.UUID,
        terminal: Terminal,
        clinic: Clinic,
        masked: str,
        request_id: str,
        settlement: Settlement,
        created_at: dt.datetime,
    ) -> api.SettlementOut:
        return api.SettlementOut(
            **api.SettlementFigures.fields_from(settlement, clinic_id=clinic.clinic_id, person=masked),
            settlement_id=settlement_id,
            request_id=request_id,
            terminal_id=terminal.terminal_id,
            accumulators_after=settlement.accumulators_after,
            created_at=created_at,
        )

    async def quote(self, terminal: Terminal, request: api.SettleRequest) -> api.QuoteOut:
        clinic, bill, policy, key, masked = await self._prepare_bill(terminal, request)
        exists, memberships, accumulators = await self.store.person_for_eligibility(key, bill.service_date.year)
        if not exists:
            raise ApiError(422, "unknown_person", "no person is registered under this national ID", field="person_id")
        try:
            settlement = engine.quote(bill, status_on(memberships, bill.service_date), accumulators, policy)
        except SettlementError as error:
            raise ApiError.from_engine(error) from None
        return api.QuoteOut(**api.SettlementFigures.fields_from(settlement, clinic_id=clinic.clinic_id, person=masked))

    # ------------------------------------------------------------ read and reverse

    async def get_settlement(self, terminal: Terminal, settlement_id: uuid.UUID) -> bytes:
        row = await self.store.get_settlement(settlement_id)
        # Another clinic's settlement is "not found": a terminal learns nothing about it.
        if row is None or (terminal.role == "terminal" and row["clinic_id"] != terminal.clinic_id):
            raise ApiError(404, "settlement_not_found", "no such settlement")
        settlement = msgspec.json.decode(row["result"], type=Settlement)
        clinic = await self.clinic(row["clinic_id"])
        out = self._settlement_out(
            row["settlement_id"],
            Terminal(row["terminal_id"], row["clinic_id"], "terminal"),
            clinic,
            row["person"],
            row["request_id"],
            settlement,
            row["created_at"],
        )
        out = msgspec.structs.replace(out, reversed=row["reversal_id"] is not None, reversal_id=row["reversal_id"])
        return _json_encoder.encode(out)

    async def claim_nonce(self, terminal: Terminal) -> None:
        """Refuse a write whose nonce another gateway process has already taken (a replay); one round trip."""
        if terminal.nonce is None:
            return
        if not await self.store.claim_nonce(terminal.nonce):
            raise _nonce_reused()

    async def reverse(self, terminal: Terminal, settlement_id: uuid.UUID, request: api.ReversalRequest) -> Answer:
        fingerprint = request_hash(self.pepper, "reverse", request, str(settlement_id))
        stored, found = await self.store.before_reverse(terminal.terminal_id, request.request_id, settlement_id)
        if stored is not None:
            return self._replay(stored, "reverse", fingerprint)
        if found is None or (terminal.role == "terminal" and found[1] != terminal.clinic_id):
            raise ApiError(404, "settlement_not_found", "no such settlement")
        person_key = found[0]
        reversal_id = uuid.uuid4()

        def render(settlement: Settlement, now: dt.datetime) -> bytes:
            return _json_encoder.encode(
                api.ReversalOut(
                    reversal_id=reversal_id,
                    settlement_id=settlement_id,
                    request_id=request.request_id,
                    terminal_id=terminal.terminal_id,
                    insurance=settlement.insurance,
                    veteran_subsidy=settlement.veteran_subsidy,
                    hardship_aid=settlement.hardship_aid,
                    out_of_pocket=settlement.out_of_pocket,
                    total=settlement.total,
                    accumulators_returned=engine.settlement_deltas(settlement),
                    created_at=now,
                )
            )

        def give_back(settlement: Settlement, current: Accumulators) -> Accumulators:
            return engine.apply_deltas(current, engine.reversal_deltas(settlement))

        try:
            _, body = await self.store.reverse(
                person_key=person_key,
                settlement_id=settlement_id,
                reversal_id=reversal_id,
                terminal_id=terminal.terminal_id,
                request_id=request.request_id,
                request_hash=fingerprint,
                reason=request.reason,
                give_back=give_back,
                render=render,
                booked_on=china_today(),
                now=dt.datetime.now(dt.UTC),
            )
        except SettlementMissing:
            raise ApiError(404, "settlement_not_found", "no such settlement") from None
        except AlreadyReversed:
            # A concurrent copy of this very request may have reversed it first: that is a replay.
            stored = await self.store.stored_answer(terminal.terminal_id, request.request_id)
            if stored is not None:
                return self._replay(stored, "reverse", fingerprint)
            raise ApiError(409, "already_reversed", "this settlement has already been reversed") from None
        except DuplicateRequest:
            stored = await self.store.stored_answer(terminal.terminal_id, request.request_id)
            if stored is None:
                raise ApiError(409, "request_in_flight", "retry with the same request id") from None
            return self._replay(stored, "reverse", fingerprint)
        self.metrics.reversals.inc()
        return Answer(body, replayed=False)

    # ------------------------------------------------------------ eligibility, people, clinics

    async def eligibility(self, terminal: Terminal, request: api.EligibilityRequest) -> api.EligibilityOut:
        if request.clinic_id is not None and request.clinic_id != terminal.clinic_id:
            raise ApiError(403, "terminal_not_for_clinic", "a terminal asks only for its own clinic", field="clinic_id")
        key, masked = self.person_key(request.person_id)
        day = request.service_date or china_today()
        policy = self.policy_on(day)
        exists, memberships, acc = await self.store.person_for_eligibility(key, day.year)
        if not exists:
            raise ApiError(422, "unknown_person", "no person is registered under this national ID", field="person_id")
        status = status_on(memberships, day)
        insurance = policy.insurance
        programmes = []
        warnings = list(engine.strike_off_notices(status))
        for membership in memberships:
            if not membership.in_force(day):
                continue
            if membership.programme == "veteran_subsidy":
                rule = policy.veteran_categories.get(membership.code)
                cap, used = (rule.annual_cap if rule else 0), acc.subsidy_paid
            elif membership.programme == "hardship_aid":
                tier = policy.hardship_tiers.get(membership.code)
                cap, used = (tier.annual_cap if tier else 0), acc.aid_paid
            else:
                cap = insurance.outpatient_cap + insurance.inpatient_cap
                used = acc.insurance_outpatient_paid + acc.insurance_inpatient_paid
            programmes.append(
                api.ProgrammeOut(
                    programme=membership.programme,
                    code=membership.code,
                    effective_from=membership.effective_from,
                    struck_off_on=membership.struck_off_on,
                    annual_cap=cap,
                    used=used,
                    remaining=max(0, cap - used),
                )
            )
            if membership.struck_off_on is not None and membership.struck_off_on - day <= dt.timedelta(days=30):
                warnings.append(
                    Notice(
                        code="ends_soon",
                        message=f"{membership.programme} ({membership.code}) ends on "
                        f"{membership.struck_off_on.isoformat()}",
                        programme=membership.programme,
                        date=membership.struck_off_on,
                    )
                )
        return api.EligibilityOut(
            person=masked,
            service_date=day,
            policy_version=policy.id,
            insured=status.insured,
            outpatient_deductible_remaining=max(0, insurance.outpatient_deductible - acc.outpatient_deductible_used)
            if status.insured
            else 0,
            insurance_outpatient_cap_remaining=max(0, insurance.outpatient_cap - acc.insurance_outpatient_paid)
            if status.insured
            else 0,
            insurance_inpatient_cap_remaining=max(0, insurance.inpatient_cap - acc.insurance_inpatient_paid)
            if status.insured
            else 0,
            programmes=programmes,
            unpaid_eligible_year_to_date=acc.unpaid_eligible,
            warnings=warnings,
        )

    async def upsert_person(self, request: api.PersonRequest, *, actor: str, request_id: str) -> api.PersonOut:
        key, masked = self.person_key(request.person_id)
        national_id = identity.validate(request.person_id)
        policy = self.policies.latest()
        known = {
            "insurance": ("resident",),
            "veteran_subsidy": tuple(policy.veteran_categories),
            "hardship_aid": tuple(policy.hardship_tiers),
        }
        entries = []
        for index, item in enumerate(request.memberships):
            if item.code not in known[item.programme]:
                raise ApiError(
                    422,
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
            raise ApiError(422, "invalid_membership", reason, field=f"memberships[{line}]")
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
            raise ApiError(422, "validation_failed", "level must be village, township or county", field="level")
        rows = await self.store.clinics(level)
        return api.ClinicsOut(clinics=[api.ClinicOut(**dict(row)) for row in rows])


def is_database_error(error: BaseException) -> bool:
    """Errors meaning the database cannot be reached or the pool is exhausted: answer 503, not 500."""
    return isinstance(
        error,
        OSError
        | asyncio.TimeoutError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.TooManyConnectionsError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.InterfaceError
        # An idle pooled connection that has read the server's shutdown notice but not yet its
        # end of stream is handed out and fails with "another operation is in progress".
        | asyncpg.exceptions.InternalClientError
        | asyncpg.exceptions.QueryCanceledError
        # A deadlock or serialization failure rolled the statement back whole: retrying is safe.
        | asyncpg.exceptions.TransactionRollbackError
        | asyncpg.exceptions.LockNotAvailableError,
    )


def _nonce_reused() -> ApiError:
    return ApiError(401, "nonce_reused", "this nonce was already used; send a fresh one with every request")
