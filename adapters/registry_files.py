"""Registry lists from the bureaus: read them row by row, and write lists for tests and samples.

The civil-affairs bureau (民政局) sends monthly lists of people in hardship tiers, the
veterans' affairs bureau (退役军人事务局) lists of priority-care people, and the insurance
bureau lists of enrolments. A list for any other programme the policy in force names under
``[programmes]`` (a charity's ``charity``) is a ``ProgrammeList``: its codes are the ones the
policy declares for that programme. All share one layout (samples/README.md shows it):

* A ``.csv`` file (UTF-8 with or without a BOM, or GB18030 as many bureau exports are) or
  an ``.xlsx`` or old ``.xls`` workbook (its first sheet).
* Title rows if any (a merged "2026年6月低保对象名册", a date line), a header row, then one
  row per person. The header is the first row, among the first ten that are not blank, with
  every required column; rows above it are skipped, and lines keep the file's own numbers.
  Headers are matched ignoring surrounding whitespace and case, in any order; extra columns
  are ignored:

  ============  ================  =========================================  ========
  Chinese       English           meaning                                    required
  ============  ================  =========================================  ========
  身份证号码    national_id       national ID number (or 公民身份号码 as the  yes
                                  ID card says, 身份证号, 证件号码, ...)
  姓名          name              name (may be left empty)                   yes
  类别          code              tier / category / enrolment type           yes
  认定日期      effective_from    first day in the programme                 yes
  退出日期      struck_off_on     first day out of the programme             no
  ============  ================  =========================================  ========

  The third column may instead carry its bureau's own header: 救助类别 on a
  civil-affairs list, 优抚类别 on a veterans list, 参保类型 on an insurance list. A
  programme list has no such header of its own.
* Codes are the code names of docs/settlement-rules.md or the Chinese terms in ``CHINESE_TERMS``
  (伤残军人 / 残疾军人 may carry a grade, 1级-6级 or 一级-六级). A code of another kind of
  list (a hardship tier on a veterans list) is unknown on this one. On a programme list the
  codes are the policy's code names, in any case.
* Dates are year first: ``2017-01-26``, ``2017/1/26`` (how Excel on Chinese Windows writes a
  date to CSV), ``2017.1.26`` or ``2017年1月26日``; in a workbook a real date cell also works.
  A bad date is rejected naming its cell (``认定日期 (cell D7)``). 退出日期 must be after 认定日期.

A whole-file problem (unreadable, unknown extension, no header, missing columns, no rows)
raises ``ListFormatError``. A bad row is reported as a ``RejectedRow`` with its line
number and a reason and the other rows still count. A reason never contains a national
ID: it names the column and the problem, and any echoed cell text is masked.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import random
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from adapters import identity
from adapters.table_files import (
    RejectedRow,
    TableFormatError,
    cell_text,
    empty,
    header_key,
    map_columns,
    names_every,
    open_table,
    shorten,
    write_table,
)
from settlement.chain_policy import NAME as PROGRAMME_NAME
from settlement.policy import HARDSHIP_TIERS, VETERAN_CATEGORIES

ListKind = Literal["civil-affairs", "veterans", "insurance"]
LIST_KINDS: tuple[ListKind, ...] = get_args(ListKind)
PROGRAMME: dict[ListKind, str] = {
    "civil-affairs": "hardship_aid",
    "veterans": "veteran_subsidy",
    "insurance": "insurance",
}


@dataclass(frozen=True, slots=True)
class ProgrammeList:
    """A list for a programme the policy names beyond the bureaus' three: its name and its codes."""

    programme: str  # a name as the policy loader requires: lower-case letters, digits and _
    codes: tuple[str, ...]  # the codes the policy declares for it under [programmes]


class UnknownListKind(ValueError):
    """The kind of list asked for is neither a bureau's nor a programme the policy names."""


def list_kind(name: str, programmes: Mapping[str, Sequence[str]], policy_id: str) -> ListKind | ProgrammeList:
    """The kind of list ``name`` asks for: a bureau's (civil-affairs, veterans, insurance), or a list
    of another programme that ``programmes`` (the latest policy's ``[programmes]``) names.

    Raises ``UnknownListKind`` with a message naming what is accepted."""
    for kind in LIST_KINDS:
        if name == kind:
            return kind
    for kind, programme in PROGRAMME.items():
        if name == programme:
            raise UnknownListKind(f"{programme} lists are the {kind} bureau's: import them as {kind}")
    codes = programmes.get(name)
    if not codes:
        others = sorted(programme for programme in programmes if programme not in PROGRAMME.values())
        message = f"unknown list kind {_show(name)!r}: give {', '.join(LIST_KINDS[:-1])} or {LIST_KINDS[-1]}"
        if others:
            message += f", or a programme policy {policy_id} names: {', '.join(others)}"
        else:
            message += f" (policy {policy_id} names no other programme under [programmes])"
        raise UnknownListKind(message)
    return ProgrammeList(programme=name, codes=tuple(codes))


def programme_of(kind: ListKind | ProgrammeList) -> str:
    """The registry programme a list's rows are memberships of."""
    return kind.programme if isinstance(kind, ProgrammeList) else PROGRAMME[kind]


def kind_name(kind: ListKind | ProgrammeList) -> str:
    """What the list is called in messages and in the audit trail's source: civil-affairs, charity."""
    return kind.programme if isinstance(kind, ProgrammeList) else kind


CODES: dict[ListKind, tuple[str, ...]] = {
    "civil-affairs": HARDSHIP_TIERS,
    "veterans": VETERAN_CATEGORIES,
    "insurance": ("resident",),
}

# Chinese term -> code name. 伤残军人 / 残疾军人 with a grade are matched by _DISABLED_VETERAN.
CHINESE_TERMS: dict[str, str] = {
    "特困": "destitute",
    "特困供养": "destitute",
    "五保": "destitute",
    "三无": "destitute",
    "低保": "minimum_allowance",
    "低保边缘": "marginal",
    "低收入": "low_income",
    "因病致贫": "medical_hardship",
    "支出型困难": "medical_hardship",
    "伤残军人": "disabled_veteran",
    "残疾军人": "disabled_veteran",
    "其他优抚对象": "priority_care",
    "优抚对象": "priority_care",
    "在乡复员军人": "priority_care",
    "烈士遗属": "priority_care",
    "带病回乡退伍军人": "priority_care",
    "城乡居民": "resident",
    "居民医保": "resident",
}

FIELDS = ("national_id", "name", "code", "effective_from", "struck_off_on")
REQUIRED_FIELDS = FIELDS[:4]
CHINESE_HEADERS = {
    "national_id": "身份证号码",
    "name": "姓名",
    "code": "类别",
    "effective_from": "认定日期",
    "struck_off_on": "退出日期",
}
BUREAU_CODE_HEADERS: dict[ListKind, str] = {
    "civil-affairs": "救助类别",
    "veterans": "优抚类别",
    "insurance": "参保类型",
}
# Other wordings bureaus use: 公民身份号码 is the ID card's own; 证件号码 is common where a list
# could in principle hold other documents (it is still validated as a national ID here).
_EXTRA_HEADERS = {"national_id": ("公民身份号码", "身份证号", "身份证件号码", "证件号码")}

DISABLED_VETERAN_GRADES = range(1, 7)

_CODE_KIND: dict[str, ListKind] = {code: kind for kind, codes in CODES.items() for code in codes}
_TERMS: dict[str, str] = {code.casefold(): code for code in _CODE_KIND} | CHINESE_TERMS
_CHINESE_NUMERALS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_DISABLED_VETERAN = re.compile(r"(?:伤残军人|残疾军人)[(\-—:]?(?P<grade>10|[1-9]|[一二三四五六七八九十])级\)?")
# Year first, then month and day with one or two digits, all separated the same way (2017/1/26,
# 2017-01-26, 2017.1.26), or written 2017年1月26日. A year-first date cannot swap day and month.
_DATE = re.compile(
    r"(?P<year>[0-9]{4})(?P<sep>[-/.])(?P<month>[0-9]{1,2})(?P=sep)(?P<day>[0-9]{1,2})"
    r"|(?P<zh_year>[0-9]{4})年(?P<zh_month>[0-9]{1,2})月(?P<zh_day>[0-9]{1,2})日"
)
DATE_FORMS = "YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日"
_WHITESPACE = re.compile(r"\s+")
_LONG_NUMBER = re.compile(r"[0-9]{14,}[0-9Xx]*")


@dataclass(frozen=True, slots=True)
class ListRow:
    line: int  # 1-based line (CSV) or row (XLSX) number as a person sees it; the header is line 1
    national_id: str  # validated and normalised with adapters.identity.validate
    name: str
    code: str  # a HARDSHIP_TIERS / VETERAN_CATEGORIES member, "resident" for insurance, or a programme list's code
    effective_from: dt.date
    struck_off_on: dt.date | None


# A rejected row's reason never contains a raw national ID. The whole file unusable as a list (unreadable,
# unknown extension, no header, missing columns, no rows) is a ListFormatError: adapters/table_files.py
# reads lists and catalogues alike.
ListFormatError = TableFormatError


def read_list(
    path: pathlib.Path, kind: ListKind | ProgrammeList, *, progress: Callable[[int, int], None] | None = None
) -> tuple[list[ListRow], list[RejectedRow]]:
    """Every row of a bureau list or a programme list, accepted or rejected with its line number and reason.

    ``progress(done, total)`` is called every 1,000 data rows and once at the end with
    ``done == total``; ``total`` is an estimate from the file (0 when it cannot tell).
    A later row with the ID of an earlier row is rejected as its duplicate, even when
    the earlier row was itself rejected: the list is ambiguous about that person.
    """
    if isinstance(kind, ProgrammeList):
        if not PROGRAMME_NAME.fullmatch(kind.programme) or not kind.codes:
            raise ValueError(f"a programme list needs a programme name and its codes, got {kind!r}")
    elif kind not in CODES:
        raise ValueError(f"unknown list kind {kind!r}; expected one of {', '.join(LIST_KINDS)}")
    accepted: list[ListRow] = []
    rejected: list[RejectedRow] = []
    with open_table(path, progress=progress, is_header=names_every(_accepted_headers(kind), REQUIRED_FIELDS)) as table:
        parser = _RowParser(pathlib.Path(path), kind, table.header, xlsx=table.xlsx)
        first_line: dict[str, int] = {}
        for line, cells in table.rows:
            row = parser.parse(line, cells, first_line)
            if isinstance(row, ListRow):
                accepted.append(row)
            else:
                rejected.append(RejectedRow(line=line, reason=row))
    return accepted, rejected


# ---------------------------------------------------------------- header


def _bureau_header(kind: ListKind | ProgrammeList) -> str | None:
    return None if isinstance(kind, ProgrammeList) else BUREAU_CODE_HEADERS[kind]


def _accepted_headers(kind: ListKind | ProgrammeList) -> dict[str, str]:
    """Header key -> field, for one kind of list."""
    names: dict[str, str] = {}
    for field in FIELDS:
        for header in (field, CHINESE_HEADERS[field], *_EXTRA_HEADERS.get(field, ())):
            names[header_key(header)] = field
    if (bureau := _bureau_header(kind)) is not None:
        names[header_key(bureau)] = "code"
    return names


def expected_headers(kind: ListKind | ProgrammeList) -> str:
    """The header layout in words, for error messages and documentation."""
    zh = CHINESE_HEADERS
    bureau = _bureau_header(kind)
    return (
        f"{zh['national_id']}, {zh['name']}, {zh['code']}{f' (or {bureau})' if bureau else ''}, "
        f"{zh['effective_from']} and optionally {zh['struck_off_on']}; "
        "or in English national_id, name, code, effective_from and optionally struck_off_on"
    )


def _map_header(
    path: pathlib.Path, kind: ListKind | ProgrammeList, header: Sequence[Any]
) -> tuple[dict[str, int], dict[str, str]]:
    """Field -> column index, and field -> the header as written (for reasons)."""
    columns, written = map_columns(path, header, _accepted_headers(kind), _show)
    missing = [field for field in REQUIRED_FIELDS if field not in columns]
    if missing:
        message = (
            f"{path.name}: missing required column(s) "
            + ", ".join(f"{CHINESE_HEADERS[field]} ({field})" for field in missing)
            + f". Expected a header row with {expected_headers(kind)}."
        )
        keys = {header_key(cell) for cell in header}
        other = [k for k, h in BUREAU_CODE_HEADERS.items() if k != kind and header_key(h) in keys]
        if other:
            message += (
                f" Its {BUREAU_CODE_HEADERS[other[0]]} column says this is {_a(other[0])} list, "
                f"not {_a(kind_name(kind))} list."
            )
        elif any(isinstance(cell, str) and _LONG_NUMBER.search(cell) for cell in header):
            message += " The first row holds a national ID: the file needs a header row."
        else:
            found = [_show(cell) for cell in header if not empty(cell)]
            message += f" Found: {', '.join(found) if found else '(nothing)'}."
            if len(found) == 1 and any(sep in found[0] for sep in ("\t", ";", "；")):
                message += " Is the file comma-separated?"
        raise ListFormatError(message)
    return columns, written


# ---------------------------------------------------------------- rows


def _show(value: Any) -> str:
    """Cell text fit for a message: long digit runs (possible IDs) masked, and shortened."""
    return shorten(_LONG_NUMBER.sub(lambda match: identity.mask(match.group(0)), str(value).strip()))


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


class _RowParser:
    def __init__(
        self, path: pathlib.Path, kind: ListKind | ProgrammeList, header: Sequence[Any], *, xlsx: bool
    ) -> None:
        self.kind = kind
        self.name = kind_name(kind)
        self.xlsx = xlsx
        columns, self.header = _map_header(path, kind, header)
        self.id_column = columns["national_id"]
        self.name_column = columns["name"]
        self.code_column = columns["code"]
        self.from_column = columns["effective_from"]
        self.off_column = columns.get("struck_off_on")
        self.date_columns = {"effective_from": self.from_column, "struck_off_on": self.off_column}
        if isinstance(kind, ProgrammeList):
            self.programme_codes: dict[str, str] | None = {code.casefold(): code for code in kind.codes}
            self.accepted_codes = ", ".join(kind.codes)
        else:
            self.programme_codes = None
            terms = [term for term, code in CHINESE_TERMS.items() if _CODE_KIND[code] == kind]
            self.accepted_codes = ", ".join(CODES[kind]) + " or " + ", ".join(terms)

    def parse(self, line: int, cells: Sequence[Any], first_line: dict[str, int]) -> ListRow | str:
        """The row, or the reason it is rejected. Records the row's ID in ``first_line``."""
        width = len(cells)
        problems: list[str] = []

        national_id = self.national_id(cells[self.id_column] if self.id_column < width else None, problems)
        if national_id is not None:
            earlier = first_line.setdefault(national_id, line)
            if earlier != line:
                problems.append(f"{self.header['national_id']}: duplicate of line {earlier}")
                national_id = None

        code = self.code(cell_text(cells[self.code_column] if self.code_column < width else None), problems)
        effective_cell = cells[self.from_column] if self.from_column < width else None
        if empty(effective_cell):
            problems.append(f"{self.header['effective_from']}: missing")
        effective_from = self.date(effective_cell, "effective_from", line, problems)
        struck_off_on = None
        if self.off_column is not None and self.off_column < width:
            struck_off_on = self.date(cells[self.off_column], "struck_off_on", line, problems)
        if effective_from is not None and struck_off_on is not None and struck_off_on <= effective_from:
            problems.append(
                f"{self.header['struck_off_on']} {struck_off_on.isoformat()} must be after "
                f"{self.header['effective_from']} {effective_from.isoformat()}"
            )

        if problems or national_id is None or code is None or effective_from is None:
            return "; ".join(problems)
        name = cell_text(cells[self.name_column] if self.name_column < width else None)
        return ListRow(line, national_id, name, code, effective_from, struck_off_on)

    def national_id(self, value: Any, problems: list[str]) -> str | None:
        header = self.header["national_id"]
        if empty(value):
            problems.append(f"{header}: missing")
            return None
        if not isinstance(value, str):
            problems.append(f"{header}: stored as a number, which loses digits; format the column as text")
            return None
        try:
            national_id = identity.validate(unicodedata.normalize("NFKC", value))
        except identity.InvalidNationalId as error:
            problems.append(f"{header}: {error}")
            return None
        if not national_id.isascii():
            problems.append(f"{header}: must be 17 digits 0-9 followed by a digit or X")
            return None
        return national_id

    def code(self, text: str, problems: list[str]) -> str | None:
        header = self.header["code"]
        if not text:
            problems.append(f"{header}: missing")
            return None
        key = _WHITESPACE.sub("", unicodedata.normalize("NFKC", text)).casefold()
        if self.programme_codes is not None:
            return self.programme_code(key, text, problems)
        code = _TERMS.get(key)
        if code is None and (match := _DISABLED_VETERAN.fullmatch(key)):
            grade_text = match.group("grade")
            grade = _CHINESE_NUMERALS[grade_text] if grade_text in _CHINESE_NUMERALS else int(grade_text)
            if grade not in DISABLED_VETERAN_GRADES:
                problems.append(f"{header}: unknown code {_show(text)!r}: disabled_veteran covers grades 1-6 only")
                return None
            code = "disabled_veteran"
        if code is None:
            problems.append(f"{header}: unknown code {_show(text)!r}; accepted: {self.accepted_codes}")
            return None
        if _CODE_KIND[code] != self.kind:
            problems.append(
                f"{header}: unknown code {_show(text)!r} for {_a(self.name)} list "
                f"(it is {code}, a code of {_CODE_KIND[code]} lists)"
            )
            return None
        return code

    def programme_code(self, key: str, text: str, problems: list[str]) -> str | None:
        """A code of a programme list: one the policy declares for the programme, in any case."""
        assert self.programme_codes is not None
        header = self.header["code"]
        code = self.programme_codes.get(key)
        if code is not None:
            return code
        bureau_code = _TERMS.get(key)
        if bureau_code is None and _DISABLED_VETERAN.fullmatch(key):
            bureau_code = "disabled_veteran"
        if bureau_code is not None:
            problems.append(
                f"{header}: unknown code {_show(text)!r} for {_a(self.name)} list "
                f"(it is {bureau_code}, a code of {_CODE_KIND[bureau_code]} lists); accepted: {self.accepted_codes}"
            )
        else:
            problems.append(f"{header}: unknown code {_show(text)!r}; accepted: {self.accepted_codes}")
        return None

    def date(self, value: Any, field: str, line: int, problems: list[str]) -> dt.date | None:
        """The date, or None if the cell is empty or bad (a bad one is added to ``problems``, naming its
        cell as a spreadsheet does, so a clerk can go to it)."""
        column = self.date_columns[field]
        assert column is not None
        header = f"{self.header[field]} (cell {_column_letters(column)}{line})"
        if empty(value):
            return None
        if self.xlsx and isinstance(value, dt.datetime):
            if value.time() != dt.time(0):
                problems.append(f"{header}: a date cell with a time of day; give the date only")
                return None
            return value.date()
        if self.xlsx and isinstance(value, dt.date):
            return value
        must = f"date must be {DATE_FORMS}" + (" (or a date cell)" if self.xlsx else "")
        if not isinstance(value, str):
            problems.append(f"{header}: {must}, got a {type(value).__name__} cell {_show(value)!r}")
            return None
        text = value.strip()
        match = _DATE.fullmatch(unicodedata.normalize("NFKC", text))  # full-width digits and ／ as ASCII
        if match is None:
            problems.append(f"{header}: {must}, got {_show(text)!r}")
            return None
        year, month, day = (match.group(name) or match.group("zh_" + name) for name in ("year", "month", "day"))
        try:
            return dt.date(int(year), int(month), int(day))
        except ValueError:
            problems.append(f"{header}: {_show(text)} is not a real date")
            return None


def _column_letters(index: int) -> str:
    """A 0-based column index as a spreadsheet names it: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


# ---------------------------------------------------------------- sample lists


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华平刚桂兰玉梅红霞建国志文斌辉玲凤云海林波宁"
_SAMPLE_TERMS: dict[ListKind, tuple[str, ...]] = {
    "civil-affairs": (
        "特困",
        "五保",
        "低保",
        "低保",
        "低保边缘",
        "低收入",
        "因病致贫",
        "支出型困难",
        "minimum_allowance",
    ),
    "veterans": (
        "伤残军人",
        "残疾军人3级",
        "伤残军人一级",
        "其他优抚对象",
        "在乡复员军人",
        "烈士遗属",
        "priority_care",
    ),
    "insurance": ("城乡居民", "居民医保", "resident"),
}
SAMPLE_REGION = "410102"
SAMPLE_HEADER = tuple(CHINESE_HEADERS[field] for field in FIELDS)


def write_sample_list(
    path: pathlib.Path, kind: ListKind, rows: int, *, seed: int, bad_every: int = 0
) -> dict[int, str]:
    """Write a seeded list of ``rows`` people (.csv or .xlsx by the extension) for tests and benchmarks.

    IDs are valid and distinct (region 410102). With ``bad_every`` = n, every n-th row is
    bad, in turn: a wrong check character, an unknown code, a date in the wrong format,
    and the ID of an earlier row. Returns line -> a fragment of the reason ``read_list``
    gives for each bad line.
    """
    rng = random.Random(seed)
    terms = _SAMPLE_TERMS[kind]
    used: set[str] = set()
    earlier: list[tuple[int, str]] = []  # rows whose valid ID a duplicate may repeat
    bad: dict[int, str] = {}
    table: list[tuple[Any, ...]] = []
    for index in range(rows):
        line = index + 2
        while True:
            birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(365 * 80))
            national_id = identity.make_id(SAMPLE_REGION, birth, rng.randrange(1000))
            if national_id not in used:
                used.add(national_id)
                break
        name = rng.choice(_SURNAMES) + "".join(rng.choices(_GIVEN, k=rng.choice((1, 2))))
        code = rng.choice(terms)
        effective_from: Any = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(365 * 11))
        struck_off_on = effective_from + dt.timedelta(days=rng.randrange(1, 700)) if rng.random() < 0.05 else None
        problem = None
        if bad_every and (index + 1) % bad_every == 0:
            problem = ("check", "code", "date", "duplicate")[len(bad) % 4]
            if problem == "duplicate" and not earlier:
                problem = "check"
            if problem == "check":
                wrong = "0123456789X".replace(national_id[17], "")
                national_id = national_id[:17] + rng.choice(wrong)
                bad[line] = "check character"
            elif problem == "code":
                code = "无此类别"
                bad[line] = "unknown code"
            elif problem == "date":
                effective_from = effective_from.strftime("%d.%m.%Y")  # day first: not a form the reader takes
                bad[line] = "date must be YYYY-MM-DD"
            else:
                first, national_id = rng.choice(earlier)
                bad[line] = f"duplicate of line {first}"
        if problem not in ("check", "duplicate"):
            earlier.append((line, national_id))
        table.append((national_id, name, code, effective_from, struck_off_on))
    write_table(path, SAMPLE_HEADER, table)
    return bad
