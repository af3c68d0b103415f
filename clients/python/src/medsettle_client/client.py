"""A billing terminal's client: every request signed, retried safely, answered as typed values.

A settlement or reversal carries the terminal's ``request_id``. When the outcome of a request is
unknown (a timeout, a dropped connection) or the gateway asks for a retry (429, 503 with
``Retry-After``), the client sends the very same body bytes again, freshly signed: the gateway
answers a retry with the first result (``replayed``) and never settles twice. Retries are bounded
in count; the wait between them grows and honours ``Retry-After``.
"""

from __future__ import annotations

import http.client
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from medsettle_client import signing
from medsettle_client.models import Bill, Eligibility, Problem, Reversal, Settlement

T = TypeVar("T")

# Statuses that ask for the same request again; any other answer is final.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_encoder = msgspec.json.Encoder()


class GatewayError(Exception):
    """The gateway refused the request: ``problem.code`` says why, ``problem.field`` where."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.code}: {problem.detail}")
        self.problem = problem


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP answer as received, after ``attempts`` tries."""

    status: int
    body: bytes
    headers: dict[str, str]
    attempts: int


class Client:
    """Signs as one terminal (``key_id``, ``secret``) against the gateway at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.secret = secret
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._sleep = sleep

    # ------------------------------------------------------------ the operations a terminal uses

    def settle(self, bill: Bill | Mapping[str, Any]) -> Settlement:
        """Settle a bill; the same bill again (same ``request_id``) answers the first settlement, ``replayed``."""
        return self._call("POST", "/v1/settlements", bill, Settlement)

    def get_settlement(self, settlement_id: str) -> Settlement:
        return self._call("GET", f"/v1/settlements/{urllib.parse.quote(settlement_id)}", None, Settlement)

    def reverse(self, settlement_id: str, request_id: str, reason: str = "") -> Reversal:
        """Reverse a settlement under the terminal's own ``request_id`` for the reversal."""
        path = f"/v1/settlements/{urllib.parse.quote(settlement_id)}/reversal"
        return self._call("POST", path, {"request_id": request_id, "reason": reason}, Reversal)

    def eligibility(self, person_id: str, service_date: str | None = None) -> Eligibility:
        body = {"person_id": person_id} | ({"service_date": service_date} if service_date else {})
        return self._call("POST", "/v1/eligibility", body, Eligibility)

    # ------------------------------------------------------------ the transport

    def request(self, method: str, path: str, body: bytes = b"") -> Answer:
        """Send one signed request, and again with the same body while the outcome is unknown or a retry is
        asked for, at most ``attempts`` times. The last answer is returned whatever its status; the last
        timeout or connection error is raised."""
        for attempt in range(1, self.attempts + 1):
            headers = signing.signed_headers(self.key_id, self.secret, method, path, body)
            if body:
                headers["Content-Type"] = "application/json"
            request = urllib.request.Request(self.base_url + path, data=body or None, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = Answer(
                        status=response.status, body=response.read(), headers=dict(response.headers), attempts=attempt
                    )
            except urllib.error.HTTPError as error:  # a 4xx or 5xx answer: read, not raised
                answer = Answer(status=error.code, body=error.read(), headers=dict(error.headers), attempts=attempt)
            except (TimeoutError, ConnectionError, http.client.HTTPException, urllib.error.URLError):
                if attempt == self.attempts:
                    raise
                self._wait(attempt, retry_after=0.0)
                continue
            if answer.status not in RETRY_STATUSES or attempt == self.attempts:
                return answer
            self._wait(attempt, retry_after=float(answer.headers.get("Retry-After") or 0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _call(self, method: str, path: str, body: Any, answer_type: type[T]) -> T:
        payload = b"" if body is None else _encoder.encode(body)  # encoded once: every retry sends these bytes
        answer = self.request(method, path, payload)
        if answer.status >= 400:
            raise GatewayError(_problem(answer))
        return msgspec.json.decode(answer.body, type=answer_type)

    def _wait(self, attempt: int, *, retry_after: float) -> None:
        # Jitter keeps terminals that failed together from retrying together.
        self._sleep(max(retry_after, self.backoff * 2 ** (attempt - 1)) * random.uniform(1.0, 1.5))


def _problem(answer: Answer) -> Problem:
    try:
        return msgspec.json.decode(answer.body, type=Problem)
    except msgspec.DecodeError:  # not a problem document (a proxy's error page): keep the status
        return Problem(status=answer.status, code="http_error", detail=answer.body[:200].decode(errors="replace"))
