"""People: who is covered on a date and what is left of each cap, and the admin's person records."""

from __future__ import annotations

from aiohttp import web

from gateway import api_models as api
from gateway.app_keys import service_key
from gateway.http.requests import caller, decode_body, request_id_key
from gateway.http.responses import respond


async def eligibility(request: web.Request) -> web.Response:
    service = request.app[service_key]
    body = await decode_body(request, api.EligibilityRequest)
    return respond(request, await service.eligibility(caller(request), body))


async def upsert_person(request: web.Request) -> web.Response:
    service = request.app[service_key]
    terminal = caller(request)
    body = await decode_body(request, api.PersonRequest)
    result = await service.upsert_person(body, actor=terminal.terminal_id, request_id=request[request_id_key])
    return respond(request, result, status=201 if result.created else 200)
