"""What a person may still claim on a day: each programme in force, its annual cap, used and left.

Pure, like the engine: the person's memberships, the year's accumulators and the policy in
force in; the figures a terminal shows at the swipe out (``GET``-like, nothing written).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from settlement.chain import Chain, Step, applicable_rules, caps_in_force
from settlement.models import Model, Notice, PersonStatus
from settlement.registry import Membership, status_on, strike_off_notices

ENDS_SOON = dt.timedelta(days=30)  # a membership ending within this many days is announced


class ProgrammeStanding(Model, frozen=True, kw_only=True):
    programme: str  # a payer's programme, or another the policy names (charity)
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None
    annual_cap: int
    used: int
    remaining: int


class FundStanding(Model, frozen=True, kw_only=True):
    """One fund of the chain for this person: whether it can pay for them at all, and what is left of
    its annual caps (None: the fund pays this person without a cap, or cannot pay them)."""

    fund: str
    name: str
    applies: bool
    annual_cap: int | None
    used: int
    remaining: int | None


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
    funds: tuple[FundStanding, ...] = ()


def eligibility(
    policy: Chain, memberships: Iterable[Membership], counters: Mapping[str, int], day: dt.date
) -> Eligibility:
    memberships = tuple(memberships)
    status = status_on(memberships, day)
    caps = caps_in_force(policy, status)
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
        unpaid_eligible_year_to_date=counters.get("unpaid_eligible", 0),
        funds=tuple(_fund_standing(step, status, counters) for step in policy.steps),
        warnings=tuple(warnings),
    )


def _left(caps: Mapping[str, int], counters: Mapping[str, int], name: str) -> int:
    return max(0, caps.get(name, 0) - counters.get(name, 0))


def _fund_standing(step: Step, status: PersonStatus, counters: Mapping[str, int]) -> FundStanding:
    rules = applicable_rules(step, status)
    applies = (not step.insured or status.insured) and bool(rules)
    caps: dict[str, int | None] = {}
    for rule in rules:
        current = caps.get(rule.paid_counter, 0)
        if rule.annual_cap is None or current is None:
            caps[rule.paid_counter] = None
        else:
            caps[rule.paid_counter] = max(current, rule.annual_cap)
    used = sum(counters.get(name, 0) for name in caps)
    cap = None if not applies or None in caps.values() else sum(value or 0 for value in caps.values())
    return FundStanding(
        fund=step.fund.code,
        name=step.fund.name,
        applies=applies,
        annual_cap=cap,
        used=used,
        remaining=None if cap is None else max(0, cap - used),
    )
