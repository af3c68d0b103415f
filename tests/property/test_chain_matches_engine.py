"""Hypothesis: the chain engine with the default policy in chain form settles exactly like the old engine.

``settlement.chain.settle`` with policies/default.toml must give, to the fen, what
``settlement.engine.settle`` gives with tests/fixtures/legacy-default-2026.toml: every payer's amount, out of pocket,
every line's split, every counter afterwards, every trace's base/deductible/computed/cap cut/paid,
and the warnings; over one bill and over a person's year of bills; and the same refusals.

Bills cover both visit types at every level that offers them, categories A/B/C and amounts from a
fen to inpatient bills past the insurance cap. People: insured or not, any priority-care category
and hardship tier (or none), sometimes struck off a programme, sometimes in a programme the policy
does not name. Counters sit at zero, at a cap's or deductible's edge, a little below the
medical_hardship threshold of 5,000 yuan, or anywhere up to a little past the largest cap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.chain import Chain
from settlement.chain import settle as chain_settle
from settlement.chain_policy import parse_chain
from settlement.engine import settle as engine_settle
from settlement.errors import InpatientNotOffered, SettlementError, UnknownProgrammeCode
from settlement.models import (
    ACCUMULATOR_FIELDS,
    PAYERS,
    VISIT_TYPES,
    Accumulators,
    Bill,
    Category,
    ClinicLevel,
    LineItem,
    PersonStatus,
    ProgrammeEnd,
    Settlement,
    VisitType,
)
from settlement.policy import HARDSHIP_TIERS, VETERAN_CATEGORIES, parse_policy

ROOT = Path(__file__).resolve().parents[2]
LEGACY_FILE = ROOT / "tests" / "fixtures" / "legacy-default-2026.toml"
POLICY = parse_policy(LEGACY_FILE.read_text(encoding="utf-8"), str(LEGACY_FILE))
CHAIN_FILE = ROOT / "policies" / "default.toml"
CHAIN: Chain = parse_chain(CHAIN_FILE.read_text(encoding="utf-8"), str(CHAIN_FILE))
INSURANCE = POLICY.insurance
YEAR = 2026

# The chain names exactly the old engine's accumulators, and its funds are the old payers in order.
assert set(CHAIN.counters) == set(ACCUMULATOR_FIELDS)
assert tuple(fund.code for fund in CHAIN.funds) == PAYERS

PROPERTY = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- strategies
#
# As in test_engine_properties.py, a bill (and a counter state) is decoded from one fixed-size byte
# string: drawing a many-line bill value by value is slow, and the bytes still shrink toward a
# one-line village outpatient bill for 0 fen and zero counters.

MAX_LINE = 5_000_000  # fen: 50,000 yuan, the largest line of the "anything" mode
BIG_LINE = 60_000_000  # fen: 600,000 yuan, so that a few lines pass the 200,000-yuan inpatient cap


def _edges(*values: int) -> list[int]:
    return sorted({v + d for v in values for d in (-1, 0, 1) if v + d >= 0})


BAND_EDGES = [band.up_to for tier in POLICY.hardship_tiers.values() for band in tier.inpatient_bands if band.up_to]
THRESHOLDS = [tier.ytd_unpaid_threshold for tier in POLICY.hardship_tiers.values() if tier.ytd_unpaid_threshold]
BOUNDARY_AMOUNTS = _edges(
    0,
    5,  # B share 10 % of 5 fen = 0.5 fen: the half-up case
    15,
    100,
    INSURANCE.outpatient_deductible,
    *(rule.inpatient_deductible for rule in INSURANCE.levels.values() if rule.inpatient_deductible),
    INSURANCE.outpatient_cap,
    *BAND_EDGES,
    *THRESHOLDS,
    MAX_LINE,
)

MAX_LINES = 12
LINE_BYTES = 8
BILL_HEADER_BYTES = 5
BILL_BYTES = BILL_HEADER_BYTES + MAX_LINES * LINE_BYTES
CATEGORIES: tuple[Category, ...] = ("A", "B", "C")
JANUARY_FIRST = dt.date(YEAR, 1, 1)
VALID_VISITS: list[tuple[ClinicLevel, VisitType]] = [
    (level, visit)
    for level, rule in INSURANCE.levels.items()
    for visit in VISIT_TYPES
    if visit == "outpatient" or rule.offers_inpatient
]
assert ("village", "inpatient") not in VALID_VISITS
assert {level for level, visit in VALID_VISITS if visit == "inpatient"} == set(CHAIN.inpatient_levels)


def _amount(mode: int, value: int) -> int:
    if mode < 64:
        return BOUNDARY_AMOUNTS[value % len(BOUNDARY_AMOUNTS)]
    if mode < 140:
        return value % 2_001
    if mode < 200:
        return value % 60_001
    if mode < 240:
        return value % (MAX_LINE + 1)
    return value % (BIG_LINE + 1)


def _line(index: int, chunk: bytes) -> LineItem:
    return LineItem(
        code=f"{110_000_000 + index:09d}",
        name=f"item {index + 1}",
        category=CATEGORIES[chunk[1] % 3],
        amount=_amount(chunk[0], int.from_bytes(chunk[2:], "big")),
    )


def _bill(blob: bytes, visit: tuple[ClinicLevel, VisitType] | None = None) -> Bill:
    level, visit_type = visit or VALID_VISITS[blob[0] % len(VALID_VISITS)]
    count = 1 + blob[3] % MAX_LINES
    lines = blob[BILL_HEADER_BYTES:]
    return Bill(
        clinic_level=level,
        visit_type=visit_type,
        service_date=JANUARY_FIRST + dt.timedelta(days=int.from_bytes(blob[1:3], "big") % 365),
        items=tuple(_line(i, lines[i * LINE_BYTES : (i + 1) * LINE_BYTES]) for i in range(count)),
        referral=blob[4] >= 128,  # the default chain has no referral step: it must change nothing
    )


def bills(visit: tuple[ClinicLevel, VisitType] | None = None) -> st.SearchStrategy[Bill]:
    return st.binary(min_size=BILL_BYTES, max_size=BILL_BYTES).map(lambda blob: _bill(blob, visit))


def _struck_off(programme: str, codes: tuple[str, ...]) -> st.SearchStrategy[ProgrammeEnd]:
    return st.builds(
        ProgrammeEnd,
        programme=st.just(programme),
        code=st.sampled_from(codes),
        struck_off_on=st.dates(JANUARY_FIRST, dt.date(YEAR, 12, 31)),
    )


KNOWN_CATEGORIES: st.SearchStrategy[str | None] = st.sampled_from((None, *VETERAN_CATEGORIES))
KNOWN_TIERS: st.SearchStrategy[str | None] = st.sampled_from((None, *HARDSHIP_TIERS))


def statuses(
    categories: st.SearchStrategy[str | None] = KNOWN_CATEGORIES,
    tiers: st.SearchStrategy[str | None] = KNOWN_TIERS,
) -> st.SearchStrategy[PersonStatus]:
    """Any person the registry can describe; struck-off entries and programmes the policy does not
    name (which both engines must ignore) included sometimes."""
    return st.builds(
        PersonStatus,
        insured=st.booleans(),
        veteran_category=categories,
        hardship_tier=tiers,
        struck_off=st.lists(
            st.one_of(_struck_off("veteran_subsidy", VETERAN_CATEGORIES), _struck_off("hardship_aid", HARDSHIP_TIERS)),
            max_size=2,
        ).map(tuple),
        programmes=st.sampled_from(({}, {}, {"charity": "child_major_disease"})),
    )


# Each counter: a third of the time zero or within a fen of a cap, deductible or threshold it is
# measured against; a third of the time up to 1,000 yuan below one (a bill then crosses it); a
# third anywhere from zero to 10 % past the largest.
COUNTER_LIMITS: dict[str, tuple[int, ...]] = {
    "outpatient_deductible_used": (INSURANCE.outpatient_deductible,),
    "insurance_outpatient_paid": (INSURANCE.outpatient_cap,),
    "insurance_inpatient_paid": (INSURANCE.inpatient_cap,),
    "subsidy_paid": tuple(rule.annual_cap for rule in POLICY.veteran_categories.values()),
    "aid_paid": tuple(rule.annual_cap for rule in POLICY.hardship_tiers.values()),
    "unpaid_eligible": tuple(THRESHOLDS),
}
assert set(COUNTER_LIMITS) == set(ACCUMULATOR_FIELDS)
COUNTER_EDGES = {
    name: sorted({0} | {max(limit + d, 0) for limit in limits for d in (-1, 0, 1)})
    for name, limits in COUNTER_LIMITS.items()
}
COUNTER_SPANS = {name: max(limits) + max(limits) // 10 + 1 for name, limits in COUNTER_LIMITS.items()}
COUNTER_BYTES = 8


def _accumulators(blob: bytes) -> Accumulators:
    values = {}
    for index, name in enumerate(ACCUMULATOR_FIELDS):
        chunk = blob[index * COUNTER_BYTES : (index + 1) * COUNTER_BYTES]
        value = int.from_bytes(chunk[1:], "big")
        limits = COUNTER_LIMITS[name]
        if chunk[0] < 86:
            edges = COUNTER_EDGES[name]
            values[name] = edges[value % len(edges)]
        elif chunk[0] < 171:
            values[name] = max(0, limits[value % len(limits)] - (value >> 8) % 100_001)
        else:
            values[name] = value % (COUNTER_SPANS[name] + 1)
    return Accumulators(**values)


accumulator_states = st.binary(
    min_size=COUNTER_BYTES * len(ACCUMULATOR_FIELDS), max_size=COUNTER_BYTES * len(ACCUMULATOR_FIELDS)
).map(_accumulators)


# ---------------------------------------------------------------- comparing


def _counters(accumulators: Accumulators) -> dict[str, int]:
    return {name: getattr(accumulators, name) for name in ACCUMULATOR_FIELDS}


def _both(bill: Bill, status: PersonStatus, accumulators: Accumulators) -> tuple[Settlement, Settlement]:
    return (
        engine_settle(bill, status, accumulators, POLICY),
        chain_settle(bill, status, _counters(accumulators), CHAIN),
    )


def assert_same(old: Settlement, new: Settlement) -> None:
    """Every amount a patient, a fund or a receipt would show, and every counter, to the fen."""
    assert new.policy_version == old.policy_version
    assert (new.clinic_level, new.visit_type, new.service_date) == (old.clinic_level, old.visit_type, old.service_date)
    for field in ("total", "eligible", "self_pay_first", "not_covered", "out_of_pocket"):
        assert getattr(new, field) == getattr(old, field), field
    for payer in PAYERS:
        assert new.paid(payer) == getattr(old, payer), payer
    assert sum(step.paid for step in new.traces) + new.out_of_pocket == new.total

    assert len(new.lines) == len(old.lines)
    for index, (line, old_line) in enumerate(zip(new.lines, old.lines, strict=True)):
        where = f"line {index}"
        assert (line.code, line.category, line.amount) == (old_line.code, old_line.category, old_line.amount), where
        assert (line.self_pay_first, line.eligible) == (old_line.self_pay_first, old_line.eligible), where
        assert line.payers == tuple(getattr(old_line, payer) for payer in PAYERS), where
        assert line.out_of_pocket == old_line.out_of_pocket, where

    assert set(new.counters_before) == set(new.counters_after) == set(ACCUMULATOR_FIELDS)
    for name in ACCUMULATOR_FIELDS:
        assert new.counters_before[name] == getattr(old.accumulators_before, name), name
        assert new.counters_after[name] == getattr(old.accumulators_after, name), name

    assert [step.payer for step in new.traces] == [trace.payer for trace in old.traces]
    for step, trace in zip(new.traces, old.traces, strict=True):
        where = step.payer
        assert (step.applied, step.reason) == (trace.applied, trace.reason), where
        assert step.base == trace.base, where
        assert step.deductible_consumed == trace.deductible_consumed, where
        assert step.computed == trace.computed, where
        assert step.cap_cut == trace.cap_cut, where
        assert step.paid == trace.paid, where
        if trace.applied:
            assert step.programme == trace.programme, where
            assert step.deductible == trace.deductible, where
            assert (step.annual_cap, step.cap_remaining) == (trace.annual_cap, trace.cap_remaining), where
            # What a receipt prints about the rate, except for medical_hardship, where the traces
            # differ in form only: the chain gives band edges as counter values (the inpatient band
            # starts at 5,000 yuan, not 0), and its outpatient rule is a flat 0 % with no threshold.
            if trace.programme != "medical_hardship":
                assert (step.threshold, step.below_threshold) == (trace.threshold, trace.below_threshold), where
                assert step.bands == trace.bands, where

    assert new.warnings == old.warnings


# ---------------------------------------------------------------- properties


@PROPERTY
@given(bill=bills(), status=statuses(), accumulators=accumulator_states)
def test_one_bill_settles_the_same_in_both_engines(
    bill: Bill, status: PersonStatus, accumulators: Accumulators
) -> None:
    old, new = _both(bill, status, accumulators)
    assert_same(old, new)


MAX_BILLS_A_YEAR = 8


@settings(PROPERTY, max_examples=400)
@given(
    bill_list=st.lists(bills(), min_size=1, max_size=MAX_BILLS_A_YEAR),
    insured=st.booleans(),
    # The category and tier in force on each bill: they may change mid-year (and caps are shared).
    programmes=st.lists(
        st.tuples(KNOWN_CATEGORIES, KNOWN_TIERS),
        min_size=MAX_BILLS_A_YEAR,
        max_size=MAX_BILLS_A_YEAR,
    ),
    start=st.one_of(st.just(Accumulators()), accumulator_states),
)
def test_a_year_of_bills_settles_the_same_in_both_engines_at_every_bill(
    bill_list: list[Bill],
    insured: bool,
    programmes: list[tuple[str | None, str | None]],
    start: Accumulators,
) -> None:
    accumulators = start
    counters = _counters(start)
    for bill, (category, tier) in zip(bill_list, programmes, strict=False):
        status = PersonStatus(insured=insured, veteran_category=category, hardship_tier=tier)
        old = engine_settle(bill, status, accumulators, POLICY)
        new = chain_settle(bill, status, counters, CHAIN)
        assert_same(old, new)
        # Each engine goes on from its own counters: a drift would show at the next bill.
        accumulators, counters = old.accumulators_after, dict(new.counters_after)
    assert counters == _counters(accumulators)


UNKNOWN_CODES = st.sampled_from(("retired_official", "marginal ", "Destitute", "x"))


def _refusal(call: Callable[[], object]) -> SettlementError:
    with pytest.raises(SettlementError) as caught:
        call()
    return caught.value


@settings(PROPERTY, max_examples=200)
@given(
    bill=st.one_of(bills(), bills(visit=("village", "inpatient"))),
    status=st.one_of(
        statuses(categories=UNKNOWN_CODES),
        statuses(tiers=UNKNOWN_CODES),
        statuses(categories=UNKNOWN_CODES, tiers=UNKNOWN_CODES),
        statuses(),
    ),
    accumulators=accumulator_states,
)
def test_both_engines_refuse_the_same_bills_with_the_same_error(
    bill: Bill, status: PersonStatus, accumulators: Accumulators
) -> None:
    village_inpatient = (bill.clinic_level, bill.visit_type) == ("village", "inpatient")
    unknown_category = status.veteran_category is not None and status.veteran_category not in VETERAN_CATEGORIES
    unknown_tier = status.hardship_tier is not None and status.hardship_tier not in HARDSHIP_TIERS
    if not (village_inpatient or unknown_category or unknown_tier):
        assert_same(*_both(bill, status, accumulators))
        return
    old = _refusal(lambda: engine_settle(bill, status, accumulators, POLICY))
    new = _refusal(lambda: chain_settle(bill, status, _counters(accumulators), CHAIN))
    expected = InpatientNotOffered if village_inpatient else UnknownProgrammeCode
    assert type(old) is type(new) is expected
    assert (new.code, new.field) == (old.code, old.field)
    if not village_inpatient:
        assert new.field == ("veteran_category" if unknown_category else "hardship_tier")
