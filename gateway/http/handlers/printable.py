"""Statements a finance office prints and signs: print-ready HTML of a report's tables.

The same ``adapters.xlsx_export.Table``s the xlsx and CSV exports write, laid out for A4 landscape:
a title in Chinese and English, what the figures are and whether the period is closed (an open day's
figures can still change, so it says so on the paper), each table with its totals row, money in yuan
with thousands separators, headers that repeat on every printed page, and a block for the signatures
and the seal (制表, 审核, 负责人, 盖章). Nothing is fetched from elsewhere and no script runs: the page
prints the same offline, and its Content-Security-Policy allows only its own inline style.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from adapters.xlsx_export import TOTAL_LABEL, Column, Table, totals_row
from gateway.service import CHINA
from settlement.money import format_yuan_grouped

PRINT_CSS = """
@page { size: A4 landscape; margin: 12mm 10mm; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif; font-size: 9pt;
       color: #000; margin: 0 auto; max-width: 277mm; }
h1 { font-size: 15pt; text-align: center; margin: 0 0 2mm; }
.subtitle { text-align: center; margin: 0 0 4mm; }
.open { border: 1px solid #000; padding: 1mm 2mm; font-weight: bold; }
table { border-collapse: collapse; width: 100%; margin: 0 0 6mm; page-break-inside: auto; }
caption { text-align: left; font-weight: bold; font-size: 11pt; padding: 0 0 1mm; }
th, td { border: 1px solid #000; padding: 0.6mm 1.2mm; vertical-align: top; }
th { background: #eee; font-weight: bold; text-align: center; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; }
td.date { white-space: nowrap; }
td.money, td.count { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.totals td { font-weight: bold; border-top: 2px solid #000; }
.basis { font-size: 8pt; margin: 0 0 4mm; }
.signatures { display: flex; justify-content: space-between; margin-top: 10mm; page-break-inside: avoid; }
.signatures div { width: 23%; border-top: 1px solid #000; padding-top: 1mm; }
.seal { height: 25mm; }
@media screen { body { padding: 8mm; } }
"""

SIGNATURES = ("制表人 Prepared by", "审核人 Checked by", "负责人 Approved by", "单位盖章 Seal")


def _cell(column: Column, value: Any) -> str:
    if value is None:
        return "<td></td>"
    if column.kind == "money":
        return f'<td class="money">{format_yuan_grouped(value)}</td>'
    if column.kind == "count":
        return f'<td class="count">{value:,}</td>'
    if isinstance(value, dt.date):
        return f'<td class="date">{value.isoformat()}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_html(table: Table) -> str:
    """One table with its caption, a header repeated on each printed page, and its totals row."""
    e = html.escape
    head = "".join(f"<th>{e(column.zh)}<br>{e(column.en)}</th>" for column in table.columns)
    body = "".join(
        "<tr>" + "".join(_cell(column, value) for column, value in zip(table.columns, row, strict=True)) + "</tr>"
        for row in table.rows
    )
    if table.totals:
        totals = totals_row(table)
        body += '<tr class="totals">' + "".join(
            _cell(column, value) for column, value in zip(table.columns, totals, strict=True)
        ) + "</tr>"  # fmt: skip
    if not table.rows:
        body = f'<tr><td colspan="{len(table.columns)}">无 None</td></tr>'
    return f"<table><caption>{e(table.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def statement_html(title: str, subtitle: str, tables: Sequence[Table], *, closed: bool, basis: str) -> str:
    """A whole printable statement: title, whether its period is closed, the tables, the signatures."""
    e = html.escape
    printed = dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M")
    state = (
        "已结 Closed: these figures never change"
        if closed
        else '<span class="open">未结 Not closed: figures may still change</span>'
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{e(title)} {e(subtitle)}</title><style>{PRINT_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="subtitle">{e(subtitle)} · {state} · 打印时间 Printed {e(printed)} (China time)</p>',
        f'<p class="basis">金额单位：元 Amounts in yuan. {e(basis)}. {e(TOTAL_LABEL)}: 各行之和 the rows summed.</p>',
        *(table_html(table) for table in tables),
        '<div class="signatures">',
        *(f'<div class="{"seal" if index == 3 else ""}">{e(label)}</div>' for index, label in enumerate(SIGNATURES)),
        "</div></body></html>",
    ]
    return "\n".join(parts)


def print_response(text: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )
