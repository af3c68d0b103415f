"""What a person may still claim on a day: each programme in force, its annual cap, used and left.

Pure, like the engine: the person's memberships, the year's accumulators and the policy in
force in; the figures a terminal shows at the swipe out (``GET``-like, nothing written).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from settlement.engine import strike_off_notices
from settlement.models import Accumulators, Model, Notice, Payer
from settlement.policy import Policy
from settlement.registry import Membership, status_on

ENDS_SOON = dt.timedelta(days=30)  # a membership ending within this many days is announced


class ProgrammeStanding(Model, frozen=True, kw_only=True):
    programme: Payer
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None
    annual_cap: int
    used: int
    remaining: int


class Eligibility(Model, frozen=True, kw_only=True):
    service_date: dt.date
    policy_version: str
    insured: bool
    outpatient_deductible_remaining: int
    insurance_outpatient_cap_remaining: int
    insurance_inpatient_cap_remaining: int
    programmes: tuple[ProgrammeStanding, ...]
    unpaid_eligible_year_to_date: int
    warnings: tuple[Notice, ...]


def eligibility(
    policy: Policy, memberships: Iterable[Membership], accumulators: Accumulators, day: dt.date
) -> Eligibility:
    memberships = tuple(memberships)
    status = status_on(memberships, day)
    insurance = policy.insurance
    acc = accumulators
    programmes = []
    warnings = list(strike_off_notices(status))
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
            ProgrammeStanding(
                programme=membership.programme,
                code=membership.code,
                effective_from=membership.effective_from,
                struck_off_on=membership.struck_off_on,
                annual_cap=cap,
                used=used,
                remaining=max(0, cap - used),
            )
        )
        if membership.struck_off_on is not None and membership.struck_off_on - day <= ENDS_SOON:
            warnings.append(
                Notice(
                    code="ends_soon",
                    message=f"{membership.programme} ({membership.code}) ends on "
                    f"{membership.struck_off_on.isoformat()}",
                    programme=membership.programme,
                    date=membership.struck_off_on,
                )
            )
    insured = status.insured
    return Eligibility(
        service_date=day,
        policy_version=policy.id,
        insured=insured,
        outpatient_deductible_remaining=max(0, insurance.outpatient_deductible - acc.outpatient_deductible_used)
        if insured
        else 0,
        insurance_outpatient_cap_remaining=max(0, insurance.outpatient_cap - acc.insurance_outpatient_paid)
        if insured
        else 0,
        insurance_inpatient_cap_remaining=max(0, insurance.inpatient_cap - acc.insurance_inpatient_paid)
        if insured
        else 0,
        programmes=tuple(programmes),
        unpaid_eligible_year_to_date=acc.unpaid_eligible,
        warnings=tuple(warnings),
    )
