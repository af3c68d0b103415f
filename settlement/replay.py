"""Replay: settle a person-year's bills again (DESIGN Part 2, "Replay").

Settling is a pure function of the bill, the registry and the policy on the service date, the item
catalogue in force then, and the person-year's earlier settlements. So a person-year's history can be
settled again, bill by bill in service-date order, from counters at zero on 1 January: under a
candidate policy (a what-if, nothing written), or under the real policy and a corrected registry.

This module only settles; reading history and reporting on it are the adapters' (adapters/what_if.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from settlement.catalogue import Catalogue
from settlement.chain import Chain, settle
from settlement.errors import SettlementError
from settlement.models import Bill, PersonStatus, Settlement
from settlement.registry import Membership, status_on


class HistoricBill(NamedTuple):
    """A bill as it was settled: the bill rebuilt from its record, and the settlement then."""

    bill: Bill
    settled: Settlement


class Replayed(NamedTuple):
    """One bill settled again: the person's status on its service date, and the new settlement, or the
    refusal when the policy it was replayed under refuses the bill (``again`` None)."""

    historic: HistoricBill
    status: PersonStatus
    again: Settlement | None
    refused: SettlementError | None


def bill_of(items: Sequence[object], settled: Settlement) -> Bill:
    """The bill a stored settlement was made from: its record's items and the settlement's clinic level,
    visit type, service date and referral."""
    return Bill(
        clinic_level=settled.clinic_level,
        visit_type=settled.visit_type,
        service_date=settled.service_date,
        items=tuple(items),  # type: ignore[arg-type]
        referral=settled.referral,
    )


def replay_person_year(
    bills: Iterable[HistoricBill],
    memberships: Sequence[Membership],
    policy_for: Callable[[dt.date], Chain],
    catalogue: Catalogue,
) -> Iterator[Replayed]:
    """Settle one person-year's bills again, in the order given (service date, then the order they were
    settled in), from counters at zero. A bill the policy refuses leaves the counters as they were.

    What the insurer's core paid on a bill stays as it answered (it is the insurer's to change, not this
    gateway's): the local steps are settled again on what it left."""
    counters: dict[str, int] = {}
    for historic in bills:
        day = historic.bill.service_date
        status = status_on(memberships, day)
        policy = policy_for(day)
        try:
            again = settle(historic.bill, status, counters, policy, catalogue.on(day), _remote(historic, policy))
        except SettlementError as refused:
            yield Replayed(historic, status, None, refused)
            continue
        counters = again.counters_after
        yield Replayed(historic, status, again, None)


def _remote(historic: HistoricBill, policy: Chain) -> dict[str, int] | None:
    """What the insurer paid on the bill, for the funds ``policy`` has it pay (None: it pays none of them,
    and the policy's rules settle every step)."""
    paid = historic.settled.remote_paid()
    remote_funds = {fund.code for fund in policy.remote_funds}
    if paid is None or not remote_funds:
        return None
    return {fund: amount for fund, amount in paid.items() if fund in remote_funds}
