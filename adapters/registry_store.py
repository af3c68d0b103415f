"""Applying registry changes (bureau lists and API updates) to PostgreSQL, all or nothing.

One transaction per list: create the people not yet known, lock every affected
person row (in key order, so two imports cannot deadlock), read their
memberships, plan each line with ``settlement.registry.plan_entry``, and write
the result in a few set-based statements with one audit row per change. A dry
run plans the same way and rolls back.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from adapters import identity
from adapters.readjudication import RegistryCause, enqueue_registry
from settlement.registry import (
    Close,
    ListEntry,
    Open,
    Plan,
    StoredMembership,
    plan_entry,
    plan_missing_from_full_list,
)


@dataclass(frozen=True, slots=True)
class PersonEntry:
    """One line of a list: who, and the membership state the line declares."""

    line: int
    national_id: str
    name: str
    entry: ListEntry


@dataclass(frozen=True, slots=True)
class Change:
    line: int  # 0 for people struck off because they are missing from a full list
    person: str  # masked ID
    outcome: str
    description: str


@dataclass
class ImportReport:
    added: int = 0
    changed: int = 0
    struck_off: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    people_created: int = 0
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    # Person-years queued for re-adjudication because a change reaches back before their settlements:
    # (work row id, person key, year).
    readjudications: list[tuple[int, bytes, int]] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def summary(self) -> dict[str, int]:
        return {
            "added": self.added,
            "changed": self.changed,
            "struck_off": self.struck_off,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
            "readjudications": len(self.readjudications),
        }


class _Rollback(Exception):
    pass


_NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('memberships', 'membership_id')) FROM generate_series(1, $1)"


async def apply_entries(
    connection: asyncpg.Connection,
    entries: Sequence[PersonEntry],
    *,
    pepper: bytes,
    actor: str,
    source: str,
    request_id: str = "",
    dry_run: bool = False,
    full_list: tuple[str, dt.date] | None = None,
    confirm: Callable[[int], bool] | None = None,
    rejected: Sequence[tuple[int, str]] = (),
    all_or_nothing: bool = False,
    preview: Callable[[asyncpg.Connection, ImportReport], Awaitable[None]] | None = None,
) -> ImportReport:
    """Apply list lines. ``full_list=(programme, as_of)`` also strikes off, as of that date, everyone
    in force in the programme who is not on the list, after ``confirm(count)`` says yes.
    ``all_or_nothing`` writes nothing if any line is rejected (the API's behaviour).

    A change that reaches back before a person's settlements queues their person-years for
    re-adjudication (adapters/readjudication.py) in the same transaction. ``preview(connection, report)``
    runs inside it once everything is written and before a dry run rolls back, so it sees the registry
    as the import leaves it (the dry run's list of the adjustments the import would cause)."""
    report = ImportReport(rejected=list(rejected))
    keyed = [(identity.person_key(item.national_id, pepper), identity.mask(item.national_id), item) for item in entries]
    try:
        async with connection.transaction():
            new_people = await _ensure_people(connection, keyed)
            report.people_created = len(new_people)
            keys = sorted({key for key, _, _ in keyed})
            await connection.execute(
                "SELECT 1 FROM people WHERE person_key = ANY($1::bytea[]) ORDER BY person_key FOR UPDATE", keys
            )
            programmes = sorted(
                {item.entry.programme for _, _, item in keyed} | ({full_list[0]} if full_list else set())
            )
            stored = await _memberships(connection, keys, programmes)

            state = _State(stored)
            for key, masked, item in keyed:
                plan = plan_entry(state.of(key), item.entry)
                state.record(key, masked, item.line, item.entry, plan, report)

            if full_list is not None:
                programme, as_of = full_list
                listed = {key for key, _, _ in keyed}
                missing = await connection.fetch(
                    """SELECT m.person_key, p.masked_id, m.membership_id, m.code, m.effective_from
                       FROM memberships m JOIN people p USING (person_key)
                       WHERE m.programme = $1 AND m.struck_off_on IS NULL AND NOT (m.person_key = ANY($2::bytea[]))
                       ORDER BY m.person_key FOR UPDATE OF p""",
                    programme,
                    list(listed),
                )
                for row in missing:
                    current = StoredMembership(
                        membership_id=row["membership_id"],
                        programme=programme,
                        code=row["code"],
                        effective_from=row["effective_from"],
                    )
                    state.remember(bytes(row["person_key"]), current)
                    plan = plan_missing_from_full_list(current, as_of)
                    entry = ListEntry(programme=programme, code=row["code"], effective_from=row["effective_from"])
                    state.record(bytes(row["person_key"]), row["masked_id"], 0, entry, plan, report)
                if report.struck_off and confirm is not None and not dry_run and not confirm(report.struck_off):
                    raise _Rollback

            if all_or_nothing and report.rejected:
                raise _Rollback
            await state.write(connection, source=source)
            report.readjudications = await enqueue_registry(connection, state.causes(), str(uuid.uuid4()))
            await _audit(connection, report, actor=actor, source=source, request_id=request_id)
            if preview is not None:
                await preview(connection, report)
            if dry_run:
                raise _Rollback
            report.applied = True
    except _Rollback:
        pass
    return report


async def _ensure_people(connection: asyncpg.Connection, keyed: list[tuple[bytes, str, PersonEntry]]) -> set[bytes]:
    unique: dict[bytes, tuple[str, str, str]] = {}
    for key, masked, item in keyed:
        # PostgreSQL text cannot hold NUL; a bureau export with one must not stop the import.
        unique.setdefault(key, (masked, item.name.replace("\x00", ""), item.national_id[:6]))
    ordered = sorted(unique)
    rows = await connection.fetch(
        """INSERT INTO people (person_key, masked_id, name, region_code)
           SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[])
           ON CONFLICT (person_key) DO NOTHING RETURNING person_key""",
        ordered,
        [unique[key][0] for key in ordered],
        [unique[key][1] for key in ordered],
        [unique[key][2] for key in ordered],
    )
    return {bytes(row["person_key"]) for row in rows}


async def _memberships(
    connection: asyncpg.Connection, keys: list[bytes], programmes: list[str]
) -> dict[bytes, list[StoredMembership]]:
    rows = await connection.fetch(
        """SELECT person_key, membership_id, programme, code, effective_from, struck_off_on FROM memberships
           WHERE person_key = ANY($1::bytea[]) AND programme = ANY($2::text[])""",
        keys,
        programmes,
    )
    found: dict[bytes, list[StoredMembership]] = {}
    for row in rows:
        found.setdefault(bytes(row["person_key"]), []).append(
            StoredMembership(
                membership_id=row["membership_id"],
                programme=row["programme"],
                code=row["code"],
                effective_from=row["effective_from"],
                struck_off_on=row["struck_off_on"],
            )
        )
    return found


class _State:
    """Memberships as they will be after the lines planned so far, so later lines see earlier ones.

    Rows added in this import get provisional negative ids; at write time they are
    inserted with their final end date, after the updates to existing rows, so the
    one-open-membership index holds at every step.
    """

    def __init__(self, stored: dict[bytes, list[StoredMembership]]) -> None:
        self.memberships = stored
        self.closes: dict[int, tuple[bytes, dt.date]] = {}
        self.opens: dict[int, tuple[bytes, StoredMembership]] = {}
        self._next_provisional = -1
        # Per person changed: the earliest day a change takes effect, and the changes in words.
        self._changed: dict[bytes, tuple[dt.date, list[str]]] = {}

    def causes(self) -> list[RegistryCause]:
        """Each changed person's earliest changed day and changes: what re-adjudication is queued for."""
        return [
            RegistryCause(key, since, "; ".join(described)) for key, (since, described) in sorted(self._changed.items())
        ]

    def of(self, key: bytes) -> list[StoredMembership]:
        return self.memberships.get(key, [])

    def remember(self, key: bytes, membership: StoredMembership) -> None:
        self.memberships.setdefault(key, []).append(membership)

    def record(self, key: bytes, masked: str, line: int, entry: ListEntry, plan: Plan, report: ImportReport) -> None:
        if plan.outcome == "rejected":
            report.rejected.append((line, f"{masked}: {plan.reason}"))
            return
        report.count(plan.outcome)
        if plan.outcome == "unchanged":
            return
        days = [self._apply(key, operation) for operation in plan.operations]
        description = _describe(entry, plan)
        report.changes.append(Change(line, masked, plan.outcome, description))
        if not days:
            return
        since = min(days)
        earliest, described = self._changed.get(key, (since, []))
        self._changed[key] = (min(earliest, since), [*described, f"{masked} {description}"])

    def _apply(self, key: bytes, operation: Close | Open) -> dt.date:
        """Plan one operation; returns the first day it changes what is in force."""
        memberships = self.memberships.setdefault(key, [])
        if isinstance(operation, Close):
            since = operation.struck_off_on
            for index, membership in enumerate(memberships):
                if membership.membership_id == operation.membership_id:
                    if membership.struck_off_on is not None:  # an end moved later changes from the old end
                        since = min(since, membership.struck_off_on)
                    closed = StoredMembership(
                        membership_id=membership.membership_id,
                        programme=membership.programme,
                        code=membership.code,
                        effective_from=membership.effective_from,
                        struck_off_on=operation.struck_off_on,
                    )
                    memberships[index] = closed
                    if closed.membership_id < 0:
                        self.opens[closed.membership_id] = (key, closed)
                    else:
                        self.closes[closed.membership_id] = (key, operation.struck_off_on)
            return since
        opened = StoredMembership(
            membership_id=self._next_provisional,
            programme=operation.programme,
            code=operation.code,
            effective_from=operation.effective_from,
            struck_off_on=operation.struck_off_on,
        )
        self._next_provisional -= 1
        memberships.append(opened)
        self.opens[opened.membership_id] = (key, opened)
        return opened.effective_from

    async def write(self, connection: asyncpg.Connection, *, source: str) -> None:
        if self.closes:
            ids = sorted(self.closes)
            await connection.execute(
                """UPDATE memberships m SET struck_off_on = u.struck_off_on, updated_at = now()
                   FROM unnest($1::bytea[], $2::bigint[], $3::date[]) AS u(person_key, membership_id, struck_off_on)
                   WHERE m.person_key = u.person_key AND m.membership_id = u.membership_id""",
                [self.closes[i][0] for i in ids],
                ids,
                [self.closes[i][1] for i in ids],
            )
        if self.opens:
            opened = list(self.opens.values())
            await connection.execute(
                """INSERT INTO memberships (person_key, programme, code, effective_from, struck_off_on, source)
                   SELECT *, $6 FROM unnest($1::bytea[], $2::text[], $3::text[], $4::date[], $5::date[])""",
                [key for key, _ in opened],
                [m.programme for _, m in opened],
                [m.code for _, m in opened],
                [m.effective_from for _, m in opened],
                [m.struck_off_on for _, m in opened],
                source,
            )


def _describe(entry: ListEntry, plan: Plan) -> str:
    if plan.outcome == "changed":
        return f"{entry.programme}: {plan.previous_code} -> {entry.code} from {entry.effective_from}"
    if plan.outcome == "struck_off":
        end = next(op.struck_off_on for op in plan.operations if isinstance(op, Close))
        return f"{entry.programme}: {entry.code} struck off on {end}"
    until = f" until {entry.struck_off_on}" if entry.struck_off_on else ""
    return f"{entry.programme}: {entry.code} from {entry.effective_from}{until}"


async def _audit(
    connection: asyncpg.Connection, report: ImportReport, *, actor: str, source: str, request_id: str
) -> None:
    rows = [
        (
            actor,
            f"membership.{change.outcome}",
            change.person,
            request_id,
            source,
            json.dumps({"line": change.line, "change": change.description}),
        )
        for change in report.changes
    ]
    rows.append(
        (
            actor,
            "registry.import",
            "",
            request_id,
            source,
            json.dumps({**report.summary(), "people_created": report.people_created}),
        )
    )
    await connection.copy_records_to_table(
        "audit_log", records=rows, columns=["actor", "action", "subject", "request_id", "source", "details"]
    )
