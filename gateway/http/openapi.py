"""The OpenAPI 3.1 document, built from the route table and the msgspec models the gateway decodes with.

Each route's entry in ``gateway/http/routes.py`` carries its ``Doc``: summary, query parameters,
request model, answers and extra problems. The paths here are made from those entries, the
path parameters from the path itself, and the component schemas from the models they name, so
every route served is documented and none twice (``tests/integration/test_schemathesis.py``
checks each against the running gateway).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from adapters.xlsx_export import XLSX_MEDIA_TYPE
from gateway import api_models as api
from gateway.app_keys import state_key
from gateway.http.requests import JSON, RECEIPT_NUMBER_PATTERN
from gateway.http.routing import OPEN, Doc, Param, Reply, Route, routes_key

_json = msgspec.json.Encoder()
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_OBJECT = {"type": "object"}
_TEXT = {"type": "string"}


# The README's worked example (county hospital, inpatient; 李娜 (Li Na) of the demo county).
_WORKED_EXAMPLE = {
    "request_id": "demo-0001",
    "clinic_id": "C001",
    "person_id": "410102196003020026",
    "visit_type": "inpatient",
    "service_date": "2026-05-01",
    "items": [
        {"code": "DRUG-001", "name": "头孢曲松钠", "category": "A", "amount": 1400000},
        {"code": "MAT-002", "name": "冠脉支架", "category": "B", "amount": 400000},
        {"code": "SVC-003", "name": "单人病房", "category": "C", "amount": 200000},
    ],
    # What the hospital's system adds, all optional: kept with the settlement and printed on its receipt.
    "his_visit_id": "ZY2026-0418-031",
    "invoice_number": "0413-88172",
    "operator": "王敏",
    "diagnoses": ["I21.000x001"],
    "admitted_on": "2026-04-18",
    "discharged_on": "2026-05-01",
}
# A candidate for the what-if: insurance alone, paying county admissions at 80% after a 600 yuan deductible
# (docs/policy-files.md). Short, but a whole policy file that loads.
_CANDIDATE_POLICY = """id = "candidate-2027"
effective_from = 2027-01-01
chain = ["insurance"]

[eligibility]
b_self_pay_first_share = 0.10
inpatient_levels = ["township", "county"]

[funds.insurance]
name = "城乡居民基本医疗保险"
statutory = true
insured = true

[[funds.insurance.rules]]
visit_types = ["outpatient"]
deductible = { per_year_yuan = 200, counter = "outpatient_deductible_used" }
rate = { village = 0.50, township = 0.45, county = 0.35 }
annual_cap_yuan = 3000
paid_counter = "insurance_outpatient_paid"

[[funds.insurance.rules]]
visit_types = ["inpatient"]
deductible = { per_admission_yuan = { township = 300, county = 600 } }
rate = { township = 0.85, county = 0.80 }
annual_cap_yuan = 200000
paid_counter = "insurance_inpatient_paid"
"""
# One example per request body, so that Swagger UI and Postman fill in a request that works on the demo county.
_EXAMPLES: dict[str, dict[str, Any]] = {
    "SettleRequest": _WORKED_EXAMPLE,
    "ReversalRequest": {"request_id": "demo-0001-reversal", "reason": "wrong patient"},
    "EligibilityRequest": {
        "person_id": "410102196003020026",
        "service_date": "2026-05-01",
        "codes": ["DRUG-001", "MAT-002"],
    },
    "CloseOrderRequest": {"reference": "TRANSFER-2026-0917-0042"},
    "PersonYearRequest": {"person_id": "410102196003020026", "year": 2026},
    "TotalsReconciliationRequest": {
        "from": "2026-05-01",
        "to": "2026-05-31",
        "clinic_id": "C001",
        "totals": {
            "settlements": 1,
            "total": 2000000,
            "insurance": 1275000,
            "veteran_subsidy": 291000,
            "hardship_aid": 135800,
            "out_of_pocket": 298200,
        },
    },
    "PersonRequest": {
        "person_id": "410102196003020026",
        "name": "李娜",
        "memberships": [
            {"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"},
            {"programme": "veteran_subsidy", "code": "priority_care", "effective_from": "2026-01-01"},
            {"programme": "hardship_aid", "code": "minimum_allowance", "effective_from": "2026-01-01"},
        ],
    },
    "ReconciliationRequest": {
        "date": "2026-05-01",
        "clinic_id": "C001",
        "settlements": [
            {
                "settlement_id": "2f6e1c7a-93d4-4d3e-9a8c-0b7f5e4d3c2a",
                "total": 2000000,
                "insurance": 1275000,
                "veteran_subsidy": 291000,
                "hardship_aid": 135800,
                "out_of_pocket": 298200,
            }
        ],
    },
    "InsurerReconciliationRequest": {
        "day": "2026-05-01",
        "clinic_id": "C001",
        "clinic_list": [
            {
                "settlement_id": "2f6e1c7a-93d4-4d3e-9a8c-0b7f5e4d3c2a",
                "total": 40000000,
                "insurance": 20000000,
                "veteran_subsidy": 0,
                "hardship_aid": 4865625,
                "out_of_pocket": 1310937,
                "other_funds": {"critical_illness": 13512500, "tilted_aid": 310938},
                "request_id": "demo-0001",
            }
        ],
    },
    "WhatIfRequest": {"policy": _CANDIDATE_POLICY, "from": "2026-01-01", "to": "2026-06-30", "by": "level"},
}
# A browser form's example, field by field.
_FORM_EXAMPLE = {"policy": _CANDIDATE_POLICY, "from": "2026-01-01", "to": "2026-06-30", "by": "level"}


def _body(name: str) -> dict[str, Any]:
    if name not in _EXAMPLES:
        raise ValueError(f"request body {name} has no example: give one in _EXAMPLES")
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{name}"}, "example": _EXAMPLES[name]}
    return {"required": True, "content": {"application/json": media, "application/msgpack": media}}


def _form(fields: tuple[Param, ...]) -> dict[str, Any]:
    """A browser form's body: its fields as an object, sent form-encoded or as multipart (for a file upload)."""
    schema = {
        "type": "object",
        "properties": {param.name: param.schema | {"description": param.description} for param in fields},
        "required": [param.name for param in fields if param.required],
    }
    example = {param.name: _FORM_EXAMPLE[param.name] for param in fields if param.name in _FORM_EXAMPLE}
    media = {"schema": schema, "example": example}
    return {"required": True, "content": {"application/x-www-form-urlencoded": media, "multipart/form-data": media}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": "Problem", "content": _PROBLEM} for status in statuses}


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
# The schema of each parameter a route's path may name.
_PATH_PARAMETERS = {
    "settlement_id": {"type": "string", "format": "uuid"},
    "order_id": {"type": "string", "format": "uuid"},
    "number": {"type": "string", "pattern": RECEIPT_NUMBER_PATTERN},
}
_SIGNED = (401, 403, 429, 503)  # any signed route may answer these
_WITH_BODY = (400, 413, 415, 422)  # and any route that takes a body these


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document for ``routes`` (``gateway.http.routes.ROUTES``, or an app's ``routes_key``)."""
    routes = list(routes)
    models = _models(routes)
    schemas, components = msgspec.json.schema_components(
        [model for _, model in models], ref_template="#/components/schemas/{name}"
    )
    # As JSON has them: msgspec gives a tuple field's default as a Python tuple.
    schemas, components = msgspec.json.decode(msgspec.json.encode((schemas, components)))
    for (name, _), schema in zip(models, schemas, strict=True):
        if schema != {"$ref": f"#/components/schemas/{name}"}:  # a union of Structs has no component of its own
            components[name] = schema
    if "ItemIn" in components:  # rules of a bill line beyond JSON Schema
        components["ItemIn"] |= api.ItemIn.schema_rules
    paths: dict[str, Any] = {}
    operation_ids: dict[str, str] = {}
    for route in routes:
        operations = paths.setdefault(route.path, {})
        method = route.method.lower()
        if method in operations:
            raise ValueError(f"{route.method} {route.path} is in the route table twice")
        operation = _operation(route)
        taken = operation_ids.setdefault(operation["operationId"], f"{route.method} {route.path}")
        if taken != f"{route.method} {route.path}":
            raise ValueError(
                f"operationId {operation['operationId']} names both {taken} and {route.method} {route.path}"
            )
        operations[method] = operation
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


def _name(reply_or_model: Any) -> str:
    if isinstance(reply_or_model, Reply):
        return reply_or_model.name or reply_or_model.model.__name__
    return str(reply_or_model.__name__)


def _models(routes: list[Route]) -> list[tuple[str, Any]]:
    """(component name, model) for every request and answer model the routes name, and the problem."""
    named: dict[str, Any] = {api.Problem.__name__: api.Problem}
    for route in routes:
        found = [(_name(route.doc.body), route.doc.body)] if route.doc.body is not None else []
        found += [(_name(reply), reply.model) for reply in route.doc.replies if reply.model is not None]
        for name, model in found:
            if named.setdefault(name, model) is not model:
                raise ValueError(f"two models are named {name}: {named[name]!r} and {model!r}")
    return list(named.items())


def _operation(route: Route) -> dict[str, Any]:
    doc: Doc = route.doc
    if not doc.summary or not doc.replies:
        raise ValueError(
            f"{route.method} {route.path} is served but not documented: give its Doc a summary and replies"
        )
    operation: dict[str, Any] = {"operationId": operation_id(route), "summary": doc.summary}
    if route.roles is OPEN:
        operation["security"] = _OPEN
    parameters = [_path_parameter(route, name) for name in re.findall(r"{(\w+)}", route.path)]
    parameters += [_query(param) for param in doc.query]
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = _body(_name(doc.body))
    elif doc.form:
        operation["requestBody"] = _form(doc.form)
    responses = {str(reply.status): _reply(reply) for reply in doc.replies}
    if len(responses) < len(doc.replies):
        raise ValueError(f"{route.method} {route.path} has two replies with one status")
    problems = (*(_SIGNED if route.roles is not OPEN else ()), *(_WITH_BODY if doc.body is not None else ()))
    responses |= _errors(*sorted({*problems, *doc.errors}))
    operation["responses"] = responses
    return operation


def operation_id(route: Route) -> str:
    """The handler's name in camelCase (``get_settlement`` -> ``getSettlement``): what a generated client calls."""
    first, *rest = route.handler.__name__.strip("_").split("_")
    return first + "".join(word.capitalize() for word in rest)


def _path_parameter(route: Route, name: str) -> dict[str, Any]:
    if name not in _PATH_PARAMETERS:
        raise ValueError(f"{route.path} names {{{name}}}: give its schema in _PATH_PARAMETERS")
    return {"name": name, "in": "path", "required": True, "schema": _PATH_PARAMETERS[name]}


def _query(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.description,
        "schema": param.schema,
    }


def _reply(reply: Reply) -> dict[str, Any]:
    """One answer: a model as JSON or MessagePack (and CSV for a report), or text, or nothing but a status."""
    content: dict[str, Any] = {}
    if reply.model is not None:
        schema = {"$ref": f"#/components/schemas/{_name(reply)}"}
        content = {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}}
        if reply.csv:
            content["text/csv"] = {"schema": _TEXT}
        if reply.xlsx:
            content[XLSX_MEDIA_TYPE] = {"schema": {"type": "string", "format": "binary"}}
    for media in reply.media:
        content[media] = {"schema": _OBJECT if media == JSON else _TEXT}
    return {"description": reply.description, "content": content} if content else {"description": reply.description}


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document for the routes this app serves, encoded once."""
    state = request.app[state_key]
    if "openapi" not in state:
        state["openapi"] = _json.encode(openapi_document(request.app[routes_key]))
    return web.Response(body=state["openapi"], content_type=JSON)
