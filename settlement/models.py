"""Typed, frozen models the engine takes and returns.

All money is ``int`` fen. Structs are frozen and keyword-only so a settlement,
once computed, cannot be changed by whoever holds it. The same structs are what
the gateway encodes to JSON and MessagePack, so field names are the public names.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

VisitType = Literal["outpatient", "inpatient"]
ClinicLevel = Literal["village", "township", "county"]
Category = Literal["A", "B", "C"]
Payer = Literal["insurance", "veteran_subsidy", "hardship_aid"]

VISIT_TYPES: tuple[VisitType, ...] = ("outpatient", "inpatient")
CLINIC_LEVELS: tuple[ClinicLevel, ...] = ("village", "township", "county")
PAYERS: tuple[Payer, ...] = ("insurance", "veteran_subsidy", "hardship_aid")


class Model(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Base for every engine model.

    Frozen, holding only numbers, text, dates and tuples of other models, a model can never be part of
    a reference cycle, so the garbage collector need not track it (``gc=False``): a settlement makes
    dozens of them, and tracking them made the collector a tenth of the gateway's CPU under load.
    """


# ---------------------------------------------------------------- inputs


class LineItem(Model, frozen=True, kw_only=True):
    """One line of an itemised bill. ``amount`` is the line total in fen."""

    code: str
    name: str
    category: Category
    amount: int
    quantity: int | None = None
    unit_price: int | None = None


class Bill(Model, frozen=True, kw_only=True):
    """An itemised bill: one clinic, one visit type, one service date."""

    clinic_level: ClinicLevel
    visit_type: VisitType
    service_date: dt.date
    items: tuple[LineItem, ...]
    referral: bool = False


class ProgrammeEnd(Model, frozen=True, kw_only=True):
    """A membership that was struck off on or before the service date.

    The person is not in the programme from ``struck_off_on`` onwards; the engine
    turns this into a warning on the settlement. ``programme`` is any registry programme: one of
    the payers' or another a policy names (``charity``).
    """

    programme: str
    code: str
    struck_off_on: dt.date


class PersonStatus(Model, frozen=True, kw_only=True):
    """A person's programmes in force on the bill's service date.

    ``programmes`` holds the codes of programmes beyond the priority-care category and the hardship
    tier that a policy's chain may name (``{"charity": "child_major_disease"}``)."""

    insured: bool
    veteran_category: str | None = None
    hardship_tier: str | None = None
    struck_off: tuple[ProgrammeEnd, ...] = ()
    programmes: dict[str, str] = {}


class Accumulators(Model, frozen=True, kw_only=True):
    """Per person and calendar year: what has been used so far.

    ``unpaid_eligible`` is the year-to-date eligible amount left unpaid after
    insurance and the subsidy (before aid), over every settlement of the year; the
    ``medical_hardship`` tier pays only above a threshold on it.
    """

    outpatient_deductible_used: int = 0
    insurance_outpatient_paid: int = 0
    insurance_inpatient_paid: int = 0
    subsidy_paid: int = 0
    aid_paid: int = 0
    unpaid_eligible: int = 0


ACCUMULATOR_FIELDS: tuple[str, ...] = Accumulators.__struct_fields__


# ---------------------------------------------------------------- outputs


class Notice(Model, frozen=True, kw_only=True):
    """A warning the terminal should show, such as a strike-off."""

    code: str
    message: str
    programme: str | None = None
    date: dt.date | None = None


class BandTrace(Model, frozen=True, kw_only=True):
    """One rate band as applied: the part of the base in ``[lower, upper)``."""

    lower: int
    upper: int | None
    rate: str
    amount: int


class PayerTrace(Model, frozen=True, kw_only=True):
    """Why one payer paid what it paid: enough to print on a receipt.

    ``base`` is the eligible amount still unpaid at this payer's turn. From it the
    deductible (insurance) or the part below a year-to-date threshold
    (``medical_hardship``) is set aside, the rest goes through ``bands`` (one band
    for a flat rate), giving ``computed`` (rounded once, half up). The annual cap
    left before this bill can cut that to ``paid``.
    """

    payer: Payer
    applied: bool
    reason: str | None
    programme: str | None
    base: int
    deductible: int
    deductible_consumed: int
    threshold: int
    below_threshold: int
    bands: tuple[BandTrace, ...]
    computed: int
    annual_cap: int
    cap_remaining: int
    cap_cut: int
    paid: int
    policy_version: str


class LineBreakdown(Model, frozen=True, kw_only=True):
    """One line's share of each payer, spread by largest remainder."""

    code: str
    category: Category
    amount: int
    self_pay_first: int
    eligible: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int


class Settlement(Model, frozen=True, kw_only=True):
    """The full result of settling one bill.

    ``insurance + veteran_subsidy + hardship_aid + out_of_pocket == total``.
    """

    policy_version: str
    clinic_level: ClinicLevel
    visit_type: VisitType
    service_date: dt.date
    total: int
    eligible: int
    self_pay_first: int
    not_covered: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    traces: tuple[PayerTrace, ...]
    lines: tuple[LineBreakdown, ...]
    accumulators_before: Accumulators
    accumulators_after: Accumulators
    warnings: tuple[Notice, ...] = ()
