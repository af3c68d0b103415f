"""Plain-language explanation of a settlement, from its per-payer traces.

The lines answer "why did I pay this much?" and are short enough for a receipt.
Chinese is the default; English labels are available. Every step of the chain is named: the
three funds of the first policies by the labels below, any other fund by the name its policy
gives it (``names``, fund code to name in the receipt's language), else by its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from settlement.models import PayerTrace, Settlement
from settlement.money import format_yuan as y

Language = Literal["zh", "en"]

LABELS: dict[Language, dict[str, str]] = {
    "zh": {
        "insurance": "基本医疗保险",
        "veteran_subsidy": "优抚医疗补助",
        "hardship_aid": "医疗救助",
        "total": "医疗费用总额",
        "eligible": "政策范围内费用",
        "self_pay_first": "先行自付",
        "not_covered": "全自费",
        "over_limit": "超限价自付",
        "out_of_pocket": "个人自付",
        "base": "可支付基数",
        "deductible": "起付线",
        "threshold": "年度救助门槛",
        "cap": "年度封顶线剩余",
        "cap_cut": "超封顶未付",
        "paid": "支付",
        "not_insured": "未参保",
        "not_enrolled": "不在册",
        "struck_off": "已退出",
        "policy": "政策版本",
    },
    "en": {
        "insurance": "Basic medical insurance",
        "veteran_subsidy": "Priority-care subsidy",
        "hardship_aid": "Hardship medical aid",
        "total": "Total",
        "eligible": "Eligible",
        "self_pay_first": "Self-pay first (B)",
        "not_covered": "Fully self-pay",
        "over_limit": "Over the price cap",
        "out_of_pocket": "You pay",
        "base": "base",
        "deductible": "deductible",
        "threshold": "year-to-date threshold",
        "cap": "annual cap left",
        "cap_cut": "cut by cap",
        "paid": "pays",
        "not_insured": "not insured",
        "not_enrolled": "not enrolled",
        "struck_off": "struck off",
        "policy": "Policy",
    },
}


# The funds the labels above name, whatever their policy calls them.
LABELLED_FUNDS: Final = ("insurance", "veteran_subsidy", "hardship_aid")


def fund_label(fund: str, language: Language = "zh", names: Mapping[str, str] | None = None) -> str:
    """A fund's name on a receipt: the label of one of the three, else its policy's name, else its code."""
    if fund in LABELLED_FUNDS:
        return LABELS[language][fund]
    return (names or {}).get(fund) or fund


def explain_trace(trace: PayerTrace, language: Language = "zh", names: Mapping[str, str] | None = None) -> str:
    """One line per payer: base, what was set aside, the rates, the cap, the amount."""
    labels = LABELS[language]
    name = fund_label(trace.payer, language, names)
    if not trace.applied:
        return f"{name}: {labels.get(trace.reason or '', trace.reason or '')} — 0.00"
    parts = [f"{name} ({trace.programme}): {labels['base']} {y(trace.base)}"]
    if trace.deductible_consumed:
        parts.append(f"− {labels['deductible']} {y(trace.deductible_consumed)}")
    if trace.below_threshold:
        parts.append(f"− {labels['threshold']} {y(trace.threshold)}: {y(trace.below_threshold)}")
    bands = " + ".join(f"{y(band.amount)} × {band.rate}" for band in trace.bands)
    parts.append(f"→ {bands} = {y(trace.computed)}")
    if trace.cap_cut:
        parts.append(f"({labels['cap']} {y(trace.cap_remaining or 0)}, {labels['cap_cut']} {y(trace.cap_cut)})")
    parts.append(f"→ {labels['paid']} {y(trace.paid)}")
    return " ".join(parts)


def explain(settlement: Settlement, language: Language = "zh", names: Mapping[str, str] | None = None) -> list[str]:
    """The lines a receipt prints under the items; ``names`` names the funds beyond the three."""
    labels = LABELS[language]
    over_limit = f"; {labels['over_limit']} {y(settlement.over_limit)}" if settlement.over_limit else ""
    lines = [
        f"{labels['total']} {y(settlement.total)}; {labels['eligible']} {y(settlement.eligible)}; "
        f"{labels['self_pay_first']} {y(settlement.self_pay_first)}; "
        f"{labels['not_covered']} {y(settlement.not_covered)}{over_limit}"
    ]
    lines.extend(explain_trace(trace, language, names) for trace in settlement.traces)
    lines.extend(notice.message for notice in settlement.warnings)
    lines.append(f"{labels['out_of_pocket']} {y(settlement.out_of_pocket)}")
    lines.append(f"{labels['policy']} {settlement.policy_version}")
    return lines
