"""Reconciliation of totals over a range of booking days (3201-style): balanced totals, each field that
differs named with both values, the days that narrow it, reversals after the range left standing, and
the refusals (a range too wide or backwards, another clinic's totals)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.integration.test_finance import synthetic_day, synthetic_reversal

pytestmark = pytest.mark.integration

CLINIC = "V087"
BILL = 12_345  # each synthetic settlement is a category-C bill the patient pays in full


def totals(settlements: int, **changes: Any) -> dict[str, Any]:
    return {
        "settlements": settlements,
        "total": settlements * BILL,
        "insurance": 0,
        "veteran_subsidy": 0,
        "hardship_aid": 0,
        "out_of_pocket": settlements * BILL,
    } | changes


async def reconcile(client: Any, body: dict[str, Any], terminal: str = "finance-1") -> tuple[int, Any]:
    response = await client.post("/v1/finance/reconciliation/totals", json=body, headers={"X-Terminal-Id": terminal})
    return response.status, await response.json()


async def test_totals_over_a_range_balance_or_name_each_field_and_the_days(client, pool):
    first = await synthetic_day(client, pool, clinic_id=CLINIC, booked_on=dt.date(2026, 5, 11), count=2)
    second = await synthetic_day(client, pool, clinic_id=CLINIC, booked_on=dt.date(2026, 5, 12), count=3)
    await synthetic_reversal(pool, second[0], dt.date(2026, 5, 12))  # reversed within the range: not standing
    await synthetic_reversal(pool, first[0], dt.date(2026, 6, 1))  # reversed after it: still standing at its end
    body = {"clinic_id": CLINIC, "from": "2026-05-11", "to": "2026-05-12", "totals": totals(4)}

    status, result = await reconcile(client, body, f"term-{CLINIC}")  # a terminal, for its own clinic
    assert status == 200, result
    assert result["balanced"] is True and result["differences"] == []
    assert (result["gateway_count"], result["gateway_sums_fen"]["total"]) == (4, 4 * BILL)
    assert result["days"] == [
        {"date": "2026-05-11", "settlements": 2, "total": 2 * BILL, "adjustments": 0},
        {"date": "2026-05-12", "settlements": 2, "total": 2 * BILL, "adjustments": 0},
    ]
    assert result["period"] == {"from": "2026-05-11", "to": "2026-05-12"}

    # The clinic counted the reversed one: the count, the total and the patient's share differ.
    status, result = await reconcile(client, body | {"totals": totals(5)})
    assert status == 200 and result["balanced"] is False
    assert result["differences"] == [
        {"field": "settlements", "gateway": 4, "submitted": 5},
        {"field": "total", "gateway": 4 * BILL, "submitted": 5 * BILL},
        {"field": "out_of_pocket", "gateway": 4 * BILL, "submitted": 5 * BILL},
    ]
    # A fund the gateway never booked, named by its code.
    status, result = await reconcile(client, body | {"totals": totals(4, other_funds={"charity": 100})})
    assert result["differences"] == [{"field": "charity", "gateway": 0, "submitted": 100}]

    # A day after the range and its later reversal: that day's range shows it reversed on its own day.
    status, result = await reconcile(
        client, {"clinic_id": CLINIC, "from": "2026-05-11", "to": "2026-06-01", "totals": totals(3)}
    )
    assert result["balanced"] is True, result


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"from": "2026-01-01", "to": "2027-01-03"}, 422, "range_too_wide", "to"),
        ({"from": "2026-05-12", "to": "2026-05-11"}, 422, "validation_failed", "from"),
        ({"from": "2026-05-32"}, 422, "validation_failed", "from"),
        ({"totals": totals(-1)}, 422, "validation_failed", "totals.settlements"),
        ({"clinic_id": "V001"}, 403, "forbidden", "clinic_id"),
    ],
)
async def test_a_range_that_cannot_be_reconciled_is_refused_naming_the_field(client, change, status, code, field):
    body = {"clinic_id": CLINIC, "from": "2026-05-11", "to": "2026-05-12", "totals": totals(0)} | change
    answer_status, problem = await reconcile(client, body, f"term-{CLINIC}")
    assert (answer_status, problem["code"], problem["field"]) == (status, code, field), problem
