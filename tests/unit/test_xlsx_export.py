"""Tables as files: money exact to the fen in xlsx and CSV, a totals row summed in fen, sheet names Excel takes."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import openpyxl

from adapters.xlsx_export import Column, Table, sheet_name, table_csv, workbook

TABLE = Table(
    "机构 Clinics 2026-05-01",
    [
        Column("机构编码", "Clinic ID"),
        Column("结算笔数", "Settlements", "count"),
        Column("净额", "Net", "money"),
        Column("结算日", "Day", "date"),
    ],
    [["V001", 2, 1, dt.date(2026, 5, 1)], ["V002", 1, -123_456, dt.date(2026, 5, 1)], ["C001", 3, 10_000_000_07, None]],
)


def test_a_workbook_holds_money_to_the_fen_and_closes_each_sheet_with_its_totals():
    book = openpyxl.load_workbook(io.BytesIO(workbook([TABLE, TABLE._replace(totals=False)])))
    assert book.sheetnames == ["机构 Clinics 2026-05-01", "机构 Clinics 2026-05-01 (2)"]
    rows = [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    assert rows[0] == ["机构编码 Clinic ID", "结算笔数 Settlements", "净额 Net", "结算日 Day"]
    assert [Decimal(str(row[2])) for row in rows[1:]] == [
        Decimal("0.01"), Decimal("-1234.56"), Decimal("10000000.07"), Decimal("9998765.52")
    ]  # fmt: skip
    assert rows[-1][:2] == ["合计 Total", 6] and rows[1][3] == dt.datetime(2026, 5, 1)
    assert book.worksheets[0]["C2"].number_format == "#,##0.00"
    assert len(list(book.worksheets[1].iter_rows())) == 4  # no totals row when the table asks for none


def test_a_csv_is_one_table_in_yuan_without_a_totals_row():
    text = table_csv(TABLE)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows == [
        ["机构编码 Clinic ID", "结算笔数 Settlements", "净额 Net", "结算日 Day"],
        ["V001", "2", "0.01", "2026-05-01"],
        ["V002", "1", "-1234.56", "2026-05-01"],
        ["C001", "3", "10000000.07", ""],
    ]


def test_sheet_names_are_ones_excel_takes():
    taken: set[str] = set()
    assert sheet_name("a/b:c*d?[e]", taken) == "a-b-c-d--e-"
    long = "城乡居民基本医疗保险 basic medical insurance"
    first = sheet_name(long, taken)
    second = sheet_name(long, taken)
    assert len(first) == len(second) == 31 and first != second and second.endswith(" (2)")
    assert sheet_name("", taken) == "sheet"
