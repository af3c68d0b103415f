"""The finance dashboard in a real browser: login link, figures that match the database, drill-down, exports.

Headless Chromium (tests/e2e/browser.py) opens the login link made for ``finance-1`` against
the gateway the integration fixtures start on 127.0.0.1 and follows the redirect with its
session cookie. From there it goes as a finance officer would, clicking: from a day's row to
the dashboard of that day, from a clinic of that day to the settlements behind its figures, and
downloads that list and the dashboard's tables as xlsx and CSV, which openpyxl and the csv module
open. Every figure is checked against a direct query of the settlements table. The pages are
also checked as a person sees them: Chinese drawn in a font that has it (not boxes), money
right-aligned in its columns, nothing cut off; a screenshot of each page is saved under the
test's tmp path and its path printed. A browser without a session, with an expired one, or
with a billing terminal's link gets a page that says what to do. The login flow itself
(links, sessions, roles) is also checked without a browser.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import pathlib
import re
import time
from decimal import Decimal
from typing import Any

import openpyxl
import pytest

from gateway.dashboard.sessions import COOKIE, login_link, login_signature, make_session, session_secret
from gateway.service import china_today
from settlement.money import format_yuan_grouped
from tests.e2e.browser import Browser, Page, assert_chinese_is_drawn
from tests.integration.conftest import COUNTY, KEY_ENCRYPTION_KEY, TOWNSHIP, bill, register

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FIGURES = ("count", "total", "insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket")


def base_url(client: Any) -> str:
    return str(client.client.make_url("")).rstrip("/")


def key_of(client: Any, terminal: str) -> Any:
    return client.by_terminal[terminal]


async def assert_laid_out(page: Page) -> None:
    """Nothing spills out of its box, the page needs no sideways scrolling and no table hides columns behind
    a scroll bar (at the width of a laptop's window), money sits right-aligned."""
    assert await page.overflowing("main") == []
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    hidden = await page.evaluate(
        "Array.from(document.querySelectorAll('.scroll')).filter(box => box.scrollWidth > box.clientWidth + 1)"
        ".map(box => box.querySelector('table').id)"
    )
    assert hidden == []
    aligned = await page.evaluate(
        "Array.from(document.querySelectorAll('td.money')).every(td => getComputedStyle(td).textAlign === 'right')"
    )
    assert aligned


async def column_right_edges(page: Page, table: str, column: int) -> set[int]:
    """Where the cells of one column of a table end, rounded to the pixel: one edge when they line up."""
    edges = await page.evaluate(
        f"""Array.from(document.querySelectorAll('#{table} tr')).map(tr => tr.children[{column}])
            .filter(cell => cell && cell.tagName === 'TD')
            .map(cell => Math.round(cell.getBoundingClientRect().right))"""
    )
    return set(edges)


async def seed_settlements(client: Any) -> None:
    """A few settlements inside the default period (the last 30 days), one of them reversed; two today at C001."""
    today = china_today()
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    for days_ago, headers, clinic, visit, items in (
        (0, COUNTY, "C001", "inpatient", (("A", 1_400_000), ("B", 400_000), ("C", 200_000))),
        (0, COUNTY, "C001", "outpatient", (("A", 12_345),)),
        (3, COUNTY, "C001", "outpatient", (("A", 50_000),)),
        (10, TOWNSHIP, "T001", "outpatient", (("A", 30_000), ("C", 5_000))),
    ):
        body = bill(
            person,
            *items,
            clinic_id=clinic,
            visit_type=visit,
            service_date=(today - dt.timedelta(days=days_ago)).isoformat(),
        )
        response = await client.post("/v1/settlements", json=body, headers=headers)
        assert response.status == 201, await response.text()
    body = bill(person, ("A", 80_000), visit_type="outpatient", service_date=today.isoformat())
    created = await (await client.post("/v1/settlements", json=body, headers=COUNTY)).json()
    response = await client.post(
        f"/v1/settlements/{created['settlement_id']}/reversal",
        json={"request_id": f"rev-{time.time_ns()}"},
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()


async def database_totals(
    pool: Any, period_from: dt.date, period_to: dt.date, clinic: str | None = None
) -> dict[str, int]:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            """SELECT count(*) AS count, coalesce(sum(total), 0) AS total, coalesce(sum(insurance), 0) AS insurance,
                      coalesce(sum(veteran_subsidy), 0) AS veteran_subsidy,
                      coalesce(sum(hardship_aid), 0) AS hardship_aid, coalesce(sum(out_of_pocket), 0) AS out_of_pocket
               FROM settlements WHERE reversed_at IS NULL AND service_date BETWEEN $1 AND $2
                 AND ($3::text IS NULL OR clinic_id = $3)""",
            period_from,
            period_to,
            clinic,
        )
    return {key: int(value) for key, value in dict(row).items()}


async def database_settlements(pool: Any, day: dt.date, clinic: str) -> list[str]:
    """The ids of a clinic's settlements of a service day that stand, in the order the list shows them."""
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            """SELECT settlement_id FROM settlements
               WHERE reversed_at IS NULL AND service_date = $1 AND clinic_id = $2
               ORDER BY service_date, created_at, settlement_id""",
            day,
            clinic,
        )
    return [str(row["settlement_id"]) for row in rows]


async def database_clinics(pool: Any, day: dt.date) -> dict[str, tuple[int, int]]:
    """(count, total) of each clinic's settlements of a service day that stand."""
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            """SELECT clinic_id, count(*) AS count, sum(total) AS total FROM settlements
               WHERE reversed_at IS NULL AND service_date = $1 GROUP BY clinic_id""",
            day,
        )
    return {row["clinic_id"]: (int(row["count"]), int(row["total"])) for row in rows}


def fen(cell: Any) -> int:
    """A money cell (a number in a workbook, yuan text in CSV) back in fen, exactly: never more than two places."""
    amount = Decimal(str(cell)) * 100
    assert amount == amount.to_integral_value(), cell
    return int(amount)


def snake(key: str) -> str:
    """A ``dataset`` key (``outOfPocket``, from ``data-out-of-pocket``) as the column is named: ``out_of_pocket``."""
    return re.sub(r"[A-Z]", lambda upper: "_" + upper[0].lower(), key)


async def data_of(page: Page, selector: str) -> dict[str, str]:
    """The element's ``data-*`` attributes, as ``dataset`` names them."""
    await page.wait_for(selector)
    found = await page.evaluate(f"Object.assign({{}}, document.querySelector('{selector}').dataset)")
    return dict(found)


async def signed_in(browser: Browser, client: Any, **size: int) -> Page:
    """A tab in which finance-1 has opened its login link: the dashboard, with a session cookie."""
    finance = key_of(client, "finance-1")
    page = await browser.page(**size)
    await page.goto(login_link(base_url(client), finance.key_id, finance.secret, minutes=5))
    await page.wait_for("#totals")
    return page


# ---------------------------------------------------------------- in a browser


async def test_dashboard_in_chromium(browser, client, pool, tmp_path):
    await seed_settlements(client)
    page = await signed_in(browser, client)
    assert (await page.url()).endswith("/dashboard")
    period = await data_of(page, "#period")
    period_from, period_to = dt.date.fromisoformat(period["from"]), dt.date.fromisoformat(period["to"])
    assert period_to == china_today() and (period_to - period_from).days == 29
    expected = await database_totals(pool, period_from, period_to)
    assert expected["count"] >= 4  # the seeded settlements are in the period; the reversed one is not counted
    shown = {snake(key): int(value) for key, value in (await data_of(page, "#totals")).items()}
    assert {key: shown[key] for key in FIGURES} == expected
    # The visible figures are the same totals as money: yuan, thousands separated, ¥ drawn before each card's.
    for key in ("total", "insurance", "hardship_aid", "out_of_pocket"):
        assert await page.text(f"#total-{key.replace('_', '-')}") == format_yuan_grouped(expected[key])
    assert await page.evaluate("getComputedStyle(document.querySelector('#total-total'), '::before').content") == '"¥"'
    for chart in ("chart-daily", "chart-payers", "chart-levels", "chart-oop", "chart-buckets"):
        await page.wait_for(f"#{chart}")
    buckets = [
        int(count)
        for count in await page.evaluate(
            "Array.from(document.querySelectorAll('[data-bucket]'), el => el.dataset.count)"
        )
    ]
    assert len(buckets) == 10 and sum(buckets) == expected["count"]
    # The y axis of the daily chart has round ticks from 0 up, above the tallest bar.
    ticks = [
        int(tick)
        for tick in await page.evaluate("Array.from(document.querySelectorAll('[data-tick]'), el => el.dataset.tick)")
    ]
    assert ticks[0] == 0 and len(ticks) >= 2 and len({b - a for a, b in itertools.pairwise(ticks)}) == 1
    # Every table closes with its totals, equal to the period's.
    for table in ("days", "levels", "clinics"):
        totals_row = await data_of(page, f"#{table} tr.totals")
        assert (int(totals_row["count"]), int(totals_row["total"])) == (expected["count"], expected["total"]), table
    await assert_chinese_is_drawn(page, "header h1")
    await assert_chinese_is_drawn(page, "#levels tr[data-level='county'] a")
    await assert_laid_out(page)
    assert len(await column_right_edges(page, "clinics", 4)) == 1  # the total column's figures line up
    await page.screenshot(tmp_path / "dashboard.png")
    # Printed, the figures stay and the form, the links out and the downloads go.
    await page.media("print")
    hidden = await page.evaluate(
        "['#period form', '#what-if-link', '#export-clinics-xlsx', '#settlements-link']"
        ".map(selector => getComputedStyle(document.querySelector(selector)).display === 'none'"
        " || getComputedStyle(document.querySelector(selector).parentElement).display === 'none')"
    )
    assert hidden == [True, True, True, True]
    assert await page.evaluate("getComputedStyle(document.querySelector('#clinics')).display") == "table"
    await page.screenshot(tmp_path / "dashboard-print.png")
    await page.media("")

    # A login link signed with a billing terminal's key is refused: no dashboard, but a page saying whose key opens it.
    terminal = key_of(client, "term-C001")
    refused = await browser.page(isolated=True)
    await refused.goto(login_link(base_url(client), terminal.key_id, terminal.secret, minutes=5))
    assert (await data_of(refused, "#refusal"))["code"] == "forbidden"
    text = await refused.text("#refusal")
    assert "此密钥无权打开结算看板" in text and "may not open the finance dashboard" in text
    assert "medsettle dashboard-link --terminal finance-1" in text
    assert await refused.evaluate("document.querySelector('#totals') === null")
    await refused.screenshot(tmp_path / "refused-terminal-key.png")


async def test_drill_down_from_a_day_to_a_clinic_to_its_settlements(browser, client, pool, tmp_path):
    await seed_settlements(client)
    today = china_today()
    page = await signed_in(browser, client)
    # The day's bar in the chart and its row in the table both lead to the dashboard of that day.
    assert await page.evaluate(f"document.querySelector('#chart-daily a[data-day=\"{today}\"]') !== null")
    await page.click(f'#days tr[data-day="{today}"] a')
    assert await data_of(page, "#period") == {"from": today.isoformat(), "to": today.isoformat()}
    clinics = await database_clinics(pool, today)
    shown = await page.evaluate(
        "Array.from(document.querySelectorAll('#clinics tr[data-clinic]'),"
        " tr => [tr.dataset.clinic, +tr.dataset.count, +tr.dataset.total])"
    )
    assert {clinic: (count, total) for clinic, count, total in shown} == clinics
    assert await page.text("#clinics tr[data-clinic='C001'] td:nth-child(2)") == "示范县人民医院"
    await assert_laid_out(page)
    await page.screenshot(tmp_path / "dashboard-one-day.png")

    # The clinic leads to the settlements behind its figures, under totals that equal them.
    await page.click("#clinics tr[data-clinic='C001'] a")
    listing = await data_of(page, "#listing")
    assert (listing["from"], listing["to"], listing["clinic"]) == (today.isoformat(), today.isoformat(), "C001")
    expected = await database_totals(pool, today, today, "C001")
    assert (int(listing["count"]), int(listing["total"])) == (expected["count"], expected["total"])
    assert (int(listing["count"]), int(listing["total"])) == clinics["C001"]
    ids = await page.evaluate(
        "Array.from(document.querySelectorAll('#settlements tr[data-settlement]'), tr => tr.dataset.settlement)"
    )
    assert ids == await database_settlements(pool, today, "C001")
    totals = await page.evaluate(
        "Array.from(document.querySelectorAll('#settlements tr.totals td'), td => td.innerText)"
    )
    assert totals[0] == "合计 Total" and totals[6] == format_yuan_grouped(expected["total"])
    assert "示范县人民医院" in await page.text("#listing h2")
    await assert_chinese_is_drawn(page, "#listing h2")
    await assert_laid_out(page)
    assert len(await column_right_edges(page, "settlements", 6)) == 1  # the total, under the heading's
    await page.screenshot(tmp_path / "settlements-C001.png")
    # And back.
    await page.click("#back")
    await page.wait_for("#totals")


def first_sheet_rows(path: pathlib.Path) -> list[tuple]:
    # A read-only workbook keeps its file open until closed; left to the garbage collector, the ResourceWarning
    # is raised in whichever test happens to be running then.
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        return list(workbook.worksheets[0].values)
    finally:
        workbook.close()


async def test_exports_download_and_open_as_excel_and_csv(browser, client, pool, tmp_path):
    await seed_settlements(client)
    today = china_today()
    page = await signed_in(browser, client)
    period = await data_of(page, "#period")
    period_from, period_to = dt.date.fromisoformat(period["from"]), dt.date.fromisoformat(period["to"])
    expected = await database_totals(pool, period_from, period_to)

    # The per-clinic table of the dashboard, as a workbook: a sheet with the clinics and a totals row equal to SQL.
    workbook = await page.click_to_download("#export-clinics-xlsx", tmp_path / "clinics-xlsx")
    assert workbook.suffix == ".xlsx"
    rows = first_sheet_rows(workbook)
    header, body, totals = rows[0], rows[1:-1], rows[-1]
    assert header[:5] == (
        "机构编码 Clinic ID",
        "机构名称 Clinic",
        "级别 Level",
        "结算笔数 Settlements",
        "费用总额 Total",
    )
    assert totals[0] == "合计 Total"
    assert (totals[3], fen(totals[4])) == (expected["count"], expected["total"])
    assert sum(fen(row[4]) for row in body) == fen(totals[4])
    assert any(row[:3] == ("C001", "示范县人民医院", "县级医院 county") for row in body)

    # The per-day table as CSV: one row per day with settlements, no totals row, a SUM is the period's total.
    days = await page.click_to_download("#export-days-csv", tmp_path / "days-csv")
    assert days.suffix == ".csv"
    with days.open(encoding="utf-8-sig", newline="") as file:
        day_rows = list(csv.reader(file))
    assert day_rows[0][:3] == ["服务日期 Service date", "结算笔数 Settlements", "费用总额 Total"]
    assert sum(fen(row[2]) for row in day_rows[1:]) == expected["total"]
    assert sum(int(row[1]) for row in day_rows[1:]) == expected["count"]

    # The settlements behind one clinic's day, both ways.
    await page.goto(f"{base_url(client)}/dashboard?from={today}&to={today}")
    await page.click("#clinics tr[data-clinic='C001'] a")
    clinic = await database_totals(pool, today, today, "C001")
    ids = await database_settlements(pool, today, "C001")
    listed = await page.click_to_download("#export-settlements-xlsx", tmp_path / "settlements-xlsx")
    sheet_rows = first_sheet_rows(listed)
    header = sheet_rows[0]
    total_column, id_column = header.index("费用总额 Total"), header.index("结算号 Settlement ID")
    assert "机构请求号 Clinic's request ID" in header and "参保人(脱敏) Person (masked)" in header
    assert [row[id_column] for row in sheet_rows[1:-1]] == ids
    assert sheet_rows[-1][0] == "合计 Total"
    assert fen(sheet_rows[-1][total_column]) == clinic["total"]
    listed_csv = await page.click_to_download("#export-settlements-csv", tmp_path / "settlements-csv")
    with listed_csv.open(encoding="utf-8-sig", newline="") as file:
        records = list(csv.DictReader(file))
    assert [record["结算号 Settlement ID"] for record in records] == ids
    assert sum(fen(record["费用总额 Total"]) for record in records) == clinic["total"]
    for record in records:  # every settlement conserves money in the file too
        paid = sum(fen(value) for name, value in record.items() if name.endswith(" paid"))
        assert paid == fen(record["费用总额 Total"]), record


async def test_a_browser_without_a_live_session_is_told_what_to_do(browser, client, tmp_path):
    base = base_url(client)
    page = await browser.page(isolated=True)  # a browser that has never signed in
    await page.goto(f"{base}/dashboard")
    assert (await data_of(page, "#refusal"))["code"] == "signature_missing"
    assert "尚未登录" in await page.text("#refusal h2")
    await page.screenshot(tmp_path / "not-signed-in.png")

    # A session the gateway signed, which has ended (the browser still holds the cookie).
    finance = key_of(client, "finance-1")
    ended = make_session(session_secret(KEY_ENCRYPTION_KEY), finance.key_id, int(time.time()) - 60)
    await page.set_cookie(COOKIE, ended, f"{base}/dashboard")
    await page.goto(f"{base}/dashboard")
    assert (await data_of(page, "#refusal"))["code"] == "session_expired"
    text = await page.text("#refusal")
    assert "登录已过期" in text and "Your session has ended" in text
    assert await page.text("#command") == "medsettle dashboard-link --terminal finance-1"
    await assert_chinese_is_drawn(page, "#refusal h2")
    await assert_laid_out(page)
    await page.screenshot(tmp_path / "session-expired.png")

    # A login link whose time has passed.
    past = int(time.time()) - 1
    await page.goto(
        f"{base}/dashboard/login?key_id={finance.key_id}&expires={past}"
        f"&sig={login_signature(finance.secret, finance.key_id, past)}"
    )
    assert (await data_of(page, "#refusal"))["code"] == "timestamp_out_of_window"
    assert "登录链接已过期" in await page.text("#refusal h2")


# ---------------------------------------------------------------- the login flow without a browser


async def test_login_link_sets_a_strict_session_cookie(client):
    finance = key_of(client, "finance-1")
    link = login_link(base_url(client), finance.key_id, finance.secret, minutes=5)
    path = link[len(base_url(client)) :]
    response = await client.client.get(path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/dashboard" in cookie
    session = response.cookies[COOKIE].value
    page = await client.client.get("/dashboard?from=2026-01-01&to=2026-12-31", cookies={COOKIE: session})
    text = await page.text()
    assert page.status == 200 and 'data-from="2026-01-01"' in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<script" not in text and "<link" not in text and "src=" not in text  # no scripts or external assets
    # A bad period is a 422, not a crash.
    bad = await client.client.get("/dashboard?from=2026-13-01", cookies={COOKIE: session})
    assert bad.status == 422
    too_long = await client.client.get("/dashboard?from=2020-01-01&to=2026-01-01", cookies={COOKIE: session})
    assert too_long.status == 422


async def test_login_refusals(client):
    finance = key_of(client, "finance-1")
    admin = key_of(client, "admin-1")
    terminal = key_of(client, "term-C001")
    now = int(time.time())

    async def login(key_id: str, expires: int, sig: str) -> tuple[int, str]:
        response = await client.client.get(
            f"/dashboard/login?key_id={key_id}&expires={expires}&sig={sig}", allow_redirects=False
        )
        assert "Set-Cookie" not in response.headers or response.status == 303
        return response.status, (await response.text()) if response.status != 303 else ""

    good = now + 300
    assert (await login(finance.key_id, good, login_signature(finance.secret, finance.key_id, good)))[0] == 303
    assert (await login(admin.key_id, good, login_signature(admin.secret, admin.key_id, good)))[0] == 303
    # A billing terminal's key may not open the dashboard, even with a genuine link.
    status, body = await login(terminal.key_id, good, login_signature(terminal.secret, terminal.key_id, good))
    assert status == 403 and "forbidden" in body
    # Expired, too far ahead, wrong secret, tampered expiry, unknown key.
    past = now - 1
    assert (await login(finance.key_id, past, login_signature(finance.secret, finance.key_id, past)))[0] == 401
    far = now + 3 * 24 * 3600
    assert (await login(finance.key_id, far, login_signature(finance.secret, finance.key_id, far)))[0] == 401
    assert (await login(finance.key_id, good, login_signature("not-the-secret", finance.key_id, good)))[0] == 401
    assert (await login(finance.key_id, good + 1, login_signature(finance.secret, finance.key_id, good)))[0] == 401
    assert (await login("k_nobody", good, login_signature(finance.secret, "k_nobody", good)))[0] == 401
    # A session the gateway did not sign, or one that has expired, is no session.
    secret = session_secret(KEY_ENCRYPTION_KEY)
    for value in (
        make_session(b"another secret", finance.key_id, now + 300),
        make_session(secret, finance.key_id, now - 1),
        make_session(secret, terminal.key_id, now + 300),
        "garbage",
    ):
        response = await client.client.get("/dashboard", cookies={COOKIE: value})
        assert response.status in (401, 403), value
    genuine = make_session(secret, finance.key_id, now + 300)
    assert (await client.client.get("/dashboard", cookies={COOKIE: genuine})).status == 200


async def test_screenshots_are_pictures(tmp_path, browser):
    """The screenshot helper writes a PNG of the whole page, taller than the window when the page is."""
    page = await browser.page(width=400, height=300)
    document = tmp_path / "tall.html"
    document.write_text('<!DOCTYPE html><meta charset="utf-8"><div style="height:1500px">示范县</div>', "utf-8")
    await page.goto(document.as_uri())
    shot = await page.screenshot(tmp_path / "tall.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (400, 1500 + 16)  # the body's default margin above and below
