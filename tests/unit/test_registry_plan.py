"""What one list line means for a person's memberships: the planner behind imports and the API."""

from __future__ import annotations

import datetime as dt

from settlement.registry import Close, ListEntry, Open, StoredMembership, plan_entry, plan_missing_from_full_list

D = dt.date


def stored(membership_id: int, code: str, start: dt.date, end: dt.date | None = None) -> StoredMembership:
    return StoredMembership(
        membership_id=membership_id, programme="hardship_aid", code=code, effective_from=start, struck_off_on=end
    )


def line(code: str, start: dt.date, end: dt.date | None = None) -> ListEntry:
    return ListEntry(programme="hardship_aid", code=code, effective_from=start, struck_off_on=end)


def test_new_person_is_added():
    plan = plan_entry([], line("destitute", D(2026, 1, 1)))
    assert plan.outcome == "added"
    assert plan.operations == (Open(programme="hardship_aid", code="destitute", effective_from=D(2026, 1, 1)),)


def test_the_same_line_twice_changes_nothing():
    existing = [stored(1, "marginal", D(2026, 1, 1))]
    assert plan_entry(existing, line("marginal", D(2026, 1, 1))).outcome == "unchanged"
    # A monthly list restating an old member with a later date is still no change.
    assert plan_entry(existing, line("marginal", D(2026, 6, 1))).outcome == "unchanged"
    struck = [stored(1, "marginal", D(2026, 1, 1), D(2026, 5, 1))]
    assert plan_entry(struck, line("marginal", D(2026, 1, 1), D(2026, 5, 1))).outcome == "unchanged"


def test_tier_change_closes_the_old_and_opens_the_new_on_its_date():
    plan = plan_entry([stored(7, "minimum_allowance", D(2026, 1, 1))], line("marginal", D(2026, 6, 1)))
    assert plan.outcome == "changed" and plan.previous_code == "minimum_allowance"
    assert plan.operations == (
        Close(membership_id=7, struck_off_on=D(2026, 6, 1)),
        Open(programme="hardship_aid", code="marginal", effective_from=D(2026, 6, 1)),
    )


def test_tier_change_dated_before_the_current_start_is_rejected():
    plan = plan_entry([stored(7, "minimum_allowance", D(2026, 3, 1))], line("marginal", D(2026, 2, 1)))
    assert plan.outcome == "rejected" and "2026-03-01" in plan.reason


def test_strike_off_sets_the_end_of_the_open_membership():
    plan = plan_entry([stored(3, "low_income", D(2026, 1, 1))], line("low_income", D(2026, 1, 1), D(2026, 8, 1)))
    assert plan.outcome == "struck_off"
    assert plan.operations == (Close(membership_id=3, struck_off_on=D(2026, 8, 1)),)


def test_strike_off_on_or_before_the_start_is_rejected():
    plan = plan_entry([stored(3, "low_income", D(2026, 4, 1))], line("low_income", D(2026, 1, 1), D(2026, 4, 1)))
    assert plan.outcome == "rejected"
    assert plan_entry([], line("low_income", D(2026, 4, 1), D(2026, 4, 1))).outcome == "rejected"


def test_rejoining_after_a_strike_off_adds_a_new_row_but_overlap_is_refused():
    history = [stored(3, "low_income", D(2026, 1, 1), D(2026, 4, 1))]
    assert plan_entry(history, line("destitute", D(2026, 4, 1))).outcome == "added"
    overlapping = plan_entry(history, line("destitute", D(2026, 3, 1)))
    assert overlapping.outcome == "rejected" and "overlaps" in overlapping.reason


def test_missing_from_full_list_is_struck_off_as_of_the_list_date():
    current = stored(9, "destitute", D(2026, 1, 1))
    plan = plan_missing_from_full_list(current, D(2026, 7, 1))
    assert plan.outcome == "struck_off"
    assert plan.operations == (Close(membership_id=9, struck_off_on=D(2026, 7, 1)),)
    assert plan_missing_from_full_list(stored(9, "destitute", D(2026, 7, 1)), D(2026, 7, 1)).outcome == "rejected"
