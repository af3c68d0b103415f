"""The four buckets (全自费, 超限价自付, 先行自付, 政策范围内) on receipts, statements, statistics and the dashboard.

A gateway on the default policy over a database of its own (so every figure here is exact): bills are
settled under an item catalogue by the gateway's own service objects (its store, its policy book,
``settlement.decision.decide`` with the catalogue version in force), because the gateway does not load
a catalogue from the database yet. Two bills are made to look as rows settled before migration 0015
do (``self_pay_first`` and ``over_limit`` NULL, the append-only trigger disabled inside the test's
transaction): the reports count what they have outside eligible as ``unsplit``.

Every bucket below is worked out by hand, in fen, from the catalogue and DESIGN Part 2's rules (the
default policy's B share is 10 %).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from adapters.bill_buckets import BUCKET_NAMES
from gateway.app_keys import service_key
from gateway.dashboard.sessions import COOKIE, make_session, session_secret
from gateway.http.handlers.receipts import TEXT_WIDTH, columns
from gateway.service import Service
from settlement.catalogue import Catalogue, CatalogueItem
from settlement.decision import decide
from settlement.models import Bill, LineItem
from settlement.money import format_yuan_grouped
from settlement.ports import NewReversal, NewSettlement, PersonSnapshot, Reversed, SettleKey, Written
from tests.integration.conftest import KEY_ENCRYPTION_KEY, SignedClient, own_gateway, register

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
BUCKETS = ("not_covered", "over_limit", "self_pay_first", "eligible", "unsplit")
SETTLED_ON = dt.date(2026, 3, 18)  # the booking day of every settlement here
REVERSED_LATER_ON = dt.date(2026, 3, 19)
PERIOD = "from=2026-03-16&to=2026-03-17"  # the service dates

CATALOGUE = Catalogue.build(
    [dt.date(2026, 1, 1)],
    [
        ("DRUG-A1", dt.date(2026, 1, 1), CatalogueItem(category="A")),
        ("DRUG-B1", dt.date(2026, 1, 1), CatalogueItem(category="B")),  # the policy's share, 10 %
        ("DRUG-B2", dt.date(2026, 1, 1), CatalogueItem(category="B", self_pay_share=200_000)),  # its own, 20 %
        ("MAT-CAP", dt.date(2026, 1, 1), CatalogueItem(category="A", price_cap=5_000)),  # 50.00 a unit at most
        ("SVC-C", dt.date(2026, 1, 1), CatalogueItem(category="C")),
    ],
)


def item(code: str, amount: int, quantity: int | None = None, unit_price: int | None = None) -> LineItem:
    return LineItem(code=code, name=f"{code} name", amount=amount, quantity=quantity, unit_price=unit_price)


# The receipt's bill, a line in every bucket (195,000 fen):
# DRUG-A1 1,000.00 in scope; DRUG-B2 500.00: 20 % = 100.00 self-pay first, 400.00 in scope; MAT-CAP 3 x 60.00
# over a 50.00 cap: 30.00 over the limit, 150.00 in scope; SVC-C 200.00 fully self-pay; UNKNOWN-9 70.00 not in
# the catalogue, fully self-pay.
EVERY_BUCKET = (
    item("DRUG-A1", 100_000),
    item("DRUG-B2", 50_000),
    item("MAT-CAP", 18_000, quantity=3, unit_price=6_000),
    item("SVC-C", 20_000),
    item("UNKNOWN-9", 7_000),
)
EVERY_BUCKET_LINES = [  # (not_covered, over_limit, self_pay_first, eligible) per line
    (0, 0, 0, 100_000),
    (0, 0, 10_000, 40_000),
    (0, 3_000, 0, 15_000),
    (20_000, 0, 0, 0),
    (7_000, 0, 0, 0),
]

# name: (clinic, visit type, service date, lines or categories, catalogue or not, the five buckets by hand)
BILLS: dict[str, tuple[str, str, dt.date, tuple[LineItem, ...], bool, dict[str, int]]] = {
    "every_bucket": (
        "C003", "inpatient", dt.date(2026, 3, 16), EVERY_BUCKET, True,
        {"not_covered": 27_000, "over_limit": 3_000, "self_pay_first": 10_000, "eligible": 155_000, "unsplit": 0},
    ),
    # DRUG-B1 300.00: 30.00 self-pay first; SVC-C 50.00.
    "b_and_c": (
        "C003", "inpatient", dt.date(2026, 3, 17), (item("DRUG-B1", 30_000), item("SVC-C", 5_000)), True,
        {"not_covered": 5_000, "over_limit": 0, "self_pay_first": 3_000, "eligible": 27_000, "unsplit": 0},
    ),
    # Reversed on the day it was settled.
    "reversed": (
        "C003", "inpatient", dt.date(2026, 3, 16), (item("DRUG-A1", 10_000), item("SVC-C", 2_000)), True,
        {"not_covered": 2_000, "over_limit": 0, "self_pay_first": 0, "eligible": 10_000, "unsplit": 0},
    ),
    # MAT-CAP 2 x 55.00 over the 50.00 cap: 10.00 over the limit; UNKNOWN-9 20.00.
    "over_limit": (
        "T012", "outpatient", dt.date(2026, 3, 16),
        (item("MAT-CAP", 11_000, quantity=2, unit_price=5_500), item("UNKNOWN-9", 2_000)), True,
        {"not_covered": 2_000, "over_limit": 1_000, "self_pay_first": 0, "eligible": 10_000, "unsplit": 0},
    ),
    # Rows as they were before migration 0015, settled on the terminal's categories: A 400.00, B 100.00
    # (10.00 self-pay first, inside the record only), C 50.00. Out of scope: 60.00, not split.
    "old": (
        "T012", "outpatient", dt.date(2026, 3, 17),
        (LineItem(code="X-A", name="a", category="A", amount=40_000),
         LineItem(code="X-B", name="b", category="B", amount=10_000),
         LineItem(code="X-C", name="c", category="C", amount=5_000)), False,
        {"not_covered": 0, "over_limit": 0, "self_pay_first": 0, "eligible": 49_000, "unsplit": 6_000},
    ),
    # Another such row, reversed the next day: A 80.00, C 10.00.
    "old_reversed_later": (
        "T012", "outpatient", dt.date(2026, 3, 17),
        (LineItem(code="X-A", name="a", category="A", amount=8_000),
         LineItem(code="X-C", name="c", category="C", amount=1_000)), False,
        {"not_covered": 0, "over_limit": 0, "self_pay_first": 0, "eligible": 8_000, "unsplit": 1_000},
    ),
}  # fmt: skip
OLD_ROWS = ("old", "old_reversed_later")


def total_of(name: str) -> int:
    return sum(line.amount for line in BILLS[name][3])


def summed(names: list[str]) -> dict[str, int]:
    return {bucket: sum(BILLS[name][5][bucket] for name in names) for bucket in BUCKETS}


County = tuple[SignedClient, asyncpg.Pool, dict[str, uuid.UUID]]


async def settle_under_catalogue(service: Service, client: SignedClient, name: str) -> uuid.UUID:
    """Settle one of ``BILLS`` as the gateway's settle use case does, the catalogue version in force on the
    service date classifying its lines (or, for an old row, the terminal's categories), booked on SETTLED_ON."""
    clinic_id, visit_type, service_date, items, under_catalogue, _ = BILLS[name]
    national_id = await register(client, ("insurance", "resident"))
    person_key, masked = service.person_key(national_id)
    key = SettleKey(
        person_key=person_key, year=service_date.year, terminal_id=f"term-{clinic_id}", request_id=f"bucket-{name}"
    )
    found = await service.store.read_for_settle(key)
    assert isinstance(found, PersonSnapshot), found
    clinic = await service.clinic(clinic_id)
    bill = Bill(clinic_level=clinic.level, visit_type=visit_type, service_date=service_date, items=items)  # type: ignore[arg-type]
    catalogue = CATALOGUE.on(service_date) if under_catalogue else None
    new = NewSettlement(
        key=key,
        settlement_id=uuid.uuid4(),
        clinic_id=clinic_id,
        person=masked,
        items=items,
        decision=decide(bill, service.policy_on(service_date), found.memberships, found.counters, catalogue),
        request_hash=os.urandom(16),
        booked_on=SETTLED_ON,
        created_at=dt.datetime.now(dt.UTC),
        version=found.version,
    )
    assert isinstance(await service.store.write_settlement(new), Written)
    return new.settlement_id


async def reverse(service: Service, pool: asyncpg.Pool, settlement_id: uuid.UUID, booked_on: dt.date) -> None:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT person_key, terminal_id FROM settlements WHERE settlement_id = $1", settlement_id
        )
    new = NewReversal(
        reversal_id=uuid.uuid4(),
        settlement_id=settlement_id,
        person_key=row["person_key"],
        terminal_id=row["terminal_id"],
        request_id=f"rev-{settlement_id.hex}",
        reason="test",
        request_hash=os.urandom(16),
        nonce=None,
        booked_on=booked_on,
        created_at=dt.datetime.now(dt.UTC),
    )
    assert isinstance(await service.store.reverse(new), Reversed)


async def as_before_migration_0015(pool: asyncpg.Pool, settlement_id: uuid.UUID) -> None:
    """Make a settled row look as rows settled before migration 0015 do: no self_pay_first, no over_limit."""
    async with pool.acquire() as connection, connection.transaction():
        # Inside this transaction only: nobody else ever sees the trigger disabled.
        await connection.execute("ALTER TABLE settlements DISABLE TRIGGER settlements_append_only")
        await connection.execute(
            "UPDATE settlements SET self_pay_first = NULL, over_limit = NULL WHERE settlement_id = $1", settlement_id
        )
        await connection.execute("ALTER TABLE settlements ENABLE TRIGGER settlements_append_only")


@pytest.fixture(scope="module")
async def county(database_url: str, settings: Any) -> AsyncIterator[County]:
    """A gateway on the default policy over a database of its own, with every bill of ``BILLS`` settled."""
    async with own_gateway(database_url, settings) as (client, pool, _):
        service = client.client.app[service_key]
        settled = {bill: await settle_under_catalogue(service, client, bill) for bill in BILLS}
        for bill in OLD_ROWS:
            await as_before_migration_0015(pool, settled[bill])
        await reverse(service, pool, settled["reversed"], SETTLED_ON)
        await reverse(service, pool, settled["old_reversed_later"], REVERSED_LATER_ON)
        yield client, pool, settled


async def test_the_rows_hold_the_buckets_and_the_old_ones_hold_none(county: County) -> None:
    _, pool, settled = county
    async with pool.acquire() as connection:
        rows = {
            row["settlement_id"]: row
            for row in await connection.fetch(
                "SELECT settlement_id, total, eligible, self_pay_first, over_limit FROM settlements"
            )
        }
    for name, settlement_id in settled.items():
        row, expected = rows[settlement_id], BILLS[name][5]
        assert row["total"] == total_of(name) == sum(expected.values()), name
        assert row["eligible"] == expected["eligible"], name
        if name in OLD_ROWS:
            assert row["self_pay_first"] is None and row["over_limit"] is None
        else:
            assert (row["self_pay_first"], row["over_limit"]) == (expected["self_pay_first"], expected["over_limit"])


# ---------------------------------------------------------------- the receipt


async def receipt(client: SignedClient, settlement_id: uuid.UUID, query: str) -> str:
    response = await client.get(
        f"/v1/settlements/{settlement_id}/receipt?{query}", headers={"X-Terminal-Id": "term-C003"}
    )
    text = await response.text()
    assert response.status == 200, text
    return text


async def test_the_receipt_shows_each_line_in_its_buckets_and_the_four_totals(county: County) -> None:
    client, _, settled = county
    settlement_id = settled["every_bucket"]
    totals = BILLS["every_bucket"][5]
    for lang in ("zh", "en"):
        page = await receipt(client, settlement_id, f"lang={lang}")
        for index, parts in enumerate(EVERY_BUCKET_LINES):
            row = re.search(rf'<tr data-line="{index}">(.*?)</tr>', page)
            assert row, (lang, index)
            cells = re.findall(r'data-bucket="(\w+)">([\d.,]+)<', row[1])
            assert cells == [
                (bucket, format_yuan_grouped(fen)) for bucket, fen in zip(BUCKETS[:4], parts, strict=True)
            ], (lang, index)
        # The four totals under the items, adding up to the bill's.
        for bucket in BUCKETS[:4]:
            assert f'id="bucket-{bucket}">{format_yuan_grouped(totals[bucket])}<' in page, (lang, bucket)
        assert f'id="items-total">{format_yuan_grouped(195_000)}<' in page
        # The code not in the catalogue says so in words, on its own line's row.
        notices = re.findall(
            r'<tr class="notice" data-line="(\d+)" data-notice="not_in_catalogue"><td[^>]*>([^<]+)<', page
        )
        words = "目录外项目，全额自付" if lang == "zh" else "not in the catalogue: paid in full"
        assert notices == [("4", words)], lang
        # Everything a receipt had: the payers, the patient's share, the policy.
        assert 'id="insurance">' in page and 'id="out_of_pocket">' in page and "default-2026" in page

    text = await receipt(client, settlement_id, "lang=zh&format=text")
    lines = text.splitlines()
    assert not [line for line in lines if columns(line) > TEXT_WIDTH]
    # The capped line: over the limit and in scope; the unknown code: its notice and fully self-pay.
    capped = lines.index("MAT-CAP MAT-CAP name")
    assert [line.split() for line in lines[capped + 1 : capped + 4]] == [
        ["甲类", "3", "×", "60.00", "180.00"],
        ["超限价自付", "30.00"],
        ["政策范围内费用", "150.00"],
    ]
    unknown = lines.index("UNKNOWN-9 UNKNOWN-9 name")
    assert [line.split() for line in lines[unknown + 1 : unknown + 4]] == [
        ["丙类", "70.00"],
        ["目录外项目，全额自付"],
        ["全自费", "70.00"],
    ]
    b_line = lines.index("DRUG-B2 DRUG-B2 name")
    assert [line.split() for line in lines[b_line + 1 : b_line + 4]] == [
        ["乙类", "500.00"],
        ["先行自付", "100.00"],
        ["政策范围内费用", "400.00"],
    ]
    # A line wholly in scope prints no breakdown.
    whole = lines.index("DRUG-A1 DRUG-A1 name")
    assert lines[whole + 2] == "DRUG-B2 DRUG-B2 name"
    # The four totals after the bill's total, in the national answer's order.
    start = next(index for index, line in enumerate(lines) if line.startswith("医疗费用总额"))
    assert [line.split() for line in lines[start : start + 5]] == [
        ["医疗费用总额", "1,950.00"],
        ["全自费", "270.00"],
        ["超限价自付", "30.00"],
        ["先行自付", "100.00"],
        ["政策范围内费用", "1,550.00"],
    ]

    english = (await receipt(client, settlement_id, "lang=en&format=text")).splitlines()
    assert not [line for line in english if columns(line) > TEXT_WIDTH]
    unknown = english.index("UNKNOWN-9 UNKNOWN-9 name")
    assert english[unknown + 2 : unknown + 4] == ["  not in the catalogue: paid in", "  full"]
    assert english[unknown + 4].split() == ["Fully", "self-pay", "70.00"]


# ---------------------------------------------------------------- the daily statement


async def daily(client: SignedClient, day: dt.date, form: str = "json") -> Any:
    response = await client.get(f"/v1/finance/daily?date={day.isoformat()}&format={form}", headers=FINANCE)
    assert response.status == 200, await response.text()
    return await response.json() if form == "json" else (await response.read()).decode("utf-8")


def bucket_block(settled: dict[str, int], reversed_: dict[str, int]) -> dict[str, dict[str, int]]:
    """Each bucket's counts from hand-computed fen: settled and reversed on the day."""
    return {
        bucket: {
            "settlements_count": settled[f"{bucket}_count"],
            "settlements_fen": settled[bucket],
            "reversals_count": reversed_[f"{bucket}_count"],
            "reversals_fen": reversed_[bucket],
            "net_fen": settled[bucket] - reversed_[bucket],
        }
        for bucket in BUCKETS
    }


def day_of(names: list[str]) -> dict[str, int]:
    """The buckets of these bills summed, and how many of them have each bucket non-zero."""
    sums = summed(names)
    counts = {f"{bucket}_count": sum(1 for name in names if BILLS[name][5][bucket]) for bucket in BUCKETS}
    return sums | counts


def adds_up(block: dict[str, Any]) -> None:
    """The buckets add up to the block's bills, reversals and net, to the fen."""
    parts = block["buckets"]
    assert sum(part["settlements_fen"] for part in parts.values()) == block["billed_fen"]
    assert sum(part["reversals_fen"] for part in parts.values()) == block["reversed_fen"]
    assert sum(part["net_fen"] for part in parts.values()) == block["net_fen"]


async def test_the_daily_statement_splits_every_scope_into_the_buckets(county: County) -> None:
    client, _, _ = county
    statement = await daily(client, SETTLED_ON)
    clinics = {block["clinic_id"]: block for block in statement["by_clinic"]}
    assert set(clinics) == {"C003", "T012"}
    county_hospital, township = clinics["C003"], clinics["T012"]
    # C003: three bills settled, one of them reversed the same day.
    assert county_hospital["buckets"] == bucket_block(
        day_of(["every_bucket", "b_and_c", "reversed"]), day_of(["reversed"])
    )
    assert county_hospital["buckets"]["not_covered"]["net_fen"] == 27_000 + 5_000
    assert county_hospital["buckets"]["eligible"]["net_fen"] == 155_000 + 27_000
    assert county_hospital["buckets"]["unsplit"]["settlements_fen"] == 0
    # T012: the over-limit bill and the two old rows, whose out-of-scope part is not split.
    assert township["buckets"] == bucket_block(day_of(["over_limit", *OLD_ROWS]), day_of([]))
    assert township["buckets"]["unsplit"]["net_fen"] == 6_000 + 1_000
    assert township["buckets"]["over_limit"]["net_fen"] == 1_000
    for block in [*statement["by_clinic"], *statement["by_level"], *statement["by_region"], statement["total"]]:
        adds_up(block)
    assert statement["total"]["billed_fen"] == sum(total_of(name) for name in BILLS) == 319_000
    levels = {block["level"]: block for block in statement["by_level"]}
    assert levels["county"]["buckets"] == county_hospital["buckets"]
    assert levels["township"]["buckets"] == township["buckets"]
    # A reversal gives its bill's buckets back.
    (given_back,) = statement["reversals"]
    assert {bucket: given_back[f"{bucket}_fen"] for bucket in BUCKETS} == BILLS["reversed"][5]

    # The next day: only the old row's reversal, its out-of-scope part still not split.
    later = await daily(client, REVERSED_LATER_ON)
    assert later["total"]["buckets"] == bucket_block(day_of([]), day_of(["old_reversed_later"]))
    assert later["total"]["net_fen"] == -9_000
    adds_up(later["total"])
    (old,) = later["reversals"]
    assert (old["eligible_fen"], old["unsplit_fen"], old["not_covered_fen"]) == (8_000, 1_000, 0)

    text = await daily(client, SETTLED_ON, "csv")  # by clinic: a column per bucket, in yuan
    rows = {row["机构编码 Clinic ID"]: row for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))}
    buckets = {bucket: f"{zh}净额 {en} net" for bucket, (zh, en) in BUCKET_NAMES.items()}
    assert [name for name in rows["T012"] if name in buckets.values()] == list(buckets.values())
    assert rows["T012"][buckets["unsplit"]] == "70.00"
    assert rows["T012"][buckets["over_limit"]] == "10.00"
    # A SUM over a column of the file is the day's total: each bill is in one clinic's row only.
    for bucket, name in buckets.items():
        in_yuan = sum(Decimal(row[name]) for row in rows.values())
        assert in_yuan * 100 == statement["total"]["buckets"][bucket]["net_fen"], bucket


# ---------------------------------------------------------------- statistics and the dashboard


async def test_statistics_split_every_group_into_the_buckets(county: County) -> None:
    client, _, _ = county
    standing = [name for name in BILLS if name not in ("reversed", "old_reversed_later")]  # reversed ones left out
    for by in ("level", "region", "month", "category", "tier", "programme"):
        response = await client.get(f"/v1/finance/stats?by={by}&{PERIOD}", headers=FINANCE)
        groups = (await response.json())["groups"]
        assert response.status == 200, groups
        for group in groups:
            assert sum(group[f"{bucket}_fen"] for bucket in BUCKETS) == group["total_fen"], (by, group)
    response = await client.get(f"/v1/finance/stats?by=level&{PERIOD}", headers=FINANCE)
    levels = {group["level"]: group for group in (await response.json())["groups"]}
    for level, names in (("county", ["every_bucket", "b_and_c"]), ("township", ["over_limit", "old"])):
        assert {bucket: levels[level][f"{bucket}_fen"] for bucket in BUCKETS} == summed(names), level
    assert levels["township"]["unsplit_fen"] == 6_000 and levels["county"]["over_limit_fen"] == 3_000
    month = (await (await client.get(f"/v1/finance/stats?by=month&{PERIOD}", headers=FINANCE)).json())["groups"]
    assert [{bucket: group[f"{bucket}_fen"] for bucket in BUCKETS} for group in month] == [summed(standing)]

    response = await client.get(f"/v1/finance/stats?by=level&{PERIOD}&format=csv", headers=FINANCE)
    rows = {
        row["level"]: row
        for row in csv.DictReader(io.StringIO((await response.read()).decode("utf-8").lstrip("\ufeff")))
    }
    assert rows["township"]["unsplit_fen"] == "6000" and rows["county"]["self_pay_first_fen"] == "13000"
    assert rows["county"]["not_covered_fen"] == str(27_000 + 5_000)


async def test_the_dashboard_shows_the_four_buckets(county: County) -> None:
    client, _, _ = county
    finance = client.by_terminal["finance-1"]
    session = make_session(session_secret(KEY_ENCRYPTION_KEY), finance.key_id, int(time.time()) + 300)
    page = await client.client.get("/dashboard?from=2026-03-16&to=2026-03-17", cookies={COOKIE: session})
    text = await page.text()
    assert page.status == 200, text
    section = re.search(r'<section id="buckets"([^>]*)>', text)
    assert section, text[:2000]
    shown = {key.replace("-", "_"): int(value) for key, value in re.findall(r'data-([a-z-]+)="(\d+)"', section[1])}
    standing = summed(["every_bucket", "b_and_c", "over_limit", "old"])
    assert shown == standing and sum(shown.values()) == 298_000
    for bucket, label in (
        ("not-covered", "全自费 fully self-pay"),
        ("over-limit", "超限价自付 over the price cap"),
        ("self-pay-first", "先行自付 self-pay first"),
        ("eligible", "政策范围内 in scope"),
        ("unsplit", "未拆分 not split"),  # shown: the period holds a bill settled before the buckets were kept
    ):
        fen = shown[bucket.replace("-", "_")]
        assert f'<span>{label}</span><b id="bucket-{bucket}">{format_yuan_grouped(fen)}</b>' in text, bucket
    assert 'id="chart-buckets"' in text
    # Per clinic level, each bucket beside the amounts.
    county_row = re.search(r'<tr data-level="county"[^>]*>(.*?)</tr>', text)
    assert county_row
    assert re.findall(r'data-bucket-fen="(\d+)"', county_row[1]) == [
        str(fen) for fen in summed(["every_bucket", "b_and_c"]).values()
    ]
