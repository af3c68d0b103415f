"""The database ceiling's pgbench scripts are the gateway's own settle statements, parameters filled in.

``benchmarks/pgbench_scripts.py`` generates them from ``adapters.settlement_sql`` at run time: the
write script must be ``WRITE_SETTLEMENTS`` text for text, with each ``$n::type[]`` parameter made a
one-element array of the same type and none left over, and the read-write script ``READ_FOR_SETTLE``
then the same write. A column the row shapes gain, or a parameter nothing fills, must stop the
generator with the reason rather than produce a script that benchmarks something else.
"""

from __future__ import annotations

import re

import msgspec
import pytest

from adapters.settlement_sql import READ_FOR_SETTLE, WRITE_SETTLEMENTS, AccumulatorWrite, SettlementRow
from benchmarks import pgbench_scripts
from benchmarks.pgbench_scripts import PARAMETER, ScriptMismatch

# What benchmarks/ceilings.py passes with pgbench -D.
COMMAND_LINE_VARIABLES = {"people", "terminals", "records", "year", "policy"}


def fields(shape: type[msgspec.Struct]) -> list[str]:
    return [field.name for field in msgspec.structs.fields(shape)]


def assert_is_statement_filled_in(statement: str, script: str, start: int = 0) -> int:
    """Every piece of ``statement`` between its parameters appears in ``script``, in order, from ``start``;
    returns where the statement ends in the script."""
    position = start
    for piece in PARAMETER.split(statement)[:: PARAMETER.groups + 1]:
        found = script.find(piece.strip(), position)
        assert found >= 0, f"the script lost this part of the statement: {piece.strip()[:120]!r}"
        position = found + len(piece.strip())
    return position


def array_types(text: str) -> list[str]:
    return re.findall(r"\]::(\w+)\[\]", text)


def test_the_write_script_is_write_settlements_with_every_parameter_a_one_element_array() -> None:
    script = pgbench_scripts.write_script()
    assert_is_statement_filled_in(WRITE_SETTLEMENTS, script)
    assert not re.search(r"\$\d", script), "a $n parameter was left in the script"
    # One ARRAY[...]::type[] per parameter, of the type the statement casts it to.
    assert array_types(script) == [sql_type for _, sql_type in PARAMETER.findall(WRITE_SETTLEMENTS)]
    assert script.count("ARRAY[") == len(PARAMETER.findall(WRITE_SETTLEMENTS))


def test_the_write_script_inserts_every_column_of_the_row_shapes() -> None:
    script = pgbench_scripts.write_script()
    assert f"INSERT INTO settlements ({', '.join(fields(SettlementRow))})" in script
    assert f"AS w({', '.join(fields(SettlementRow))}, {', '.join(fields(AccumulatorWrite))}, i)" in script
    # One ROW of the batch's one settlement, a value per field, in the type's order.
    values = [*pgbench_scripts.SETTLEMENT_VALUES.values(), *pgbench_scripts.ACCUMULATOR_VALUES.values()]
    assert f"ARRAY[ROW({', '.join(values)})]::settlement_write[]" in script


def test_the_script_is_one_statement_so_one_autocommitted_transaction() -> None:
    script = pgbench_scripts.write_script()
    sql = "\n".join(line for line in script.splitlines() if not line.startswith(("\\", "--")))
    assert sql.count(";") == 1
    assert not re.search(r"\b(BEGIN|COMMIT|START TRANSACTION)\b", sql, re.IGNORECASE)


def test_the_read_write_script_is_read_for_settle_then_the_same_write() -> None:
    script = pgbench_scripts.read_write_script()
    end_of_read = assert_is_statement_filled_in(READ_FOR_SETTLE, script)
    assert_is_statement_filled_in(WRITE_SETTLEMENTS, script, end_of_read)
    assert not re.search(r"\$\d", script)
    statements = [*PARAMETER.findall(READ_FOR_SETTLE), *PARAMETER.findall(WRITE_SETTLEMENTS)]
    assert array_types(script) == [sql_type for _, sql_type in statements]
    # The read asks about the very settlement the write then stores: same person, terminal, request, nonce.
    read, write = script.split("WITH input AS", 1)
    assert pgbench_scripts.READ_VALUES["person_key"] == pgbench_scripts.SETTLEMENT_VALUES["person_key"]
    for column in ("terminal_id", "request_id"):
        assert pgbench_scripts.READ_VALUES[column] == pgbench_scripts.SETTLEMENT_VALUES[column]
        assert pgbench_scripts.READ_VALUES[column] in read and pgbench_scripts.READ_VALUES[column] in write
    assert pgbench_scripts.READ_VALUES["digest"] == pgbench_scripts.SETTLEMENT_VALUES["nonce"]


@pytest.mark.parametrize("name", ["write", "read-write"])
def test_every_pgbench_variable_is_drawn_or_given_on_the_command_line(name: str) -> None:
    script = pgbench_scripts.SCRIPTS[name]()
    drawn = set(re.findall(r"^\\set (\w+) ", script, re.MULTILINE))
    used = set(re.findall(r"(?<![:\w]):([a-z_]+)", script))
    assert used, "the script uses no pgbench variable"
    assert used <= drawn | COMMAND_LINE_VARIABLES, f"never set: {sorted(used - drawn - COMMAND_LINE_VARIABLES)}"


def test_the_accumulator_version_is_read_from_the_person_s_row_and_the_caps_are_out_of_reach() -> None:
    version = pgbench_scripts.ACCUMULATOR_VALUES["version"]
    assert version.startswith("(SELECT version FROM accumulators WHERE person_key = ")
    assert "year = :year" in version
    # every cap far above any counter a run can reach, so no CHECK refuses a benchmark write
    caps = pgbench_scripts.ACCUMULATOR_VALUES["caps"]
    assert caps.count(str(pgbench_scripts.BENCH_CAP)) == 5
    assert pgbench_scripts.BENCH_CAP >= 10**12


def test_a_row_shape_field_without_a_pgbench_value_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(pgbench_scripts.SETTLEMENT_VALUES, "record")
    with pytest.raises(ScriptMismatch, match=r"SettlementRow.*no value for \['record'\]"):
        pgbench_scripts.write_script()


def test_a_write_whose_columns_match_no_row_shape_stops_the_generator() -> None:
    statement = WRITE_SETTLEMENTS.replace("caps, claim, i)", "caps, claim, brand_new, i)", 1)
    assert statement != WRITE_SETTLEMENTS
    with pytest.raises(ScriptMismatch, match="match no row shape"):
        pgbench_scripts.parameter_values(statement)


def test_a_parameter_outside_any_unnest_is_not_left_in_the_script() -> None:
    statement = WRITE_SETTLEMENTS.replace("v.unclaimed FROM v\n", "v.unclaimed FROM v WHERE $77::int[] IS NOT NULL\n")
    assert statement != WRITE_SETTLEMENTS
    with pytest.raises(ScriptMismatch, match=r"no pgbench value for parameter \$77"):
        pgbench_scripts.fill(statement, pgbench_scripts.parameter_values(statement))
    with pytest.raises(ScriptMismatch, match=r"left unfilled: \$3"):
        pgbench_scripts.fill("SELECT $3", {})


def test_a_read_column_without_a_value_stops_the_generator() -> None:
    statement = READ_FOR_SETTLE.replace("year, digest, i)", "year, digest, shift, i)").replace(
        "$5::bytea[])", "$5::bytea[], $6::text[])"
    )
    assert statement != READ_FOR_SETTLE
    with pytest.raises(ScriptMismatch, match="no pgbench value for column 'shift'"):
        pgbench_scripts.parameter_values(statement, pgbench_scripts.READ_VALUES)


def test_the_command_line_prints_a_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert pgbench_scripts.main(["write"]) == 0
    assert capsys.readouterr().out == pgbench_scripts.write_script()
    assert pgbench_scripts.main(["nonsense"]) == 2
