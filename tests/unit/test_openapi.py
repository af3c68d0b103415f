"""/openapi.json is built from the route table: every route documented, none twice, nothing by hand.

Each entry of ``gateway.http.routes.ROUTES`` carries its ``Doc``; a route without one cannot be
made, and one whose Doc says nothing, or that is listed twice, stops the document being built.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from gateway import api_models as api
from gateway.http.openapi import openapi_document
from gateway.http.routes import ROUTES
from gateway.http.routing import OPEN, TERMINAL, Doc, Reply, Route, RouteTable

DOCUMENT = openapi_document(ROUTES)


async def _handler(request: web.Request) -> web.Response:
    return web.Response()


async def _other(request: web.Request) -> web.Response:
    return web.Response()


PLAIN = Doc("A plain route", replies=(Reply(model=api.ClinicsOut),))


def test_each_route_is_one_operation_of_the_document() -> None:
    documented = [(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item]
    assert sorted(documented) == sorted((route.method, route.path) for route in ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
def test_each_operation_says_what_the_route_answers(route: Route) -> None:
    operation = DOCUMENT["paths"][route.path][route.method.lower()]
    assert operation["summary"] == route.doc.summary
    assert {str(reply.status) for reply in route.doc.replies} <= set(operation["responses"])
    assert ("security" in operation) == (route.roles is OPEN), "open routes, and only they, need no signature"
    if route.roles is not OPEN:
        assert {"401", "403", "429", "503"} <= set(operation["responses"])
    if route.doc.body is not None:
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/" + route.doc.body.__name__
        )
        assert {"400", "413", "415", "422"} <= set(operation["responses"])


def test_every_model_named_has_a_schema() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for route in ROUTES:
        named = [reply.name or reply.model.__name__ for reply in route.doc.replies if reply.model is not None]
        named += [route.doc.body.__name__] if route.doc.body is not None else []
        assert set(named) <= set(schemas), (route.method, route.path)
    assert "Problem" in schemas


def test_a_route_cannot_be_made_without_its_doc() -> None:
    with pytest.raises(TypeError):
        Route("GET", "/v1/undocumented", _handler, TERMINAL)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "doc",
    [
        Doc("", replies=(Reply(model=api.ClinicsOut),)),  # no summary
        Doc("Clinics", replies=()),  # no answer
        Doc("Clinics", replies=(Reply(model=api.ClinicsOut), Reply(description="again"))),  # two 200s
    ],
)
def test_a_route_documented_with_nothing_stops_the_document(doc: Doc) -> None:
    with pytest.raises(ValueError, match="/v1/new"):
        openapi_document([*ROUTES, Route("GET", "/v1/new", _handler, TERMINAL, doc)])


def test_a_route_listed_twice_stops_the_document() -> None:
    twice = dataclasses.replace(ROUTES[0], handler=_handler)
    with pytest.raises(ValueError, match="twice"):
        openapi_document([*ROUTES, twice])


def test_a_path_parameter_needs_its_schema() -> None:
    with pytest.raises(ValueError, match="clinic_code"):
        openapi_document([Route("GET", "/v1/clinics/{clinic_code}", _handler, TERMINAL, PLAIN)])


def test_two_models_of_one_name_stop_the_document() -> None:
    class ClinicsOut(api.ClinicsOut):  # another Struct by the same name
        pass

    routes = [
        Route("GET", "/v1/a", _handler, TERMINAL, PLAIN),
        Route("GET", "/v1/b", _other, TERMINAL, Doc("B", replies=(Reply(model=ClinicsOut),))),
    ]
    with pytest.raises(ValueError, match="ClinicsOut"):
        openapi_document(routes)


def test_one_handler_serves_one_route() -> None:
    with pytest.raises(ValueError, match="_handler"):
        RouteTable([Route("GET", "/v1/a", _handler, TERMINAL, PLAIN), Route("GET", "/v1/b", _handler, TERMINAL, PLAIN)])


def test_every_operation_has_its_own_operation_id_in_camel_case() -> None:
    document = openapi_document(ROUTES)
    ids = [operation["operationId"] for item in document["paths"].values() for operation in item.values()]
    assert len(ids) == len(set(ids)) == len(ROUTES)
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", operation_id) for operation_id in ids), ids
    assert document["paths"]["/v1/settlements/{settlement_id}"]["get"]["operationId"] == "getSettlement"


def test_two_handlers_of_one_name_stop_the_document() -> None:
    async def settle(request: object) -> None: ...

    clash = Route("POST", "/v1/other-settle", settle, TERMINAL, PLAIN)
    with pytest.raises(ValueError, match="operationId settle"):
        openapi_document([*[route for route in ROUTES if route.handler.__name__ == "settle"], clash])


def test_the_document_is_valid_openapi_for_the_tools_integrators_use() -> None:
    """What Swagger UI, Postman and code generators need first: a document the OpenAPI 3.1 schema accepts."""
    document = openapi_document(ROUTES)
    validate(document)
    broken = {**document, "paths": {"/v1/x": {"get": {"responses": "not a mapping"}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_the_document_describes_the_payer_chain() -> None:
    """Integrators generate clients from the document: every payer of a chain, a bill's referral and
    each fund's standing must be in it."""
    schemas = DOCUMENT["components"]["schemas"]
    assert {"fund", "name", "amount", "trace"} <= set(schemas["PayerOut"]["properties"])
    settlement = schemas["SettlementOut"]["properties"]
    assert settlement["payers"]["items"] == {"$ref": "#/components/schemas/PayerOut"}
    assert {"referral", "counters_after"} <= set(settlement)
    assert schemas["SettleRequest"]["properties"]["referral"] == {"type": "boolean", "default": False}
    assert "payers" in schemas["LineBreakdown"]["properties"]
    assert schemas["EligibilityOut"]["properties"]["funds"]["items"] == {"$ref": "#/components/schemas/FundStanding"}


def _request_bodies(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", media_type, media)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items()
    ]


@pytest.mark.parametrize(
    ("operation", "media_type", "media"), _request_bodies(DOCUMENT), ids=lambda value: str(value)[:40]
)
def test_every_request_body_has_an_example_its_schema_accepts(
    operation: str, media_type: str, media: dict[str, Any]
) -> None:
    """Swagger UI and Postman fill a request in from the example: it must be one the schema accepts."""
    assert "example" in media, f"{operation} {media_type} has no example"
    schema = {**media["schema"], "components": DOCUMENT["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not list(validator.iter_errors(media["example"])), operation


def test_an_example_that_breaks_its_schema_is_caught() -> None:
    bill = dict(DOCUMENT["paths"]["/v1/settlements"]["post"]["requestBody"]["content"]["application/json"]["example"])
    schema = {"$ref": "#/components/schemas/SettleRequest", "components": DOCUMENT["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors({**bill, "service_date": "2026-13-01"}))
    assert list(validator.iter_errors({**bill, "items": []}))


def test_a_request_body_without_an_example_stops_the_document() -> None:
    class NewRequest(api.Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
        note: str

    route = Route("POST", "/v1/new", _handler, TERMINAL, dataclasses.replace(PLAIN, body=NewRequest))
    with pytest.raises(ValueError, match="NewRequest has no example"):
        openapi_document([route])


def test_the_signing_scheme_is_the_document_s_security() -> None:
    """Tools send security schemes as credentials: the four signature headers, required together."""
    schemes = DOCUMENT["components"]["securitySchemes"]
    headers = {scheme["name"] for scheme in schemes.values() if scheme["type"] == "apiKey" and scheme["in"] == "header"}
    assert headers == {"X-Key-Id", "X-Timestamp", "X-Nonce", "X-Signature"}
    assert DOCUMENT["security"] == [{scheme: [] for scheme in schemes}]
