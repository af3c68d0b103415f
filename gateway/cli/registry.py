"""The registry from the command line: ``medsettle import`` (bureau lists, and lists of the other
programmes the policy in force names), ``clinics import`` and ``registry stats``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from adapters import db, identity, readjudication
from adapters.catalogue_store import load_catalogue
from adapters.policy_files import load_policy_book, policy_dir
from adapters.registry_admin import import_clinics
from adapters.registry_files import (
    LIST_KINDS,
    ListFormatError,
    ListKind,
    ListRow,
    ProgrammeList,
    UnknownListKind,
    kind_name,
    list_kind,
    programme_of,
    read_list,
)
from adapters.registry_stats import stats_csv
from adapters.registry_store import ImportReport, PersonEntry, apply_entries
from adapters.report_models import RegistryStats
from adapters.reports import Reports
from adapters.table_files import write_table
from gateway.cli.database import Connection, database_url, with_connection
from gateway.cli.reports import report_json
from gateway.config import Settings
from settlement.catalogue import Catalogue
from settlement.errors import PolicyError
from settlement.money import format_yuan
from settlement.registry import ListEntry

FULL_LIST_HELP = (
    "the file is a FULL list: it names everyone currently in the programme, so anyone in force now but "
    "missing from it is struck off as of --as-of (default today). You are asked to confirm the count "
    "first (or pass --yes). Without --full-list the file is a partial list: it only adds and changes."
)


VERBS = {
    "added": ("would add", "added"),
    "changed": ("would change", "changed"),
    "struck_off": ("would strike off", "struck off"),
}
DRY_RUN_SHOWN = 20  # changes a dry run prints; a bureau's list can change 50,000 people, and a file holds them all

# The list --write-list writes: one row per line of the file (and per person a full list strikes off),
# headed in Chinese with the English beside, for a clerk to filter and sort in a spreadsheet.
WRITTEN_LIST_HEADER = (
    "行号 line",
    "结果 outcome",
    "身份证号码 national_id (masked)",
    "姓名 name",
    "类别 code",
    "认定日期 effective_from",
    "退出日期 struck_off_on",
    "说明 details",
)
OUTCOME_WORDS = {
    "added": "新增 added",
    "changed": "变更 changed",
    "struck_off": "退出 struck off",
    "unchanged": "无变化 unchanged",
    "rejected": "拒绝 rejected",
    "read": "已读取 read, not compared",
}


def progress_bar(label: str) -> Any:
    """A progress callback drawing a bar on stderr when it is a terminal (None otherwise: nothing drawn)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total:
            filled = int(30 * done / total)
            print(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", file=sys.stderr)
        else:
            print(f"\r{label} {done} rows", end="", file=sys.stderr)

    return show


def _confirm(assume_yes: bool, as_of: dt.date) -> Any:
    def ask(count: int) -> bool:
        if assume_yes:
            return True
        if not sys.stdin.isatty():
            print(
                f"{count} people would be struck off as of {as_of}; re-run with --yes to confirm. Nothing written.",
                file=sys.stderr,
            )
            return False
        answer = input(
            f"{count} people in force are missing from this full list and will be struck off as of "
            f"{as_of}. Continue? [y/N] "
        )
        return answer.strip().lower() in ("y", "yes")

    return ask


def _list_kind(settings: Settings, name: str) -> ListKind | ProgrammeList:
    """A bureau's kind of list as it is; any other name, a programme the latest policy version names
    (the one that defines current codes, as for the API's registrations), with the codes it declares."""
    for kind in LIST_KINDS:
        if name == kind:
            return kind  # the bureaus' lists keep their own codes and need no policy read
    latest = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir()).latest()
    return list_kind(name, latest.programmes, latest.id)


def written_list(rows: list[ListRow], report: ImportReport, *, compared: bool = True) -> list[tuple[Any, ...]]:
    """Every line of the file with what the import does to it (or why it is rejected), in line order,
    then the people a full list strikes off because they are missing from it (no line). Not
    ``compared`` with the registry (a full list refused for its rejected rows), a row read well is
    only said to be read.

    IDs are masked, as everywhere the gateway writes one for people to read: the clerk finds the row by
    its line in the file they imported, and the list can be passed around without the raw IDs."""
    accepted = {row.line: row for row in rows}
    changes = {change.line: change for change in report.changes if change.line}
    table: list[tuple[Any, ...]] = []
    for line, reason in report.rejected:
        row = accepted.get(line)
        if row is None:  # rejected while reading: the row's cells are not known good, so none is repeated
            table.append((line, OUTCOME_WORDS["rejected"], "", "", "", "", "", reason))
        else:  # rejected against the registry: the reason already starts with the masked ID
            table.append(_written_row(row, "rejected", reason.split(": ", 1)[-1]))
    rejected_lines = {line for line, _ in report.rejected}
    for line, row in accepted.items():
        if line in rejected_lines:
            continue
        change = changes.get(line)
        outcome = change.outcome if change else "unchanged" if compared else "read"
        table.append(_written_row(row, outcome, change.description if change else ""))
    table.sort(key=lambda written: written[0])
    for change in report.changes:
        if not change.line:
            table.append(("", OUTCOME_WORDS[change.outcome], change.person, "", "", "", "", change.description))
    return table


def _written_row(row: ListRow, outcome: str, details: str) -> tuple[Any, ...]:
    return (
        row.line,
        OUTCOME_WORDS[outcome],
        identity.mask(row.national_id),
        row.name,
        row.code,
        row.effective_from,
        row.struck_off_on,
        details,
    )


def _write_list(list_file: Path, table: list[tuple[Any, ...]], what: str) -> None:
    # A CSV with a BOM, so Excel on Chinese Windows reads it as UTF-8 rather than as GBK.
    write_table(list_file, WRITTEN_LIST_HEADER, table, sheet_name="import", bom=True)
    print(f"wrote every row of the list to {list_file}, {what}")


def _print_changes(report: ImportReport, *, dry_run: bool, verbose: bool, list_file: Path | None) -> None:
    shown = report.changes if verbose or not dry_run else report.changes[:DRY_RUN_SHOWN]
    for change in shown:
        where = f"line {change.line}" if change.line else "not on list"
        verb = VERBS[change.outcome][0 if dry_run else 1]
        print(f"{verb}: {where}: {change.person} {change.description}")
    if len(shown) < len(report.changes):
        where = f"every row is in {list_file}" if list_file else "--write-list FILE writes every row to a file"
        print(f"... and {len(report.changes) - len(shown)} more changes ({where}; --verbose prints them all)")


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    list_file = Path(args.write_list) if args.write_list else None
    if list_file is not None and list_file.suffix.lower() not in (".csv", ".xlsx"):
        print(f"medsettle import: --write-list {list_file}: give a .csv or .xlsx file name", file=sys.stderr)
        return 2
    if list_file is not None and list_file.resolve() == path.resolve():
        print("medsettle import: --write-list would overwrite the list being imported", file=sys.stderr)
        return 2
    try:
        kind = _list_kind(settings, args.kind)
    except UnknownListKind as error:
        print(f"medsettle import: {error}", file=sys.stderr)
        return 2
    except PolicyError as error:
        print(f"medsettle import: cannot read the policy that names the programmes: {error}", file=sys.stderr)
        return 2
    try:
        rows, rejected = read_list(path, kind, progress=progress_bar(f"reading {path.name}"))
    except (ListFormatError, OSError) as error:
        print(f"medsettle import: {path}: {error}", file=sys.stderr)
        return 2
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.full_list and rejected:
        # A rejected row's person would look missing from the list and be struck off by mistake.
        for row in rejected:
            print(f"rejected line {row.line}: {row.reason}")
        if list_file is not None:  # the clerk fixes the rows from this list; the others were not compared
            unread = ImportReport(rejected=[(row.line, row.reason) for row in rejected])
            _write_list(list_file, written_list(rows, unread, compared=False), "the rejected ones with their reasons")
        print(
            f"medsettle import: {path.name} has {len(rejected)} rejected row(s); a full list must be clean before "
            "anyone is struck off. Fix the rows, or import it without --full-list. Nothing written.",
            file=sys.stderr,
        )
        return 2
    programme = programme_of(kind)
    entries = [
        PersonEntry(
            row.line,
            row.national_id,
            row.name,
            ListEntry(
                programme=programme, code=row.code, effective_from=row.effective_from, struck_off_on=row.struck_off_on
            ),
        )
        for row in rows
    ]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    as_of = args.as_of or dt.date.today()

    would_adjust: list[str] = []

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        # The catalogue is read before the import's transaction opens (it reads in a snapshot of its own).
        preview = (
            _adjustments_preview(settings, await load_catalogue(connection), would_adjust) if args.dry_run else None
        )
        return await apply_entries(
            connection,
            entries,
            pepper=settings.id_pepper,
            actor=args.actor,
            source=f"{kind_name(kind)}:{path.name} sha256:{digest}",
            dry_run=args.dry_run,
            full_list=(programme, as_of) if args.full_list else None,
            confirm=_confirm(args.yes, as_of),
            rejected=[(row.line, row.reason) for row in rejected],
            preview=preview,
        )

    report = asyncio.run(with_connection(database_url(settings), work))
    for line, reason in sorted(report.rejected):
        print(f"rejected line {line}: {reason}")
    if args.dry_run or args.verbose:
        _print_changes(report, dry_run=args.dry_run, verbose=args.verbose, list_file=list_file)
    if list_file is not None:
        done = "what was done" if report.applied else "what the import would do"
        _write_list(list_file, written_list(rows, report), f"each with {done}")
    for line in would_adjust:
        print(line)
    if report.readjudications and not args.dry_run and report.applied:
        print(
            f"queued {len(report.readjudications)} person-years for re-adjudication: the gateways work them in the"
            " background (or run `medsettle adjustments run`)"
        )
    summary = report.summary()
    print(
        f"{path.name}: added {summary['added']}, changed {summary['changed']}, struck off {summary['struck_off']}, "
        f"unchanged {summary['unchanged']}, rejected {summary['rejected']}"
        + (
            " (dry run: nothing written)"
            if args.dry_run
            else ""
            if report.applied
            else " (not confirmed: nothing written)"
        )
    )
    if not args.dry_run and not report.applied:
        return 1
    return 1 if report.rejected else 0


def _adjustments_preview(
    settings: Settings, catalogue: Catalogue, lines: list[str]
) -> Callable[[Connection, ImportReport], Awaitable[None]]:
    """For a dry run: re-adjudicate, inside the import's own transaction (about to be rolled back), every
    person-year the import queues, and describe each adjustment it would book and the orders' sums."""
    book = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else policy_dir())

    async def preview(connection: Connection, report: ImportReport) -> None:
        net: dict[str, int] = {}
        settlements = 0
        planned = await readjudication.preview(
            connection, report.readjudications, policy_for=book.in_force, catalogue=catalogue
        )
        for masked, year, result in planned:
            if result.refused is not None:
                lines.append(f"would need review: {masked} {year}: settlement {result.refused[0]} is now refused")
                continue
            for correction in result.corrections:
                settlements += 1
                moved = ", ".join(
                    f"{fund} {'+' if value > 0 else '-'}{format_yuan(abs(value))}"
                    for fund, value in sorted(correction.change.funds.items())
                )
                lines.append(f"would adjust: {masked} {year} settlement {correction.settlement_id}: {moved}")
                for fund, value in correction.change.funds.items():
                    net[fund] = net.get(fund, 0) + value
        if report.readjudications:
            sums = ", ".join(
                f"{fund} {'+' if value > 0 else '-'}{format_yuan(abs(value))}"
                for fund, value in sorted(net.items())
                if value
            )
            lines.append(
                f"re-adjudication would adjust {settlements} settlements in {len(report.readjudications)} person-years"
                + (f": {sums}" if sums else "")
            )

    return preview


def cmd_clinics_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)

    async def work(connection: Connection) -> Any:
        await db.migrate(connection)
        return await import_clinics(connection, path, actor=args.actor)

    try:
        result = asyncio.run(with_connection(database_url(settings), work))
    except ValueError as error:
        print(f"medsettle clinics import: {error}", file=sys.stderr)
        return 2
    print(f"{path.name}: added {result['added']}, changed {result['changed']}, unchanged {result['unchanged']}")
    return 0


def cmd_registry_stats(settings: Settings, args: argparse.Namespace) -> int:
    on = args.date or dt.date.today()
    period_from = args.period_from or on.replace(day=1)
    period_to = args.period_to or on

    async def work(connection: Connection) -> RegistryStats:
        return await Reports.over_connection(connection).registry_stats(
            on=on, period_from=period_from, period_to=period_to
        )

    stats = asyncio.run(with_connection(database_url(settings), work))
    sys.stdout.write(stats_csv(stats) if args.format == "csv" else report_json(stats))
    return 0
