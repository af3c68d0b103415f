"""What a person may still claim on a day: each programme in force, its annual cap, used and left.

Pure, like the engine: the person's memberships, the year's accumulators and the policy in
force in; the figures a terminal shows at the swipe out (``GET``-like, nothing written).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from settlement.chain import Chain, caps_in_force
from settlement.engine import strike_off_notices
from settlement.models import ACCUMULATOR_FIELDS, Accumulators, Model, Notice
from settlement.registry import Membership, status_on

ENDS_SOON = dt.timedelta(days=30)  # a membership ending within this many days is announced


class ProgrammeStanding(Model, frozen=True, kw_only=True):
    programme: str  # a payer's programme, or another the policy names (charity)
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
    policy: Chain, memberships: Iterable[Membership], accumulators: Accumulators, day: dt.date
) -> Eligibility:
    memberships = tuple(memberships)
    status = status_on(memberships, day)
    caps = caps_in_force(policy, status)
    counters = {name: getattr(accumulators, name) for name in ACCUMULATOR_FIELDS}
    programmes = []
    warnings = list(strike_off_notices(status))
    for membership in memberships:
        if not membership.in_force(day):
            continue
        # What the programme's fund may pay this year: the caps on its paid counters, for this person.
        paid_counters = {
            rule.paid_counter for step in policy.steps if step.fund.code == membership.programme for rule in step.rules
        }
        cap = sum(caps.get(name, 0) for name in paid_counters)
        used = sum(counters.get(name, 0) for name in paid_counters)
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
        outpatient_deductible_remaining=_left(caps, counters, "outpatient_deductible_used") if insured else 0,
        insurance_outpatient_cap_remaining=_left(caps, counters, "insurance_outpatient_paid") if insured else 0,
        insurance_inpatient_cap_remaining=_left(caps, counters, "insurance_inpatient_paid") if insured else 0,
        programmes=tuple(programmes),
        unpaid_eligible_year_to_date=accumulators.unpaid_eligible,
        warnings=tuple(warnings),
    )


def _left(caps: dict[str, int], counters: dict[str, int], name: str) -> int:
    return max(0, caps.get(name, 0) - counters.get(name, 0))
