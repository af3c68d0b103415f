"""The pure settlement engine. No IO, no clock, no asyncio; imports neither gateway nor adapters."""

from settlement.engine import apply_deltas, quote, reversal_deltas, settle, settlement_deltas
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
from settlement.policy import Policy, PolicyBook, parse_policy
from settlement.registry import Membership, status_on

__all__ = [
    "Accumulators",
    "Bill",
    "InpatientNotOffered",
    "InvalidBill",
    "LineBreakdown",
    "LineItem",
    "Membership",
    "NoPolicyInForce",
    "Notice",
    "PayerTrace",
    "PersonStatus",
    "Policy",
    "PolicyBook",
    "PolicyError",
    "ProgrammeEnd",
    "Settlement",
    "SettlementError",
    "UnknownProgrammeCode",
    "apply_deltas",
    "explain",
    "parse_policy",
    "quote",
    "reversal_deltas",
    "settle",
    "settlement_deltas",
    "status_on",
]
