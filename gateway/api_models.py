"""Wire models for the HTTP API: requests are strict (unknown fields refused), money is int fen."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from adapters import finance, insurer_reconciliation, range_reconciliation
from gateway.bodies import NO_CONTROL
from settlement.eligibility import FundStanding, ProgrammeStanding
from settlement.explain import explain
from settlement.models import (
    Accumulators,
    ClinicLevel,
    LineBreakdown,
    Notice,
    PayerTrace,
    Settlement,
    VisitType,
)
from settlement.money import MAX_BILL_FEN

MAX_FEN = MAX_BILL_FEN  # no single line or bill is larger; the engine refuses a larger total
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
ClinicId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=NO_CONTROL)]
# The shape of a national ID (GB 11643), stated for the OpenAPI document only: adapters.identity checks it and
# answers invalid_national_id, which names what is wrong, rather than a bare validation_failed. It strips
# surrounding white space and takes a lower-case x. The birth date (a real date from 1900) and the check
# character are beyond a pattern.
NATIONAL_ID_PATTERN = r"^\s*[1-9][0-9]{16}[0-9Xx]\s*$"
NationalId = Annotated[
    str,
    msgspec.Meta(
        max_length=32,
        extra_json_schema={
            "pattern": NATIONAL_ID_PATTERN,
            "description": "18-character national ID: 17 digits, the first not 0, then a digit or X; characters "
            "7-14 a birth date from 1900 and the 18th the GB 11643 check character (else invalid_national_id)",
        },
    ),
]
Fen = Annotated[int, msgspec.Meta(ge=0, le=MAX_FEN)]


class Wire(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    pass


class ItemIn(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_CONTROL)]
    name: Annotated[str, msgspec.Meta(max_length=200, pattern=NO_CONTROL)]
    # The item catalogue in force on the service date decides each line's category: leave it out to take
    # the catalogue's; one that disagrees is refused (category_mismatch). With no catalogue in force it
    # is required.
    category: (
        Annotated[
            Literal["A", "B", "C"],
            msgspec.Meta(
                description="A, B or C. Optional when an item catalogue is in force on the service date (the "
                "catalogue decides; a category that disagrees is refused as category_mismatch); required otherwise"
            ),
        ]
        | None
    ) = None
    amount: Fen
    quantity: Annotated[int, msgspec.Meta(gt=0, le=1_000_000)] | None = None
    unit_price: Fen | None = None

    # The engine's rule for a line billed by quantity, which it refuses as invalid_bill: quantity and unit_price
    # come together (both integers) or not at all (absent or null). That quantity × unit_price equals amount is
    # beyond JSON Schema. gateway.http.openapi adds this to the model's schema.
    schema_rules: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {
                "required": ["quantity", "unit_price"],
                "properties": {"quantity": {"type": "integer"}, "unit_price": {"type": "integer"}},
            },
            {"properties": {"quantity": {"type": "null"}, "unit_price": {"type": "null"}}},
        ]
    }


# An ICD-10 code as hospitals send it: a letter, two digits, and after a dot up to eight more characters (the
# national medical-insurance edition extends codes as J18.900 or I21.000x001).
Icd10 = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z][0-9]{2}(\.[0-9A-Za-z]{1,8})?$",
        max_length=12,
        examples=["J18.900", "I21.000x001"],
        description="an ICD-10 code: a capital letter, two digits, then optionally a dot and up to 8 letters or digits",
    ),
]
HisText = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_CONTROL)]
MAX_DIAGNOSES = 20


class SettleRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    request_id: RequestId
    clinic_id: ClinicId
    person_id: NationalId
    visit_type: VisitType
    service_date: dt.date
    items: Annotated[list[ItemIn], msgspec.Meta(min_length=1)]
    # A referred admission (转诊): some policies' steps (tilted aid) pay only on referred bills.
    referral: bool = False
    # What the hospital's own system (HIS) says of the bill, all optional: kept with the settlement, given back
    # in its answer and printed on its receipt; the rules never read them. Admission dates only on inpatient
    # bills, the discharge not before the admission (else invalid_bill).
    his_visit_id: HisText | None = None  # the HIS visit or admission number (门诊号 / 住院号)
    invoice_number: HisText | None = None
    operator: HisText | None = None  # who was at the till
    diagnoses: Annotated[list[Icd10], msgspec.Meta(max_length=MAX_DIAGNOSES)] = []  # the main diagnosis first
    admitted_on: dt.date | None = None
    discharged_on: dt.date | None = None

    # The fields above added after settlements were first fingerprinted (gateway.service.request_hash).
    DETAIL_FIELDS: ClassVar[tuple[str, ...]] = (
        "his_visit_id",
        "invoice_number",
        "operator",
        "diagnoses",
        "admitted_on",
        "discharged_on",
    )

    def fingerprinted(self) -> bytes:
        """The JSON the idempotency fingerprint covers: every field, but the HIS details only when given, so
        that a retry of a bill settled before they existed still matches the fingerprint stored with it."""
        encoded = _fingerprint_encoder.encode(self)
        if encoded.endswith(_NO_DETAILS):  # the common bill: no HIS details, cut from the end in one step
            return encoded[: -len(_NO_DETAILS)] + b"}"
        fields = msgspec.structs.asdict(self)
        for name in self.DETAIL_FIELDS:
            if fields[name] in (None, []):
                del fields[name]
        return _fingerprint_encoder.encode(fields)


_fingerprint_encoder = msgspec.json.Encoder()
# How a SettleRequest without HIS details ends when encoded: its detail fields are its last ones.
_NO_DETAILS = (
    b',"his_visit_id":null,"invoice_number":null,"operator":null,'
    b'"diagnoses":[],"admitted_on":null,"discharged_on":null}'
)


class ReversalRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    request_id: RequestId
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_CONTROL)] = ""


class CloseOrderRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Finance's own reference for the payment or recovery (a transfer's number), kept with the order."""

    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_CONTROL)]


class MembershipIn(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # insurance, veteran_subsidy, hardship_aid, or another programme the policy in force names under
    # [programmes] (charity); the service refuses any other as invalid_membership, naming this field.
    programme: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=40,
            pattern=NO_CONTROL,
            extra_json_schema={
                "examples": ["insurance", "veteran_subsidy", "hardship_aid", "charity"],
                "description": "insurance, veteran_subsidy, hardship_aid, or another registry programme the "
                "latest policy version names under [programmes] (else invalid_membership)",
            },
        ),
    ]
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=NO_CONTROL)]
    effective_from: dt.date
    struck_off_on: dt.date | None = None


class PersonRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    person_id: NationalId
    name: Annotated[str, msgspec.Meta(max_length=100, pattern=NO_CONTROL)] = ""
    memberships: Annotated[list[MembershipIn], msgspec.Meta(max_length=100)] = []


class EligibilityRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    person_id: NationalId
    service_date: dt.date | None = None
    clinic_id: ClinicId | None = None
    # Item codes to look up in the item catalogue in force on the service date: is each covered, and how.
    codes: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_CONTROL)]],
        msgspec.Meta(max_length=500),
    ] = []


class PersonYearRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Whose annual statement, for which service year (the national ID in the body, never in a URL or a log)."""

    person_id: NationalId
    year: Annotated[int, msgspec.Meta(ge=2000, le=2100)]


# adapters.finance's reconciliation list as the route reads it: its clinic_id under the same text rule as every
# other clinic_id (PostgreSQL cannot store NUL). Its fund is any fund of any policy version or of the ledger, by
# account or code: the schema states the form, and reconcile refuses a fund it does not know (unknown_fund).
class ReconciliationRequest(finance.ReconciliationRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A booking day's list; ``clinic_id`` omitted with ``fund`` set is a fund's list across clinics."""

    clinic_id: ClinicId | None = None


class TotalsReconciliationRequest(
    range_reconciliation.TotalsReconciliationRequest, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Totals over booking days ``from``..``to``; ``clinic_id`` omitted is every clinic (finance, admin)."""

    clinic_id: ClinicId | None = None


class InsurerReconciliationRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A day to reconcile with the insurer's core (the China date the insurer committed its settlements), and
    the clinic's own list of that day's settlements if it has one, the lines ``POST /v1/finance/reconciliation``
    takes; ``clinic_id`` narrows the list's comparison to that clinic's settlements (omitted: every clinic's)."""

    day: dt.date
    clinic_list: insurer_reconciliation.ClinicList | None = None
    clinic_id: ClinicId | None = None


class WhatIfRequest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A candidate policy file's text, replayed over the settlements of a window of service dates."""

    # The whole candidate policy file (TOML, as docs/policy-files.md describes); refused as invalid_policy,
    # with the field path and the problem, when it does not load.
    policy: Annotated[str, msgspec.Meta(min_length=1, max_length=256 * 1024)]
    from_: dt.date = msgspec.field(name="from")
    to: dt.date
    by: Literal["fund", "tier", "level", "region"] = "level"


# ---------------------------------------------------------------- responses


class Out(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    pass


class PayerOut(Out, frozen=True, kw_only=True):
    """One step of the policy's chain: the fund, its name, what it paid and why."""

    fund: str
    name: str
    amount: int
    trace: PayerTrace


class SettlementFigures(Out, frozen=True, kw_only=True):
    """What a settlement computes, shared by a stored settlement and a quote."""

    clinic_id: str
    clinic_level: ClinicLevel
    person: str  # masked national ID
    visit_type: VisitType
    service_date: dt.date
    policy_version: str
    total: int
    # The four buckets of the bill: not_covered (全自费) + over_limit (超限价自付) + self_pay_first (先行自付)
    # + eligible (政策范围内) == total; each line of ``lines`` has the same four.
    eligible: int
    self_pay_first: int
    not_covered: int
    over_limit: int
    # The item catalogue version the lines were classified under (its effective date); None when no
    # catalogue was in force and the terminal's categories stood.
    catalogue_version: str | None
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    # Every step of the chain in order: sum(amount) + out_of_pocket == total.
    payers: tuple[PayerOut, ...]
    referral: bool
    traces: tuple[PayerTrace, ...]
    lines: tuple[LineBreakdown, ...]
    warnings: tuple[Notice, ...]
    explanation: list[str]
    # The bill's HIS details as sent (SettleRequest); absent ones are null, or an empty list of diagnoses.
    his_visit_id: str | None = None
    invoice_number: str | None = None
    operator: str | None = None
    diagnoses: tuple[str, ...] = ()
    admitted_on: dt.date | None = None
    discharged_on: dt.date | None = None

    @staticmethod
    def fields_from(
        settlement: Settlement, *, clinic_id: str, person: str, fund_names: Mapping[str, str]
    ) -> dict[str, Any]:
        return {
            "clinic_id": clinic_id,
            "clinic_level": settlement.clinic_level,
            "person": person,
            "visit_type": settlement.visit_type,
            "service_date": settlement.service_date,
            "policy_version": settlement.policy_version,
            "total": settlement.total,
            "eligible": settlement.eligible,
            "self_pay_first": settlement.self_pay_first,
            "not_covered": settlement.not_covered,
            "over_limit": settlement.over_limit,
            "catalogue_version": settlement.catalogue_version,
            "insurance": settlement.insurance,
            "veteran_subsidy": settlement.veteran_subsidy,
            "hardship_aid": settlement.hardship_aid,
            "out_of_pocket": settlement.out_of_pocket,
            "payers": tuple(
                PayerOut(
                    fund=trace.payer, name=fund_names.get(trace.payer, trace.payer), amount=trace.paid, trace=trace
                )
                for trace in settlement.traces
            ),
            "referral": settlement.referral,
            "traces": settlement.traces,
            "lines": tuple(line.buckets() for line in settlement.lines),
            "warnings": settlement.warnings,
            "explanation": explain(settlement, names=fund_names),
            **({} if settlement.details is None else msgspec.structs.asdict(settlement.details)),
        }


class SettlementOut(SettlementFigures, frozen=True, kw_only=True):
    settlement_id: uuid.UUID
    request_id: str
    terminal_id: str
    accumulators_after: Accumulators
    # Every counter the policy's chain names, for the person and the service year, after this bill.
    counters_after: dict[str, int]
    created_at: dt.datetime
    replayed: bool = False
    reversed: bool = False
    reversal_id: uuid.UUID | None = None


class QuoteOut(SettlementFigures, frozen=True, kw_only=True):
    quote: bool = True


class OrderClosedOut(Out, frozen=True, kw_only=True):
    order_id: uuid.UUID
    status: Literal["paid", "recovered"]
    reference: str


class ReversalOut(Out, frozen=True, kw_only=True):
    reversal_id: uuid.UUID
    settlement_id: uuid.UUID
    request_id: str
    terminal_id: str
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    total: int
    accumulators_returned: Accumulators
    created_at: dt.datetime
    replayed: bool = False


class ProgrammeOut(ProgrammeStanding, frozen=True, kw_only=True):
    """One programme in force: its cap, what is used and what is left (settlement/eligibility.py)."""


class CatalogueEntryOut(Out, frozen=True, kw_only=True):
    """What the item catalogue in force says about one code. ``listed`` false: the code is not in it,
    and a line of it is paid in full by the patient (with no catalogue in force, every code is
    ``listed`` None and the terminal's category stands)."""

    code: str
    listed: bool | None
    category: Literal["A", "B", "C"] | None = None
    # The B item's self-pay-first share as a decimal ("0.20"); the policy's share when the item has none.
    self_pay_share: str | None = None
    # The price cap per unit in fen (None: no cap).
    price_cap: int | None = None


class EligibilityOut(Out, frozen=True, kw_only=True):
    person: str
    # Who the ID belongs to, for the clerk to check against the patient at the counter: the registered
    # name ("" when none was given), and the sex and age (on the service date) the ID number itself states.
    name: str
    sex: Literal["male", "female"]
    age: int
    service_date: dt.date
    policy_version: str
    insured: bool
    outpatient_deductible_remaining: int
    insurance_outpatient_cap_remaining: int
    insurance_inpatient_cap_remaining: int
    programmes: list[ProgrammeOut]
    unpaid_eligible_year_to_date: int
    warnings: list[Notice]
    # Every fund of the policy's chain, in chain order: whether it can pay for this person, and what is
    # left of its annual caps.
    funds: list[FundStanding]
    # The item catalogue version in force on the service date (None: none), and what it says about each
    # code the request asked about, in the request's order.
    catalogue_version: str | None = None
    items: list[CatalogueEntryOut] = []


class PersonOut(Out, frozen=True, kw_only=True):
    person: str
    name: str
    created: bool
    memberships: list[MembershipIn]
    changes: dict[str, int]


class ClinicOut(Out, frozen=True, kw_only=True):
    clinic_id: str
    name: str
    level: ClinicLevel
    region: str


class ClinicsOut(Out, frozen=True, kw_only=True):
    clinics: list[ClinicOut]


class Problem(Out, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details with a stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    # The trace id of this HTTP request (its X-Request-Id): what to quote to the operator. Not a bill's
    # request_id, which is the terminal's own key for the bill.
    trace_id: str
    # The same trace id under its first name, kept so integrations written against it keep working;
    # read trace_id instead.
    request_id: str
    field: str | None = None
    retry_after: int | None = None
    # The gateway's clock, in Unix seconds, when a signed request's timestamp is refused as too far from it.
    server_time: int | None = None
