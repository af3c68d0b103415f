"""The four buckets where no database is needed: the dashboard's "not split" figure, which shows only when
the period holds bills settled before the buckets were kept.

The same over HTTP, on settlements in every bucket, is tests/integration/test_bucket_reports.py.
"""

from __future__ import annotations

import datetime as dt

from adapters.bill_buckets import BUCKETS
from adapters.report_models import Amounts, DashboardFigures
from gateway.dashboard.pages import render


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
