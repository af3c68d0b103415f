"""Reading the insurer's item catalogue (adapters/catalogue_files.py): layouts, encodings, every rejection."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from adapters.catalogue_files import (
    CatalogueFormatError,
    CatalogueRow,
    read_catalogue,
    sample_catalogue,
    write_sample_catalogue,
)
from adapters.table_files import RejectedRow

ZH = "医保目录编码,医保目录名称,收费项目等级,先行自付比例,计价单位,最高限价"


def write_csv(tmp_path: Path, text: str, name: str = "catalogue.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def write_xlsx(tmp_path: Path, rows: list[list[object]], name: str = "catalogue.xlsx") -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    workbook.close()
    return path


def by_line(rejected: list[RejectedRow]) -> dict[int, str]:
    return {row.line: row.reason for row in rejected}


def one(tmp_path: Path, row: str, header: str = ZH) -> tuple[list[CatalogueRow], dict[int, str]]:
    rows, rejected = read_catalogue(write_csv(tmp_path, f"{header}\nOK-1,ok,A,,次,\n{row}\n"))
    return rows, by_line(rejected)


# ---------------------------------------------------------------- layout


def test_chinese_headers_and_every_field(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"{ZH}\n"
        "XJ01CAA040A001,阿莫西林胶囊,甲类,,盒,\n"
        "220600001,腹部彩超,乙类,20%,次,180.00\n"
        "M-PLATE-001,锁定接骨板,乙,,个,12000.00\n"
        "C-VIT-001,复合维生素片,丙,,瓶,\n",
    )
    rows, rejected = read_catalogue(path)
    assert rejected == []
    assert rows == [
        CatalogueRow(
            line=2, code="XJ01CAA040A001", name="阿莫西林胶囊", category="A", self_pay_share=None, unit="盒",
            price_cap=None,
        ),
        CatalogueRow(
            line=3, code="220600001", name="腹部彩超", category="B", self_pay_share=200_000, unit="次",
            price_cap=18_000,
        ),
        CatalogueRow(
            line=4, code="M-PLATE-001", name="锁定接骨板", category="B", self_pay_share=None, unit="个",
            price_cap=1_200_000,
        ),
        CatalogueRow(
            line=5, code="C-VIT-001", name="复合维生素片", category="C", self_pay_share=None, unit="瓶",
            price_cap=None,
        ),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "header",
    [
        " CODE ,Name,category,self_pay_share,UNIT,price_cap",
        "项目编码,项目名称,目录类别,自付比例,单位,限价",
        "医疗目录编码,医保目录名称,类别,先行自付比例,计价单位,最高限价",
    ],
)
def test_other_header_names_case_and_spaces(tmp_path: Path, header: str) -> None:
    rows, rejected = read_catalogue(write_csv(tmp_path, f"{header}\nX1,item,B,0.05,次,9.90\n"))
    assert rejected == []
    assert rows == [
        CatalogueRow(line=2, code="X1", name="item", category="B", self_pay_share=50_000, unit="次", price_cap=990)
    ]


def test_columns_in_any_order_extra_ones_ignored_optional_ones_absent(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "备注,类别,厂家,医保目录名称,医保目录编码\nnote,丙,maker,保健食品,C-HLT-002\n")
    rows, rejected = read_catalogue(path)
    assert rejected == []
    assert rows == [
        CatalogueRow(
            line=2, code="C-HLT-002", name="保健食品", category="C", self_pay_share=None, unit="", price_cap=None
        )
    ]


def test_missing_required_column_names_the_expected_headers(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "医保目录编码,医保目录名称,单位\nX1,item,次\n")
    with pytest.raises(CatalogueFormatError) as raised:
        read_catalogue(path)
    message = str(raised.value)
    assert "missing required column(s) 收费项目等级 (category)" in message
    for header in ("医保目录编码", "医保目录名称", "先行自付比例", "计价单位", "最高限价", "price_cap"):
        assert header in message
    assert "Found: 医保目录编码, 医保目录名称, 单位." in message


def test_two_columns_for_one_field_are_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "医保目录编码,项目编码,医保目录名称,类别\nX1,X1,item,A\n")
    with pytest.raises(CatalogueFormatError, match=r"columns 1 \(医保目录编码\) and 2 \(项目编码\) both give code"):
        read_catalogue(path)


def test_a_semicolon_separated_file_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match="Is the file comma-separated"):
        read_catalogue(write_csv(tmp_path, "code;name;category\nX1;item;A\n"))


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "the file is empty"), ("\n\n", "no header row"), (f"{ZH}\n\n", "has a header but no rows")],
)
def test_empty_files_are_refused(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(CatalogueFormatError, match=match):
        read_catalogue(write_csv(tmp_path, text))


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match=r"unknown extension '\.txt': give a \.csv, \.xlsx or \.xls file"):
        read_catalogue(write_csv(tmp_path, f"{ZH}\n", name="catalogue.txt"))


def test_text_named_xls_is_refused_as_no_workbook(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFormatError, match=r"is not a readable \.xls workbook"):
        read_catalogue(write_csv(tmp_path, f"{ZH}\n", name="catalogue.xls"))


def test_a_row_in_gbk_in_a_utf8_catalogue_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_bytes(f"{ZH}\nX1,阿莫西林,甲类,,,\n".encode() + "X2,头孢曲松,乙类,,,\n".encode("gbk"))
    with pytest.raises(CatalogueFormatError, match=r"catalogue\.csv: line 3 is GBK/GB18030 text"):
        read_catalogue(path)


def test_blank_lines_are_skipped_and_lines_numbered_as_in_the_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"\n{ZH}\nX1,one,A,,,\n\n,,,,,\nX2,two,Z,,,\n")
    rows, rejected = read_catalogue(path)
    assert [(row.line, row.code) for row in rows] == [(3, "X1")]
    assert list(by_line(rejected)) == [6]


# ---------------------------------------------------------------- encodings and workbooks


def test_utf8_with_bom_and_gb18030_read_the_same(tmp_path: Path) -> None:
    text = f"{ZH}\n220600001,腹部彩超,乙类,20%,次,180.00\n110200001,一般诊疗费,甲,,次,\n"
    plain = read_catalogue(write_csv(tmp_path, text, "plain.csv"))
    with_bom = read_catalogue(write_csv(tmp_path, "\ufeff" + text, "bom.csv"))
    gb18030 = read_catalogue(write_csv(tmp_path, text, "gb.csv", encoding="gb18030"))
    assert plain == with_bom == gb18030
    assert [row.name for row in gb18030[0]] == ["腹部彩超", "一般诊疗费"]


def test_csv_and_xlsx_of_one_catalogue_read_the_same(tmp_path: Path) -> None:
    write_sample_catalogue(tmp_path / "sample.csv", 3000, seed=7)
    write_sample_catalogue(tmp_path / "sample.xlsx", 3000, seed=7)
    from_csv = read_catalogue(tmp_path / "sample.csv")
    from_xlsx = read_catalogue(tmp_path / "sample.xlsx")
    assert from_csv == from_xlsx
    assert from_csv[1] == []
    assert len(from_csv[0]) == 3000


def test_xlsx_number_cells_for_share_cap_and_category(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["医保目录编码", "医保目录名称", "收费项目等级", "先行自付比例", "计价单位", "最高限价"],
            ["X1", "a", "B", 0.1, "次", 19.99],
            ["X2", "b", 2, Decimal("0.15"), "次", 12000],
            ["X3", "c", 1, None, "次", Decimal("0.01")],
            [110200001, "numeric code", "A", None, "次", None],
            ["X5", "cap too fine", "A", None, "次", 12.345],
        ],
    )
    rows, rejected = read_catalogue(path)
    assert [(row.code, row.category, row.self_pay_share, row.price_cap) for row in rows] == [
        ("X1", "B", 100_000, 1999),
        ("X2", "B", 150_000, 1_200_000),
        ("X3", "A", None, 1),
    ]
    reasons = by_line(rejected)
    assert reasons[5] == "医保目录编码: a number cell (110200001), which drops leading zeros; format the column as text"
    assert reasons[6] == "最高限价: '12.345' has more than 2 decimals (a cap is whole fen)"


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("written", "category"),
    [
        ("A", "A"), ("b", "B"), (" C ", "C"), ("Ｂ", "B"),
        ("甲", "A"), ("乙", "B"), ("丙", "C"), ("甲类", "A"), ("乙类", "B"), ("丙类", "C"),
        ("01", "A"), ("02", "B"), ("03", "C"), ("1", "A"), ("3", "C"),
    ],
)  # fmt: skip
def test_category_spellings(tmp_path: Path, written: str, category: str) -> None:
    rows, rejected = one(tmp_path, f"X1,item,{written},,,")
    assert rejected == {}
    assert rows[-1].category == category


@pytest.mark.parametrize(
    ("written", "ppm"),
    [
        ("", None),
        ("0.1", 100_000),
        ("10%", 100_000),
        ("12.5 %", 125_000),
        ("５％", 50_000),
        (".2", 200_000),
        ("0", 0),
        ("1", 1_000_000),
        ("100%", 1_000_000),
        ("0.123456", 123_456),
    ],
)
def test_self_pay_share_as_a_decimal_or_a_percentage(tmp_path: Path, written: str, ppm: int | None) -> None:
    rows, rejected = one(tmp_path, f"X1,item,B,{written},,")
    assert rejected == {}
    assert rows[-1].self_pay_share == ppm


@pytest.mark.parametrize("row", ["X1,item,甲类,0,,", "X1,item,A,0%,,", "X1,item,丙类,1,,", "X1,item,C,100%,,"])
def test_the_share_an_insurers_export_writes_on_a_or_c_items_is_what_the_category_says(
    tmp_path: Path, row: str
) -> None:
    # Exports fill 自付比例 for every item: 0 on 甲类 (wholly in scope), 100 % on 丙类 (wholly self-pay).
    rows, rejected = one(tmp_path, row)
    assert rejected == {}
    assert rows[-1].self_pay_share is None


@pytest.mark.parametrize(
    ("written", "fen"), [("", None), ("0", 0), ("0.5", 50), ("12000.00", 1_200_000), ("3.1", 310), (" 7 ", 700)]
)
def test_price_cap_in_yuan(tmp_path: Path, written: str, fen: int | None) -> None:
    rows, rejected = one(tmp_path, f"X1,item,A,,,{written}")
    assert rejected == {}
    assert rows[-1].price_cap == fen


# ---------------------------------------------------------------- rejections, each with its line


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",item,A,,,", "医保目录编码: missing"),
        ("OK-1,again,A,,,", "医保目录编码: OK-1 is already on line 2"),
        ("X" * 65 + ",item,A,,,", "医保目录编码: '" + "X" * 39 + "…' is longer than 64 characters"),
        ('"X\x07",item,A,,,', "医保目录编码: 'X\\x07' holds a control character"),
        ("X1,,A,,,", "医保目录名称: missing"),
        ("X1,item,,,,", "收费项目等级: missing"),
        (
            "X1,item,D,,,",
            "收费项目等级: unknown category 'D' (accepted: A, B, C, 甲, 乙, 丙, 甲类, 乙类, 丙类, 01, 02 or 03)",
        ),
        ("X1,item,B,1.5,,", "先行自付比例: '1.5' is not between 0 and 1 (for 1.5 % write 1.5% or 0.015)"),
        ("X1,item,B,10,,", "先行自付比例: '10' is not between 0 and 1 (for 10 % write 10% or 0.1)"),
        ("X1,item,B,120%,,", "先行自付比例: '120%' is not between 0% and 100%"),
        ("X1,item,B,-0.1,,", "先行自付比例: '-0.1' is not between 0 and 1"),
        ("X1,item,B,ten,,", "先行自付比例: 'ten' is neither a decimal (0.1) nor a percentage (10%)"),
        ("X1,item,B,0.1234567,,", "先行自付比例: '0.1234567' is more precise than parts per million"),
        (
            "X1,item,A,0.1,,",
            "先行自付比例: '0.1' on a category A item; only a B item has a self-pay-first share (leave it empty, or "
            "write 0)",
        ),
        (
            "X1,item,丙,0,,",
            "先行自付比例: '0' on a category C item; only a B item has a self-pay-first share (leave it empty, or "
            "write 100%)",
        ),
        ("X1,item,A,,,-1.00", "最高限价: '-1.00' is negative"),
        ("X1,item,A,,,12.345", "最高限价: '12.345' has more than 2 decimals (a cap is whole fen)"),
        ("X1,item,A,,,12 元", "最高限价: '12 元' is not an amount of yuan (12000.00)"),
        ("X1,item,A,,,1e3", "最高限价: '1e3' is not an amount of yuan (12000.00)"),
        (
            "X1,item,A,,,100000000.01",
            "最高限价: '100000000.01' is over 100,000,000.00 yuan, more than any bill may be",
        ),
    ],
)
def test_a_bad_row_is_rejected_with_its_line_and_reason(tmp_path: Path, row: str, reason: str) -> None:
    rows, rejected = one(tmp_path, row)
    assert [accepted.code for accepted in rows] == ["OK-1"]  # the good row is still read
    assert rejected == {3: reason}


def test_every_problem_of_a_row_is_named(tmp_path: Path) -> None:
    _, rejected = one(tmp_path, ",,Q,5,,-2")
    assert rejected[3].split("; ") == [
        "医保目录编码: missing",
        "医保目录名称: missing",
        "收费项目等级: unknown category 'Q' (accepted: A, B, C, 甲, 乙, 丙, 甲类, 乙类, 丙类, 01, 02 or 03)",
        "先行自付比例: '5' is not between 0 and 1 (for 5 % write 5% or 0.05)",
        "最高限价: '-2' is negative",
    ]


def test_a_duplicate_of_a_rejected_row_is_rejected_too(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{ZH}\nX1,item,Z,,,\nX1,item,A,,,\n")
    rows, rejected = read_catalogue(path)
    assert rows == []
    assert by_line(rejected)[3] == "医保目录编码: X1 is already on line 2"


def test_reasons_use_the_files_own_headers(tmp_path: Path) -> None:
    _, rejected = one(tmp_path, "X1,item,A,0.2,,", header="code,name,category,self_pay_share,unit,price_cap")
    assert rejected[3].startswith("self_pay_share: '0.2' on a category A item")


# ---------------------------------------------------------------- seeded catalogues and progress


def test_sample_catalogues_are_seeded_valid_and_revisions_change_a_little(tmp_path: Path) -> None:
    assert sample_catalogue(500, seed=3) == sample_catalogue(500, seed=3)
    assert sample_catalogue(500, seed=3) != sample_catalogue(500, seed=4)
    write_sample_catalogue(tmp_path / "v0.csv", 20_000, seed=3)
    write_sample_catalogue(tmp_path / "v1.csv", 20_000, seed=3, revision=1)
    first, rejected_first = read_catalogue(tmp_path / "v0.csv")
    second, rejected_second = read_catalogue(tmp_path / "v1.csv")
    assert rejected_first == rejected_second == []
    assert len(first) == len(second) == 20_000
    before = {row.code: (row.name, row.category, row.self_pay_share, row.unit, row.price_cap) for row in first}
    after = {row.code: (row.name, row.category, row.self_pay_share, row.unit, row.price_cap) for row in second}
    assert len(before.keys() - after.keys()) == len(after.keys() - before.keys()) == 100
    changed = sum(before[code] != after[code] for code in before.keys() & after.keys())
    assert 100 <= changed <= 200
    categories = {row.category for row in first}
    assert categories == {"A", "B", "C"}
    assert any(row.self_pay_share for row in first) and any(row.price_cap for row in first)
    assert any(row.code.startswith("0") for row in first)  # leading zeros survive the round trip


def test_progress_is_reported_every_thousand_rows_and_at_the_end(tmp_path: Path) -> None:
    write_sample_catalogue(tmp_path / "sample.csv", 2500, seed=1)
    calls: list[tuple[int, int]] = []
    read_catalogue(tmp_path / "sample.csv", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_title_rows_above_the_header_are_skipped_and_lines_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text(
        "2026年医保药品目录\n导出日期,2026-06-30\n"
        "医保目录编码,医保目录名称,收费项目等级,先行自付比例,计价单位,最高限价\n"
        "X1,item,甲类,,,\nX2,item,乙类,0.2,,\nX3,item,丁,,,\n",
        encoding="utf-8",
    )
    rows, rejected = read_catalogue(path)
    assert [(row.line, row.code) for row in rows] == [(4, "X1"), (5, "X2")]
    assert [row.line for row in rejected] == [6]
