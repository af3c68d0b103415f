"""Finding settlements: GET /v1/settlements by booking days, clinic and the clinic's request id, paged by
cursor (finance sees every clinic, a terminal only its own); and a receipt found by its short number."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from typing import Any

import pytest

from gateway.http.handlers.receipts import receipt_number
from gateway.service import china_today
from tests.integration.conftest import bill, register
from tests.integration.test_finance import synthetic_day, synthetic_reversal

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
CLINIC = "V088"
TERMINAL = {"X-Terminal-Id": f"term-{CLINIC}"}


async def search(client: Any, query: str, headers: dict[str, str] = FINANCE) -> tuple[int, Any]:
    response = await client.get(f"/v1/settlements?{query}", headers=headers)
    return response.status, await response.json()


async def every_page(client: Any, query: str, headers: dict[str, str] = FINANCE) -> list[list[dict[str, Any]]]:
    """Each page of a search, following ``next`` (at most 20 pages)."""
    pages = []
    after = ""
    for _ in range(20):
        status, page = await search(client, query + after, headers)
        assert status == 200, page
        pages.append(page["items"])
        if page["next"] is None:
            return pages
        after = f"&after={urllib.parse.quote(page['next'])}"
    raise AssertionError("more than 20 pages")


async def test_pages_follow_the_cursor_in_booking_order_without_gaps_or_repeats(client, pool):
    first = await synthetic_day(client, pool, clinic_id=CLINIC, booked_on=dt.date(2026, 7, 1), count=7)
    second = await synthetic_day(client, pool, clinic_id=CLINIC, booked_on=dt.date(2026, 7, 2), count=3)
    await synthetic_reversal(pool, second[1], dt.date(2026, 7, 2))
    query = f"clinic={CLINIC}&from=2026-07-01&to=2026-07-02&limit=4"
    pages = await every_page(client, query)
    assert [len(page) for page in pages] == [4, 4, 2]
    listed = [item["settlement_id"] for page in pages for item in page]
    assert listed == [str(settlement_id) for settlement_id in [*sorted(first), *sorted(second)]]
    items = {item["settlement_id"]: item for page in pages for item in page}
    reversed_item = items[str(second[1])]
    assert reversed_item["reversed"] is True and reversed_item["reversal_id"] is not None
    assert items[str(first[0])]["reversed"] is False and items[str(first[0])]["booked_on"] == "2026-07-01"
    assert items[str(first[0])]["request_id"] == f"syn-{first[0].hex}"

    # A terminal sees its own clinic's without naming it, and not another's.
    assert await every_page(client, "from=2026-07-01&to=2026-07-02&limit=4", TERMINAL) == pages
    status, problem = await search(client, "clinic=V001&from=2026-07-01&to=2026-07-02", TERMINAL)
    assert (status, problem["code"], problem["field"]) == (403, "forbidden", "clinic")
    # Finance without a clinic sees every clinic's, these among them.
    everyone = [item for page in await every_page(client, "from=2026-07-01&to=2026-07-01&limit=500") for item in page]
    assert {str(settlement_id) for settlement_id in first} <= {item["settlement_id"] for item in everyone}


async def test_a_bill_is_found_by_the_clinic_s_request_id_with_the_person_masked(client):
    person = await register(client, ("insurance", "resident"))
    request_id = f"his-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        "/v1/settlements",
        json=bill(person, ("A", 30_000), clinic_id=CLINIC, visit_type="outpatient", request_id=request_id),
        headers=TERMINAL,
    )
    settled = await response.json()
    assert response.status == 201, settled
    status, page = await search(client, f"request_id={request_id}&from={china_today().isoformat()}")
    assert status == 200, page
    (item,) = page["items"]
    assert item["settlement_id"] == settled["settlement_id"] and item["request_id"] == request_id
    assert (item["total"], item["insurance"], item["out_of_pocket"]) == (
        settled["total"],
        settled["insurance"],
        settled["out_of_pocket"],
    )
    assert item["person"] == settled["person"] and person not in str(page)  # masked, never the raw ID
    assert page["next"] is None


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("limit=0", "validation_failed", "limit"),
        ("limit=501", "validation_failed", "limit"),
        ("limit=ten", "validation_failed", "limit"),
        ("from=2025-01-01&to=2026-07-02", "range_too_wide", "to"),
        ("from=2026-07-03&to=2026-07-02", "validation_failed", "from"),
        ("from=2026-07-32", "validation_failed", "from"),
        ("after=not-a-cursor", "validation_failed", "after"),
        ("request_id=a%20b", "validation_failed", "request_id"),
        ("clinic=V%00", "validation_failed", "clinic"),
    ],
)
async def test_a_bad_search_is_refused_naming_the_parameter(client, query, code, field):
    status, problem = await search(client, query)
    assert (status, problem["code"], problem["field"]) == (422, code, field), problem


async def test_a_receipt_is_found_by_its_short_number(client, pool):
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements", json=bill(person, ("A", 20_000), clinic_id=CLINIC, visit_type="outpatient"), headers=TERMINAL
    )
    settlement_id = uuid.UUID((await response.json())["settlement_id"])
    number = receipt_number(settlement_id)
    for typed in (number, number.replace("-", "").lower()):
        response = await client.get(f"/v1/receipts/{typed}", headers=TERMINAL)
        assert response.status == 200 and number in await response.text()
    response = await client.get(f"/v1/receipts/{number}?format=text&lang=en", headers=FINANCE)
    assert response.status == 200 and response.content_type == "text/plain" and number in await response.text()
    # Another clinic's terminal cannot tell it from a number nobody has.
    response = await client.get(f"/v1/receipts/{number}", headers={"X-Terminal-Id": "term-V001"})
    assert response.status == 404
    response = await client.get("/v1/receipts/0000-0000-0001", headers=TERMINAL)
    assert (response.status, (await response.json())["code"]) == (404, "receipt_not_found")
    response = await client.get("/v1/receipts/0F3A-9C1E", headers=TERMINAL)
    assert (response.status, (await response.json())["field"]) == (422, "number")

    # Two settlements that share their first 12 digits: the short number is refused, the longer one found.
    twins = [uuid.UUID("abcdef012345" + "1" * 20), uuid.UUID("abcdef012345" + "2" * 20)]
    await synthetic_day(client, pool, clinic_id=CLINIC, booked_on=dt.date(2026, 7, 3), count=2, ids=twins)
    response = await client.get(f"/v1/receipts/{receipt_number(twins[0])}", headers=FINANCE)
    assert (response.status, (await response.json())["code"]) == (409, "receipt_number_shared")
    response = await client.get(f"/v1/receipts/{receipt_number(twins[1], 16)}", headers=FINANCE)
    assert response.status == 200 and str(twins[1]) in await response.text()
