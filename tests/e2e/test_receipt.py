"""The patient's receipt (结算单) as a browser draws it, in Chinese and in English.

The README's worked example (samples/bill-worked-example.json, the demo's 李娜) is settled on a
county of its own with the sample item catalogue, as ``make run`` serves it, and its receipt is
fetched as a clinic's terminal fetches it (``GET /v1/settlements/{id}/receipt``, signed). Headless
Chromium (tests/e2e/browser.py) opens the page as the clinic's browser would show it before
printing, and the test checks what the patient reads: the share as its parts, 2,000.00 + 400.00 +
582.00 = 2,982.00, the Chinese drawn in a font that has it (not boxes), the amounts lined up on
the right, the QR code drawn, nothing cut off. The screenshots are saved under the test's tmp
path and their paths printed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Browser, assert_chinese_is_drawn
from tests.integration.conftest import COUNTY, worked_example_settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PARTS = "2,000.00 + 400.00 + 582.00 = 2,982.00"


@pytest.fixture(scope="module")
async def worked_receipts(database_url: str, settings: Any) -> AsyncIterator[dict[str, str]]:
    """The worked example's receipt page in each language, as the gateway serves it."""

    async with worked_example_settled(database_url, settings) as (client, answer):
        settlement_id = answer["settlement_id"]
        pages = {}
        for lang in ("zh", "en"):
            response = await client.get(f"/v1/settlements/{settlement_id}/receipt?lang={lang}", headers=COUNTY)
            assert response.status == 200 and response.content_type == "text/html"
            pages[lang] = await response.text()
        yield pages


@pytest.mark.parametrize(
    ("lang", "title", "clinic"),
    [("zh", "医疗费用结算单", "示范县人民医院"), ("en", "Medical settlement receipt", "示范县人民医院")],
)
async def test_the_worked_example_receipt_in_a_browser(
    browser: Browser, worked_receipts: dict[str, str], tmp_path: Path, lang: str, title: str, clinic: str
) -> None:
    document = tmp_path / f"receipt-{lang}.html"
    document.write_text(worked_receipts[lang], encoding="utf-8")
    page = await browser.page(width=800, height=1000)
    await page.goto(document.as_uri())
    await page.wait_for("#out_of_pocket")
    await page.screenshot(tmp_path / f"receipt-{lang}.png")  # first: a failure below still leaves the picture
    assert await page.text("h1") == title
    # What the patient reads: the share as its parts, and every figure of the worked example.
    assert PARTS in " ".join((await page.text("#parts-sum")).split())
    for key, amount in (
        ("total", "20,000.00"),
        ("insurance", "12,750.00"),
        ("veteran_subsidy", "2,910.00"),
        ("hardship_aid", "1,358.00"),
        ("out_of_pocket", "2,982.00"),
        ("part-not_covered", "2,000.00"),
        ("part-self_pay_first", "400.00"),
        ("part-within", "582.00"),
    ):
        assert await page.text(f"#{key}") == amount, key
    assert await page.text("#pay-capitals") == "贰仟玖佰捌拾贰元整"
    # The patient's name and the clinic's, in Chinese in both languages, drawn in a font that has them.
    meta = await page.text("table.meta")
    assert clinic in meta and "李娜" in meta and "410102196003020026" not in meta
    await assert_chinese_is_drawn(page, "table.meta tr:first-child td")
    await assert_chinese_is_drawn(page, "#pay-capitals")
    if lang == "zh":
        await assert_chinese_is_drawn(page, "h1")
    # The QR code is drawn, and nothing is cut off or spills sideways.
    qr = await page.evaluate(
        "(() => { const box = document.querySelector('#qr svg').getBoundingClientRect();"
        " return [box.width, box.height]; })()"
    )
    assert qr[0] >= 60 and qr[0] == qr[1], qr
    assert await page.overflowing(".receipt") == []
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    # The amounts of the items line up on the right, as the payers' do.
    items = await page.evaluate(
        "Array.from(document.querySelectorAll('table.items tbody tr:not(.notice)'),"
        " tr => Math.round(tr.children[4].getBoundingClientRect().right))"
        ".concat([Math.round(document.querySelector('#items-total').getBoundingClientRect().right)])"
    )
    assert len(items) >= 4 and len(set(items)) == 1, items
    payers = await page.evaluate(
        "Array.from(document.querySelectorAll('.receipt td.money[id]')).filter(td => td.closest('tbody')"
        " && !td.dataset.bucket && !td.id.startsWith('bucket-') && td.id !== 'items-total')"
        ".map(td => Math.round(td.getBoundingClientRect().right))"
    )
    assert len(payers) >= 6 and len(set(payers)) == 1, payers
