"""People: who is covered on a date and what is left of each cap, a person's annual statement, and the admin's
person records."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from adapters.person_statement import person_year_tables
from gateway import api_models as api
from gateway.app_keys import reports_key, service_key
from gateway.http.handlers.printable import print_response, statement_html
from gateway.http.requests import caller, decode_body, report_format, request_id_key
from gateway.http.responses import respond
from gateway.problems import ApiError
from gateway.service import china_today
from settlement.eligibility import eligibility as standing_on
from settlement.errors import NoPolicyInForce


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


async def annual_statement(request: web.Request) -> web.Response:
    """A person's service year: every settlement, what each fund paid, and each fund's cap left as of the
    year's last day (today for the current year)."""
    service = request.app[service_key]
    form = report_format(request, "json", "html")
    body = await decode_body(request, api.PersonYearRequest)
    key, masked = service.person_key(body.person_id)
    today = china_today()
    if body.year > today.year:
        raise ApiError(422, "validation_failed", "year is later than this year", field="year")
    as_of = min(dt.date(body.year, 12, 31), today)
    try:
        policy = service.policy_on(as_of)
    except NoPolicyInForce:
        raise ApiError(422, "no_policy_in_force", f"no policy was in force in {body.year}", field="year") from None
    name, memberships, accumulators = await service.store.person_for_eligibility(key, body.year)
    if name is None:
        raise ApiError(422, "unknown_person", "no person is registered under this national ID", field="person_id")
    caps = standing_on(policy, memberships, accumulators, as_of).funds
    statement = await request.app[reports_key].person_year(
        key, body.year, person=masked, name=name, as_of=as_of, caps=caps
    )
    if form == "html":
        return print_response(
            statement_html(
                "个人年度结算单 Annual statement",
                f"{name} {masked} · {body.year} · 截至 as of {as_of.isoformat()}",
                person_year_tables(statement),
                closed=as_of < today,
                basis="every settlement with a service date in the year; reversed ones are listed, not counted",
            )
        )
    return respond(request, statement)
