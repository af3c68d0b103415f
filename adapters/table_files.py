"""Tables that arrive as files: read row by row with their line numbers, and written for samples and tests.

The bureaus' registry lists (``adapters/registry_files.py``) and the insurer's item catalogue
(``adapters/catalogue_files.py``) come the same way, so they share this reader:

* A ``.csv`` file, UTF-8 with or without a BOM, or GB18030 as many exports from Chinese office
  software are: a file that decodes as UTF-8 as a whole is read as UTF-8, a mostly GBK one as
  GB18030. A UTF-8 file with lines in another encoding (a row pasted from a GBK export) is refused
  as a whole, naming those lines: every row of the file is then read as it was meant, or none is
  (see ``_sniff_csv``).
* An ``.xlsx`` workbook (read with openpyxl) or an old ``.xls`` one (read with python-calamine):
  its first sheet. Cells keep their types (numbers, dates), so each reader decides what a number
  or a date cell means in its columns.
* Title rows, then a header row, then one row per record. Bureau exports often put a title (a
  merged cell "2026年6月低保对象名册") or a date line above the header: a caller that says what its
  header looks like (``is_header``) gets the first of the first ``HEADER_SEARCH_ROWS`` non-blank
  rows that looks like it, and the rows above it are skipped; otherwise, or when none does, the
  header is the first non-blank row (so the caller's missing-column message names what it found).
  Blank rows are skipped; a record is numbered by the line (CSV) or row (workbook) a person sees it
  on in the file itself, title rows and blank rows included.

A problem with the whole file (unreadable, unknown extension, empty, mixed encodings, no rows after
the header) raises ``TableFormatError`` with the file's name and what is wrong; problems with single
rows are the caller's to report, as a ``RejectedRow`` each.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import itertools
import pathlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROGRESS_EVERY = 1000  # rows between two calls of a reader's progress callback
SHOW_MAX = 40  # characters of a cell a message repeats
HEADER_SEARCH_ROWS = 10  # non-blank rows searched for the header: titles above it are a line or three
_WIDE_CHARACTER = re.compile("[\u0800-\U0010ffff]")  # 3 or 4 bytes in UTF-8
ODD_LINES_SHOWN = 5  # lines in another encoding that a message names before it says "and N more"

Progress = Callable[[int, int], None]
Records = Iterator[tuple[int, Sequence[Any]]]


class TableFormatError(Exception):
    """The whole file cannot be read as a table: unreadable, unknown extension, no header, missing columns,
    no rows."""


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Table:
    """An open table: its header row and an iterator over its non-blank data rows, (line, cells)."""

    header_line: int
    header: Sequence[Any]
    rows: Records
    xlsx: bool  # a workbook (.xlsx or .xls): cells may be numbers and dates, not only text


@contextlib.contextmanager
def open_table(
    path: pathlib.Path,
    *,
    progress: Progress | None = None,
    is_header: Callable[[Sequence[Any]], bool] | None = None,
) -> Iterator[Table]:
    """The table in ``path`` (``.csv``, ``.xlsx`` or ``.xls`` by its extension), open until the block ends.

    ``is_header(cells)`` says whether a row is the header; rows above the first that is are title
    rows and skipped. ``progress(done, total)`` is called every 1,000 data rows and once at the end
    with ``done == total``; ``total`` is an estimate from the file (0 when it cannot tell). A table
    whose header is followed by no row raises ``TableFormatError`` once its rows are read."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    opener = _OPENERS.get(suffix)
    if opener is None:
        shown = suffix or "(none)"
        raise TableFormatError(f"{path.name}: unknown extension {shown!r}: give a .csv, .xlsx or .xls file")
    with opener(path) as (records, total_lines):
        header_line, header, records = _find_header(records, path, is_header)
        total = max(total_lines - header_line, 0)
        yield Table(header_line, header, _data_rows(records, total, progress, path), xlsx=suffix != ".csv")


def _data_rows(records: Records, total: int, progress: Progress | None, path: pathlib.Path) -> Records:
    done = 0
    found = False
    for line, cells in records:
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, total if total >= done else 0)
        if blank(cells):
            continue
        found = True
        yield line, cells
    if not found:
        raise TableFormatError(f"{path.name}: has a header but no rows")
    if progress is not None and not (done % PROGRESS_EVERY == 0 and total == done):
        progress(done, done)  # the end, unless the last call above already said so


# ---------------------------------------------------------------- reading files


@contextlib.contextmanager
def _csv_records(path: pathlib.Path) -> Iterator[tuple[Records, int]]:
    encoding, lines = _sniff_csv(path)
    try:
        file = path.open(encoding=encoding, newline="")
    except OSError as error:
        raise TableFormatError(f"{path.name}: cannot be read: {error.strerror}") from None
    with file:
        yield _csv_rows(file, path), lines


def _sniff_csv(path: pathlib.Path) -> tuple[str, int]:
    """The encoding and the number of lines: UTF-8 if every line decodes as UTF-8; GB18030 if most
    lines beyond ASCII do not; otherwise the file is UTF-8 with some lines in another encoding.

    Such a file was put together from two sources (a row pasted from a GBK export into a UTF-8 file).
    Reading it in either encoding would garble the odd rows' names and codes, or reject them far from
    the cause; so it is refused as a whole, naming the odd lines, and the clerk re-saves it as UTF-8
    (or retypes those lines) and imports it again, which changes nothing already right.

    Evidence of UTF-8 is a line that decodes as UTF-8 and has a character of three bytes or more (every
    Chinese character, and a BOM). About 1,900 GBK characters (隆, 楼, ...) are two bytes that also
    happen to be valid UTF-8, so a GBK name can decode as UTF-8 by chance; such a line proves nothing,
    and a mostly GBK file is read as GB18030 as a whole, as before. Line numbers are the file's
    physical lines, as a text editor and ``csv.reader`` count them."""
    lines = 0
    utf8_lines = 0  # lines with a character of 3 or more bytes that decode as UTF-8
    other_lines: list[int] = []  # lines that do not decode as UTF-8
    other_gb18030 = True  # every line in other_lines decodes as GB18030
    last = b""
    try:
        with path.open("rb") as file:
            for lines, raw in enumerate(file, start=1):
                last = raw
                if raw.isascii():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    other_lines.append(lines)
                    other_gb18030 = other_gb18030 and _decodes(raw, "gb18030")
                else:
                    utf8_lines += _WIDE_CHARACTER.search(text) is not None
    except OSError as error:
        raise TableFormatError(f"{path.name}: cannot be read: {error.strerror}") from None
    if not last:
        raise TableFormatError(f"{path.name}: the file is empty")
    if not other_lines:
        return "utf-8-sig", lines
    if len(other_lines) > utf8_lines:
        return "gb18030", lines
    looks = "GBK/GB18030 text" if other_gb18030 else "neither UTF-8 nor GB18030 text"
    one = len(other_lines) == 1
    raise TableFormatError(
        f"{path.name}: {_lines(other_lines)} {'is' if one else 'are'} {looks}, while the rest of the file is "
        "UTF-8: the file mixes two encodings, so none of it was read. Save the file again as one encoding "
        f"(CSV UTF-8 in Excel), or retype {'that line' if one else 'those lines'}, and import it again."
    )


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _lines(numbers: Sequence[int]) -> str:
    """line 7 / lines 7, 9 and 12 / lines 7, 9, 12, 15, 16 and 3 more."""
    shown = [str(number) for number in numbers[:ODD_LINES_SHOWN]]
    more = len(numbers) - len(shown)
    if len(shown) == 1:
        return f"line {shown[0]}"
    if more:
        return f"lines {', '.join(shown)} and {more} more"
    return f"lines {', '.join(shown[:-1])} and {shown[-1]}"


def _csv_rows(file: Any, path: pathlib.Path) -> Records:
    reader = csv.reader(file)
    previous = 0  # a quoted cell may span lines: a record starts on the line after the last one
    try:
        for cells in reader:
            yield previous + 1, cells
            previous = reader.line_num
    except UnicodeDecodeError:
        raise TableFormatError(
            f"{path.name}: is neither UTF-8 nor GB18030 text (undecodable bytes near line {previous + 1})"
        ) from None
    except csv.Error as error:
        raise TableFormatError(f"{path.name}: line {previous + 1}: {error}") from None


@contextlib.contextmanager
def _xlsx_records(path: pathlib.Path) -> Iterator[tuple[Records, int]]:
    import openpyxl  # only .xlsx files need it

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except OSError as error:
        raise TableFormatError(f"{path.name}: cannot be read: {error.strerror or error}") from None
    except Exception as error:  # openpyxl raises many kinds for a damaged or foreign file
        raise TableFormatError(f"{path.name}: is not a readable .xlsx workbook ({type(error).__name__})") from None
    try:
        sheets = workbook.worksheets
        if not sheets or not hasattr(sheets[0], "reset_dimensions"):
            raise TableFormatError(f"{path.name}: the first sheet of the workbook is not a worksheet")
        sheet = sheets[0]
        rows = sheet.max_row or 0  # from the sheet's own dimension record: only an estimate
        sheet.reset_dimensions()  # some writers record a wrong dimension; read every row that is there
        yield _xlsx_rows(sheet, path), rows
    finally:
        workbook.close()


def _xlsx_rows(sheet: Any, path: pathlib.Path) -> Records:
    line = 0
    try:
        for line, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield line, cells
    except Exception as error:  # a damaged sheet part
        raise TableFormatError(
            f"{path.name}: the sheet cannot be read after row {line} ({type(error).__name__})"
        ) from None


@contextlib.contextmanager
def _xls_records(path: pathlib.Path) -> Iterator[tuple[Records, int]]:
    import python_calamine  # only .xls files need it

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except OSError as error:
        raise TableFormatError(f"{path.name}: cannot be read: {error.strerror or error}") from None
    except Exception as error:  # calamine raises its own kinds for a damaged or foreign file
        raise TableFormatError(f"{path.name}: is not a readable .xls workbook ({type(error).__name__})") from None
    try:
        try:
            sheet = workbook.get_sheet_by_index(0)
        except Exception as error:  # no worksheet first (a chart sheet), or a damaged sheet part
            raise TableFormatError(
                f"{path.name}: the first sheet of the workbook cannot be read ({type(error).__name__})"
            ) from None
        yield _xls_rows(sheet, path), sheet.total_height
    finally:
        workbook.close()


def _xls_rows(sheet: Any, path: pathlib.Path) -> Records:
    # calamine starts at the sheet's first used cell; lines and columns stay the sheet's own.
    first_row, first_column = sheet.start or (0, 0)
    line = first_row
    try:
        for line, cells in enumerate(sheet.iter_rows(), start=first_row + 1):
            yield line, [None] * first_column + [None if cell == "" else cell for cell in cells]
    except Exception as error:
        raise TableFormatError(
            f"{path.name}: the sheet cannot be read after row {line} ({type(error).__name__})"
        ) from None


_OPENERS: dict[str, Callable[[pathlib.Path], contextlib.AbstractContextManager[tuple[Records, int]]]] = {
    ".csv": _csv_records,
    ".xlsx": _xlsx_records,
    ".xls": _xls_records,
}


def _find_header(
    records: Records, path: pathlib.Path, is_header: Callable[[Sequence[Any]], bool] | None
) -> tuple[int, Sequence[Any], Records]:
    """The header's line, the header, and the records after it.

    The header is the first of the first ``HEADER_SEARCH_ROWS`` non-blank rows that ``is_header``
    accepts, or the first non-blank row when there is no ``is_header`` or none of them is."""
    searched: list[tuple[int, Sequence[Any]]] = []
    for line, cells in records:
        if blank(cells):
            continue
        if is_header is None or is_header(cells):
            return line, cells, records
        searched.append((line, cells))
        if len(searched) == HEADER_SEARCH_ROWS:
            break
    if not searched:
        raise TableFormatError(f"{path.name}: the file is empty (no header row)")
    (line, cells), *after = searched
    return line, cells, itertools.chain(after, records)


# ---------------------------------------------------------------- cells and headers


def empty(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def blank(cells: Sequence[Any]) -> bool:
    return all(empty(cell) for cell in cells)


def cell_text(value: Any) -> str:
    """A cell as stripped text; an empty cell is ``""``."""
    if value is None:
        return ""
    return (value if isinstance(value, str) else str(value)).strip()


def cell_at(cells: Sequence[Any], column: int | None) -> Any:
    """The cell in ``column``, or None when the row is shorter or the column is absent."""
    return cells[column] if column is not None and column < len(cells) else None


def shorten(value: Any) -> str:
    """Cell text fit for a message: stripped, and cut to ``SHOW_MAX`` characters."""
    shown = str(value).strip()
    return shown if len(shown) <= SHOW_MAX else shown[: SHOW_MAX - 1] + "…"


def header_key(cell: Any) -> str:
    """A header as it is matched: Unicode-normalised (full-width letters as ASCII), BOM and surrounding
    space removed, case folded."""
    written = "" if cell is None else str(cell)
    return unicodedata.normalize("NFKC", written).replace("\ufeff", "").strip().casefold()


def names_every(accepted: Mapping[str, str], required: Iterable[str]) -> Callable[[Sequence[Any]], bool]:
    """An ``is_header`` for ``open_table``: a row is the header when its cells name every required field
    (``accepted`` maps a ``header_key`` to its field). Title rows above it name at most one."""
    needed = tuple(required)

    def is_header(cells: Sequence[Any]) -> bool:
        found = {accepted.get(header_key(cell)) for cell in cells}
        return all(field in found for field in needed)

    return is_header


def map_columns(
    path: pathlib.Path, header: Sequence[Any], accepted: dict[str, str], show: Callable[[Any], str] = shorten
) -> tuple[dict[str, int], dict[str, str]]:
    """Field -> column index, and field -> the header as written (for reasons), of the header cells whose
    ``header_key`` is in ``accepted`` (header key -> field). Two columns for one field raise
    ``TableFormatError``; which fields are missing is the caller's to judge."""
    columns: dict[str, int] = {}
    written: dict[str, str] = {}
    for index, header_cell in enumerate(header):
        field = accepted.get(header_key(header_cell))
        if field is None:
            continue
        if field in columns:
            raise TableFormatError(
                f"{path.name}: columns {columns[field] + 1} ({written[field]}) and {index + 1} ({show(header_cell)}) "
                f"both give {field}: keep one"
            )
        columns[field] = index
        written[field] = show(str(header_cell).replace("\ufeff", "").strip())
    return columns, written


# ---------------------------------------------------------------- writing tables


def write_table(
    path: pathlib.Path,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sheet_name: str = "list",
    bom: bool = False,
) -> None:
    """Write a table as .csv (UTF-8, with a BOM if ``bom``, dates as YYYY-MM-DD) or .xlsx (dates as date
    cells, on a sheet named ``sheet_name``)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow(
                    ["" if cell is None else cell.isoformat() if isinstance(cell, dt.date) else cell for cell in row]
                )
    elif suffix == ".xlsx":
        import openpyxl

        workbook = openpyxl.Workbook(write_only=True)
        sheet = workbook.create_sheet(sheet_name)
        sheet.append(list(header))
        for row in rows:
            sheet.append(list(row))  # a date becomes a date cell formatted yyyy-mm-dd; text stays text
        workbook.save(path)
    else:
        raise ValueError(f"cannot write {suffix or 'a file without extension'}: use .csv or .xlsx")
