"""Effective-dated programme memberships, resolved to a person's status on a date.

A membership is in force from ``effective_from`` (inclusive) until
``struck_off_on`` (exclusive): a person struck off is out of the programme from
that date. History is kept as rows; this module only reads it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from settlement.models import PAYERS, Model, Payer, PersonStatus, ProgrammeEnd


class Membership(Model, frozen=True, kw_only=True):
    programme: Payer
    code: str
    effective_from: dt.date
    struck_off_on: dt.date | None = None

    def in_force(self, day: dt.date) -> bool:
        return self.effective_from <= day and (self.struck_off_on is None or day < self.struck_off_on)


def status_on(memberships: Iterable[Membership], day: dt.date) -> PersonStatus:
    """The programmes in force on ``day``, and strike-offs the terminal should hear about.

    A strike-off is reported when the programme is not in force on ``day`` and the
    latest membership of that programme that started on or before ``day`` was
    struck off on or before it.
    """
    in_force: dict[Payer, Membership] = {}
    latest_ended: dict[Payer, Membership] = {}
    for membership in memberships:
        if membership.in_force(day):
            current = in_force.get(membership.programme)
            if current is None or membership.effective_from > current.effective_from:
                in_force[membership.programme] = membership
        elif membership.effective_from <= day:
            previous = latest_ended.get(membership.programme)
            if previous is None or membership.effective_from > previous.effective_from:
                latest_ended[membership.programme] = membership
    struck_off = tuple(
        ProgrammeEnd(programme=programme, code=ended.code, struck_off_on=ended.struck_off_on)
        for programme in PAYERS
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
    )
