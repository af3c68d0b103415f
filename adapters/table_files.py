"""Tables that arrive as files: read row by row with their line numbers, and written for samples and tests.

The bureaus' registry lists (``adapters/registry_files.py``) and the insurer's item catalogue
(``adapters/catalogue_files.py``) come the same way, so they share this reader:

* A ``.csv`` file, UTF-8 with or without a BOM, or GB18030 as many exports from Chinese office
  software are: a file that decodes as UTF-8 as a whole is read as UTF-8, any other as GB18030.
* An ``.xlsx`` workbook: its first sheet. Cells keep their types (numbers, dates), so each reader
  decides what a number or a date cell means in its columns.
* A header row (the first non-blank one), then one row per record. Blank rows are skipped; a
  record is numbered by the line (CSV) or row (XLSX) a person sees it on, the header being line 1
  of a file without blank lines above it.

A problem with the whole file (unreadable, unknown extension, empty, no rows after the header)
raises ``TableFormatError`` with the file's name and what is wrong; problems with single rows are
the caller's to report, as a ``RejectedRow`` each.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import pathlib
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

PROGRESS_EVERY = 1000  # rows between two calls of a reader's progress callback
SHOW_MAX = 40  # characters of a cell a message repeats

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
    xlsx: bool  # cells may be numbers and dates, not only text


@contextlib.contextmanager
def open_table(path: pathlib.Path, *, progress: Progress | None = None) -> Iterator[Table]:
    """The table in ``path`` (``.csv`` or ``.xlsx`` by its extension), open until the block ends.

    ``progress(done, total)`` is called every 1,000 data rows and once at the end with
    ``done == total``; ``total`` is an estimate from the file (0 when it cannot tell). A table
    whose header is followed by no row raises ``TableFormatError`` once its rows are read."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        opener = _csv_records
    elif suffix == ".xlsx":
        opener = _xlsx_records
    else:
        raise TableFormatError(
            f"{path.name}: unknown extension {suffix or '(none)'!r}: give a .csv or .xlsx file"
            + (" (save an old .xls workbook as .xlsx)" if suffix == ".xls" else "")
        )
    with opener(path) as (records, total_lines):
        header_line, header = _first_nonblank(records, path)
        total = max(total_lines - header_line, 0)
        yield Table(header_line, header, _data_rows(records, total, progress, path), xlsx=suffix == ".xlsx")


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
    """The encoding (UTF-8 if the whole file decodes as UTF-8, else GB18030) and the number of lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    newlines = 0
    last = b""
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
            if utf8:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    utf8 = False
    except OSError as error:
        raise TableFormatError(f"{path.name}: cannot be read: {error.strerror}") from None
    if not last:
        raise TableFormatError(f"{path.name}: the file is empty")
    lines = newlines + (last != b"\n")
    return ("utf-8-sig" if utf8 else "gb18030"), lines


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


def _first_nonblank(records: Records, path: pathlib.Path) -> tuple[int, Sequence[Any]]:
    for line, cells in records:
        if not blank(cells):
            return line, cells
    raise TableFormatError(f"{path.name}: the file is empty (no header row)")


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
    path: pathlib.Path, header: Sequence[str], rows: Iterable[Sequence[Any]], *, sheet_name: str = "list"
) -> None:
    """Write a table as .csv (UTF-8, no BOM, dates as YYYY-MM-DD) or .xlsx (dates as date cells, on a sheet
    named ``sheet_name``)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as file:
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
