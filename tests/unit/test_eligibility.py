"""Eligibility arithmetic, pure: caps in force, what is used and left, and programmes about to end."""

from __future__ import annotations

import datetime as dt

from adapters.policy_files import load_policy_book, policy_dir
from settlement.eligibility import eligibility
from settlement.registry import Membership

DAY = dt.date(2026, 5, 1)
POLICY = load_policy_book(policy_dir()).in_force(DAY)


def test_each_programme_in_force_shows_its_cap_used_and_left() -> None:
    memberships = [
        Membership(programme="insurance", code="resident", effective_from=dt.date(2026, 1, 1)),
        Membership(programme="hardship_aid", code="destitute", effective_from=dt.date(2026, 1, 1)),
        Membership(programme="veteran_subsidy", code="priority_care", effective_from=dt.date(2027, 1, 1)),
    ]
    used = {"insurance_outpatient_paid": 30_000, "insurance_inpatient_paid": 70_000, "aid_paid": 5_000}
    figures = eligibility(POLICY, memberships, used, DAY)
    assert figures.insured and figures.policy_version == POLICY.id
    by_programme = {standing.programme: standing for standing in figures.programmes}
    assert set(by_programme) == {"insurance", "hardship_aid"}  # the subsidy starts next year
    insurance = by_programme["insurance"]
    assert insurance.used == 100_000
    assert insurance.annual_cap == 300_000 + 20_000_000  # outpatient 3,000 + inpatient 200,000 yuan
    assert insurance.remaining == insurance.annual_cap - 100_000
    aid = by_programme["hardship_aid"]
    cap = 6_000_000  # destitute: 60,000 yuan
    assert (aid.annual_cap, aid.used, aid.remaining) == (cap, 5_000, cap - 5_000)
    assert figures.insurance_outpatient_cap_remaining == 300_000 - 30_000
    assert figures.warnings == ()


def test_an_uninsured_person_has_nothing_left_and_hears_of_a_membership_ending_soon() -> None:
    ending = dt.date(2026, 5, 20)
    memberships = [
        Membership(programme="hardship_aid", code="destitute", effective_from=dt.date(2026, 1, 1), struck_off_on=ending)
    ]
    figures = eligibility(POLICY, memberships, {}, DAY)
    assert not figures.insured
    assert figures.outpatient_deductible_remaining == figures.insurance_inpatient_cap_remaining == 0
    assert [(notice.code, notice.date) for notice in figures.warnings] == [("ends_soon", ending)]


def test_every_fund_of_the_chain_shows_what_is_left_of_its_caps() -> None:
    memberships = [
        Membership(programme="insurance", code="resident", effective_from=dt.date(2026, 1, 1)),
        Membership(programme="hardship_aid", code="marginal", effective_from=dt.date(2026, 1, 1)),
    ]
    used = {"insurance_outpatient_paid": 30_000, "aid_paid": 1_000_000}
    figures = eligibility(POLICY, memberships, used, DAY)
    funds = {standing.fund: standing for standing in figures.funds}
    assert list(funds) == ["insurance", "veteran_subsidy", "hardship_aid"]  # chain order
    assert (funds["insurance"].applies, funds["insurance"].annual_cap, funds["insurance"].used) == (
        True,
        300_000 + 20_000_000,
        30_000,
    )
    assert funds["veteran_subsidy"].applies is False
    assert (funds["veteran_subsidy"].annual_cap, funds["veteran_subsidy"].remaining) == (None, None)
    aid = funds["hardship_aid"]
    assert (aid.applies, aid.annual_cap, aid.used, aid.remaining) == (True, 4_000_000, 1_000_000, 3_000_000)
    assert aid.name == "城乡困难人员医疗救助"
