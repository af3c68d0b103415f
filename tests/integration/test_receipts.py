"""The patient receipt (结算单): HTML and narrow printer text, both languages, clinic scoping."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from gateway.http.handlers.receipts import TEXT_WIDTH, columns, wrap
from tests.integration.conftest import COUNTY, VILLAGE, bill, register

pytestmark = pytest.mark.integration

WORKED_ITEMS = (("A", 1_400_000), ("B", 400_000), ("C", 200_000))
FINANCE = {"X-Terminal-Id": "finance-1"}
WORKED_AMOUNTS = ("12750.00", "2910.00", "1358.00", "2982.00")


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
            assert "20000.00" in text and "17600.00" in text  # total and eligible
            assert "14000.00" in text and "4000.00" in text and "2000.00" in text  # the items
    status, _, page = await receipt(client, settlement_id)  # defaults: Chinese HTML
    assert status == 200
    assert "医疗费用结算单" in page and "县级医院" in page and "个人自付" in page
    assert 'id="insurance">12750.00<' in page and 'id="veteran_subsidy">2910.00<' in page
    assert 'id="hardship_aid">1358.00<' in page and 'id="out_of_pocket">2982.00<' in page
    # The four buckets under the items: C fully self-pay, nothing over a cap, B's 10 %, the eligible rest.
    assert 'id="bucket-not_covered">2000.00<' in page and 'id="bucket-over_limit">0.00<' in page
    assert 'id="bucket-self_pay_first">400.00<' in page and 'id="bucket-eligible">17600.00<' in page
    assert "全自费" in page and "超限价自付" in page and "先行自付" in page
    # The rule each payer applied, from the engine's trace.
    assert "4850.00 × 0.60 = 2910.00" in page and "1940.00 × 0.70 = 1358.00" in page
    assert "起付线 600.00" in page
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
