"""The finance dashboard: a server-rendered page behind a short-lived login link.

A finance or admin desk signs in with a link from ``medsettle dashboard-link``, which
``dashboard_login`` exchanges for a session cookie (links and sessions:
``gateway/dashboard/sessions.py``). The page shows the settlements (reversed ones excluded)
for a period of service dates, read through ``adapters.reports.Reports``, as inline SVG
charts: no scripts, no external assets. Money is formatted only with ``format_yuan``;
chart geometry uses integer arithmetic. Every fund of the period's settlements is shown, in
the policy book's order: the three funds of the first policies under their short labels, any
other fund under its policy's Chinese and English names. What the bills were is shown in the
four buckets of the national settlement answer (全自费, 超限价自付, 先行自付, 政策范围内), in total
and per clinic level, with "not split" beside them when bills settled before the buckets were
kept are in the period.

Amounts read as money (thousands separated, ¥ before a card's figure); levels are named in Chinese
with the English beside. Every figure leads to what is behind it: a day (its bar or its row) to the
dashboard of that day, whose clinic table lists the day's clinics; a clinic, a level or the totals to
the settlements behind them (``gateway/dashboard/drill_down.py``); every table has a totals row and
its xlsx and CSV export beside it. Printed, the page drops its forms and links and keeps the figures.
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aiohttp import web

from adapters.bill_buckets import BUCKET_NAMES, BUCKETS, Bucket
from adapters.report_models import Amounts, DashboardFigures, FundEntry
from adapters.statement_export import level_name
from gateway.app_keys import reports_key, service_key, settings_key
from gateway.dashboard.sessions import (
    COOKIE,
    DASHBOARD_ROLES,
    DIGITS,
    MAX_LINK_SECONDS,
    SESSION_SECONDS,
    genuine_session,
    login_signature,
    make_session,
    session_secret,
)
from gateway.problems import ApiError
from gateway.service import china_today
from settlement.money import format_yuan_grouped

MAX_PERIOD_DAYS = 366
DEFAULT_PERIOD_DAYS = 30
PAYERS = ("insurance", "veteran_subsidy", "hardship_aid")
PAYER_NAMES = {
    "insurance": "基本医保 insurance",
    "veteran_subsidy": "优抚补助 subsidy",
    "hardship_aid": "医疗救助 aid",
    "out_of_pocket": "个人自付 patient",
}
COLOURS = {"insurance": "#2f6db5", "veteran_subsidy": "#e08a1e", "hardship_aid": "#3a9a5b", "out_of_pocket": "#999"}
# The other funds' colours, in the order they are shown.
MORE_COLOURS = ("#c0392b", "#7a5cc0", "#16a085", "#b7950b", "#d35400", "#2c3e50", "#c2185b", "#5d4037")
LEVELS = ("village", "township", "county")
BUCKET_COLOURS: dict[Bucket, str] = {
    "not_covered": "#b03a2e",
    "over_limit": "#d68910",
    "self_pay_first": "#b7950b",
    "eligible": "#2f6db5",
    "unsplit": "#999",
}


def _app_parts(request: web.Request) -> tuple[Any, bytes]:
    return request.app[service_key], session_secret(request.app[settings_key].terminal_key_key)


async def _active_key(service: Any, key_id: str) -> Any:
    key = await service.key(key_id[:64])
    if key is None:
        raise ApiError(401, "unknown_key", "no terminal key with this key_id")
    if not key.secret:
        raise ApiError(401, "terminal_revoked", "this key is retired or its terminal has been revoked")
    if key.role not in DASHBOARD_ROLES:
        raise ApiError(403, "forbidden", f"the {key.role} role may not open the finance dashboard")
    return key


async def dashboard_login(request: web.Request) -> web.Response:
    """Exchange a signed login link for a session cookie, then go to the dashboard."""
    service, secret = _app_parts(request)
    query = request.query
    key_id, expires, sig = query.get("key_id", ""), query.get("expires", ""), query.get("sig", "")
    if not (key_id and expires and sig):
        raise ApiError(401, "signature_missing", "open the dashboard with a link from `medsettle dashboard-link`")
    now = time.time()
    if not DIGITS.fullmatch(expires) or int(expires) <= now or int(expires) > now + MAX_LINK_SECONDS:
        raise ApiError(401, "timestamp_out_of_window", "this login link has expired; make a new one")
    key = await _active_key(service, key_id)  # unknown/revoked 401, wrong role 403 (key ids are not secret)
    if not hmac.compare_digest(login_signature(key.secret, key.key_id, int(expires)).encode(), sig.lower().encode()):
        raise ApiError(401, "bad_signature", "the login link's signature does not match")
    session_expires = int(now) + SESSION_SECONDS
    # A plain 303 response: the error middleware would turn a raised HTTPSeeOther into a problem.
    response = web.Response(status=303, headers={"Location": "/dashboard"})
    response.set_cookie(
        COOKIE,
        make_session(secret, key.key_id, session_expires),
        max_age=SESSION_SECONDS,
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def session_key(request: web.Request) -> Any:
    """The active finance or admin key behind the request's session cookie; 401 without one, or once it has
    expired (``session_expired``, so that the page can say the session ended)."""
    service, secret = _app_parts(request)
    session = genuine_session(secret, request.cookies.get(COOKIE, ""))
    if session is None:
        raise ApiError(401, "signature_missing", "sign in with a link from `medsettle dashboard-link`")
    if session.expires <= time.time():
        raise ApiError(401, "session_expired", "the session has ended; sign in with a new link")
    return await _active_key(service, session.key_id)


# ---------------------------------------------------------------- figures

FIGURE_KEYS = ("count", "total", *PAYERS, "out_of_pocket")


def period(query: Any, today: dt.date) -> tuple[dt.date, dt.date]:
    try:
        period_to = dt.date.fromisoformat(query["to"]) if query.get("to") else today
        period_from = (
            dt.date.fromisoformat(query["from"])
            if query.get("from")
            else period_to - dt.timedelta(days=DEFAULT_PERIOD_DAYS - 1)
        )
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_failed", "from and to must be YYYY-MM-DD", field="from") from None
    if period_from > period_to:
        raise ApiError(422, "validation_failed", "from is after to", field="from")
    if (period_to - period_from).days >= MAX_PERIOD_DAYS:
        raise ApiError(422, "validation_failed", f"a period is at most {MAX_PERIOD_DAYS} days", field="from")
    return period_from, period_to


# ---------------------------------------------------------------- rendering

e = html.escape


def money(fen: int) -> str:
    """An amount as a person reads money: yuan, thousands separated, two decimals (348,208.60)."""
    return format_yuan_grouped(fen)


def window(period_from: dt.date, period_to: dt.date, **more: str | None) -> str:
    """A period (and any more parameters given a value) as a query string, escaped for an attribute."""
    pairs = [("from", period_from.isoformat()), ("to", period_to.isoformat())]
    pairs += [(name, value) for name, value in more.items() if value]
    return e(urllib.parse.urlencode(pairs))


def export_links(table: str, query: str) -> str:
    """The xlsx and CSV downloads of one table, beside it (``query``: its window, already escaped)."""
    return (
        f'<span class="export">导出 Export: <a id="export-{table}-xlsx" href="/dashboard/export?table={table}'
        f'&amp;format=xlsx&amp;{query}">xlsx</a> · <a id="export-{table}-csv" href="/dashboard/export?'
        f'table={table}&amp;format=csv&amp;{query}">CSV</a></span>'
    )


def _scale(value: int, maximum: int, pixels: int) -> int:
    return 0 if maximum <= 0 else value * pixels // maximum


class Fund:
    """A fund as the page shows it: its code, label and colour."""

    __slots__ = ("code", "colour", "label")

    def __init__(self, code: str, label: str, colour: str) -> None:
        self.code, self.label, self.colour = code, label, colour

    @property
    def key(self) -> str:
        """The fund in element ids and data attributes: ``insurance``, ``fund-critical-illness``."""
        return self.code.replace("_", "-") if self.code in PAYERS else f"fund-{self.code.replace('_', '-')}"


def shown_funds(entries: list[FundEntry]) -> list[Fund]:
    """Every fund the figures name (``DashboardFigures.funds``), in order (the three when they name none)."""
    entries = entries or [FundEntry(code=code, account="", name=code, name_en=code) for code in PAYERS]
    funds = []
    for entry in entries:
        if entry.code in PAYERS:
            funds.append(Fund(entry.code, PAYER_NAMES[entry.code], COLOURS[entry.code]))
        else:
            label = entry.name if entry.name == entry.name_en else f"{entry.name} {entry.name_en}"
            funds.append(Fund(entry.code, label, MORE_COLOURS[(len(funds) - 3) % len(MORE_COLOURS)]))
    return funds


def funds_paid(amounts: Amounts, funds: list[Fund]) -> int:
    return sum(amounts.paid(fund.code) for fund in funds)


def axis_step(peak: int, intervals: int = 4) -> int:
    """A round step for an axis up to ``peak`` fen: 1, 2 or 5 times a power of ten, at least a yuan, such
    that ``intervals`` steps reach ``peak`` (348,208.60 -> steps of 100,000.00)."""
    wanted = max(100, -(-peak // intervals))
    magnitude = 10 ** (len(str(wanted)) - 1)
    return next(step for step in (magnitude, 2 * magnitude, 5 * magnitude, 10 * magnitude) if step >= wanted)


def axis_label(fen: int) -> str:
    """An axis tick in whole yuan, thousands separated: 10,000."""
    return f"{fen // 100:,}"


def _daily_chart(days: list[tuple[dt.date, Amounts]], funds: list[Fund]) -> str:
    """Stacked bars per day: what each fund paid out. The y axis has round ticks in yuan with grid lines;
    each day's bar leads to the dashboard of that day."""
    height, left, bottom, top_margin = 230, 80, 34, 24  # the top margin holds the unit above the axis
    step = max(4, min(28, 900 // max(1, len(days))))
    caption = "服务日期 service date (月-日 month-day)"
    width = max(left + step * len(days), left + text_width(caption, 10)) + 10  # a day or two still fit their caption
    peak = max((funds_paid(day, funds) for _, day in days), default=0)
    tick = axis_step(peak)
    axis_top = tick * max(1, -(-peak // tick))
    plot = height - top_margin
    parts = [
        f'<svg id="chart-daily" role="img" aria-label="fund outflow per day" width="{width}" '
        f'height="{height + bottom}" viewBox="0 0 {width} {height + bottom}" xmlns="http://www.w3.org/2000/svg">',
    ]
    for value in range(0, axis_top + 1, tick):
        y = height - _scale(value, axis_top, plot)
        parts.append(f'<line x1="{left}" y1="{y}" x2="{width}" y2="{y}" stroke="{"#333" if value == 0 else "#ddd"}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11" '
            f'data-tick="{value}">{axis_label(value)}</text>'
        )
    parts.append('<text x="4" y="12" font-size="10" fill="#555">元 yuan</text>')
    for index, (day, amounts) in enumerate(days):
        x = left + index * step
        top = height
        bars = []
        for fund in funds:
            paid = amounts.paid(fund.code)
            bar = _scale(paid, axis_top, plot)
            if bar:
                top -= bar
                bars.append(
                    f'<rect x="{x + 1}" y="{top}" width="{step - 2}" height="{bar}" fill="{fund.colour}">'
                    f"<title>{day.isoformat()} {e(fund.label)} {e(money(paid))}</title></rect>"
                )
        if bars:
            href = f"/dashboard?{window(day, day)}"
            parts.append(f'<a href="{href}" data-day="{day.isoformat()}">{"".join(bars)}</a>')
        if index % max(1, len(days) // 8) == 0:
            parts.append(f'<text x="{x}" y="{height + 16}" font-size="10">{day.strftime("%m-%d")}</text>')
    parts.append(f'<text x="{left}" y="{height + 30}" font-size="10" fill="#555">{caption}</text>')
    parts.append("</svg>")
    return "".join(parts)


def text_width(text: str, font_size: int) -> int:
    """About how wide ``text`` is drawn, in pixels: a Chinese character is as wide as the font is high, other
    characters a little over half of that. SVG text is not laid out by the page, so a chart makes room for
    its labels itself."""
    wide = sum(1 for character in text if unicodedata.east_asian_width(character) in "WF")
    return wide * font_size + (len(text) - wide) * font_size * 62 // 100


def _bars(chart_id: str, rows: list[tuple[str, int, str]], label: str) -> str:
    """Horizontal bars, one row per (label, value, colour); values in fen. The labels' column and the
    figures after the bars are as wide as their longest text."""
    row_height, bar_width, font_size = 26, 360, 12
    left = max((text_width(name, font_size) for name, _, _ in rows), default=0) + 16
    right = max((text_width(money(value), font_size) for _, value, _ in rows), default=0) + 16
    width = left + bar_width + right
    peak = max((value for _, value, _ in rows), default=0)
    height = row_height * len(rows) + 6
    parts = [
        f'<svg id="{chart_id}" role="img" aria-label="{e(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (name, value, colour) in enumerate(rows):
        y = index * row_height + 4
        bar = _scale(value, peak, bar_width)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="{font_size}">{e(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{bar}" height="{row_height - 8}" fill="{colour}"/>')
        parts.append(f'<text x="{left + bar + 6}" y="{y + 15}" font-size="{font_size}">{e(money(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histogram(histogram: list[int]) -> str:
    height, bottom, step, left = 160, 34, 48, 40
    peak = max(histogram, default=0)
    width = left + step * 10 + 10
    parts = [
        f'<svg id="chart-oop" role="img" aria-label="out-of-pocket ratio" width="{width}" height="{height + bottom}" '
        f'viewBox="0 0 {width} {height + bottom}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{height}" x2="{width}" y2="{height}" stroke="#333"/>',
    ]
    for bucket, count in enumerate(histogram):
        x = left + bucket * step
        bar = _scale(count, peak, height - 20)
        parts.append(
            f'<rect x="{x + 2}" y="{height - bar}" width="{step - 4}" height="{bar}" fill="#7a5cc0" '
            f'data-bucket="{bucket}" data-count="{count}">'
            f"<title>{bucket * 10}-{bucket * 10 + 10}%: {count}</title></rect>"
        )
        parts.append(
            f'<text x="{x + step // 2}" y="{height - bar - 4}" text-anchor="middle" font-size="11">{count}</text>'
        )
        parts.append(f'<text x="{x + 4}" y="{height + 14}" font-size="10">{bucket * 10}%</text>')
    parts.append(f'<text x="{left}" y="{height + 30}" font-size="11">个人自付 / 总额 out of pocket ÷ total</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f5f6f8;color:#111}
header{background:#1f3b5c;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}
header a{color:#fff}
main{padding:16px 24px}
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 16px;margin:0 0 16px}
h2{font-size:16px;margin:0 0 8px}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px;font-variant-numeric:tabular-nums}
.card b::before{content:"¥";font-size:14px;margin-right:2px;color:#555}
table{border-collapse:collapse;font-size:14px}th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
td{white-space:nowrap}td.id{white-space:normal;word-break:break-all;min-width:9em;max-width:18em}
th{font-weight:600;background:#f0f2f5}td.money,th.money,td.count{text-align:right;font-variant-numeric:tabular-nums}
tr.totals td{font-weight:700;border-top:2px solid #333}form{margin:8px 0 0}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.export{float:right;font-size:13px;font-weight:400}.scroll{overflow-x:auto}
@media print{
body{background:#fff}header{background:none;color:#000;border-bottom:2px solid #000;padding:0 0 6px}
header a{color:#000}main{padding:8px 0}section{border:none;padding:0;margin:0 0 12px;break-inside:avoid}
form,.export,.screen-only{display:none}a{color:inherit;text-decoration:none}.scroll{overflow:visible}
@page{size:A4 landscape;margin:12mm}
}
"""


def shown_buckets(totals: Amounts) -> list[Bucket]:
    """The four buckets always; ``unsplit`` only when the period holds bills settled before they were kept."""
    return [bucket for bucket in BUCKETS if bucket != "unsplit" or totals.unsplit]


def bucket_label(bucket: Bucket) -> str:
    """The bucket's Chinese name with the English beside."""
    name, name_en = BUCKET_NAMES[bucket]
    return f"{name} {name_en}"


def _buckets_section(totals: Amounts) -> str:
    """What the period's bills were: a card and a bar for each bucket; every bucket's fen in ``data-*``."""
    data = " ".join(f'data-{bucket.replace("_", "-")}="{getattr(totals, bucket)}"' for bucket in BUCKETS)
    shown = shown_buckets(totals)
    cards = "".join(
        f'<div class="card"><span>{e(bucket_label(bucket))}</span>'
        f'<b id="bucket-{bucket.replace("_", "-")}">{e(money(getattr(totals, bucket)))}</b></div>'
        for bucket in shown
    )
    rows = [(bucket_label(bucket), getattr(totals, bucket), BUCKET_COLOURS[bucket]) for bucket in shown]
    chart = _bars("chart-buckets", rows, "bills by bucket")
    return (
        f'<section id="buckets" {data}><h2>费用构成 What the bills were (yuan), adding up to 总额 total</h2>'
        f'<div class="cards">{cards}</div>{chart}</section>'
    )


# Every page: never cached, no scripts or outside assets, posts only to the gateway, never framed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
}


class MoneyColumn(NamedTuple):
    """A money column of a table: its heading, what it reads of a set of amounts, and its bucket if it is one."""

    label: str
    read: Callable[[Amounts], int]
    bucket: Bucket | None = None


def money_columns(funds: list[Fund], buckets: Sequence[Bucket] = ()) -> list[MoneyColumn]:
    """The total, every fund, the patient, then any of the four buckets asked for."""
    columns = [MoneyColumn("总额 total", lambda amounts: amounts.total)]
    columns += [MoneyColumn(fund.label, lambda amounts, code=fund.code: amounts.paid(code)) for fund in funds]
    columns.append(MoneyColumn(PAYER_NAMES["out_of_pocket"], lambda amounts: amounts.out_of_pocket))
    columns += [
        MoneyColumn(bucket_label(bucket), lambda amounts, b=bucket: getattr(amounts, b), bucket) for bucket in buckets
    ]
    return columns


def money_cells(amounts: Amounts, columns: list[MoneyColumn], *, bucket_data: bool = True) -> str:
    """A row's money cells; a bucket's cell also carries its fen (``data-bucket-fen``) unless told not to."""
    cells = []
    for column in columns:
        fen = column.read(amounts)
        data = f' data-bucket-fen="{fen}"' if column.bucket and bucket_data else ""
        cells.append(f'<td class="money"{data}>{e(money(fen))}</td>')
    return "".join(cells)


def money_heads(columns: list[MoneyColumn]) -> str:
    return "".join(f'<th class="money">{e(column.label)}</th>' for column in columns)


def totals_row(label_cells: int, amounts: Amounts, columns: list[MoneyColumn]) -> str:
    """A table's closing row: 合计 Total, the count, and every money column of ``amounts``."""
    blanks = "<td></td>" * (label_cells - 1)
    return (
        f'<tr class="totals" data-count="{amounts.count}" data-total="{amounts.total}"><td>合计 Total</td>{blanks}'
        f'<td class="count">{amounts.count}</td>{money_cells(amounts, columns, bucket_data=False)}</tr>'
    )


def _days_section(figures: DashboardFigures, funds: list[Fund], query: str) -> str:
    """The days with settlements, each leading to the dashboard of that day, and their totals."""
    columns = money_columns(funds)
    rows = "".join(
        f'<tr data-day="{day.isoformat()}" data-count="{amounts.count}" data-total="{amounts.total}">'
        f'<td><a href="/dashboard?{window(day, day)}">{day.isoformat()}</a></td>'
        f'<td class="count">{amounts.count}</td>{money_cells(amounts, columns)}</tr>'
        for day, amounts in figures.days
        if amounts.count
    )
    return (
        f'<section id="days-section"><h2>每日明细 Per day (service date; a day leads to its clinics)'
        f'{export_links("days", query)}</h2><div class="scroll"><table id="days"><tr><th>日期 date</th>'
        f'<th class="money">笔数 count</th>{money_heads(columns)}</tr>{rows}'
        f"{totals_row(1, figures.totals, columns)}</table></div></section>"
    )


def _levels_section(figures: DashboardFigures, funds: list[Fund], query: str) -> str:
    """Each clinic level with its settlements behind it, and the period's totals."""
    columns = money_columns(funds, shown_buckets(figures.totals))
    levels = [(level, figures.levels.get(level, Amounts())) for level in LEVELS]
    level_rows = [
        (f"{level_name(level)} ({amounts.count})", funds_paid(amounts, funds), "#2f6db5") for level, amounts in levels
    ]
    rows = "".join(
        f'<tr data-level="{level}" data-count="{amounts.count}" data-total="{amounts.total}">'
        f'<td><a href="/dashboard/settlements?{window(figures.period_from, figures.period_to, level=level)}">'
        f'{e(level_name(level))}</a></td><td class="count">{amounts.count}</td>{money_cells(amounts, columns)}</tr>'
        for level, amounts in levels
    )
    return (
        f"<section><h2>按机构级别 Per clinic level (funds paid, yuan){export_links('levels', query)}</h2>"
        f'{_bars("chart-levels", level_rows, "split per level")}<div class="scroll"><table id="levels">'
        f'<tr><th>级别 level</th><th class="money">笔数 count</th>{money_heads(columns)}</tr>{rows}'
        f"{totals_row(1, figures.totals, columns)}</table></div></section>"
    )


def _clinics_section(figures: DashboardFigures, funds: list[Fund], query: str) -> str:
    """Every clinic with settlements in the period, the busiest first, each leading to its settlements."""
    columns = money_columns(funds)

    def clinic_query(clinic_id: str) -> str:
        return window(figures.period_from, figures.period_to, clinic=clinic_id)

    rows = "".join(
        f'<tr data-clinic="{e(clinic.clinic_id)}" data-count="{clinic.amounts.count}" '
        f'data-total="{clinic.amounts.total}">'
        f'<td><a href="/dashboard/settlements?{clinic_query(clinic.clinic_id)}">{e(clinic.clinic_id)}</a></td>'
        f"<td>{e(clinic.name)}</td><td>{e(level_name(clinic.level))}</td>"
        f'<td class="count">{clinic.amounts.count}</td>{money_cells(clinic.amounts, columns)}</tr>'
        for clinic in figures.clinics
    )
    return (
        f'<section id="clinics-section"><h2>按机构 Per clinic, busiest first (a clinic leads to its settlements)'
        f'{export_links("clinics", query)}</h2><div class="scroll"><table id="clinics"><tr><th>机构编码 clinic</th>'
        f'<th>机构名称 name</th><th>级别 level</th><th class="money">笔数 count</th>{money_heads(columns)}</tr>'
        f"{rows}{totals_row(3, figures.totals, columns)}</table></div></section>"
    )


def render(figures: DashboardFigures, *, who: str) -> str:
    totals = figures.totals
    funds = shown_funds(figures.funds)
    others = [fund for fund in funds if fund.code not in PAYERS]
    data = " ".join(f'data-{key.replace("_", "-")}="{getattr(totals, key)}"' for key in FIGURE_KEYS)
    data += "".join(f' data-{fund.key}="{totals.paid(fund.code)}"' for fund in others)
    # (key in ids, label, amount) of each card: the total, every fund, the patient.
    cards_shown: list[tuple[str, str, Callable[[Amounts], int]]] = [
        ("total", "总额 total", lambda amounts: amounts.total),
        *((fund.key, fund.label, lambda amounts, code=fund.code: amounts.paid(code)) for fund in funds),
        ("out-of-pocket", PAYER_NAMES["out_of_pocket"], lambda amounts: amounts.out_of_pocket),
    ]
    cards = "".join(
        f'<div class="card"><span>{e(label)}</span><b id="total-{key}">{e(money(amount(totals)))}</b></div>'
        for key, label, amount in cards_shown
    )
    legend = "".join(f'<span><i style="background:{fund.colour}"></i>{e(fund.label)}</span>' for fund in funds)
    payer_rows = [(fund.label, totals.paid(fund.code), fund.colour) for fund in funds]
    payer_rows.append((PAYER_NAMES["out_of_pocket"], totals.out_of_pocket, COLOURS["out_of_pocket"]))
    reconciliation_rows = "".join(
        f'<tr data-clinic="{e(row.clinic_id)}" data-confirmed="{str(row.confirmed).lower()}">'
        f"<td>{e(row.clinic_id)}</td><td>{e(row.name)}</td><td>{e(level_name(row.level))}</td>"
        f'<td class="count">{row.settlements}</td><td class="count">{row.reversals}</td>'
        f"<td>{'已确认 confirmed' if row.confirmed else '待对账 not yet reconciled'}</td></tr>"
        for row in figures.reconciliation
    )
    confirmed = sum(1 for row in figures.reconciliation if row.confirmed)
    recon_day = figures.reconciliation_day.isoformat()
    query = window(figures.period_from, figures.period_to)
    period_text = figures.period_from.isoformat()
    if figures.period_to != figures.period_from:
        period_text += f" – {figures.period_to.isoformat()}"
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>结算看板 Finance dashboard</title><style>{CSS}</style></head>
<body><header><h1>结算看板 Finance dashboard</h1><small>{e(who)}</small></header><main>
<section id="period" data-from="{figures.period_from.isoformat()}" data-to="{figures.period_to.isoformat()}">
<h2>期间 Period {period_text} (service date; reversals excluded)</h2>
<form method="get" action="/dashboard">从 from <input type="date" name="from" value="{figures.period_from.isoformat()}">
至 to <input type="date" name="to" value="{figures.period_to.isoformat()}">
<button type="submit">显示 Show</button></form>
<p class="screen-only"><a id="what-if-link" href="/dashboard/what-if?{query}">政策测算 Policy what-if</a>:
replay this period under a candidate policy file</p></section>
<section id="totals" {data}><h2>合计 Totals — <span id="total-count">{totals.count}</span> settlements
<a class="export" id="settlements-link" href="/dashboard/settlements?{query}">结算明细 The settlements</a></h2>
<div class="cards">{cards}</div></section>
{_buckets_section(totals)}
<section><h2>每日基金支出 Fund outflow per day (yuan; a day's bar leads to that day)</h2>
<div class="legend">{legend}</div>
{_daily_chart(figures.days, funds)}</section>
{_days_section(figures, funds, query)}
<section><h2>支付方构成 Split per payer (yuan)</h2>{_bars("chart-payers", payer_rows, "split per payer")}</section>
{_levels_section(figures, funds, query)}
<section><h2>个人自付比例分布 Out-of-pocket ratio</h2>{_histogram(figures.histogram)}</section>
{_clinics_section(figures, funds, query)}
<section id="reconciliation-status" data-day="{recon_day}" data-clinics="{len(figures.reconciliation)}"
 data-confirmed="{confirmed}"><h2>对账状态 Reconciliation status, booking day {recon_day}:
{confirmed} of {len(figures.reconciliation)} clinics confirmed</h2>
<table id="reconciliation"><tr><th>机构编码 clinic</th><th>机构名称 name</th><th>级别 level</th>
<th class="money">结算 settlements</th><th class="money">冲正 reversals</th><th>状态 status</th></tr>
{reconciliation_rows}</table></section>
</main></body></html>"""


async def dashboard(request: web.Request) -> web.Response:
    key = await session_key(request)
    period_from, period_to = period(request.query, china_today())
    try:
        day = dt.date.fromisoformat(request.query["day"]) if request.query.get("day") else None
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_failed", "day must be YYYY-MM-DD", field="day") from None
    found = await request.app[reports_key].dashboard_figures(period_from, period_to, reconciliation_day=day)
    return page_response(render(found, who=f"{key.terminal_id} ({key.role})"))


def page_response(text: str, *, status: int = 200) -> web.Response:
    """An HTML page of the dashboard, with the headers every page carries."""
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)
