"""Plain-language explanation of a settlement, from its per-payer traces.

The lines answer "why did I pay this much?" and are short enough for a receipt.
Chinese is the default; English labels are available. Every step of the chain is named: the
three funds of the first policies by the labels below, any other fund by the name its policy
gives it (``names``, fund code to name in the receipt's language), else by its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final, Literal

from settlement.models import PayerTrace, Settlement
from settlement.money import format_yuan as y
from settlement.money import format_yuan_grouped as money

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


# ---------------------------------------------------------------- a receipt's words for each step

# What a trace's ``programme`` names (a membership code, or the clinic level for insurance), in words.
PROGRAMME_NAMES: dict[Language, dict[str, str]] = {
    "zh": {
        "resident": "城乡居民医保",
        "destitute": "特困供养人员",
        "minimum_allowance": "低保对象",
        "marginal": "低保边缘对象",
        "low_income": "低收入人口",
        "medical_hardship": "因病致贫人员",
        "disabled_veteran": "伤残军人",
        "priority_care": "优抚对象",
        "child_major_disease": "重大疾病患儿",
        "village": "村卫生服务站",
        "township": "镇(社区)卫生服务中心",
        "county": "县级医院",
    },
    "en": {
        "resident": "resident",
        "destitute": "destitute",
        "minimum_allowance": "minimum allowance",
        "marginal": "near minimum allowance",
        "low_income": "low income",
        "medical_hardship": "medical hardship",
        "disabled_veteran": "disabled veteran",
        "priority_care": "priority care",
        "child_major_disease": "child with a major disease",
        "village": "village station",
        "township": "township centre",
        "county": "county hospital",
    },
}

# Why a step did not pay, in words; a reason without words here is shown as it is.
REASON_WORDS: dict[Language, dict[str, str]] = {
    "zh": {
        "not_insured": "未参保，不支付",
        "not_enrolled": "不在该救助(优抚)名册，不支付",
        "struck_off": "已退出名册，不支付",
        "no_rule": "本次就诊不属该项支付范围",
    },
    "en": {
        "not_insured": "not insured: pays nothing",
        "not_enrolled": "not enrolled in this programme: pays nothing",
        "struck_off": "struck off this programme: pays nothing",
        "no_rule": "does not cover this kind of visit",
    },
}

_STEP_WORDS: dict[Language, dict[str, str]] = {
    "zh": {
        "base": "政策范围内待付 {base}",
        "deductible": "起付线 {deductible}，本次计入 {consumed}",
        "threshold": "年度救助门槛 {threshold}，本次计入 {below}",
        "cap_cut": "年度封顶线剩余 {left}，超出的 {cut} 不予支付",
        "ytd": "本年已支付 {ytd}",
        "left": "年度封顶线剩余 {left}",
    },
    "en": {
        "base": "eligible still unpaid {base}",
        "deductible": "deductible {deductible}, of which {consumed} met by this bill",
        "threshold": "year-to-date threshold {threshold}, of which {below} met by this bill",
        "cap_cut": "annual cap left {left}: {cut} above it not paid",
        "ytd": "paid this year {ytd}",
        "left": "annual cap left {left}",
    },
}


def programme_name(code: str | None, language: Language = "zh") -> str:
    """A trace's programme (membership code or clinic level) in words; a code without words stays a code."""
    if code is None:
        return ""
    return PROGRAMME_NAMES[language].get(code, code)


def _percent(rate: str) -> str:
    """A band's rate ('0.75') as a percentage ('75%'), exactly."""
    return f"{(Decimal(rate) * 100).normalize():f}%"


def explain_step(trace: PayerTrace, language: Language = "zh") -> list[str]:
    """A step of the chain in plain words for a receipt, one short sentence a line: what it could pay
    from, what its deductible or threshold took ("deductible 200.00, of which 141.20 met by this bill"),
    each rate band, what its cap cut, and the year so far; or, when it does not apply, why.

    ``explain_trace`` keeps the one-line form the settlement answer and the docs carry."""
    if not trace.applied:
        reason = trace.reason or ""
        return [REASON_WORDS[language].get(reason, reason)]
    words = _STEP_WORDS[language]
    lines = [words["base"].format(base=money(trace.base))]
    if trace.deductible:
        lines.append(
            words["deductible"].format(deductible=money(trace.deductible), consumed=money(trace.deductible_consumed))
        )
    if trace.threshold:
        lines.append(words["threshold"].format(threshold=money(trace.threshold), below=money(trace.below_threshold)))
    rated = [band for band in trace.bands if band.amount]
    if rated:
        bands = " + ".join(f"{money(band.amount)} × {_percent(band.rate)}" for band in rated)
        lines.append(f"{bands} = {money(trace.computed)}")
    if trace.cap_cut:
        lines.append(words["cap_cut"].format(left=money(trace.cap_remaining or 0), cut=money(trace.cap_cut)))
    if trace.annual_cap is not None and trace.cap_remaining is not None:
        left = trace.cap_remaining - trace.paid
        lines.append(words["ytd"].format(ytd=money(trace.annual_cap - left)))
        lines.append(words["left"].format(left=money(left)))
    return lines
