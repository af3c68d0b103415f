"""The dashboard's pages without a browser: refusals as pages or problems, the list behind a figure, the
exports' refusals, and ``medsettle dashboard-link`` refusing a key the dashboard would refuse.

The browser's view of the same pages is tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Any

import msgspec
import pytest

from adapters.dashboard_figures import Behind, settlements_behind
from adapters.settlement_search import Cursor
from adapters.terminal_keys import create_key, retire_key, revoke_terminal
from gateway.cli.main import build_parser
from gateway.dashboard.sessions import COOKIE, login_signature, make_session, session_secret
from tests.integration.conftest import COUNTY, KEY_ENCRYPTION_KEY, bill, register

pytestmark = pytest.mark.integration

# What Chromium sends for a page it navigates to; and what an API client sends.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}
API = {"Accept": "application/json"}
SECRET = session_secret(KEY_ENCRYPTION_KEY)


def session_of(client: Any, terminal: str, *, seconds: int = 300) -> dict[str, str]:
    key = client.by_terminal[terminal]
    return {COOKIE: make_session(SECRET, key.key_id, int(time.time()) + seconds)}


# ---------------------------------------------------------------- a refusal, as a page or as a problem


async def test_a_browser_gets_a_page_saying_what_to_do_and_an_api_client_its_problem(client):
    finance = client.by_terminal["finance-1"]
    past = int(time.time()) - 5
    expired_link = (
        f"/dashboard/login?key_id={finance.key_id}&expires={past}"
        f"&sig={login_signature(finance.secret, finance.key_id, past)}"
    )
    cases = [
        ("/dashboard", {}, 401, "signature_missing", "尚未登录"),
        ("/dashboard", session_of(client, "finance-1", seconds=-1), 401, "session_expired", "登录已过期"),
        ("/dashboard/settlements", session_of(client, "finance-1", seconds=-1), 401, "session_expired", "登录已过期"),
        ("/dashboard/export?table=days", session_of(client, "finance-1", seconds=-1), 401, "session_expired", ""),
        ("/dashboard/what-if", {COOKIE: "garbage"}, 401, "signature_missing", "尚未登录"),
        ("/dashboard", session_of(client, "term-C001"), 403, "forbidden", "此密钥无权打开结算看板"),
        (expired_link, {}, 401, "timestamp_out_of_window", "登录链接已过期"),
        ("/dashboard?from=2026-13-01", session_of(client, "finance-1"), 422, "validation_failed", "无法显示此页面"),
    ]
    for path, cookies, status, code, heading in cases:
        page = await client.client.get(path, cookies=cookies, headers=BROWSER, allow_redirects=False)
        text = await page.text()
        assert (page.status, page.content_type) == (status, "text/html"), (path, text[:300])
        assert f'data-code="{code}"' in text and heading in text, (path, text[:300])
        assert "Set-Cookie" not in page.headers and page.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in page.headers["Content-Security-Policy"] and "<script" not in text
        if status == 401:
            assert "medsettle dashboard-link --terminal finance-1" in text
        # An API client, and one that names no type (curl's */*), keep the problem+json.
        for headers in (API, {"Accept": "*/*"}, {}):
            problem = await client.client.get(path, cookies=cookies, headers=headers, allow_redirects=False)
            assert (problem.status, problem.content_type) == (status, "application/problem+json"), (path, headers)
            assert (await problem.json())["code"] == code


async def test_only_the_dashboards_pages_answer_a_browser_with_a_page(client):
    """The signed API refuses a browser with problem+json as ever: a page is the dashboard's alone."""
    response = await client.client.get("/v1/clinics", headers=BROWSER)
    assert (response.status, response.content_type) == (401, "application/problem+json")


# ---------------------------------------------------------------- the settlements behind a figure


async def test_the_list_behind_a_figure_pages_through_every_settlement_once(client, pool):
    person = await register(client, ("insurance", "resident"))
    day = dt.date(2026, 4, 7)
    for amount in (10_000, 20_000, 30_000, 40_000, 50_000):
        body = bill(person, ("A", amount), visit_type="outpatient", service_date=day.isoformat())
        assert (await client.post("/v1/settlements", json=body, headers=COUNTY)).status == 201
    async with pool.acquire() as connection:
        expected = [
            str(row["settlement_id"])
            for row in await connection.fetch(
                """SELECT settlement_id FROM settlements WHERE service_date = $1 AND clinic_id = 'C001'
                   AND reversed_at IS NULL ORDER BY created_at, settlement_id""",
                day,
            )
        ]
        total = await connection.fetchval(
            "SELECT sum(total) FROM settlements WHERE service_date = $1 AND clinic_id = 'C001' AND reversed_at IS NULL",
            day,
        )
        seen: list[str] = []
        after = None
        for _ in range(len(expected) + 1):  # bounded: a page of two at a time
            page = await settlements_behind(connection, Behind(day, day, clinic_id="C001", limit=2, after=after))
            assert (page.totals.count, page.totals.total) == (len(expected), total)  # the whole list's, every page
            seen += [str(item.settlement_id) for item in page.items]
            if page.next is None:
                break
            after = Cursor.parse(page.next)
        assert seen == expected and len(expected) >= 5
        by_level = await settlements_behind(connection, Behind(day, day, level="county", limit=500))
        assert {str(item.settlement_id) for item in by_level.items} >= set(expected)
        assert by_level.clinic_names["C001"] == "示范县人民医院"

    # The page shows the first page and links to the next with the cursor.
    cookies = session_of(client, "finance-1")
    page = await client.client.get(f"/dashboard/settlements?from={day}&to={day}&clinic=C001", cookies=cookies)
    text = await page.text()
    assert page.status == 200
    assert len(re.findall(r'<tr data-settlement="', text)) == len(expected)  # fewer than a page: no next link
    assert 'id="next-page"' not in text and f'data-count="{len(expected)}"' in text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("level=city", "level"),
        ("clinic=C001&level=county", "level"),
        ("after=not-a-cursor", "after"),
        ("from=2026-02-30", "from"),
        ("from=2026-05-02&to=2026-05-01", "from"),
    ],
)
async def test_a_list_that_cannot_be_made_is_a_422_naming_the_field(client, query, field):
    response = await client.client.get(
        f"/dashboard/settlements?{query}", cookies=session_of(client, "finance-1"), headers=API
    )
    assert response.status == 422
    assert (await response.json())["field"] == field


@pytest.mark.parametrize(
    ("query", "field"), [("table=people", "table"), ("table=days&format=pdf", "format"), ("", "table")]
)
async def test_an_export_that_cannot_be_made_is_a_422_naming_the_field(client, query, field):
    response = await client.client.get(
        f"/dashboard/export?{query}", cookies=session_of(client, "finance-1"), headers=API
    )
    assert response.status == 422
    assert (await response.json())["field"] == field


async def test_an_export_is_a_download_named_for_its_table_and_period(client):
    cookies = session_of(client, "admin-1")  # admin may open the dashboard too
    response = await client.client.get(
        "/dashboard/export?table=levels&format=csv&from=2026-04-01&to=2026-04-30", cookies=cookies
    )
    assert response.status == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="dashboard-levels-all-2026-04-01-2026-04-30.csv"'
    )
    lines = (await response.read()).decode("utf-8-sig").splitlines()
    assert lines[0].startswith("级别 Level,结算笔数 Settlements,费用总额 Total,")
    assert [line.split(",")[0] for line in lines[1:]] == [
        "村卫生服务站 village",
        "镇(社区)卫生服务中心 township",
        "县级医院 county",
    ]


# ---------------------------------------------------------------- medsettle dashboard-link


async def dashboard_link(settings: Any, database_url: str, *argv: str) -> int:
    """The command's exit status. Run through the parser, not gateway.cli.main (main configures logging onto the
    captured stdout), in a thread of its own: the command runs its own event loop."""
    args = build_parser().parse_args(["dashboard-link", *argv])
    return int(await asyncio.to_thread(args.run, msgspec.structs.replace(settings, database_url=database_url), args))


async def test_dashboard_link_prints_a_link_the_gateway_takes(client, settings, database_url, tmp_path, capsys):
    finance = client.by_terminal["finance-1"]
    keys = tmp_path / "keys.json"
    keys.write_text(
        msgspec.json.encode({"finance-1": {"key_id": finance.key_id, "secret": finance.secret}}).decode(), "utf-8"
    )
    base = str(client.client.make_url("")).rstrip("/")
    assert await dashboard_link(settings, database_url, "--keys", str(keys), "--minutes", "10", "--url", base) == 0
    link = capsys.readouterr().out.strip()
    match = re.fullmatch(
        rf"{re.escape(base)}/dashboard/login\?key_id={finance.key_id}&expires=(\d+)&sig=([0-9a-f]{{64}})", link
    )
    assert match, link
    assert abs(int(match[1]) - (time.time() + 600)) < 30
    try:
        opened = await client.client.get(link[len(base) :], allow_redirects=False)
        assert opened.status == 303 and COOKIE in opened.cookies
    finally:
        client.client.session.cookie_jar.clear()  # the shared test client must not stay signed in
    # The same with the key given on the command line.
    assert await dashboard_link(settings, database_url, "--key-id", finance.key_id, "--secret", finance.secret) == 0
    assert "/dashboard/login?key_id=" in capsys.readouterr().out
    # The command line itself unusable: 2.
    assert await dashboard_link(settings, database_url, "--keys", str(keys), "--terminal", "nobody") == 2
    assert await dashboard_link(settings, database_url, "--keys", str(keys), "--minutes", "0") == 2


async def test_dashboard_link_refuses_a_key_the_dashboard_would_refuse(client, pool, settings, database_url, capsys):
    async with pool.acquire() as connection:
        for terminal in ("finance-retired", "finance-revoked"):
            await connection.execute(
                "INSERT INTO terminals (terminal_id, clinic_id, role) VALUES ($1, 'C001', 'finance')"
                " ON CONFLICT DO NOTHING",
                terminal,
            )
        retired = await create_key(connection, KEY_ENCRYPTION_KEY, "finance-retired", actor="test")
        await retire_key(connection, retired[0], actor="test")
        revoked = await create_key(connection, KEY_ENCRYPTION_KEY, "finance-revoked", actor="test")
        await revoke_terminal(connection, "finance-revoked", actor="test")
    terminal = client.by_terminal["term-C001"]
    finance = client.by_terminal["finance-1"]
    for key_id, secret, says in (
        (terminal.key_id, terminal.secret, "term-C001's role is terminal: only admin and finance terminals"),
        (retired[0], retired[1], "is retired or its terminal revoked"),
        (revoked[0], revoked[1], "is retired or its terminal revoked"),
        (finance.key_id, "sk_not-the-secret", "the secret given is not key"),
        ("k_nobody", "sk_nobody", "the database holds no key k_nobody"),
    ):
        assert await dashboard_link(settings, database_url, "--key-id", key_id, "--secret", secret) == 1, says
        out, err = capsys.readouterr()
        assert out == "", out  # no link printed
        assert err.startswith("medsettle dashboard-link: no link made: ") and says in err, err
        assert secret not in err
