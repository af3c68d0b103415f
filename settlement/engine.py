"""The settlement engine: insurance, then the priority-care subsidy, then hardship aid.

``settle`` is pure and deterministic: no IO, no clock. A quote is the same call
whose result the caller does not record. Each payer pays from the eligible amount
still unpaid after the payers before it; each payer's amount is rounded once, half
up (``money.round_half_up``), then limited by what is left of its annual cap.
"""

from __future__ import annotations

from settlement.bills import validate_bill
from settlement.errors import InpatientNotOffered, InvalidBill, UnknownProgrammeCode
from settlement.models import (
    ACCUMULATOR_FIELDS,
    Accumulators,
    BandTrace,
    Bill,
    LineBreakdown,
    PayerTrace,
    PersonStatus,
    Settlement,
)
from settlement.money import RATE_SCALE, apply_rate, format_rate, round_half_up, spread
from settlement.policy import Band, Policy
from settlement.registry import strike_off_notices


def settle(bill: Bill, status: PersonStatus, accumulators: Accumulators, policy: Policy) -> Settlement:
    """Settle one bill for one person against their accumulators for the service year."""
    validate_bill(bill)
    if any(item.category is None for item in bill.items):  # this engine predates the item catalogue
        raise InvalidBill("category is required", field="items")
    version = policy.id
    visit_type = bill.visit_type
    inpatient = visit_type == "inpatient"
    items = bill.items

    # 1. Eligible amount per line. B lines lose their self-pay-first share, rounded per line.
    share = policy.b_self_pay_first_share
    line_eligible: list[int] = []
    line_self_pay: list[int] = []
    total = 0
    not_covered = 0
    for item in items:
        amount = item.amount
        total += amount
        category = item.category
        if category == "A":
            line_eligible.append(amount)
            line_self_pay.append(0)
        elif category == "B":
            self_pay = apply_rate(amount, share)
            line_eligible.append(amount - self_pay)
            line_self_pay.append(self_pay)
        else:
            line_eligible.append(0)
            line_self_pay.append(0)
            not_covered += amount
    eligible = sum(line_eligible)
    self_pay_first = sum(line_self_pay)

    # 2. Insurance.
    insurance_rule = policy.insurance
    level_rule = insurance_rule.levels[bill.clinic_level]
    if inpatient and level_rule.inpatient_rate is None:
        raise InpatientNotOffered(
            f"{bill.clinic_level} clinics offer no inpatient care; settle this bill as outpatient or refer it",
            field="visit_type",
        )
    deductible_used = accumulators.outpatient_deductible_used
    outpatient_paid = accumulators.insurance_outpatient_paid
    inpatient_paid = accumulators.insurance_inpatient_paid
    if inpatient:
        deductible = level_rule.inpatient_deductible or 0
        rate = level_rule.inpatient_rate or 0
        annual_cap = insurance_rule.inpatient_cap
        cap_remaining = max(0, annual_cap - inpatient_paid)
    else:
        deductible = max(0, insurance_rule.outpatient_deductible - deductible_used)
        rate = level_rule.outpatient_rate
        annual_cap = insurance_rule.outpatient_cap
        cap_remaining = max(0, annual_cap - outpatient_paid)
    if status.insured:
        consumed = min(eligible, deductible)
        insurance_trace = _flat_trace(
            "insurance", bill.clinic_level, eligible, deductible, consumed, rate, annual_cap, cap_remaining, version
        )
        insurance = insurance_trace.paid
        if inpatient:
            inpatient_paid += insurance
        else:
            outpatient_paid += insurance
            deductible_used += consumed
    else:
        insurance_trace = _not_applied("insurance", "not_insured", eligible, version)
        insurance = 0
    remaining = eligible - insurance

    # 3. Priority-care subsidy.
    subsidy_paid = accumulators.subsidy_paid
    category_code = status.veteran_category
    if category_code is not None:
        category_rule = policy.veteran_categories.get(category_code)
        if category_rule is None:
            raise UnknownProgrammeCode(
                f"priority-care category {category_code!r} has no rule in policy {version}",
                field="veteran_category",
            )
        annual_cap = category_rule.annual_cap
        subsidy_trace = _flat_trace(
            "veteran_subsidy",
            category_code,
            remaining,
            0,
            0,
            category_rule.rate(visit_type),
            annual_cap,
            max(0, annual_cap - subsidy_paid),
            version,
        )
        subsidy = subsidy_trace.paid
        subsidy_paid += subsidy
    else:
        subsidy_trace = _not_applied("veteran_subsidy", _absent_reason(status, "veteran_subsidy"), remaining, version)
        subsidy = 0
    remaining -= subsidy

    # 4. Hardship aid. The year-to-date unpaid eligible spending grows for everyone,
    # whatever their tier, so that medical_hardship can look back over the year.
    unpaid_before = accumulators.unpaid_eligible
    unpaid_after = unpaid_before + remaining
    aid_paid = accumulators.aid_paid
    tier_code = status.hardship_tier
    if tier_code is not None:
        tier_rule = policy.hardship_tiers.get(tier_code)
        if tier_rule is None:
            raise UnknownProgrammeCode(
                f"hardship tier {tier_code!r} has no rule in policy {version}", field="hardship_tier"
            )
        threshold = tier_rule.ytd_unpaid_threshold
        below = max(0, min(unpaid_after, threshold) - unpaid_before) if threshold else 0
        annual_cap = tier_rule.annual_cap
        cap_remaining = max(0, annual_cap - aid_paid)
        if inpatient:
            aid_trace = _banded_trace(
                tier_code, remaining, threshold, below, tier_rule.inpatient_bands, annual_cap, cap_remaining, version
            )
        else:
            aid_trace = _flat_trace(
                "hardship_aid",
                tier_code,
                remaining,
                0,
                0,
                tier_rule.outpatient_rate,
                annual_cap,
                cap_remaining,
                version,
                threshold=threshold,
                below_threshold=below,
            )
        aid = aid_trace.paid
        aid_paid += aid
    else:
        aid_trace = _not_applied("hardship_aid", _absent_reason(status, "hardship_aid"), remaining, version)
        aid = 0

    out_of_pocket = total - insurance - subsidy - aid

    # 5. Spread each payer over the lines, in proportion to each line's eligible
    # amount still unpaid at that payer's turn.
    line_insurance = spread(insurance, line_eligible, eligible)
    after_insurance = [e - i for e, i in zip(line_eligible, line_insurance, strict=True)]
    line_subsidy = spread(subsidy, after_insurance, eligible - insurance)
    after_subsidy = [r - s for r, s in zip(after_insurance, line_subsidy, strict=True)]
    line_aid = spread(aid, after_subsidy, eligible - insurance - subsidy)
    lines = tuple(
        LineBreakdown(
            code=item.code,
            category=item.category or "C",  # never None: refused above
            amount=item.amount,
            self_pay_first=line_self_pay[index],
            eligible=line_eligible[index],
            insurance=line_insurance[index],
            veteran_subsidy=line_subsidy[index],
            hardship_aid=line_aid[index],
            out_of_pocket=item.amount - line_insurance[index] - line_subsidy[index] - line_aid[index],
        )
        for index, item in enumerate(items)
    )

    after = Accumulators(
        outpatient_deductible_used=deductible_used,
        insurance_outpatient_paid=outpatient_paid,
        insurance_inpatient_paid=inpatient_paid,
        subsidy_paid=subsidy_paid,
        aid_paid=aid_paid,
        unpaid_eligible=unpaid_after,
    )
    return Settlement(
        policy_version=version,
        clinic_level=bill.clinic_level,
        visit_type=visit_type,
        service_date=bill.service_date,
        total=total,
        eligible=eligible,
        self_pay_first=self_pay_first,
        not_covered=not_covered,
        insurance=insurance,
        veteran_subsidy=subsidy,
        hardship_aid=aid,
        out_of_pocket=out_of_pocket,
        traces=(insurance_trace, subsidy_trace, aid_trace),
        lines=lines,
        accumulators_before=accumulators,
        accumulators_after=after,
        warnings=strike_off_notices(status),
    )


def quote(bill: Bill, status: PersonStatus, accumulators: Accumulators, policy: Policy) -> Settlement:
    """A quote (预结算) is a settlement that the caller does not record."""
    return settle(bill, status, accumulators, policy)


# ---------------------------------------------------------------- accumulators


def settlement_deltas(settlement: Settlement) -> Accumulators:
    """What the settlement added to each of the default policy's six counters."""
    before, after = settlement.counters()
    return Accumulators(**{name: after.get(name, 0) - before.get(name, 0) for name in ACCUMULATOR_FIELDS})


def reversal_deltas(settlement: Settlement) -> Accumulators:
    """The exact amounts a reversal (冲正) gives back: the settlement's deltas, negated."""
    deltas = settlement_deltas(settlement)
    return Accumulators(**{name: -getattr(deltas, name) for name in ACCUMULATOR_FIELDS})


def apply_deltas(accumulators: Accumulators, deltas: Accumulators) -> Accumulators:
    """Add deltas to accumulators, refusing to take any below zero."""
    values = {name: getattr(accumulators, name) + getattr(deltas, name) for name in ACCUMULATOR_FIELDS}
    negative = [name for name, value in values.items() if value < 0]
    if negative:
        raise ValueError(f"accumulators would go negative: {', '.join(negative)}")
    return Accumulators(**values)


# ---------------------------------------------------------------- helpers


def _flat_trace(
    payer: str,
    programme: str,
    base: int,
    deductible: int,
    deductible_consumed: int,
    rate: int,
    annual_cap: int,
    cap_remaining: int,
    version: str,
    *,
    threshold: int = 0,
    below_threshold: int = 0,
) -> PayerTrace:
    rated = base - deductible_consumed - below_threshold
    computed = apply_rate(rated, rate)
    paid = min(computed, cap_remaining)
    return PayerTrace(
        payer=payer,
        applied=True,
        reason=None,
        programme=programme,
        base=base,
        deductible=deductible,
        deductible_consumed=deductible_consumed,
        threshold=threshold,
        below_threshold=below_threshold,
        bands=(BandTrace(lower=0, upper=None, rate=format_rate(rate), amount=rated),),
        computed=computed,
        annual_cap=annual_cap,
        cap_remaining=cap_remaining,
        cap_cut=computed - paid,
        paid=paid,
        policy_version=version,
    )


def _banded_trace(
    tier: str,
    base: int,
    threshold: int,
    below_threshold: int,
    bands: tuple[Band, ...],
    annual_cap: int,
    cap_remaining: int,
    version: str,
) -> PayerTrace:
    rated = base - below_threshold
    numerator = 0
    lower = 0
    applied: list[BandTrace] = []
    for band in bands:
        upper = band.up_to
        in_band = rated - lower if upper is None or rated <= upper else upper - lower
        if in_band > 0 or not applied:
            applied.append(BandTrace(lower=lower, upper=upper, rate=band.rate_text, amount=max(in_band, 0)))
        if in_band > 0:
            numerator += in_band * band.rate
        if upper is None or rated <= upper:
            break
        lower = upper
    computed = round_half_up(numerator, RATE_SCALE)
    paid = min(computed, cap_remaining)
    return PayerTrace(
        payer="hardship_aid",
        applied=True,
        reason=None,
        programme=tier,
        base=base,
        deductible=0,
        deductible_consumed=0,
        threshold=threshold,
        below_threshold=below_threshold,
        bands=tuple(applied),
        computed=computed,
        annual_cap=annual_cap,
        cap_remaining=cap_remaining,
        cap_cut=computed - paid,
        paid=paid,
        policy_version=version,
    )


def _not_applied(payer: str, reason: str, base: int, version: str) -> PayerTrace:
    return PayerTrace(
        payer=payer,
        applied=False,
        reason=reason,
        programme=None,
        base=base,
        deductible=0,
        deductible_consumed=0,
        threshold=0,
        below_threshold=0,
        bands=(),
        computed=0,
        annual_cap=0,
        cap_remaining=0,
        cap_cut=0,
        paid=0,
        policy_version=version,
    )


def _absent_reason(status: PersonStatus, programme: str) -> str:
    for ended in status.struck_off:
        if ended.programme == programme:
            return "struck_off"
    return "not_enrolled"
