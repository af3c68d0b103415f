"""Today's settlement shape from a chain settlement, for the chains today's storage can hold.

The gateway stores a settlement's payers in three money columns (``insurance``,
``veteran_subsidy``, ``hardship_aid``) and a person-year's counters in six columns of
``accumulators``, and its answers, receipts and reports read the same ``Settlement`` shape. A chain
whose funds and counters all have such a place (the default policy's does) settles through the
chain engine and is stored and answered exactly as before. ``check_storable`` refuses any other
chain when the policy folder is loaded, naming what has no place yet, rather than settling money
that could not be recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from settlement import chain as chain_engine
from settlement.chain import Chain, ChainSettlement, StepTrace
from settlement.errors import PolicyError
from settlement.models import (
    ACCUMULATOR_FIELDS,
    PAYERS,
    Accumulators,
    Bill,
    LineBreakdown,
    PayerTrace,
    PersonStatus,
    Settlement,
)

STORED_FUNDS: Final = PAYERS
STORED_COUNTERS: Final = ACCUMULATOR_FIELDS


def check_storable(chain: Chain, source: str) -> None:
    """Refuse a chain with a fund or a counter that today's tables have no column for."""
    for index, step in enumerate(chain.steps):
        if step.fund.code not in STORED_FUNDS:
            raise PolicyError(
                source,
                f"$.chain[{index}]",
                f"fund {step.fund.code!r}: this gateway version records only the funds {', '.join(STORED_FUNDS)}",
            )
    for name in chain.counters:
        if name not in STORED_COUNTERS:
            raise PolicyError(
                source,
                "$.funds",
                f"counter {name!r}: this gateway version records only the counters {', '.join(STORED_COUNTERS)}",
            )


def counters_of(accumulators: Accumulators) -> dict[str, int]:
    return {name: getattr(accumulators, name) for name in STORED_COUNTERS}


def settle(bill: Bill, status: PersonStatus, accumulators: Accumulators, chain: Chain) -> Settlement:
    """Settle ``bill`` along ``chain`` and give the result in today's shape."""
    return as_settlement(chain_engine.settle(bill, status, counters_of(accumulators), chain))


def as_settlement(result: ChainSettlement) -> Settlement:
    traces = {step.fund: step for step in result.payers}
    nothing = (0,) * len(result.items)
    insurance, subsidy, aid = (traces[fund].lines if fund in traces else nothing for fund in STORED_FUNDS)
    return Settlement(
        policy_version=result.policy_version,
        clinic_level=result.clinic_level,
        visit_type=result.visit_type,
        service_date=result.service_date,
        total=result.total,
        eligible=result.eligible,
        self_pay_first=result.self_pay_first,
        not_covered=result.not_covered,
        insurance=result.paid("insurance"),
        veteran_subsidy=result.paid("veteran_subsidy"),
        hardship_aid=result.paid("hardship_aid"),
        out_of_pocket=result.out_of_pocket,
        traces=tuple(_payer_trace(step, result.policy_version) for step in result.payers),  # chain order
        lines=tuple(
            LineBreakdown(
                code=item.code,
                category=item.category,
                amount=item.amount,
                self_pay_first=self_pay,
                eligible=eligible,
                insurance=insurance_share,
                veteran_subsidy=subsidy_share,
                hardship_aid=aid_share,
                out_of_pocket=out_of_pocket,
            )
            for item, self_pay, eligible, insurance_share, subsidy_share, aid_share, out_of_pocket in zip(
                result.items,
                result.line_self_pay_first,
                result.line_eligible,
                insurance,
                subsidy,
                aid,
                result.line_out_of_pocket,
                strict=True,
            )
        ),
        accumulators_before=_accumulators(result.counters_before),
        accumulators_after=_accumulators(result.counters_after),
        warnings=result.warnings,
    )


def _accumulators(counters: Mapping[str, int]) -> Accumulators:
    return Accumulators(**{name: counters.get(name, 0) for name in STORED_COUNTERS})


def _payer_trace(step: StepTrace, version: str) -> PayerTrace:
    return PayerTrace(
        payer=step.fund,  # type: ignore[arg-type]  # check_storable admits only today's payers
        applied=step.applied,
        reason=step.reason,
        programme=step.programme,
        base=step.base,
        deductible=step.deductible,
        deductible_consumed=step.deductible_consumed,
        threshold=step.threshold,
        below_threshold=step.below_threshold,
        bands=step.bands,
        computed=step.computed,
        annual_cap=step.annual_cap or 0,
        cap_remaining=step.cap_remaining or 0,
        cap_cut=step.cap_cut,
        paid=step.paid,
        policy_version=version,
    )
