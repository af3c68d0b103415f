"""The insurer's item catalogue (医保目录) as it is published: read a file row by row, and write seeded ones.

A catalogue file is the whole catalogue in force from one date (the date is given when it is
imported, not in the file). It comes as the registry lists do (``adapters/table_files.py``): a
``.csv`` (UTF-8 with or without a BOM, or GB18030) or the first sheet of an ``.xlsx`` workbook, a
header row, then one row per item. Headers are matched ignoring surrounding space and case, in any
order; extra columns are ignored:

==============  ===========================================  ==================  ========
field           Chinese headers                              English header      required
==============  ===========================================  ==================  ========
code            医保目录编码, 医疗目录编码, 项目编码          code                yes
name            医保目录名称, 项目名称                        name                yes
category        收费项目等级, 目录类别, 类别                  category            yes
self-pay share  先行自付比例, 自付比例                        self_pay_share      no
unit            计价单位, 单位                                unit                no
price cap       最高限价, 限价                                price_cap           no
==============  ===========================================  ==================  ========

* code: the national item code, at most 64 characters; each code once per file. In a workbook the
  column must be text: a number cell has lost any leading zeros.
* category: A, B or C; 甲, 乙, 丙; 甲类, 乙类, 丙类; or 01, 02, 03 (1, 2, 3 too).
* self-pay share: a B item's own self-pay-first share (先行自付), as a decimal (0.1) or a percentage
  (10%), from 0 to 1, to parts per million; empty for the policy's share. Only a B item has one.
* price cap: yuan per unit with at most 2 decimals (whole fen), not negative; empty for no cap.

A bad row is reported as a ``RejectedRow`` with its line number and every problem it has, each
naming its column as the file writes it; the other rows are still read. A catalogue file holds no
personal data, so cell text is repeated as it is (shortened).
"""

from __future__ import annotations

import pathlib
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from adapters.table_files import (
    Progress,
    RejectedRow,
    TableFormatError,
    cell_at,
    cell_text,
    empty,
    header_key,
    map_columns,
    names_every,
    open_table,
    shorten,
    write_table,
)
from settlement.models import Category
from settlement.money import MAX_BILL_FEN, RATE_SCALE, fen_from_yuan, rate_from_decimal

FIELDS: Final = ("code", "name", "category", "self_pay_share", "unit", "price_cap")
REQUIRED_FIELDS: Final = ("code", "name", "category")
HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "code": ("医保目录编码", "医疗目录编码", "项目编码"),
    "name": ("医保目录名称", "项目名称"),
    "category": ("收费项目等级", "目录类别", "类别"),
    "self_pay_share": ("先行自付比例", "自付比例"),
    "unit": ("计价单位", "单位"),
    "price_cap": ("最高限价", "限价"),
}
MAX_CODE_LENGTH: Final = 64  # a bill line's code is at most this long (gateway/api_models.py)
CATEGORY_TERMS: Final[dict[str, Category]] = {
    "a": "A", "b": "B", "c": "C",
    "甲": "A", "乙": "B", "丙": "C",
    "甲类": "A", "乙类": "B", "丙类": "C",
    "01": "A", "02": "B", "03": "C",
    "1": "A", "2": "B", "3": "C",  # 01-03 as a spreadsheet shows them once it has dropped the zero
}  # fmt: skip
ACCEPTED_CATEGORIES: Final = "A, B, C, 甲, 乙, 丙, 甲类, 乙类, 丙类, 01, 02 or 03"

_ACCEPTED_HEADERS = {
    header_key(header): field for field in FIELDS for header in (field, *HEADERS[field])
}  # header key -> field
_WHITESPACE = re.compile(r"\s+")
_YUAN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

CatalogueFormatError = TableFormatError  # the whole file cannot be read as a catalogue


@dataclass(frozen=True, slots=True)
class CatalogueRow:
    """One item of a catalogue file, as read and checked."""

    line: int  # 1-based line (CSV) or row (XLSX) number as a person sees it; the header is line 1
    code: str
    name: str
    category: Category
    self_pay_share: int | None  # parts per million; None: the policy's share (B items only have one)
    unit: str  # may be empty
    price_cap: int | None  # fen per unit; None: no cap


def expected_headers() -> str:
    """The header layout in words, for error messages."""
    required = ", ".join(f"{HEADERS[field][0]} ({field})" for field in REQUIRED_FIELDS)
    optional = ", ".join(f"{HEADERS[field][0]} ({field})" for field in FIELDS if field not in REQUIRED_FIELDS)
    return f"{required}, and optionally {optional}"


def read_catalogue(
    path: pathlib.Path, *, progress: Progress | None = None
) -> tuple[list[CatalogueRow], list[RejectedRow]]:
    """Every row of a catalogue file, accepted or rejected with its line number and reason.

    ``progress(done, total)`` is called every 1,000 data rows and once at the end with ``done ==
    total``; ``total`` is an estimate from the file (0 when it cannot tell). A later row with the code
    of an earlier row is rejected as its duplicate, even when the earlier row was itself rejected: the
    file is ambiguous about that item. A whole-file problem raises ``CatalogueFormatError``."""
    accepted: list[CatalogueRow] = []
    rejected: list[RejectedRow] = []
    with open_table(path, progress=progress, is_header=names_every(_ACCEPTED_HEADERS, REQUIRED_FIELDS)) as table:
        parser = _RowParser(pathlib.Path(path), table.header, xlsx=table.xlsx)
        first_line: dict[str, int] = {}
        for line, cells in table.rows:
            row = parser.parse(line, cells, first_line)
            if isinstance(row, CatalogueRow):
                accepted.append(row)
            else:
                rejected.append(RejectedRow(line=line, reason=row))
    return accepted, rejected


class _RowParser:
    def __init__(self, path: pathlib.Path, header: Sequence[Any], *, xlsx: bool) -> None:
        self.xlsx = xlsx
        self.columns, self.header = map_columns(path, header, _ACCEPTED_HEADERS)
        missing = [field for field in REQUIRED_FIELDS if field not in self.columns]
        if missing:
            found = [shorten(cell) for cell in header if not empty(cell)]
            message = (
                f"{path.name}: missing required column(s) "
                + ", ".join(f"{HEADERS[field][0]} ({field})" for field in missing)
                + f". Expected a header row with {expected_headers()}. Found: {', '.join(found) or '(nothing)'}."
            )
            if len(found) == 1 and any(separator in found[0] for separator in ("\t", ";", "；")):
                message += " Is the file comma-separated?"
            raise CatalogueFormatError(message)
        for field in FIELDS:
            self.header.setdefault(field, HEADERS[field][0])

    def parse(self, line: int, cells: Sequence[Any], first_line: dict[str, int]) -> CatalogueRow | str:
        """The row, or the reason it is rejected. Records the row's code in ``first_line``."""
        problems: list[str] = []
        column = self.columns.get
        code = self.code(cell_at(cells, column("code")), problems)
        if code is not None:
            earlier = first_line.setdefault(code, line)
            if earlier != line:
                problems.append(f"{self.header['code']}: {code} is already on line {earlier}")
                code = None
        name = cell_text(cell_at(cells, column("name")))
        if not name:
            problems.append(f"{self.header['name']}: missing")
        category = self.category(cell_at(cells, column("category")), problems)
        share = self.share(cell_at(cells, column("self_pay_share")), category, problems)
        unit = cell_text(cell_at(cells, column("unit")))
        cap = self.price_cap(cell_at(cells, column("price_cap")), problems)
        if problems or code is None or category is None:
            return "; ".join(problems)
        return CatalogueRow(
            line=line, code=code, name=name, category=category, self_pay_share=share, unit=unit, price_cap=cap
        )

    def code(self, value: Any, problems: list[str]) -> str | None:
        header = self.header["code"]
        if empty(value):
            problems.append(f"{header}: missing")
            return None
        if not isinstance(value, str):
            problems.append(
                f"{header}: a number cell ({shorten(value)}), which drops leading zeros; format the column as text"
            )
            return None
        code = value.strip()
        if len(code) > MAX_CODE_LENGTH:
            problems.append(f"{header}: {shorten(code)!r} is longer than {MAX_CODE_LENGTH} characters")
            return None
        if any(unicodedata.category(character)[0] == "C" for character in code):
            problems.append(f"{header}: {shorten(code)!r} holds a control character")
            return None
        return code

    def category(self, value: Any, problems: list[str]) -> Category | None:
        header = self.header["category"]
        written = cell_text(value)
        if not written:
            problems.append(f"{header}: missing")
            return None
        key = _WHITESPACE.sub("", unicodedata.normalize("NFKC", written)).casefold()
        category = CATEGORY_TERMS.get(key)
        if category is None:
            problems.append(f"{header}: unknown category {shorten(written)!r} (accepted: {ACCEPTED_CATEGORIES})")
        return category

    def share(self, value: Any, category: Category | None, problems: list[str]) -> int | None:
        """Parts per million, or None when the cell is empty or bad (a bad one is added to ``problems``)."""
        header = self.header["self_pay_share"]
        if empty(value):
            return None
        number = _number(value)
        percent = False
        if number is None and isinstance(value, str):
            written = _WHITESPACE.sub("", unicodedata.normalize("NFKC", value))
            if written.endswith("%"):
                percent = True
                number = _number(written[:-1])
        if number is None:
            problems.append(f"{header}: {shorten(value)!r} is neither a decimal (0.1) nor a percentage (10%)")
            return None
        share = number / 100 if percent else number
        if not 0 <= share <= 1:
            if percent:
                problems.append(f"{header}: {shorten(value)!r} is not between 0% and 100%")
            elif share > 1:
                problems.append(
                    f"{header}: {shorten(value)!r} is not between 0 and 1 (for {number} % write {number}% or "
                    f"{number / 100})"
                )
            else:
                problems.append(f"{header}: {shorten(value)!r} is not between 0 and 1")
            return None
        try:
            ppm = rate_from_decimal(share)
        except ValueError:
            problems.append(f"{header}: {shorten(value)!r} is more precise than parts per million")
            return None
        assert 0 <= ppm <= RATE_SCALE
        # Insurers' exports fill the column for every item: 0 on A items (wholly in scope) and 100 % on
        # C items (wholly self-pay) say what the category says already. Any other share there is a mistake.
        implied = {"A": 0, "C": RATE_SCALE}
        if category is not None and category != "B":
            if ppm != implied[category]:
                problems.append(
                    f"{header}: {shorten(value)!r} on a category {category} item; only a B item has a self-pay-first "
                    f"share (leave it empty, or write {'0' if category == 'A' else '100%'})"
                )
            return None
        return ppm

    def price_cap(self, value: Any, problems: list[str]) -> int | None:
        """Fen per unit, or None when the cell is empty or bad (a bad one is added to ``problems``)."""
        header = self.header["price_cap"]
        if empty(value):
            return None
        yuan = _number(value)
        if yuan is None or (isinstance(value, str) and not _YUAN.fullmatch(_WHITESPACE.sub("", value))):
            problems.append(f"{header}: {shorten(value)!r} is not an amount of yuan (12000.00)")
            return None
        if yuan < 0:
            problems.append(f"{header}: {shorten(value)!r} is negative")
            return None
        try:
            cap = fen_from_yuan(yuan)
        except ValueError:
            problems.append(f"{header}: {shorten(value)!r} has more than 2 decimals (a cap is whole fen)")
            return None
        if cap > MAX_BILL_FEN:
            problems.append(f"{header}: {shorten(value)!r} is over 100,000,000.00 yuan, more than any bill may be")
            return None
        return cap


def _number(value: Any) -> Decimal | None:
    """A cell as an exact decimal: text in decimal form, or a number cell; None for anything else.

    A workbook keeps a number cell as a binary float; its shortest decimal form (``repr``) is the number
    as it was typed, so 0.1 reads as 0.1, never as 0.1000000000000000055..."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = _WHITESPACE.sub("", unicodedata.normalize("NFKC", value))
        if not _DECIMAL.fullmatch(text):
            return None
    else:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


# ---------------------------------------------------------------- seeded catalogues

SAMPLE_HEADER: Final = tuple(HEADERS[field][0] for field in FIELDS)
_UNITS = ("支", "盒", "瓶", "袋", "片", "次", "项", "日", "小时", "个", "套", "部位")
_STEMS = (
    "阿莫西林", "头孢克肟", "左氧氟沙星", "布洛芬", "对乙酰氨基酚", "二甲双胍", "硝苯地平", "氨氯地平",
    "阿托伐他汀", "氯吡格雷", "奥美拉唑", "泮托拉唑", "胰岛素", "甲硝唑", "氯化钠", "葡萄糖", "维生素",
    "血常规", "尿常规", "肝功能", "肾功能", "心电图", "彩超", "CT", "磁共振", "胃镜", "针灸", "推拿",
    "输液", "注射", "换药", "缝合", "导尿", "吸氧", "雾化", "护理", "床位", "诊查", "手术", "麻醉",
)  # fmt: skip
_FORMS = ("片", "胶囊", "注射液", "颗粒", "口服液", "检查", "测定", "治疗", "费", "术")


def sample_catalogue(count: int, *, seed: int, revision: int = 0) -> list[tuple[Any, ...]]:
    """``count`` seeded catalogue rows in ``SAMPLE_HEADER``'s order, every one valid; the same arguments
    give the same rows. About 45 % A, 40 % B (a third with a share of their own, as 0.05 or 15%) and 15 %
    C; a quarter with a price cap.

    ``revision`` n > 0 is a later version of the same catalogue: for each n, about 1 % of the items
    change category, share, cap or name, 0.5 % are dropped and as many new ones added, drawn from the
    seed and n (so revision 2 builds on revision 1's changes)."""
    rng = random.Random(seed)
    items: dict[str, list[Any]] = {}
    for number in range(count):
        items[_sample_code(number)] = _sample_item(rng)
    next_number = count
    for step in range(1, revision + 1):
        change = random.Random(f"{seed}/{step}")
        codes = list(items)
        for code in change.sample(codes, max(1, len(codes) // 100)):
            name, category, share, unit, cap = items[code]
            what = change.randrange(4)
            if what == 0:
                category = change.choice([other for other in "ABC" if other != category])
                share = None
            elif what == 1 and category == "B":
                share = change.choice((Decimal("0.05"), Decimal("0.1"), "15%", "20%", None))
            elif what == 2:
                cap = Decimal(change.randrange(100, 10_000_000)).scaleb(-2)
            else:
                name = name + "(新规格)"
            items[code] = [name, category, share, unit, cap]
        for code in change.sample(codes, max(1, len(codes) // 200)):
            del items[code]
        for _ in range(max(1, len(codes) // 200)):
            items[_sample_code(next_number)] = _sample_item(change)
            next_number += 1
    return [(code, *fields) for code, fields in items.items()]


def write_sample_catalogue(path: pathlib.Path, count: int, seed: int, *, revision: int = 0) -> None:
    """Write ``sample_catalogue(count, seed=seed, revision=revision)`` as a .csv or .xlsx file (by the
    extension), with Chinese headers, for tests and the benchmark."""
    write_table(path, SAMPLE_HEADER, sample_catalogue(count, seed=seed, revision=revision), sheet_name="目录")


def _sample_code(number: int) -> str:
    """National-code-like: a drug (X...), a service (9 digits, leading zeros kept) or a material (C...)."""
    kind = number % 3
    if kind == 0:
        return f"XS{number:08d}A001"
    if kind == 1:
        return f"{number:09d}"
    return f"C{number:011d}"


def _sample_item(rng: random.Random) -> list[Any]:
    name = rng.choice(_STEMS) + rng.choice(_FORMS)
    category = rng.choices("ABC", weights=(45, 40, 15))[0]
    share: Decimal | str | None = None
    if category == "B" and rng.random() < 1 / 3:
        share = rng.choice((Decimal("0.05"), Decimal("0.1"), "15%", Decimal("0.2")))
    cap = Decimal(rng.randrange(100, 10_000_000)).scaleb(-2) if rng.random() < 0.25 else None
    return [name, category, share, rng.choice(_UNITS), cap]
