"""One error vocabulary, rendered once as ``application/problem+json``.

Every error the API returns has a stable ``code``. Handlers raise ``ApiError``;
the error middleware renders it, and turns anything unexpected into a 500 with
no internals (the traceback goes to the log only).
"""

from __future__ import annotations

import msgspec

from adapters.identity import redact
from settlement.errors import SettlementError

PROBLEM_BASE = "https://medsettle.example/problems/"

# The HTTP status of each refusal the engine and the use cases raise by code (SettlementError,
# settlement.errors.Refused); card-reader frames carry the same status. A code missing here is 422.
STATUS = {
    "invalid_bill": 422,
    "category_mismatch": 422,
    "unit_price_required": 422,
    "inpatient_not_offered": 422,
    "no_policy_in_force": 422,
    "unknown_programme_code": 422,
    "invalid_national_id": 422,
    "unknown_person": 422,
    "unknown_clinic": 422,
    "unknown_fund": 422,
    "service_date_in_future": 422,
    "invalid_membership": 422,
    "invalid_policy": 422,
    "window_too_large": 422,
    "validation_failed": 422,
    "idempotency_key_reused": 422,
    "nonce_reused": 401,
    "terminal_not_for_clinic": 403,
    "settlement_not_found": 404,
    "request_in_flight": 409,
    "request_already_settled": 409,
    "already_reversed": 409,
    "insurer_refused": 422,
    "insurer_disagrees": 502,
    "insurer_unavailable": 503,
}

TITLES = {
    "bad_request": "The request could not be read",
    "duplicate_key": "A key appears more than once in one object",
    "validation_failed": "A field is missing or has the wrong type or value",
    "unsupported_media_type": "Send application/json or application/msgpack",
    "body_too_large": "The request body is too large",
    "too_many_lines": "The bill has too many lines",
    "invalid_national_id": "The national ID number is not valid",
    "unknown_person": "No person is registered under this national ID",
    "unknown_clinic": "No such clinic",
    "unknown_fund": "No such fund in the policy book or the ledger",
    "signature_missing": "The request is not signed",
    "timestamp_out_of_window": "The request timestamp is too far from the gateway's clock",
    "bad_nonce": "The request nonce is malformed",
    "unknown_key": "No terminal key has this id",
    "bad_signature": "The request signature does not match",
    "nonce_reused": "The request nonce was already used",
    "terminal_revoked": "The key is retired or the terminal has been revoked",
    "session_expired": "The dashboard session has ended; sign in with a new link",
    "forbidden": "The caller's role may not use this route",
    "rate_limited": "Too many requests from this terminal",
    "terminal_not_for_clinic": "This terminal may not act for that clinic",
    "service_date_in_future": "The service date is in the future",
    "idempotency_key_reused": "This request id was already used with a different body",
    "request_in_flight": "A request with this id is still being processed",
    "request_already_settled": "This request id settled earlier; its stored answer has expired",
    "settlement_not_found": "No such settlement",
    "already_reversed": "The settlement has already been reversed",
    "not_found": "No such resource",
    "method_not_allowed": "Method not allowed",
    "database_unavailable": "The database is unavailable; retry with the same request id",
    "shutting_down": "The gateway is shutting down; retry with the same request id",
    "deadline_exceeded": "No answer within the request deadline; retry with the same request id",
    "request_timeout": "The client did not send the whole request in time",
    "headers_too_large": "The request line or headers are too large",
    "internal_error": "Internal error",
    "invalid_bill": "The bill is not valid",
    "category_mismatch": "A line's category disagrees with the item catalogue",
    "unit_price_required": "A price-capped item needs its quantity and unit price",
    "inpatient_not_offered": "This clinic offers no inpatient care",
    "no_policy_in_force": "No policy is in force on the service date",
    "unknown_programme_code": "The person's programme has no rule in the policy",
    "invalid_membership": "A membership is not valid",
    "invalid_policy": "The candidate policy file does not load",
    "window_too_large": "The window holds too many settlements for one request",
    "range_too_wide": "The range of days is wider than one request may ask",
    "receipt_not_found": "No settlement has this receipt number",
    "receipt_number_shared": "More than one settlement begins with this receipt number; give more digits",
    "insurer_refused": "The insurer's core refused the bill",
    "insurer_disagrees": "The insurer's answer cannot be booked on this bill; it was undone",
    "insurer_unavailable": "The insurer's core is unavailable; retry with the same request id",
    "insurer_query_refused": "The insurer's core refused a reconciliation query",
    "no_insurer": "No policy version settles beside an insurer's core",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
        server_time: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.retry_after = retry_after
        self.server_time = server_time

    @property
    def title(self) -> str:
        return TITLES.get(self.code, self.code.replace("_", " "))

    @classmethod
    def from_engine(cls, error: SettlementError) -> ApiError:
        return cls(
            STATUS.get(error.code, 422),
            error.code,
            error.detail,
            field=error.field,
            retry_after=getattr(error, "retry_after", None),
        )


def unavailable(detail: str = "the database did not answer", retry_after: int = 2) -> ApiError:
    return ApiError(503, "database_unavailable", detail, retry_after=retry_after)


def validation_failed(error: msgspec.ValidationError) -> ApiError:
    """A msgspec validation error as a 422 problem naming the field path (``items[0].amount``)."""
    message = str(error)
    field = None
    if " - at `$." in message:
        message, path = message.rsplit(" - at `$.", 1)
        field = path.rstrip("`")
    elif " - at `$`" in message:
        message = message.rsplit(" - at `$`", 1)[0]
    if message.startswith(("Object missing required field", "Object contains unknown field")):
        field = (f"{field}." if field else "") + message.split("`")[1]
    return ApiError(422, "validation_failed", message, field=field)


def shown(text: str) -> str:
    """Text a refusal quotes (a JSON key, a path, a header) as it may be shown to the caller.

    A national ID in it is masked; characters that cannot be sent as UTF-8 (undecodable bytes
    a client sent) are escaped rather than failing the answer.
    """
    return redact(text).encode("utf-8", "backslashreplace").decode("utf-8")
