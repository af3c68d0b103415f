"""Terminal security: signatures, replays, revocation, rotation, roles, scoping and rate limits."""

from __future__ import annotations

import re
import time

import msgspec.structs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import signing
from adapters.terminal_keys import load_keys
from gateway.app_keys import service_key
from gateway.dashboard.drill_down import dashboard_export, dashboard_settlements
from gateway.dashboard.pages import dashboard, dashboard_login
from gateway.dashboard.what_if_page import what_if_page, what_if_run
from gateway.http.app import create_app
from gateway.http.routes import ROUTES
from gateway.http.routing import OPEN
from tests.integration.conftest import ADMIN, COUNTY, KEY_ENCRYPTION_KEY, VILLAGE, SignedClient, bill, register
from tests.integration.test_cli import medsettle

pytestmark = pytest.mark.integration

PUBLISHED_VECTOR = {  # README "Signing requests"
    "secret": "sk_test_7Yq2pVfV8wq3mZkRr0cXnH4aJ1sLbT6eD9uQ5oWgI2E",
    "method": "POST",
    "path": "/v1/settlements/2f6e1c7a-93d4-4d3e-9a8c-0b7f5e4d3c2a/reversal",
    "timestamp": "1795430400",
    "nonce": "n0nce-0123456789abcdef",
    "body": b'{"request_id":"r-1","reason":""}',
    "signature": "47607cd9f7ba8735cc2b73bdd4533b9040feafb5ec893d1ea7cfe98bea24e279",
}


def test_published_test_vector():
    vector = PUBLISHED_VECTOR
    assert (
        signing.sign(
            vector["secret"], vector["method"], vector["path"], vector["timestamp"], vector["nonce"], vector["body"]
        )
        == vector["signature"]
    )


async def _post_signed(client: SignedClient, headers: dict[str, str], body: bytes, path: str = "/v1/eligibility"):
    response = await client.client.post(path, data=body, headers={"Content-Type": "application/json", **headers})
    return response.status, await response.json()


async def test_each_kind_of_bad_signature_is_refused_with_its_own_code(client):
    person = await register(client, ("insurance", "resident"))
    key = client.by_terminal["term-C001"]
    body = f'{{"person_id": "{person}"}}'.encode()

    def headers(**change: str) -> dict[str, str]:
        signed = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/eligibility", body)
        return {**signed, **change}

    assert (await _post_signed(client, headers(), body))[0] == 200
    cases = [
        ({"X-Signature": ""}, "signature_missing"),
        ({"X-Signature": "0" * 64}, "bad_signature"),
        ({"X-Key-Id": "k_doesnotexist00"}, "unknown_key"),
        ({"X-Timestamp": str(int(time.time()) - 301)}, "timestamp_out_of_window"),
        ({"X-Timestamp": str(int(time.time()) + 400)}, "timestamp_out_of_window"),
        ({"X-Nonce": "short"}, "bad_nonce"),
        ({"X-Timestamp": "²"}, "timestamp_out_of_window"),  # str.isdigit() says yes; int() says no
        ({"X-Timestamp": "9" * 5000}, "timestamp_out_of_window"),
    ]
    for change, code in cases:
        status, problem = await _post_signed(client, headers(**change), body)
        assert (status, problem["code"]) == (401, code), change
        if code == "timestamp_out_of_window":  # a terminal with a wrong clock learns the gateway's
            assert abs(problem["server_time"] - time.time()) < 60, problem
            assert str(problem["server_time"]) in problem["detail"]
        else:
            assert "server_time" not in problem
    # A body changed after signing no longer matches.
    status, problem = await _post_signed(client, headers(), body.replace(b"person_id", b"person_id "))
    assert (status, problem["code"]) == (401, "bad_signature")
    # A captured request replayed verbatim is refused.
    captured = headers()
    assert (await _post_signed(client, captured, body))[0] == 200
    status, problem = await _post_signed(client, captured, body)
    assert (status, problem["code"]) == (401, "nonce_reused")


async def test_revoked_terminal_and_retired_key_are_refused(client, database_url, pool):
    result = medsettle(database_url, "terminals", "add", "--clinic", "V002")
    assert result.returncode == 0, result.stderr
    terminal = re.search(r"terminal (\S+) added", result.stdout).group(1)
    old_key = re.search(r"^key_id: (\S+)$", result.stdout, re.MULTILINE).group(1)
    old_secret = re.search(r"^secret: (\S+)$", result.stdout, re.MULTILINE).group(1)
    as_old = {"X-Terminal-Key": f"{old_key}:{old_secret}"}
    assert (await client.get("/v1/clinics", headers=as_old)).status == 200

    # Rotation: a second key works while the first still does, then the first is retired.
    rotated = medsettle(database_url, "terminals", "rotate", terminal)
    new_key = re.search(r"^key_id: (\S+)$", rotated.stdout, re.MULTILINE).group(1)
    new_secret = re.search(r"^secret: (\S+)$", rotated.stdout, re.MULTILINE).group(1)
    as_new = {"X-Terminal-Key": f"{new_key}:{new_secret}"}
    assert (await client.get("/v1/clinics", headers=as_old)).status == 200
    assert (await client.get("/v1/clinics", headers=as_new)).status == 200
    third = medsettle(database_url, "terminals", "rotate", terminal)
    assert third.returncode == 2 and "retire one first" in third.stderr

    assert medsettle(database_url, "terminals", "retire-key", old_key).returncode == 0
    service = client.client.app[service_key]  # the app reloads keys by itself every few seconds; force it here
    await service.load_reference()
    response = await client.get("/v1/clinics", headers=as_old)
    assert (response.status, (await response.json())["code"]) == (401, "terminal_revoked")
    assert (await client.get("/v1/clinics", headers=as_new)).status == 200

    assert medsettle(database_url, "terminals", "revoke", terminal).returncode == 0
    await service.load_reference()
    response = await client.get("/v1/clinics", headers=as_new)
    assert (response.status, (await response.json())["code"]) == (401, "terminal_revoked")
    async with pool.acquire() as connection:
        actions = [
            row["action"]
            for row in await connection.fetch(
                "SELECT action FROM audit_log WHERE subject = $1 ORDER BY audit_id", terminal
            )
        ]
    assert actions == [
        "terminal.added",
        "terminal.key_created",
        "terminal.key_created",
        "terminal.key_retired",
        "terminal.revoked",
    ]


async def test_every_route_declares_roles_and_only_operator_routes_are_open(client):
    app = client.client.app
    routes = [route for route in app.router.routes() if route.method != "HEAD"]
    open_paths = set()
    roles = {entry.handler: entry.roles for entry in ROUTES}
    for route in routes:
        assert route.handler in roles, f"{route.method} {route.resource.canonical} declares no roles"
        if roles[route.handler] is OPEN:
            open_paths.add(route.resource.canonical)
    # Open means no request signature: the operator routes, the API's own description (it holds no
    # secrets) and its page at /docs, and the browser pages that check a session cookie themselves (gateway/dashboard/).
    cookie_pages = {
        ("GET", "/dashboard/login"): dashboard_login,
        ("GET", "/dashboard"): dashboard,
        ("GET", "/dashboard/settlements"): dashboard_settlements,
        ("GET", "/dashboard/export"): dashboard_export,
        ("GET", "/dashboard/what-if"): what_if_page,
        ("POST", "/dashboard/what-if"): what_if_run,
    }
    operator = {"/healthz", "/readyz", "/metrics"}
    assert open_paths == {*operator, "/openapi.json", "/docs", *(path for _, path in cookie_pages)}
    for route in routes:
        if route.resource.canonical in {path for _, path in cookie_pages}:
            assert cookie_pages.get((route.method, route.resource.canonical)) is route.handler
    # The cookie pages refuse without a valid session or login link, and set no cookie when refusing.
    forged = "k_x." + str(int(time.time()) + 600) + "." + "0" * 64
    for path, cookies in (
        ("/dashboard", {}),
        ("/dashboard", {"medsettle_dashboard": forged}),
        ("/dashboard?from=2026-01-01&to=2026-01-31", {}),
        ("/dashboard/login", {}),
        ("/dashboard/login?key_id=k_x&expires=" + forged.split(".")[1] + "&sig=" + "0" * 64, {}),
        ("/dashboard/what-if", {}),
        ("/dashboard/what-if", {"medsettle_dashboard": forged}),
        ("/dashboard/settlements?clinic=C001", {}),
        ("/dashboard/settlements", {"medsettle_dashboard": forged}),
        ("/dashboard/export?table=settlements&format=csv", {}),
        ("/dashboard/export?table=clinics", {"medsettle_dashboard": forged}),
    ):
        response = await client.client.request("GET", path, cookies=cookies, allow_redirects=False)
        assert response.status == 401, f"GET {path} answered {response.status} without a session"
        assert "Set-Cookie" not in response.headers
    for cookies in ({}, {"medsettle_dashboard": forged}):
        response = await client.client.post("/dashboard/what-if", data={"from": "2026-01-01"}, cookies=cookies)
        assert response.status == 401, f"POST /dashboard/what-if answered {response.status} without a session"
    # And every other route really refuses an unsigned caller.
    for route in routes:
        path = route.resource.canonical.replace("{settlement_id}", "00000000-0000-0000-0000-000000000000")
        path = path.replace("{order_id}", "00000000-0000-0000-0000-000000000000").replace("{number}", "0F3A-9C1E-77B0")
        if path in open_paths:
            continue
        response = await client.client.request(route.method, path)
        assert response.status == 401, f"{route.method} {path} answered {response.status} unsigned"


async def test_role_boundaries(client):
    person = await register(client, ("insurance", "resident"))
    finance = {"X-Terminal-Id": "finance-1"}
    # A terminal cannot change the registry or read registry statistics.
    assert (await client.post("/v1/people", json={"person_id": person}, headers=COUNTY)).status == 403
    assert (await client.get("/v1/registry/stats", headers=COUNTY)).status == 403
    # Finance reads but never settles; admin manages the registry but never settles.
    assert (await client.post("/v1/settlements", json=bill(person, ("A", 100)), headers=finance)).status == 403
    assert (await client.post("/v1/settlements", json=bill(person, ("A", 100)), headers=ADMIN)).status == 403
    assert (await client.get("/v1/registry/stats", headers=finance)).status == 200
    created = await client.post(
        "/v1/settlements", json=bill(person, ("A", 10_000), visit_type="outpatient"), headers=COUNTY
    )
    settlement_id = (await created.json())["settlement_id"]
    # Finance reads any clinic's settlement; another clinic's terminal learns nothing.
    assert (await client.get(f"/v1/settlements/{settlement_id}", headers=finance)).status == 200
    assert (await client.get(f"/v1/settlements/{settlement_id}", headers=VILLAGE)).status == 404
    response = await client.post(
        f"/v1/settlements/{settlement_id}/reversal", json={"request_id": "r-finance"}, headers=finance
    )
    assert response.status == 403
    # Eligibility is asked for the terminal's own clinic only.
    own = await client.post("/v1/eligibility", json={"person_id": person, "clinic_id": "C001"}, headers=COUNTY)
    other = await client.post("/v1/eligibility", json={"person_id": person, "clinic_id": "V001"}, headers=COUNTY)
    assert (own.status, other.status) == (200, 403)


async def test_rate_limit_answers_429_with_retry_after_and_spares_other_terminals(pool, database_url, settings):
    limited = msgspec.structs.replace(settings, rate_limit_per_second=1.0, rate_limit_burst=3)
    app = create_app(limited, dsn=database_url)
    async with pool.acquire() as connection:
        keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        client = SignedClient(test_client, keys)
        statuses = [(await client.get("/v1/clinics", headers=VILLAGE)).status for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        response = await client.get("/v1/clinics", headers=VILLAGE)
        assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["code"] == "rate_limited"
        # Another terminal is not starved by the runaway one.
        assert (await client.get("/v1/clinics", headers=COUNTY)).status == 200
