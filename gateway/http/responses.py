"""How the gateway answers over HTTP: JSON or MessagePack by ``Accept``, and every refusal as problem+json."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from gateway import api_models as api
from gateway.http.requests import JSON, MSGPACK, request_id_key
from gateway.problems import PROBLEM_BASE, ApiError, shown
from gateway.service import Answer

PROBLEM = "application/problem+json"

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    if MSGPACK in accept:
        return True
    return not accept and request.content_type == MSGPACK


def respond(
    request: web.Request, value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    if wants_msgpack(request):
        return web.Response(body=_msgpack.encode(value), status=status, content_type=MSGPACK, headers=headers)
    return web.Response(body=_json.encode(value), status=status, content_type=JSON, headers=headers)


def respond_answer(request: web.Request, answer: Answer, status: int) -> web.Response:
    """A settlement's or reversal's answer: ``status`` when new, 200 and marked replayed for a retry."""
    headers = {"Idempotent-Replayed": "true" if answer.replayed else "false"}
    return respond(request, answer.value, status=200 if answer.replayed else status, headers=headers)


_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def csv_response(text: str, filename: str) -> web.Response:
    """A report as a CSV download named ``filename``."""
    return download(text.encode("utf-8"), "text/csv; charset=utf-8", filename)


def download(body: bytes, content_type: str, filename: str) -> web.Response:
    """A report as a file download named ``filename``. Characters beyond letters, digits, ``.``, ``_`` and
    ``-`` become ``-``: a name can come from a caller's text (a candidate policy's id), and a quote or a
    line break would otherwise break out of the header."""
    filename = _UNSAFE_IN_FILENAME.sub("-", filename)[:120]
    return web.Response(
        body=body,
        headers={"Content-Type": content_type, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def problem_response(request: web.Request, error: ApiError) -> web.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    body = problem_body(error, request.get(request_id_key, ""))
    return web.Response(body=body, status=error.status, content_type=PROBLEM, headers=headers)


def problem_body(error: ApiError, request_id: str) -> bytes:
    """The problem document, the one place every HTTP refusal is rendered.

    ``detail`` and ``field`` may quote what the client sent (a JSON key, a path): they are
    ``shown``, a national ID in them masked.
    """
    problem = api.Problem(
        type=PROBLEM_BASE + error.code,
        title=error.title,
        status=error.status,
        detail=shown(error.detail),
        code=error.code,
        trace_id=request_id,
        request_id=request_id,
        field=None if error.field is None else shown(error.field),
        retry_after=error.retry_after,
        server_time=error.server_time,
    )
    return _json.encode(problem)
