"""The OpenAPI 3.1 document, generated from the same msgspec models the gateway decodes with.

Every route the gateway serves is here (``tests/integration/test_schemathesis.py`` checks
each against the running gateway, and that no route is left out).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from adapters import finance_stats
from adapters import report_models as reports
from gateway import api_models as api
from gateway.app_keys import state_key
from gateway.http.requests import DATE_PATTERN, JSON

_json = msgspec.json.Encoder()
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_OBJECT = {"type": "object"}
_TEXT = {"type": "string"}


# The README's worked example (county hospital, inpatient; "Li Na" of the demo county).
_WORKED_EXAMPLE = {
    "request_id": "demo-0001",
    "clinic_id": "C001",
    "person_id": "410102196003020026",
    "visit_type": "inpatient",
    "service_date": "2026-05-01",
    "items": [
        {"code": "DRUG-001", "name": "Ceftriaxone", "category": "A", "amount": 1400000},
        {"code": "MAT-002", "name": "Stent", "category": "B", "amount": 400000},
        {"code": "SVC-003", "name": "Single room", "category": "C", "amount": 200000},
    ],
}
_EXAMPLES: dict[str, dict[str, Any]] = {
    "SettleRequest": _WORKED_EXAMPLE,
    "EligibilityRequest": {"person_id": "410102196003020026", "service_date": "2026-05-01"},
}


def _body(name: str) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{name}"}}
    if name in _EXAMPLES:
        media["example"] = _EXAMPLES[name]
    return {"required": True, "content": {"application/json": media, "application/msgpack": media}}


def _ok(name: str, status: str = "200", description: str = "OK") -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}},
        }
    }


def _report(name: str, description: str) -> dict[str, Any]:
    """A report: JSON or MessagePack by Accept, or CSV with format=csv (or Accept: text/csv)."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {
        "200": {
            "description": description,
            "content": {
                "application/json": {"schema": schema},
                "application/msgpack": {"schema": schema},
                "text/csv": {"schema": _TEXT},
            },
        }
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": "Problem", "content": _PROBLEM} for status in statuses}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


# Query dates as gateway.http.requests.query_date reads them; an empty value is refused like any other non-date.
_DATE = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
_OPTIONAL_DATE = {"type": "string", "pattern": "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"}
_REPORT_FORMAT = _query("format", _enum("json", "csv"), "csv for CSV (as does Accept: text/csv); JSON by default")


# Every route but health, readiness, metrics and the dashboard's pages is signed (README, "Signing
# requests"). The four headers go together: one security requirement of four API keys, not
# parameters of each operation, so that tools send them as credentials rather than as data.
_SIGNATURE_HEADERS = {
    "keyId": ("X-Key-Id", "the terminal's key id"),
    "timestamp": ("X-Timestamp", "Unix seconds; within 300 s of the gateway's clock"),
    "nonce": ("X-Nonce", "16-64 characters of A-Z a-z 0-9 _ -, never reused"),
    "signature": (
        "X-Signature",
        "lower-case hex HMAC-SHA256, under the terminal's secret, of the method, the path and query as "
        "sent, the timestamp, the nonce and the hex SHA-256 of the body, joined by newlines",
    ),
}
_SECURITY_SCHEMES = {
    scheme: {"type": "apiKey", "in": "header", "name": header, "description": text}
    for scheme, (header, text) in _SIGNATURE_HEADERS.items()
}
_OPEN: list[dict[str, list[str]]] = []
_SETTLEMENT_ID = {
    "name": "settlement_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_STATUSES = {"401", "403", "429", "503"}  # any signed route may answer these


def openapi_document() -> dict[str, Any]:
    models = [
        api.SettleRequest,
        api.ReversalRequest,
        api.PersonRequest,
        api.EligibilityRequest,
        api.SettlementOut,
        api.QuoteOut,
        api.ReversalOut,
        api.EligibilityOut,
        api.PersonOut,
        api.ClinicsOut,
        api.Problem,
        api.ReconciliationRequest,
        # What the reports answer (adapters/report_models.py); finance statistics are one Struct per dimension.
        reports.DailyStatement,
        reports.Reconciliation,
        reports.RegistryStats,
        reports.FinanceStatsReport,
    ]
    schemas, components = msgspec.json.schema_components(models, ref_template="#/components/schemas/{name}")
    components["ItemIn"] |= api.ItemIn.schema_rules
    components["FinanceStatsReport"] = schemas[models.index(reports.FinanceStatsReport)]
    common = _errors(400, 401, 403, 413, 415, 422, 429, 503)
    signed = _errors(401, 403, 429, 503)
    paths: dict[str, Any] = {
        "/v1/settlements": {
            "post": {
                "summary": "Settle a bill (idempotent per terminal and request_id)",
                "requestBody": _body("SettleRequest"),
                "responses": {
                    **_ok("SettlementOut", "201", "Settled"),
                    **_ok("SettlementOut", "200", "Replay of the first answer"),
                    **common,
                    **_errors(409),
                },
            }
        },
        "/v1/quotes": {
            "post": {
                "summary": "Compute a settlement without recording it",
                "requestBody": _body("SettleRequest"),
                "responses": {**_ok("QuoteOut"), **common},
            }
        },
        "/v1/settlements/{settlement_id}": {
            "get": {
                "summary": "A stored settlement (404 for another clinic's)",
                "parameters": [_SETTLEMENT_ID],
                "responses": {**_ok("SettlementOut"), **signed, **_errors(404)},
            }
        },
        "/v1/settlements/{settlement_id}/receipt": {
            "get": {
                "summary": "The patient's receipt: printable HTML, or text for a 32-column printer",
                "parameters": [
                    _SETTLEMENT_ID,
                    _query("lang", _enum("zh", "en"), "the receipt's language; zh by default"),
                    _query("format", _enum("html", "text"), "html by default; text for a 32-column printer"),
                ],
                "responses": {
                    "200": {
                        "description": "The receipt",
                        "content": {"text/html": {"schema": _TEXT}, "text/plain": {"schema": _TEXT}},
                    },
                    **signed,
                    **_errors(404, 422),
                },
            }
        },
        "/v1/settlements/{settlement_id}/reversal": {
            "post": {
                "summary": "Reverse a settlement, giving back every accumulator",
                "parameters": [_SETTLEMENT_ID],
                "requestBody": _body("ReversalRequest"),
                "responses": {
                    **_ok("ReversalOut", "201", "Reversed"),
                    **_ok("ReversalOut", "200", "Replay of the first answer"),
                    **common,
                    **_errors(404, 409),
                },
            }
        },
        "/v1/eligibility": {
            "post": {
                "summary": "Programmes in force and what is left of each cap this year",
                "requestBody": _body("EligibilityRequest"),
                "responses": {**_ok("EligibilityOut"), **common},
            }
        },
        "/v1/people": {
            "post": {
                "summary": "Create or update a person and their memberships (admin)",
                "requestBody": _body("PersonRequest"),
                "responses": {**_ok("PersonOut", "201", "Created"), **_ok("PersonOut"), **common},
            }
        },
        "/v1/registry/stats": {
            "get": {
                "summary": "People in force on a date, added and struck off in a period (admin, finance)",
                "parameters": [
                    _query("date", _DATE, "people in force on this day; today (China time) by default"),
                    _query("from", _DATE, "first day of the period; the first of date's month by default"),
                    _query("to", _DATE, "last day of the period; date by default"),
                    _REPORT_FORMAT,
                ],
                "responses": {
                    **_report("RegistryStats", "Counts by programme, tier and category"),
                    **signed,
                    **_errors(422),
                },
            }
        },
        "/v1/finance/daily": {
            "get": {
                "summary": "Daily statement per clinic and fund, by level and region, with the day's reversals"
                " (admin, finance)",
                "parameters": [
                    _query("date", _DATE, "the booking day; today (China time) by default"),
                    _REPORT_FORMAT,
                ],
                "responses": {**_report("DailyStatement", "The statement"), **signed, **_errors(422)},
            }
        },
        "/v1/finance/stats": {
            "get": {
                "summary": "Amounts per payer, out-of-pocket share, caps reached and people served, by a dimension"
                " (admin, finance)",
                "parameters": [
                    _query(
                        "by", _enum(*sorted(finance_stats.DIMENSIONS)), "the dimension to group by; level by default"
                    ),
                    _query("from", _DATE, "first day of the period; the first of to's month by default"),
                    _query("to", _DATE, "last day of the period; today (China time) by default"),
                    _REPORT_FORMAT,
                ],
                "responses": {
                    **_report("FinanceStatsReport", "One row per value of the dimension"),
                    **signed,
                    **_errors(422),
                },
            }
        },
        "/v1/finance/reconciliation": {
            "post": {
                "summary": "Check a clinic's or fund's list for a booking day against the ledger"
                " (admin, finance; terminal for its own clinic)",
                "requestBody": _body("ReconciliationRequest"),
                "responses": {
                    **_ok("Reconciliation", description="Matched counts and sums, and every discrepancy"),
                    **common,
                },
            }
        },
        "/v1/clinics": {
            "get": {
                "summary": "Clinics, optionally filtered by level",
                "parameters": [_query("level", _enum("village", "township", "county"), "only clinics of this level")],
                "responses": {**_ok("ClinicsOut"), **signed, **_errors(422)},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": _OBJECT}}},
                    **signed,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "The process is alive",
                "security": _OPEN,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": _OBJECT}}}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Ready for traffic: database reachable and not shutting down",
                "security": _OPEN,
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": _OBJECT}}},
                    **_errors(503),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": _OPEN,
                "responses": {
                    "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": _TEXT}}}
                },
            }
        },
        "/dashboard/login": {
            "get": {
                "summary": "Exchange a login link from `medsettle dashboard-link` for a session cookie",
                "security": _OPEN,
                "parameters": [
                    _query("key_id", {"type": "string", "minLength": 1}, "a finance or admin key id", required=True),
                    _query(
                        "expires",
                        {"type": "string", "pattern": "^[0-9]{1,12}$"},
                        "Unix seconds when the link expires",
                        required=True,
                    ),
                    _query(
                        "sig",
                        {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"},
                        "hex HMAC-SHA256 of the link, under the key's secret",
                        required=True,
                    ),
                ],
                "responses": {
                    "303": {"description": "Signed in: a session cookie, and on to /dashboard"},
                    **_errors(401, 403),
                },
            }
        },
        "/dashboard": {
            "get": {
                "summary": "The finance dashboard (session cookie from /dashboard/login)",
                "security": _OPEN,
                "parameters": [
                    # The page reads an empty value as "not given". A period is at most 366 days, from not after to.
                    _query("from", _OPTIONAL_DATE, "first day of the period; 30 days before to by default"),
                    _query("to", _OPTIONAL_DATE, "last day of the period; today (China time) by default"),
                    _query("day", _OPTIONAL_DATE, "a booking day whose reconciliation to show"),
                ],
                "responses": {
                    "200": {"description": "The dashboard page", "content": {"text/html": {"schema": _TEXT}}},
                    **_errors(401, 403, 422),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Medical settlement gateway",
            "version": "1",
            "description": "Settles a bill in one request: basic insurance, then the priority-care subsidy, then "
            "hardship aid. Money is integer fen, and every integer is written as one (100, never 100.0). "
            "Errors are application/problem+json with a stable code. "
            'Requests are signed: see the security schemes, and the README\'s "Signing requests".',
        },
        "security": [{scheme: [] for scheme in _SIGNATURE_HEADERS}],  # every operation not marked open
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": _SECURITY_SCHEMES},
    }


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document, encoded once."""
    state = request.app[state_key]
    if "openapi" not in state:
        state["openapi"] = _json.encode(openapi_document())
    return web.Response(body=state["openapi"], content_type=JSON)
