"""Reading the bureaus' registry lists (adapters/registry_files.py): layouts, encodings, bad rows."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import time
from pathlib import Path

import openpyxl
import pytest

from adapters.identity import make_id
from adapters.registry_files import (
    ListFormatError,
    ListRow,
    ProgrammeList,
    RejectedRow,
    UnknownListKind,
    list_kind,
    read_list,
    write_sample_list,
    write_table,
)
from settlement.policy import HARDSHIP_TIERS, VETERAN_CATEGORIES

D = dt.date
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"

ID1 = make_id("410102", D(1960, 3, 2), 26)
ID2 = make_id("410102", D(1975, 11, 30), 7)  # ends in X
ID3 = make_id("410102", D(1988, 1, 9), 404)
ID4 = make_id("410102", D(1942, 7, 21), 8)
ZH = "身份证号码,姓名,类别,认定日期,退出日期"


def write_csv(tmp_path: Path, text: str, name: str = "list.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def write_xlsx(tmp_path: Path, rows: list[list[object]], name: str = "list.xlsx") -> Path:
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


def assert_no_id_in(reasons: list[str], *ids: str) -> None:
    for reason in reasons:
        for national_id in ids:
            assert national_id not in reason
            assert national_id[:17] not in reason
        assert not re.search(r"\d{14,}", reason), reason


# ---------------------------------------------------------------- headers and layout


def test_chinese_headers_and_terms(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"{ZH}\n{ID1},李娜,低保,2026-01-01,\n{ID2},张伟,特困供养,2025-03-01,2026-06-01\n{ID3},,因病致贫,2026-05-01,\n",
    )
    rows, rejected = read_list(path, "civil-affairs")
    assert rejected == []
    assert rows == [
        ListRow(2, ID1, "李娜", "minimum_allowance", D(2026, 1, 1), None),
        ListRow(3, ID2, "张伟", "destitute", D(2025, 3, 1), D(2026, 6, 1)),
        ListRow(4, ID3, "", "medical_hardship", D(2026, 5, 1), None),  # a missing name is allowed
    ]


def test_english_headers_ignore_case_whitespace_order_and_extra_columns(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        " Code ,remarks,NATIONAL_ID, Name,Effective_From,household\n"
        f"priority_care,x,{ID1},Li Na,2026-01-01,H1\n"
        f"DISABLED_VETERAN,,{ID2.lower()},Zhang Wei,2020-05-01,H2\n",
    )
    rows, rejected = read_list(path, "veterans")
    assert rejected == []
    assert [(r.national_id, r.name, r.code, r.struck_off_on) for r in rows] == [
        (ID1, "Li Na", "priority_care", None),
        (ID2, "Zhang Wei", "disabled_veteran", None),  # the struck_off_on column is optional
    ]


@pytest.mark.parametrize(
    ("kind", "header", "code", "expected"),
    [
        ("civil-affairs", "救助类别", "低保边缘", "marginal"),
        ("veterans", "优抚类别", "烈士遗属", "priority_care"),
        ("insurance", "参保类型", "居民医保", "resident"),
    ],
)
def test_bureau_header_for_the_code_column(tmp_path: Path, kind: str, header: str, code: str, expected: str) -> None:
    path = write_csv(tmp_path, f" 身份证号码 ,姓名, {header} ,认定日期\n{ID1},李娜,{code},2026-01-01\n")
    rows, rejected = read_list(path, kind)  # type: ignore[arg-type]
    assert rejected == []
    assert rows[0].code == expected


def test_another_bureaus_header_says_the_list_is_the_wrong_kind(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"身份证号码,姓名,优抚类别,认定日期\n{ID1},李娜,其他优抚对象,2026-01-01\n")
    with pytest.raises(ListFormatError, match="this is a veterans list, not a civil-affairs list"):
        read_list(path, "civil-affairs")


def test_missing_required_column_names_the_expected_headers(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"身份证号码,姓名,类别\n{ID1},李娜,低保\n")
    with pytest.raises(ListFormatError) as raised:
        read_list(path, "civil-affairs")
    message = str(raised.value)
    assert "missing required column(s) 认定日期 (effective_from)" in message
    for header in ("身份证号码", "姓名", "类别", "救助类别", "认定日期", "退出日期", "national_id", "effective_from"):
        assert header in message


def test_a_file_without_a_header_row_is_refused_without_echoing_the_id(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{ID1},李娜,低保,2026-01-01,\n")
    with pytest.raises(ListFormatError, match="needs a header row") as raised:
        read_list(path, "civil-affairs")
    assert_no_id_in([str(raised.value)], ID1)


def test_two_columns_for_one_field_are_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"身份证号码,姓名,类别,认定日期,code\n{ID1},李娜,低保,2026-01-01,低保\n")
    with pytest.raises(ListFormatError, match="both give code"):
        read_list(path, "civil-affairs")


def test_tab_separated_file_gets_a_hint(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"身份证号码\t姓名\t类别\t认定日期\n{ID1}\t李娜\t低保\t2026-01-01\n")
    with pytest.raises(ListFormatError, match="comma-separated"):
        read_list(path, "civil-affairs")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("list.xls", b"x", "not a readable .xls workbook"),
        ("list.txt", b"x", "unknown extension '.txt'"),
        ("list.csv", b"", "empty"),
        ("list.csv", b"\n  \n,,\n", "empty"),
        ("list.csv", ZH.encode() + b"\n\n", "no rows"),
        ("list.xlsx", b"not a zip file", "not a readable .xlsx"),
        ("list.csv", b"\xff\xfe\xff\xff", "neither UTF-8 nor GB18030"),
    ],
)
def test_whole_file_problems(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ListFormatError, match=re.escape(message)):
        read_list(path, "civil-affairs")


def test_a_missing_file_is_a_list_format_error(tmp_path: Path) -> None:
    with pytest.raises(ListFormatError, match="cannot be read"):
        read_list(tmp_path / "nowhere.csv", "civil-affairs")


def test_unknown_kind_is_a_programming_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,低保,2026-01-01,\n")
    with pytest.raises(ValueError, match="unknown list kind"):
        read_list(path, "pensions")  # type: ignore[arg-type]


# ---------------------------------------------------------------- lists of other programmes the policy names

CHARITY = ProgrammeList("charity", ("child_major_disease",))
# [programmes] of a policy naming a charity programme beside the payers' two (the three-tier example's)
PROGRAMMES = {
    "veteran_subsidy": VETERAN_CATEGORIES,
    "hardship_aid": HARDSHIP_TIERS,
    "charity": ("child_major_disease",),
}


def test_a_programme_list_takes_the_codes_the_policy_declares_in_any_case(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"{ZH}\n{ID1},李娜,child_major_disease,2026-01-01,\n{ID2},张伟, Child_Major_Disease ,2025-03-01,2026-06-01\n",
        name="charity-2026-06.csv",
    )
    rows, rejected = read_list(path, CHARITY)
    assert rejected == []
    assert rows == [
        ListRow(2, ID1, "李娜", "child_major_disease", D(2026, 1, 1), None),
        ListRow(3, ID2, "张伟", "child_major_disease", D(2025, 3, 1), D(2026, 6, 1)),
    ]


def test_a_programme_list_refuses_a_code_the_policy_does_not_declare_naming_line_and_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"{ZH}\n{ID1},李娜,child_major_disease,2026-01-01,\n{ID2},张伟,adult_major_disease,2026-01-01,\n"
        f"{ID3},王芳,低保,2026-01-01,\n{ID4},刘洋,,2026-01-01,\n",
        name="charity.csv",
    )
    rows, rejected = read_list(path, CHARITY)
    assert [row.line for row in rows] == [2]
    assert by_line(rejected) == {
        3: "类别: unknown code 'adult_major_disease'; accepted: child_major_disease",
        4: "类别: unknown code '低保' for a charity list (it is minimum_allowance, a code of civil-affairs lists); "
        "accepted: child_major_disease",
        5: "类别: missing",
    }
    assert_no_id_in([row.reason for row in rejected], ID1, ID2, ID3, ID4)
    # with English headers the reason names the column as written
    english = write_csv(tmp_path, f"national_id,name,Code,effective_from\n{ID1},Li Na,destitute,2026-01-01\n")
    _, rejected = read_list(english, CHARITY)
    assert by_line(rejected) == {
        2: "Code: unknown code 'destitute' for a charity list (it is destitute, a code of civil-affairs lists); "
        "accepted: child_major_disease"
    }


def test_a_bureau_header_on_a_programme_list_says_the_file_is_the_bureaus(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"身份证号码,姓名,救助类别,认定日期\n{ID1},李娜,低保,2026-01-01\n")
    with pytest.raises(ListFormatError, match="this is a civil-affairs list, not a charity list") as raised:
        read_list(path, CHARITY)
    assert "类别, 认定日期" in str(raised.value)  # the layout asked for: no bureau header of its own


def test_the_kind_of_list_is_a_bureau_or_a_programme_the_policy_names() -> None:
    assert list_kind("civil-affairs", PROGRAMMES, "three-tier-2026") == "civil-affairs"
    assert list_kind("insurance", {}, "default-2026") == "insurance"
    assert list_kind("charity", PROGRAMMES, "three-tier-2026") == CHARITY
    with pytest.raises(UnknownListKind) as raised:
        list_kind("charty", PROGRAMMES, "three-tier-2026")
    assert str(raised.value) == (
        "unknown list kind 'charty': give civil-affairs, veterans or insurance, "
        "or a programme policy three-tier-2026 names: charity"
    )
    without = {name: codes for name, codes in PROGRAMMES.items() if name != "charity"}
    with pytest.raises(UnknownListKind, match=r"policy default-2026 names no other programme under \[programmes\]"):
        list_kind("charity", without, "default-2026")
    with pytest.raises(UnknownListKind) as raised:
        list_kind("hardship_aid", PROGRAMMES, "three-tier-2026")
    assert str(raised.value) == "hardship_aid lists are the civil-affairs bureau's: import them as civil-affairs"


# ---------------------------------------------------------------- encodings


def test_utf8_with_bom(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{ZH}\r\n{ID1},李娜,低保,2026-01-01,\r\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows, rejected = read_list(path, "civil-affairs")
    assert (rows[0].national_id, rows[0].name, rejected) == (ID1, "李娜", [])


def test_gb18030(tmp_path: Path) -> None:
    text = f"{ZH}\n{ID1},李娜,低保边缘,2026-01-01,\n{ID2},王芳,五保,2026-02-01,\n"
    path = write_csv(tmp_path, text, encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    rows, rejected = read_list(path, "civil-affairs")
    assert rejected == []
    assert [(r.name, r.code) for r in rows] == [("李娜", "marginal"), ("王芳", "destitute")]


def test_full_width_id_characters_are_normalised(tmp_path: Path) -> None:
    full_width = ID1.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
    path = write_csv(tmp_path, f"{ZH}\n {full_width} ,李娜,低保,2026-01-01,\n")
    rows, rejected = read_list(path, "civil-affairs")
    assert rejected == []
    assert rows[0].national_id == ID1


# ---------------------------------------------------------------- xlsx


def test_xlsx_with_real_date_cells(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["身份证号码", "姓名", "优抚类别", "认定日期", "退出日期", "备注"],
            [ID1, "李娜", "伤残军人二级", D(2020, 1, 1), dt.datetime(2026, 7, 1), "note"],
            [ID2, "张伟", "其他优抚对象", "2021-03-15", None],
            [],
            [ID3, None, "priority_care", dt.datetime(2022, 5, 6)],
        ],
    )
    rows, rejected = read_list(path, "veterans")
    assert rejected == []
    assert rows == [
        ListRow(2, ID1, "李娜", "disabled_veteran", D(2020, 1, 1), D(2026, 7, 1)),
        ListRow(3, ID2, "张伟", "priority_care", D(2021, 3, 15), None),
        ListRow(5, ID3, "", "priority_care", D(2022, 5, 6), None),
    ]


def test_xlsx_bad_cells(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["national_id", "name", "code", "effective_from"],
            [int(ID1), "stored as a number", "low_income", D(2026, 1, 1)],
            [ID2, "serial number date", "low_income", 46000],
            [ID3, "time of day", "low_income", dt.datetime(2026, 1, 1, 9, 30)],
            [ID4, "day first", "low_income", "01/01/2026"],
        ],
    )
    rows, rejected = read_list(path, "civil-affairs")
    assert rows == []
    reasons = by_line(rejected)
    assert "stored as a number" in reasons[2]
    assert (
        "effective_from (cell D3): date must be YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日 (or a date cell)"
        in reasons[3]
    )
    assert "time of day" in reasons[4]
    assert "date must be YYYY-MM-DD" in reasons[5]
    assert_no_id_in(list(reasons.values()), ID1, ID2, ID3, ID4)


# ---------------------------------------------------------------- bad rows


def test_each_bad_row_is_reported_with_its_line_and_reason(tmp_path: Path) -> None:
    wrong_check = ID2[:17] + ("0" if ID2[17] != "0" else "1")
    lines = [
        ZH,  # 1
        f"{ID1},李娜,低保,2026-01-01,",  # 2 good
        f"{wrong_check},王芳,低保,2026-01-01,",  # 3 check character
        f"{ID3[:17]},刘洋,低保,2026-01-01,",  # 4 too short
        ",无证,低保,2026-01-01,",  # 5 missing ID
        f"{ID3},陈杰,困难户,2026-01-01,",  # 6 unknown code
        f"{ID4},杨敏,,2026-01-01,",  # 7 missing code
        "",  # 8 blank line, skipped
        f"{make_id('410102', D(1990, 1, 1), 1)},赵磊,低收入,,",  # 9 missing effective date
        f"{make_id('410102', D(1990, 1, 2), 2)},黄静,低收入,20260101,",  # 10 date format
        f"{make_id('410102', D(1990, 1, 3), 3)},周强,低收入,2026-02-30,",  # 11 impossible date
        f"{make_id('410102', D(1990, 1, 4), 4)},吴刚,低收入,2026-03-01,2026-03-01",  # 12 strike-off not after
        f"{make_id('410102', D(1990, 1, 5), 5)},郑红,低收入,2026-03-01,2026-02-01",  # 13 strike-off before
        f"{make_id('410102', D(1990, 1, 6), 6)},孙丽,伤残军人,2026-03-01,",  # 14 a veterans code
        f"{ID1},李娜,低保边缘,2026-02-01,",  # 15 duplicate of line 2
        f"{make_id('410102', D(1990, 1, 7), 7)},冯军,marginal,2026-01-01,31/12/2026",  # 16 bad strike-off date
        f"{make_id('410102', D(1990, 1, 8), 8)},,low_income,2026-04-01,",  # 17 good, no name
        "  ,  ,  ,  ,  ",  # 18 blank cells, skipped
    ]
    path = write_csv(tmp_path, "\n".join(lines) + "\n")
    rows, rejected = read_list(path, "civil-affairs")

    assert [(row.line, row.code) for row in rows] == [(2, "minimum_allowance"), (17, "low_income")]
    reasons = by_line(rejected)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]
    assert reasons[3] == "身份证号码: the check character (18th) does not match"
    assert reasons[4] == "身份证号码: must be 18 characters"
    assert reasons[5] == "身份证号码: missing"
    assert reasons[6].startswith("类别: unknown code '困难户'; accepted: destitute")
    assert reasons[7] == "类别: missing"
    assert reasons[9] == "认定日期: missing"
    assert (
        reasons[10]
        == "认定日期 (cell D10): date must be YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日, got '20260101'"
    )
    assert reasons[11] == "认定日期 (cell D11): 2026-02-30 is not a real date"
    assert reasons[12] == "退出日期 2026-03-01 must be after 认定日期 2026-03-01"
    assert reasons[13] == "退出日期 2026-02-01 must be after 认定日期 2026-03-01"
    assert "unknown code '伤残军人' for a civil-affairs list" in reasons[14]
    assert reasons[15] == "身份证号码: duplicate of line 2"
    assert (
        reasons[16]
        == "退出日期 (cell E16): date must be YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日, got '31/12/2026'"
    )
    assert_no_id_in(list(reasons.values()), *(line.split(",")[0] for line in lines[1:] if line[:1].isdigit()))


def test_a_row_with_several_problems_lists_them_all(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,低保,2026-01-01,\n{ID1},李娜,???,1.1.2026,\n")
    _, rejected = read_list(path, "civil-affairs")
    assert rejected[0].line == 3
    assert rejected[0].reason.split("; ")[0] == "身份证号码: duplicate of line 2"
    assert "unknown code '???'" in rejected[0].reason
    assert "date must be YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日, got '1.1.2026'" in rejected[0].reason


def test_duplicates_keep_the_first_row_and_reject_every_later_one(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        f"{ZH}\n{ID1},李娜,低保,2026-01-01,\n{ID2},王芳,低保,2026-01-01,\n"
        f"{ID1},李娜,低保,2026-01-01,\n{ID2.lower()},王芳,低收入,2026-02-01,\n{ID1},李娜,特困,2026-03-01,\n",
    )
    rows, rejected = read_list(path, "civil-affairs")
    assert [(row.line, row.national_id) for row in rows] == [(2, ID1), (3, ID2)]
    assert by_line(rejected) == {
        4: "身份证号码: duplicate of line 2",
        5: "身份证号码: duplicate of line 3",  # the same ID with a lower-case x
        6: "身份证号码: duplicate of line 2",
    }


def test_a_duplicate_of_a_rejected_row_is_still_a_duplicate(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,低保,01/01/2026,\n{ID1},李娜,低保,2026-01-01,\n")
    rows, rejected = read_list(path, "civil-affairs")
    assert rows == []
    assert [row.line for row in rejected] == [2, 3]
    assert rejected[1].reason == "身份证号码: duplicate of line 2"


def test_an_id_in_another_column_is_masked_in_the_reason(tmp_path: Path) -> None:
    # columns shifted: the ID lands in the code and date columns
    path = write_csv(tmp_path, f"{ZH}\n{ID2},李娜,{ID1},{ID1},\n")
    _, rejected = read_list(path, "civil-affairs")
    assert "410*************" in rejected[0].reason
    assert_no_id_in([rejected[0].reason], ID1, ID2)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("伤残军人", "disabled_veteran"),
        ("残疾军人", "disabled_veteran"),
        ("伤残军人1级", "disabled_veteran"),
        ("残疾军人6级", "disabled_veteran"),
        ("伤残军人一级", "disabled_veteran"),
        ("残疾军人六级", "disabled_veteran"),
        ("残疾军人（三级）", "disabled_veteran"),
        ("伤残军人 ４级", "disabled_veteran"),
        ("其他优抚对象", "priority_care"),
        ("优抚对象", "priority_care"),
        ("在乡复员军人", "priority_care"),
        ("烈士遗属", "priority_care"),
        ("带病回乡退伍军人", "priority_care"),
        ("Priority_Care", "priority_care"),
    ],
)
def test_veteran_codes(tmp_path: Path, code: str, expected: str) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,{code},2026-01-01,\n")
    rows, rejected = read_list(path, "veterans")
    assert rejected == []
    assert rows[0].code == expected


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        ("veterans", "伤残军人7级", "grades 1-6 only"),
        ("veterans", "残疾军人十级", "grades 1-6 only"),
        ("veterans", "低保", "unknown code '低保' for a veterans list"),
        ("veterans", "destitute", "unknown code 'destitute' for a veterans list"),
        ("insurance", "特困", "unknown code '特困' for an insurance list"),
        ("civil-affairs", "resident", "unknown code 'resident' for a civil-affairs list"),
        ("civil-affairs", "城乡居民", "unknown code '城乡居民' for a civil-affairs list"),
        ("insurance", "职工医保", "unknown code '职工医保'; accepted: resident or 城乡居民, 居民医保"),
    ],
)
def test_codes_of_other_lists_and_unknown_codes(tmp_path: Path, kind: str, code: str, reason: str) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,{code},2026-01-01,\n")
    rows, rejected = read_list(path, kind)  # type: ignore[arg-type]
    assert rows == []
    assert reason in rejected[0].reason


@pytest.mark.parametrize(
    ("term", "code"),
    [
        ("特困", "destitute"),
        ("特困供养", "destitute"),
        ("五保", "destitute"),
        ("低保", "minimum_allowance"),
        ("低保边缘", "marginal"),
        ("低收入", "low_income"),
        ("因病致贫", "medical_hardship"),
        ("支出型困难", "medical_hardship"),
        ("Minimum_Allowance", "minimum_allowance"),
    ],
)
def test_hardship_terms(tmp_path: Path, term: str, code: str) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,{term},2026-01-01,\n")
    rows, _ = read_list(path, "civil-affairs")
    assert rows[0].code == code


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    # a quoted name spanning two lines, and blank lines before and inside the data
    path = write_csv(tmp_path, f'\n{ZH}\n{ID1},"李\n娜",低保,2026-01-01,\n\n{ID2},王芳,困难,2026-01-01,\n')
    rows, rejected = read_list(path, "civil-affairs")
    assert [row.line for row in rows] == [3]
    assert [row.line for row in rejected] == [6]


# ---------------------------------------------------------------- generated lists and progress


def test_progress_is_reported_every_thousand_rows(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    write_sample_list(path, "insurance", 2500, seed=3)
    calls: list[tuple[int, int]] = []
    rows, _ = read_list(path, "insurance", progress=lambda done, total: calls.append((done, total)))
    assert len(rows) == 2500
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_ten_thousand_generated_rows(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"civil-affairs{suffix}"
    bad = write_sample_list(path, "civil-affairs", 10_000, seed=20260601, bad_every=50)
    start = time.perf_counter()
    rows, rejected = read_list(path, "civil-affairs")
    elapsed = time.perf_counter() - start
    print(f"\nread 10,000 rows of {suffix} in {elapsed:.3f} s")

    assert len(bad) == 200
    assert sorted(set(bad.values()) - {v for v in bad.values() if v.startswith("duplicate of line")}) == [
        "check character",
        "date must be YYYY-MM-DD",
        "unknown code",
    ]
    assert len(rows) == 10_000 - 200
    assert len(rejected) == 200
    reasons = by_line(rejected)
    assert set(reasons) == set(bad)
    for line, fragment in bad.items():
        assert fragment in reasons[line]
    assert len({row.national_id for row in rows}) == len(rows)
    assert_no_id_in(list(reasons.values()), *(row.national_id for row in rows))
    assert elapsed < 5


def test_generated_lists_are_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert write_sample_list(first, "veterans", 300, seed=7, bad_every=9) == write_sample_list(
        second, "veterans", 300, seed=7, bad_every=9
    )
    assert first.read_bytes() == second.read_bytes()
    rows, rejected = read_list(first, "veterans")
    assert {row.code for row in rows} == {"disabled_veteran", "priority_care"}
    assert len(rejected) == 300 // 9


def test_write_table_refuses_other_extensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"use \.csv or \.xlsx"):
        write_table(tmp_path / "list.ods", ["a"], [])


# ---------------------------------------------------------------- samples

SAMPLE_FILES = [
    ("civil-affairs-2026-06.csv", "civil-affairs", 15),
    ("civil-affairs-2026-06.xlsx", "civil-affairs", 15),
    ("veterans-2026-06.csv", "veterans", 6),
    ("insurance-2026.csv", "insurance", 20),
]


@pytest.mark.parametrize(("name", "kind", "count"), SAMPLE_FILES)
def test_sample_files_read_with_no_rejections(name: str, kind: str, count: int) -> None:
    rows, rejected = read_list(SAMPLES / name, kind)  # type: ignore[arg-type]
    assert rejected == []
    assert len(rows) == count


def test_samples_cover_every_code_and_overlap() -> None:
    civil, _ = read_list(SAMPLES / "civil-affairs-2026-06.csv", "civil-affairs")
    workbook, _ = read_list(SAMPLES / "civil-affairs-2026-06.xlsx", "civil-affairs")
    veterans, _ = read_list(SAMPLES / "veterans-2026-06.csv", "veterans")
    insurance, _ = read_list(SAMPLES / "insurance-2026.csv", "insurance")
    assert workbook == civil
    assert {row.code for row in civil} == set(HARDSHIP_TIERS)
    assert {row.code for row in veterans} == set(VETERAN_CATEGORIES)
    assert sum(row.struck_off_on is not None for row in civil) == 1
    insured = {row.national_id for row in insurance}
    assert {row.national_id for row in civil} & insured
    assert {row.national_id for row in veterans} & insured
    assert {row.national_id for row in civil} & {row.national_id for row in veterans}


def test_sample_csv_files_are_what_make_samples_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in module.write_samples(tmp_path):
        if path.suffix == ".csv":
            assert path.read_bytes() == (SAMPLES / path.name).read_bytes(), f"run samples/make_samples.py: {path.name}"
        else:
            assert read_list(path, "civil-affairs") == read_list(SAMPLES / path.name, "civil-affairs")


# ---------------------------------------------------------------- lists as bureaus send them (issue 19)

FIXTURES = ROOT / "tests" / "fixtures"
TITLED = "2026年6月低保对象名册,,,,\n制表日期：2026年6月30日,,,,\n"


def test_title_rows_above_the_header_are_skipped_and_lines_stay_the_files(tmp_path: Path) -> None:
    path = write_csv(tmp_path, f"{TITLED}\n{ZH}\n{ID1},李娜,低保,2026-01-01,\n{ID2},王芳,低保,2026-13-01,\n")
    rows, rejected = read_list(path, "civil-affairs")
    assert [(row.line, row.name) for row in rows] == [(5, "李娜")]
    assert [row.line for row in rejected] == [6]
    assert "认定日期 (cell D6)" in rejected[0].reason


def test_title_rows_in_a_workbook(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path,
        [
            ["2026年6月优抚对象名册"],
            [],
            ["公民身份号码", "姓名", "优抚类别", "认定日期"],
            [ID1, "李娜", "烈士遗属", D(2020, 1, 1)],
        ],
    )
    rows, rejected = read_list(path, "veterans")
    assert (rejected, [(row.line, row.code) for row in rows]) == ([], [(4, "priority_care")])


def test_a_header_below_the_first_ten_rows_is_not_searched_for(tmp_path: Path) -> None:
    titles = "".join(f"第{number}行说明,,,,\n" for number in range(1, 11))
    path = write_csv(tmp_path, f"{titles}{ZH}\n{ID1},李娜,低保,2026-01-01,\n")
    with pytest.raises(ListFormatError, match=r"missing required column\(s\).*Found: 第1行说明"):
        read_list(path, "civil-affairs")


@pytest.mark.parametrize(
    "header", ["公民身份号码", "身份证号码", "身份证号", "身份证件号码", "证件号码", "national_id"]
)
def test_national_id_header_wordings(tmp_path: Path, header: str) -> None:
    path = write_csv(tmp_path, f"{header},姓名,类别,认定日期\n{ID1},李娜,低保,2026-01-01\n")
    rows, rejected = read_list(path, "civil-affairs")
    assert (rejected, [row.national_id for row in rows]) == ([], [ID1])
    bad = write_csv(tmp_path, f"{header},姓名,类别,认定日期\n{ID1[:17]},李娜,低保,2026-01-01\n", name="bad.csv")
    assert read_list(bad, "civil-affairs")[1][0].reason == f"{header}: must be 18 characters"


@pytest.mark.parametrize(
    "written",
    ["2017/1/26", "2017/01/26", "2017-1-26", "2017.1.26", "2017年1月26日", "2017年01月26日", "２０１７／１／２６"],
)
def test_year_first_date_forms(tmp_path: Path, written: str) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,低保,{written},\n")
    rows, rejected = read_list(path, "civil-affairs")
    assert (rejected, rows[0].effective_from) == ([], D(2017, 1, 26))


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("26/1/2017", "date must be YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日, got '26/1/2017'"),
        ("2017/1-26", "date must be YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日, got '2017/1-26'"),
        ("2017/2/30", "2017/2/30 is not a real date"),
        ("2017年13月1日", "2017年13月1日 is not a real date"),
    ],
)
def test_a_bad_date_names_its_line_and_cell(tmp_path: Path, written: str, reason: str) -> None:
    path = write_csv(tmp_path, f"{ZH}\n{ID1},李娜,低保,2017-01-01,\n{ID2},王芳,低保,{written},\n")
    _, rejected = read_list(path, "civil-affairs")
    assert [(row.line, row.reason) for row in rejected] == [(3, f"认定日期 (cell D3): {reason}")]


def test_an_old_excel_xls_list(tmp_path: Path) -> None:
    """tests/fixtures/civil-affairs-2026-06.xls, written by make_civil_affairs_xls.py beside it: a merged
    title, a date line, 公民身份号码 and 救助类别, date cells, and dates typed as text."""
    rows, rejected = read_list(FIXTURES / "civil-affairs-2026-06.xls", "civil-affairs")
    assert [(row.line, row.name, row.code, row.effective_from, row.struck_off_on) for row in rows] == [
        (4, "王芳", "minimum_allowance", D(2026, 6, 1), None),
        (5, "李强", "destitute", D(2017, 1, 26), None),
        (6, "张敏", "marginal", D(2025, 3, 15), D(2026, 7, 1)),
    ]
    assert [(row.line, row.reason) for row in rejected] == [(7, "认定日期 (cell D7): 2026/13/1 is not a real date")]
    assert rows[0].national_id == make_id("410102", D(1950, 1, 10), 100)


def test_a_damaged_xls_is_refused_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "list.xls"
    path.write_bytes((FIXTURES / "civil-affairs-2026-06.xls").read_bytes()[:1500])
    with pytest.raises(ListFormatError, match=r"list\.xls: is not a readable \.xls workbook"):
        read_list(path, "civil-affairs")


def test_a_gbk_row_in_a_utf8_file_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    utf8 = f"{TITLED}{ZH}\n{ID1},李娜,低保,2026-01-01,\n".encode()
    path.write_bytes(utf8 + f"{ID2},王芳,五保,2017/1/26,\n".encode("gbk") + f"{ID3},张伟,低保,2026-01-01,\n".encode())
    with pytest.raises(ListFormatError) as raised:
        read_list(path, "civil-affairs")
    message = str(raised.value)
    assert message.startswith("list.csv: line 5 is GBK/GB18030 text, while the rest of the file is UTF-8")
    assert "none of it was read" in message
    assert_no_id_in([message], ID1, ID2, ID3)


def test_several_odd_lines_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    good = f"{ID1},李娜,低保,2026-01-01,\n".encode()
    odd = f"{ID2},王芳,五保,2026-01-01,\n".encode("gbk")
    path.write_bytes(f"{ZH}\n".encode() + good * 8 + odd * 7)
    with pytest.raises(ListFormatError, match=r"lines 10, 11, 12, 13, 14 and 2 more are GBK/GB18030 text"):
        read_list(path, "civil-affairs")


def test_a_gbk_file_whose_names_happen_to_be_valid_utf8_reads_as_gbk(tmp_path: Path) -> None:
    """隆 and 楼 are C2 A1 and C2 A5 in GBK, valid UTF-8 by chance: such lines say nothing about the file."""
    path = write_csv(
        tmp_path,
        f"{ZH}\n{ID1},李隆,低保,2026-01-01,\n{ID2},楼隆,low_income,2026-01-01,\n{ID3},隆楼,marginal,2026-01-01,\n",
        encoding="gbk",
    )
    assert "楼隆,low_income".encode("gbk").decode("utf-8")  # the premise: that line decodes as UTF-8
    rows, rejected = read_list(path, "civil-affairs")
    assert (rejected, [row.name for row in rows]) == ([], ["李隆", "楼隆", "隆楼"])


def test_an_ascii_only_utf8_file_with_one_gbk_row_reads_as_gb18030(tmp_path: Path) -> None:
    """With no other line beyond ASCII there is nothing to say the file is UTF-8: it is a GB18030 file."""
    path = tmp_path / "list.csv"
    path.write_bytes(
        f"national_id,name,code,effective_from\n{ID1},,low_income,2026-01-01\n".encode()
        + f"{ID2},王芳,低保,2026-01-01\n".encode("gbk")
    )
    rows, rejected = read_list(path, "civil-affairs")
    assert (rejected, [row.name for row in rows]) == ([], ["", "王芳"])
