"""Hand-computed settlements against the default policy (docs/settlement-rules.md).

Every expected figure is worked out by hand from docs/settlement-rules.md ("Money and
rounding", "The order of payers", "The default policy") in the comment next to it; none
is copied from the engine's output. Money is int fen: ``14_000 * Y`` is 14,000.00 yuan.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.policy_files import load_policy_file
from settlement import (
    Accumulators,
    Bill,
    InpatientNotOffered,
    InvalidBill,
    LineItem,
    NoPolicyInForce,
    PayerTrace,
    PersonStatus,
    Settlement,
    UnknownProgrammeCode,
    apply_deltas,
    explain,
    reversal_deltas,
    settle,
    settlement_deltas,
)
from settlement.chain import Chain
from settlement.chain_policy import parse_chain
from settlement.policy_book import PolicyBook
from settlement.registry import Membership, status_on

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_PATH = REPO / "policies" / "default.toml"
DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
POLICY = load_policy_file(DEFAULT_POLICY_PATH)

Y = 100  # fen per yuan
DAY = dt.date(2026, 5, 12)
FRESH = Accumulators()
# The year's 200-yuan outpatient deductible already used, so outpatient bills pay at rate from the first fen.
DEDUCTIBLE_USED = Accumulators(outpatient_deductible_used=200 * Y)


# ---------------------------------------------------------------- helpers


def item(category: str, amount: object, code: str | None = None, **extra: object) -> LineItem:
    return LineItem(
        code=code or f"{category}-{amount}",
        name=f"category {category} item",
        category=category,  # type: ignore[arg-type]
        amount=amount,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def bill(level: str, visit: str, *items: LineItem, day: dt.date = DAY) -> Bill:
    return Bill(clinic_level=level, visit_type=visit, service_date=day, items=items)  # type: ignore[arg-type]


def person(*, insured: bool = True, veteran: str | None = None, tier: str | None = None) -> PersonStatus:
    return PersonStatus(insured=insured, veteran_category=veteran, hardship_tier=tier)


def trace(settlement: Settlement, payer: str) -> PayerTrace:
    (found,) = [t for t in settlement.traces if t.payer == payer]
    return found


def check_invariants(s: Settlement, b: Bill, before: Accumulators) -> None:
    """docs/settlement-rules.md, "Money and rounding": the invariants every settlement must meet."""
    parts = (s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket)
    assert all(type(value) is int and value >= 0 for value in parts), parts
    assert sum(parts) == s.total == sum(line.amount for line in b.items)
    assert s.eligible + s.self_pay_first + s.not_covered == s.total
    # each payer <= the eligible amount still unpaid when its turn comes
    assert s.insurance <= s.eligible
    assert s.veteran_subsidy <= s.eligible - s.insurance
    assert s.hardship_aid <= s.eligible - s.insurance - s.veteran_subsidy
    assert s.accumulators(before=True) == before
    assert [t.payer for t in s.traces] == ["insurance", "veteran_subsidy", "hardship_aid"]
    assert [t.paid for t in s.traces] == [s.insurance, s.veteran_subsidy, s.hardship_aid]
    # the per-line breakdown sums exactly to the settlement
    assert [line.code for line in s.lines] == [line.code for line in b.items]
    assert sum(line.amount for line in s.lines) == s.total
    for name in ("eligible", "self_pay_first", "insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket"):
        assert sum(getattr(line, name) for line in s.lines) == getattr(s, name), name
    for line in s.lines:
        assert line.insurance + line.veteran_subsidy + line.hardship_aid + line.out_of_pocket == line.amount
        assert min(line.insurance, line.veteran_subsidy, line.hardship_aid, line.out_of_pocket) >= 0
        assert line.insurance + line.veteran_subsidy + line.hardship_aid <= line.eligible


def run(b: Bill, status: PersonStatus, before: Accumulators = FRESH, policy: Chain = POLICY) -> Settlement:
    s = settle(b, status, before, policy)
    check_invariants(s, b, before)
    return s


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the policy text"
    return text.replace(old, new)


def inpatient_for_unpaid(unpaid: int, *, level: str = "township", day: dt.date = DAY) -> Bill:
    """An inpatient bill that leaves exactly ``unpaid`` eligible for an uninsured person: one A line."""
    return bill(level, "inpatient", item("A", unpaid), day=day)


UNINSURED = {"insured": False}


# ---------------------------------------------------------------- worked examples

WORKED_ITEMS = (item("A", 14_000 * Y, "A1"), item("B", 4_000 * Y, "B1"), item("C", 2_000 * Y, "C1"))


def worked_bill(day: dt.date = DAY) -> Bill:
    return bill("county", "inpatient", *WORKED_ITEMS, day=day)


def test_worked_example_county_inpatient_minimum_allowance() -> None:
    s = run(worked_bill(), person(tier="minimum_allowance"))
    # total 14,000 + 4,000 + 2,000 = 20,000.00
    assert s.total == 2_000_000
    # B self-pay-first 4,000 × 0.10 = 400; C 2,000 not covered
    assert s.self_pay_first == 40_000
    assert s.not_covered == 200_000
    # eligible 14,000 + 3,600 = 17,600.00
    assert s.eligible == 1_760_000
    # insurance (17,600 − 600 county deductible) × 0.75 = 12,750.00
    assert s.insurance == 1_275_000
    assert trace(s, "insurance").deductible_consumed == 60_000
    assert s.veteran_subsidy == 0
    # unpaid eligible 17,600 − 12,750 = 4,850; aid 4,850 × 0.70 = 3,395.00
    assert trace(s, "hardship_aid").base == 485_000
    assert s.hardship_aid == 339_500
    # out of pocket 20,000 − 12,750 − 3,395 = 3,855.00 = 19.3 % of the total
    assert s.out_of_pocket == 385_500
    assert (Decimal(s.out_of_pocket) * 100 / s.total).quantize(Decimal("0.1")) == Decimal("19.3")
    assert s.policy_version == "default-2026"
    # first admission of the year: accumulators start at zero and take exactly what was paid
    assert s.accumulators() == Accumulators(
        insurance_inpatient_paid=1_275_000,
        aid_paid=339_500,
        unpaid_eligible=485_000,  # after insurance and subsidy, before aid
    )


def test_worked_example_line_breakdown() -> None:
    s = run(worked_bill(), person(tier="minimum_allowance"))
    a, b, c = s.lines
    assert (a.self_pay_first, a.eligible) == (0, 1_400_000)
    assert (b.self_pay_first, b.eligible) == (40_000, 360_000)
    assert (c.self_pay_first, c.eligible, c.out_of_pocket) == (0, 0, 200_000)
    # insurance 1,275,000 spread over eligible 1,400,000 : 360,000 (of 1,760,000):
    # A 1,275,000 × 35/44 = 1,014,204.545…, B 1,275,000 × 9/44 = 260,795.454…; floors sum to 1,274,999,
    # the one fen left goes to the larger remainder (A)
    assert (a.insurance, b.insurance, c.insurance) == (1_014_205, 260_795, 0)
    # aid 339,500 = 0.70 × 485,000 over what insurance left: A 385,795, B 99,205
    # → A 270,056.5, B 69,443.5: a tie for the last fen, either line may take it
    assert (a.hardship_aid, b.hardship_aid) in {(270_057, 69_443), (270_056, 69_444)}
    assert c.hardship_aid == 0
    assert a.veteran_subsidy == b.veteran_subsidy == c.veteran_subsidy == 0


def test_worked_example_also_priority_care() -> None:
    s = run(worked_bill(), person(veteran="priority_care", tier="minimum_allowance"))
    assert s.total == 2_000_000
    assert s.eligible == 1_760_000
    # insurance as before: (17,600 − 600) × 0.75 = 12,750.00
    assert s.insurance == 1_275_000
    # subsidy 4,850 × 0.60 (priority_care inpatient) = 2,910.00
    assert trace(s, "veteran_subsidy").base == 485_000
    assert s.veteran_subsidy == 291_000
    # aid on 4,850 − 2,910 = 1,940.00 still unpaid, × 0.70 = 1,358.00
    assert trace(s, "hardship_aid").base == 194_000
    assert s.hardship_aid == 135_800
    # out of pocket 20,000 − 12,750 − 2,910 − 1,358 = 2,982.00
    assert s.out_of_pocket == 298_200
    assert s.accumulators() == Accumulators(
        insurance_inpatient_paid=1_275_000,
        subsidy_paid=291_000,
        aid_paid=135_800,
        unpaid_eligible=194_000,
    )
    a, b, c = s.lines
    # subsidy 291,000 = 0.60 × 485,000 over A 385,795 / B 99,205: 231,477 / 59,523 exactly
    assert (a.veteran_subsidy, b.veteran_subsidy, c.veteran_subsidy) == (231_477, 59_523, 0)
    # aid 135,800 = 0.70 × 194,000 over A 154,318 / B 39,682: 108,022.6 / 27,777.4 → larger remainder A
    assert (a.hardship_aid, b.hardship_aid) == (108_023, 27_777)
    # A 1,400,000 − 1,014,205 − 231,477 − 108,023; B 400,000 − 260,795 − 59,523 − 27,777
    assert (a.out_of_pocket, b.out_of_pocket, c.out_of_pocket) == (46_295, 51_905, 200_000)


def test_explain_worked_example_in_english() -> None:
    text = "\n".join(explain(run(worked_bill(), person(tier="minimum_allowance")), "en"))
    for figure in ("20000.00", "17600.00", "12750.00", "3395.00", "3855.00", "default-2026", "0.75", "0.70"):
        assert figure in text, figure


# ---------------------------------------------------------------- hardship aid bands


def test_band_example_12000_unpaid_gives_8500() -> None:
    # uninsured at a township inpatient: the whole 12,000.00 A line is unpaid eligible for aid
    s = run(inpatient_for_unpaid(12_000 * Y), person(insured=False, tier="minimum_allowance"))
    assert s.insurance == 0
    # 10,000 × 0.70 + 2,000 × 0.75 = 7,000 + 1,500 = 8,500.00
    assert s.hardship_aid == 850_000
    assert s.out_of_pocket == 350_000
    bands = [(band.lower, band.upper, band.rate, band.amount) for band in trace(s, "hardship_aid").bands]
    assert bands == [(0, 1_000_000, "0.70", 1_000_000), (1_000_000, 5_000_000, "0.75", 200_000)]


@pytest.mark.parametrize(
    ("tier", "unpaid", "aid"),
    [
        # 10,000.00 × 0.70 = 7,000.00, all in the first band
        ("minimum_allowance", 1_000_000, 700_000),
        # 7,000 + 0.01 × 0.75 → 700,000.75 fen → half up 700,001
        ("minimum_allowance", 1_000_001, 700_001),
        # 10,000 × 0.70 + 40,000 × 0.75 = 7,000 + 30,000 = 37,000.00
        ("minimum_allowance", 5_000_000, 3_700_000),
        # 37,000 + 0.01 × 0.80 → 3,700,000.8 fen → 3,700,001
        ("minimum_allowance", 5_000_001, 3_700_001),
        # 37,000 + 10,000.03 × 0.80 = 37,000 + 8,000.024 → 4,500,002.4 fen → rounds down to 4,500,002
        ("minimum_allowance", 6_000_003, 4_500_002),
        # marginal: 10,000 × 0.60 = 6,000.00
        ("marginal", 1_000_000, 600_000),
        # 6,000 + 0.01 × 0.65 → 600,000.65 fen → 600,001
        ("marginal", 1_000_001, 600_001),
        # 6,000 + 40,000 × 0.65 = 6,000 + 26,000 = 32,000.00
        ("marginal", 5_000_000, 3_200_000),
        # 32,000 + 0.01 × 0.70 → 3,200,000.7 fen → 3,200,001
        ("marginal", 5_000_001, 3_200_001),
        # low_income: 5,000.01 × 0.50 → 250,000.5 fen → half UP 250,001 (banker's rounding would give 250,000)
        ("low_income", 500_001, 250_001),
        # 10,000 × 0.50 + 0.01 × 0.55 → 500,000.55 fen → 500,001
        ("low_income", 1_000_001, 500_001),
        # 5,000 + 40,000 × 0.55 = 27,000; + 0.01 × 0.60 → 2,700,000.6 fen → 2,700,001
        ("low_income", 5_000_001, 2_700_001),
        # destitute: 1.00 flat
        ("destitute", 5_000_001, 5_000_001),
    ],
)
def test_band_boundaries_are_marginal_and_rounded_once(tier: str, unpaid: int, aid: int) -> None:
    s = run(inpatient_for_unpaid(unpaid), person(insured=False, tier=tier))
    assert trace(s, "hardship_aid").base == unpaid
    assert s.hardship_aid == aid
    assert s.out_of_pocket == unpaid - aid


def test_bands_are_rounded_once_not_per_band() -> None:
    # a policy whose minimum_allowance bands split at 0.01 yuan, both at 0.50
    text = replace_once(
        DEFAULT_TEXT,
        "  { up_to_yuan = 10000, rate = 0.70 },\n  { up_to_yuan = 50000, rate = 0.75 },\n  { rate = 0.80 },\n",
        "  { up_to_yuan = 0.01, rate = 0.50 },\n  { rate = 0.50 },\n",
    )
    policy = parse_chain(text, "split-bands.toml")
    status = person(insured=False, tier="minimum_allowance")
    # 2 fen: 1 × 0.50 + 1 × 0.50 = 1.0 → 1 fen (rounding each band half up would give 1 + 1 = 2)
    assert run(inpatient_for_unpaid(2), status, policy=policy).hardship_aid == 1
    # 3 fen: 0.5 + 1.0 = 1.5 → half up 2
    assert run(inpatient_for_unpaid(3), status, policy=policy).hardship_aid == 2


# ---------------------------------------------------------------- eligibility and rounding


@pytest.mark.parametrize(
    ("amount", "self_pay"),
    [
        (5, 1),  # 0.5 → half up 1
        (14, 1),  # 1.4 → 1
        (15, 2),  # 1.5 → 2
        (25, 3),  # 2.5 → 3 (half up, not to even)
        (4_000 * Y, 40_000),  # 4,000.00 × 0.10 = 400.00
    ],
)
def test_b_line_self_pay_first_is_ten_percent_half_up(amount: int, self_pay: int) -> None:
    # destitute, uninsured, outpatient at a village: aid pays 1.00 of eligible, so the patient pays
    # exactly the self-pay-first share
    s = run(bill("village", "outpatient", item("B", amount)), person(insured=False, tier="destitute"))
    assert s.self_pay_first == self_pay
    assert s.eligible == amount - self_pay
    assert (s.lines[0].self_pay_first, s.lines[0].eligible) == (self_pay, amount - self_pay)
    assert s.hardship_aid == amount - self_pay
    assert s.out_of_pocket == self_pay


def test_b_self_pay_first_rounds_per_line_not_per_bill() -> None:
    status = person(insured=False, tier="destitute")
    # two B lines of 5 fen: 0.5 → 1 each = 2 (rounding the 10-fen bill once would give 1)
    s = run(bill("village", "outpatient", item("B", 5, "b1"), item("B", 5, "b2")), status)
    assert (s.self_pay_first, s.eligible, s.out_of_pocket) == (2, 8, 2)
    # three B lines of 14 fen: 1.4 → 1 each = 3 (42 × 0.10 = 4.2 → 4 for the whole bill)
    s = run(bill("village", "outpatient", *(item("B", 14, f"b{i}") for i in range(3))), status)
    assert (s.self_pay_first, s.eligible) == (3, 39)


def test_c_items_are_never_eligible() -> None:
    s = run(bill("county", "inpatient", item("C", 5_000 * Y)), person(veteran="disabled_veteran", tier="destitute"))
    assert (s.eligible, s.not_covered) == (0, 500_000)
    assert s.insurance == s.veteran_subsidy == s.hardship_aid == 0
    assert s.out_of_pocket == 500_000


def test_each_payer_is_rounded_once_on_the_whole_bill() -> None:
    status = person()
    # village outpatient 0.50, deductible used. Two A lines of 1 fen: 2 × 0.50 = 1.0 → 1 fen
    # (rounding per line would give 1 + 1 = 2)
    s = run(bill("village", "outpatient", item("A", 1, "a1"), item("A", 1, "a2")), status, DEDUCTIBLE_USED)
    assert s.insurance == 1
    # three lines: 3 × 0.50 = 1.5 → half up 2
    s = run(bill("village", "outpatient", *(item("A", 1, f"a{i}") for i in range(3))), status, DEDUCTIBLE_USED)
    assert s.insurance == 2


# ---------------------------------------------------------------- insurance: outpatient


def test_outpatient_deductible_spans_two_visits() -> None:
    status = person()
    # visit 1, county outpatient, A 150.00: all of it goes to the 200.00 yearly deductible, insurance 0
    first = run(bill("county", "outpatient", item("A", 150 * Y)), status)
    assert trace(first, "insurance").deductible_consumed == 15_000
    assert first.insurance == 0
    assert first.out_of_pocket == 15_000
    assert first.accumulators().outpatient_deductible_used == 15_000
    # visit 2, A 250.00: the last 50.00 of deductible, then (250 − 50) × 0.35 = 70.00
    second = run(bill("county", "outpatient", item("A", 250 * Y)), status, first.accumulators())
    assert trace(second, "insurance").deductible == 5_000
    assert trace(second, "insurance").deductible_consumed == 5_000
    assert second.insurance == 7_000
    assert second.out_of_pocket == 18_000
    assert second.accumulators().outpatient_deductible_used == 20_000
    assert second.accumulators().insurance_outpatient_paid == 7_000
    # unpaid eligible: 150 + 180 = 330.00
    assert second.accumulators().unpaid_eligible == 33_000
    # visit 3, township A 100.00: deductible used up, 100 × 0.45 = 45.00
    third = run(bill("township", "outpatient", item("A", 100 * Y)), status, second.accumulators())
    assert trace(third, "insurance").deductible_consumed == 0
    assert third.insurance == 4_500
    assert third.accumulators().outpatient_deductible_used == 20_000
    assert third.accumulators().insurance_outpatient_paid == 11_500


@pytest.mark.parametrize(("level", "paid"), [("village", 50_000), ("township", 45_000), ("county", 35_000)])
def test_outpatient_rate_by_level(level: str, paid: int) -> None:
    # A 1,000.00 with the deductible used: × 0.50 / 0.45 / 0.35
    s = run(bill(level, "outpatient", item("A", 1_000 * Y)), person(), DEDUCTIBLE_USED)
    assert s.insurance == paid


def test_outpatient_cap_reached_mid_bill() -> None:
    before = Accumulators(outpatient_deductible_used=20_000, insurance_outpatient_paid=2_990 * Y)
    # township outpatient A 100.00 → 100 × 0.45 = 45.00, but only 3,000 − 2,990 = 10.00 of the cap is left
    s = run(bill("township", "outpatient", item("A", 100 * Y)), person(), before)
    t = trace(s, "insurance")
    assert (t.computed, t.cap_remaining, t.annual_cap) == (4_500, 1_000, 300_000)
    assert s.insurance == 1_000
    assert t.cap_cut == 3_500
    assert s.out_of_pocket == 9_000
    assert s.accumulators().insurance_outpatient_paid == 300_000
    # the next bill of the year gets nothing from insurance: 45.00 all cut by the cap
    nxt = run(bill("township", "outpatient", item("A", 100 * Y)), person(), s.accumulators())
    assert nxt.insurance == 0
    assert trace(nxt, "insurance").cap_cut == 4_500
    assert nxt.accumulators().insurance_outpatient_paid == 300_000


def test_outpatient_cap_leftover_goes_to_the_next_payers() -> None:
    before = Accumulators(outpatient_deductible_used=20_000, insurance_outpatient_paid=2_990 * Y)
    # insurance 10.00 (cap), then destitute outpatient 1.00 on the 90.00 still unpaid
    s = run(bill("township", "outpatient", item("A", 100 * Y)), person(tier="destitute"), before)
    assert (s.insurance, s.hardship_aid, s.out_of_pocket) == (1_000, 9_000, 0)


# ---------------------------------------------------------------- insurance: inpatient


def test_inpatient_deductible_applies_to_every_admission() -> None:
    status = person()
    # township A 1,300.00: (1,300 − 300) × 0.85 = 850.00
    first = run(bill("township", "inpatient", item("A", 1_300 * Y)), status)
    assert trace(first, "insurance").deductible_consumed == 30_000
    assert first.insurance == 85_000
    # second admission of the year: the 300.00 deductible applies again
    second = run(bill("township", "inpatient", item("A", 1_300 * Y)), status, first.accumulators())
    assert trace(second, "insurance").deductible_consumed == 30_000
    assert second.insurance == 85_000
    assert second.accumulators().insurance_inpatient_paid == 170_000
    # inpatient bills do not touch the outpatient deductible
    assert second.accumulators().outpatient_deductible_used == 0


def test_county_inpatient_deductible_and_rate() -> None:
    # county A 2,000.00: (2,000 − 600) × 0.75 = 1,050.00
    s = run(bill("county", "inpatient", item("A", 2_000 * Y)), person())
    assert trace(s, "insurance").deductible_consumed == 60_000
    assert s.insurance == 105_000
    # a bill under the deductible: A 500.00 all consumed by the 600.00 deductible, insurance 0
    small = run(bill("county", "inpatient", item("A", 500 * Y)), person())
    assert trace(small, "insurance").deductible_consumed == 50_000
    assert small.insurance == 0
    assert small.out_of_pocket == 50_000


def test_inpatient_cap_reached_mid_bill() -> None:
    before = Accumulators(insurance_inpatient_paid=199_900 * Y)
    # county A 1,000.00: (1,000 − 600) × 0.75 = 300.00, but only 200,000 − 199,900 = 100.00 left
    s = run(bill("county", "inpatient", item("A", 1_000 * Y)), person(), before)
    t = trace(s, "insurance")
    assert (t.computed, t.cap_remaining, t.cap_cut) == (30_000, 10_000, 20_000)
    assert s.insurance == 10_000
    assert s.out_of_pocket == 90_000
    assert s.accumulators().insurance_inpatient_paid == 20_000_000


def test_village_inpatient_is_refused() -> None:
    with pytest.raises(InpatientNotOffered) as caught:
        settle(bill("village", "inpatient", item("A", 100 * Y)), person(), FRESH, POLICY)
    assert caught.value.field == "visit_type"
    assert caught.value.code == "inpatient_not_offered"


# ---------------------------------------------------------------- priority-care subsidy


@pytest.mark.parametrize(
    ("category", "visit", "level", "insurance", "subsidy"),
    [
        # county outpatient A 1,000.00, deductible used: insurance 350.00, unpaid 650.00
        ("disabled_veteran", "outpatient", "county", 35_000, 65_000),  # 650 × 1.00
        ("priority_care", "outpatient", "county", 35_000, 32_500),  # 650 × 0.50
        # county inpatient A 1,000.00: insurance (1,000 − 600) × 0.75 = 300.00, unpaid 700.00
        ("disabled_veteran", "inpatient", "county", 30_000, 70_000),  # 700 × 1.00
        ("priority_care", "inpatient", "county", 30_000, 42_000),  # 700 × 0.60
    ],
)
def test_subsidy_rate_by_category_and_visit_type(
    category: str, visit: str, level: str, insurance: int, subsidy: int
) -> None:
    s = run(bill(level, visit, item("A", 1_000 * Y)), person(veteran=category), DEDUCTIBLE_USED)
    assert s.insurance == insurance
    assert s.veteran_subsidy == subsidy
    assert s.out_of_pocket == 100_000 - insurance - subsidy
    assert s.accumulators().subsidy_paid == subsidy


def test_subsidy_annual_cap_cuts_mid_bill() -> None:
    before = Accumulators(subsidy_paid=9_900 * Y)
    # county inpatient A 1,000.00: insurance 300, subsidy 700 × 0.60 = 420.00; cap 10,000 − 9,900 = 100.00 left
    s = run(bill("county", "inpatient", item("A", 1_000 * Y)), person(veteran="priority_care"), before)
    t = trace(s, "veteran_subsidy")
    assert (t.computed, t.cap_remaining, t.cap_cut) == (42_000, 10_000, 32_000)
    assert s.veteran_subsidy == 10_000
    assert s.accumulators().subsidy_paid == 1_000_000


def test_subsidy_cap_counts_payments_under_any_category() -> None:
    # 10,000.00 already paid this year (e.g. under disabled_veteran): priority_care's cap is used up
    s = run(
        bill("county", "inpatient", item("A", 1_000 * Y)),
        person(veteran="priority_care"),
        Accumulators(subsidy_paid=10_000 * Y),
    )
    assert s.veteran_subsidy == 0
    assert trace(s, "veteran_subsidy").cap_cut == 42_000
    # disabled_veteran with 99,950.00 paid: 50.00 left of 100,000 although the bill would take 700.00
    s = run(
        bill("county", "inpatient", item("A", 1_000 * Y)),
        person(veteran="disabled_veteran"),
        Accumulators(subsidy_paid=99_950 * Y),
    )
    assert s.veteran_subsidy == 5_000
    assert s.out_of_pocket == 65_000


# ---------------------------------------------------------------- hardship aid


@pytest.mark.parametrize(
    ("tier", "aid"),
    [
        ("destitute", 65_000),  # 650 × 1.00
        ("minimum_allowance", 32_500),  # 650 × 0.50
        ("marginal", 32_500),
        ("low_income", 32_500),
        ("medical_hardship", 0),  # pays only on inpatient bills, even far above its threshold
    ],
)
def test_hardship_outpatient_rates(tier: str, aid: int) -> None:
    # county outpatient A 1,000.00, deductible used: insurance 350.00, unpaid 650.00
    before = Accumulators(outpatient_deductible_used=20_000, unpaid_eligible=20_000 * Y)
    s = run(bill("county", "outpatient", item("A", 1_000 * Y)), person(tier=tier), before)
    assert s.insurance == 35_000
    assert trace(s, "hardship_aid").base == 65_000
    assert s.hardship_aid == aid
    assert s.out_of_pocket == 65_000 - aid


def test_aid_annual_cap_reached_mid_bill() -> None:
    before = Accumulators(aid_paid=59_900 * Y)
    # uninsured destitute, township inpatient A 1,000.00: aid 1,000 × 1.00, but 60,000 − 59,900 = 100.00 left
    s = run(inpatient_for_unpaid(1_000 * Y), person(insured=False, tier="destitute"), before)
    t = trace(s, "hardship_aid")
    assert (t.computed, t.cap_remaining, t.cap_cut) == (100_000, 10_000, 90_000)
    assert s.hardship_aid == 10_000
    assert s.out_of_pocket == 90_000
    assert s.accumulators().aid_paid == 6_000_000


def test_aid_cap_counts_aid_under_any_tier() -> None:
    # 39,900.00 aid already paid this year (under another tier): marginal's 40,000 cap leaves 100.00
    s = run(inpatient_for_unpaid(1_000 * Y), person(insured=False, tier="marginal"), Accumulators(aid_paid=39_900 * Y))
    # 1,000 × 0.60 = 600.00 computed, cut to 100.00
    assert trace(s, "hardship_aid").computed == 60_000
    assert s.hardship_aid == 10_000


# county inpatient A 10,200.00: insurance (10,200 − 600) × 0.75 = 7,200.00, leaving 3,000.00 unpaid
MH_BILL_A = 10_200 * Y
MH_UNPAID = 300_000


def test_medical_hardship_threshold_crossed_mid_bill() -> None:
    before = Accumulators(unpaid_eligible=4_000 * Y)
    s = run(bill("county", "inpatient", item("A", MH_BILL_A)), person(tier="medical_hardship"), before)
    assert s.insurance == 720_000
    # year to date 4,000 → 7,000; the part above 5,000 is 2,000.00; aid 2,000 × 0.50 = 1,000.00
    t = trace(s, "hardship_aid")
    assert (t.base, t.threshold, t.below_threshold) == (MH_UNPAID, 500_000, 100_000)
    assert s.hardship_aid == 100_000
    assert s.out_of_pocket == 200_000
    assert s.accumulators().unpaid_eligible == 700_000
    assert s.accumulators().aid_paid == 100_000


def test_medical_hardship_below_threshold_pays_nothing() -> None:
    # year to date 0 → 3,000.00, all below 5,000
    s = run(bill("county", "inpatient", item("A", MH_BILL_A)), person(tier="medical_hardship"))
    assert s.hardship_aid == 0
    assert s.out_of_pocket == MH_UNPAID
    assert s.accumulators().unpaid_eligible == MH_UNPAID


def test_medical_hardship_already_above_threshold() -> None:
    # year to date 6,000 → 9,000: the whole 3,000.00 is above 5,000; × 0.50 = 1,500.00
    before = Accumulators(unpaid_eligible=6_000 * Y)
    s = run(bill("county", "inpatient", item("A", MH_BILL_A)), person(tier="medical_hardship"), before)
    assert s.hardship_aid == 150_000


def test_medical_hardship_counts_outpatient_and_untiered_spending() -> None:
    # visit 1, no tier at all: county outpatient A 4,200.00: deductible 200, (4,200 − 200) × 0.35 = 1,400.00;
    # unpaid eligible 2,800.00 still counts for the year
    v1 = run(bill("county", "outpatient", item("A", 4_200 * Y)), person())
    assert v1.insurance == 140_000
    assert v1.hardship_aid == 0
    assert v1.accumulators().unpaid_eligible == 280_000
    # visit 2, now medical_hardship, village outpatient A 2,400.00: 2,400 × 0.50 = 1,200.00; outpatient aid 0;
    # year to date 2,800 + 1,200 = 4,000.00
    v2 = run(bill("village", "outpatient", item("A", 2_400 * Y)), person(tier="medical_hardship"), v1.accumulators())
    assert v2.insurance == 120_000
    assert v2.hardship_aid == 0
    assert v2.accumulators().unpaid_eligible == 400_000
    # visit 3, inpatient leaving 3,000.00: 4,000 → 7,000, aid on 2,000 × 0.50 = 1,000.00
    v3 = run(bill("county", "inpatient", item("A", MH_BILL_A)), person(tier="medical_hardship"), v2.accumulators())
    assert v3.hardship_aid == 100_000
    assert v3.accumulators().unpaid_eligible == 700_000


def test_unpaid_eligible_is_counted_after_subsidy_before_aid() -> None:
    # worked example with priority care: 17,600 − 12,750 − 2,910 = 1,940.00, aid 1,358 not subtracted
    s = run(worked_bill(), person(veteran="priority_care", tier="minimum_allowance"), Accumulators(unpaid_eligible=1))
    assert s.accumulators().unpaid_eligible == 1 + 194_000


def test_medical_hardship_annual_cap() -> None:
    # well above threshold, 19,900.00 aid already paid: 3,000 × 0.50 = 1,500.00 cut to 20,000 − 19,900 = 100.00
    before = Accumulators(unpaid_eligible=10_000 * Y, aid_paid=19_900 * Y)
    s = run(bill("county", "inpatient", item("A", MH_BILL_A)), person(tier="medical_hardship"), before)
    assert s.hardship_aid == 10_000
    assert trace(s, "hardship_aid").cap_cut == 140_000


def test_unknown_programme_code_is_refused() -> None:
    with pytest.raises(UnknownProgrammeCode) as caught:
        settle(worked_bill(), person(tier="minimum_allowence"), FRESH, POLICY)
    assert caught.value.field == "hardship_tier"
    with pytest.raises(UnknownProgrammeCode) as caught:
        settle(worked_bill(), person(veteran="veteran"), FRESH, POLICY)
    assert caught.value.field == "veteran_category"


# ---------------------------------------------------------------- not insured


def test_not_insured_gets_subsidy_and_aid_on_full_eligible() -> None:
    # uninsured, county inpatient A 1,000.00: no deductible, no insurance;
    # subsidy 1,000 × 0.60 = 600.00; aid on 400 × 0.70 = 280.00; out of pocket 120.00
    s = run(
        bill("county", "inpatient", item("A", 1_000 * Y)),
        person(insured=False, veteran="priority_care", tier="minimum_allowance"),
    )
    assert s.insurance == 0
    assert trace(s, "insurance").applied is False
    assert trace(s, "insurance").reason == "not_insured"
    assert trace(s, "veteran_subsidy").base == 100_000
    assert s.veteran_subsidy == 60_000
    assert s.hardship_aid == 28_000
    assert s.out_of_pocket == 12_000
    assert s.accumulators().insurance_inpatient_paid == 0


def test_not_insured_outpatient_uses_no_deductible() -> None:
    # uninsured destitute, village outpatient A 100.00: aid 1.00 on all of it; the insurance deductible is untouched
    s = run(bill("village", "outpatient", item("A", 100 * Y)), person(insured=False, tier="destitute"))
    assert (s.insurance, s.hardship_aid, s.out_of_pocket) == (0, 10_000, 0)
    assert s.accumulators().outpatient_deductible_used == 0
    assert s.accumulators().insurance_outpatient_paid == 0


# ---------------------------------------------------------------- registry dates


INSURED_SINCE_2020 = Membership(programme="insurance", code="resident", effective_from=dt.date(2020, 1, 1))


def test_struck_off_hardship_tier_stops_aid_from_that_date() -> None:
    rows = [
        INSURED_SINCE_2020,
        Membership(
            programme="hardship_aid",
            code="minimum_allowance",
            effective_from=dt.date(2025, 1, 1),
            struck_off_on=dt.date(2026, 3, 1),
        ),
    ]
    before_day, strike_day = dt.date(2026, 2, 28), dt.date(2026, 3, 1)
    # 2026-02-28: still minimum_allowance, aid 4,850 × 0.70 = 3,395.00 as in the worked example
    s = run(worked_bill(before_day), status_on(rows, before_day))
    assert s.hardship_aid == 339_500
    assert s.warnings == ()
    # 2026-03-01: struck off that day, no aid; out of pocket 3,855 + 3,395 = 7,250.00
    s = run(worked_bill(strike_day), status_on(rows, strike_day))
    assert s.insurance == 1_275_000
    assert s.hardship_aid == 0
    assert s.out_of_pocket == 725_000
    assert trace(s, "hardship_aid").reason == "struck_off"
    assert [(w.code, w.programme, w.date) for w in s.warnings] == [("struck_off", "hardship_aid", strike_day)]
    assert "2026-03-01" in s.warnings[0].message
    # the receipt explanation carries the notice
    assert any("2026-03-01" in line for line in explain(s, "en"))


def test_tier_change_on_a_date() -> None:
    change = dt.date(2026, 3, 1)
    rows = [
        INSURED_SINCE_2020,
        Membership(
            programme="hardship_aid", code="minimum_allowance", effective_from=dt.date(2025, 1, 1), struck_off_on=change
        ),
        Membership(programme="hardship_aid", code="marginal", effective_from=change),
    ]
    # day before: minimum_allowance, 4,850 × 0.70 = 3,395.00
    s = run(worked_bill(change - dt.timedelta(days=1)), status_on(rows, change - dt.timedelta(days=1)))
    assert trace(s, "hardship_aid").programme == "minimum_allowance"
    assert s.hardship_aid == 339_500
    # from the change date: marginal, 4,850 × 0.60 = 2,910.00; still in a tier, so no strike-off warning
    s = run(worked_bill(change), status_on(rows, change))
    assert trace(s, "hardship_aid").programme == "marginal"
    assert s.hardship_aid == 291_000
    assert s.warnings == ()


# ---------------------------------------------------------------- policy versions


def second_policy() -> Chain:
    text = replace_once(DEFAULT_TEXT, 'id = "default-2026"', 'id = "county-2026-07"')
    text = replace_once(text, "effective_from = 2026-01-01", "effective_from = 2026-07-01")
    text = replace_once(text, "county = 0.35 }", "county = 0.40 }")  # county outpatient
    return parse_chain(text, "county-2026-07.toml")


def test_policy_in_force_is_picked_by_service_date() -> None:
    book = PolicyBook([second_policy(), POLICY])
    june_30, july_1 = dt.date(2026, 6, 30), dt.date(2026, 7, 1)
    assert book.in_force(dt.date(2026, 1, 1)).id == "default-2026"
    assert book.in_force(june_30).id == "default-2026"
    assert book.in_force(july_1).id == "county-2026-07"
    assert book.in_force(dt.date(2027, 3, 1)).id == "county-2026-07"
    # county outpatient A 1,200.00, deductible used: 1,200 × 0.35 = 420.00 before, × 0.40 = 480.00 after
    for day, version, paid in ((june_30, "default-2026", 42_000), (july_1, "county-2026-07", 48_000)):
        b = bill("county", "outpatient", item("A", 1_200 * Y), day=day)
        s = run(b, person(), DEDUCTIBLE_USED, policy=book.in_force(day))
        assert s.insurance == paid
        assert s.policy_version == version
        assert {t.policy_version for t in s.traces} == {version}
        assert s.service_date == day


def test_no_policy_before_the_first_one() -> None:
    book = PolicyBook([POLICY, second_policy()])
    with pytest.raises(NoPolicyInForce) as caught:
        book.in_force(dt.date(2025, 12, 31))
    assert caught.value.field == "service_date"
    assert caught.value.code == "no_policy_in_force"


# ---------------------------------------------------------------- reversal


def test_reversal_restores_accumulators_exactly() -> None:
    before = Accumulators(
        outpatient_deductible_used=5_000,
        insurance_outpatient_paid=1_234,
        insurance_inpatient_paid=50_000,
        subsidy_paid=7_000,
        aid_paid=3_000,
        unpaid_eligible=99_999,
    )
    s = run(worked_bill(), person(veteran="priority_care", tier="minimum_allowance"), before)
    # what the worked example took: insurance 12,750, subsidy 2,910, aid 1,358, unpaid eligible 1,940
    assert settlement_deltas(s) == Accumulators(
        insurance_inpatient_paid=1_275_000, subsidy_paid=291_000, aid_paid=135_800, unpaid_eligible=194_000
    )
    back = reversal_deltas(s)
    assert back == Accumulators(
        insurance_inpatient_paid=-1_275_000, subsidy_paid=-291_000, aid_paid=-135_800, unpaid_eligible=-194_000
    )
    assert apply_deltas(s.accumulators(), back) == before


def test_reversal_of_outpatient_gives_back_the_deductible() -> None:
    first = run(bill("county", "outpatient", item("A", 150 * Y)), person())
    second = run(bill("county", "outpatient", item("A", 250 * Y)), person(), first.accumulators())
    restored = apply_deltas(second.accumulators(), reversal_deltas(second))
    assert restored == first.accumulators()
    assert restored.outpatient_deductible_used == 15_000


def test_apply_deltas_refuses_to_go_negative() -> None:
    s = run(worked_bill(), person(tier="minimum_allowance"))
    with pytest.raises(ValueError, match="insurance_inpatient_paid"):
        apply_deltas(Accumulators(), reversal_deltas(s))
    # one fen short of what the reversal gives back is still refused
    short = Accumulators(insurance_inpatient_paid=1_275_000, aid_paid=339_500 - 1, unpaid_eligible=485_000)
    with pytest.raises(ValueError, match="aid_paid"):
        apply_deltas(short, reversal_deltas(s))


# ---------------------------------------------------------------- invalid bills


@pytest.mark.parametrize("amount", [100.0, Decimal("100"), True, "100"], ids=["float", "decimal", "bool", "str"])
def test_non_int_amount_is_refused(amount: object) -> None:
    with pytest.raises(InvalidBill) as caught:
        settle(bill("county", "outpatient", item("A", amount)), person(), FRESH, POLICY)
    assert caught.value.field == "items[0].amount"
    assert caught.value.code == "invalid_bill"
    # the index names the offending line
    with pytest.raises(InvalidBill) as caught:
        settle(bill("county", "outpatient", item("A", 100), item("B", amount)), person(), FRESH, POLICY)
    assert caught.value.field == "items[1].amount"


def test_negative_amount_is_refused() -> None:
    with pytest.raises(InvalidBill) as caught:
        settle(bill("county", "outpatient", item("A", -1)), person(), FRESH, POLICY)
    assert caught.value.field == "items[0].amount"


def test_quantity_times_unit_price_must_equal_amount() -> None:
    with pytest.raises(InvalidBill) as caught:
        settle(bill("county", "outpatient", item("A", 1_000, quantity=3, unit_price=333)), person(), FRESH, POLICY)
    assert caught.value.field == "items[0].amount"
    # a matching line settles: 4 × 250 = 1,000 fen
    s = run(bill("county", "outpatient", item("A", 1_000, quantity=4, unit_price=250)), person())
    assert s.total == 1_000
    # quantity without unit_price is refused
    with pytest.raises(InvalidBill):
        settle(bill("county", "outpatient", item("A", 1_000, quantity=4)), person(), FRESH, POLICY)


def test_empty_bill_is_refused() -> None:
    with pytest.raises(InvalidBill) as caught:
        settle(bill("county", "outpatient"), person(), FRESH, POLICY)
    assert caught.value.field == "items"


def test_a_bill_total_above_the_bound_is_refused() -> None:
    # 100 million yuan (10^10 fen) bounds a bill as well as a line: lines each within it may not add up past it.
    at_bound = run(bill("county", "outpatient", item("C", 6 * 10**9), item("C", 4 * 10**9)), person())
    assert at_bound.total == 10**10
    with pytest.raises(InvalidBill) as caught:
        settle(bill("county", "outpatient", item("C", 6 * 10**9), item("C", 4 * 10**9 + 1)), person(), FRESH, POLICY)
    assert caught.value.field == "items"
