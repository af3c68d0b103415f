"""Settlements: settle a bill, quote one, read a stored settlement, reverse it, search them.

Each handler decodes the body, calls the use case on ``Service`` (``gateway/service.py``) and
encodes its answer; refusals are raised as ``SettlementError`` or ``ApiError`` and rendered by
the middleware.
"""

from __future__ import annotations

import re

from aiohttp import web

from adapters.settlement_search import DEFAULT_PAGE, Cursor, Search, SearchError
from gateway import api_models as api
from gateway.app_keys import reports_key, service_key, settings_key
from gateway.http.requests import (
    about,
    caller,
    clinic_key,
    decode_body,
    query_date,
    query_int,
    query_text,
    settlement_id,
)
from gateway.http.responses import respond, respond_answer
from gateway.problems import ApiError
from gateway.service import china_today

# Query text as the request bodies take it: a clinic id of printable characters, a request id as a terminal sends it.
CLINIC_ID = re.compile(r"[^\x00-\x1f\x7f]{1,32}")
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


async def settle(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = caller(request)
    body = await decode_body(request, api.SettleRequest, max_lines=request.app[settings_key].max_lines)
    request[clinic_key] = body.clinic_id
    about(request, bill_request_id=body.request_id)
    answer = await service.settle(terminal, body)
    about(request, settlement_id=str(answer.value.settlement_id))
    return respond_answer(request, answer, 201)


async def quote(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = caller(request)
    body = await decode_body(request, api.SettleRequest, max_lines=request.app[settings_key].max_lines)
    request[clinic_key] = body.clinic_id
    return respond(request, await service.quote(terminal, body))


async def get_settlement(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = caller(request)
    return respond(request, await service.get_settlement(terminal, settlement_id(request)))


async def reverse(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = caller(request)
    reversed_id = settlement_id(request)
    about(request, settlement_id=str(reversed_id))
    body = await decode_body(request, api.ReversalRequest)
    about(request, bill_request_id=body.request_id)
    answer = await service.reverse(terminal, reversed_id, body)
    return respond_answer(request, answer, 201)


async def search_settlements(request: web.Request) -> web.Response:
    """Settlements booked from ``from`` to ``to`` (the first of to's month .. today by default), optionally of
    one clinic and with one request id, a page at a time (``limit``, ``after``). A terminal sees only its
    own clinic's."""
    terminal = caller(request)
    end = query_date(request, "to") or china_today()
    start = query_date(request, "from") or end.replace(day=1)
    clinic = query_text(request, "clinic", CLINIC_ID)
    if terminal.role == "terminal":
        if clinic is not None and clinic != terminal.clinic_id:
            raise ApiError(403, "forbidden", "a terminal may search only its own clinic's settlements", field="clinic")
        clinic = terminal.clinic_id
    if clinic is not None:
        request[clinic_key] = clinic
    after = request.query.get("after")
    try:
        cursor = Cursor.parse(after) if after is not None else None
    except ValueError:
        raise ApiError(422, "validation_failed", "after must be a page's next cursor", field="after") from None
    search = Search(
        start=start,
        end=end,
        clinic_id=clinic,
        request_id=query_text(request, "request_id", REQUEST_ID),
        limit=query_int(request, "limit", DEFAULT_PAGE),
        after=cursor,
    )
    try:
        page = await request.app[reports_key].search_settlements(search)
    except SearchError as error:
        raise ApiError(422, error.code, str(error), field=error.field) from None
    return respond(request, page)
