"""Every route the gateway serves: method, path, handler, and the roles that may call it.

The app factory registers these routes, and the middleware reads each one's roles, write flag
and body limit.
"""

from __future__ import annotations

from gateway.dashboard.pages import dashboard, dashboard_login
from gateway.http.handlers import finance, health, people, registry, settlements
from gateway.http.handlers.receipts import settlement_receipt
from gateway.http.openapi import openapi_json
from gateway.http.routing import ADMIN, ANY_ROLE, OPEN, READERS, REPORTING, TERMINAL, Route

ROUTES = [
    # A settlement claims its nonce inside its first read.
    Route("POST", "/v1/settlements", settlements.settle, TERMINAL, write=True, claims_own_nonce=True),
    Route("POST", "/v1/quotes", settlements.quote, TERMINAL),
    Route("GET", "/v1/settlements/{settlement_id}", settlements.get_settlement, READERS),
    Route("GET", "/v1/settlements/{settlement_id}/receipt", settlement_receipt, READERS),
    Route("POST", "/v1/settlements/{settlement_id}/reversal", settlements.reverse, TERMINAL, write=True),
    Route("POST", "/v1/eligibility", people.eligibility, TERMINAL),
    Route("POST", "/v1/people", people.upsert_person, ADMIN, write=True),
    Route("GET", "/v1/clinics", registry.clinics, ANY_ROLE),
    Route("GET", "/v1/registry/stats", registry.registry_stats, REPORTING),
    Route("GET", "/v1/finance/daily", finance.daily_statement, REPORTING),
    Route(
        "POST",
        "/v1/finance/reconciliation",
        finance.reconciliation,
        REPORTING | TERMINAL,
        write=True,
        max_body=finance.RECONCILIATION_MAX_BODY,
    ),
    Route("GET", "/v1/finance/stats", finance.statistics, REPORTING),
    Route("GET", "/openapi.json", openapi_json, ANY_ROLE),
    Route("GET", "/healthz", health.healthz, OPEN),
    Route("GET", "/readyz", health.readyz, OPEN),
    Route("GET", "/metrics", health.metrics, OPEN),
    # Browser pages: no request signature; the handlers check a session cookie (gateway/dashboard/pages.py).
    Route("GET", "/dashboard/login", dashboard_login, OPEN),
    Route("GET", "/dashboard", dashboard, OPEN),
]
