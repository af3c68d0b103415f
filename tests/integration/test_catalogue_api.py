"""The item catalogue over HTTP: a gateway with catalogue versions in its database classifies every bill
line by the version in force on the service date, answers the four buckets per line and in total,
refuses a category the catalogue disagrees with, looks codes up for eligibility and quotes, and picks up
a version imported while it runs (DESIGN Part 2, "The item catalogue").

Figures are hand-computed beside each assertion; money is int fen (``Y`` is one yuan).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from adapters.catalogue_files import CatalogueRow
from adapters.catalogue_store import import_catalogue
from tests.integration.conftest import COUNTY, SignedClient, own_gateway, register, worked_example_settled

pytestmark = pytest.mark.integration

Y = 100
JANUARY = dt.date(2026, 1, 1)
JULY = dt.date(2026, 7, 1)
SEPTEMBER = dt.date(2026, 9, 1)

# code: (category, own B share in ppm, price cap in fen)
VERSION_1 = {
    "DRUG-A": ("A", None, None),
    "DRUG-B": ("B", None, None),
    "DRUG-B20": ("B", 200_000, None),
    "STENT": ("B", None, 6_000 * Y),
    "ROOM-C": ("C", None, None),
    "TEST-X": ("A", None, 120 * Y),
}
# From July the test is class B with a lower cap; from September it is class A again, uncapped.
VERSION_2 = VERSION_1 | {"TEST-X": ("B", None, 100 * Y)}
VERSION_3 = VERSION_1 | {"TEST-X": ("A", None, None)}


def rows(version: dict[str, tuple[str, int | None, int | None]]) -> list[CatalogueRow]:
    return [
        CatalogueRow(line=line, code=code, name=code, category=category, self_pay_share=share, unit="", price_cap=cap)  # type: ignore[arg-type]
        for line, (code, (category, share, cap)) in enumerate(version.items(), start=2)
    ]


async def imported(connection: asyncpg.Connection, day: dt.date, version: dict[str, Any]) -> None:
    await import_catalogue(
        connection, rows(version), effective_from=day, source=f"catalogue-{day}.csv",
        file_sha256=hashlib.sha256(day.isoformat().encode()).hexdigest(), actor="test",
    )  # fmt: skip


async def two_versions(connection: asyncpg.Connection) -> None:
    await imported(connection, JANUARY, VERSION_1)
    await imported(connection, JULY, VERSION_2)


Gateway = tuple[SignedClient, asyncpg.Pool, str]


@pytest.fixture(scope="module")
async def gateway(database_url: str, settings: Any) -> AsyncIterator[Gateway]:
    async with own_gateway(database_url, settings, prepare=two_versions) as running:
        yield running


def line(code: str, amount: int, category: str | None = None, quantity: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "name": code, "amount": amount}
    if category is not None:
        out["category"] = category
    if quantity is not None:
        out |= {"quantity": quantity, "unit_price": amount // quantity}
    return out


def bill(
    person: str, *lines: dict[str, Any], day: dt.date = dt.date(2026, 5, 12), request_id: str = ""
) -> dict[str, Any]:
    return {
        "request_id": request_id or f"cat-{time.monotonic_ns()}",
        "clinic_id": "C001",
        "person_id": person,
        "visit_type": "outpatient",
        "service_date": day.isoformat(),
        "items": list(lines),
    }


def buckets(out: dict[str, Any]) -> tuple[int, int, int, int]:
    return out["not_covered"], out["over_limit"], out["self_pay_first"], out["eligible"]


async def test_every_line_is_split_into_its_four_buckets_by_the_catalogue(gateway: Gateway) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements",
        json=bill(
            person,
            line("DRUG-A", 100 * Y),  # no category sent: the catalogue's A; all eligible
            line("DRUG-B20", 1_000 * Y, "B"),  # own share 0.20: 200.00 first, 800.00 eligible
            line("STENT", 9 * 6_500 * Y, quantity=9),  # 9 × 500.00 over the cap; 54,000.00 × 0.10 first
            line("HERBAL-X", 80 * Y, "A"),  # not in the catalogue: paid in full
            line("ROOM-C", 300 * Y),  # class C: paid in full
        ),
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()
    answer = await response.json()
    assert [buckets(out) for out in answer["lines"]] == [
        (0, 0, 0, 100 * Y),
        (0, 0, 200 * Y, 800 * Y),
        (0, 4_500 * Y, 5_400 * Y, 48_600 * Y),
        (80 * Y, 0, 0, 0),
        (300 * Y, 0, 0, 0),
    ]
    assert [out["category"] for out in answer["lines"]] == ["A", "B", "B", "C", "C"]
    assert [out["notice"] for out in answer["lines"]] == [None, None, None, "not_in_catalogue", None]
    # 59,980.00 = 380.00 fully self-pay + 4,500.00 over the cap + 5,600.00 first + 49,500.00 eligible
    assert answer["total"] == 59_980 * Y
    assert buckets(answer) == (380 * Y, 4_500 * Y, 5_600 * Y, 49_500 * Y)
    assert answer["catalogue_version"] == "2026-01-01"
    assert any(warning["code"] == "not_in_catalogue" and warning["line"] == 3 for warning in answer["warnings"])
    assert sum(payer["amount"] for payer in answer["payers"]) + answer["out_of_pocket"] == answer["total"]

    async with pool.acquire() as connection:
        stored = await connection.fetchrow(
            "SELECT eligible, self_pay_first, over_limit FROM settlements WHERE settlement_id = $1",
            answer["settlement_id"],
        )
    assert tuple(stored) == (49_500 * Y, 5_600 * Y, 4_500 * Y)
    again = await client.get(f"/v1/settlements/{answer['settlement_id']}", headers=COUNTY)
    assert buckets(await again.json()) == buckets(answer)


async def test_a_category_the_catalogue_disagrees_with_is_refused_and_nothing_is_written(gateway: Gateway) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    async with pool.acquire() as connection:
        before = await connection.fetchval("SELECT count(*) FROM settlements")
    response = await client.post(
        "/v1/settlements", json=bill(person, line("DRUG-A", 100 * Y, "A"), line("DRUG-B", 100 * Y, "A")), headers=COUNTY
    )
    assert response.status == 422
    problem = await response.json()
    assert (problem["code"], problem["field"]) == ("category_mismatch", "items[1].category")
    assert "category B" in problem["detail"]
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM settlements") == before


async def test_a_capped_item_without_its_unit_price_is_refused(gateway: Gateway) -> None:
    client, _, _ = gateway
    person = await register(client, ("insurance", "resident"))
    response = await client.post("/v1/settlements", json=bill(person, line("STENT", 6_000 * Y)), headers=COUNTY)
    assert response.status == 422
    problem = await response.json()
    assert (problem["code"], problem["field"]) == ("unit_price_required", "items[0].unit_price")


async def test_a_version_takes_effect_on_its_date_and_not_the_day_before(gateway: Gateway) -> None:
    client, _, _ = gateway
    person = await register(client, ("insurance", "resident"))
    two_tests = line("TEST-X", 2 * 110 * Y, quantity=2)
    before = await (
        await client.post(
            "/v1/settlements", json=bill(person, two_tests, day=JULY - dt.timedelta(days=1)), headers=COUNTY
        )
    ).json()
    # June 30: class A capped at 120.00, so 2 × 110.00 is all eligible.
    assert (buckets(before["lines"][0]), before["catalogue_version"]) == ((0, 0, 0, 220 * Y), "2026-01-01")
    after = await (await client.post("/v1/settlements", json=bill(person, two_tests, day=JULY), headers=COUNTY)).json()
    # July 1: class B capped at 100.00: 2 × 10.00 over; 200.00 × 0.10 first; 180.00 eligible.
    assert (buckets(after["lines"][0]), after["catalogue_version"]) == ((0, 20 * Y, 20 * Y, 180 * Y), "2026-07-01")


async def test_a_quote_says_which_lines_are_not_covered(gateway: Gateway) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    async with pool.acquire() as connection:
        before = await connection.fetchval("SELECT count(*) FROM settlements")
    response = await client.post(
        "/v1/quotes", json=bill(person, line("DRUG-A", 50 * Y), line("UNKNOWN-1", 30 * Y), line("UNKNOWN-2", 20 * Y)),
        headers=COUNTY,
    )  # fmt: skip
    assert response.status == 200, await response.text()
    quote = await response.json()
    assert [out["notice"] for out in quote["lines"]] == [None, "not_in_catalogue", "not_in_catalogue"]
    assert sorted(warning["line"] for warning in quote["warnings"] if warning["code"] == "not_in_catalogue") == [1, 2]
    assert quote["not_covered"] == 50 * Y
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM settlements") == before


async def test_eligibility_looks_codes_up_in_the_catalogue_in_force(gateway: Gateway) -> None:
    client, _, _ = gateway
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/eligibility",
        json={"person_id": person, "service_date": "2026-07-15", "codes": ["TEST-X", "DRUG-B20", "NOPE"]},
        headers=COUNTY,
    )
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["catalogue_version"] == "2026-07-01"
    assert answer["items"] == [
        {"code": "TEST-X", "listed": True, "category": "B", "self_pay_share": "0.10", "price_cap": 100 * Y},
        {"code": "DRUG-B20", "listed": True, "category": "B", "self_pay_share": "0.20", "price_cap": None},
        {"code": "NOPE", "listed": False, "category": None, "self_pay_share": None, "price_cap": None},
    ]


async def test_a_version_imported_while_the_gateway_runs_is_used_without_a_restart(gateway: Gateway) -> None:
    client, pool, _ = gateway
    person = await register(client, ("insurance", "resident"))
    day = SEPTEMBER + dt.timedelta(days=14)
    first = bill(person, line("TEST-X", 2 * 110 * Y, quantity=2), day=day, request_id="cat-retry-1")
    settled = await (await client.post("/v1/settlements", json=first, headers=COUNTY)).json()
    assert settled["catalogue_version"] == "2026-07-01"

    async with pool.acquire() as connection:
        await imported(connection, SEPTEMBER, VERSION_3)
    # The gateway polls for new versions every few seconds; wait for it, within a bound.
    deadline = time.monotonic() + 60
    version = None
    while time.monotonic() < deadline:
        response = await client.post(
            "/v1/eligibility", json={"person_id": person, "service_date": day.isoformat(), "codes": ["TEST-X"]},
            headers=COUNTY,
        )  # fmt: skip
        answer = await response.json()
        version = answer["catalogue_version"]
        if version == "2026-09-01":
            break
        await asyncio.sleep(0.1)
    assert version == "2026-09-01"
    assert answer["items"][0]["category"] == "A"

    # A new bill is settled under the new version; the retry of the earlier one gets its first answer.
    now = await (
        await client.post(
            "/v1/settlements", json=bill(person, line("TEST-X", 2 * 110 * Y, quantity=2), day=day), headers=COUNTY
        )
    ).json()
    assert (buckets(now["lines"][0]), now["catalogue_version"]) == ((0, 0, 0, 220 * Y), "2026-09-01")
    retry = await client.post("/v1/settlements", json=first, headers=COUNTY)
    assert retry.status == 200
    replayed = await retry.json()
    assert replayed["replayed"] is True
    assert (replayed["settlement_id"], buckets(replayed["lines"][0])) == (
        settled["settlement_id"],
        (0, 20 * Y, 20 * Y, 180 * Y),
    )


async def test_the_demo_with_its_sample_catalogue_settles_the_worked_example_as_before(
    database_url: str, settings: Any
) -> None:
    async with worked_example_settled(database_url, settings) as (_, answer):
        # The README's figures for this bill, which were worked out before the catalogue.
        assert answer["catalogue_version"] == "2026-01-01"
        assert (answer["insurance"], answer["veteran_subsidy"], answer["hardship_aid"], answer["out_of_pocket"]) == (
            1_275_000, 291_000, 135_800, 298_200,
        )  # fmt: skip
        assert buckets(answer) == (200_000, 0, 40_000, 1_760_000)
