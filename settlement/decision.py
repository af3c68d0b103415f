"""The money decision of one settlement, from a snapshot of the person to what must be written.

``decide`` is pure: the person's memberships and year-to-date counters in, the settlement along the
policy's chain and the caps in force out. What a settlement writes follows from that decision alone:
the counters after it (``settlement.counters_after``), the caps written beside them for the
database's CHECK constraint, and its double-entry ledger lines, one per fund of the chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from settlement import chain as chain_engine
from settlement.catalogue import CatalogueView
from settlement.chain import Chain, caps_in_force
from settlement.models import Bill, PersonStatus, Settlement
from settlement.registry import Membership, status_on

# The ledger account of each fund. The three funds of the first policies keep the accounts their
# history is booked under; any other fund's account is its code with ``_fund``.
FUND_ACCOUNTS: Final = {
    "insurance": "insurance_fund",
    "veteran_subsidy": "priority_care_fund",
    "hardship_aid": "aid_fund",
}
# Today's money columns of a settlement and their accounts (the patient's share too).
PAYER_ACCOUNTS: Final = {**{account: fund for fund, account in FUND_ACCOUNTS.items()}, "patient": "out_of_pocket"}

# Bits of ``Decision.caps_reached``: which of the three named funds' annual caps cut this bill.
CAP_BITS: Final = {"insurance": 1, "veteran_subsidy": 2, "hardship_aid": 4}


def account_of(fund: str) -> str:
    return FUND_ACCOUNTS.get(fund, f"{fund}_fund")


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One bill decided: the settlement, and the person's programmes and caps it was decided under."""

    settlement: Settlement
    status: PersonStatus
    caps: dict[str, int]

    @property
    def caps_reached(self) -> int:
        return sum(CAP_BITS.get(trace.payer, 0) for trace in self.settlement.traces if trace.cap_cut > 0)

    @property
    def deductible_taken(self) -> int:
        return self.settlement.counter_delta("outpatient_deductible_used")

    @property
    def unpaid_added(self) -> int:
        return self.settlement.counter_delta("unpaid_eligible")

    @property
    def other_funds(self) -> dict[str, int]:
        """What the funds beyond the three named ones paid, by fund code."""
        return {trace.payer: trace.paid for trace in self.settlement.traces if trace.payer not in FUND_ACCOUNTS}


def decide(
    bill: Bill,
    policy: Chain,
    memberships: Iterable[Membership],
    counters: Mapping[str, int],
    catalogue: CatalogueView | None = None,
    remote: Mapping[str, int] | None = None,
) -> Decision:
    """Settle ``bill`` for a person with these memberships and this year's counters, its lines
    classified by ``catalogue`` (the version in force on the service date; None: the terminal's
    categories stand), with the remote steps paid what the insurer's core answered (``remote``).

    Raises ``SettlementError`` for a bill the engine refuses."""
    status = status_on(memberships, bill.service_date)
    return Decision(
        settlement=chain_engine.settle(bill, status, counters, policy, catalogue, remote),
        status=status,
        caps=caps_in_force(policy, status),
    )


def ledger_lines(settlement: Settlement, sign: int = 1) -> tuple[tuple[str, int], ...]:
    """Double-entry lines: each fund of the chain and the patient debited, the clinic credited the total."""
    lines = [(account_of(trace.payer), trace.paid) for trace in settlement.traces]
    lines.append(("patient", settlement.out_of_pocket))
    lines.append(("clinic", -settlement.total))
    return tuple((account, sign * amount) for account, amount in lines)


def give_back(
    settlement: Settlement, current: Mapping[str, int], adjusted: Mapping[str, int] | None = None
) -> dict[str, int]:
    """The counters once ``settlement`` is reversed: exactly what it added is taken off again, with what
    the adjustments booked on it since (``adjusted``, by counter) added or took off."""
    restored = dict(current)
    for deltas in (settlement.counter_deltas(), adjusted or {}):
        for name, delta in deltas.items():
            restored[name] = restored.get(name, 0) - delta
    for name, value in restored.items():
        if value < 0:
            raise ValueError(f"counter {name} would go negative")
    return restored
