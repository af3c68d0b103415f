"""The finance dashboard in a real browser: login link, session cookie, figures that match the database.

Headless Chromium (Debian package ``chromium``) opens the login link made for
``finance-1`` against the gateway the integration fixtures start on 127.0.0.1,
follows the redirect with its session cookie, and dumps the DOM; the totals in the
page's ``data-*`` attributes must equal a direct query of the settlements table. A
screenshot is saved under the test's tmp path. The login flow itself (links,
sessions, roles) is also checked without a browser.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
import shutil
import time
from pathlib import Path

import pytest

from gateway.dashboard.sessions import COOKIE, login_link, login_signature, make_session, session_secret
from gateway.service import china_today
from settlement.money import format_yuan_grouped
from tests.integration.conftest import COUNTY, KEY_ENCRYPTION_KEY, TOWNSHIP, bill, register

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def base_url(client) -> str:
    return str(client.client.make_url("")).rstrip("/")


def key_of(client, terminal: str):
    return client.by_terminal[terminal]


async def seed_settlements(client) -> None:
    """A few settlements inside the default period (the last 30 days), one of them reversed."""
    today = china_today()
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    for days_ago, headers, clinic, visit, items in (
        (0, COUNTY, "C001", "inpatient", (("A", 1_400_000), ("B", 400_000), ("C", 200_000))),
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


async def database_totals(pool, period_from: dt.date, period_to: dt.date) -> dict[str, int]:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            """SELECT count(*) AS count, coalesce(sum(total), 0) AS total, coalesce(sum(insurance), 0) AS insurance,
                      coalesce(sum(veteran_subsidy), 0) AS veteran_subsidy,
                      coalesce(sum(hardship_aid), 0) AS hardship_aid, coalesce(sum(out_of_pocket), 0) AS out_of_pocket
               FROM settlements WHERE reversed_at IS NULL AND service_date BETWEEN $1 AND $2""",
            period_from,
            period_to,
        )
    return {key: int(value) for key, value in dict(row).items()}


def page_totals(dom: str) -> tuple[dt.date, dt.date, dict[str, int]]:
    period = re.search(r'id="period"[^>]*data-from="([\d-]+)"[^>]*data-to="([\d-]+)"', dom)
    totals = re.search(r'<section id="totals"([^>]*)>', dom)
    assert period and totals, dom[:2000]
    found = {key.replace("-", "_"): int(value) for key, value in re.findall(r'data-([a-z-]+)="(\d+)"', totals[1])}
    return dt.date.fromisoformat(period[1]), dt.date.fromisoformat(period[2]), found


async def chromium(tmp_path: Path, *arguments: str) -> str:
    profile = tmp_path / f"profile-{time.time_ns()}"
    process = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout.decode()


# ---------------------------------------------------------------- in a browser


async def test_dashboard_in_chromium(client, pool, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("install Chromium: apt-get install -y chromium")
    await seed_settlements(client)
    finance = key_of(client, "finance-1")
    link = login_link(base_url(client), finance.key_id, finance.secret, minutes=5)

    dom = await chromium(tmp_path, "--dump-dom", link)
    assert "Finance dashboard" in dom, dom[:2000]
    period_from, period_to, shown = page_totals(dom)
    assert period_to == china_today() and (period_to - period_from).days == 29
    expected = await database_totals(pool, period_from, period_to)
    assert expected["count"] >= 3  # the seeded settlements are in the period; the reversal is not counted
    assert shown == expected
    # The visible figures are the same totals as money (thousands separated), and every chart is drawn.
    for key in ("total", "insurance", "hardship_aid", "out_of_pocket"):
        fen = expected[key]
        assert f'id="total-{key.replace("_", "-")}">{format_yuan_grouped(fen)}<' in dom
    for chart in ("chart-daily", "chart-payers", "chart-levels", "chart-oop"):
        assert f'id="{chart}"' in dom
    buckets = [int(count) for count in re.findall(r'data-bucket="\d" data-count="(\d+)"', dom)]
    assert len(buckets) == 10 and sum(buckets) == expected["count"]

    screenshot = tmp_path / "dashboard.png"
    await chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2400", link)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000

    # A login link signed with a billing terminal's key is refused: no dashboard, no session.
    terminal = key_of(client, "term-C001")
    refused = await chromium(
        tmp_path, "--dump-dom", login_link(base_url(client), terminal.key_id, terminal.secret, minutes=5)
    )
    assert 'id="totals"' not in refused and 'data-code="forbidden"' in html.unescape(refused)


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
