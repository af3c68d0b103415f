"""The registry: clinics, and counts of the people in each programme."""

from __future__ import annotations

from aiohttp import web

from adapters.registry_stats import stats_csv
from gateway.app_keys import reports_key, service_key
from gateway.http.requests import query_date, wants_csv
from gateway.http.responses import csv_response, respond
from gateway.service import china_today


async def clinics(request: web.Request) -> web.Response:
    service = request.app[service_key]
    return respond(request, await service.clinics(request.query.get("level")))


async def registry_stats(request: web.Request) -> web.Response:
    csv = wants_csv(request)
    on = query_date(request, "date") or china_today()
    period_from = query_date(request, "from") or on.replace(day=1)
    period_to = query_date(request, "to") or on
    stats = await request.app[reports_key].registry_stats(on=on, period_from=period_from, period_to=period_to)
    if csv:
        return csv_response(stats_csv(stats), f"registry-{on.isoformat()}.csv")
    return respond(request, stats)
