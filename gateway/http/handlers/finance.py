"""Finance handlers: daily and monthly statements (JSON, CSV or xlsx), reconciliation of a clinic's or fund's list,
and the three-way reconciliation of a day with the insurer's core.

Routes are listed in ``gateway.http.routes``. They read through ``adapters.reports.Reports`` and write a
clean reconciliation's confirmation through ``adapters.finance.Confirmations``, both from the app; the
insurer's side of a three-way reconciliation comes through the service's client (``Service.remote``).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid

from aiohttp import web

from adapters import adjustment_orders, finance_stats, insurer_reconciliation, statement_export, xlsx_export
from adapters.insurer.client import InsurerRefused, InsurerUnreachable, OutcomeUnknown
from adapters.monthly_statement import monthly_tables
from adapters.reports import ReconciliationError, WindowTooLarge
from adapters.what_if import what_if_csv
from adapters.xlsx_export import XLSX_MEDIA_TYPE
from gateway import api_models as api
from gateway.app_keys import confirmations_key, reports_key, service_key
from gateway.http.handlers.printable import print_response, statement_html
from gateway.http.requests import (
    caller,
    clinic_key,
    decode_body,
    query_choice,
    query_date,
    query_month,
    report_format,
    request_id_key,
    wants_csv,
)
from gateway.http.responses import csv_response, download, respond
from gateway.problems import ApiError, shown
from gateway.service import china_today
from settlement.chain_policy import parse_chain
from settlement.errors import PolicyError

# A what-if over HTTP replays at most this many settlements (about 5 s of one core); the command line
# (`medsettle policy what-if`) takes any window.
WHAT_IF_AT_MOST = 50_000

# A reconciliation list is about 150 bytes a settlement: 16 MiB is some 100,000 settlements.
RECONCILIATION_MAX_BODY = 16 * 1024 * 1024


async def daily_statement(request: web.Request) -> web.Response:
    """The statement as JSON; as an xlsx workbook (one sheet per scope, with the day's reversals); or as
    the CSV of one scope (``scope``, by clinic by default), so that a SUM over a column counts each bill once."""
    form = report_format(request, "json", "csv", "xlsx", "html")
    scope = query_choice(request, "scope", statement_export.SCOPES)
    day = query_date(request, "date") or china_today()
    statement = await request.app[reports_key].daily_statement(day, today=china_today())
    if form == "html":
        tables = statement_export.daily_tables(statement, detail=False)
        return print_response(
            statement_html(
                "医疗费用结算日报表 Daily settlement statement",
                f"结算日 Booking day {day.isoformat()}",
                [tables[name] for name in ("total", "clinic", "level", "region", "reversals")],
                closed=statement.closed,
                basis=statement.basis,
            )
        )
    tables = statement_export.daily_tables(statement)
    if form == "xlsx":
        return download(xlsx_export.workbook(list(tables.values())), XLSX_MEDIA_TYPE, f"daily-{day.isoformat()}.xlsx")
    if form == "csv":
        return csv_response(xlsx_export.table_csv(tables[scope]), f"daily-{day.isoformat()}-{scope}.csv")
    return respond(request, statement)


async def monthly_statement(request: web.Request) -> web.Response:
    """Each fund's settlements, reversals and net per clinic over a booking month: JSON; an xlsx workbook (a
    summary by fund, every fund x clinic line, a sheet per fund); or the CSV of every fund x clinic line."""
    form = report_format(request, "json", "csv", "xlsx", "html")
    month = query_month(request, "month") or china_today()
    statement = await request.app[reports_key].monthly_statement(month, today=china_today())
    tables = monthly_tables(statement)
    name = f"monthly-{statement.month}"
    if form == "html":  # the summary, then each fund's clinics: the lines are the same figures again
        printed = [table for key, table in tables.items() if key != "lines"]
        return print_response(
            statement_html(
                "基金拨付月报表 Monthly statement by fund and clinic",
                f"结算月 Booking month {statement.month} ({statement.period.from_} – {statement.period.to})",
                printed,
                closed=statement.closed,
                basis=statement.basis,
            )
        )
    if form == "xlsx":
        return download(xlsx_export.workbook(list(tables.values())), XLSX_MEDIA_TYPE, f"{name}.xlsx")
    if form == "csv":
        return csv_response(xlsx_export.table_csv(tables["lines"]), f"{name}.csv")
    return respond(request, statement)


async def reconciliation(request: web.Request) -> web.Response:
    terminal = caller(request)
    body = await decode_body(request, api.ReconciliationRequest)
    if terminal.role == "terminal":
        if body.fund is not None:
            raise ApiError(403, "forbidden", "a terminal reconciles its own clinic, not a fund", field="fund")
        if body.clinic_id != terminal.clinic_id:
            raise ApiError(
                403, "forbidden", "a terminal may reconcile only its own clinic's settlements", field="clinic_id"
            )
    if body.clinic_id is not None:
        request[clinic_key] = body.clinic_id
    try:
        result = await request.app[reports_key].reconcile(body)
    except ReconciliationError as error:
        raise ApiError(422, error.code, str(error), field=error.field) from None
    if result.clean:  # the confirmation is a write: on the primary
        result = await request.app[confirmations_key].confirm(
            result, actor=terminal.terminal_id, request_id=request[request_id_key]
        )
    return respond(request, result)


async def reconciliation_totals(request: web.Request) -> web.Response:
    """A clinic's count and sums over a range of booking days against the gateway's (3201-style)."""
    terminal = caller(request)
    body = await decode_body(request, api.TotalsReconciliationRequest)
    if terminal.role == "terminal" and body.clinic_id != terminal.clinic_id:
        raise ApiError(403, "forbidden", "a terminal may reconcile only its own clinic's totals", field="clinic_id")
    if body.clinic_id is not None:
        request[clinic_key] = body.clinic_id
    try:
        result = await request.app[reports_key].reconcile_totals(body)
    except ReconciliationError as error:
        raise ApiError(422, error.code, str(error), field=error.field) from None
    return respond(request, result)


# The first day a reconciliation with the insurer may ask for: nothing was settled beside it before.
FIRST_INSURER_DAY = dt.date(2000, 1, 1)


async def insurer_reconciliation_day(request: web.Request) -> web.Response:
    """A day beside the insurer's core, three ways: the insurer's 3201 totals and 3202 detail, the ledger, and
    the clinic's list if sent; every discrepancy with its repair (adapters/insurer_reconciliation.py)."""
    body = await decode_body(request, api.InsurerReconciliationRequest)
    # Tomorrow too: around midnight the insurer's clock may be ahead of this one, and a message sent before
    # midnight and committed after it counts on the insurer's day.
    tomorrow = china_today() + dt.timedelta(days=1)
    if body.day > tomorrow:
        raise ApiError(422, "validation_failed", f"day {body.day} is after tomorrow (China time)", field="day")
    if body.day < FIRST_INSURER_DAY:
        raise ApiError(422, "validation_failed", f"day {body.day} is before 2000", field="day")
    service = request.app[service_key]
    link = service.insurer_link()
    if link is None:
        raise ApiError(404, "no_insurer", "no policy version settles beside an insurer's core ([insurer])")
    if body.clinic_id is not None:
        request[clinic_key] = body.clinic_id
    reports = request.app[reports_key]
    try:
        result = await insurer_reconciliation.reconcile(
            body.day,
            client=service.remote.client(link),
            new_message_id=functools.partial(service.store.insurer_log.new_message_id, link.institution_code),
            ledger=reports.insurer_ledger,
            fund_types=insurer_reconciliation.remote_fund_types(service.policies),
            funds=reports.funds,
            clinic_list=body.clinic_list,
            clinic_id=body.clinic_id,
        )
    except ReconciliationError as error:
        raise ApiError(422, error.code, str(error), field=error.field) from None
    except (InsurerUnreachable, OutcomeUnknown):
        raise ApiError(
            503, "insurer_unavailable", "the insurer's core did not answer the reconciliation's queries", retry_after=5
        ) from None
    except InsurerRefused as refused:
        # The insurer's words may quote anything: shown() masks a national ID in them.
        raise ApiError(
            502,
            "insurer_query_refused",
            f"the insurer refused the reconciliation's query ({refused.infcode}): {shown(refused.message)}",
        ) from None
    return respond(request, result)


async def statistics(request: web.Request) -> web.Response:
    csv = wants_csv(request)
    by = request.query.get("by", "level")
    if by not in finance_stats.DIMENSIONS:
        raise ApiError(422, "validation_failed", f"by must be one of {', '.join(finance_stats.DIMENSIONS)}", field="by")
    period_to = query_date(request, "to") or china_today()
    period_from = query_date(request, "from") or period_to.replace(day=1)
    stats = await request.app[reports_key].finance_stats(by=by, period_from=period_from, period_to=period_to)
    if csv:
        return csv_response(finance_stats.stats_csv(stats), f"stats-{by}-{period_from}-{period_to}.csv")
    return respond(request, stats)


async def what_if(request: web.Request) -> web.Response:
    """A candidate policy replayed over past settlements: what each fund would pay, and who would pay more."""
    body = await decode_body(request, api.WhatIfRequest)
    if body.from_ > body.to:
        raise ApiError(422, "validation_failed", "from is after to", field="from")
    try:
        candidate = parse_chain(body.policy, "policy")
    except PolicyError as error:
        raise ApiError(422, "invalid_policy", f"{error.path}: {error.problem}", field="policy") from None
    try:
        report = await request.app[reports_key].what_if(
            candidate,
            start=body.from_,
            end=body.to,
            by=body.by,
            catalogue=request.app[service_key].catalogue,
            at_most=WHAT_IF_AT_MOST,
        )
    except WindowTooLarge as error:
        raise ApiError(422, "window_too_large", str(error), field="from") from None
    if wants_csv(request):
        return csv_response(what_if_csv(report), f"what-if-{candidate.id}-{body.from_}-{body.to}.csv")
    return respond(request, report)


async def adjustment_orders_list(request: web.Request) -> web.Response:
    """The orders re-adjudication booked: what the funds owe patients, and what they overpaid."""
    end = query_date(request, "to") or china_today()
    start = query_date(request, "from") or end.replace(day=1)
    if start > end:
        raise ApiError(422, "validation_failed", "from is after to", field="from")
    status = request.query.get("status")
    if status is not None and status not in adjustment_orders.STATUSES:
        raise ApiError(
            422, "validation_failed", f"status must be one of {', '.join(adjustment_orders.STATUSES)}", field="status"
        )
    report = await request.app[reports_key].adjustment_orders(start=start, end=end, status=status)  # type: ignore[arg-type]
    if wants_csv(request):
        return csv_response(adjustment_orders.orders_csv(report), f"adjustments-{start}-{end}.csv")
    return respond(request, report)


async def close_adjustment_order(request: web.Request) -> web.Response:
    """Mark an open order paid (or recovered), with finance's reference; once."""
    body = await decode_body(request, api.CloseOrderRequest)
    try:
        order_id = uuid.UUID(request.match_info["order_id"])
    except ValueError:
        raise ApiError(404, "order_not_found", "no such adjustment order", field="order_id") from None
    try:
        status = await request.app[confirmations_key].close_order(
            order_id, actor=caller(request).terminal_id, reference=body.reference, request_id=request[request_id_key]
        )
    except adjustment_orders.OrderNotFound:
        raise ApiError(404, "order_not_found", "no such adjustment order", field="order_id") from None
    except adjustment_orders.OrderNotOpen as error:
        raise ApiError(409, "order_not_open", str(error), field="order_id") from None
    return respond(request, api.OrderClosedOut(order_id=order_id, status=status, reference=body.reference))  # type: ignore[arg-type]
