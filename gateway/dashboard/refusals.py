"""A refused dashboard page as a person in a browser should see it: what happened and what to do, in Chinese
and in English.

The dashboard's routes refuse as every route does (``gateway.problems.ApiError``), and an API client
keeps its ``application/problem+json``. A browser asks for HTML first (its ``Accept`` names text/html
before, or without, JSON): it gets this page instead, with the same status and code. An expired or
missing session, an expired or wrong login link, a retired key: each says to make a new link with
``medsettle dashboard-link``; a key of the wrong role says which keys may open the dashboard. The middleware
asks a route for its page through ``Route.refusal_page`` (``gateway/http/routes.py``).
"""

from __future__ import annotations

from aiohttp import web

from gateway.dashboard.pages import CSS, PAGE_HEADERS, e
from gateway.http.requests import request_id_key
from gateway.problems import ApiError, shown

HTML = "text/html"
JSON_TYPES = ("application/json", "application/problem+json")

# What to do, in both languages, for every refusal that a new login link cures.
NEW_LINK = (
    "<p>请在网关主机上运行下面的命令生成新的登录链接，并在有效期内（默认 30 分钟）用浏览器打开它：</p>"
    "<p>Make a new login link on the gateway's host and open it in your browser before it expires"
    " (30 minutes unless you ask for longer):</p>"
    '<pre id="command">medsettle dashboard-link --terminal finance-1</pre>'
    "<p>链接须由财务或管理员终端的密钥签名。The link must be signed with a finance or admin terminal's key.</p>"
)
WRONG_ROLE = (
    "<p>结算看板只对财务（finance）和管理员（admin）终端开放；收费终端的密钥不能打开它。请用财务或管理员终端生成链接：</p>"
    "<p>The dashboard opens only for finance and admin terminals; a billing terminal's key may not open it."
    " Make the link with a finance or admin terminal's key:</p>"
    '<pre id="command">medsettle dashboard-link --terminal finance-1</pre>'
)
BACK = '<p><a id="back" href="/dashboard">返回看板 Back to the dashboard</a></p>'

# code: (Chinese heading, English heading, what to do)
PAGES = {
    "session_expired": ("登录已过期", "Your session has ended", NEW_LINK),
    "signature_missing": ("尚未登录", "You are not signed in", NEW_LINK),
    "timestamp_out_of_window": ("登录链接已过期", "This login link has expired", NEW_LINK),
    "bad_signature": ("登录链接无效", "This login link is not valid", NEW_LINK),
    "unknown_key": ("登录链接无效", "This login link is not valid", NEW_LINK),
    "terminal_revoked": ("密钥已停用", "This key is retired, or its terminal revoked", NEW_LINK),
    "forbidden": ("此密钥无权打开结算看板", "This key may not open the finance dashboard", WRONG_ROLE),
}


def _quality(accept: str, wanted: tuple[str, ...]) -> float:
    """The highest weight ``accept`` gives any of ``wanted`` by name (wildcards are not counted): 0 when
    it names none."""
    best = 0.0
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        if media.lower() not in wanted:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        best = max(best, weight)
    return best


def prefers_html(accept: str) -> bool:
    """Whether the caller asks for HTML over JSON: a browser does (text/html first, JSON not named); an API
    client naming application/json, or naming neither, keeps problem+json."""
    html = _quality(accept, (HTML, "application/xhtml+xml"))
    return html > 0 and html >= _quality(accept, JSON_TYPES)


def render_refusal(error: ApiError, request_id: str) -> str:
    """The page for a refusal: its heading in both languages, what to do, and the code to quote."""
    heading_zh, heading_en, advice = PAGES.get(
        error.code, ("无法显示此页面", "This page cannot be shown", f"<p>{e(shown(error.detail))}</p>{BACK}")
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{e(heading_zh)} {e(heading_en)}</title>
<style>{CSS}main{{max-width:760px}}pre{{background:#f0f2f5;padding:10px 14px;border-radius:4px;font-size:15px}}
</style></head>
<body><header><h1>结算看板 Finance dashboard</h1></header><main>
<section id="refusal" data-code="{e(error.code)}" data-status="{error.status}">
<h2 lang="zh-CN">{e(heading_zh)}</h2><h2 lang="en">{e(heading_en)}</h2>
{advice}
<p><small>代码 code: <code id="code">{e(error.code)}</code> ·
请求号 request id: <code>{e(request_id)}</code></small></p>
</section></main></body></html>"""


def refusal_page(request: web.Request, error: ApiError) -> web.Response | None:
    """The refusal as a page when the caller prefers HTML; None to answer it as problem+json."""
    if not prefers_html(request.headers.get("Accept", "")):
        return None
    return web.Response(
        text=render_refusal(error, request.get(request_id_key, "")),
        status=error.status,
        content_type=HTML,
        charset="utf-8",
        headers={**PAGE_HEADERS, **({"Retry-After": str(error.retry_after)} if error.retry_after else {})},
    )
