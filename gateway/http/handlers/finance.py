"""Finance handlers: daily statements (JSON or CSV) and reconciliation of a clinic's or fund's list.

Routes are listed in ``gateway.http.app.ROUTES``. They read through ``adapters.reports.Reports`` and write a
clean reconciliation's confirmation through ``adapters.finance.Confirmations``, both from the app.
"""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from adapters import finance, finance_stats
from adapters.reports import ReconciliationError
from gateway import api_models as api
from gateway.problems import ApiError
from gateway.service import china_today

# A reconciliation list is about 150 bytes a settlement: 16 MiB is some 100,000 settlements.
RECONCILIATION_MAX_BODY = 16 * 1024 * 1024


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


def wants_csv(request: web.Request) -> bool:
    """CSV for ``format=csv`` or ``Accept: text/csv``. A format other than json or csv is refused, not
    answered as JSON: a typo such as ``format=cvs`` should not look like a changed file format."""
    form = request.query.get("format")
    if form not in (None, "json", "csv"):
        raise ApiError(422, "validation_failed", "format must be json or csv", field="format")
    return form == "csv" or "text/csv" in request.headers.get("Accept", "")


async def daily_statement(request: web.Request) -> web.Response:
    from gateway.http import app as gateway  # imported here: gateway.http.app imports this module for its ROUTES

    csv = wants_csv(request)
    day = query_date(request, "date") or china_today()
    statement = await request.app[gateway.reports_key].daily_statement(day, today=china_today())
    if csv:
        return web.Response(
            body=finance.statement_csv(statement).encode("utf-8"),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="daily-{day.isoformat()}.csv"',
            },
        )
    return gateway.respond(request, statement)


async def reconciliation(request: web.Request) -> web.Response:
    from gateway.http import app as gateway

    caller = gateway._caller(request)
    body = await gateway.decode_body(request, api.ReconciliationRequest)
    if caller.role == "terminal":
        if body.fund is not None:
            raise ApiError(403, "forbidden", "a terminal reconciles its own clinic, not a fund", field="fund")
        if body.clinic_id != caller.clinic_id:
            raise ApiError(
                403, "forbidden", "a terminal may reconcile only its own clinic's settlements", field="clinic_id"
            )
    if body.clinic_id is not None:
        request[gateway.clinic_key] = body.clinic_id
    try:
        result = await request.app[gateway.reports_key].reconcile(body)
    except ReconciliationError as error:
        raise ApiError(422, "validation_failed", str(error), field=error.field) from None
    if result.clean:  # the confirmation is a write: on the primary
        result = await request.app[gateway.confirmations_key].confirm(
            result, actor=caller.terminal_id, request_id=request[gateway.request_id_key]
        )
    return gateway.respond(request, result)


async def statistics(request: web.Request) -> web.Response:
    from gateway.http import app as gateway  # imported here: gateway.http.app imports this module for its ROUTES

    csv = wants_csv(request)
    by = request.query.get("by", "level")
    if by not in finance_stats.DIMENSIONS:
        raise ApiError(422, "validation_failed", f"by must be one of {', '.join(finance_stats.DIMENSIONS)}", field="by")
    period_to = query_date(request, "to") or china_today()
    period_from = query_date(request, "from") or period_to.replace(day=1)
    stats = await request.app[gateway.reports_key].finance_stats(by=by, period_from=period_from, period_to=period_to)
    if csv:
        return web.Response(
            body=finance_stats.stats_csv(stats).encode("utf-8"),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="stats-{by}-{period_from}-{period_to}.csv"',
            },
        )
    return gateway.respond(request, stats)
