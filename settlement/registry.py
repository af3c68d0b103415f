"""Effective-dated programme memberships, resolved to a person's status on a date.

A membership is in force from ``effective_from`` (inclusive) until
``struck_off_on`` (exclusive): a person struck off is out of the programme from
that date. History is kept as rows; this module only reads it.

A programme is ``insurance``, ``veteran_subsidy``, ``hardship_aid`` or any other registry
programme a policy names under ``[programmes]`` (``charity``). Which programmes and codes
exist is the policy's to say; the importers and the API check that before a row is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

from settlement.models import PAYERS, Model, Notice, PersonStatus, ProgrammeEnd


class Membership(Model, frozen=True, kw_only=True):
    programme: str
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None = None

    def in_force(self, day: dt.date) -> bool:
        return self.effective_from <= day and (self.struck_off_on is None or day < self.struck_off_on)


def status_on(memberships: Iterable[Membership], day: dt.date) -> PersonStatus:
    """The programmes in force on ``day``, and strike-offs the terminal should hear about.

    A strike-off is reported when the programme is not in force on ``day`` and the
    latest membership of that programme that started on or before ``day`` was
    struck off on or before it: the payers' programmes first, in payer order, then
    any other in name order. The codes of programmes other than the payers' go in
    ``PersonStatus.programmes``.
    """
    in_force: dict[str, Membership] = {}
    latest_ended: dict[str, Membership] = {}
    for membership in memberships:
        if membership.in_force(day):
            current = in_force.get(membership.programme)
            if current is None or membership.effective_from > current.effective_from:
                in_force[membership.programme] = membership
        elif membership.effective_from <= day:
            previous = latest_ended.get(membership.programme)
            if previous is None or membership.effective_from > previous.effective_from:
                latest_ended[membership.programme] = membership
    others = sorted((set(in_force) | set(latest_ended)).difference(PAYERS))
    struck_off = tuple(
        ProgrammeEnd(programme=programme, code=ended.code, struck_off_on=ended.struck_off_on)
        for programme in (*PAYERS, *others)
        if (ended := latest_ended.get(programme)) is not None
        and programme not in in_force
        and ended.struck_off_on is not None
    )
    veteran = in_force.get("veteran_subsidy")
    hardship = in_force.get("hardship_aid")
    return PersonStatus(
        insured="insurance" in in_force,
        veteran_category=veteran.code if veteran else None,
        hardship_tier=hardship.code if hardship else None,
        struck_off=struck_off,
        programmes={programme: in_force[programme].code for programme in others if programme in in_force},
    )


# ---------------------------------------------------------------- planning list changes


class StoredMembership(Model, frozen=True, kw_only=True):
    """A membership row as stored, with its id so a change can close it."""

    membership_id: int
    programme: str
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None = None


class ListEntry(Model, frozen=True, kw_only=True):
    """One line of a bureau list, or one membership sent to the API: the state it declares."""

    programme: str
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None = None


class Close(Model, frozen=True, kw_only=True):
    """Set the end of a stored membership (strike-off, or the old tier at a tier change)."""

    membership_id: int
    struck_off_on: dt.date


class Open(Model, frozen=True, kw_only=True):
    """Add a membership row."""

    programme: str
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None = None


Outcome = Literal["added", "changed", "struck_off", "unchanged", "rejected"]


class Plan(Model, frozen=True, kw_only=True):
    outcome: Outcome
    operations: tuple[Close | Open, ...] = ()
    reason: str = ""
    previous_code: str | None = None


def plan_entry(existing: Iterable[StoredMembership], entry: ListEntry) -> Plan:
    """What one list line means for one person's memberships of that programme.

    History is never overwritten: a tier change closes the old membership on the
    new one's effective date and opens the new one; a strike-off sets the end of
    the open membership. A line that states what is already recorded changes
    nothing, which makes importing the same list twice a no-op.
    """
    same = [m for m in existing if m.programme == entry.programme]
    for stored in same:
        if (stored.code, stored.effective_from, stored.struck_off_on) == (
            entry.code,
            entry.effective_from,
            entry.struck_off_on,
        ):
            return Plan(outcome="unchanged")
    if entry.struck_off_on is not None and entry.struck_off_on <= entry.effective_from:
        return Plan(outcome="rejected", reason="the strike-off date must be after the effective date")

    current = next((m for m in same if m.struck_off_on is None), None)
    if current is not None:
        if current.code == entry.code:
            if entry.struck_off_on is None:
                return Plan(outcome="unchanged")  # still in the programme, as recorded since its start
            if entry.struck_off_on <= current.effective_from:
                return Plan(
                    outcome="rejected",
                    reason=f"strike-off {entry.struck_off_on} is not after the membership's start "
                    f"{current.effective_from}",
                )
            return Plan(
                outcome="struck_off",
                operations=(Close(membership_id=current.membership_id, struck_off_on=entry.struck_off_on),),
            )
        if entry.effective_from <= current.effective_from:
            return Plan(
                outcome="rejected",
                reason=f"change to {entry.code} on {entry.effective_from} is not after the current "
                f"{current.code} membership's start {current.effective_from}",
            )
        return Plan(
            outcome="changed",
            previous_code=current.code,
            operations=(
                Close(membership_id=current.membership_id, struck_off_on=entry.effective_from),
                _open(entry),
            ),
        )

    for stored in same:  # closed spans: the new one must not overlap any of them
        end = stored.struck_off_on
        assert end is not None
        starts_before_end = entry.effective_from < end
        ends_after_start = entry.struck_off_on is None or entry.struck_off_on > stored.effective_from
        if starts_before_end and ends_after_start:
            return Plan(
                outcome="rejected",
                reason=f"overlaps the {stored.code} membership from {stored.effective_from} to {end}",
            )
    return Plan(outcome="added", operations=(_open(entry),))


def plan_missing_from_full_list(current: StoredMembership, as_of: dt.date) -> Plan:
    """A person in force but missing from a full list is struck off as of the list's date."""
    if current.effective_from >= as_of:
        return Plan(
            outcome="rejected",
            reason=f"missing from the full list, but the membership only started on {current.effective_from}",
        )
    return Plan(
        outcome="struck_off",
        operations=(Close(membership_id=current.membership_id, struck_off_on=as_of),),
    )


def _open(entry: ListEntry) -> Open:
    return Open(
        programme=entry.programme,
        code=entry.code,
        effective_from=entry.effective_from,
        struck_off_on=entry.struck_off_on,
    )


# ---------------------------------------------------------------- notices

PROGRAMME_NAMES = {
    "insurance": "basic medical insurance",
    "veteran_subsidy": "priority-care subsidy",
    "hardship_aid": "hardship medical aid",
}


def strike_off_notices(status: PersonStatus) -> tuple[Notice, ...]:
    """A ``struck_off`` notice per strike-off; a programme beyond the payers' is named by its code."""
    if not status.struck_off:
        return ()
    return tuple(
        Notice(
            code="struck_off",
            message=(
                f"struck off {PROGRAMME_NAMES.get(ended.programme, ended.programme)} ({ended.code}) "
                f"on {ended.struck_off_on.isoformat()}"
            ),
            programme=ended.programme,
            date=ended.struck_off_on,
        )
        for ended in status.struck_off
    )
