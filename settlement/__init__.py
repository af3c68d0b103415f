"""The pure settlement engine. No IO, no clock, no asyncio; imports neither gateway nor adapters."""

from settlement.chain import Chain, settle
from settlement.chain_policy import parse_chain
from settlement.engine import apply_deltas, reversal_deltas, settlement_deltas
from settlement.errors import (
    InpatientNotOffered,
    InvalidBill,
    NoPolicyInForce,
    PolicyError,
    SettlementError,
    UnknownProgrammeCode,
)
from settlement.explain import explain
from settlement.models import (
    Accumulators,
    Bill,
    LineBreakdown,
    LineItem,
    Notice,
    PayerTrace,
    PersonStatus,
    ProgrammeEnd,
    Settlement,
)
from settlement.policy_book import PolicyBook
from settlement.registry import Membership, status_on

__all__ = [
    "Accumulators",
    "Bill",
    "Chain",
    "InpatientNotOffered",
    "InvalidBill",
    "LineBreakdown",
    "LineItem",
    "Membership",
    "NoPolicyInForce",
    "Notice",
    "PayerTrace",
    "PersonStatus",
    "PolicyBook",
    "PolicyError",
    "ProgrammeEnd",
    "Settlement",
    "SettlementError",
    "UnknownProgrammeCode",
    "apply_deltas",
    "explain",
    "parse_chain",
    "reversal_deltas",
    "settle",
    "settlement_deltas",
    "status_on",
]
