"""Every route the gateway serves: method, path, handler, the roles that may call it, and its documentation.

The app factory registers these routes, the middleware reads each one's roles, write flag and
body limit, and ``/openapi.json`` is built from the same entries (``gateway/http/openapi.py``):
a route cannot be added without saying what it takes and answers.
"""

from __future__ import annotations

from adapters import adjustment_orders, finance_stats, insurer_reconciliation, statement_export
from adapters import report_models as reports
from adapters.dashboard_export import TABLES as DASHBOARD_TABLES
from adapters.dashboard_figures import MAX_LIST
from adapters.what_if import WhatIfReport
from adapters.xlsx_export import XLSX_MEDIA_TYPE
from gateway import api_models as api
from gateway.dashboard.drill_down import dashboard_export, dashboard_settlements
from gateway.dashboard.pages import LEVELS, dashboard, dashboard_login
from gateway.dashboard.refusals import refusal_page
from gateway.dashboard.what_if_page import what_if_page, what_if_run
from gateway.http.apidocs import docs_page
from gateway.http.handlers import finance, health, people, registry, settlements
from gateway.http.handlers.receipts import receipt_by_number, settlement_receipt
from gateway.http.openapi import openapi_json
from gateway.http.requests import DATE_PATTERN, MONTH_PATTERN
from gateway.http.routing import (
    ADMIN,
    ANY_ROLE,
    OPEN,
    READERS,
    REPORTING,
    TERMINAL,
    Doc,
    Param,
    Reply,
    Route,
    enum,
)

# Query dates as gateway.http.requests.query_date reads them; an empty value is refused like any other non-date.
DATE = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
OPTIONAL_DATE = {"type": "string", "pattern": "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"}
GROUP_BY = enum("fund", "tier", "level", "region")
REPORT_FORMAT = Param("format", enum("json", "csv"), "csv for CSV (as does Accept: text/csv); JSON by default")
FILE_FORMAT = Param(
    "format",
    enum("json", "csv", "xlsx", "html"),
    "csv for CSV (as does Accept: text/csv), xlsx for an Excel workbook, html for a statement to print and sign"
    " (A4 landscape); JSON by default. Money in CSV and xlsx is yuan with two decimals, headers in Chinese with"
    " English beside them",
)
JSON_OBJECT = ("application/json",)


ROUTES = [
    Route(
        "POST",
        "/v1/settlements",
        settlements.settle,
        TERMINAL,
        Doc(
            "Settle a bill (idempotent per terminal and request_id)",
            body=api.SettleRequest,
            replies=(
                Reply(201, "Settled", api.SettlementOut),
                Reply(200, "Replay of the first answer", api.SettlementOut),
            ),
            errors=(409,),
        ),
        write=True,
        claims_own_nonce=True,  # inside the settlement's first read
    ),
    Route(
        "POST",
        "/v1/quotes",
        settlements.quote,
        TERMINAL,
        Doc(
            "Compute a settlement without recording it",
            body=api.SettleRequest,
            replies=(Reply(model=api.QuoteOut),),
        ),
    ),
    Route(
        "GET",
        "/v1/settlements",
        settlements.search_settlements,
        ANY_ROLE,
        Doc(
            "Settlements by booking days, clinic and the clinic's request id, a page at a time, in booking order"
            " (finance, admin; a terminal sees only its own clinic's)",
            query=(
                Param("from", DATE, "first booking day; the first of to's month by default"),
                Param("to", DATE, "last booking day, at most 367 days after from; today (China time) by default"),
                Param(
                    "clinic",
                    {"type": "string", "pattern": f"^{settlements.CLINIC_ID.pattern}$"},
                    "one clinic's settlements",
                ),
                Param(
                    "request_id",
                    {"type": "string", "pattern": f"^{settlements.REQUEST_ID.pattern}$"},
                    "the clinic's own id for the bill, as its terminal sent it",
                ),
                Param(
                    "limit",
                    {"type": "string", "pattern": "^(?:[1-9][0-9]?|[1-4][0-9]{2}|500)$"},
                    "a page's size, 1 to 500; 50",
                ),
                Param("after", {"type": "string"}, "the previous page's next cursor"),
            ),
            replies=(Reply(description="One page and the next page's cursor", model=reports.SettlementPage),),
            errors=(422,),
        ),
    ),
    Route(
        "GET",
        "/v1/receipts/{number}",
        receipt_by_number,
        READERS,
        Doc(
            "The receipt with this short receipt number (0F3A-9C1E-77B0, as printed; 404 for another clinic's)",
            query=(
                Param("lang", enum("zh", "en"), "the receipt's language; zh by default"),
                Param("format", enum("html", "text"), "html by default; text for a 32-column printer"),
            ),
            replies=(Reply(description="The receipt", media=("text/html", "text/plain")),),
            errors=(404, 409, 422),
        ),
    ),
    Route(
        "GET",
        "/v1/settlements/{settlement_id}",
        settlements.get_settlement,
        READERS,
        Doc(
            "A stored settlement (404 for another clinic's)",
            replies=(Reply(model=api.SettlementOut),),
            errors=(404,),
        ),
    ),
    Route(
        "GET",
        "/v1/settlements/{settlement_id}/receipt",
        settlement_receipt,
        READERS,
        Doc(
            "The patient's receipt: printable HTML, or text for a 32-column printer",
            query=(
                Param("lang", enum("zh", "en"), "the receipt's language; zh by default"),
                Param("format", enum("html", "text"), "html by default; text for a 32-column printer"),
            ),
            replies=(Reply(description="The receipt", media=("text/html", "text/plain")),),
            errors=(404, 422),
        ),
    ),
    Route(
        "POST",
        "/v1/settlements/{settlement_id}/reversal",
        settlements.reverse,
        TERMINAL,
        Doc(
            "Reverse a settlement, giving back every accumulator",
            body=api.ReversalRequest,
            replies=(
                Reply(201, "Reversed", api.ReversalOut),
                Reply(200, "Replay of the first answer", api.ReversalOut),
            ),
            errors=(404, 409),
        ),
        write=True,
    ),
    Route(
        "POST",
        "/v1/eligibility",
        people.eligibility,
        TERMINAL,
        Doc(
            "Programmes in force and what is left of each cap this year",
            body=api.EligibilityRequest,
            replies=(Reply(model=api.EligibilityOut),),
        ),
    ),
    Route(
        "POST",
        "/v1/people",
        people.upsert_person,
        ADMIN,
        Doc(
            "Create or update a person and their memberships (admin)",
            body=api.PersonRequest,
            replies=(Reply(201, "Created", api.PersonOut), Reply(model=api.PersonOut)),
        ),
        write=True,
    ),
    Route(
        "GET",
        "/v1/clinics",
        registry.clinics,
        ANY_ROLE,
        Doc(
            "Clinics, optionally filtered by level",
            query=(Param("level", enum("village", "township", "county"), "only clinics of this level"),),
            replies=(Reply(model=api.ClinicsOut),),
            errors=(422,),
        ),
    ),
    Route(
        "GET",
        "/v1/registry/stats",
        registry.registry_stats,
        REPORTING,
        Doc(
            "People in force on a date, added and struck off in a period (admin, finance)",
            query=(
                Param("date", DATE, "people in force on this day; today (China time) by default"),
                Param("from", DATE, "first day of the period; the first of date's month by default"),
                Param("to", DATE, "last day of the period; date by default"),
                REPORT_FORMAT,
            ),
            replies=(
                Reply(description="Counts by programme, tier and category", model=reports.RegistryStats, csv=True),
            ),
            errors=(422,),
        ),
    ),
    Route(
        "POST",
        "/v1/people/statement",
        people.annual_statement,
        REPORTING,
        Doc(
            "A person's annual statement: every settlement of the service year, what every fund paid and each"
            " fund's cap left (admin, finance)",
            body=api.PersonYearRequest,
            query=(Param("format", enum("json", "html"), "html for the statement to print; JSON by default"),),
            replies=(Reply(description="The statement", model=reports.PersonYearStatement, media=("text/html",)),),
        ),
    ),
    Route(
        "GET",
        "/v1/finance/daily",
        finance.daily_statement,
        REPORTING,
        Doc(
            "Daily statement per clinic and fund, by level and region, with the day's reversals (admin, finance)",
            query=(
                Param("date", DATE, "the booking day; today (China time) by default"),
                FILE_FORMAT,
                Param(
                    "scope",
                    enum(*statement_export.SCOPES),
                    "with format=csv, the one scope the file holds (a SUM over a column counts each bill once);"
                    " clinic by default. The xlsx workbook has one sheet per scope",
                ),
            ),
            replies=(
                Reply(
                    description="The statement", model=reports.DailyStatement, csv=True, xlsx=True, media=("text/html",)
                ),
            ),
            errors=(422,),
        ),
    ),
    Route(
        "GET",
        "/v1/finance/monthly",
        finance.monthly_statement,
        REPORTING,
        Doc(
            "Monthly statement per fund and clinic by booking month, the basis of disbursement (拨付) and"
            " clearing (清算) (admin, finance)",
            query=(
                Param(
                    "month",
                    {"type": "string", "pattern": MONTH_PATTERN},
                    "the booking month, YYYY-MM; this month (China time) by default",
                ),
                FILE_FORMAT,
            ),
            replies=(
                Reply(
                    description="The statement",
                    model=reports.MonthlyStatement,
                    csv=True,
                    xlsx=True,
                    media=("text/html",),
                ),
            ),
            errors=(422,),
        ),
    ),
    Route(
        "POST",
        "/v1/finance/reconciliation",
        finance.reconciliation,
        REPORTING | TERMINAL,
        Doc(
            "Check a clinic's or fund's list for a booking day against the ledger"
            " (admin, finance; terminal for its own clinic)",
            body=api.ReconciliationRequest,
            replies=(
                Reply(description="Matched counts and sums, and every discrepancy", model=reports.Reconciliation),
            ),
        ),
        write=True,
        max_body=finance.RECONCILIATION_MAX_BODY,
    ),
    Route(
        "POST",
        "/v1/finance/reconciliation/totals",
        finance.reconciliation_totals,
        REPORTING | TERMINAL,
        Doc(
            "Check a clinic's count and sums over a range of booking days (at most 367) against the ledger, 3201-style"
            " (对总账); the gateway's count and total per day narrow a range that does not balance"
            " (admin, finance; terminal for its own clinic)",
            body=api.TotalsReconciliationRequest,
            replies=(
                Reply(description="Balanced or not, each field that differs", model=reports.TotalsReconciliation),
            ),
        ),
    ),
    Route(
        "POST",
        "/v1/finance/reconciliation/insurer",
        finance.insurer_reconciliation_day,
        REPORTING,
        Doc(
            "Reconcile a day beside the insurer's core three ways: the insurer's totals and detail (3201, 3202), the"
            " ledger and the clinic's list if sent, per fund; every discrepancy with the repair it needs"
            " (admin, finance)",
            body=api.InsurerReconciliationRequest,
            replies=(
                Reply(
                    description="Each side's totals, the insurer's verdict, and every discrepancy",
                    model=insurer_reconciliation.InsurerReconciliation,
                ),
            ),
            errors=(404, 502),
        ),
        max_body=finance.RECONCILIATION_MAX_BODY,
    ),
    Route(
        "GET",
        "/v1/finance/adjustments",
        finance.adjustment_orders_list,
        REPORTING,
        Doc(
            "Orders from re-adjudication booked in a period: what each fund owes a patient (payable), what a patient"
            " was overpaid (recovery, or overpayment reported), and what was waived below the de-minimis amount"
            " (admin, finance)",
            query=(
                Param("from", DATE, "first booking day; the first of to's month by default"),
                Param("to", DATE, "last booking day; today (China time) by default"),
                Param("status", enum(*adjustment_orders.STATUSES), "only orders of this status"),
                REPORT_FORMAT,
            ),
            replies=(
                Reply(description="The orders and their sums", model=adjustment_orders.AdjustmentOrders, csv=True),
            ),
            errors=(422,),
        ),
    ),
    Route(
        "POST",
        "/v1/finance/adjustments/{order_id}/close",
        finance.close_adjustment_order,
        REPORTING,
        Doc(
            "Mark an open adjustment order paid (payable) or recovered (recovery), with finance's reference; once"
            " (admin, finance)",
            body=api.CloseOrderRequest,
            replies=(Reply(description="The order's new status", model=api.OrderClosedOut),),
            errors=(404, 409),
        ),
        write=True,
    ),
    Route(
        "POST",
        "/v1/finance/what-if",
        finance.what_if,
        REPORTING,
        Doc(
            "Replay past settlements under a candidate policy: what each fund would pay, and who would pay more or"
            " less out of pocket; nothing is written (admin, finance)",
            body=api.WhatIfRequest,
            query=(REPORT_FORMAT,),
            replies=(
                Reply(
                    description="Per fund and per group, today and under the candidate", model=WhatIfReport, csv=True
                ),
            ),
            errors=(422,),
        ),
    ),
    Route(
        "GET",
        "/v1/finance/stats",
        finance.statistics,
        REPORTING,
        Doc(
            "Amounts per payer, out-of-pocket share, caps reached and people served, by a dimension (admin, finance)",
            query=(
                Param("by", enum(*sorted(finance_stats.DIMENSIONS)), "the dimension to group by; level by default"),
                Param("from", DATE, "first day of the period; the first of to's month by default"),
                Param("to", DATE, "last day of the period; today (China time) by default"),
                REPORT_FORMAT,
            ),
            replies=(
                Reply(
                    description="One row per value of the dimension",
                    model=reports.FinanceStatsReport,  # one Struct per dimension
                    name="FinanceStatsReport",
                    csv=True,
                ),
            ),
            errors=(422,),
        ),
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi_json,
        OPEN,  # it holds no secrets: Swagger UI, Postman and code generators load it as it is
        Doc("This document", replies=(Reply(description="OpenAPI 3.1", media=JSON_OBJECT),)),
    ),
    Route(
        "GET",
        "/docs",
        docs_page,
        OPEN,  # the same document as a page a person reads in a browser
        Doc("This document as a browsable page", replies=(Reply(description="HTML", media=("text/html",)),)),
    ),
    Route("GET", "/healthz", health.healthz, OPEN, Doc("The process is alive", replies=(Reply(media=JSON_OBJECT),))),
    Route(
        "GET",
        "/readyz",
        health.readyz,
        OPEN,
        Doc(
            "Ready for traffic: database reachable and not shutting down",
            replies=(Reply(description="Ready", media=JSON_OBJECT),),
            errors=(503,),
        ),
    ),
    Route(
        "GET",
        "/metrics",
        health.metrics,
        OPEN,
        Doc("Prometheus metrics", replies=(Reply(description="Prometheus text format", media=("text/plain",)),)),
    ),
    # Browser pages: no request signature; the handlers check a session cookie (gateway/dashboard/pages.py).
    Route(
        "GET",
        "/dashboard/login",
        dashboard_login,
        OPEN,
        Doc(
            "Exchange a login link from `medsettle dashboard-link` for a session cookie",
            query=(
                Param("key_id", {"type": "string", "minLength": 1}, "a finance or admin key id", required=True),
                Param(
                    "expires",
                    {"type": "string", "pattern": "^[0-9]{1,12}$"},
                    "Unix seconds when the link expires",
                    required=True,
                ),
                Param(
                    "sig",
                    {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"},
                    "hex HMAC-SHA256 of the link, under the key's secret",
                    required=True,
                ),
            ),
            replies=(Reply(303, "Signed in: a session cookie, and on to /dashboard"),),
            errors=(401, 403),
        ),
        refusal_page=refusal_page,
    ),
    Route(
        "GET",
        "/dashboard",
        dashboard,
        OPEN,
        Doc(
            "The finance dashboard (session cookie from /dashboard/login)",
            query=(
                # The page reads an empty value as "not given". A period is at most 366 days, from not after to.
                Param("from", OPTIONAL_DATE, "first day of the period; 30 days before to by default"),
                Param("to", OPTIONAL_DATE, "last day of the period; today (China time) by default"),
                Param("day", OPTIONAL_DATE, "a booking day whose reconciliation to show"),
            ),
            replies=(Reply(description="The dashboard page", media=("text/html",)),),
            errors=(401, 403, 422),
        ),
        refusal_page=refusal_page,
    ),
    Route(
        "GET",
        "/dashboard/settlements",
        dashboard_settlements,
        OPEN,
        Doc(
            "The settlements behind a dashboard figure: a period's, one clinic's or one level's, reversed ones left"
            " out, a page at a time under the totals of them all (session cookie from /dashboard/login)",
            query=(
                Param("from", OPTIONAL_DATE, "first service date; 30 days before to by default"),
                Param("to", OPTIONAL_DATE, "last service date; today (China time) by default"),
                Param("clinic", {"type": "string"}, "one clinic's settlements"),
                Param("level", {"type": "string", "enum": ["", *LEVELS]}, "one clinic level's settlements"),
                Param("after", {"type": "string"}, "the cursor of the page before, from its next-page link"),
            ),
            replies=(Reply(description="The page of settlements", media=("text/html",)),),
            errors=(401, 403, 422),
        ),
        refusal_page=refusal_page,
    ),
    Route(
        "GET",
        "/dashboard/export",
        dashboard_export,
        OPEN,
        Doc(
            "A table of the dashboard as a download: an xlsx workbook (one sheet, with a totals row) or a CSV file,"
            f" money in yuan, headers in Chinese and English; the settlements whole, up to {MAX_LIST}"
            " (session cookie from /dashboard/login)",
            query=(
                Param("table", enum(*DASHBOARD_TABLES), "which table", required=True),
                Param("format", enum("xlsx", "csv"), "xlsx by default"),
                Param("from", OPTIONAL_DATE, "first service date; 30 days before to by default"),
                Param("to", OPTIONAL_DATE, "last service date; today (China time) by default"),
                Param("clinic", {"type": "string"}, "with table=settlements, one clinic's"),
                Param("level", {"type": "string", "enum": ["", *LEVELS]}, "with table=settlements, one level's"),
            ),
            replies=(Reply(description="The file", media=("text/csv", XLSX_MEDIA_TYPE)),),
            errors=(401, 403, 422),
        ),
        refusal_page=refusal_page,
    ),
    Route(
        "GET",
        "/dashboard/what-if",
        what_if_page,
        OPEN,
        Doc(
            "The policy what-if form (session cookie from /dashboard/login)",
            query=(
                # As /dashboard reads its period: the form's window, filled in.
                Param("from", OPTIONAL_DATE, "first day of the window; 30 days before to by default"),
                Param("to", OPTIONAL_DATE, "last day of the window; today (China time) by default"),
            ),
            replies=(Reply(description="The form", media=("text/html",)),),
            errors=(401, 403, 422),
        ),
        refusal_page=refusal_page,
    ),
    Route(
        "POST",
        "/dashboard/what-if",
        what_if_run,
        OPEN,
        Doc(
            "Replay a window under a candidate policy: the report as a page, or as CSV (session cookie from"
            " /dashboard/login); a form that cannot be run comes back naming what to correct",
            form=(
                Param("policy", {"type": "string"}, "the candidate policy file's TOML text"),
                Param(
                    "policy_file",
                    {"type": "string", "contentMediaType": "application/octet-stream"},
                    "the candidate policy file, uploaded (multipart); wins over policy when given",
                ),
                Param("from", DATE, "first service date of the window", required=True),
                Param("to", DATE, "last service date of the window", required=True),
                Param("by", GROUP_BY, "the groups: level by default"),
                Param("format", enum("html", "csv"), "csv for the report as CSV; the page by default"),
            ),
            replies=(
                Reply(description="The report", media=("text/html", "text/csv")),
                Reply(422, "The form again, naming what to correct, with what was entered", media=("text/html",)),
            ),
            errors=(400, 401, 403, 413),
        ),
        refusal_page=refusal_page,
    ),
]
