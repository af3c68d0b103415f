"""The OpenAPI 3.1 document, generated from the same msgspec models the gateway decodes with."""

from __future__ import annotations

from typing import Any

import msgspec

from adapters import finance
from gateway import api_models as api

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _body(name: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {
        "required": True,
        "content": {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}},
    }


def _ok(name: str, status: str = "200", description: str = "OK") -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}},
        }
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": "Problem", "content": _PROBLEM} for status in statuses}


# Every route but health, readiness and metrics is signed: see the README, "Signing requests".
_TERMINAL = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("X-Key-Id", "the terminal's key id"),
        ("X-Timestamp", "Unix seconds; within 300 s of the gateway's clock"),
        ("X-Nonce", "16-64 characters of A-Z a-z 0-9 _ -, never reused"),
        ("X-Signature", "hex HMAC-SHA256 over method, path, timestamp, nonce and the body's SHA-256"),
    )
]
_SETTLEMENT_ID = {
    "name": "settlement_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


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
        finance.ReconciliationRequest,
    ]
    _, components = msgspec.json.schema_components(models, ref_template="#/components/schemas/{name}")
    common = _errors(400, 401, 403, 413, 415, 422, 429, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Medical settlement gateway",
            "version": "1",
            "description": "Settles a bill in one request: basic insurance, then the priority-care subsidy, then "
            "hardship aid. Money is integer fen. Errors are application/problem+json with a stable code.",
        },
        "paths": {
            "/v1/settlements": {
                "post": {
                    "summary": "Settle a bill (idempotent per terminal and request_id)",
                    "parameters": _TERMINAL,
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
                    "parameters": _TERMINAL,
                    "requestBody": _body("SettleRequest"),
                    "responses": {**_ok("QuoteOut"), **common},
                }
            },
            "/v1/settlements/{settlement_id}": {
                "get": {
                    "summary": "A stored settlement",
                    "parameters": [*_TERMINAL, _SETTLEMENT_ID],
                    "responses": {**_ok("SettlementOut"), **_errors(401, 404, 503)},
                }
            },
            "/v1/settlements/{settlement_id}/reversal": {
                "post": {
                    "summary": "Reverse a settlement, giving back every accumulator",
                    "parameters": [*_TERMINAL, _SETTLEMENT_ID],
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
                    "parameters": _TERMINAL,
                    "requestBody": _body("EligibilityRequest"),
                    "responses": {**_ok("EligibilityOut"), **common},
                }
            },
            "/v1/people": {
                "post": {
                    "summary": "Create or update a person and their memberships (admin)",
                    "parameters": _TERMINAL,
                    "requestBody": _body("PersonRequest"),
                    "responses": {**_ok("PersonOut", "201", "Created"), **_ok("PersonOut"), **common},
                }
            },
            "/v1/registry/stats": {
                "get": {
                    "summary": "People in force on a date, added and struck off in a period (admin, finance)",
                    "parameters": [
                        *_TERMINAL,
                        *(
                            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                            for name in ("date", "from", "to", "format")
                        ),
                    ],
                    "responses": {"200": {"description": "JSON, or CSV with format=csv"}, **_errors(401, 403, 422)},
                }
            },
            "/v1/finance/daily": {
                "get": {
                    "summary": "Daily statement per clinic and fund, by level and region, with the day's reversals"
                    " (admin, finance)",
                    "parameters": [
                        *_TERMINAL,
                        *(
                            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                            for name in ("date", "format")
                        ),
                    ],
                    "responses": {"200": {"description": "JSON, or CSV with format=csv"}, **_errors(401, 403, 422)},
                }
            },
            "/v1/finance/reconciliation": {
                "post": {
                    "summary": "Check a clinic's or fund's list for a booking day against the ledger"
                    " (admin, finance; terminal for its own clinic)",
                    "parameters": _TERMINAL,
                    "requestBody": _body("ReconciliationRequest"),
                    "responses": {"200": {"description": "Matched counts and sums, and every discrepancy"}, **common},
                }
            },
            "/v1/clinics": {
                "get": {
                    "summary": "Clinics, optionally filtered by level",
                    "parameters": [
                        *_TERMINAL,
                        {
                            "name": "level",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["village", "township", "county"]},
                        },
                    ],
                    "responses": {**_ok("ClinicsOut"), **_errors(401, 422, 503)},
                }
            },
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": {"description": "OK"}}}},
            "/readyz": {
                "get": {
                    "summary": "Ready for traffic: database reachable and not shutting down",
                    "responses": {"200": {"description": "Ready"}, **_errors(503)},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "OK"}}}},
        },
        "components": {"schemas": components},
    }
