"""The database ceiling's pgbench scripts, generated from the gateway's own statements.

    .venv/bin/python benchmarks/pgbench_scripts.py write > settle.sql       # print a script
    .venv/bin/python benchmarks/pgbench_scripts.py read-write > read-write.sql
    pgbench -n -M prepared -c 16 -j 2 -T 15 -f settle.sql \\
        -D people=20000 -D terminals=116 -D records=500 -D year=2026 -D policy=default-2026 DBURL

The gateway settles with two round trips: ``READ_FOR_SETTLE`` (read-only: an earlier settlement of
the request, a spent nonce, the person, their memberships and accumulators) and, once the engine has
decided, ``WRITE_SETTLEMENTS`` (the accumulator row updated at the version it was read at, or created;
the settlement row inserted; one statement, so one durable commit in autocommit). Both come from
``adapters.settlement_sql``. The scripts here are those statements, text for text, with each array
parameter (``$n::type[]``, one element per settlement of a batch) replaced by a one-element array
(``ARRAY[...]::type[]``; the write's one ``settlement_write[]`` by ``ARRAY[ROW(...)]``), a batch of one,
as a lone settlement is:

* ``write_script()``: the write alone, one statement, one round trip, one durable commit. This is the
  database ceiling: the gateway cannot settle faster than PostgreSQL runs its one write.
* ``read_write_script()``: the read, then the write, two round trips, as the gateway sends them for
  each settlement (without the engine's time in between).

Which parameter is which is read from the statements themselves: each ``unnest($a::t[], ...) AS
x(name, ...)`` names its columns, and the write's ``unnest($1::settlement_write[])`` must name exactly
the fields of ``SettlementRow`` then ``AccumulatorWrite`` (then ``i``, the item number). A parameter this module
has no value for, or a statement whose columns no longer match the row shapes, raises
``ScriptMismatch`` (tests/unit/test_pgbench_scripts.py fails, and the ceilings run says why).

pgbench can only draw numbers, so each transaction draws a person, a terminal and a sampled record by
number, and the values it cannot draw are read inside the statement from the numbered tables of
``benchmarks/pgbench_setup.sql`` by a scalar subquery (``(SELECT person_key FROM bench_people WHERE
n = :person)``), and the accumulator version from the person's row (NULL when there is none, and the
statement creates it). The gateway binds those values instead; the subqueries are index lookups on
small tables, a few microseconds of the server's time per transaction, and no round trip.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.settlement_sql import (  # noqa: E402
    READ_FOR_SETTLE,
    SETTLEMENT_WRITE,
    SETTLEMENT_WRITE_FIELDS,
    WRITE_SETTLEMENTS,
    AccumulatorWrite,
    SettlementRow,
)

SETUP_SQL: Final = ROOT / "benchmarks" / "pgbench_setup.sql"

# Caps written with the accumulator rows: far above anything a run can reach, so no run trips them,
# while the CHECK constraints (used amount between 0 and its cap) are still evaluated on every write.
BENCH_CAP: Final = 1_000_000_000_000

# What pgbench draws per transaction. Variables given with -D: people, terminals and records (how many
# rows each bench_* table has), year and policy (a policy_versions id). A bill of 20 to 600 yuan, 5 % of it
# self-pay first, 90 % eligible; insurance pays 60 % of that, the veterans' subsidy 10 %, aid 5 %.
DRAWS: Final = r"""\set person random(1, :people)
\set terminal random(1, :terminals)
\set record random(1, :records)
\set request random(1, 1000000000000000)
\set total random(2000, 60000)
\set eligible :total * 9 / 10
\set self_pay_first :total / 20
\set insurance :eligible * 6 / 10
\set subsidy :eligible / 10
\set aid :eligible / 20
\set out_of_pocket :total - :insurance - :subsidy - :aid
\set unpaid :eligible - :insurance - :subsidy
"""

_PERSON: Final = "(SELECT person_key FROM bench_people WHERE n = :person)"


def _terminal(column: str) -> str:
    return f"(SELECT {column} FROM bench_terminals WHERE n = :terminal)"


def _record(column: str) -> str:
    return f"(SELECT {column} FROM bench_records WHERE n = :record)"


_REQUEST_ID: Final = "'pgbench-' || :request::text"

# The accumulator row after the settlement. The used amounts are this settlement's own figures rather
# than a running total: PostgreSQL stores what the engine computed, and the work is the same.
ACCUMULATOR_VALUES: Final[dict[str, str]] = {
    "year": ":year",
    "version": f"(SELECT version FROM accumulators WHERE person_key = {_PERSON} AND year = :year)",
    # The default chain's counters and caps, as the gateway writes them (a JSON object by name).
    "counters": (
        "jsonb_build_object('outpatient_deductible_used', 0, 'insurance_outpatient_paid', 0,"
        " 'insurance_inpatient_paid', (:insurance)::bigint, 'subsidy_paid', (:subsidy)::bigint,"
        " 'aid_paid', (:aid)::bigint, 'unpaid_eligible', (:unpaid)::bigint)::text"
    ),
    "caps": (
        f"jsonb_build_object('outpatient_deductible_used', {BENCH_CAP}, 'insurance_outpatient_paid', {BENCH_CAP},"
        f" 'insurance_inpatient_paid', {BENCH_CAP}, 'subsidy_paid', {BENCH_CAP}, 'aid_paid', {BENCH_CAP})::text"
    ),
    "claim": "NULL::text",  # no insurer's message to book: the local chain
}

# The settlement row: an inpatient bill paid by all three programmes, its record (the compressed items
# and result), request fingerprint and nonce sampled from the gateway's own settlements.
SETTLEMENT_VALUES: Final[dict[str, str]] = {
    "person_key": _PERSON,
    "settlement_id": "gen_random_uuid()",
    "terminal_id": _terminal("terminal_id"),
    "request_id": _REQUEST_ID,
    "clinic_id": _terminal("clinic_id"),
    "clinic_level": _terminal("level"),
    "visit_type": "'inpatient'",
    "service_date": "current_date",
    "booked_on": "current_date",
    "policy_id": ":policy",
    "total": ":total",
    "eligible": ":eligible",
    "self_pay_first": ":self_pay_first",
    "over_limit": "0",
    "insurance": ":insurance",
    "veteran_subsidy": ":subsidy",
    "hardship_aid": ":aid",
    "out_of_pocket": ":out_of_pocket",
    "insured": "true",
    "veteran_category": "'priority_care'",
    "hardship_tier": "'minimum_allowance'",
    "caps_reached": "0",
    "deductible_taken": "0",
    "unpaid_added": ":unpaid",
    "other_funds": "'{}'",
    "request_hash": _record("request_hash"),
    "nonce": _record("nonce"),
    "record": _record("record"),
    "created_at": "now()",
}

# The read's columns (READ_FOR_SETTLE's unnest), for the same person, terminal and request as the write.
READ_VALUES: Final[dict[str, str]] = {
    "terminal_id": _terminal("terminal_id"),
    "request_id": _REQUEST_ID,
    "person_key": _PERSON,
    "year": ":year",
    "digest": _record("nonce"),
}

ITEM_NUMBER: Final = "i"  # the ordinality of the write's unnest: the settlement's place in its batch

_UNNEST = re.compile(
    r"unnest\((?P<arguments>[^()]*)\)(?P<ordinality>\s+WITH\s+ORDINALITY)?\s+AS\s+\w+\((?P<names>[^()]*)\)",
    re.IGNORECASE,
)
PARAMETER: Final = re.compile(r"\$(\d+)::(\w+)\[\]")
_ANY_PARAMETER = re.compile(r"\$\d+")


class ScriptMismatch(Exception):
    """The gateway's statement and what this module knows how to fill no longer agree."""


def _write_values() -> list[str]:
    """The SQL of each attribute of a ``settlement_write``: SettlementRow's fields, then AccumulatorWrite's."""
    values = []
    for shape, shape_values in ((SettlementRow, SETTLEMENT_VALUES), (AccumulatorWrite, ACCUMULATOR_VALUES)):
        fields = [field.name for field in msgspec.structs.fields(shape)]
        if set(shape_values) != set(fields):
            missing, unknown = set(fields) - set(shape_values), set(shape_values) - set(fields)
            raise ScriptMismatch(
                f"{shape.__name__} and the pgbench values differ: no value for {sorted(missing)},"
                f" no field for {sorted(unknown)}"
            )
        values += [shape_values[name] for name in fields]
    return values


def parameter_values(statement: str, extra: dict[str, str] | None = None) -> dict[int, str]:
    """The SQL (over pgbench variables) for every parameter of ``statement``.

    The write's unnest takes one ``settlement_write[]`` and names exactly the fields of SettlementRow then
    AccumulatorWrite, then ``i``: it is filled with one ROW of their values. Any other unnest takes one
    array per column, filled from ``extra`` (the read's columns)."""
    values: dict[int, str] = {}
    for found in _UNNEST.finditer(statement):
        matched = [PARAMETER.fullmatch(argument.strip()) for argument in found["arguments"].split(",")]
        arguments = [argument for argument in matched if argument is not None]
        names = [name.strip() for name in found["names"].split(",")]
        if found["ordinality"]:
            names = names[:-1]
        if len(arguments) != len(matched):
            raise ScriptMismatch(f"an unnest this module cannot read: {found[0]!r}")
        if [argument[2] for argument in arguments] == [SETTLEMENT_WRITE]:
            if names != list(SETTLEMENT_WRITE_FIELDS):
                raise ScriptMismatch(f"a write whose columns match no row shape: {', '.join(names)}")
            values[int(arguments[0][1])] = f"ROW({', '.join(_write_values())})"
            continue
        if len(names) != len(arguments):
            raise ScriptMismatch(f"an unnest this module cannot read: {found[0]!r}")
        known = extra or {}
        for argument, name in zip(arguments, names, strict=True):
            if name not in known:
                raise ScriptMismatch(f"no pgbench value for column {name!r} of {found[0]!r}")
            number = int(argument[1])
            if number in values and values[number] != known[name]:
                raise ScriptMismatch(f"${number} fills columns with different values")
            values[number] = known[name]
    return values


def fill(statement: str, values: dict[int, str]) -> str:
    """``statement`` with each ``$n::type[]`` made a one-element ``ARRAY[value]::type[]``; none may be left."""

    def one_element(parameter: re.Match[str]) -> str:
        number = int(parameter[1])
        if number not in values:
            raise ScriptMismatch(f"no pgbench value for parameter ${number}")
        return f"ARRAY[{values[number]}]::{parameter[2]}[]"

    filled = PARAMETER.sub(one_element, statement)
    left = sorted(set(_ANY_PARAMETER.findall(filled)))
    if left:
        raise ScriptMismatch(f"parameters left unfilled: {', '.join(left)}")
    return filled.strip() + ";\n"


def write_statement() -> str:
    """WRITE_SETTLEMENTS for one settlement drawn by pgbench."""
    return fill(WRITE_SETTLEMENTS, parameter_values(WRITE_SETTLEMENTS))


def read_statement() -> str:
    """READ_FOR_SETTLE for the same settlement."""
    return fill(READ_FOR_SETTLE, parameter_values(READ_FOR_SETTLE, READ_VALUES))


_HEADER: Final = """-- Generated by benchmarks/pgbench_scripts.py from adapters/settlement_sql.py: {what}.
-- Needs the tables of benchmarks/pgbench_setup.sql, and -D people, terminals, records, year, policy.
"""


def write_script() -> str:
    """One settlement's write, as the gateway sends it: WRITE_SETTLEMENTS alone, one durable commit."""
    header = _HEADER.format(what="one settlement's write (WRITE_SETTLEMENTS), one round trip")
    return f"{header}\n{DRAWS}\n{write_statement()}"


def read_write_script() -> str:
    """One settlement's database work, as the gateway sends it: READ_FOR_SETTLE, then WRITE_SETTLEMENTS."""
    header = _HEADER.format(what="one settlement's read (READ_FOR_SETTLE), then its write, two round trips")
    return f"{header}\n{DRAWS}\n{read_statement()}\n{write_statement()}"


SCRIPTS: Final = {"write": write_script, "read-write": read_write_script}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SCRIPTS:
        print(f"usage: pgbench_scripts.py {{{'|'.join(SCRIPTS)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(SCRIPTS[argv[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
