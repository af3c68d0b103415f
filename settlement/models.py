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
    """One line of an itemised bill. ``amount`` is the line total in fen. ``category`` is what the
    terminal says; with an item catalogue in force the catalogue decides, and None takes its word."""

    code: str
    name: str
    category: Category | None = None
    amount: int
    quantity: int | None = None
    unit_price: int | None = None


class BillDetails(Model, frozen=True, kw_only=True):
    """What the hospital's own system (HIS) says of a bill beyond its lines: kept with the settlement and
    printed on its receipt, never read by the rules. ``diagnoses`` are ICD-10 codes, the main one first."""

    his_visit_id: str | None = None  # the HIS visit or admission number (门诊号 / 住院号)
    invoice_number: str | None = None
    operator: str | None = None  # who was at the till
    diagnoses: tuple[str, ...] = ()
    admitted_on: dt.date | None = None
    discharged_on: dt.date | None = None


class Bill(Model, frozen=True, kw_only=True):
    """An itemised bill: one clinic, one visit type, one service date."""

    clinic_level: ClinicLevel
    visit_type: VisitType
    service_date: dt.date
    items: tuple[LineItem, ...]
    referral: bool = False
    details: BillDetails | None = None


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
    """A warning the terminal should show, such as a strike-off, or a line the catalogue does not hold
    (``line``: its index in the bill)."""

    code: str
    message: str
    programme: str | None = None
    date: dt.date | None = None
    line: int | None = None


class BandTrace(Model, frozen=True, kw_only=True):
    """One rate band as applied: the part of the base in ``[lower, upper)``."""

    lower: int
    upper: int | None
    rate: str
    amount: int


class PayerTrace(Model, frozen=True, kw_only=True):
    """Why one payer (one step of the policy's chain) paid what it paid: enough to print on a receipt.

    ``payer`` is the fund's code. ``base`` is the eligible amount still unpaid at its turn. From it
    the deductible consumed, or the part below a year-to-date threshold, is set aside; the rest
    goes through ``bands`` (one band for a flat rate), giving ``computed`` (rounded once, half up).
    The annual cap left before this bill (``cap_remaining``; None when the step has no cap) can cut
    that to ``paid``. ``ytd_before``/``ytd_after`` are the step's year-to-date counter around this
    bill when it has one.
    """

    payer: str
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
    annual_cap: int | None
    cap_remaining: int | None
    cap_cut: int
    paid: int
    policy_version: str
    ytd_before: int | None = None
    ytd_after: int | None = None
    # Paid by the insurer's core (a remote step): ``paid`` is the insurer's figure, recorded, never recomputed.
    remote: bool = False


class LineBreakdown(Model, frozen=True, kw_only=True):
    """One line's four buckets, and its share of each payer, spread by largest remainder, step by step
    in chain order.

    ``not_covered`` (全自费) + ``over_limit`` (超限价自付) + ``self_pay_first`` (先行自付) + ``eligible``
    (政策范围内) == ``amount``; ``category`` is the one the line was settled under (the catalogue's, when
    one is in force). ``notice`` names why a line is fully self-pay beyond its category
    (``not_in_catalogue``). Lines recorded before the catalogue carry ``not_covered`` None; see
    ``buckets``. ``payers`` holds the line's share of every step, in chain order; ``insurance``,
    ``veteran_subsidy`` and ``hardship_aid`` repeat the shares of the funds with those codes (0 when
    the chain has none), for terminals that read only those."""

    code: str
    category: Category
    amount: int
    self_pay_first: int
    eligible: int
    not_covered: int | None = None
    over_limit: int = 0
    notice: str | None = None
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    payers: tuple[int, ...] = ()

    def buckets(self) -> LineBreakdown:
        """This line with ``not_covered`` filled in (records from before the catalogue left it out)."""
        if self.not_covered is not None:
            return self
        rest = self.amount - self.self_pay_first - self.over_limit - self.eligible
        return msgspec.structs.replace(self, not_covered=rest)


class InsurerReference(Model, frozen=True, kw_only=True):
    """The insurer's settlement that a bill's remote steps were paid under: the message that settled it
    (also the key of its reversal) and the insurer's own settlement id (the key of its cancellation)."""

    message_id: str
    settlement_id: str


class Settlement(Model, frozen=True, kw_only=True):
    """The full result of settling one bill along the policy's chain.

    ``sum(trace.paid for trace in traces) + out_of_pocket == total``. ``insurance``,
    ``veteran_subsidy`` and ``hardship_aid`` hold what the funds with those codes paid (0 when the
    chain has none). ``counters_before``/``counters_after`` hold every counter the chain names, for
    the person and the service year. Settlements recorded before the chain engine carry
    ``accumulators_before``/``accumulators_after`` instead; ``counters`` reads either.

    The bill's four buckets: ``not_covered`` (全自费) + ``over_limit`` (超限价自付) + ``self_pay_first``
    (先行自付) + ``eligible`` (政策范围内) == ``total``. ``catalogue_version`` names the item catalogue
    version the lines were classified under (None: none was in force, the terminal's categories stood).
    """

    policy_version: str
    clinic_level: ClinicLevel
    visit_type: VisitType
    service_date: dt.date
    total: int
    eligible: int
    self_pay_first: int
    not_covered: int
    over_limit: int = 0
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    traces: tuple[PayerTrace, ...]
    lines: tuple[LineBreakdown, ...]
    counters_before: dict[str, int] = {}
    counters_after: dict[str, int] = {}
    accumulators_before: Accumulators | None = None
    accumulators_after: Accumulators | None = None
    warnings: tuple[Notice, ...] = ()
    referral: bool = False
    catalogue_version: str | None = None
    # The bill's HIS details, as sent (None: none were; and for every settlement stored before they were kept).
    details: BillDetails | None = None
    # The insurer's settlement the remote steps' amounts came from (None: no step was paid remotely).
    insurer: InsurerReference | None = None

    def paid(self, fund: str) -> int:
        """What the fund with this code paid (0 when the chain has no such fund)."""
        return sum(trace.paid for trace in self.traces if trace.payer == fund)

    def remote_paid(self) -> dict[str, int] | None:
        """What the insurer's core paid, by fund code (None: the bill was settled without it)."""
        if self.insurer is None:
            return None
        return {trace.payer: trace.paid for trace in self.traces if trace.remote}

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        """The counters before and after this settlement, whichever form it was recorded in (read only)."""
        if self.accumulators_before is not None and self.accumulators_after is not None and not self.counters_after:
            return (
                {name: getattr(self.accumulators_before, name) for name in ACCUMULATOR_FIELDS},
                {name: getattr(self.accumulators_after, name) for name in ACCUMULATOR_FIELDS},
            )
        return self.counters_before, self.counters_after

    def counter_deltas(self) -> dict[str, int]:
        """What this settlement added to each counter (only the ones it moved)."""
        before, after = self.counters()
        return {name: value - before.get(name, 0) for name, value in after.items() if value != before.get(name, 0)}

    def counter_delta(self, name: str) -> int:
        """What this settlement added to one counter (0 when the chain has no such counter)."""
        before, after = self.counters()
        return after.get(name, 0) - before.get(name, 0)

    def accumulators(self, *, before: bool = False) -> Accumulators:
        """The counters after (or before) in the default policy's six named fields (0 for any the
        chain lacks): what today's terminals read as ``accumulators_after``."""
        values = self.counters()[0 if before else 1]
        return Accumulators(**{name: values.get(name, 0) for name in ACCUMULATOR_FIELDS})
