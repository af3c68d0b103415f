"""The money decision of one settlement, from a snapshot of the person to what must be written.

``decide`` is pure: the person's memberships and year-to-date accumulators in, the engine's
settlement and the caps in force out. What a settlement writes follows from that decision
alone: the accumulators after it (``settlement.accumulators_after``), the caps written beside
them for the database's CHECK constraints, and its double-entry ledger lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from settlement import compat, engine
from settlement.chain import Chain, caps_in_force
from settlement.models import Accumulators, Bill, PersonStatus, Settlement
from settlement.registry import Membership, status_on

# The double-entry ledger: each payer's fund and the patient are debited with their share of a
# settlement (account -> the settlement's field), the clinic is credited the total. The ledger_entries
# view (adapters/migrations/0010_lean_settlements.sql) books exactly these lines.
PAYER_ACCOUNTS: Final = {
    "insurance_fund": "insurance",
    "priority_care_fund": "veteran_subsidy",
    "aid_fund": "hardship_aid",
    "patient": "out_of_pocket",
}
ACCOUNTS: Final = (*PAYER_ACCOUNTS, "clinic")

# Bits of ``Decision.caps_reached``: which payers' annual caps cut this bill's payment.
CAP_BITS: Final = {"insurance": 1, "veteran_subsidy": 2, "hardship_aid": 4}


class Caps(msgspec.Struct, frozen=True, kw_only=True):
    """The caps in force for a settlement, written beside the accumulators for the CHECK constraints."""

    outpatient_deductible: int
    insurance_outpatient: int
    insurance_inpatient: int
    subsidy: int
    aid: int


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One bill decided: the settlement and the person's programmes and caps it was decided under."""

    settlement: Settlement
    status: PersonStatus
    caps: Caps

    @property
    def caps_reached(self) -> int:
        return sum(CAP_BITS[trace.payer] for trace in self.settlement.traces if trace.cap_cut > 0)

    @property
    def deductible_taken(self) -> int:
        s = self.settlement
        return s.accumulators_after.outpatient_deductible_used - s.accumulators_before.outpatient_deductible_used

    @property
    def unpaid_added(self) -> int:
        s = self.settlement
        return s.accumulators_after.unpaid_eligible - s.accumulators_before.unpaid_eligible


def caps_for(policy: Chain, status: PersonStatus) -> Caps:
    caps = caps_in_force(policy, status)
    return Caps(
        outpatient_deductible=caps.get("outpatient_deductible_used", 0),
        insurance_outpatient=caps.get("insurance_outpatient_paid", 0),
        insurance_inpatient=caps.get("insurance_inpatient_paid", 0),
        subsidy=caps.get("subsidy_paid", 0),
        aid=caps.get("aid_paid", 0),
    )


def decide(bill: Bill, policy: Chain, memberships: Iterable[Membership], accumulators: Accumulators) -> Decision:
    """Settle ``bill`` for a person with these memberships and this year's accumulators.

    Raises ``SettlementError`` for a bill the engine refuses."""
    status = status_on(memberships, bill.service_date)
    return Decision(
        settlement=compat.settle(bill, status, accumulators, policy), status=status, caps=caps_for(policy, status)
    )


def ledger_lines(settlement: Settlement, sign: int = 1) -> tuple[tuple[str, int], ...]:
    """Double-entry lines: each payer and the patient debited, the clinic credited the total."""
    lines = [(account, getattr(settlement, field)) for account, field in PAYER_ACCOUNTS.items()]
    lines.append(("clinic", -settlement.total))
    return tuple((account, sign * amount) for account, amount in lines)


def give_back(settlement: Settlement, current: Accumulators) -> Accumulators:
    """The accumulators once ``settlement`` is reversed."""
    return engine.apply_deltas(current, engine.reversal_deltas(settlement))
