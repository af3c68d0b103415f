"""Hostile and broken input: every case is a 4xx problem with a stable code, and nothing is written."""

from __future__ import annotations

import datetime as dt
import io
import json
import urllib.parse

import msgspec
import pytest

from gateway.config import Settings
from tests.integration.conftest import COUNTY, bill, register, row_counts

pytestmark = pytest.mark.integration
MAX_LINES = Settings().max_lines


def _raw(text: str) -> tuple[bytes, str]:
    return text.encode(), "application/json"


@pytest.fixture(scope="module")
async def person(client):
    return await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))


def _cases(person: str) -> list[tuple[str, bytes, str, int, str, str | None]]:
    good = bill(person, ("A", 10_000), visit_type="outpatient")

    def with_item(**change: object) -> bytes:
        return json.dumps({**good, "items": [{**good["items"][0], **change}]}).encode()

    def without(field: str) -> bytes:
        return json.dumps({key: value for key, value in good.items() if key != field}).encode()

    def replace(**change: object) -> bytes:
        return json.dumps({**good, **change}).encode()

    def duplicated(field: str, *, in_item: bool) -> bytes:
        """The good bill with ``field`` sent twice in one object, the second time with another value."""
        text = json.dumps(good)
        if in_item:
            return text.replace('"amount": 10000', '"amount": 10000, "amount": 1', 1).encode()
        return text.replace(f'"{field}": ', f'"{field}": "410103195001010011", "{field}": ', 1).encode()

    def msgpack_with_repeated_amount() -> bytes:
        line = msgspec.msgpack.encode({"code": "X", "name": "x", "category": "A", "amount": 10000})
        line = bytes([line[0] + 1]) + line[1:] + msgspec.msgpack.encode("amount") + msgspec.msgpack.encode(1)
        rest = msgspec.msgpack.encode({key: value for key, value in good.items() if key != "items"})
        return bytes([rest[0] + 1]) + rest[1:] + msgspec.msgpack.encode("items") + b"\x91" + line

    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    JSON, MSGPACK = "application/json", "application/msgpack"
    return [
        ("malformed json", b'{"request_id": ', JSON, 400, "bad_request", None),
        ("not an object", b"[1, 2, 3]", JSON, 422, "validation_failed", None),
        ("invalid utf-8", b'{"request_id": "\xff\xfe"}', JSON, 400, "bad_request", None),
        ("wrong type", replace(visit_type=3), JSON, 422, "validation_failed", "visit_type"),
        ("unknown visit type", replace(visit_type="emergency"), JSON, 422, "validation_failed", "visit_type"),
        ("negative amount", with_item(amount=-1), JSON, 422, "validation_failed", "items[0].amount"),
        ("float amount", with_item(amount=100.5), JSON, 422, "validation_failed", "items[0].amount"),
        ("whole float amount", with_item(amount=100.0), JSON, 422, "validation_failed", "items[0].amount"),
        ("nan", json.dumps(good).replace("10000", "NaN").encode(), JSON, 400, "bad_request", None),
        ("infinity", json.dumps(good).replace("10000", "Infinity").encode(), JSON, 400, "bad_request", None),
        ("1e400", json.dumps(good).replace("10000", "1e400").encode(), JSON, 422, "validation_failed", None),
        ("sub-fen amount", with_item(amount=12.5), JSON, 422, "validation_failed", "items[0].amount"),
        ("amount as a string", with_item(amount="100.00"), JSON, 422, "validation_failed", "items[0].amount"),
        ("duplicate amount", duplicated("amount", in_item=True), JSON, 400, "duplicate_key", "items[0].amount"),
        ("duplicate person_id", duplicated("person_id", in_item=False), JSON, 400, "duplicate_key", "person_id"),
        (
            "duplicate key spelled with an escape",
            json.dumps(good).replace('"visit_type": ', '"visit_type": "inpatient", "visit_\\u0074ype": ', 1).encode(),
            JSON,
            400,
            "duplicate_key",
            "visit_type",
        ),
        ("msgpack duplicate amount", msgpack_with_repeated_amount(), MSGPACK, 400, "duplicate_key", "items[0].amount"),
        ("huge integer", json.dumps(good).replace("10000", "9" * 5000).encode(), JSON, 422, "validation_failed", None),
        ("amount over limit", with_item(amount=10**11), JSON, 422, "validation_failed", "items[0].amount"),
        (
            "total over limit",  # each line within its bound, the bill's total not
            replace(items=[{**good["items"][0], "amount": 10**10}] * 2),
            JSON,
            422,
            "invalid_bill",
            "items",
        ),
        ("unknown field", replace(discount=5), JSON, 422, "validation_failed", "discount"),
        ("unknown item field", with_item(colour="red"), JSON, 422, "validation_failed", "items[0].colour"),
        ("missing field", without("visit_type"), JSON, 422, "validation_failed", "visit_type"),
        ("missing items", without("items"), JSON, 422, "validation_failed", "items"),
        ("empty items", replace(items=[]), JSON, 422, "validation_failed", "items"),
        ("bad category", with_item(category="D"), JSON, 422, "validation_failed", "items[0].category"),
        ("nul in a name", with_item(name="a\u0000b"), JSON, 422, "validation_failed", "items[0].name"),
        ("control character in a code", with_item(code="X\u0007"), JSON, 422, "validation_failed", "items[0].code"),
        ("quantity disagrees", with_item(quantity=3, unit_price=3), JSON, 422, "invalid_bill", "items[0].amount"),
        ("quantity alone", with_item(quantity=2), JSON, 422, "invalid_bill", "items[0].unit_price"),
        ("impossible date", replace(service_date="2026-02-30"), JSON, 422, "validation_failed", "service_date"),
        ("decades past", replace(service_date="1990-06-01"), JSON, 422, "no_policy_in_force", "service_date"),
        (
            "next week",
            replace(service_date=(today + dt.timedelta(days=7)).isoformat()),
            JSON,
            422,
            "service_date_in_future",
            "service_date",
        ),
        ("far future", replace(service_date="2999-01-01"), JSON, 422, "service_date_in_future", "service_date"),
        ("year zero", replace(service_date="0000-01-01"), JSON, 422, "validation_failed", "service_date"),
        ("not a date", replace(service_date="01/05/2026"), JSON, 422, "validation_failed", "service_date"),
        ("bad request id", replace(request_id="has spaces"), JSON, 422, "validation_failed", "request_id"),
        ("too many lines", replace(items=[good["items"][0]] * (MAX_LINES + 1)), JSON, 413, "too_many_lines", "items"),
        ("10,000 lines", replace(items=[good["items"][0]] * 10_000), JSON, 413, "too_many_lines", "items"),
        ("oversized body", b'{"request_id": "' + b"x" * (2 * 1024 * 1024) + b'"}', JSON, 413, "body_too_large", None),
        ("wrong content type", json.dumps(good).encode(), "text/plain", 415, "unsupported_media_type", None),
        (
            "form content type",
            b"request_id=r-1",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
            None,
        ),
        ("json as msgpack", json.dumps(good).encode(), MSGPACK, 422, "validation_failed", None),  # reads as 123
        ("msgpack as json", msgspec.msgpack.encode(good), JSON, 400, "bad_request", None),
        (
            "invalid utf-8 in msgpack",
            msgspec.msgpack.encode(good).replace(b"ITEM-0", b"ITEM\xff0"),
            MSGPACK,
            400,
            "bad_request",
            None,
        ),
        ("garbage msgpack", b"\xc1\xc1\xc1", MSGPACK, 400, "bad_request", None),
        (
            "msgpack float",
            msgspec.msgpack.encode({**good, "items": [{**good["items"][0], "amount": 1.5}]}),
            "application/msgpack",
            422,
            "validation_failed",
            "items[0].amount",
        ),
    ]


async def test_bad_input_is_a_4xx_problem_and_writes_nothing(client, pool, person):
    before = await row_counts(pool)
    for name, body, content_type, status, code, field in _cases(person):
        data = io.BytesIO(body) if len(body) > 1_000_000 else body  # aiohttp warns on large raw bytes
        response = await client.post("/v1/settlements", data=data, headers={**COUNTY, "Content-Type": content_type})
        assert response.content_type == "application/problem+json", name
        problem = await response.json()
        assert (response.status, problem["code"]) == (status, code), (name, problem)
        assert problem["status"] == status and problem["title"] and problem["detail"] and problem["request_id"]
        if field is not None:
            assert problem.get("field") == field, (name, problem)
        assert person not in json.dumps(problem), name
    assert await row_counts(pool) == before


async def test_bad_input_on_other_routes(client, pool, person):
    before = await row_counts(pool)
    checks = [
        ("POST", "/v1/settlements/not-a-uuid/reversal", {"request_id": "r"}, 404, "settlement_not_found"),
        (
            "POST",
            "/v1/settlements/00000000-0000-0000-0000-000000000000/reversal",
            {"request_id": "r"},
            404,
            "settlement_not_found",
        ),
        ("POST", "/v1/eligibility", {"person_id": "123"}, 422, "invalid_national_id"),
        ("POST", "/v1/eligibility", {"person_id": person, "extra": 1}, 422, "validation_failed"),
        ("GET", "/v1/settlements/00000000-0000-0000-0000-000000000000", None, 404, "settlement_not_found"),
        ("DELETE", "/v1/settlements", None, 405, "method_not_allowed"),
        ("GET", "/v2/anything", None, 404, "not_found"),
    ]
    for method, path, body, status, code in checks:
        response = await client.request(method, path, json=body, headers=COUNTY)
        problem = await response.json()
        assert (response.status, problem["code"]) == (status, code), (path, problem)
    assert await row_counts(pool) == before


async def test_an_unknown_report_format_is_refused_not_answered_as_json(client):
    for path in ("/v1/finance/daily?format=cvs", "/v1/finance/stats?format=xml", "/v1/registry/stats?format=pdf"):
        response = await client.get(path, headers={"X-Terminal-Id": "finance-1"})
        problem = await response.json()
        assert (response.status, problem["code"], problem["field"]) == (422, "validation_failed", "format"), path
    response = await client.get("/v1/finance/daily?format=csv", headers={"X-Terminal-Id": "finance-1"})
    assert response.status == 200 and response.content_type == "text/csv"


async def test_a_report_date_is_yyyy_mm_dd_and_nothing_else(client):
    """As /openapi.json says: an empty value, a basic-format or ISO week date is refused, naming the parameter."""
    finance = {"X-Terminal-Id": "finance-1"}
    for path, name in (
        ("/v1/finance/daily?date=", "date"),
        ("/v1/finance/daily?date=20260501", "date"),
        ("/v1/finance/daily?date=2026-W18-5", "date"),
        ("/v1/finance/daily?date=2026-02-30", "date"),
        ("/v1/finance/daily?date=" + urllib.parse.quote("٢٠٢٦-٠٥-٠١"), "date"),  # Arabic-Indic digits
        ("/v1/finance/stats?from=2026-05-01&to=", "to"),
        ("/v1/finance/stats?from=20260501", "from"),
        ("/v1/registry/stats?date=2026-05-01&to=20260531", "to"),
        ("/v1/registry/stats?from=", "from"),
        ("/v1/registry/stats?date=2026-W18", "date"),
    ):
        response = await client.get(path, headers=finance)
        problem = await response.json()
        assert (response.status, problem.get("code"), problem.get("field")) == (422, "validation_failed", name), path
    for path in ("/v1/finance/daily?date=2026-05-01", "/v1/finance/stats?from=2026-05-01&to=2026-05-31"):
        assert (await client.get(path, headers=finance)).status == 200, path


async def test_a_control_character_in_a_reconciliation_clinic_is_refused_not_a_500(client):
    """PostgreSQL cannot store NUL: the list's clinic_id is held to the same text rule as every other clinic_id."""
    for clinic_id in ("\x00", "C001\x00", "C\x1b[2J"):
        response = await client.post(
            "/v1/finance/reconciliation",
            json={"date": "2026-02-06", "clinic_id": clinic_id, "settlements": []},
            headers={"X-Terminal-Id": "finance-1"},
        )
        problem = await response.json()
        assert (response.status, problem["code"], problem.get("field")) == (422, "validation_failed", "clinic_id")
