"""The payer chain as data, and the engine that settles a bill along it.

A policy declares its funds and an ordered chain of steps, one fund each (DESIGN Part 2, "Funds and
the payer chain"; docs/policy-files.md says how to write one). ``settle`` walks the chain: every step
pays from the eligible amount still unpaid after the steps before it, rounds once (half up, to the
fen, in ``money.round_half_up``), and is limited by what is left of its annual cap. The patient pays
the rest.

A step's rule is picked per bill: the first of the step's rules that matches the visit type, the
clinic level and the person's programme codes on the service date. What a rule can say:

* a **deductible**: none; per admission (by clinic level); or per year, consumed from a named
  counter over the year's bills before the step pays;
* a **rate**: flat (by clinic level); marginal bands over this bill's base; or marginal bands over a
  **year-to-date counter** of the step's base (pay = f(counter after) - f(counter before), rounded
  once), whose first band starts at a threshold;
* an **annual cap** on a named paid counter, which several steps or codes may share.

Counters are named per person and calendar year, so a new policy version continues the same
counters. ``settle`` is pure: no IO, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from operator import sub
from typing import Final, Literal, NamedTuple, TypeVar

import msgspec
from msgspec.structs import replace

from settlement.bills import validate_bill
from settlement.catalogue import CatalogueView, classify, classify_valid
from settlement.errors import InpatientNotOffered, InsurerDisagrees, UnknownProgrammeCode
from settlement.models import (
    ACCUMULATOR_FIELDS,
    Accumulators,
    BandTrace,
    Bill,
    ClinicLevel,
    LineBreakdown,
    Model,
    PayerTrace,
    PersonStatus,
    Settlement,
    VisitType,
)
from settlement.money import RATE_SCALE, round_half_up, spread_whole
from settlement.policy import Band
from settlement.registry import strike_off_notices

Counts = Literal["every_bill", "applied"]
DeductibleKind = Literal["none", "per_admission", "per_year"]
RateKind = Literal["flat", "bands", "ytd_bands"]

# The funds today's terminals read by name in every answer (Settlement.insurance and so on).
NAMED_FUNDS: Final = ("insurance", "veteran_subsidy", "hardship_aid")

# The registry's programme codes live on PersonStatus under these names (the payer-era fields).
_STATUS_FIELDS: Mapping[str, str] = {"veteran_subsidy": "veteran_category", "hardship_aid": "hardship_tier"}


# ---------------------------------------------------------------- the chain


class Fund(Model, frozen=True, kw_only=True):
    """A payer: its stable code (ledger account and API name), names, national fund type and whether
    the law obliges it (statutory payers always come before the others in a chain)."""

    code: str
    name: str
    name_en: str
    fund_type: str | None
    statutory: bool


class Rule(Model, frozen=True, kw_only=True):
    """How a step pays on the bills and people it matches. ``None`` in a match field means any.

    Money is fen, rates parts per million. ``rate_by_level`` holds a flat rate per clinic level;
    ``bands`` apply to this bill's base after the deductible; ``ytd_bands`` to the step's
    year-to-date counter, with edges in counter values and the first band starting at
    ``threshold``. ``annual_cap`` None means the step pays without a cap (its paid counter still
    counts)."""

    visit_types: tuple[VisitType, ...] | None = None
    levels: tuple[ClinicLevel, ...] | None = None
    codes: tuple[str, ...] | None = None
    members_of: tuple[tuple[str, tuple[str, ...]], ...] = ()
    deductible: DeductibleKind = "none"
    deductible_by_level: Mapping[ClinicLevel, int] = {}
    deductible_counter: str | None = None
    rate_kind: RateKind
    rate_by_level: Mapping[ClinicLevel, int] = {}
    rate_text_by_level: Mapping[ClinicLevel, str] = {}
    bands: tuple[Band, ...] = ()
    threshold: int = 0
    annual_cap: int | None = None
    paid_counter: str

    def matches(self, visit_type: str, level: str, code: str | None, codes_of: Mapping[str, str]) -> bool:
        if self.visit_types is not None and visit_type not in self.visit_types:
            return False
        if self.levels is not None and level not in self.levels:
            return False
        if self.codes is not None and code not in self.codes:
            return False
        return all(codes_of.get(programme) in codes for programme, codes in self.members_of)


class Step(Model, frozen=True, kw_only=True):
    """One fund's turn in the chain: who and which bills it applies to, and its rules (first match)."""

    fund: Fund
    insured: bool = False
    programme: str | None = None
    codes: tuple[str, ...] | None = None
    visit_types: tuple[VisitType, ...] | None = None
    levels: tuple[ClinicLevel, ...] | None = None
    referral: bool = False
    ytd_counter: str | None = None
    ytd_counts: Counts = "applied"
    remote: bool = False
    """Paid by the insurer's core: at a real settlement its amount is the insurer's answer, recorded and never
    recomputed; the rules stand for the insurer's (quotes, what-if, the insurer simulator)."""
    rules: tuple[Rule, ...]
    rule_index: Mapping[tuple[str, str, str | None], int] = {}
    """The first matching rule by (visit type, clinic level, the person's code in ``programme``), -1 for
    none, worked out when the policy loads; empty when a rule looks at other programmes (``members_of``)
    and the rules are matched one by one."""


class InsurerLink(Model, frozen=True, kw_only=True):
    """How to reach the insurer's core that pays a chain's remote steps (DESIGN Part 2, "Beside the insurer's
    core"). Operational, not what the policy says about money: left out of the policy's stored identity."""

    url: str
    institution_code: str
    institution_name: str
    area_code: str
    timeout_ms: int
    connect_timeout_ms: int
    answer_id: Literal["platform", "echo"] = "platform"
    """What the insurer's answers carry as ``inf_refmsgid``: ``platform``, its own receipt id (the national
    interface; kept, never compared); ``echo``, the request's message id (then it must be ours)."""


class Chain(Model, frozen=True, kw_only=True):
    """A policy version: eligibility, the programmes it names, and its chain of steps."""

    id: str
    effective_from: dt.date
    description: str
    b_self_pay_first_share: int
    inpatient_levels: tuple[ClinicLevel, ...]
    programmes: Mapping[str, tuple[str, ...]]
    steps: tuple[Step, ...]
    counters: tuple[str, ...]
    named_steps: tuple[int | None, int | None, int | None] = (None, None, None)
    """Where the funds ``insurance``, ``veteran_subsidy`` and ``hardship_aid`` are in the chain, for the
    answer's fields of those names (None: the chain has no such fund)."""
    de_minimis: int = 100
    """Re-adjudication (settlement/readjudication.py): a fund's order for a person-year smaller than this
    (fen) is waived, neither paid nor recovered."""
    recover_overpayments: bool = False
    """Whether what a fund overpaid, found by re-adjudication, becomes a recovery order (else it is only
    reported)."""
    insurer: InsurerLink | None = None
    """Where the remote steps are settled (None: the chain has none)."""

    @property
    def remote_funds(self) -> tuple[Fund, ...]:
        """The funds the insurer's core pays, in chain order (they lead the chain)."""
        return tuple(step.fund for step in self.steps if step.remote)

    @property
    def funds(self) -> tuple[Fund, ...]:
        return tuple(step.fund for step in self.steps)

    @property
    def position(self) -> dict[str, int]:
        """Each fund's place in the chain."""
        return {step.fund.code: index for index, step in enumerate(self.steps)}

    def offers_inpatient(self, level: str) -> bool:
        return level in self.inpatient_levels


# Fields the loader works out from the others, to settle faster: not part of what a policy says.
DERIVED_FIELDS: Final = frozenset({"named_steps", "rule_index", "rate_text_by_level", "insurer"})


def policy_document(chain: Chain) -> str:
    """What the policy says, as JSON: the version's identity in the database. A stored version whose
    document differs is a changed policy; fields derived at load (``DERIVED_FIELDS``) are left out, so
    making the engine faster never changes a policy's identity."""
    return msgspec.json.encode(_what_it_says(chain)).decode()


# Fields added after policies were first stored, left out of the document while they hold their default: a
# version that does not set them keeps the identity it was stored under (a database holding it still starts).
SAID_ONLY_WHEN_SET: Final = {"de_minimis": 100, "recover_overpayments": False, "remote": False}


def _what_it_says(value: object) -> object:
    if isinstance(value, msgspec.Struct):
        return {
            name: _what_it_says(getattr(value, name))
            for name in value.__struct_fields__
            if name not in DERIVED_FIELDS
            and not (name in SAID_ONLY_WHEN_SET and getattr(value, name) == SAID_ONLY_WHEN_SET[name])
        }
    if isinstance(value, dict):
        return {key: _what_it_says(child) for key, child in value.items()}
    if isinstance(value, tuple | list):
        return [_what_it_says(child) for child in value]
    return value


# ---------------------------------------------------------------- the engine


def programme_codes(status: PersonStatus) -> dict[str, str]:
    """The person's code in each programme in force: ``{"hardship_aid": "marginal", ...}``."""
    codes = dict(status.programmes)
    for programme, field in _STATUS_FIELDS.items():
        code = getattr(status, field)
        if code is not None:
            codes[programme] = code
    return codes


UNCAPPED: Final = 10**15
"""The cap written for a paid counter that a rule leaves uncapped for this person: 10 trillion yuan,
far above any year's payments and far below what a bigint holds."""


def caps_in_force(chain: Chain, status: PersonStatus) -> dict[str, int]:
    """The largest cap each counter can be held to for this person, whatever the bill: a paid
    counter's annual cap (``UNCAPPED`` where a rule for this person pays without one), a per-year
    deductible counter's amount. Counters no rule for this person limits (year-to-date counters, and
    the counters of steps the person is not in) are left out. The database keeps the highest cap a
    person-year was ever settled under beside its counters, for its CHECK constraint.

    They depend on the person's programme codes only, so they are worked out once per chain and set of
    codes (every settlement asks)."""
    programmes = status.programmes
    key: _PlanKey = (status.veteran_category, status.hardship_tier, tuple(programmes.items()) if programmes else ())
    by_codes = _kept(_caps_by_chain, chain)
    caps = by_codes.get(key)
    if caps is None:
        caps = _remember(by_codes, key, _work_out_caps(chain, status))
    return dict(caps)


def _work_out_caps(chain: Chain, status: PersonStatus) -> dict[str, int]:
    caps: dict[str, int] = {}
    for step in chain.steps:
        for rule in applicable_rules(step, status):
            # The insurer holds its own caps: what it paid is booked as it answered.
            cap = UNCAPPED if rule.annual_cap is None or step.remote else rule.annual_cap
            caps[rule.paid_counter] = max(caps.get(rule.paid_counter, 0), cap)
            if rule.deductible_counter is not None:
                yearly = max(rule.deductible_by_level.values(), default=0)
                caps[rule.deductible_counter] = max(caps.get(rule.deductible_counter, 0), yearly)
    return caps


def applicable_rules(step: Step, status: PersonStatus) -> tuple[Rule, ...]:
    """The step's rules that can apply to this person on some bill: by their programme codes only,
    whatever the visit type, clinic level, referral or insurance."""
    codes_of = programme_codes(status)
    code = codes_of.get(step.programme) if step.programme is not None else None
    if step.programme is not None and (code is None or (step.codes is not None and code not in step.codes)):
        return ()
    return tuple(
        rule
        for rule in step.rules
        if (rule.codes is None or code in rule.codes)
        and all(codes_of.get(programme) in codes for programme, codes in rule.members_of)
    )


def remote_applies(chain: Chain, bill: Bill, status: PersonStatus) -> bool:
    """Whether the insurer's core has a step that may pay on this bill for this person: whether to ask it."""
    codes_of = programme_codes(status)
    return any(
        step.remote
        and _why_not(step, bill, status, codes_of.get(step.programme) if step.programme is not None else None) is None
        for step in chain.steps
    )


def settle(
    bill: Bill,
    status: PersonStatus,
    counters: Mapping[str, int] | Accumulators,
    chain: Chain,
    catalogue: CatalogueView | None = None,
    remote: Mapping[str, int] | None = None,
) -> Settlement:
    """Settle one bill for one person along ``chain``, given their counters for the service year
    (by name, or as the default policy's six named ``Accumulators``), with its lines classified by
    the item catalogue version in force on the service date (None: the terminal's categories stand).

    ``remote`` holds what the insurer's core paid, by fund code, for the chain's remote steps: those
    amounts are booked as they are, and the local steps pay from what is left. Without it the remote
    steps are computed by their rules, as an estimate (a quote, a what-if)."""
    if isinstance(counters, Accumulators):
        counters = {name: getattr(counters, name) for name in ACCUMULATOR_FIELDS}
    items = bill.items
    # Each line's four buckets: 全自费, 超限价自付, 先行自付 and 政策范围内 (eligible), in DESIGN's order. A bill
    # with nothing to refuse or to note is checked and classified in one pass; any other goes the long way, so
    # each refusal comes at its turn.
    share = chain.b_self_pay_first_share
    parts = classify_valid(items, catalogue, share)
    if parts is None:
        validate_bill(bill)
    visit_type = bill.visit_type
    level = bill.clinic_level
    if visit_type == "inpatient" and level not in chain.inpatient_levels:
        raise InpatientNotOffered(
            f"{level} clinics offer no inpatient care; settle this bill as outpatient or refer it",
            field="visit_type",
        )
    plan = _plans(chain, bill, status)
    if parts is None:
        parts = classify(items, catalogue, share)
    categories, line_not_covered, line_over_limit, line_self_pay, line_eligible, notices, total = parts
    over_limit = sum(line_over_limit)
    eligible = sum(line_eligible)
    self_pay_first = sum(line_self_pay)
    not_covered = total - eligible - self_pay_first - over_limit

    if remote is not None:
        _check_remote(chain, remote, eligible)
    values = {name: counters.get(name, 0) for name in chain.counters}
    before = dict(values)
    version = chain.id
    traces: list[PayerTrace] = []
    shares_by_step: list[Sequence[int]] = []
    line_unpaid = line_eligible
    remaining = eligible
    nothing = (0,) * len(items)
    for step_plan in plan.steps:
        if remote is not None and step_plan.step.remote:
            trace = _remote_step(step_plan, remaining, values, remote.get(step_plan.payer, 0), version)
        else:
            trace = _step(step_plan, level, remaining, values)
        traces.append(trace)
        paid = trace.paid
        if not paid:
            shares_by_step.append(nothing)
        elif paid == remaining:  # the step pays every line's unpaid amount: no remainders to spread
            shares_by_step.append(line_unpaid)
            line_unpaid = [0] * len(items)
            remaining = 0
        else:
            shares = spread_whole(paid, line_unpaid, remaining)  # remaining is sum(line_unpaid), and above paid
            shares_by_step.append(shares)
            line_unpaid = list(map(sub, line_unpaid, shares))
            remaining -= paid

    # The three funds today's terminals read by name, at their places in the chain (None: not in it).
    named = chain.named_steps
    insurance_shares, subsidy_shares, aid_shares = (
        nothing if index is None else shares_by_step[index] for index in named
    )
    lines = tuple(
        [
            LineBreakdown(
                code=item.code,
                category=category,
                amount=item.amount,
                not_covered=line_not_covered_amount,
                over_limit=line_over_limit_amount,
                self_pay_first=self_pay,
                eligible=line_eligible_amount,
                insurance=insurance_share,
                veteran_subsidy=subsidy_share,
                hardship_aid=aid_share,
                out_of_pocket=item.amount - line_eligible_amount + unpaid,
                payers=shares,
            )
            for (
                item,
                category,
                line_not_covered_amount,
                line_over_limit_amount,
                self_pay,
                line_eligible_amount,
                unpaid,
                insurance_share,
                subsidy_share,
                aid_share,
                shares,
            ) in zip(
                items,
                categories,
                line_not_covered,
                line_over_limit,
                line_self_pay,
                line_eligible,
                line_unpaid,
                insurance_shares,
                subsidy_shares,
                aid_shares,
                zip(*shares_by_step, strict=True),
                strict=True,
            )
        ]
    )
    if notices:
        noticed = {notice.line: notice.code for notice in notices}
        lines = tuple(
            replace(line, notice=noticed[index]) if index in noticed else line for index, line in enumerate(lines)
        )
    settlement = replace(
        plan.settlement,
        service_date=bill.service_date,
        total=total,
        eligible=eligible,
        self_pay_first=self_pay_first,
        not_covered=not_covered,
        insurance=0 if named[0] is None else traces[named[0]].paid,
        veteran_subsidy=0 if named[1] is None else traces[named[1]].paid,
        hardship_aid=0 if named[2] is None else traces[named[2]].paid,
        out_of_pocket=total - (eligible - remaining),
        traces=tuple(traces),
        lines=lines,
        counters_before=before,
        counters_after=values,
        warnings=strike_off_notices(status) + notices,
        catalogue_version=None if catalogue is None else catalogue.version,
    )
    if over_limit or bill.details is not None:  # apart, to keep to 15 keyword arguments (see _Plan)
        settlement = replace(settlement, over_limit=over_limit, details=bill.details)
    return settlement


class _StepPlan(NamedTuple):
    """What a step does on every bill of one kind (visit type, clinic level, referral) for every person with
    the same insurance, programme codes and strike-offs: why it does not pay (None: it does) and the rule it
    pays under, the year-to-date counter it moves (None: none), and what its trace names as the programme.
    The rule's deductible and flat rate at the clinic level are looked up here too (None: the rule has none
    there, and the step looks again, to fail as it always did)."""

    step: Step
    payer: str
    reason: str | None
    rule: Rule | None
    ytd_counter: str | None
    programme: str
    deductible: int | None
    rate: int | None
    rate_text: str | None
    trace: PayerTrace
    """The step's trace with what is the same on every such bill filled in, the rest zero (see ``_Plan``)."""


class _Plan(NamedTuple):
    """A chain worked out for one kind of bill and person: its steps, and the answer with what is the same
    on every such bill filled in. The answer and each trace are made from these with
    ``msgspec.structs.replace``: a call with 16 keyword arguments or more takes CPython 3.11 four times as
    long as one with 15, and a Settlement has 21 fields, a PayerTrace 19."""

    steps: tuple[_StepPlan, ...]
    settlement: Settlement


_PlanKey = tuple[object, ...]
_plans_by_chain: dict[int, tuple[Chain, dict[_PlanKey, _Plan]]] = {}
_caps_by_chain: dict[int, tuple[Chain, dict[_PlanKey, dict[str, int]]]] = {}
_CHAINS_KEPT: Final = 64
_PLANS_KEPT: Final = 4_096
"""Bounds on the plans kept: a server holds a few policy versions, each settling bills of twelve kinds for a
few dozen sets of programme codes; tests that load thousands of generated chains make do with a fresh cache."""

_Kept = TypeVar("_Kept")


def _kept(store: dict[int, tuple[Chain, dict[_PlanKey, _Kept]]], chain: Chain) -> dict[_PlanKey, _Kept]:
    """What ``store`` remembers for ``chain``: by identity, as a Chain is frozen (the chain itself is kept
    beside, so an id reused by a later chain is not mistaken for it)."""
    kept = store.get(id(chain))
    if kept is None or kept[0] is not chain:
        if len(store) >= _CHAINS_KEPT:
            store.clear()
        kept = store[id(chain)] = (chain, {})
    return kept[1]


def _remember(kept: dict[_PlanKey, _Kept], key: _PlanKey, value: _Kept) -> _Kept:
    """``value`` kept under ``key``, within the bound (a full cache starts afresh)."""
    if len(kept) >= _PLANS_KEPT:
        kept.clear()
    kept[key] = value
    return value


def _plans(chain: Chain, bill: Bill, status: PersonStatus) -> _Plan:
    """The chain worked out for this bill's kind and this person (``_Plan``), remembered per chain
    (by identity: a Chain is frozen) and kind, so a bill pays only for what depends on its lines and counters.
    Refuses a programme code the policy does not declare, each time it is asked."""
    programmes = status.programmes
    struck_off = status.struck_off
    key: _PlanKey = (
        bill.visit_type,
        bill.clinic_level,
        bill.referral,
        status.insured,
        status.veteran_category,
        status.hardship_tier,
        tuple(programmes.items()) if programmes else (),
        tuple([end.programme for end in struck_off]) if struck_off else (),
    )
    by_kind = _kept(_plans_by_chain, chain)
    plan = by_kind.get(key)
    if plan is None:
        plan = _remember(by_kind, key, _work_out(chain, bill, status))
    return plan


def _work_out(chain: Chain, bill: Bill, status: PersonStatus) -> _Plan:
    """``_plans`` for a kind of bill and person not seen yet."""
    codes_of = programme_codes(status)
    for programme, held in codes_of.items():
        declared = chain.programmes.get(programme)
        if declared is not None and held not in declared:
            raise UnknownProgrammeCode(
                f"{programme} code {held!r} has no rule in policy {chain.id}",
                field=_STATUS_FIELDS.get(programme, f"programmes.{programme}"),
            )
    level = bill.clinic_level
    plans = []
    for step in chain.steps:
        code = codes_of.get(step.programme) if step.programme is not None else None
        reason, rule = _rule_for(step, bill, status, codes_of, code)
        moves = step.ytd_counter is not None and (reason is None or step.ytd_counts == "every_bill")
        programme = code if code is not None else level
        trace = PayerTrace(
            payer=step.fund.code,
            applied=rule is not None,
            reason=reason,
            programme=None if rule is None else programme,
            base=0,
            deductible=0,
            deductible_consumed=0,
            threshold=0,
            below_threshold=0,
            bands=(),
            computed=0,
            annual_cap=None if rule is None else rule.annual_cap,
            cap_remaining=None,
            cap_cut=0,
            paid=0,
            policy_version=chain.id,
        )
        plans.append(
            _StepPlan(
                step=step,
                payer=step.fund.code,
                reason=reason,
                rule=rule,
                ytd_counter=step.ytd_counter if moves else None,
                programme=programme,
                deductible=None if rule is None else rule.deductible_by_level.get(level),
                rate=None if rule is None else rule.rate_by_level.get(level),
                rate_text=None if rule is None else rule.rate_text_by_level.get(level),
                trace=trace,
            )
        )
    settlement = Settlement(
        policy_version=chain.id,
        clinic_level=level,
        visit_type=bill.visit_type,
        service_date=bill.service_date,
        total=0,
        eligible=0,
        self_pay_first=0,
        not_covered=0,
        insurance=0,
        veteran_subsidy=0,
        hardship_aid=0,
        out_of_pocket=0,
        traces=(),
        lines=(),
        referral=bill.referral,
    )
    return _Plan(tuple(plans), settlement)


def _step(plan: _StepPlan, level: ClinicLevel, base: int, values: dict[str, int]) -> PayerTrace:
    """One step's turn on ``base``, the eligible amount still unpaid: its trace. Moves ``values``, the
    counters. (On the settle path of every bill, once per step: ``min``/``max`` are written out.)"""
    ytd_before = ytd_after = None
    counter = plan.ytd_counter
    if counter is not None:
        ytd_before = values[counter]
        ytd_after = ytd_before + base
        values[counter] = ytd_after
    rule = plan.rule
    if rule is None:
        return replace(plan.trace, base=base, ytd_before=ytd_before, ytd_after=ytd_after)

    deductible = consumed = 0
    deductible_kind = rule.deductible
    if deductible_kind == "per_admission":
        deductible = plan.deductible if plan.deductible is not None else rule.deductible_by_level[level]
        consumed = base if base < deductible else deductible
    elif deductible_kind == "per_year":
        deductible_counter = rule.deductible_counter
        assert deductible_counter is not None  # the loader refuses a per-year deductible without its counter
        yearly = plan.deductible if plan.deductible is not None else rule.deductible_by_level[level]
        deductible = max(0, yearly - values[deductible_counter])
        consumed = base if base < deductible else deductible
        values[deductible_counter] += consumed
    rated = base - consumed

    threshold = below = 0
    bands: tuple[BandTrace, ...]
    rate_kind = rule.rate_kind
    if rate_kind == "flat":
        rate = plan.rate if plan.rate is not None else rule.rate_by_level[level]
        numerator = rated * rate
        text = plan.rate_text if plan.rate_text is not None else rule.rate_text_by_level[level]
        bands = (BandTrace(lower=0, upper=None, rate=text, amount=rated),)
    elif rate_kind == "bands":
        numerator, bands = _marginal(rule.bands, 0, rated, 0)
    else:
        assert ytd_before is not None and ytd_after is not None  # the loader ties ytd_bands to a counter
        threshold = rule.threshold
        below = max(0, min(ytd_after, threshold) - ytd_before)
        numerator, bands = _marginal(rule.bands, max(ytd_before, threshold), ytd_after, threshold)
    computed = round_half_up(numerator, RATE_SCALE)

    paid_counter = rule.paid_counter
    cap = rule.annual_cap
    if cap is None:
        cap_remaining = None
        paid = computed
    else:
        cap_remaining = cap - values[paid_counter]
        if cap_remaining < 0:
            cap_remaining = 0
        paid = computed if computed < cap_remaining else cap_remaining
    values[paid_counter] += paid
    return replace(
        plan.trace,
        base=base,
        deductible=deductible,
        deductible_consumed=consumed,
        threshold=threshold,
        below_threshold=below,
        ytd_before=ytd_before,
        ytd_after=ytd_after,
        bands=bands,
        computed=computed,
        cap_remaining=cap_remaining,
        cap_cut=computed - paid,
        paid=paid,
    )


def _rule_for(
    step: Step, bill: Bill, status: PersonStatus, codes_of: Mapping[str, str], code: str | None
) -> tuple[str | None, Rule | None]:
    """Why the step does not pay on this bill (None: it does), and the rule it pays under."""
    reason = _why_not(step, bill, status, code)
    if reason is not None:
        return reason, None
    if step.rule_index:
        index = step.rule_index.get((bill.visit_type, bill.clinic_level, code), -1)
        rule = None if index < 0 else step.rules[index]
    else:
        rule = next(
            (
                candidate
                for candidate in step.rules
                if candidate.matches(bill.visit_type, bill.clinic_level, code, codes_of)
            ),
            None,
        )
    return ("no_rule" if rule is None else None), rule


def _check_remote(chain: Chain, remote: Mapping[str, int], eligible: int) -> None:
    """Refuse an insurer's split the chain cannot book: a fund it does not pay, a negative amount, or more
    than the bill's eligible amount (the local steps pay from what it leaves, never below zero)."""
    remote_codes = {fund.code for fund in chain.remote_funds}
    for fund, amount in remote.items():
        if fund not in remote_codes:
            raise InsurerDisagrees(f"the insurer paid fund {fund!r}, which policy {chain.id} does not give it")
        if amount < 0:
            raise InsurerDisagrees(f"the insurer paid a negative amount from fund {fund!r}")
    if sum(remote.values()) > eligible:
        raise InsurerDisagrees(
            f"the insurer paid {sum(remote.values())} fen, more than the {eligible} fen eligible under the catalogue"
        )


def _remote_step(plan: _StepPlan, base: int, values: dict[str, int], paid: int, version: str) -> PayerTrace:
    """A remote step's turn: the insurer paid ``paid`` (at most ``base``, ``_check_remote`` saw to it).
    Its paid counter moves by that, on the counter of the rule that would have applied (the first rule's
    when none would: the insurer decides); its year-to-date counter moves as a local step's would."""
    step, reason, rule = plan.step, plan.reason, plan.rule
    ytd_before = ytd_after = None
    if step.ytd_counter is not None and (reason is None or paid or step.ytd_counts == "every_bill"):
        ytd_before = values[step.ytd_counter]
        ytd_after = ytd_before + base
        values[step.ytd_counter] = ytd_after
    values[(rule or step.rules[0]).paid_counter] += paid
    return PayerTrace(
        payer=plan.payer, applied=bool(paid) or reason is None, reason=None if paid else reason,
        programme=plan.programme, base=base, deductible=0, deductible_consumed=0,
        threshold=0, below_threshold=0, bands=(), computed=paid, annual_cap=None, cap_remaining=None, cap_cut=0,
        paid=paid, policy_version=version, ytd_before=ytd_before, ytd_after=ytd_after, remote=True,
    )  # fmt: skip


def _why_not(step: Step, bill: Bill, status: PersonStatus, code: str | None) -> str | None:
    """Why the step does not apply to this bill and person, or None when it does."""
    if step.insured and not status.insured:
        return "not_insured"
    if step.programme is not None:
        if code is None:
            ended = any(end.programme == step.programme for end in status.struck_off)
            return "struck_off" if ended else "not_enrolled"
        if step.codes is not None and code not in step.codes:
            return "code_not_covered"
    if step.visit_types is not None and bill.visit_type not in step.visit_types:
        return "visit_type_not_covered"
    if step.levels is not None and bill.clinic_level not in step.levels:
        return "clinic_level_not_covered"
    if step.referral and not bill.referral:
        return "referral_required"
    return None


def _marginal(bands: tuple[Band, ...], start: int, end: int, floor: int) -> tuple[int, tuple[BandTrace, ...]]:
    """Rate × amount summed over the bands for the stretch ``[start, end)`` of a base that bands
    measure from ``floor`` (band edges are absolute). Returns the unrounded numerator (fen × ppm)
    and the bands the stretch touched (the first band even when it is empty). (Once or twice a bill:
    ``min``/``max`` are written out.)"""
    numerator = 0
    lower = floor
    touched: list[BandTrace] = []
    for band in bands:
        upper = band.up_to
        part = (end if upper is None or end < upper else upper) - (start if start > lower else lower)
        if part > 0:
            touched.append(BandTrace(lower=lower, upper=upper, rate=band.rate_text, amount=part))
            numerator += part * band.rate
        elif not touched and (upper is None or start < upper):
            touched.append(BandTrace(lower=lower, upper=upper, rate=band.rate_text, amount=0))
        if upper is None or end <= upper:
            break
        lower = upper
    return numerator, tuple(touched)
