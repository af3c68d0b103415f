"""The four buckets where no database is needed: a receipt line recorded before the catalogue, and the
dashboard's "not split" figure, which shows only when the period holds such bills.

The same over HTTP, on settlements in every bucket, is tests/integration/test_bucket_reports.py.
"""

from __future__ import annotations

import datetime as dt

from adapters.bill_buckets import BUCKETS
from adapters.report_models import Amounts, DashboardFigures
from gateway.dashboard.pages import render
from gateway.http.handlers.receipts import receipt_item
from settlement.models import LineBreakdown

# A B line of 100.00 as records before the catalogue kept it: no not_covered, no over_limit.
OLD_B_LINE = LineBreakdown(
    code="X-B",
    category="B",
    amount=10_000,
    self_pay_first=1_000,
    eligible=9_000,
    insurance=4_500,
    veteran_subsidy=0,
    hardship_aid=0,
    out_of_pocket=5_500,
)


def test_a_line_recorded_before_the_catalogue_prints_its_buckets() -> None:
    item = receipt_item(OLD_B_LINE, name="b", quantity=None, unit_price=None)
    assert item.buckets() == [("not_covered", 0), ("over_limit", 0), ("self_pay_first", 1_000), ("eligible", 9_000)]
    assert not item.wholly_eligible and item.notice_text("zh") == ""
    c_line = receipt_item(
        LineBreakdown(**{**_fields(OLD_B_LINE), "category": "C", "self_pay_first": 0, "eligible": 0}),
        name="c",
        quantity=None,
        unit_price=None,
    )
    assert c_line.not_covered == 10_000 and sum(fen for _, fen in c_line.buckets()) == c_line.amount


def test_a_line_not_in_the_catalogue_says_so_in_both_languages() -> None:
    line = LineBreakdown(**{**_fields(OLD_B_LINE), "category": "C", "self_pay_first": 0, "eligible": 0})
    item = receipt_item(
        LineBreakdown(**{**_fields(line), "not_covered": 10_000, "notice": "not_in_catalogue"}),
        name="?",
        quantity=None,
        unit_price=None,
    )
    assert item.notice_text("zh") == "目录外项目，全额自付"
    assert item.notice_text("en") == "not in the catalogue: paid in full"


def _fields(line: LineBreakdown) -> dict[str, object]:
    return {name: getattr(line, name) for name in line.__struct_fields__}


def _figures(amounts: Amounts) -> DashboardFigures:
    day = dt.date(2026, 5, 3)
    return DashboardFigures(
        period_from=day,
        period_to=day,
        totals=amounts,
        days=[(day, amounts)],
        levels={"county": amounts},
        histogram=[0] * 10,
        clinics=[],
        reconciliation_day=day,
        reconciliation=[],
    )


def test_the_dashboard_shows_not_split_only_when_there_is_some() -> None:
    split = Amounts(count=1, total=1_000, out_of_pocket=1_000, not_covered=200, over_limit=100, eligible=700)
    page = render(_figures(split), who="finance-1 (finance)")
    assert 'id="bucket-not-covered">2.00<' in page and 'id="bucket-over-limit">1.00<' in page
    assert 'id="bucket-self-pay-first">0.00<' in page and 'id="bucket-eligible">7.00<' in page
    assert 'id="bucket-unsplit"' not in page and 'data-unsplit="0"' in page
    assert page.count("data-bucket-fen=") == 3 * 4  # a row per clinic level, with the four buckets

    older = Amounts(
        count=2, total=1_500, out_of_pocket=1_500, not_covered=200, over_limit=100, eligible=900, unsplit=300
    )
    page = render(_figures(older), who="finance-1 (finance)")
    assert 'id="bucket-unsplit">3.00<' in page and "未拆分 not split" in page
    assert page.count("data-bucket-fen=") == 3 * len(BUCKETS)
