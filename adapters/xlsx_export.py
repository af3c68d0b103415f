"""Finance tables as a finance office opens them: xlsx workbooks (one table per sheet) and CSV files.

A report that is exported builds ``Table``s: its columns, each with a Chinese and an English header and
a kind, and its rows with money as int fen. This module alone turns them into files, so every export
reads alike:

* a header cell is the Chinese name with the English beside it (``结算金额 Billed``);
* money is yuan with two decimals (``settlement.money.format_yuan``); in a workbook it is a number cell
  written from an exact ``Decimal`` (``12345.67``, never a float sum) with the format ``#,##0.00``, so a
  SUM in Excel adds it;
* a workbook sheet closes with a totals row (合计 Total) whose sums are made here in int fen.

A CSV file holds one table (one scope) and no totals row: a plain SUM over any of its columns is then
the total, never counted twice. The totals of a statement are its own file (the ``total`` scope).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from settlement.money import format_yuan

Kind = Literal["text", "count", "money", "date"]

MONEY_FORMAT = "#,##0.00"
TOTAL_LABEL = "合计 Total"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel refuses a sheet name longer than 31 characters or with any of these.
_SHEET_NAME_MAX = 31
_NOT_IN_SHEET_NAME = str.maketrans({character: "-" for character in "[]:*?/\\"})


class Column(NamedTuple):
    """One column: its Chinese and English names, and what its cells hold (money in int fen)."""

    zh: str
    en: str
    kind: Kind = "text"

    @property
    def header(self) -> str:
        return f"{self.zh} {self.en}" if self.zh != self.en else self.zh


class Table(NamedTuple):
    """One sheet (or one CSV file): ``rows`` line up with ``columns``; money cells are int fen."""

    title: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]
    totals: bool = True  # a totals row closes the sheet; a table of one row (a total) needs none


def totals_row(table: Table) -> list[Any]:
    """The table's totals: each count and money column summed (in int fen), the first column labelled."""
    row: list[Any] = []
    for index, column in enumerate(table.columns):
        if column.kind in ("count", "money"):
            row.append(sum(line[index] for line in table.rows))
        else:
            row.append(TOTAL_LABEL if index == 0 else "")
    return row


def yuan(fen: int) -> Decimal:
    """Fen as an exact yuan Decimal with two places, for a number cell: 1234567 -> Decimal('12345.67')."""
    return Decimal(format_yuan(fen))


def _xlsx_cell(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.kind == "money":
        return yuan(value)
    return value


def sheet_name(title: str, taken: set[str]) -> str:
    """A sheet name Excel takes: at most 31 characters, none of ``[]:*?/\\``, unique in the workbook."""
    name = title.translate(_NOT_IN_SHEET_NAME)[:_SHEET_NAME_MAX] or "sheet"
    stem, number = name, 2
    while name.casefold() in taken:
        suffix = f" ({number})"
        name, number = stem[: _SHEET_NAME_MAX - len(suffix)] + suffix, number + 1
    taken.add(name.casefold())
    return name


def _xlsx_header(sheet: Any, columns: Sequence[Column]) -> list[Any]:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    row = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=column.header)
        cell.font = Font(bold=True)
        row.append(cell)
    return row


def _xlsx_row(sheet: Any, columns: Sequence[Column], values: Sequence[Any], *, strong: bool = False) -> list[Any]:
    """One row of write-only cells: money as ``#,##0.00`` number cells, dates as date cells."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    row = []
    for column, value in zip(columns, values, strict=True):
        cell = WriteOnlyCell(sheet, value=_xlsx_cell(column, value))
        if column.kind == "money":
            cell.number_format = MONEY_FORMAT
        elif column.kind == "date" and isinstance(value, dt.date):
            cell.number_format = "yyyy-mm-dd"
        if strong:
            cell.font = Font(bold=True)
        row.append(cell)
    return row


def workbook(tables: Sequence[Table]) -> bytes:
    """The tables as an .xlsx workbook, one sheet each in order: bold headers, money as ``#,##0.00``
    number cells, dates as date cells, and a totals row where the table asks for one."""
    import openpyxl  # only an xlsx export needs it
    from openpyxl.utils import get_column_letter

    book = openpyxl.Workbook(write_only=True)
    taken: set[str] = set()
    for table in tables:
        sheet = book.create_sheet(sheet_name(table.title, taken))
        sheet.freeze_panes = "A2"
        for index, column in enumerate(table.columns):
            sheet.column_dimensions[get_column_letter(index + 1)].width = max(10, min(40, len(column.header) + 4))
        sheet.append(_xlsx_header(sheet, table.columns))
        for line in table.rows:
            sheet.append(_xlsx_row(sheet, table.columns, line))
        if table.totals:
            sheet.append(_xlsx_row(sheet, table.columns, totals_row(table), strong=True))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _csv_cell(column: Column, value: Any) -> Any:
    if value is None:
        return ""
    if column.kind == "money":
        return format_yuan(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def table_csv(table: Table) -> str:
    """One table as CSV, UTF-8 with a BOM so that Excel reads the Chinese headers; money as yuan with two
    decimals; no totals row (a SUM over a column is the total)."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow([column.header for column in table.columns])
    for line in table.rows:
        writer.writerow([_csv_cell(column, value) for column, value in zip(table.columns, line, strict=True)])
    return buffer.getvalue()
