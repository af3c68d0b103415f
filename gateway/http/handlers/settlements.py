"""Settlements: settle a bill, quote one, read a stored settlement, reverse it.

Each handler decodes the body, calls the use case on ``Service`` (``gateway/service.py``) and
encodes its answer; refusals are raised as ``SettlementError`` or ``ApiError`` and rendered by
the middleware.
"""

from __future__ import annotations

from aiohttp import web

from gateway import api_models as api
from gateway.app_keys import service_key, settings_key
from gateway.http.requests import about, caller, clinic_key, decode_body, settlement_id
from gateway.http.responses import respond, respond_answer


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
