"""The patient receipt (结算单) for one settlement: a printable HTML page or narrow printer text.

``GET /v1/settlements/{id}/receipt?lang=zh|en&format=html|text``. The settlement is
read through ``Service.stored_settlement``, so a terminal sees only its own clinic's
settlements (another clinic's is "not found") exactly as for the JSON read; the stored
settlement keeps the billed items, with their names and quantities. Money is
formatted only with ``settlement.money`` (``format_yuan_grouped``, ``yuan_in_capitals``); each
payer's line is the engine's trace in plain words, ``settlement.explain.explain_step``. Every step of the
policy's chain gets a line, in chain order: the three funds of the first policies under
their labels, any other fund under the name its policy version gives it (in English its
``name_en``). Every piece of text that reaches HTML goes through ``html.escape``.

Each item shows what of it is 全自费 (fully self-pay), 超限价自付 (over the price cap), 先行自付
(self-pay first) and 政策范围内 (eligible), the buckets of the national settlement answer, and
says in words when its code is not in the item catalogue (so the patient pays it in full); the
four totals close the items. The HTML gives every line all four columns; the 32-column text
prints, under a line not wholly in scope, each of its non-zero buckets, and all four totals.

The patient's share is shown as its parts (全自费 + 超限价自付 + 先行自付 + what the funds left of the
eligible part, 政策范围内自付), the total and the patient's share also in capitals (大写); each step of
the chain says in plain words what it did (``settlement.explain.explain_step``), or why it did not pay.
The header carries the patient's registered name, the settlement's time (China time), and a short
receipt number with a QR code of the full settlement id (see ``receipt_number``). The text form is for
GBK thermal printers: what it prints encodes to GBK (``gbk_safe``).
"""

from __future__ import annotations

import datetime as dt
import html
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import segno
from aiohttp import web

from gateway import api_models as api
from gateway.app_keys import reports_key, service_key
from gateway.http.requests import RECEIPT_NUMBER_PATTERN, caller, settlement_id
from gateway.problems import ApiError
from gateway.service import CHINA, Service, Terminal
from settlement.catalogue import NOT_IN_CATALOGUE
from settlement.explain import LABELLED_FUNDS, LABELS, Language, explain_step, fund_label, programme_name
from settlement.models import LineBreakdown, PayerTrace
from settlement.money import format_yuan_grouped as format_yuan
from settlement.money import yuan_in_capitals

TEXT_WIDTH = 32
"""Columns of a narrow receipt printer; a CJK character takes two."""

RECEIPT_LABELS: dict[Language, dict[str, str]] = {
    "zh": {
        "title": "医疗费用结算单",
        "clinic": "医疗机构",
        "level": "机构级别",
        "visit": "就诊类型",
        "date": "就诊日期",
        "person": "身份证号",
        "patient": "姓名",
        "settled_at": "结算时间",
        "number": "结算单号",
        "settlement": "结算号",
        "capitals": "大写",
        "total_capitals": "医疗费用总额(大写)",
        "pay_capitals": "个人自付(大写)",
        "within": "政策范围内自付",
        "parts": "个人自付构成",
        "items": "费用明细",
        "code": "编码",
        "name": "名称",
        "category": "类别",
        "quantity": "数量×单价",
        "amount": "金额(元)",
        "payers": "各方支付",
        "payer": "支付方",
        "rule": "计算依据",
        "reversed": "已冲正 — 本结算已作废",
        "reversal": "冲正号",
        "adjusted": "追补调整",
        "village": "村卫生服务站",
        "township": "镇(社区)卫生服务中心",
        "county": "县级医院",
        "outpatient": "门诊",
        "inpatient": "住院",
        "A": "甲类",
        "B": "乙类",
        "C": "丙类",
        "yuan": "元",
        "items_total": "合计",
        NOT_IN_CATALOGUE: "目录外项目，全额自付",
        "his_visit_id.outpatient": "门诊号",
        "his_visit_id.inpatient": "住院号",
        "invoice_number": "发票号",
        "operator": "收费员",
        "admitted_on": "入院日期",
        "discharged_on": "出院日期",
        "diagnoses": "诊断(ICD-10)",
    },
    "en": {
        "title": "Medical settlement receipt",
        "clinic": "Clinic",
        "level": "Level",
        "visit": "Visit",
        "date": "Service date",
        "person": "ID number",
        "patient": "Patient",
        "settled_at": "Settled at",
        "number": "Receipt no.",
        "settlement": "Settlement",
        "capitals": "In capitals",
        "total_capitals": "Total in capitals (大写)",
        "pay_capitals": "You pay, in capitals (大写)",
        "within": "Eligible, not paid by the funds",
        "parts": "What you pay is made of",
        "items": "Items",
        "code": "Code",
        "name": "Name",
        "category": "Cat.",
        "quantity": "Qty × price",
        "amount": "Amount (yuan)",
        "payers": "Who pays",
        "payer": "Payer",
        "rule": "Rule applied",
        "reversed": "REVERSED — this settlement is void",
        "reversal": "Reversal",
        "adjusted": "Adjusted",
        "village": "village station",
        "township": "township centre",
        "county": "county hospital",
        "outpatient": "outpatient",
        "inpatient": "inpatient",
        "A": "A",
        "B": "B",
        "C": "C (self-pay)",
        "yuan": "yuan",
        "items_total": "Total",
        NOT_IN_CATALOGUE: "not in the catalogue: paid in full",
        "his_visit_id.outpatient": "Visit no.",
        "his_visit_id.inpatient": "Admission no.",
        "invoice_number": "Invoice no.",
        "operator": "Cashier",
        "admitted_on": "Admitted",
        "discharged_on": "Discharged",
        "diagnoses": "Diagnoses (ICD-10)",
    },
}

PAYERS = LABELLED_FUNDS
# The four buckets of a line and of the bill, in the national settlement answer's order; their labels are
# the explanation's (settlement/explain.py LABELS), so the receipt and the answer name them alike.
BUCKETS = ("not_covered", "over_limit", "self_pay_first", "eligible")


@dataclass(frozen=True, slots=True)
class ReceiptItem:
    code: str
    name: str
    category: str
    amount: int
    quantity: int | None = None
    unit_price: int | None = None
    # The line's four buckets (they add up to ``amount``), and why it is fully self-pay beyond its
    # category (``not_in_catalogue``), from the engine's line.
    not_covered: int = 0
    over_limit: int = 0
    self_pay_first: int = 0
    eligible: int = 0
    notice: str | None = None

    def quantity_text(self) -> str:
        """``2 × 70.00`` (quantity × unit price in yuan) for a line billed by quantity, else empty."""
        if self.quantity is None or self.unit_price is None:
            return ""
        return f"{self.quantity} × {format_yuan(self.unit_price)}"

    def buckets(self) -> list[tuple[str, int]]:
        """(bucket, fen) of each of the four buckets, in order."""
        return [(bucket, getattr(self, bucket)) for bucket in BUCKETS]

    @property
    def wholly_eligible(self) -> bool:
        """The whole line is in scope: nothing of it is the patient's before the payers."""
        return self.eligible == self.amount and self.notice is None

    def notice_text(self, language: Language) -> str:
        """The line's notice in words (its code when the receipt has no words for it), or empty."""
        if self.notice is None:
            return ""
        return RECEIPT_LABELS[language].get(self.notice, self.notice)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Everything a receipt prints, already scoped to the caller."""

    settlement: api.SettlementOut
    clinic_name: str
    person: str
    items: tuple[ReceiptItem, ...]
    # The chain's funds' names in each language, by fund code (empty: the codes stand for them).
    fund_names: dict[Language, dict[str, str]] | None = None
    # The name registered for the person (``people.name``), as stored; None when none is.
    patient_name: str | None = None
    # The short receipt number (``unique_receipt_number``); empty: the id's first 12 digits.
    short_number: str = ""
    # Adjustments re-adjudication booked on the settlement since (docs/readjudication.md): each one's booking
    # day and what each fund and the patient pay more (positive) or less, by fund code and ``out_of_pocket``.
    adjustments: tuple[tuple[dt.date, dict[str, int]], ...] = ()

    def adjustment_lines(self, language: Language) -> list[str]:
        """One line per adjustment, GBK-safe: 追补调整 2026-12-03: 医疗救助 +1,234.00, 个人自付 -1,234.00."""
        names = (self.fund_names or {}).get(language, {})
        lines = []
        for booked_on, funds in self.adjustments:
            moved = ", ".join(
                f"{LABELS[language]['out_of_pocket'] if fund == 'out_of_pocket' else fund_label(fund, language, names)}"
                f" {'+' if fen > 0 else '-'}{format_yuan(abs(fen))}"
                for fund, fen in funds.items()
                if fen
            )
            lines.append(f"{RECEIPT_LABELS[language]['adjusted']} {booked_on.isoformat()}: {moved}")
        return lines

    @property
    def number(self) -> str:
        return self.short_number or receipt_number(self.settlement.settlement_id)

    @property
    def settled_at(self) -> str:
        """When the settlement was made, in China time, to the minute."""
        return self.settlement.created_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")

    def out_of_pocket_parts(self) -> list[tuple[str, int]]:
        """The patient's share as its non-zero parts, in the buckets' order: what was never in scope,
        then what the funds left unpaid of the eligible part (``within``). Empty when the parts do not
        add up to the share (a chain step that paid from outside the eligible part), so a receipt never
        prints a sum that is wrong."""
        out = self.settlement
        outside = [(bucket, getattr(out, bucket)) for bucket in BUCKETS if bucket != "eligible"]
        within = out.out_of_pocket - sum(fen for _, fen in outside)
        if within < 0:
            return []
        return [(part, fen) for part, fen in [*outside, ("within", within)] if fen]

    def steps(self) -> list[tuple[str, int, PayerTrace | None]]:
        """Every step of the chain in order: the fund's code, what it paid, and its trace. A settlement
        read without one of the three funds it paid on among its steps still shows that fund."""
        out = self.settlement
        steps: list[tuple[str, int, PayerTrace | None]] = [
            (payer.fund, payer.amount, payer.trace) for payer in out.payers
        ]
        shown = {code for code, _, _ in steps}
        steps += [(code, getattr(out, code), None) for code in PAYERS if code not in shown and getattr(out, code)]
        return steps

    def names(self, language: Language) -> dict[str, str]:
        return (self.fund_names or {}).get(language, {})

    def bill_details(self, language: Language) -> list[tuple[str, str]]:
        """The bill's HIS details the terminal sent, as (label, value), in the order a hospital's own slip has
        them; none for a bill sent without them."""
        out = self.settlement
        labels = RECEIPT_LABELS[language]
        details = [
            (labels[f"his_visit_id.{out.visit_type}"], out.his_visit_id),
            (labels["admitted_on"], out.admitted_on and out.admitted_on.isoformat()),
            (labels["discharged_on"], out.discharged_on and out.discharged_on.isoformat()),
            (labels["diagnoses"], " ".join(out.diagnoses)),
            (labels["invoice_number"], out.invoice_number),
            (labels["operator"], out.operator),
        ]
        return [(label, value) for label, value in details if value]


SHORT_DIGITS = 12
"""Hex digits of the settlement id a receipt number shows: 48 bits, ``0F3A-9C1E-77B0``."""


def receipt_number(settlement_id: uuid.UUID, digits: int = SHORT_DIGITS) -> str:
    """The short number a receipt prints, ``0F3A-9C1E-77B0``: the settlement id's first ``digits`` hex
    digits, upper case, in groups of four. It fits a 32-column line where the 36-character id wraps,
    and it is the id's own beginning, so the id is found from it by eye in any listing, or by a range
    scan of the index on the id."""
    return "-".join(settlement_id.hex[index : index + 4] for index in range(0, digits, 4)).upper()


def prefix_range(settlement_id: uuid.UUID, digits: int) -> tuple[uuid.UUID, uuid.UUID]:
    """The lowest and highest ids that start with this id's first ``digits`` hex digits."""
    prefix = settlement_id.hex[:digits]
    return uuid.UUID(prefix.ljust(32, "0")), uuid.UUID(prefix.ljust(32, "f"))


async def unique_receipt_number(
    settlement_id: uuid.UUID, count_in_range: Callable[[uuid.UUID, uuid.UUID], Awaitable[int]]
) -> str:
    """The receipt number, lengthened by four digits at a time while another settlement shares it.

    The ids are random (UUID 4), so two share their first 48 bits only by chance: among 750,000
    settlements (a county's year) the odds that any pair does are about 1 in 1,000 (n²/2⁴⁹). Such a
    pair is detected here, one indexed count per receipt: a receipt printed once the pair exists shows
    16 digits or more. One printed before its twin existed keeps 12; its QR code carries the whole id,
    which is unique, so a scan never finds the wrong settlement."""
    digits = SHORT_DIGITS
    while digits < 32 and await count_in_range(*prefix_range(settlement_id, digits)) > 1:
        digits += 4
    return receipt_number(settlement_id, digits)


def qr_svg(settlement_id: uuid.UUID) -> str:
    """An inline SVG QR code of the full settlement id (36 characters fit version 3 at level M)."""
    return str(segno.make(str(settlement_id), error="m", micro=False).svg_inline(scale=3, title=str(settlement_id)))


def gbk_safe(text: str) -> str:
    """Text a GBK thermal printer can print: a character GBK cannot encode (a rare name character, a
    symbol) becomes ``?``, so the receipt still prints rather than failing at the printer."""
    return text.encode("gbk", errors="replace").decode("gbk")


# ---------------------------------------------------------------- loading


async def load_receipt(service: Service, terminal: Terminal, settlement_id: uuid.UUID) -> Receipt:
    """The settlement as the caller may see it, with the clinic's name and the billed items' names."""
    stored = await service.stored_settlement(terminal, settlement_id)  # 404 for another clinic's terminal
    out = service.settlement_out(stored)
    clinic = await service.clinic(out.clinic_id)
    # The engine's lines are the bill's items in order, so each line is paired with its own item by
    # position: a code is not a key, since a bill may list one code twice (two strengths of a drug).
    items = []
    for index, line in enumerate(out.lines):
        billed = stored.items[index] if index < len(stored.items) else None
        own = billed if billed is not None and billed.code == line.code else None
        if own is None:
            items.append(receipt_item(line, name="", quantity=None, unit_price=None))
        else:
            items.append(receipt_item(line, name=own.name, quantity=own.quantity, unit_price=own.unit_price))
    names: dict[Language, dict[str, str]] = {
        "zh": service.fund_names(stored.settlement, "zh"),
        "en": service.fund_names(stored.settlement, "en"),
    }
    # The name as registered (people.name), with no ID number beside it beyond the masked one.
    patient_name, _, _ = await service.store.person_for_eligibility(stored.person_key, out.service_date.year)
    return Receipt(
        settlement=out,
        clinic_name=clinic.name,
        person=out.person,
        items=tuple(items),
        fund_names=names,
        patient_name=patient_name,
        short_number=await unique_receipt_number(out.settlement_id, service.store.settlements_in_range),
        adjustments=tuple(await service.store.adjustments_on(stored.person_key, out.settlement_id)),
    )


def receipt_item(line: LineBreakdown, *, name: str, quantity: int | None, unit_price: int | None) -> ReceiptItem:
    """One engine line as the receipt prints it; a line recorded before the catalogue has its
    fully self-pay part worked out (``LineBreakdown.buckets``)."""
    line = line.buckets()
    return ReceiptItem(
        code=line.code,
        name=name,
        category=line.category,
        amount=line.amount,
        quantity=quantity,
        unit_price=unit_price,
        not_covered=line.not_covered or 0,
        over_limit=line.over_limit,
        self_pay_first=line.self_pay_first,
        eligible=line.eligible,
        notice=line.notice,
    )


# ---------------------------------------------------------------- words shared by both forms


def _separator(language: Language) -> str:
    return "；" if language == "zh" else "; "


def _part_label(part: str, language: Language) -> str:
    return RECEIPT_LABELS[language]["within"] if part == "within" else LABELS[language][part]


def step_label(fund: str, trace: PayerTrace | None, language: Language, names: dict[str, str]) -> str:
    """A step's name with the programme it paid under in words: 基本医疗保险（县级医院）."""
    label = fund_label(fund, language, names)
    programme = programme_name(trace.programme if trace is not None else None, language)
    if not programme:
        return label
    return f"{label}（{programme}）" if language == "zh" else f"{label} ({programme})"


def parts_sum(receipt: Receipt, language: Language) -> str:
    """``个人自付构成：2,000.00 + 400.00 + 582.00 = 2,982.00``: the patient's share as its parts."""
    colon = "：" if language == "zh" else ": "
    return f"{RECEIPT_LABELS[language]['parts']}{colon}{parts_figures(receipt)}"


def parts_figures(receipt: Receipt) -> str:
    """``2,000.00 + 400.00 + 582.00 = 2,982.00``."""
    figures = " + ".join(format_yuan(fen) for _, fen in receipt.out_of_pocket_parts())
    return f"{figures} = {format_yuan(receipt.settlement.out_of_pocket)}"


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
margin:0;background:#f4f4f4;color:#111}
.receipt{max-width:720px;margin:16px auto;background:#fff;padding:24px 28px;border:1px solid #ccc}
h1{font-size:22px;text-align:center;margin:0 0 12px}
table{width:100%;border-collapse:collapse;margin:8px 0 16px}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top;font-size:14px}
td.money,th.money{text-align:right;font-variant-numeric:tabular-nums}
/* A heading may wrap (the English ones are long); an amount, an item's code or a label of 大写 never does. */
td.money,.items td:first-child,tr.capitals td:first-child{white-space:nowrap}
.meta th{width:28%;color:#555;font-weight:normal}
.rule{color:#444;font-size:12px}
.total td{font-weight:bold;border-top:2px solid #111}
tr.part td{color:#444;font-size:13px}
.qr{text-align:right;margin:-8px 0 8px}
.you-pay td{font-size:18px;font-weight:bold}
tr.notice td{color:#b00;font-size:12px;border-bottom:1px solid #ddd;padding-top:0}
.reversed{border:3px solid #b00;color:#b00;font-size:20px;font-weight:bold;text-align:center;padding:8px;
margin-bottom:12px}
.receipt.is-reversed .money{text-decoration:line-through}
@media print{body{background:#fff}.receipt{border:0;margin:0;max-width:none}}
"""


def render_html(receipt: Receipt, language: Language = "zh") -> str:
    out = receipt.settlement
    labels = RECEIPT_LABELS[language]
    names = LABELS[language]
    e = html.escape

    def row(label: str, value: str, attrs: str = "") -> str:
        return f"<tr{attrs}><th>{e(label)}</th><td>{e(value)}</td></tr>"

    def money_row(label: str, fen: int, key: str, css: str = "") -> str:
        cls = f' class="{css}"' if css else ""
        return f'<tr{cls}><td colspan="2">{e(label)}</td><td class="money" id="{key}">{e(format_yuan(fen))}</td></tr>'

    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if language == "zh" else "en"}"><head><meta charset="utf-8">',
        f"<title>{e(labels['title'])}</title><style>{_CSS}</style></head><body>",
        f'<div class="receipt{" is-reversed" if out.reversed else ""}" '
        f'data-settlement-id="{e(str(out.settlement_id))}">',
    ]
    if out.reversed:
        reversal = f" ({labels['reversal']} {out.reversal_id})" if out.reversal_id else ""
        parts.append(f'<div class="reversed" id="reversed">{e(labels["reversed"] + reversal)}</div>')
    for line in receipt.adjustment_lines(language):
        parts.append(f'<div class="adjusted">{e(line)}</div>')
    parts.append(f"<h1>{e(labels['title'])}</h1>")
    parts.append('<table class="meta">')
    parts.append(row(labels["clinic"], receipt.clinic_name))
    parts.append(row(labels["level"], labels.get(out.clinic_level, out.clinic_level)))
    parts.append(row(labels["visit"], labels.get(out.visit_type, out.visit_type)))
    parts.append(row(labels["date"], out.service_date.isoformat()))
    parts += [row(label, value, ' class="bill-detail"') for label, value in receipt.bill_details(language)]
    if receipt.patient_name:
        parts.append(row(labels["patient"], receipt.patient_name))
    parts.append(row(labels["person"], receipt.person))
    parts.append(row(labels["settled_at"], receipt.settled_at))
    parts.append(row(labels["number"], receipt.number, ' id="receipt-number"'))
    parts.append(row(labels["settlement"], str(out.settlement_id)))
    parts.append("</table>")
    parts.append(f'<div class="qr" id="qr">{qr_svg(out.settlement_id)}</div>')

    parts.append(f'<h2>{e(labels["items"])}</h2><table class="items"><thead><tr>')
    parts.append(
        f"<th>{e(labels['code'])}</th><th>{e(labels['name'])}</th><th>{e(labels['category'])}</th>"
        f'<th class="money">{e(labels["quantity"])}</th><th class="money">{e(labels["amount"])}</th>'
        + "".join(f'<th class="money">{e(names[bucket])}</th>' for bucket in BUCKETS)
        + "</tr></thead><tbody>"
    )
    for index, item in enumerate(receipt.items):
        parts.append(
            f'<tr data-line="{index}"><td>{e(item.code)}</td><td>{e(item.name)}</td>'
            f"<td>{e(labels.get(item.category, item.category))}</td>"
            f'<td class="money">{e(item.quantity_text())}</td><td class="money">{e(format_yuan(item.amount))}</td>'
            + "".join(
                f'<td class="money" data-bucket="{bucket}">{e(format_yuan(fen))}</td>' for bucket, fen in item.buckets()
            )
            + "</tr>"
        )
        if item.notice is not None:
            parts.append(
                f'<tr class="notice" data-line="{index}" data-notice="{e(item.notice)}">'
                f'<td colspan="{5 + len(BUCKETS)}">{e(item.notice_text(language))}</td></tr>'
            )
    parts.append(
        f'</tbody><tfoot><tr class="total"><td colspan="4">{e(labels["items_total"])}</td>'
        f'<td class="money" id="items-total">{e(format_yuan(out.total))}</td>'
        + "".join(
            f'<td class="money" id="bucket-{bucket}">{e(format_yuan(getattr(out, bucket)))}</td>' for bucket in BUCKETS
        )
        + "</tr></tfoot></table>"
    )

    parts.append(f"<h2>{e(labels['payers'])}</h2><table><tbody>")
    parts.append(money_row(names["total"], out.total, "total", "total"))
    parts.append(money_row(names["eligible"], out.eligible, "eligible"))
    funds = receipt.names(language)
    for payer, amount, trace in receipt.steps():
        rule = _separator(language).join(explain_step(trace, language)) if trace is not None else ""
        label = step_label(payer, trace, language, funds)
        parts.append(
            f'<tr data-fund="{e(payer)}"><td>{e(label)}</td><td class="rule">{e(rule)}</td>'
            f'<td class="money" id="{e(payer)}">{e(format_yuan(amount))}</td></tr>'
        )
    parts.append(money_row(names["out_of_pocket"], out.out_of_pocket, "out_of_pocket", "you-pay"))
    shares = receipt.out_of_pocket_parts()
    for part, fen in shares:
        parts.append(money_row(f"· {_part_label(part, language)}", fen, f"part-{part}", "part"))
    if shares:
        parts.append(f'<tr class="part"><td colspan="3" id="parts-sum">{e(parts_sum(receipt, language))}</td></tr>')
    for key, fen in (("total_capitals", out.total), ("pay_capitals", out.out_of_pocket)):
        parts.append(
            f'<tr class="capitals"><td>{e(labels[key])}</td>'
            f'<td colspan="2" id="{key.replace("_", "-")}">{e(yuan_in_capitals(fen))}</td></tr>'
        )
    parts.append("</tbody></table>")
    for notice in out.warnings:
        parts.append(f'<p class="rule">{e(notice.message)}</p>')
    parts.append(f'<p class="rule">{e(names["policy"])} {e(out.policy_version)}</p>')
    parts.append("</div></body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------- text


def columns(text: str) -> int:
    """Printer columns: East Asian wide, full-width and ambiguous (×, →, −) characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F", "A") else 1 for char in text)


def wrap(text: str, width: int = TEXT_WIDTH) -> list[str]:
    """Greedy wrap at spaces by printer columns; a word wider than the line is cut by character."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if columns(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
            current = ""
        while columns(word) > width:
            cut, used = "", 0
            for char in word:
                step = columns(char)
                if used + step > width:
                    break
                cut, used = cut + char, used + step
            lines.append(cut)
            word = word[len(cut) :]
        current = word
    if current:
        lines.append(current)
    return lines or [""]


def _pair(label: str, value: str, width: int) -> list[str]:
    """``label ... value`` on one line when it fits, else the label wrapped and the value right-aligned."""
    gap = width - columns(label) - columns(value)
    if gap >= 1:
        return [label + " " * gap + value]
    return [*wrap(label, width), " " * max(0, width - columns(value)) + value]


def render_text(receipt: Receipt, language: Language = "zh", width: int = TEXT_WIDTH) -> str:
    out = receipt.settlement
    labels = RECEIPT_LABELS[language]
    names = LABELS[language]
    rule = "-" * width
    title = labels["title"]
    lines = [" " * max(0, (width - columns(title)) // 2) + title]
    if out.reversed:
        lines += ["*" * width, *wrap(labels["reversed"], width), "*" * width]
    lines += wrap(f"{labels['clinic']}: {receipt.clinic_name}", width)
    lines += wrap(f"{labels['level']}: {labels.get(out.clinic_level, out.clinic_level)}", width)
    lines += wrap(f"{labels['visit']}: {labels.get(out.visit_type, out.visit_type)}", width)
    lines += wrap(f"{labels['date']}: {out.service_date.isoformat()}", width)
    for label, value in receipt.bill_details(language):
        lines += wrap(f"{label}: {value}", width)
    if receipt.patient_name:
        lines += wrap(f"{labels['patient']}: {receipt.patient_name}", width)
    lines += wrap(f"{labels['person']}: {receipt.person}", width)
    lines += wrap(f"{labels['settled_at']}: {receipt.settled_at}", width)
    lines += _pair(f"{labels['number']}:", receipt.number, width)
    if out.reversed and out.reversal_id:
        lines += wrap(f"{labels['reversal']}: {out.reversal_id}", width)
    for line in receipt.adjustment_lines(language):
        lines += wrap(line, width)
    lines += [rule, labels["items"]]
    for item in receipt.items:
        category = labels.get(item.category, item.category)
        lines += wrap(f"{item.code} {item.name}", width)
        billed = f"  {category} {item.quantity_text()}".rstrip()
        lines += _pair(billed, format_yuan(item.amount), width)
        if item.notice is not None:
            lines += ["  " + part for part in wrap(item.notice_text(language), width - 2)]
        if not item.wholly_eligible:  # a line wholly in scope needs no breakdown: its category says so
            for bucket, fen in item.buckets():
                if fen:
                    lines += _pair(f"  {names[bucket]}", format_yuan(fen), width)
    lines.append(rule)
    lines += _pair(names["total"], format_yuan(out.total), width)
    for bucket in BUCKETS:
        lines += _pair(names[bucket], format_yuan(getattr(out, bucket)), width)
    funds = receipt.names(language)
    lines.append(rule)
    for payer, amount, trace in receipt.steps():
        lines += _pair(step_label(payer, trace, language, funds), format_yuan(amount), width)
        if trace is not None:
            for sentence in explain_step(trace, language):
                lines += ["  " + part for part in wrap(sentence, width - 2)]
    lines.append(rule)
    lines += _pair(names["out_of_pocket"], format_yuan(out.out_of_pocket), width)
    shares = receipt.out_of_pocket_parts()
    for part, fen in shares:
        lines += _pair(f"  {_part_label(part, language)}", format_yuan(fen), width)
    if shares:  # the sum on lines of its own: with its label it is wider than the printer
        lines.append(RECEIPT_LABELS[language]["parts"] + ("：" if language == "zh" else ":"))
        lines += ["  " + part for part in wrap(parts_figures(receipt), width - 2)]
    lines += wrap(f"{labels['total_capitals']}: {yuan_in_capitals(out.total)}", width)
    lines += wrap(f"{labels['pay_capitals']}: {yuan_in_capitals(out.out_of_pocket)}", width)
    for notice in out.warnings:
        lines += wrap(notice.message, width)
    lines += wrap(f"{names['policy']} {out.policy_version}", width)
    lines += wrap(f"{labels['settlement']}: {out.settlement_id}", width)
    return gbk_safe("\n".join(lines) + "\n")


# ---------------------------------------------------------------- handler


async def settlement_receipt(request: web.Request) -> web.Response:
    return await receipt_response(request, settlement_id(request))


_RECEIPT_NUMBER = re.compile(RECEIPT_NUMBER_PATTERN)


async def receipt_by_number(request: web.Request) -> web.Response:
    """The receipt whose short number (``receipt_number``) a patient or a clerk reads off the paper."""
    number = request.match_info["number"]
    if not _RECEIPT_NUMBER.fullmatch(number):
        raise ApiError(
            422, "validation_failed", "a receipt number is 12 to 32 hex digits, as 0F3A-9C1E-77B0", field="number"
        )
    prefix = number.replace("-", "").lower()
    found = await request.app[reports_key].settlements_with_prefix(
        uuid.UUID(prefix.ljust(32, "0")), uuid.UUID(prefix.ljust(32, "f"))
    )
    if not found:
        raise ApiError(404, "receipt_not_found", "no settlement has this receipt number")
    if len(found) > 1:
        raise ApiError(
            409,
            "receipt_number_shared",
            "more than one settlement begins with this number: give the longer number or scan the QR code",
            field="number",
        )
    return await receipt_response(request, found[0])


async def receipt_response(request: web.Request, settlement: uuid.UUID) -> web.Response:
    """The settlement's receipt in the language and form the query asks (zh, html by default); 404 for
    another clinic's terminal."""
    language = request.query.get("lang", "zh")
    if language not in ("zh", "en"):
        raise ApiError(422, "validation_failed", "lang must be zh or en", field="lang")
    form = request.query.get("format", "html")
    if form not in ("html", "text"):
        raise ApiError(422, "validation_failed", "format must be html or text", field="format")
    receipt = await load_receipt(request.app[service_key], caller(request), settlement)
    if form == "text":
        return web.Response(text=render_text(receipt, language), content_type="text/plain", charset="utf-8")
    return web.Response(
        text=render_html(receipt, language),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )
