"""``status_on``: a membership is in force from effective_from (inclusive) to struck_off_on (exclusive)."""

from __future__ import annotations

import datetime as dt

from settlement.chain import settle
from settlement.models import Bill, LineItem, Notice, PersonStatus, ProgrammeEnd
from settlement.registry import Membership, status_on, strike_off_notices
from tests.unit.test_chain_rules import THREE_TIER

D = dt.date


def member(programme: str, code: str, start: dt.date, struck_off_on: dt.date | None = None) -> Membership:
    return Membership(programme=programme, code=code, effective_from=start, struck_off_on=struck_off_on)


INSURED = member("insurance", "resident", D(2020, 1, 1))


def test_membership_starts_on_effective_from_inclusive() -> None:
    rows = [INSURED, member("hardship_aid", "low_income", D(2026, 3, 1))]
    assert status_on(rows, D(2026, 2, 28)) == PersonStatus(insured=True)
    assert status_on(rows, D(2026, 3, 1)) == PersonStatus(insured=True, hardship_tier="low_income")


def test_struck_off_on_is_the_first_day_out() -> None:
    rows = [INSURED, member("hardship_aid", "minimum_allowance", D(2025, 1, 1), D(2026, 3, 1))]
    # last day in the programme
    assert status_on(rows, D(2026, 2, 28)) == PersonStatus(insured=True, hardship_tier="minimum_allowance")
    # from the strike-off date: out, and the strike-off is reported with its date
    ended = ProgrammeEnd(programme="hardship_aid", code="minimum_allowance", struck_off_on=D(2026, 3, 1))
    assert status_on(rows, D(2026, 3, 1)) == PersonStatus(insured=True, struck_off=(ended,))
    # and still reported later in the year
    assert status_on(rows, D(2026, 12, 31)).struck_off == (ended,)


def test_strike_off_is_not_reported_before_the_membership_started() -> None:
    rows = [INSURED, member("veteran_subsidy", "priority_care", D(2026, 2, 1), D(2026, 4, 1))]
    assert status_on(rows, D(2026, 1, 31)) == PersonStatus(insured=True)
    assert status_on(rows, D(2026, 3, 31)).veteran_category == "priority_care"
    assert status_on(rows, D(2026, 4, 1)).struck_off == (
        ProgrammeEnd(programme="veteran_subsidy", code="priority_care", struck_off_on=D(2026, 4, 1)),
    )


def test_tier_change_reports_no_strike_off() -> None:
    change = D(2026, 3, 1)
    rows = [
        INSURED,
        member("hardship_aid", "minimum_allowance", D(2025, 1, 1), change),
        member("hardship_aid", "marginal", change),
    ]
    assert status_on(rows, change - dt.timedelta(days=1)).hardship_tier == "minimum_allowance"
    # the old tier ends the day the new one starts: the person is still in the programme
    assert status_on(rows, change) == PersonStatus(insured=True, hardship_tier="marginal")


def test_re_enrolment_after_a_strike_off() -> None:
    rows = [
        INSURED,
        member("hardship_aid", "low_income", D(2025, 6, 1), D(2026, 3, 1)),
        member("hardship_aid", "marginal", D(2026, 5, 1)),
    ]
    # between the strike-off and the new membership: out, reported; the future row does not count yet
    gap = status_on(rows, D(2026, 4, 15))
    assert gap.hardship_tier is None
    assert gap.struck_off == (ProgrammeEnd(programme="hardship_aid", code="low_income", struck_off_on=D(2026, 3, 1)),)
    # back in: nothing to report
    assert status_on(rows, D(2026, 5, 1)) == PersonStatus(insured=True, hardship_tier="marginal")


def test_history_with_several_rows() -> None:
    rows = [
        INSURED,
        member("veteran_subsidy", "priority_care", D(2021, 1, 1), D(2024, 1, 1)),
        member("veteran_subsidy", "disabled_veteran", D(2024, 1, 1)),
        member("hardship_aid", "low_income", D(2022, 1, 1), D(2024, 6, 1)),
        member("hardship_aid", "marginal", D(2024, 6, 1), D(2025, 9, 1)),
    ]
    assert status_on(rows, D(2023, 6, 1)) == PersonStatus(
        insured=True, veteran_category="priority_care", hardship_tier="low_income"
    )
    assert status_on(rows, D(2025, 1, 1)) == PersonStatus(
        insured=True, veteran_category="disabled_veteran", hardship_tier="marginal"
    )
    # after the last hardship row ends: the latest one (marginal) is the strike-off reported
    expected = PersonStatus(
        insured=True,
        veteran_category="disabled_veteran",
        struck_off=(ProgrammeEnd(programme="hardship_aid", code="marginal", struck_off_on=D(2025, 9, 1)),),
    )
    assert status_on(rows, D(2025, 10, 1)) == expected
    # row order in the registry does not matter
    assert status_on(list(reversed(rows)), D(2025, 10, 1)) == expected


def test_not_enrolled_in_insurance() -> None:
    rows = [member("hardship_aid", "destitute", D(2024, 1, 1))]
    assert status_on(rows, D(2026, 5, 1)) == PersonStatus(insured=False, hardship_tier="destitute")
    assert status_on([], D(2026, 5, 1)) == PersonStatus(insured=False)


def test_insurance_struck_off() -> None:
    rows = [member("insurance", "resident", D(2020, 1, 1), D(2026, 1, 1))]
    assert status_on(rows, D(2025, 12, 31)).insured is True
    assert status_on(rows, D(2026, 1, 1)) == PersonStatus(
        insured=False,
        struck_off=(ProgrammeEnd(programme="insurance", code="resident", struck_off_on=D(2026, 1, 1)),),
    )


def test_insurance_starting_later_is_not_yet_in_force() -> None:
    rows = [member("insurance", "resident", D(2026, 7, 1))]
    assert status_on(rows, D(2026, 6, 30)) == PersonStatus(insured=False)
    assert status_on(rows, D(2026, 7, 1)) == PersonStatus(insured=True)


def test_several_programmes_struck_off_the_same_day() -> None:
    day = D(2026, 3, 1)
    rows = [
        member("insurance", "resident", D(2020, 1, 1), day),
        member("veteran_subsidy", "priority_care", D(2020, 1, 1), day),
        member("hardship_aid", "low_income", D(2020, 1, 1), day),
    ]
    status = status_on(rows, day)
    assert (status.insured, status.veteran_category, status.hardship_tier) == (False, None, None)
    assert {(end.programme, end.code, end.struck_off_on) for end in status.struck_off} == {
        ("insurance", "resident", day),
        ("veteran_subsidy", "priority_care", day),
        ("hardship_aid", "low_income", day),
    }


# ---------------------------------------------------------------- programmes beyond the payers'

CHARITY = member("charity", "child_major_disease", D(2026, 2, 1), D(2026, 6, 1))


def test_a_charity_membership_in_force_gives_its_code_beside_the_payers_fields() -> None:
    rows = [INSURED, member("hardship_aid", "minimum_allowance", D(2025, 1, 1)), CHARITY]
    assert status_on(rows, D(2026, 1, 31)) == PersonStatus(insured=True, hardship_tier="minimum_allowance")
    assert status_on(rows, D(2026, 2, 1)) == PersonStatus(
        insured=True, hardship_tier="minimum_allowance", programmes={"charity": "child_major_disease"}
    )
    assert status_on(rows, D(2026, 5, 31)).programmes == {"charity": "child_major_disease"}


def test_a_charity_strike_off_is_reported_after_the_payers_and_named_by_its_code() -> None:
    day = D(2026, 6, 1)
    rows = [INSURED, CHARITY, member("hardship_aid", "marginal", D(2025, 1, 1), day)]
    status = status_on(rows, day)
    assert status == PersonStatus(
        insured=True,
        struck_off=(
            ProgrammeEnd(programme="hardship_aid", code="marginal", struck_off_on=day),
            ProgrammeEnd(programme="charity", code="child_major_disease", struck_off_on=day),
        ),
    )
    assert status_on(list(reversed(rows)), day) == status
    assert strike_off_notices(status)[1] == Notice(
        code="struck_off",
        message="struck off charity (child_major_disease) on 2026-06-01",
        programme="charity",
        date=day,
    )
    # the payers' programmes keep their names
    assert strike_off_notices(status)[0].message == "struck off hardship medical aid (marginal) on 2026-06-01"


def test_a_charity_re_enrolment_is_in_force_and_reports_no_strike_off() -> None:
    rows = [INSURED, CHARITY, member("charity", "child_major_disease", D(2026, 9, 1))]
    assert status_on(rows, D(2026, 8, 31)).struck_off == (
        ProgrammeEnd(programme="charity", code="child_major_disease", struck_off_on=D(2026, 6, 1)),
    )
    assert status_on(rows, D(2026, 9, 1)) == PersonStatus(insured=True, programmes={"charity": "child_major_disease"})


def test_the_charity_fund_pays_a_member_on_the_dates_the_registry_gives() -> None:
    rows = [INSURED, member("hardship_aid", "minimum_allowance", D(2025, 1, 1)), CHARITY]

    def charity_on(day: dt.date) -> tuple[int, str | None]:
        items = (LineItem(code="A0", name="item", category="A", amount=40_000_000),)
        bill = Bill(clinic_level="county", visit_type="inpatient", service_date=day, items=items, referral=True)
        step = next(s for s in settle(bill, status_on(rows, day), {}, THREE_TIER).traces if s.payer == "charity")
        return step.paid, step.reason

    assert charity_on(D(2026, 1, 31)) == (0, "not_enrolled")
    paid, reason = charity_on(D(2026, 5, 31))
    assert paid > 0 and reason is None
    assert charity_on(D(2026, 6, 1)) == (0, "struck_off")
