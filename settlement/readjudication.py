"""Re-adjudication: what a person-year's settlements should have paid, against what they did.

A registry change with a past effective date, or a refund of an earlier bill, changes what the
person-year's other bills should have paid (an aid status granted from three months ago; a deductible
met by the refunded bill, now met by a later one). ``readjudicate`` settles the person-year's bills
again from counters at zero on 1 January, in service-date order, under the policy, registry and item
catalogue as they stand now for each service date (``settlement.replay``), and compares each bill with
what it has paid so far: its settlement and every adjustment booked on it since (a reversed bill should
pay nothing). The differences are **corrections**, one per bill that changes, per fund and for the
patient; they always sum to zero, because the bill's total does not change. Settled rows are never
edited: the adapters book each correction as an adjustment, and move the person-year's counters by the
corrections' counter changes in the same transaction.

``orders_for`` turns a re-adjudication's corrections into what finance acts on, per fund: a payable order
where the fund owes the patient, a recovery order where the patient was overpaid and the policy recovers
overpayments, an overpayment reported where it does not, and a waived order below the policy's de-minimis
amount.

Pure functions only: reading history and booking the result are ``adapters.readjudication``'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

from settlement.catalogue import Catalogue
from settlement.chain import Chain, caps_in_force
from settlement.errors import SettlementError
from settlement.models import Settlement
from settlement.registry import Membership
from settlement.replay import HistoricBill, replay_person_year

OUT_OF_POCKET = "out_of_pocket"


class Amounts(NamedTuple):
    """Money by fund code (and ``out_of_pocket`` for the patient), and counter changes by counter name.
    Zeros are left out, so two equal Amounts compare equal."""

    funds: dict[str, int]
    counters: dict[str, int]

    @staticmethod
    def of(settlement: Settlement) -> Amounts:
        """What a settlement paid, and what it added to the person-year's counters."""
        funds = {trace.payer: trace.paid for trace in settlement.traces if trace.paid}
        if settlement.out_of_pocket:
            funds[OUT_OF_POCKET] = settlement.out_of_pocket
        return Amounts(funds, settlement.counter_deltas())

    def plus(self, other: Amounts, sign: int = 1) -> Amounts:
        return Amounts(_sum(self.funds, other.funds, sign), _sum(self.counters, other.counters, sign))

    def __bool__(self) -> bool:
        return bool(self.funds or self.counters)


NOTHING = Amounts({}, {})


def _sum(a: Mapping[str, int], b: Mapping[str, int], sign: int) -> dict[str, int]:
    out = dict(a)
    for name, value in b.items():
        out[name] = out.get(name, 0) + sign * value
    return {name: value for name, value in out.items() if value}


class PastSettlement(NamedTuple):
    """One settlement of the person-year as it stands: the bill, what was settled, whether it was
    reversed, and the sum of the adjustments booked on it so far."""

    settlement_id: Hashable
    historic: HistoricBill
    reversed: bool
    adjusted: Amounts

    @property
    def paid(self) -> Amounts:
        """What the bill has paid so far, adjustments included (a reversal gave its settlement back)."""
        settled = NOTHING if self.reversed else Amounts.of(self.historic.settled)
        return settled.plus(self.adjusted)


class Correction(NamedTuple):
    """What one settlement should pay more (positive) or less (negative), per fund and for the patient,
    and how its counter changes move."""

    settlement_id: Hashable
    change: Amounts


class Readjudicated(NamedTuple):
    """A person-year settled again: the corrections, the counters' total change, the caps the replay was
    decided under (the database keeps the highest beside the counters), or the refusal that stopped it:
    a bill the policy now refuses needs a person to look at it, and nothing is corrected."""

    corrections: list[Correction]
    counters: dict[str, int]
    caps: dict[str, int]
    refused: tuple[Hashable, SettlementError] | None = None


def readjudicate(
    history: Sequence[PastSettlement],
    memberships: Sequence[Membership],
    policy_for: Callable[[dt.date], Chain],
    catalogue: Catalogue,
) -> Readjudicated:
    """Settle the person-year's bills not reversed again, in the order given (service date, then the order
    they were settled in), and compare every bill (reversed ones too, which should pay nothing) with what it
    has paid so far."""
    live = [past for past in history if not past.reversed]
    should_pay: dict[Hashable, Amounts] = {}
    caps: dict[str, int] = {}
    for past, replayed in zip(live, replay_person_year([p.historic for p in live], memberships, policy_for, catalogue),
                              strict=True):  # fmt: skip
        if replayed.again is None:
            assert replayed.refused is not None
            return Readjudicated([], {}, {}, (past.settlement_id, replayed.refused))
        should_pay[past.settlement_id] = Amounts.of(replayed.again)
        for name, cap in caps_in_force(policy_for(replayed.again.service_date), replayed.status).items():
            caps[name] = max(caps.get(name, 0), cap)
    corrections = []
    counters: dict[str, int] = {}
    for past in history:
        change = should_pay.get(past.settlement_id, NOTHING).plus(past.paid, -1)
        if change:
            corrections.append(Correction(past.settlement_id, change))
            counters = _sum(counters, change.counters, 1)
    return Readjudicated(corrections, counters, caps)


OrderKind = Literal["payable", "recovery", "overpayment"]
OrderStatus = Literal["open", "reported", "waived"]


class Order(NamedTuple):
    """What one fund owes the patient (``payable``) or was overpaid (``recovery`` or ``overpayment``),
    net over a re-adjudication's corrections; ``amount`` is always positive."""

    fund: str
    kind: OrderKind
    amount: int
    status: OrderStatus


def orders_for(
    corrections: Iterable[Correction],
    *,
    de_minimis: int,
    recover_overpayments: bool,
    carried: Mapping[str, int] | None = None,
) -> list[Order]:
    """Per fund, the net of the corrections: positive is owed to the patient, negative was overpaid. An
    amount below ``de_minimis`` (fen) is waived; an overpayment becomes a recovery order only where the
    policy recovers overpayments, and is otherwise reported. The patient's own column is the other side
    of every order, not an order.

    ``carried`` (fen per fund, positive owed to the patient) is what earlier orders hand on to these: a
    reversal's re-adjudication re-issues the open orders the reversal cancelled, net of what it took back."""
    net: dict[str, int] = _sum({}, carried or {}, 1)
    for correction in corrections:
        net = _sum(net, {fund: value for fund, value in correction.change.funds.items() if fund != OUT_OF_POCKET}, 1)
    orders = []
    for fund in sorted(net):
        value = net[fund]
        kind: OrderKind = "payable" if value > 0 else "recovery" if recover_overpayments else "overpayment"
        status: OrderStatus = "waived" if abs(value) < de_minimis else "reported" if kind == "overpayment" else "open"
        orders.append(Order(fund, kind, abs(value), status))
    return orders
