"""The item catalogue decides each line's category, self-pay-first share and price cap (DESIGN Part 2,
"The item catalogue"): one hand-computed test per rule and boundary.

Every expected figure is worked out by hand in the comment beside it. Money is int fen: ``120 * Y``
is 120.00 yuan. The default policy's self-pay-first share of a B item is 0.10.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from settlement.catalogue import (
    NOT_IN_CATALOGUE,
    Catalogue,
    CatalogueItem,
    CategoryMismatch,
    UnitPriceRequired,
)
from settlement.chain import settle
from settlement.chain_policy import parse_chain
from settlement.errors import SettlementError
from settlement.models import Bill, LineItem, PersonStatus, Settlement

REPO = Path(__file__).resolve().parents[2]
DEFAULT = parse_chain((REPO / "policies/default.toml").read_text(encoding="utf-8"), "default.toml")
Y = 100
JANUARY = dt.date(2026, 1, 1)
JULY = dt.date(2026, 7, 1)
INSURED = PersonStatus(insured=True)

CATALOGUE = Catalogue.build(
    [JANUARY, JULY],
    [
        ("DRUG-A", JANUARY, CatalogueItem(category="A")),
        ("DRUG-B", JANUARY, CatalogueItem(category="B")),
        ("DRUG-B20", JANUARY, CatalogueItem(category="B", self_pay_share=200_000)),
        ("DRUG-B5", JANUARY, CatalogueItem(category="B", self_pay_share=50_000)),
        ("ROOM-C", JANUARY, CatalogueItem(category="C")),
        ("STENT", JANUARY, CatalogueItem(category="B", price_cap=6_000 * Y)),
        ("TEST-A", JANUARY, CatalogueItem(category="A", price_cap=120 * Y)),
        # From July the test is class B with a lower cap, and a new drug is listed.
        ("TEST-A", JULY, CatalogueItem(category="B", price_cap=100 * Y)),
        ("NEW-DRUG", JULY, CatalogueItem(category="A")),
        ("ROOM-C", JULY, None),
    ],
)


def line(code: str, amount: int, category: str | None = None, quantity: int | None = None) -> LineItem:
    unit_price = None if quantity is None else amount // quantity
    return LineItem(code=code, name=code, category=category, amount=amount, quantity=quantity, unit_price=unit_price)  # type: ignore[arg-type]


def run(*lines: LineItem, day: dt.date = dt.date(2026, 5, 12), catalogue: Catalogue = CATALOGUE) -> Settlement:
    bill = Bill(clinic_level="county", visit_type="outpatient", service_date=day, items=lines)
    result = settle(bill, INSURED, {}, DEFAULT, catalogue.on(day))
    for out in result.lines:
        assert out.not_covered is not None
        assert out.not_covered + out.over_limit + out.self_pay_first + out.eligible == out.amount
    assert result.not_covered + result.over_limit + result.self_pay_first + result.eligible == result.total
    assert sum(trace.paid for trace in result.traces) + result.out_of_pocket == result.total
    return result


def buckets(result: Settlement, index: int = 0) -> tuple[int | None, int, int, int]:
    out = result.lines[index]
    return out.not_covered, out.over_limit, out.self_pay_first, out.eligible


def test_price_exactly_at_the_cap_has_no_over_limit_part() -> None:
    # 3 tests at the cap of 120.00: nothing over the limit, all 360.00 in scope (class A).
    result = run(line("TEST-A", 3 * 120 * Y, quantity=3))
    assert buckets(result) == (0, 0, 0, 360 * Y)


def test_one_fen_over_the_cap_is_over_limit_self_pay_per_unit() -> None:
    # 3 × 120.01: over the limit 3 × 0.01 = 0.03; in scope 360.00.
    result = run(line("TEST-A", 3 * (120 * Y + 1), quantity=3))
    assert buckets(result) == (0, 3, 0, 360 * Y)
    assert result.over_limit == 3


def test_the_b_share_applies_after_the_over_limit_part_is_taken_off() -> None:
    # 9 stents at 6,500.00 under a cap of 6,000.00: over the limit 9 × 500.00 = 4,500.00; in-catalogue
    # 54,000.00; B share 0.10 = 5,400.00 first; eligible 48,600.00.
    result = run(line("STENT", 9 * 6_500 * Y, "B", quantity=9))
    assert buckets(result) == (0, 4_500 * Y, 5_400 * Y, 48_600 * Y)


def test_a_b_item_with_its_own_share() -> None:
    # 1,000.00 at the item's 0.20: 200.00 first, 800.00 eligible; beside it the policy's 0.10 on 1,000.00.
    result = run(line("DRUG-B20", 1_000 * Y), line("DRUG-B", 1_000 * Y))
    assert buckets(result, 0) == (0, 0, 200 * Y, 800 * Y)
    assert buckets(result, 1) == (0, 0, 100 * Y, 900 * Y)


def test_the_b_share_rounds_half_up_per_line() -> None:
    # 3.33 × 0.05 = 0.1665 → 0.17 first (half up), 3.16 eligible; twice, rounded on each line.
    result = run(line("DRUG-B5", 333), line("DRUG-B5", 333))
    assert buckets(result, 0) == (0, 0, 17, 316)
    assert result.self_pay_first == 34


def test_a_code_not_in_the_catalogue_is_fully_self_pay_with_a_notice_on_the_line() -> None:
    result = run(line("DRUG-A", 100 * Y), line("HERBAL-X", 80 * Y, "A"))
    assert buckets(result, 1) == (80 * Y, 0, 0, 0)
    assert result.lines[1].category == "C"
    assert result.lines[1].notice == NOT_IN_CATALOGUE
    assert result.lines[0].notice is None
    notice = next(warning for warning in result.warnings if warning.code == NOT_IN_CATALOGUE)
    assert notice.line == 1 and "HERBAL-X" in notice.message
    assert result.out_of_pocket >= 80 * Y


def test_category_c_is_fully_self_pay() -> None:
    result = run(line("ROOM-C", 300 * Y, "C"))
    assert buckets(result) == (300 * Y, 0, 0, 0)


def test_a_category_the_catalogue_disagrees_with_is_refused_naming_the_line() -> None:
    with pytest.raises(CategoryMismatch) as refused:
        run(line("DRUG-A", 100 * Y, "A"), line("DRUG-B", 100 * Y, "A"))
    assert refused.value.code == "category_mismatch"
    assert refused.value.field == "items[1].category"


def test_no_category_sent_takes_the_catalogues() -> None:
    result = run(line("DRUG-B", 1_000 * Y))
    assert result.lines[0].category == "B"
    assert buckets(result) == (0, 0, 100 * Y, 900 * Y)


def test_a_capped_item_without_a_unit_price_is_refused() -> None:
    with pytest.raises(UnitPriceRequired) as refused:
        run(line("STENT", 6_000 * Y))
    assert refused.value.field == "items[0].unit_price"


def test_a_catalogue_change_takes_effect_on_its_date_not_the_day_before() -> None:
    # June 30: TEST-A is class A capped at 120.00: 2 × 110.00 = 220.00 all eligible.
    before = run(line("TEST-A", 220 * Y, quantity=2), line("NEW-DRUG", 50 * Y), day=JULY - dt.timedelta(days=1))
    assert buckets(before, 0) == (0, 0, 0, 220 * Y)
    assert buckets(before, 1) == (50 * Y, 0, 0, 0)  # not listed until July
    assert before.catalogue_version == "2026-01-01"
    # July 1: class B capped at 100.00: over the limit 2 × 10.00 = 20.00; 200.00 in-catalogue, 20.00 first.
    after = run(line("TEST-A", 220 * Y, quantity=2), line("NEW-DRUG", 50 * Y), day=JULY)
    assert buckets(after, 0) == (0, 20 * Y, 20 * Y, 180 * Y)
    assert buckets(after, 1) == (0, 0, 0, 50 * Y)
    assert after.catalogue_version == "2026-07-01"


def test_a_removed_code_is_not_in_the_catalogue_from_its_removal() -> None:
    assert run(line("ROOM-C", 100 * Y), day=JULY).lines[0].notice == NOT_IN_CATALOGUE
    assert run(line("ROOM-C", 100 * Y), day=JULY - dt.timedelta(days=1)).lines[0].notice is None


def test_before_the_first_version_the_terminals_categories_stand() -> None:
    result = run(line("HERBAL-X", 100 * Y, "B"), day=dt.date(2025, 12, 31))
    assert result.catalogue_version is None
    assert buckets(result) == (0, 0, 10 * Y, 90 * Y)
    with pytest.raises(SettlementError) as refused:
        run(line("HERBAL-X", 100 * Y), day=dt.date(2025, 12, 31))
    assert refused.value.field == "items[0].category"


def test_with_no_catalogue_the_terminals_categories_stand() -> None:
    result = run(line("ANY", 1_000 * Y, "B"), line("ANY", 500 * Y, "C"), catalogue=Catalogue())
    assert buckets(result, 0) == (0, 0, 100 * Y, 900 * Y)
    assert buckets(result, 1) == (500 * Y, 0, 0, 0)


def test_the_worked_example_gives_the_same_amounts_when_its_items_are_in_the_catalogue() -> None:
    # DESIGN Part 1's worked example: county inpatient, A 14,000, B 4,000, C 2,000 for an insured person.
    items = (line("A1", 14_000 * Y, "A"), line("B1", 4_000 * Y, "B"), line("C1", 2_000 * Y, "C"))
    bill = Bill(clinic_level="county", visit_type="inpatient", service_date=dt.date(2026, 5, 1), items=items)
    listed = Catalogue.build(
        [JANUARY],
        [(code, JANUARY, CatalogueItem(category=code[0])) for code in ("A1", "B1", "C1")],  # type: ignore[arg-type]
    )
    without = settle(bill, INSURED, {}, DEFAULT)
    with_catalogue = settle(bill, INSURED, {}, DEFAULT, listed.on(bill.service_date))
    assert with_catalogue.eligible == without.eligible == 17_600 * Y
    assert [trace.paid for trace in with_catalogue.traces] == [trace.paid for trace in without.traces]
    assert with_catalogue.out_of_pocket == without.out_of_pocket


def test_unchanged_codes_share_one_item_in_memory() -> None:
    catalogue = Catalogue.build([JANUARY], [(f"X{index}", JANUARY, CatalogueItem(category="A")) for index in range(3)])
    view = catalogue.on(JANUARY)
    assert view is not None
    assert view.get("X0") is view.get("X2")
    assert len(catalogue) == 3
