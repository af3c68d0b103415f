"""The dashboard's policy what-if: a form for a candidate policy file, and its report as a page or CSV.

``GET /dashboard/what-if`` shows the form; ``POST /dashboard/what-if`` (form-encoded or multipart, for the
file upload) replays the window under the candidate through ``Reports.what_if`` with the API route's limit
(``WHAT_IF_AT_MOST``) and the gateway's item catalogue, and shows the report (adapters/what_if.py): the
total and each group, each fund today, under the candidate and the difference, who would pay more or less
out of pocket, the out-of-pocket shares by tenths before and after, and the refusals by code. The report
page carries the form again, filled in, and a button that posts it once more with ``format=csv`` for the
same report as CSV. A candidate that does not load, a window over the limit or a field that does not read
shows on the form, in words, with what was entered kept.

Both pages check the session cookie as ``/dashboard`` does (``session_key``). Cross-site posting is held
off by the cookie itself: it is SameSite=Strict (``dashboard_login``), so a browser sends it only with
requests that start on the gateway's own pages, and a post from another site arrives without a session
and is refused 401. The pages' CSP allows forms to post only to the gateway ('self').
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.reports import WindowTooLarge
from adapters.what_if import (
    GROUP_BYS,
    FundImpact,
    GroupBy,
    GroupImpact,
    ShareDistribution,
    WhatIfReport,
    what_if_csv,
)
from gateway.app_keys import reports_key, service_key
from gateway.dashboard.pages import CSS, PAGE_HEADERS, PAYER_NAMES, PAYERS, e, period, session_key
from gateway.http.handlers.finance import WHAT_IF_AT_MOST
from gateway.http.responses import csv_response
from gateway.problems import ApiError
from gateway.service import china_today
from settlement.chain_policy import parse_chain
from settlement.errors import PolicyError
from settlement.money import format_yuan

# As POST /v1/finance/what-if takes it (gateway.api_models.WhatIfRequest.policy).
MAX_POLICY_BYTES = 256 * 1024
BY_NAMES = {
    "fund": "按基金 by fund",
    "tier": "按救助类别 by tier",
    "level": "按机构级别 by level",
    "region": "按地区 by region",
}
FORMATS = ("html", "csv")


@dataclass
class WhatIfForm:
    """What the form holds, as entered (so a refused form shows it again), and what is wrong with it."""

    policy: str = ""
    policy_source: str = "policy"  # the uploaded file's name, or "policy" for the text box
    period_from: str = ""
    period_to: str = ""
    by: GroupBy = "level"
    format: str = "html"
    problems: list[tuple[str, str]] = field(default_factory=list)  # (field, problem in words)

    def refuse(self, name: str, problem: str) -> None:
        self.problems.append((name, problem))

    def dates(self) -> tuple[dt.date, dt.date] | None:
        """The window, or None with a problem noted for each date that does not read."""
        found = []
        for name, value in (("from", self.period_from), ("to", self.period_to)):
            try:
                found.append(dt.date.fromisoformat(value))
            except ValueError:
                self.refuse(name, f"{name} must be a date, YYYY-MM-DD")
        if len(found) != 2:
            return None
        if found[0] > found[1]:
            self.refuse("from", "from is after to")
            return None
        return found[0], found[1]


# ---------------------------------------------------------------- reading the form


async def read_form(request: web.Request) -> WhatIfForm:
    """The posted form, form-encoded or multipart; a file upload, when one was chosen, wins over the text box."""
    try:
        posted = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"the form is larger than {request.client_max_size} bytes") from None
    except ValueError:  # a multipart body that does not parse
        raise ApiError(400, "bad_request", "the form could not be read") from None
    form = WhatIfForm(
        policy=_text(posted, "policy"),
        period_from=_text(posted, "from").strip(),
        period_to=_text(posted, "to").strip(),
        format=_text(posted, "format") or "html",
    )
    upload = posted.get("policy_file")
    if isinstance(upload, web.FileField):
        content = upload.file.read(MAX_POLICY_BYTES + 1)
        if len(content) > MAX_POLICY_BYTES:
            form.refuse("policy_file", f"a policy file is at most {MAX_POLICY_BYTES // 1024} KiB")
        elif content:
            form.policy_source = upload.filename or "policy_file"
            try:
                form.policy = content.decode("utf-8-sig")
            except UnicodeDecodeError:
                form.refuse("policy_file", "the policy file must be UTF-8 text (TOML)")
    if not form.policy.strip():
        if not form.problems:  # an upload refused above says why already
            form.refuse("policy", "choose a policy file or paste its text")
    elif len(form.policy.encode()) > MAX_POLICY_BYTES:
        form.refuse("policy", f"a policy file is at most {MAX_POLICY_BYTES // 1024} KiB")
    by = _text(posted, "by") or "level"
    for known in GROUP_BYS:
        if by == known:
            form.by = known
            break
    else:
        form.refuse("by", f"group by one of {', '.join(GROUP_BYS)}")
    if form.format not in FORMATS:
        form.format = "html"
    return form


def _text(posted: Mapping[str, Any], name: str) -> str:
    value = posted.get(name, "")
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------- handlers


async def what_if_page(request: web.Request) -> web.Response:
    """``GET /dashboard/what-if``: the form, for the window of ``?from=&to=`` (the dashboard's period when
    opened from it; the last 30 days by default)."""
    key = await session_key(request)
    period_from, period_to = period(request.query, china_today())
    form = WhatIfForm(period_from=period_from.isoformat(), period_to=period_to.isoformat())
    return _page(render_page(form, who=_who(key)))


async def what_if_run(request: web.Request) -> web.Response:
    """``POST /dashboard/what-if``: the candidate replayed, as a page or (``format=csv``) as CSV."""
    key = await session_key(request)  # before the body is read: nobody without a session makes it parse a form
    form = await read_form(request)
    window = form.dates()
    if form.problems or window is None:
        return _page(render_page(form, who=_who(key)), status=422)
    try:
        candidate = parse_chain(form.policy, form.policy_source)
    except PolicyError as error:
        form.refuse("policy", f"政策文件无法加载 the candidate does not load: {error.path}: {error.problem}")
        return _page(render_page(form, who=_who(key)), status=422)
    start, end = window
    try:
        report = await request.app[reports_key].what_if(
            candidate,
            start=start,
            end=end,
            by=form.by,
            catalogue=request.app[service_key].catalogue,
            at_most=WHAT_IF_AT_MOST,
        )
    except WindowTooLarge as error:
        form.refuse(
            "from",
            f"期间过长 the window is too large: it replays {error.replays} settlements (from 1 January of its first "
            f"year), and a page replays at most {WHAT_IF_AT_MOST}. Choose a shorter window, or run "
            "`medsettle policy what-if` for larger ones.",
        )
        return _page(render_page(form, who=_who(key)), status=422)
    if form.format == "csv":
        return csv_response(what_if_csv(report), f"what-if-{candidate.id[:80]}-{start}-{end}.csv")
    return _page(render_page(form, who=_who(key), report=report))


def _who(key: Any) -> str:
    return f"{key.terminal_id} ({key.role})"


def _page(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


# ---------------------------------------------------------------- rendering

_MORE_CSS = """
.problems{background:#fdecea;border:1px solid #e0a39a;color:#7a1f14}.problems li{margin:2px 0}
textarea{width:100%;max-width:900px;font-family:monospace;font-size:12px}
label{display:inline-block;margin:4px 14px 4px 0}header a{color:#fff}.better{color:#1e7b3c}.worse{color:#b03a2e}
"""


def render_page(form: WhatIfForm, *, who: str, report: WhatIfReport | None = None) -> str:
    body = _form_section(form)
    if report is not None:
        body += _report_sections(report, form)
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>政策测算 Policy what-if</title>
<style>{CSS}{_MORE_CSS}</style></head>
<body><header><h1>政策测算 Policy what-if</h1>
<small>{e(who)} · <a href="/dashboard">结算看板 Finance dashboard</a></small></header><main>
{body}
</main></body></html>"""


def _form_section(form: WhatIfForm) -> str:
    # The newline after <textarea> is the one a browser drops, so a text that starts with one keeps it.
    problems = ""
    if form.problems:
        items = "".join(
            f'<li data-field="{e(name)}"><b>{e(name)}</b>: {e(problem)}</li>' for name, problem in form.problems
        )
        problems = f'<div id="problems" class="problems"><h2>请更正 Please correct</h2><ul>{items}</ul></div>'
    options = "".join(
        f'<option value="{by}"{" selected" if by == form.by else ""}>{e(BY_NAMES[by])}</option>' for by in GROUP_BYS
    )
    return f"""<section id="what-if-form">
<h2>候选政策 Candidate policy, replayed over past settlements (nothing is written)</h2>{problems}
<form method="post" action="/dashboard/what-if" enctype="multipart/form-data">
<label>政策文件 Policy file (TOML) <input type="file" name="policy_file" accept=".toml,text/plain"></label><br>
<label for="policy">或粘贴文本 or paste its text (a chosen file wins)</label><br>
<textarea id="policy" name="policy" rows="14">\n{e(form.policy)}</textarea><br>
<label>从 from <input type="date" name="from" value="{e(form.period_from)}" required></label>
<label>至 to <input type="date" name="to" value="{e(form.period_to)}" required></label>
<label>分组 group by <select name="by">{options}</select></label>
<button type="submit" name="format" value="html">测算 Run</button>
<button type="submit" name="format" value="csv">下载 CSV Download CSV</button>
</form>
<p><small>Service dates; each person-year is replayed from 1 January. At most {WHAT_IF_AT_MOST} settlements per
page; `medsettle policy what-if` takes any window.</small></p></section>"""


def _label(impact: FundImpact) -> str:
    if impact.fund in PAYERS or impact.fund == "out_of_pocket":
        return PAYER_NAMES[impact.fund]
    return impact.name if impact.name == impact.name_en else f"{impact.name} {impact.name_en}"


def _signed(fen: int) -> str:
    return f"+{format_yuan(fen)}" if fen > 0 else format_yuan(fen)


def _funds_table(group: GroupImpact) -> str:
    rows = "".join(
        f'<tr data-fund="{e(impact.fund)}" data-today="{impact.today}" data-would="{impact.would}" '
        f'data-difference="{impact.difference}"><td>{e(_label(impact))}</td>'
        f'<td class="money">{format_yuan(impact.today)}</td><td class="money">{format_yuan(impact.would)}</td>'
        f'<td class="money">{_signed(impact.difference)}</td></tr>'
        for impact in [*group.funds, group.out_of_pocket]
    )
    return (
        '<table class="funds"><tr><th>基金 fund</th><th>现行 today (yuan)</th><th>候选 would (yuan)</th>'
        f"<th>差额 difference (yuan)</th></tr>{rows}</table>"
    )


def _shares_table(today: ShareDistribution, would: ShareDistribution) -> str:
    heads = "".join(f"<th>{tenth * 10}–{tenth * 10 + 10}%</th>" for tenth in range(10))
    rows = "".join(
        f'<tr data-shares="{name}"><td>{label}</td>'
        + "".join(f"<td>{count}</td>" for count in shares.tenths)
        + f"<td>{e(shares.median or '–')}</td></tr>"
        for name, label, shares in (("today", "现行 today", today), ("would", "候选 would", would))
    )
    head = f"<tr><th>个人自付比例 out of pocket ÷ total</th>{heads}<th>median</th></tr>"
    return f'<table class="shares">{head}{rows}</table>'


def _group_section(group: GroupImpact, *, heading: str, section_id: str = "") -> str:
    return (
        f'<section{section_id} class="group" data-group="{e(group.group)}" data-settlements="{group.settlements}" '
        f'data-people="{group.people}" data-better-off="{group.better_off}" data-worse-off="{group.worse_off}" '
        f'data-unchanged="{group.unchanged}"><h2>{heading} — {group.settlements} settlements, '
        f"{group.people} people, 总额 total {format_yuan(group.total)}</h2>"
        f"{_funds_table(group)}"
        f'<p>个人自付 Out of pocket: <span class="better">{group.better_off} 减少 better off</span> · '
        f'<span class="worse">{group.worse_off} 增加 worse off</span> · {group.unchanged} 不变 unchanged</p>'
        f"{_shares_table(group.share_today, group.share_would)}</section>"
    )


def _report_sections(report: WhatIfReport, form: WhatIfForm) -> str:
    refused = "".join(
        f'<tr data-code="{e(code)}"><td>{e(code)}</td><td>{count}</td></tr>' for code, count in report.refused.items()
    )
    refusals = (
        f'<table id="refused"><tr><th>code</th><th>bills</th></tr>{refused}</table>'
        if refused
        else "<p>候选政策未拒绝任何账单 The candidate refuses none of the window's bills.</p>"
    )
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{e(value)}">'
        for name, value in (("policy", form.policy), ("from", form.period_from), ("to", form.period_to),
                            ("by", form.by), ("format", "csv"))
    )  # fmt: skip
    # By fund, a group is a fund's code: shown under the name its policy gives it.
    names = {impact.fund: _label(impact) for impact in report.total.funds} if report.by == "fund" else {}
    groups = "".join(
        _group_section(group, heading=e(names.get(group.group, f"{report.by} {group.group}")))
        for group in report.groups
    )
    return f"""<section id="report" data-candidate="{e(report.candidate)}" data-settlements="{report.settlements}"
 data-replayed="{report.replayed}"><h2>测算结果 Report: {e(report.candidate)},
{report.period.from_.isoformat()} – {report.period.to.isoformat()}, {e(BY_NAMES[report.by])}</h2>
<p>{report.settlements} settlements compared; {report.replayed} replayed (with the year's earlier bills).</p>
<form id="csv-download" method="post" action="/dashboard/what-if">{hidden}
<button type="submit">下载 CSV Download this report as CSV</button></form></section>
<section id="refusals"><h2>候选政策拒绝的账单 Bills the candidate refuses, by code (left out of both sides)</h2>
{refusals}</section>
{_group_section(report.total, heading="合计 Total", section_id=' id="total"')}
{groups}"""
