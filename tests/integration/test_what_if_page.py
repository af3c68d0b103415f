"""The dashboard's policy what-if page (gateway/dashboard/what_if_page.py), over HTTP with a session from a
real login link: the form for a session and a refusal without one, a candidate's hand-computed difference
on the page and in its CSV, and a candidate that does not load, or a window over the limit, shown on the
form in words with what was entered kept.

A gateway over a database of its own, so the window holds only this module's bills. Money is int fen.
"""

from __future__ import annotations

import csv
import html
import io
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.dashboard import what_if_page
from gateway.dashboard.sessions import COOKIE, login_link, make_session, session_secret
from tests.integration.conftest import COUNTY, KEY_ENCRYPTION_KEY, SignedClient, bill, own_gateway, register

pytestmark = pytest.mark.integration

Y = 100
DEFAULT_TEXT = (Path(__file__).resolve().parents[2] / "policies" / "default.toml").read_text(encoding="utf-8")
# The default policy with county admissions paid at 0.80 instead of 0.75.
CANDIDATE_TEXT = DEFAULT_TEXT.replace('id = "default-2026"', 'id = "candidate-2027"').replace(
    "rate = { township = 0.85, county = 0.75 }", "rate = { township = 0.85, county = 0.80 }"
)
DAY = "2026-10-14"

Page = tuple[SignedClient, dict[str, str]]


@pytest.fixture(scope="module")
async def page(database_url: str, settings: Any) -> AsyncIterator[Page]:
    async with own_gateway(database_url, settings) as (client, _, _):
        person = await register(client, ("insurance", "resident"))
        # One county admission, A 10,000.00: today (10,000 − 600) × 0.75 = 7,050.00 from insurance.
        response = await client.post(
            "/v1/settlements", json=bill(person, ("A", 10_000 * Y), service_date=DAY), headers=COUNTY
        )
        assert response.status == 201, await response.text()
        finance = client.by_terminal["finance-1"]
        base = str(client.client.make_url("")).rstrip("/")
        login = await client.client.get(
            login_link(base, finance.key_id, finance.secret, minutes=5)[len(base) :], allow_redirects=False
        )
        assert login.status == 303
        # The session cookie is SameSite=Strict and covers every /dashboard page: a post from another site
        # carries no session (the page's guard against cross-site posting).
        morsel = login.cookies[COOKIE]
        assert (morsel["samesite"], morsel["path"], morsel["httponly"]) == ("Strict", "/dashboard", True)
        client.client.session.cookie_jar.clear()  # each request below says which session it carries
        yield client, {COOKIE: morsel.value}


def form(policy: str, *, start: str = DAY, end: str = DAY, by: str = "level", **more: str) -> dict[str, str]:
    return {"policy": policy, "from": start, "to": end, "by": by, **more}


async def test_the_form_is_shown_for_a_session_and_refused_without_one(page: Page) -> None:
    client, cookies = page
    response = await client.client.get("/dashboard/what-if", cookies=cookies)
    text = await response.text()
    assert response.status == 200, text
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert '<form method="post" action="/dashboard/what-if" enctype="multipart/form-data">' in text
    assert 'name="policy_file"' in text and '<textarea id="policy" name="policy"' in text
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # The dashboard links to it, for the dashboard's period.
    dashboard = await client.client.get(f"/dashboard?from=2026-10-01&to={DAY}", cookies=cookies)
    link = re.search(r'<a id="what-if-link" href="([^"]+)"', await dashboard.text())
    assert link and link[1] == f"/dashboard/what-if?from=2026-10-01&amp;to={DAY}"
    opened = await client.client.get(html.unescape(link[1]), cookies=cookies)
    assert 'name="from" value="2026-10-01"' in await opened.text()

    forged = {COOKIE: cookies[COOKIE][:-4] + "0000"}
    key_id = cookies[COOKIE].split(".")[0]
    expired = {COOKIE: make_session(session_secret(KEY_ENCRYPTION_KEY), key_id, int(time.time()) - 1)}
    for jar, code in (({}, "signature_missing"), (forged, "signature_missing"), (expired, "session_expired")):
        refused = await client.client.get("/dashboard/what-if", cookies=jar)
        assert refused.status == 401
        posted = await client.client.post("/dashboard/what-if", data=form(CANDIDATE_TEXT), cookies=jar)
        assert posted.status == 401
        assert (await posted.json())["code"] == code


async def test_a_candidate_shows_its_hand_computed_difference(page: Page) -> None:
    client, cookies = page
    response = await client.client.post("/dashboard/what-if", data=form(CANDIDATE_TEXT), cookies=cookies)
    text = await response.text()
    assert response.status == 200, text
    county = re.search(r'<section class="group" data-group="county".*?</section>', text, re.S)
    assert county, text
    # (10,000 − 600) × (0.80 − 0.75) = 470.00 more from insurance: 7,050.00 today, 7,520.00 under the candidate.
    assert 'data-fund="insurance" data-today="705000" data-would="752000" data-difference="47000"' in county[0]
    money = '<td class="money">7050.00</td><td class="money">7520.00</td><td class="money">+470.00</td>'
    assert money in county[0]
    assert 'data-fund="out_of_pocket" data-today="295000" data-would="248000" data-difference="-47000"' in county[0]
    assert 'data-better-off="1" data-worse-off="0" data-unchanged="0"' in county[0]
    # The share out of pocket moves from 29.5 % to 24.8 %: from the third tenth to the third tenth.
    assert re.search(r'data-shares="today"><td>[^<]+</td><td>0</td><td>0</td><td>1</td>', county[0])
    assert re.search(r'data-shares="would"><td>[^<]+</td><td>0</td><td>0</td><td>1</td>', county[0])
    total = re.search(r'<section id="total" class="group" data-group="total".*?</section>', text, re.S)
    assert total and 'data-fund="insurance" data-today="705000" data-would="752000"' in total[0]
    assert 'data-candidate="candidate-2027" data-settlements="1"' in text
    # The report page keeps the form filled in, and offers the same report as CSV.
    assert "rate = { township = 0.85, county = 0.80 }" in text
    assert '<form id="csv-download" method="post" action="/dashboard/what-if">' in text


async def test_the_csv_download_is_the_same_report(page: Page) -> None:
    client, cookies = page
    response = await client.client.post("/dashboard/what-if", data=form(CANDIDATE_TEXT, format="csv"), cookies=cookies)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == f'attachment; filename="what-if-candidate-2027-{DAY}-{DAY}.csv"'
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    county = {row["fund"]: row for row in rows if row["group"] == "county"}
    assert (county["insurance"]["today_fen"], county["insurance"]["would_fen"]) == ("705000", "752000")
    assert county["insurance"]["difference_fen"] == "47000" and county["out_of_pocket"]["difference_fen"] == "-47000"


async def test_a_candidate_uploaded_as_a_file_is_replayed(page: Page) -> None:
    client, cookies = page
    data = aiohttp.FormData()
    data.add_field("policy_file", CANDIDATE_TEXT.encode(), filename="candidate.toml", content_type="application/toml")
    for name, value in form("", by="fund").items():
        data.add_field(name, value)
    response = await client.client.post("/dashboard/what-if", data=data, cookies=cookies)
    text = await response.text()
    assert response.status == 200, text
    insurance = re.search(r'<section class="group" data-group="insurance".*?</section>', text, re.S)
    assert insurance and 'data-fund="insurance" data-today="705000" data-would="752000"' in insurance[0]


async def test_a_candidate_that_does_not_load_is_shown_on_the_form(page: Page) -> None:
    client, cookies = page
    broken = CANDIDATE_TEXT.replace("county = 0.80 }", "county = 1.80 }")
    response = await client.client.post("/dashboard/what-if", data=form(broken), cookies=cookies)
    text = await response.text()
    assert response.status == 422
    assert response.content_type == "text/html"
    problem = re.search(r'<li data-field="policy">(.*?)</li>', text, re.S)
    assert problem, text
    assert "the candidate does not load" in problem[1] and "rate" in problem[1]
    # What was entered is kept: the text, the window and the grouping.
    assert "county = 1.80 }" in text
    assert f'name="from" value="{DAY}"' in text and '<option value="level" selected>' in text
    assert 'id="report"' not in text

    nothing = await client.client.post("/dashboard/what-if", data=form("", start="2026-10-15"), cookies=cookies)
    text = await nothing.text()
    assert nothing.status == 422
    assert '<li data-field="policy">' in text and '<li data-field="from"><b>from</b>: from is after to' in text


async def test_an_upload_that_is_not_text_is_shown_on_the_form(page: Page) -> None:
    client, cookies = page
    data = aiohttp.FormData()
    data.add_field("policy_file", b"\xff\xfe\x00 not toml", filename="policy.xlsx")
    for name, value in form("pasted = 1").items():
        data.add_field(name, value)
    response = await client.client.post("/dashboard/what-if", data=data, cookies=cookies)
    text = await response.text()
    assert response.status == 422
    assert '<li data-field="policy_file"><b>policy_file</b>: the policy file must be UTF-8 text (TOML)' in text
    assert "pasted = 1" in text


async def test_a_window_over_the_limit_is_refused_in_words(page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    client, cookies = page
    # The page's limit is the API route's 50,000 settlements; this window holds one.
    monkeypatch.setattr(what_if_page, "WHAT_IF_AT_MOST", 0)
    response = await client.client.post("/dashboard/what-if", data=form(CANDIDATE_TEXT), cookies=cookies)
    text = await response.text()
    assert response.status == 422
    problem = re.search(r'<li data-field="from">(.*?)</li>', text, re.S)
    assert problem and "the window is too large: it replays 1 settlements" in problem[1]
    assert "medsettle policy what-if" in problem[1]
    assert "rate = { township = 0.85, county = 0.80 }" in text
