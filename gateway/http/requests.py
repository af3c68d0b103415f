"""What handlers read from a request: its typed keys, the caller, the ids in its path, its body and its query.

The middleware (``gateway/http/middleware.py``) fills in the request keys: the request id, and
once the signature is verified the terminal and its ``Terminal``. Handlers import from here
and from ``gateway/http/responses.py``, never from the app factory.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import TypeVar

import structlog
from aiohttp import web

from gateway import api_models as api
from gateway import bodies
from gateway.app_keys import settings_key
from gateway.auth import Caller
from gateway.problems import ApiError
from gateway.service import Terminal

JSON = "application/json"
MSGPACK = "application/msgpack"

T = TypeVar("T")

request_id_key = web.RequestKey("request_id", str)
clinic_key = web.RequestKey("clinic_id", str)
# Which bill and which settlement a request was about, for its log lines (the log's own ``request_id``
# is the trace id of the HTTP request; the bill's ``request_id`` is the terminal's key for the bill).
bill_request_key = web.RequestKey("bill_request_id", str)
settlement_key = web.RequestKey("settlement_id", str)


def about(request: web.Request, *, bill_request_id: str | None = None, settlement_id: str | None = None) -> None:
    """Name the bill and the settlement on this request's log line and on every line logged while it runs."""
    if bill_request_id is not None:
        request[bill_request_key] = bill_request_id
        structlog.contextvars.bind_contextvars(bill_request_id=bill_request_id)
    if settlement_id is not None:
        request[settlement_key] = settlement_id
        structlog.contextvars.bind_contextvars(settlement_id=settlement_id)


terminal_key = web.RequestKey("terminal_id", str)
problem_code_key = web.RequestKey("problem_code", str)
caller_key = web.RequestKey("caller", Terminal)
unclaimed_write_key = web.RequestKey("unclaimed_write", Caller)


for _model in (api.SettleRequest, api.ReversalRequest, api.PersonRequest, api.EligibilityRequest):
    bodies.decoders(_model)  # built once at import, never on the request path


async def decode_body(request: web.Request, model: type[T], *, max_lines: int | None = None) -> T:
    """The body as ``model``. With ``max_lines``, a bill with more lines is refused before any line is decoded."""
    content_type = request.content_type
    if content_type not in (JSON, MSGPACK):
        raise ApiError(415, "unsupported_media_type", f"Content-Type {content_type or '(none)'} is not accepted")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, "body_too_large", f"the body is larger than {request.app[settings_key].max_body_bytes} bytes"
        ) from None
    return bodies.decode(model, body, msgpack=content_type == MSGPACK, max_lines=max_lines)


def caller(request: web.Request) -> Terminal:
    """The verified terminal behind a signed request."""
    return request[caller_key]


def settlement_id(request: web.Request) -> uuid.UUID:
    """The settlement id in the path; a malformed one is a settlement that does not exist."""
    try:
        return uuid.UUID(request.match_info["settlement_id"])
    except ValueError:
        raise ApiError(404, "settlement_not_found", "no such settlement") from None


# A date in a query is YYYY-MM-DD with ASCII digits, as in request bodies. dt.date.fromisoformat alone would
# also take 20260501 and ISO week dates (2026-W18-5), which the OpenAPI document does not promise.
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE = re.compile(DATE_PATTERN)


def query_date(request: web.Request, name: str) -> dt.date | None:
    """The date in query parameter ``name``, None when it is absent; 422 naming it when it is not a date."""
    value = request.query.get(name)
    if value is None:
        return None
    if _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:  # 2026-02-30
            pass
    raise ApiError(422, "validation_failed", f"{name} must be a date, YYYY-MM-DD", field=name)


# A month is YYYY-MM, from 0001-01 to 9999-12, as a date's year and month can be.
MONTH_PATTERN = r"^(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)-(?:0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


def query_month(request: web.Request, name: str) -> dt.date | None:
    """The month (``YYYY-MM``) in query parameter ``name`` as its first day, None when absent; 422 naming it
    when it is not a month."""
    value = request.query.get(name)
    if value is None:
        return None
    if _MONTH.fullmatch(value):
        return dt.date.fromisoformat(f"{value}-01")
    raise ApiError(422, "validation_failed", f"{name} must be a month, YYYY-MM", field=name)


_WHOLE_NUMBER = re.compile(r"0|[1-9][0-9]{0,8}")

# A receipt number as printed (``0F3A-9C1E-77B0``), or typed without its hyphens or in lower case: 12 to 32 hex
# digits, four at a time (gateway/http/handlers/receipts.py receipt_number).
RECEIPT_NUMBER_PATTERN = r"^(?:[0-9A-Fa-f]{4}-?){2}[0-9A-Fa-f]{4}(?:-?[0-9A-Fa-f]{4}){0,5}$"


def query_int(request: web.Request, name: str, default: int) -> int:
    """The whole number (ASCII digits, no leading zero) in query parameter ``name``, ``default`` when absent;
    422 naming it else."""
    value = request.query.get(name)
    if value is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(value):
        raise ApiError(422, "validation_failed", f"{name} must be a whole number", field=name)
    return int(value)


def query_text(request: web.Request, name: str, pattern: re.Pattern[str]) -> str | None:
    """The text in query parameter ``name``, None when absent; 422 naming it when ``pattern`` does not match
    it whole (it bounds the length and keeps out what PostgreSQL cannot store, such as NUL)."""
    value = request.query.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise ApiError(422, "validation_failed", f"{name} is not a valid {name.replace('_', ' ')}", field=name)
    return value


def wants_csv(request: web.Request) -> bool:
    """CSV for ``format=csv`` or ``Accept: text/csv``. A format other than json or csv is refused, not
    answered as JSON: a typo such as ``format=cvs`` should not look like a changed file format."""
    return report_format(request, "json", "csv") == "csv"


def report_format(request: web.Request, *formats: str) -> str:
    """The report format asked for, one of ``formats`` (the first is the default): ``format=...``, else
    CSV when ``Accept`` names text/csv and CSV is one of them. Another format is refused with 422."""
    form = request.query.get("format")
    if form is None:
        return "csv" if "csv" in formats and "text/csv" in request.headers.get("Accept", "") else formats[0]
    if form not in formats:
        raise ApiError(422, "validation_failed", f"format must be {' or '.join(formats)}", field="format")
    return form


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str:
    """The value of query parameter ``name``, one of ``choices`` (the first is the default); 422 naming it else."""
    value = request.query.get(name, choices[0])
    if value not in choices:
        raise ApiError(422, "validation_failed", f"{name} must be one of {', '.join(choices)}", field=name)
    return value
