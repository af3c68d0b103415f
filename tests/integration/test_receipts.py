"""The patient receipt (结算单): HTML and narrow printer text, both languages, clinic scoping."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import asyncpg
import pytest

from gateway.app_keys import service_key
from gateway.http.handlers.receipts import SHORT_DIGITS, TEXT_WIDTH, columns, prefix_range, receipt_number, wrap
from tests.integration.conftest import COUNTY, VILLAGE, bill, register, worked_example_settled

pytestmark = pytest.mark.integration

WORKED_ITEMS = (("A", 1_400_000), ("B", 400_000), ("C", 200_000))
FINANCE = {"X-Terminal-Id": "finance-1"}
WORKED_AMOUNTS = ("12,750.00", "2,910.00", "1,358.00", "2,982.00")


async def worked_example(client) -> dict:
    person = await register(
        client,
        ("insurance", "resident"),
        ("hardship_aid", "minimum_allowance"),
        ("veteran_subsidy", "priority_care"),
    )
    body = bill(person, *WORKED_ITEMS)
    body["items"][0]["name"] = "<script>alert(1)</script> 住院床位费"
    response = await client.post("/v1/settlements", json=body, headers=COUNTY)
    assert response.status == 201, await response.text()
    return await response.json()


async def receipt(client, settlement_id: str, query: str = "", headers=COUNTY) -> tuple[int, str, str]:
    response = await client.get(f"/v1/settlements/{settlement_id}/receipt{query}", headers=headers)
    return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_worked_example_receipt_in_both_languages_and_forms(client):
    settled = await worked_example(client)
    settlement_id = settled["settlement_id"]
    for lang in ("zh", "en"):
        for form in ("html", "text"):
            status, content_type, text = await receipt(client, settlement_id, f"?lang={lang}&format={form}")
            assert status == 200, text
            assert content_type.startswith("text/html" if form == "html" else "text/plain")
            for amount in WORKED_AMOUNTS:
                assert amount in text, (lang, form, amount)
            assert "20,000.00" in text and "17,600.00" in text  # total and eligible
            assert "14,000.00" in text and "4,000.00" in text and "2,000.00" in text  # the items
    status, _, page = await receipt(client, settlement_id)  # defaults: Chinese HTML
    assert status == 200
    assert "医疗费用结算单" in page and "县级医院" in page and "个人自付" in page
    assert 'id="insurance">12,750.00<' in page and 'id="veteran_subsidy">2,910.00<' in page
    assert 'id="hardship_aid">1,358.00<' in page and 'id="out_of_pocket">2,982.00<' in page
    # The four buckets under the items: C fully self-pay, nothing over a cap, B's 10 %, the eligible rest.
    assert 'id="bucket-not_covered">2,000.00<' in page and 'id="bucket-over_limit">0.00<' in page
    assert 'id="bucket-self_pay_first">400.00<' in page and 'id="bucket-eligible">17,600.00<' in page
    assert "全自费" in page and "超限价自付" in page and "先行自付" in page
    # The rule each payer applied, from the engine's trace.
    assert "4,850.00 × 60% = 2,910.00" in page and "1,940.00 × 70% = 1,358.00" in page
    assert "起付线 600.00，本次计入 600.00" in page
    # Text is escaped; the masked ID is shown and no raw one.
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert settled["person"] in page
    assert "<link" not in page and "src=" not in page  # no external assets
    status, _, english = await receipt(client, settlement_id, "?lang=en")
    assert "Medical settlement receipt" in english and "county hospital" in english and "You pay" in english
    assert "REVERSED" not in english


class _ItemRows(HTMLParser):
    """The cells of each row of the receipt's item table (the table after the "items" heading)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._tables_seen = 0
        self._in_items = self._in_body = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._tables_seen += 1
            self._in_items = self._tables_seen == 2  # the first table is the header block
        elif tag == "tbody" and self._in_items:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_items = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


async def test_lines_sharing_a_code_each_print_their_own_name_quantity_and_amount(client):
    """Two strengths of one drug billed under one code: each line is printed as it was billed."""
    person = await register(client, ("insurance", "resident"))
    body = bill(person, ("A", 0))
    body["items"] = [
        {
            "code": "DRUG-001",
            "name": "Ceftriaxone 1 g",
            "category": "A",
            "amount": 14_000,
            "quantity": 2,
            "unit_price": 7_000,
        },
        {
            "code": "DRUG-001",
            "name": "Ceftriaxone 2 g",
            "category": "A",
            "amount": 36_000,
            "quantity": 3,
            "unit_price": 12_000,
        },
        {"code": "SVC-003", "name": "Ward round", "category": "C", "amount": 5_000},
    ]
    response = await client.post("/v1/settlements", json=body, headers=COUNTY)
    assert response.status == 201, await response.text()
    settlement_id = (await response.json())["settlement_id"]

    status, _, page = await receipt(client, settlement_id, "?lang=en")
    assert status == 200, page
    parser = _ItemRows()
    parser.feed(page)
    # Each line as billed, then its four buckets: fully self-pay, over the cap, self-pay first, eligible.
    assert parser.rows == [
        ["DRUG-001", "Ceftriaxone 1 g", "A", "2 × 70.00", "140.00", "0.00", "0.00", "0.00", "140.00"],
        ["DRUG-001", "Ceftriaxone 2 g", "A", "3 × 120.00", "360.00", "0.00", "0.00", "0.00", "360.00"],
        ["SVC-003", "Ward round", "C (self-pay)", "", "50.00", "50.00", "0.00", "0.00", "0.00"],
    ]

    status, _, text = await receipt(client, settlement_id, "?lang=en&format=text")
    assert status == 200, text
    lines = text.splitlines()
    first, second = lines.index("DRUG-001 Ceftriaxone 1 g"), lines.index("DRUG-001 Ceftriaxone 2 g")
    assert first < second
    assert lines[first + 1].split() == ["A", "2", "×", "70.00", "140.00"]
    assert lines[second + 1].split() == ["A", "3", "×", "120.00", "360.00"]
    assert lines[second + 2] == "SVC-003 Ward round"  # a line wholly in scope prints no breakdown
    assert lines[second + 4].split() == ["Fully", "self-pay", "50.00"]  # the C line's does
    assert not [line for line in lines if columns(line) > TEXT_WIDTH]


async def test_text_receipt_fits_a_narrow_printer(client):
    settled = await worked_example(client)
    for lang in ("zh", "en"):
        status, _, text = await receipt(client, settled["settlement_id"], f"?lang={lang}&format=text")
        assert status == 200
        lines = text.splitlines()
        assert len(lines) > 10
        too_wide = [line for line in lines if columns(line) > TEXT_WIDTH]
        assert not too_wide, too_wide
    assert columns("医保ab") == 6
    assert all(columns(line) <= 10 for line in wrap("基本医疗保险支付 12750.00 元 verylongwordthatneedscutting", 10))


async def test_reversed_settlement_is_marked(client):
    settled = await worked_example(client)
    response = await client.post(
        f"/v1/settlements/{settled['settlement_id']}/reversal", json={"request_id": "rev-receipt-1"}, headers=COUNTY
    )
    assert response.status == 201, await response.text()
    _, _, page = await receipt(client, settled["settlement_id"], "?lang=en")
    assert 'id="reversed"' in page and "REVERSED" in page
    _, _, text = await receipt(client, settled["settlement_id"], "?format=text")
    assert "已冲正" in text


async def test_receipt_scoping_and_roles(client):
    settled = await worked_example(client)
    settlement_id = settled["settlement_id"]
    # Another clinic's terminal learns nothing: not found, as for the JSON read.
    status, _, body = await receipt(client, settlement_id, headers=VILLAGE)
    assert status == 404 and "settlement_not_found" in body
    # Finance reads any clinic's receipt; admin may not; unsigned is refused.
    assert (await receipt(client, settlement_id, headers=FINANCE))[0] == 200
    assert (await receipt(client, settlement_id, headers={"X-Terminal-Id": "admin-1"}))[0] == 403
    assert (await client.get(f"/v1/settlements/{settlement_id}/receipt")).status == 401
    assert (await receipt(client, "00000000-0000-0000-0000-000000000000"))[0] == 404
    assert (await receipt(client, "not-a-uuid"))[0] == 404
    status, _, body = await receipt(client, settlement_id, "?lang=fr")
    assert status == 422 and "lang" in body
    assert (await receipt(client, settlement_id, "?format=pdf"))[0] == 422


# ---------------------------------------------------------------- the demo's worked example, as a patient reads it


@pytest.fixture(scope="module")
async def demo_receipts(database_url: str, settings: Any) -> AsyncIterator[dict[tuple[str, str], str]]:
    """The README's request (samples/bill-worked-example.json, the demo's 李娜 (Li Na)) settled on a county of its
    own with the sample item catalogue, as `make run` serves it: its receipt in both languages and forms."""

    async with worked_example_settled(database_url, settings) as (client, answer):
        settlement_id = answer["settlement_id"]
        forms = {}
        for lang in ("zh", "en"):
            for form in ("html", "text"):
                status, _, body = await receipt(client, settlement_id, f"?lang={lang}&format={form}")
                assert status == 200, body
                forms[lang, form] = body
        yield forms


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("form", ["html", "text"])
async def test_the_worked_example_receipt_reads_as_a_patient_would_choose(demo_receipts, lang, form):
    body = demo_receipts[lang, form]
    words = " ".join(
        body.split()
    )  # the text receipt wraps sentences at spaces    # Each line with its quantity and unit price.
    assert "200 × 70.00" in body and "1 × 4,000.00" in body and "10 × 200.00" in body
    # The patient's share as its parts: 丙类 fully self-pay, B's self-pay first, and what the funds left.
    assert "2,000.00 + 400.00 + 582.00 = 2,982.00" in words
    assert "贰万元整" in body and "贰仟玖佰捌拾贰元整" in body  # the total and the patient's share in 大写
    assert "李娜" in body  # the name as registered, in Chinese
    assert "410102196003020026" not in body  # and never the raw ID number
    # Each payer explains itself in plain words, rates as percentages.
    deductible = (
        "起付线 600.00，本次计入 600.00" if lang == "zh" else "deductible 600.00, of which 600.00 met by this bill"
    )
    assert deductible in words
    assert "4,850.00 × 60% = 2,910.00" in body and "1,940.00 × 70% = 1,358.00" in body
    body.encode("gbk")  # every receipt, not only the printer's text, is printable on a GBK printer
    assert "−" not in body
    if form == "text":
        lines = body.splitlines()
        assert not [line for line in lines if columns(line) > TEXT_WIDTH]
        number = re.search(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", body)
        assert number is not None and len(number.group()) == 14  # fits where the 36-character id wraps
    else:
        assert '<div class="qr" id="qr"><svg' in body and 'id="receipt-number"' in body
        assert 'id="out_of_pocket">2,982.00<' in body and 'id="part-within">582.00<' in body


async def test_the_chinese_receipt_names_programmes_and_levels_in_chinese(demo_receipts):
    for form in ("html", "text"):
        body = demo_receipts["zh", form]
        assert "县级医院" in body and "低保对象" in body and "优抚对象" in body
        codes = re.findall(r"\((?:minimum_allowance|priority_care|county|resident|[a-z]+_[a-z_]+)\)", body)
        assert codes == [], codes
        assert not re.search(r"\b(?:minimum_allowance|priority_care|county|inpatient)\b", body)
    assert "minimum allowance" in " ".join(demo_receipts["en", "text"].split())


async def test_a_payer_that_does_not_apply_says_why(client):
    """Insurance for a person who is not insured: the receipt says so in words, not a bare 0.00."""
    person = await register(client, ("hardship_aid", "destitute"))
    response = await client.post("/v1/settlements", json=bill(person, ("A", 50_000)), headers=COUNTY)
    assert response.status == 201, await response.text()
    settlement_id = (await response.json())["settlement_id"]
    _, _, zh_text = await receipt(client, settlement_id, "?format=text")
    _, _, en_page = await receipt(client, settlement_id, "?lang=en")
    assert "未参保，不支付" in zh_text
    assert "not insured: pays nothing" in en_page
    zh_text.encode("gbk")


async def test_an_outpatient_deductible_met_in_part_explains_itself(client):
    """A yearly outpatient deductible of 200.00 of which this bill meets 141.20: not "起付线 141.20"."""
    person = await register(client, ("insurance", "resident"))
    body = bill(person, ("A", 14_120), clinic_id="V001", visit_type="outpatient")
    response = await client.post("/v1/settlements", json=body, headers=VILLAGE)
    assert response.status == 201, await response.text()
    settlement_id = (await response.json())["settlement_id"]
    _, _, zh_text = await receipt(client, settlement_id, "?format=text", headers=VILLAGE)
    _, _, en_page = await receipt(client, settlement_id, "?lang=en", headers=VILLAGE)
    assert "起付线 200.00，本次计入 141.20" in " ".join(zh_text.split())
    assert "deductible 200.00, of which 141.20 met by this bill" in en_page


async def test_the_short_number_is_checked_against_the_ids_postgresql_holds(client, pool: asyncpg.Pool):
    """A prefix of an id is a range in PostgreSQL's order of UUIDs (byte by byte), which is how the receipt
    finds out whether another settlement shares its short number."""
    settled = await worked_example(client)
    settlement_id = uuid.UUID(settled["settlement_id"])
    store = client.client.server.app[service_key].store
    assert await store.settlements_in_range(*prefix_range(settlement_id, SHORT_DIGITS)) == 1
    async with pool.acquire() as connection:
        ids = [row["settlement_id"] for row in await connection.fetch("SELECT settlement_id FROM settlements")]
    for digit in "0123456789abcdef":
        low, high = prefix_range(uuid.UUID(digit * 32), 1)
        expected = sum(stored.hex.startswith(digit) for stored in ids)
        assert await store.settlements_in_range(low, high) == min(2, expected), digit
    _, _, text = await receipt(client, settled["settlement_id"], "?format=text")
    assert receipt_number(settlement_id) in text
