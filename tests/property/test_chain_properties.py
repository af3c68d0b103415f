"""Hypothesis: what holds for every payer chain a policy officer can write, not just the default one.

A strategy writes random valid chain policies as TOML text (1-6 funds, statutory ones first; flat
rates, rates by level, bands over the bill, bands over a year-to-date counter from a threshold that
counts every bill or only those the step pays on; no deductible, one per admission or one per year
on a counter; no cap, a cap per rule, or one paid counter shared by several steps; steps and rules
limited to the insured, to programme codes, visit types, clinic levels or referred bills) and
``parse_chain`` loads it. Then, for any bill, person and counters (DESIGN Part 2, "Funds and the
payer chain"):

- (a) the steps and out of pocket add up to the total, line by line and step by step;
- (b) every amount and counter is a non-negative int;
- (c) each step's base is the eligible amount the earlier steps left, and it pays no more than that,
  no more than its cap leaves, on no line more than that line still had unpaid;
- (d) over a year of bills from zero, no capped counter passes the largest cap on it, nor a
  per-year deductible counter the largest deductible;
- (e) counters only grow, by what the steps paid, consumed or counted, and taking back every
  settlement's deltas in any order returns to the start without a counter going negative;
- (f) settling twice (and loading the file twice) gives the same result.

And the loader keeps the file's chain order, names every counter the file names, and refuses the
same file with a non-statutory fund moved ahead of a statutory one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from settlement.chain import Chain, settle
from settlement.chain_policy import parse_chain
from settlement.errors import PolicyError
from settlement.models import (
    CLINIC_LEVELS,
    VISIT_TYPES,
    Bill,
    Category,
    ClinicLevel,
    LineItem,
    PersonStatus,
    ProgrammeEnd,
    Settlement,
    VisitType,
)

YEAR = 2026
JANUARY_FIRST = dt.date(YEAR, 1, 1)

PROPERTY = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The programmes a generated policy may declare, with the codes it may declare for each. The first
# two are the ones PersonStatus carries as fields (veteran_category, hardship_tier).
PROGRAMME_CODES: dict[str, tuple[str, ...]] = {
    "veteran_subsidy": ("disabled_veteran", "priority_care", "martyr_family"),
    "hardship_aid": ("destitute", "minimum_allowance", "marginal", "low_income", "medical_hardship"),
    "charity": ("child_major_disease", "adult_cancer"),
}
STATUS_FIELDS = {"veteran_subsidy": "veteran_category", "hardship_aid": "hardship_tier"}
PAID_COUNTERS = ("paid_a", "paid_b", "paid_c")  # few names, so steps and rules share them often


# ---------------------------------------------------------------- TOML text


def _toml(value: Any) -> str:
    """One TOML value. Money and rates arrive as ``_Decimal`` text, so nothing is ever a float."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _Decimal):
        return value.text
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


@dataclass(frozen=True)
class _Decimal:
    text: str


def yuan(fen: int) -> _Decimal:
    return _Decimal(f"{fen // 100}.{fen % 100:02d}")


def rate(ppm: int) -> _Decimal:
    return _Decimal(f"{ppm // 1_000_000}.{ppm % 1_000_000:06d}")


def _table(lines: list[str], header: str, values: Mapping[str, Any]) -> None:
    lines.append(f"\n{header}")
    lines.extend(f"{key} = {_toml(value)}" for key, value in values.items() if value is not None)


# ---------------------------------------------------------------- random chain policies


def _subset(draw: st.DrawFn, values: Iterable[str], *, allow_none: bool = True) -> list[str] | None:
    """None (no restriction, two times in three) or a non-empty subset, in declaration order."""
    values = list(values)
    if allow_none and draw(st.integers(0, 2)):
        return None
    picked = draw(st.sets(st.sampled_from(values), min_size=1))
    return [value for value in values if value in picked]


# Money is drawn as fen: small amounts that caps, deductibles and thresholds bite on within a bill or
# two, round yuan, and anything up to 100,000 yuan.
money = st.one_of(
    st.sampled_from((0, 1, 50, 10_000, 20_000, 50_000, 100_000, 500_000)),
    st.integers(0, 200_000),
    st.integers(0, 10_000_000),
)
# Deductibles stay smaller, so that most bills go past them.
deductible_money = st.one_of(st.sampled_from((0, 1, 10_000, 20_000, 50_000)), st.integers(0, 300_000))
rates = st.one_of(
    st.sampled_from((0, 1_000_000, 500_000, 333_333, 750_000, 850_000, 1)),
    st.integers(0, 1_000_000),
)


@st.composite
def _bands(draw: st.DrawFn, above: int = 0) -> list[dict[str, Any]]:
    """1-3 bands: ascending ``up_to`` edges, the first above ``above``, the last open-ended."""
    count = draw(st.integers(1, 3))
    edges = []
    edge = above
    for _ in range(count - 1):
        edge += draw(st.integers(1, 5_000_000))
        edges.append(edge)
    return [{"up_to_yuan": yuan(edge), "rate": rate(draw(rates))} for edge in edges] + [{"rate": rate(draw(rates))}]


def _by_level(draw: st.DrawFn, values: st.SearchStrategy[int], convert: Any) -> Any:
    """One number for every level, or a table naming every level."""
    if draw(st.booleans()):
        return convert(draw(values))
    return {level: convert(draw(values)) for level in CLINIC_LEVELS}


@st.composite
def _rule(draw: st.DrawFn, index: int, fund: dict[str, Any], declared: dict[str, list[str]]) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "visit_types": _subset(draw, VISIT_TYPES),
        "levels": _subset(draw, CLINIC_LEVELS),
    }
    if fund.get("programme") is not None:
        rule["codes"] = _subset(draw, declared[fund["programme"]])
    if declared and draw(st.integers(0, 3)) == 0:
        programme = draw(st.sampled_from(sorted(declared)))
        rule["members_of"] = {programme: _subset(draw, declared[programme], allow_none=False)}

    kinds = ["flat", "bands"] + (["ytd_bands"] if "ytd_counter" in fund else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "flat":
        rule["rate"] = _by_level(draw, rates, rate)
    elif kind == "bands":
        rule["bands"] = draw(_bands())
    else:
        threshold = draw(money)
        rule["ytd_bands"] = {"threshold_yuan": yuan(threshold), "bands": draw(_bands(above=threshold))}

    if kind != "ytd_bands":  # a year-to-date rule takes a threshold instead of a deductible
        deductible = draw(st.sampled_from(("none", "per_admission", "per_year")))
        if deductible == "per_admission":
            rule["deductible"] = {"per_admission_yuan": _by_level(draw, deductible_money, yuan)}
        elif deductible == "per_year":
            rule["deductible"] = {"per_year_yuan": yuan(draw(deductible_money)), "counter": f"deductible_{index}"}

    if draw(st.booleans()):
        rule["annual_cap_yuan"] = yuan(draw(money))
    if fund.get("paid_counter") is None or draw(st.integers(0, 3)) == 0:
        rule["paid_counter"] = draw(st.sampled_from(PAID_COUNTERS))
    return rule


@dataclass(frozen=True)
class Policy:
    """A generated chain policy: its TOML text, the chain it loads as, and what the test needs to
    know about its counters (read from the file, not from the loader's output)."""

    text: str
    chain: Chain
    statutory: tuple[bool, ...]
    paid_counters: frozenset[str]
    deductible_counters: frozenset[str]
    ytd_counters: Mapping[str, str]  # fund code -> its year-to-date counter
    # Per paid counter, the caps its rules put on it: None among them when a rule has no cap.
    caps: Mapping[str, frozenset[int | None]] = field(default_factory=dict)
    # Per per-year deductible counter, the largest yearly deductible on it.
    deductibles: Mapping[str, int] = field(default_factory=dict)
    # Amounts worth putting counters at: caps, deductibles, thresholds and band edges.
    edges: tuple[int, ...] = ()


def _fen(decimal: _Decimal) -> int:
    whole, part = decimal.text.split(".")
    return int(whole) * 100 + int(part)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    declared: dict[str, list[str]] = {}
    for programme in draw(st.sets(st.sampled_from(sorted(PROGRAMME_CODES)))):
        codes = _subset(draw, PROGRAMME_CODES[programme], allow_none=False)
        assert codes is not None
        declared[programme] = codes
    declared = {name: declared[name] for name in PROGRAMME_CODES if name in declared}

    count = draw(st.integers(1, 6))
    statutory_count = draw(st.integers(0, count))
    funds: dict[str, dict[str, Any]] = {}
    for index in range(count):
        code = f"fund_{index}"
        fund: dict[str, Any] = {
            "name": f"基金 {index}",
            "name_en": f"fund {index}",
            "statutory": index < statutory_count,
            "insured": draw(st.integers(0, 2)) == 0,
        }
        in_programme = draw(st.booleans())
        if declared and in_programme:
            programme = draw(st.sampled_from(sorted(declared)))
            fund["programme"] = programme
            fund["codes"] = _subset(draw, declared[programme])
        fund["visit_types"] = _subset(draw, VISIT_TYPES)
        fund["levels"] = _subset(draw, CLINIC_LEVELS)
        fund["referral"] = draw(st.integers(0, 5)) == 0
        if draw(st.booleans()):
            fund["ytd_counter"] = {"name": f"ytd_{index}", "counts": draw(st.sampled_from(("every_bill", "applied")))}
        if draw(st.booleans()):
            fund["paid_counter"] = draw(st.sampled_from(PAID_COUNTERS))
        rules = [draw(_rule(index, fund, declared)) for _ in range(draw(st.integers(1, 3)))]
        funds[code] = {"fund": fund, "rules": rules}

    lines = [
        'id = "generated-2026"',
        "effective_from = 2026-01-01",
        'description = "generated by a property test"',
        f"chain = {_toml(list(funds))}",
    ]
    _table(
        lines,
        "[eligibility]",
        {
            "b_self_pay_first_share": rate(draw(rates)),
            "inpatient_levels": _subset(draw, CLINIC_LEVELS, allow_none=False) if draw(st.integers(0, 4)) else [],
        },
    )
    _table(lines, "[programmes]", declared)
    for code, spec in funds.items():
        _table(lines, f"[funds.{code}]", spec["fund"])
        for rule in spec["rules"]:
            _table(lines, f"[[funds.{code}.rules]]", rule)
    text = "\n".join(lines) + "\n"
    chain = parse_chain(text, "generated.toml")

    # What the file says about counters, to check the engine against.
    caps: dict[str, set[int | None]] = {}
    deductibles: dict[str, int] = {}
    edges: set[int] = set()
    ytd_counters = {}
    for code, spec in funds.items():
        fund = spec["fund"]
        if "ytd_counter" in fund:
            ytd_counters[code] = fund["ytd_counter"]["name"]
        for rule in spec["rules"]:
            paid_counter: str = rule.get("paid_counter") or fund["paid_counter"]
            cap = _fen(rule["annual_cap_yuan"]) if "annual_cap_yuan" in rule else None
            caps.setdefault(paid_counter, set()).add(cap)
            deductible = rule.get("deductible", {})
            if "per_year_yuan" in deductible:
                yearly = _fen(deductible["per_year_yuan"])
                deductibles[deductible["counter"]] = max(deductibles.get(deductible["counter"], 0), yearly)
                edges.add(yearly)
            if "ytd_bands" in rule:
                edges.add(_fen(rule["ytd_bands"]["threshold_yuan"]))
                edges.update(_fen(band["up_to_yuan"]) for band in rule["ytd_bands"]["bands"] if "up_to_yuan" in band)
            if cap is not None:
                edges.add(cap)
    return Policy(
        text=text,
        chain=chain,
        statutory=tuple(spec["fund"]["statutory"] for spec in funds.values()),
        paid_counters=frozenset(caps),
        deductible_counters=frozenset(deductibles),
        ytd_counters=ytd_counters,
        caps={name: frozenset(values) for name, values in caps.items()},
        deductibles=deductibles,
        edges=tuple(sorted(edges)),
    )


# ---------------------------------------------------------------- bills, people and counters for a chain

LINE_CATEGORIES: tuple[Category, ...] = ("A", "B", "C", "A", "B")  # C lines are never eligible: fewer
line_amounts = st.one_of(
    st.integers(0, 2_000),
    st.integers(0, 200_000),
    st.integers(0, 20_000_000),
    st.sampled_from((0, 1, 5, 15, 100, 10_000)),
)


def bills(chain: Chain) -> st.SearchStrategy[Bill]:
    visits: list[tuple[ClinicLevel, VisitType]] = [
        (level, visit)
        for level in CLINIC_LEVELS
        for visit in VISIT_TYPES
        if visit == "outpatient" or level in chain.inpatient_levels
    ]
    lines = st.lists(st.tuples(st.sampled_from(LINE_CATEGORIES), line_amounts), min_size=1, max_size=8)
    return st.builds(
        lambda visit, items, day, referral: Bill(
            clinic_level=visit[0],
            visit_type=visit[1],
            service_date=JANUARY_FIRST + dt.timedelta(days=day),
            items=tuple(
                LineItem(code=f"{110_000_000 + i:09d}", name=f"item {i + 1}", category=category, amount=amount)
                for i, (category, amount) in enumerate(items)
            ),
            referral=referral,
        ),
        st.sampled_from(visits),
        lines,
        st.integers(0, 364),
        st.booleans(),
    )


def statuses(chain: Chain) -> st.SearchStrategy[PersonStatus]:
    """Insured or not, and in each programme the chain declares: none, or one of its codes."""
    declared = chain.programmes
    codes = st.fixed_dictionaries({name: st.sampled_from((None, *codes)) for name, codes in declared.items()})
    ends = st.lists(
        st.builds(
            ProgrammeEnd,
            programme=st.sampled_from(tuple(STATUS_FIELDS)),
            code=st.just("ended_code"),
            struck_off_on=st.dates(JANUARY_FIRST, dt.date(YEAR, 12, 31)),
        ),
        max_size=1,
    ).map(tuple)

    def build(insured: bool, held: dict[str, str | None], struck_off: tuple[ProgrammeEnd, ...]) -> PersonStatus:
        fields = {STATUS_FIELDS[name]: code for name, code in held.items() if name in STATUS_FIELDS}
        others = {name: code for name, code in held.items() if name not in STATUS_FIELDS and code is not None}
        return PersonStatus(insured=insured, struck_off=struck_off, programmes=others, **fields)

    return st.builds(build, st.booleans(), codes, ends)


def counter_states(policy: Policy) -> st.SearchStrategy[dict[str, int]]:
    """Every counter the chain names: zero (a third of the time), within a fen of a cap, deductible,
    threshold or band edge of the policy, or anywhere up to a little past the largest of them."""
    edges = sorted({0} | {max(0, edge + d) for edge in policy.edges for d in (-1, 0, 1)})
    span = max(edges) + max(edges) // 10 + 1
    value = st.one_of(st.just(0), st.sampled_from(edges), st.integers(0, span))
    return st.fixed_dictionaries({name: value for name in policy.chain.counters})


# ---------------------------------------------------------------- checks


def assert_adds_up(result: Settlement, bill: Bill) -> None:
    """(a) conservation, overall and per line, and (c) each step within what is left at its turn."""
    steps = result.traces
    assert result.total == sum(item.amount for item in bill.items)
    assert result.eligible + result.self_pay_first + result.not_covered == result.total
    assert sum(step.paid for step in steps) + result.out_of_pocket == result.total

    left = result.eligible
    for step in steps:
        assert step.base == left, f"{step.payer}: base {step.base}, but the earlier steps left {left}"
        assert step.paid <= step.base, step
        assert step.cap_cut == step.computed - step.paid, step
        assert step.paid <= step.computed, step
        if step.cap_remaining is not None:
            assert step.annual_cap is not None
            assert step.paid <= step.cap_remaining <= step.annual_cap, step
        if not step.applied:
            assert step.paid == step.computed == 0, step
        assert step.deductible_consumed <= step.deductible
        assert step.deductible_consumed + step.below_threshold <= step.base, step
        left -= step.paid

    lines = result.lines
    assert len(lines) == len(bill.items)
    assert sum(line.out_of_pocket for line in lines) == result.out_of_pocket
    for index, step in enumerate(steps):
        assert sum(line.payers[index] for line in lines) == step.paid, step.payer
    for item, line in zip(bill.items, lines, strict=True):
        assert (line.code, line.category, line.amount) == (item.code, item.category, item.amount)
        assert len(line.payers) == len(steps)
        assert sum(line.payers) + line.out_of_pocket == line.amount, line
        assert line.eligible + line.self_pay_first <= line.amount, line
        if item.category == "C":
            assert line.eligible == 0
        unpaid = line.eligible
        for share in line.payers:
            assert share <= unpaid, line  # no step pays a line more than it still had unpaid
            unpaid -= share


def _money(value: object, path: str = "$") -> Iterable[tuple[str, object]]:
    """Every int (or bool posing as one) in a settlement: struct fields, tuples and counter maps."""
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _money(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, tuple):
        for index, element in enumerate(value):
            yield from _money(element, f"{path}[{index}]")
    elif isinstance(value, Mapping):
        for key, element in value.items():
            yield from _money(element, f"{path}.{key}")
    elif isinstance(value, int):
        yield path, value


def assert_non_negative_ints(result: Settlement) -> None:
    """(b): money, counters and caps alike."""
    found = list(_money(result))
    assert len(found) >= 7 + 5 * len(result.traces) + 2 * len(result.counters_after)
    for path, value in found:
        if path.endswith((".applied", ".referral", ".remote")):
            continue
        assert type(value) is int, f"{path} is {type(value).__name__} {value!r}"
        assert value >= 0, f"{path} is negative: {value}"


def assert_counters_move_as_declared(result: Settlement, policy: Policy, given: Mapping[str, int]) -> None:
    """(e) for one bill: every counter the chain names is there, only grows, and grows by what the
    steps paid (paid counters), consumed (per-year deductibles) or counted (year-to-date)."""
    chain = policy.chain
    before, after = result.counters_before, result.counters_after
    assert set(before) == set(after) == set(chain.counters)
    assert dict(before) == {name: given.get(name, 0) for name in chain.counters}
    deltas = {name: after[name] - before[name] for name in chain.counters}
    assert all(delta >= 0 for delta in deltas.values()), deltas

    assert sum(deltas[name] for name in policy.paid_counters) == sum(step.paid for step in result.traces)
    consumed = sum(step.deductible_consumed for step in result.traces)
    assert sum(deltas[name] for name in policy.deductible_counters) <= consumed
    for step, trace in zip(chain.steps, result.traces, strict=True):
        counter = policy.ytd_counters.get(step.fund.code)
        if counter is None:
            assert trace.ytd_before is None and trace.ytd_after is None
            continue
        counted = trace.applied or step.ytd_counts == "every_bill"
        assert (trace.ytd_before is not None) == counted, trace
        if counted:
            assert (trace.ytd_before, trace.ytd_after) == (before[counter], before[counter] + trace.base)
        assert deltas[counter] == (trace.base if counted else 0), (counter, trace)


# ---------------------------------------------------------------- properties


@st.composite
def one_bill(draw: st.DrawFn) -> tuple[Policy, Bill, PersonStatus, dict[str, int]]:
    policy = draw(policies())
    return policy, draw(bills(policy.chain)), draw(statuses(policy.chain)), draw(counter_states(policy))


@PROPERTY
@given(case=one_bill())
def test_any_chain_adds_up_stays_within_what_is_left_and_moves_counters_as_declared(
    case: tuple[Policy, Bill, PersonStatus, dict[str, int]],
) -> None:
    policy, bill, status, counters = case
    note(policy.text)
    result = settle(bill, status, counters, policy.chain)
    assert [trace.payer for trace in result.traces] == [step.fund.code for step in policy.chain.steps]
    assert_adds_up(result, bill)
    assert_non_negative_ints(result)
    assert_counters_move_as_declared(result, policy, counters)


@settings(PROPERTY, max_examples=80)
@given(case=one_bill())
def test_settling_twice_and_loading_twice_give_the_same_result(
    case: tuple[Policy, Bill, PersonStatus, dict[str, int]],
) -> None:
    policy, bill, status, counters = case
    note(policy.text)
    again = parse_chain(policy.text, "generated.toml")
    assert again == policy.chain
    given_counters = dict(counters)
    first = settle(bill, status, counters, policy.chain)
    assert counters == given_counters  # settle is pure: the caller's counters are left alone
    second = settle(bill, status, given_counters, again)
    assert first == second
    assert msgspec.json.encode(first) == msgspec.json.encode(second)


@settings(PROPERTY, max_examples=120)
@given(data=st.data(), policy=policies(), bill_count=st.integers(1, 10))
def test_a_year_of_bills_never_passes_a_cap_and_reverses_to_zero_in_any_order(
    data: st.DataObject, policy: Policy, bill_count: int
) -> None:
    note(policy.text)
    chain = policy.chain
    insured = data.draw(st.booleans(), label="insured")
    counters = dict.fromkeys(chain.counters, 0)
    results = []
    for _ in range(bill_count):
        bill = data.draw(bills(chain), label="bill")
        # The person's programme codes may change from one bill to the next; caps carry over.
        status = msgspec.structs.replace(data.draw(statuses(chain), label="status"), insured=insured)
        result = settle(bill, status, counters, chain)
        assert_adds_up(result, bill)
        assert_counters_move_as_declared(result, policy, counters)
        counters = dict(result.counters_after)
        results.append(result)

        # (d) A paid counter whose every rule has a cap never passes the largest of them; a per-year
        # deductible counter never passes the largest deductible on it.
        for name, caps in policy.caps.items():
            if None not in caps:
                assert counters[name] <= max(cap for cap in caps if cap is not None), (name, counters[name], caps)
        for name, yearly in policy.deductibles.items():
            assert counters[name] <= yearly, (name, counters[name], yearly)

    # (e) Take back every settlement's deltas, in an order Hypothesis picks: no counter ever goes
    # negative and the year ends where it began.
    order = data.draw(st.permutations(range(len(results))), label="reversal order")
    for index in order:
        result = results[index]
        for name in chain.counters:
            delta = result.counters_after[name] - result.counters_before[name]
            assert delta >= 0
            counters[name] -= delta
            assert counters[name] >= 0, (name, counters[name])
    assert counters == dict.fromkeys(chain.counters, 0)


@settings(PROPERTY, max_examples=60)
@given(policy=policies())
def test_the_loader_keeps_the_chain_order_and_refuses_a_non_statutory_fund_first(policy: Policy) -> None:
    note(policy.text)
    chain = policy.chain
    codes = [fund.code for fund in chain.funds]
    assert codes == [f"fund_{index}" for index in range(len(policy.statutory))]
    assert tuple(fund.statutory for fund in chain.funds) == policy.statutory
    named = set(policy.paid_counters) | set(policy.deductible_counters) | set(policy.ytd_counters.values())
    assert set(chain.counters) == named

    # The same file with its last non-statutory fund moved to the front of the chain is refused.
    if all(policy.statutory) or not any(policy.statutory):
        return
    moved = [codes[-1], *codes[:-1]]
    text = policy.text.replace(f"chain = {_toml(codes)}\n", f"chain = {_toml(moved)}\n", 1)
    assert text != policy.text
    with pytest.raises(PolicyError) as caught:
        parse_chain(text, "generated.toml")
    assert caught.value.path == "$.chain[1]"
    assert "statutory" in caught.value.problem
