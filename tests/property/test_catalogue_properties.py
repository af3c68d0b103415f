"""Hypothesis: for any catalogue and any bill, the item catalogue's split of each line holds up
(DESIGN Part 2, "The item catalogue").

- the four buckets (全自费, 超限价自付, 先行自付, 政策范围内) add up to each line's amount, and the
  bill's totals to its total;
- eligible never exceeds what any bucket allows: nothing for a C item or a code not in the catalogue,
  never more than quantity × cap for a capped item, never more than the in-catalogue amount less its
  self-pay-first share (rounded half up) for a B item;
- the payers and the patient still add up to the total, and the payers pay only from eligible;
- a terminal's category that disagrees with the catalogue is refused, naming that line.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.catalogue import Catalogue, CatalogueItem, CategoryMismatch
from settlement.chain import settle
from settlement.chain_policy import parse_chain
from settlement.models import Bill, LineItem, PersonStatus
from settlement.money import RATE_SCALE, round_half_up

REPO = Path(__file__).resolve().parents[2]
DEFAULT = parse_chain((REPO / "policies/default.toml").read_text(encoding="utf-8"), "default.toml")
DAY = dt.date(2026, 5, 12)
CODES = [f"ITEM-{index}" for index in range(12)]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

items = st.builds(
    CatalogueItem,
    category=st.sampled_from(["A", "B", "C"]),
    self_pay_share=st.one_of(st.none(), st.integers(0, RATE_SCALE)),
    price_cap=st.one_of(st.none(), st.integers(0, 200_000)),
)
catalogues = st.dictionaries(st.sampled_from(CODES), items, max_size=len(CODES))


@st.composite
def bills(draw: st.DrawFn, listed: dict[str, CatalogueItem]) -> Bill:
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        code = draw(st.sampled_from([*CODES, "UNLISTED"]))
        quantity = draw(st.integers(1, 50))
        unit_price = draw(st.integers(0, 300_000))
        known = listed.get(code)
        category = (
            draw(st.sampled_from([None, known.category])) if known else draw(st.sampled_from([None, "A", "B", "C"]))
        )
        lines.append(
            LineItem(
                code=code,
                name="x",
                category=category,
                amount=quantity * unit_price,
                quantity=quantity,
                unit_price=unit_price,
            )
        )
    status = draw(st.sampled_from(["outpatient", "inpatient"]))
    return Bill(clinic_level="county", visit_type=status, service_date=DAY, items=tuple(lines))


@PROPERTY
@given(data=st.data(), listed=catalogues)
def test_the_buckets_add_up_and_eligible_never_exceeds_any_allowance(data: st.DataObject, listed: dict) -> None:
    catalogue = Catalogue.build(
        [dt.date(2026, 1, 1)], [(code, dt.date(2026, 1, 1), item) for code, item in listed.items()]
    )
    bill = data.draw(bills(listed))
    result = settle(bill, PersonStatus(insured=True, hardship_tier="destitute"), {}, DEFAULT, catalogue.on(DAY))

    assert result.not_covered + result.over_limit + result.self_pay_first + result.eligible == result.total
    assert sum(trace.paid for trace in result.traces) + result.out_of_pocket == result.total
    assert sum(trace.paid for trace in result.traces) <= result.eligible
    for sent, out in zip(bill.items, result.lines, strict=True):
        assert out.not_covered is not None
        assert min(out.not_covered, out.over_limit, out.self_pay_first, out.eligible) >= 0
        assert out.not_covered + out.over_limit + out.self_pay_first + out.eligible == out.amount
        assert sum(out.payers) <= out.eligible
        found = listed.get(sent.code)
        if found is None:
            assert (out.not_covered, out.eligible, out.notice) == (out.amount, 0, "not_in_catalogue")
            continue
        assert out.category == found.category
        assert sent.quantity is not None and sent.unit_price is not None
        if found.price_cap is None or sent.unit_price <= found.price_cap:
            assert out.over_limit == 0
        else:
            assert out.over_limit == sent.quantity * (sent.unit_price - found.price_cap)
            assert out.eligible <= sent.quantity * found.price_cap
        in_catalogue = out.amount - out.over_limit
        if found.category == "C":
            assert out.eligible == 0
        elif found.category == "B":
            share = DEFAULT.b_self_pay_first_share if found.self_pay_share is None else found.self_pay_share
            assert out.self_pay_first == round_half_up(in_catalogue * share, RATE_SCALE)
            assert out.eligible == in_catalogue - out.self_pay_first
        else:
            assert out.eligible == in_catalogue


@PROPERTY
@given(data=st.data(), listed=catalogues.filter(bool))
def test_a_category_the_catalogue_disagrees_with_is_refused_naming_its_line(data: st.DataObject, listed: dict) -> None:
    catalogue = Catalogue.build(
        [dt.date(2026, 1, 1)], [(code, dt.date(2026, 1, 1), item) for code, item in listed.items()]
    )
    bill = data.draw(bills(listed))
    code = data.draw(st.sampled_from(sorted(listed)))
    wrong = data.draw(st.sampled_from([c for c in "ABC" if c != listed[code].category]))
    position = data.draw(st.integers(0, len(bill.items)))
    bad = LineItem(code=code, name="x", category=wrong, amount=100, quantity=1, unit_price=100)  # type: ignore[arg-type]
    items = (*bill.items[:position], bad, *bill.items[position:])
    bill = Bill(clinic_level=bill.clinic_level, visit_type=bill.visit_type, service_date=DAY, items=items)
    with pytest.raises(CategoryMismatch) as refused:
        settle(bill, PersonStatus(insured=True), {}, DEFAULT, catalogue.on(DAY))
    # The other lines send the catalogue's category or none, so the inserted line is the one named.
    assert refused.value.field == f"items[{position}].category"
