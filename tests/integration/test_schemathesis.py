"""Schemathesis against the gateway's own OpenAPI document, every request signed.

A real ``medsettle serve`` on 127.0.0.1 answers requests that Schemathesis generates
from the document the gateway serves at ``/openapi.json``: its examples, boundary
values (the coverage phase) and random ones, both fitting the schema and not. Each is
signed as a terminal whose role may call the route, so the requests reach the
handlers instead of stopping at the signature check. Every answer must:

- not be a server error (``not_a_server_error``);
- have a documented status code, content type, headers and body
  (``status_code_conformance``, ``content_type_conformance``,
  ``response_headers_conformance``, ``response_schema_conformance``);
- refuse a request that does not fit the schema (``negative_data_rejection``);
- accept a request that fits it (``positive_data_acceptance``), so the document is no
  looser than the gateway's validators. The allowances are for refusals no JSON Schema
  can state, each named in ``BUSINESS_RULES``: a check character, who is registered,
  the policy in force, today's date, arithmetic across fields; and ``WHOLE_FLOAT``, an
  integer spelled 2.0 in JSON.

Bodies go as JSON or as MessagePack, as the document offers both; every operation that
takes a body must have MessagePack bodies reach its handler's validation, not stop at
the decoder (``test_message_pack_bodies_reach_the_handlers``).

Bounded to about half a minute: 25 examples per operation and mode (set
``MEDSETTLE_SCHEMATHESIS_EXAMPLES`` for a deeper run). Examples come
from the run's Hypothesis seed (``tests/conftest.py`` prints it; ``--hypothesis-seed=N``
replays them).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, reject, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters import signing
from gateway.config import load_settings
from gateway.http.app import create_app
from gateway.http.openapi import openapi_document
from gateway.http.routes import ROUTES
from tests.integration.processes import free_port, start_gateway

pytestmark = pytest.mark.integration

# Refusals (422, by code) of a request the schema allows, for reasons beyond JSON Schema. Each predicate is as
# narrow as the rule: a shape the document could state (an ID's length, quantity without unit_price) stays a failure.
BUSINESS_RULES: dict[str, Any] = {
    # The ID's shape is in the schema; its birth date and GB 11643 check character are not.
    "invalid_national_id": lambda problem: re.search(r"birth date|check character", problem["detail"]),
    # Who is registered, which clinics exist, and what the policy in force says.
    "unknown_person": lambda problem: True,
    "unknown_clinic": lambda problem: True,
    "inpatient_not_offered": lambda problem: True,
    "no_policy_in_force": lambda problem: True,
    "unknown_programme_code": lambda problem: True,
    "invalid_membership": lambda problem: True,  # codes come from the policy; history must not contradict itself
    "unknown_fund": lambda problem: True,  # the funds a reconciliation names come from the policies and the ledger
    # Today's date (China time) and what this terminal sent before under the same request id.
    "service_date_in_future": lambda problem: True,
    "idempotency_key_reused": lambda problem: True,
    # quantity × unit_price = amount. (quantity and unit_price together or neither is in the schema.) And a line's
    # category, optional in the schema, is required on a service date when no item catalogue is in force to decide it.
    # Admission dates belong to an inpatient bill, the discharge not before the admission.
    "invalid_bill": lambda problem: (
        problem.get("field") in ("admitted_on", "discharged_on")
        or re.fullmatch(r"items\[\d+\]\.amount", problem.get("field") or "")
        or (
            re.fullmatch(r"items\[\d+\]\.category", problem.get("field") or "")
            and "no item catalogue is in force" in problem["detail"]
        )
    ),
    # A reconciliation list names each settlement once: uniqueness by one property of the items. A what-if's
    # window starts no later than it ends. A search's cursor is one a page gave. An annual statement's year is not
    # in the future (today's date, China time); a day reconciled with the insurer is from 2000 to tomorrow.
    "validation_failed": lambda problem: (
        (problem.get("field") in ("settlements", "clinic_list") and "listed twice" in problem["detail"])
        or (problem.get("field") == "day" and re.search(r"after tomorrow|before 2000", problem["detail"]))
        or (problem.get("field") == "from" and "after" in problem["detail"])
        or problem.get("field") == "after"
        or (problem.get("field") == "year" and "later than this year" in problem["detail"])
    ),
    # A range of days (a search, totals to reconcile) spans at most 367: arithmetic across two fields.
    "range_too_wide": lambda problem: True,
    # A what-if's candidate is a policy file: TOML that docs/policy-files.md describes, beyond any schema.
    "invalid_policy": lambda problem: problem.get("field") == "policy",
}


# JSON Schema counts 2.0 as the integer 2, and Schemathesis sends whole numbers so spelled in JSON bodies. The
# gateway takes counts and fen only as JSON integers (100, never 100.0: tests/integration/test_bad_input.py), a rule
# of spelling that no schema keyword can state; the document says it in words.
WHOLE_FLOAT = re.compile(r"Expected `int( \| null)?`, got `float`")


def positive_data_acceptance_save_business_rules(
    ctx: CheckContext, response: Response, case: schemathesis.Case
) -> bool | None:
    """Schemathesis' ``positive_data_acceptance``, letting through only the refusals in ``BUSINESS_RULES``."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code == 422:
            problem = json.loads(response.content)
            rule = BUSINESS_RULES.get(problem.get("code"))
            if rule is not None and rule(problem):
                return None
            if case.media_type == "application/json" and WHOLE_FLOAT.fullmatch(problem["detail"]):
                return None
        raise


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance_save_business_rules,
]
# Who signs: a role each route lets in (README, "API"). Terminals act for clinic C001.
SIGNER = {
    ("POST", "/v1/people"): "admin-1",
    ("GET", "/v1/registry/stats"): "finance-1",
    ("GET", "/v1/finance/daily"): "finance-1",
    ("GET", "/v1/finance/stats"): "finance-1",
    ("POST", "/v1/finance/reconciliation"): "finance-1",
    ("POST", "/v1/finance/reconciliation/totals"): "finance-1",
    ("POST", "/v1/finance/reconciliation/insurer"): "finance-1",
    ("GET", "/v1/finance/adjustments"): "finance-1",
    ("POST", "/v1/finance/adjustments/{order_id}/close"): "finance-1",
    ("GET", "/v1/finance/monthly"): "finance-1",
    ("POST", "/v1/people/statement"): "finance-1",
    ("POST", "/v1/finance/what-if"): "finance-1",
}
DEFAULT_SIGNER = "term-C001"
MSGPACK = "application/msgpack"

# A few dozen per operation and mode keeps the run near half a minute; MEDSETTLE_SCHEMATHESIS_EXAMPLES=500 digs deeper.
EXAMPLES = int(os.environ.get("MEDSETTLE_SCHEMATHESIS_EXAMPLES", "25"))
CONFIG = schemathesis.Config.from_dict(
    {
        # The signature headers are credentials (security schemes), filled in by Gateway.send, never generated.
        "generation": {"mode": "all", "max-examples": EXAMPLES, "with-security-parameters": False},
        "phases": {"stateful": {"enabled": False}},
        # A body past the size limit is refused with 413 before it is read: a refusal like any other (the
        # document lists 413 for every route that takes a body).
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
            }
        },
    }
)
SCHEMA = schemathesis.openapi.from_dict(openapi_document(ROUTES), config=CONFIG)
# Operations that take a MessagePack body, and per operation how many MessagePack cases were sent and how many
# the handler got to look at (2xx, or a problem naming a field) rather than the decoder refusing the bytes.
TAKES_MSGPACK = {
    f"{method.upper()} {path}"
    for path, item in openapi_document(ROUTES)["paths"].items()
    for method, operation in item.items()
    if MSGPACK in operation.get("requestBody", {}).get("content", {})
}
MSGPACK_SENT: Counter[str] = Counter()
MSGPACK_DECODED: Counter[str] = Counter()


@schemathesis.serializer("application/msgpack")
def _msgpack(context: schemathesis.SerializationContext, value: Any) -> bytes:
    # The body's bytes: schemathesis.serializer puts them on the wire as the request's data itself.
    try:
        return msgspec.msgpack.encode(value)
    except OverflowError:  # an integer past 64 bits, which JSON can carry and MessagePack cannot
        reject()


@dataclass(frozen=True)
class Gateway:
    base: str
    keys: dict[str, tuple[str, str]]  # terminal -> (key id, secret)
    session: requests.Session

    def send(self, request: requests.Request, terminal: str) -> requests.Response:
        """The request as a terminal sends it: signed over the exact path, query and body bytes."""
        prepared = self.session.prepare_request(request)
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        key_id, secret = self.keys[terminal]
        prepared.headers.update(
            signing.signed_headers(key_id, secret, prepared.method or "GET", prepared.path_url, body)
        )
        return self.session.send(prepared, timeout=30)


def _wait_ready(base: str, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"the gateway did not become ready in {timeout:g} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def gateway(client: Any, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    port = free_port()
    process = start_gateway(database_url, port, tmp_path_factory.mktemp("schemathesis"))
    base = f"http://127.0.0.1:{port}"
    keys = {terminal: (key.key_id, key.secret) for terminal, key in client.by_terminal.items()}
    try:
        _wait_ready(base, process)
        with requests.Session() as session:
            yield Gateway(base, keys, session)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert "Traceback" not in stderr, stderr


def test_every_route_is_documented() -> None:
    """The routes the app registers are the document's paths, each operation once (HEAD aside)."""
    app = create_app(load_settings({}), dsn="postgresql://unused")  # nothing is opened before the app starts
    served = [(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"]
    documented = [(method.upper(), path) for path, item in openapi_document(ROUTES)["paths"].items() for method in item]
    assert sorted(served) == sorted(documented)


def test_the_served_document_is_the_one_tested(gateway: Gateway) -> None:
    response = gateway.send(requests.Request("GET", f"{gateway.base}/openapi.json"), DEFAULT_SIGNER)
    assert response.status_code == 200
    assert response.json() == json.loads(msgspec.json.encode(openapi_document(ROUTES)))


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: schemathesis.Case, gateway: Gateway) -> None:
    kwargs = case.as_transport_kwargs(base_url=gateway.base)
    request = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
        json=kwargs.get("json"),
        data=kwargs.get("data"),
    )
    response = gateway.send(request, SIGNER.get((case.method.upper(), case.path), DEFAULT_SIGNER))
    if case.media_type == MSGPACK:
        _count_msgpack(f"{case.method.upper()} {case.path}", response)
    case.validate_response(response, checks=CHECKS)


def _count_msgpack(operation: str, response: requests.Response) -> None:
    MSGPACK_SENT[operation] += 1
    problem = response.json() if response.headers.get("Content-Type", "").startswith("application/problem+json") else {}
    # The test's own encoder made these bytes: the gateway must always be able to read them.
    assert "not valid MessagePack" not in problem.get("detail", ""), problem
    if response.ok or problem.get("field"):
        MSGPACK_DECODED[operation] += 1


def test_message_pack_bodies_reach_the_handlers() -> None:
    """Every operation with a body was sent MessagePack that its handler decoded and checked field by field."""
    ran = TAKES_MSGPACK & set(MSGPACK_SENT)
    if not ran:
        pytest.skip("needs test_every_operation to have run first, in the same session")
    assert {operation: MSGPACK_DECODED[operation] for operation in ran if not MSGPACK_DECODED[operation]} == {}, (
        f"sent {dict(MSGPACK_SENT)}, decoded {dict(MSGPACK_DECODED)}"
    )
