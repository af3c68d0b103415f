"""benchmarks/versus.py reads each side's CPU per settlement from the ceilings report it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import versus

REPORT = """
CPU per operation, µs                  server  PostgreSQL  load generator  total
-------------------------------------  ------  ----------  --------------  -----
gateway, 16 terminals, per settlement     401         150              30    581
gateway, 64 terminals, per settlement   1,212         221              36  1,469
"""


def test_the_row_of_the_terminals_asked_for_is_read_thousands_separators_and_all() -> None:
    assert versus.cpu_per_settlement(REPORT, 64) == versus.Cpu(gateway=1212, postgres=221)
    assert versus.cpu_per_settlement(REPORT, 16) == versus.Cpu(gateway=401, postgres=150)
    assert versus.cpu_per_settlement(REPORT, 64).total == 1433  # type: ignore[union-attr]


def test_a_report_without_the_row_gives_nothing_rather_than_a_figure() -> None:
    assert versus.cpu_per_settlement(REPORT, 32) is None
    assert versus.cpu_per_settlement("gateway: 10 s at 64 terminals\nerrors 12", 64) is None


def test_both_sides_run_ceilings_from_their_own_checkout(tmp_path: Path) -> None:
    command = versus.ceilings_command(tmp_path, 40, 64)
    assert command[1] == str(tmp_path / "benchmarks" / "ceilings.py")
    assert command[2:] == ["--only", "gateway", "--connections", "64", "--duration", "40"]


def test_a_checkout_without_the_benchmark_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        versus.main([str(tmp_path), "--runs", "1"])
    assert "has no benchmarks/ceilings.py" in capsys.readouterr().err


def test_alone_the_pairs_alternate_which_checkout_runs_first() -> None:
    assert [versus.pair_order(run) for run in range(1, 6)] == [False, True, False, True, False]
