"""Behind the dashboard's figures: the settlements a figure stands for, and every table as a file.

``GET /dashboard/settlements?from=&to=[&clinic=|&level=]`` lists the settlements of a period of
service dates (reversed ones left out, as the figures leave them out) of one clinic, one clinic
level or all, a page at a time in service-date order (``after``: the cursor of the page before),
under the totals of the whole list, which equal the figure the list was opened from: a clinic's row,
a level's row or the period's totals on ``/dashboard``.

``GET /dashboard/export?table=days|levels|clinics|settlements&format=xlsx|csv&from=&to=...`` is a
table on screen as a download (``adapters.dashboard_export``): a workbook of one sheet with a totals
row, or a CSV file without one. The settlements are exported whole, up to ``MAX_LIST`` of them.

Both check the session cookie as ``/dashboard`` does (``session_key``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from adapters.dashboard_export import TABLES, figures_table, settlements_table
from adapters.dashboard_figures import DEFAULT_PAGE, MAX_LIST, Behind
from adapters.report_models import Amounts, DashboardSettlements
from adapters.settlement_search import Cursor
from adapters.statement_export import VISIT_NAMES, china_time, level_name
from adapters.xlsx_export import XLSX_MEDIA_TYPE, table_csv, workbook
from gateway.app_keys import reports_key
from gateway.dashboard.pages import (
    CSS,
    LEVELS,
    e,
    export_links,
    money_cells,
    money_columns,
    money_heads,
    page_response,
    period,
    session_key,
    shown_funds,
    totals_row,
    window,
)
from gateway.http.handlers.settlements import CLINIC_ID
from gateway.http.responses import csv_response, download
from gateway.problems import ApiError
from gateway.service import china_today

FORMATS = ("xlsx", "csv")


def behind_query(query: Any, *, limit: int = DEFAULT_PAGE) -> Behind:
    """The list a query names: its period (as ``/dashboard`` reads one), a clinic or a level, and a page."""
    period_from, period_to = period(query, china_today())
    clinic = query.get("clinic") or None
    if clinic is not None and not CLINIC_ID.fullmatch(clinic):
        raise ApiError(422, "validation_failed", "clinic must be a clinic code", field="clinic")
    level = query.get("level") or None
    if level is not None and level not in LEVELS:
        raise ApiError(422, "validation_failed", f"level must be one of {', '.join(LEVELS)}", field="level")
    if clinic is not None and level is not None:
        raise ApiError(422, "validation_failed", "give a clinic or a level, not both", field="level")
    after = None
    if query.get("after"):
        try:
            after = Cursor.parse(query["after"])
        except ValueError:
            raise ApiError(422, "validation_failed", "after must be a cursor the page gave", field="after") from None
    return Behind(period_from, period_to, clinic, level, limit, after)


def _heading(listing: DashboardSettlements) -> str:
    """What the list is of: a clinic (its name), a level, or every clinic; and the period."""
    if listing.clinic_id:
        where = f"{listing.clinic_id} {listing.clinic_names.get(listing.clinic_id, '')}".strip()
    elif listing.level:
        where = level_name(listing.level)
    else:
        where = "全部机构 every clinic"
    days = listing.period_from.isoformat()
    if listing.period_to != listing.period_from:
        days += f" – {listing.period_to.isoformat()}"
    return f"{where} · {days}"


def render_settlements(listing: DashboardSettlements, *, who: str, query: Any) -> str:
    """The page: the list's totals, this page of settlements, a link to the next page and the exports."""
    funds = shown_funds(listing.funds)
    columns = money_columns(funds)
    filters = {"clinic": listing.clinic_id, "level": listing.level}
    here = window(listing.period_from, listing.period_to, **filters)
    back = window(listing.period_from, listing.period_to)
    # A list of one clinic names it in its heading; a list of several names each settlement's clinic.
    several = listing.clinic_id is None
    rows = []
    for item in listing.items:
        amounts = Amounts(
            count=1,
            total=item.total,
            insurance=item.insurance,
            veteran_subsidy=item.veteran_subsidy,
            hardship_aid=item.hardship_aid,
            out_of_pocket=item.out_of_pocket,
            other_funds=item.other_funds,
        )
        clinic = f"<td>{e(listing.clinic_names.get(item.clinic_id, ''))}</td>" if several else ""
        rows.append(
            f'<tr data-settlement="{item.settlement_id}" data-total="{item.total}">'
            f"<td>{item.service_date.isoformat()}</td><td>{e(china_time(item.settled_at))}</td>"
            f"<td>{e(item.clinic_id)}</td>{clinic}"
            f"<td>{e(VISIT_NAMES.get(item.visit_type, item.visit_type))}</td>"
            f'<td class="id">{e(item.request_id)}</td><td>{e(item.person)}</td>{money_cells(amounts, columns)}</tr>'
        )
    shown = len(listing.items)
    first = ""
    if query.get("after"):
        first = f' · <a id="first-page" href="/dashboard/settlements?{here}">首页 First page</a>'
    more = (
        f' · <a id="next-page" href="/dashboard/settlements?{here}&amp;after={e(listing.next)}">下一页 Next page</a>'
        if listing.next
        else ""
    )
    totals = listing.totals
    names_head = "<th>机构名称 name</th>" if several else ""
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>结算明细 Settlements</title><style>{CSS}</style></head>
<body><header><h1>结算明细 Settlements behind the figures</h1><small>{e(who)}</small></header><main>
<section id="listing" data-from="{listing.period_from.isoformat()}" data-to="{listing.period_to.isoformat()}"
 data-clinic="{e(listing.clinic_id or "")}" data-level="{e(listing.level or "")}" data-count="{totals.count}"
 data-total="{totals.total}"><h2>{e(_heading(listing))} (service date; reversals excluded)</h2>
<p class="screen-only"><a id="back" href="/dashboard?{back}">← 返回看板 Back to the dashboard</a>{first}{more}</p>
<p>共 <b id="listing-count">{totals.count}</b> 笔 settlements; this page shows {shown}.</p></section>
<section><h2>结算 Settlements{export_links("settlements", here)}</h2><div class="scroll"><table id="settlements">
<tr><th>服务日期 service date</th><th>结算时间 settled at</th><th>机构编码 clinic</th>{names_head}
<th>就诊 visit</th><th>机构请求号 clinic's request id</th><th>参保人 person</th>{money_heads(columns)}</tr>
{"".join(rows)}{totals_row(6 if several else 5, totals, columns)}</table></div></section>
</main></body></html>"""


async def dashboard_settlements(request: web.Request) -> web.Response:
    """``GET /dashboard/settlements``: the settlements behind a figure, a page at a time."""
    key = await session_key(request)
    listing = await request.app[reports_key].dashboard_settlements(behind_query(request.query))
    return page_response(render_settlements(listing, who=f"{key.terminal_id} ({key.role})", query=request.query))


async def dashboard_export(request: web.Request) -> web.Response:
    """``GET /dashboard/export``: one of the dashboard's tables as an xlsx workbook or a CSV file."""
    await session_key(request)
    table = request.query.get("table", "")
    if table not in TABLES:
        raise ApiError(422, "validation_failed", f"table must be one of {', '.join(TABLES)}", field="table")
    form = request.query.get("format", "xlsx")
    if form not in FORMATS:
        raise ApiError(422, "validation_failed", "format must be xlsx or csv", field="format")
    reports = request.app[reports_key]
    behind = behind_query(request.query, limit=MAX_LIST)
    if table == "settlements":
        listing = await reports.dashboard_settlements(behind._replace(after=None))
        if listing.next is not None:
            raise ApiError(
                422,
                "validation_failed",
                f"the list holds more than {MAX_LIST} settlements: choose a shorter period or one clinic",
                field="from",
            )
        found = settlements_table(listing)
        where = behind.clinic_id or behind.level or "all"
    else:
        figures = await reports.dashboard_figures(behind.period_from, behind.period_to)
        found = figures_table(figures, table)
        where = "all"
    name = f"dashboard-{table}-{where}-{_days(behind.period_from, behind.period_to)}"
    if form == "csv":
        return csv_response(table_csv(found), f"{name}.csv")
    return download(workbook([found]), XLSX_MEDIA_TYPE, f"{name}.xlsx")


def _days(period_from: dt.date, period_to: dt.date) -> str:
    return period_from.isoformat() if period_from == period_to else f"{period_from.isoformat()}-{period_to.isoformat()}"
