"""The arithmetic and the report of ``benchmarks/ceilings.py``, without running anything.

Storage per settlement is a difference of two snapshots of every table of the public schema
(bytes and row counters), divided by the settlements stored between them; the targets table
turns it, and the gateway's CPU figures, into verdicts; a measurement that cannot run on the
schema as it is (pgbench's scripts name tables that may be gone) is skipped with its reason,
and does not fail the run.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

import pytest

from adapters.settlement_sql import decode_record
from benchmarks import ceilings
from benchmarks.county import bill_stream, build_county


def table(size: int, inserted: int = 0, updated: int = 0, deleted: int = 0) -> dict[str, int]:
    return {"bytes": size, "inserted": inserted, "updated": updated, "deleted": deleted}


def test_storage_per_settlement_divides_every_table_s_growth_by_the_settlements_stored() -> None:
    before = {
        "settlements": table(8192, inserted=10),
        "lines": table(16384, inserted=50),
        "totals": table(8192, inserted=5, updated=7),
        "untouched": table(65536, inserted=3),
        "dropped": table(8192),
    }
    after = {
        "settlements": table(8192 + 100_000, inserted=110),
        "lines": table(16384 + 250_000, inserted=350),
        "totals": table(8192 + 8192, inserted=5, updated=107, deleted=0),
        "untouched": table(65536, inserted=3),
        "appeared": table(24576, inserted=100, deleted=100),
    }
    figures = ceilings.storage_per_settlement(before, after, settlements=100)

    assert figures["settlements"] == 100
    assert figures["bytes"] == 100_000 + 250_000 + 8192 + 24576 - 8192
    assert figures["bytes_per_settlement"] == pytest.approx(figures["bytes"] / 100)
    assert figures["inserted_per_settlement"] == pytest.approx((100 + 300 + 100) / 100)
    assert figures["updated_per_settlement"] == pytest.approx(1.0)
    assert figures["deleted_per_settlement"] == pytest.approx(1.0)
    assert figures["rows_per_settlement"] == pytest.approx(7.0)

    by_table = {row["table"]: row for row in figures["tables"]}
    assert set(by_table) == {"settlements", "lines", "totals", "appeared", "dropped"}  # "untouched" is left out
    assert by_table["lines"]["bytes_per_settlement"] == pytest.approx(2500.0)
    assert by_table["lines"]["inserted_per_settlement"] == pytest.approx(3.0)
    assert by_table["totals"]["updated_per_settlement"] == pytest.approx(1.0)
    assert by_table["dropped"]["bytes_per_settlement"] == pytest.approx(-81.92)
    # Largest first, so the table to slim is on top.
    assert [row["table"] for row in figures["tables"]][:2] == ["lines", "settlements"]


def test_storage_per_settlement_needs_settlements_to_divide_by() -> None:
    with pytest.raises(RuntimeError, match="no settlement"):
        ceilings.storage_per_settlement({}, {"settlements": table(8192, inserted=1)}, settlements=0)


def arguments(**overrides: Any) -> argparse.Namespace:
    return ceilings.parse_arguments(
        [f"--{name.replace('_', '-')}={value}" for name, value in overrides.items() if value is not None]
    )


def gateway_run(connections: int, p99_ms: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "connections": connections,
        "threads": 1,
        "settlements_per_second": 1000.0,
        "p50_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "exhausted": False,
        "errors": 0,
        "non_201": {},
        "socket_errors": {},
        "created": 10_000,
        "cpu_us_per_settlement": cpu,
    }


def results_with(only: str, **measurements: Any) -> dict[str, Any]:
    """Results as main() gathers them, for a run of ``--only ONLY``."""
    skipped = sorted(set(ceilings.MEASUREMENTS) - set(only.split(",")))
    return {"skipped": skipped, "skip_notes": {}, "failures": {}, **measurements}


def gateway_results(cpu_64: dict[str, float]) -> dict[str, Any]:
    return {
        "runs": {
            16: gateway_run(16, 10.0, {"gateway": 300.0, "postgres": 400.0, "wrk": 30.0}),
            64: gateway_run(64, 40.0, cpu_64),
        },
        "warmup": {},
        "violations": [],
        "created_not_stored": 0,
        "log_error_lines": 0,
    }


def storage_results(bytes_per_settlement: float) -> dict[str, Any]:
    return {
        "terminals": 64,
        "settlements": 20_000,
        "bytes_per_settlement": bytes_per_settlement,
        "rows_per_settlement": 9.0,
        "inserted_per_settlement": 8.0,
        "updated_per_settlement": 1.0,
        "deleted_per_settlement": 0.0,
        "tables": [
            {
                "table": "settlements",
                "bytes_per_settlement": bytes_per_settlement,
                "inserted_per_settlement": 8.0,
                "updated_per_settlement": 1.0,
                "deleted_per_settlement": 0.0,
            }
        ],
        "rounds": [],
        "errors": 0,
        "stats_settled": True,
        "log_error_lines": 0,
    }


def verdicts(results: dict[str, Any], args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    _, targets, _ = ceilings.build_report(results, args)
    return {row[0]: (row[1], row[3]) for row in targets}


BYTES = "bytes per settlement"
CPU = "total CPU per settlement at 64 terminals (gateway + PostgreSQL)"


@pytest.mark.parametrize(("size", "verdict"), [(2048.0, "met"), (2048.6, "NOT MET"), (612.3, "met")])
def test_the_bytes_per_settlement_target_is_at_most_2048(size: float, verdict: str) -> None:
    results = results_with("storage", storage=storage_results(size))
    assert verdicts(results, arguments(only="storage"))[BYTES][1] == verdict


@pytest.mark.parametrize(
    ("cpu", "value", "verdict"),
    [
        ({"gateway": 250.0, "postgres": 350.0, "wrk": 40.0}, "600 µs", "met"),  # the load generator does not count
        ({"gateway": 475.0, "postgres": 652.0, "wrk": 30.0}, "1,127 µs", "NOT MET"),
    ],
)
def test_the_cpu_target_adds_the_gateway_and_postgresql_at_64_terminals(
    cpu: dict[str, float], value: str, verdict: str
) -> None:
    results = results_with("gateway", gateway=gateway_results(cpu))
    assert verdicts(results, arguments(only="gateway"))[CPU] == (value, verdict)


def test_the_cpu_target_is_not_applicable_when_postgresql_s_processes_are_not_visible() -> None:
    results = results_with("gateway", gateway=gateway_results({"gateway": 250.0, "wrk": 40.0}))
    _, targets, all_met = ceilings.build_report(results, arguments(only="gateway"))
    row = next(row for row in targets if row[0] == CPU)
    assert row[3].startswith("n/a")
    assert all_met


def test_the_cpu_target_fails_when_the_gateway_measurement_failed() -> None:
    results = results_with("gateway")
    results["failures"]["gateway"] = "RuntimeError: boom"
    assert verdicts(results, arguments(only="gateway"))[CPU][1] == "NOT MET"


def test_the_existing_p99_targets_stay() -> None:
    results = results_with("gateway", gateway=gateway_results({"gateway": 250.0, "postgres": 350.0}))
    shown = verdicts(results, arguments(only="gateway"))
    assert shown["p99 at 16 terminals"] == ("10.0 ms", "met")
    assert shown["p99 at 64 terminals"] == ("40.0 ms", "met")


def test_a_skipped_storage_measurement_leaves_its_target_not_applicable() -> None:
    results = results_with("gateway", gateway=gateway_results({"gateway": 250.0, "postgres": 350.0}))
    assert verdicts(results, arguments(only="gateway"))[BYTES] == ("-", "n/a")


def test_storage_is_measured_unless_left_out() -> None:
    assert "storage" in ceilings.parse_arguments([]).only
    assert ceilings.parse_arguments([]).storage_settlements == 100_000
    assert ceilings.parse_arguments(["--only", "gateway,storage", "--storage-settlements", "20000"]).only == {
        "gateway",
        "storage",
    }


def test_a_measurement_that_does_not_fit_the_schema_is_skipped_with_its_reason_not_failed() -> None:
    results = results_with("database")

    def work() -> None:
        raise ceilings.Skipped('pgbench scripts do not match the schema: relation "idempotency_keys" does not exist')

    assert ceilings.phase(results, "database", work) is None
    assert results["failures"] == {}
    assert "database" in results["skipped"]
    assert "pgbench scripts do not match the schema" in results["skip_notes"]["database"]

    figures, targets, all_met = ceilings.build_report(results, arguments(only="database"))
    row = next(row for row in figures if row[0].startswith("DB ceiling"))
    assert row[1] == "skipped"
    assert "pgbench scripts do not match the schema" in row[2]
    assert next(row for row in targets if row[0].startswith("gateway / DB ceiling"))[3] == "n/a"
    assert all_met


def test_the_storage_rows_are_shown_and_the_json_carries_the_target_figures() -> None:
    results = results_with(
        "gateway,storage",
        gateway=gateway_results({"gateway": 250.0, "postgres": 300.0, "wrk": 40.0}),
        storage=storage_results(1500.0),
    )
    figures, _, _ = ceilings.build_report(results, arguments(only="gateway,storage"))
    shown = {row[0]: row[1] for row in figures}
    assert shown["storage: bytes on disk per settlement"] == "1,500 B"
    assert shown["storage: rows written per settlement"] == "9.00"
    assert ceilings.storage_rows(results)[0][:2] == ["settlements", "1,500.0"]
    assert ceilings.target_figures(results) == {
        "bytes_per_settlement": 1500.0,
        "rows_per_settlement": 9.0,
        "cpu_us_per_settlement_at_64": 550.0,
        "p99_ms": {16: 10.0, 64: 40.0},
    }


def test_the_json_document_holds_the_storage_figures_and_every_target() -> None:
    results = results_with(
        "gateway,storage",
        gateway=gateway_results({"gateway": 475.0, "postgres": 652.0, "wrk": 30.0}),
        storage=storage_results(2500.0),
    )
    document = json.loads(json.dumps(ceilings.json_document(results, arguments(only="gateway,storage")), default=str))
    assert document["storage"]["bytes_per_settlement"] == 2500.0
    assert document["storage"]["tables"][0]["table"] == "settlements"
    assert document["target_figures"]["bytes_per_settlement"] == 2500.0
    assert document["target_figures"]["cpu_us_per_settlement_at_64"] == 1127.0
    targets = {target["target"]: target for target in document["targets"]}
    assert targets[BYTES] == {"target": BYTES, "value": "2,500 B", "wanted": "<= 2048 B", "verdict": "NOT MET"}
    assert targets[CPU]["verdict"] == "NOT MET"
    assert document["all_targets_met"] is False


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (
            'pgbench: error: client 0 script 0 aborted in command 2 query 0: ERROR:  relation "idempotency_keys"'
            " does not exist\nLINE 1: INSERT INTO idempotency_keys (x) VALUES (1)",
            'relation "idempotency_keys" does not exist',
        ),
        (
            'pgbench: error: client 0 script 0 aborted in command 0 query 0: ERROR:  column "request" of relation'
            ' "settlements" does not exist',
            'column "request" of relation "settlements" does not exist',
        ),
        ("pgbench: error: client 3 aborted in command 5 query 0: ERROR:  deadlock detected", None),
        ('ERROR:  function "bench_settle" does not exist', None),
    ],
)
def test_a_pgbench_run_that_names_a_missing_table_or_column_is_told_apart(output: str, reason: str | None) -> None:
    assert ceilings.pgbench_schema_mismatch(output) == reason


def pgbench_run(clients: int, tps: float, postgres_us: float) -> dict[str, Any]:
    return {
        "clients": clients,
        "threads": 2,
        "tps": tps,
        "latency_ms": clients / tps * 1000,
        "transactions": tps * 10,
        "settlements_written": tps * 10,
        "cpu_us_per_transaction": {"postgres": postgres_us, "pgbench": 40.0},
    }


def database_results(*, read_write: bool = True, from_gateway: bool = True) -> dict[str, Any]:
    runs = [pgbench_run(8, 1400.0, 800.0), pgbench_run(16, 2200.0, 600.0)]
    return {
        "prepared": {"records_from_gateway": from_gateway, "median_record_bytes": 938, "records": 500},
        "runs": runs,
        "best": runs[1],
        "read_write": pgbench_run(16, 1700.0, 820.0) if read_write else None,
    }


def test_the_database_ceiling_is_the_write_alone_and_the_read_then_write_is_shown_beside_it() -> None:
    results = results_with(
        "gateway,database",
        gateway=gateway_results({"gateway": 250.0, "postgres": 350.0}),
        database=database_results(),
    )
    figures, targets, _ = ceilings.build_report(results, arguments(only="gateway,database"))
    shown = {row[0]: row for row in figures}
    write = shown["DB ceiling: pgbench settlement write"]
    assert write[1] == "2,200 TPS"
    assert "WRITE_SETTLEMENTS" in write[2] and "8: 1,400, 16: 2,200" in write[2]
    assert "the gateway's own records (median 938 B)" in write[2]
    read_write = shown["  read, then write (2 round trips)"]
    assert read_write[1] == "1,700 TPS"
    assert "READ_FOR_SETTLE, then WRITE_SETTLEMENTS" in read_write[2]
    # The target divides by the write alone: 1,000 settlements a second over 2,200.
    ratio = next(row for row in targets if row[0].startswith("gateway / DB ceiling"))
    assert ratio[1] == "0.45"
    cpu = {row[0]: row[2] for row in ceilings.cpu_rows(results)}
    assert cpu["pgbench write, 16 clients, per transaction"] == "600"
    assert cpu["pgbench read + write, 16 clients"] == "820"


def test_without_the_read_run_only_the_write_ceiling_is_shown_and_stand_ins_are_named() -> None:
    results = results_with("database", database=database_results(read_write=False, from_gateway=False))
    figures, _, _ = ceilings.build_report(results, arguments(only="database"))
    labels = [row[0] for row in figures]
    assert "  read, then write (2 round trips)" not in labels
    assert "stand-in records" in next(row[2] for row in figures if row[0].startswith("DB ceiling"))
    assert ceilings.parse_arguments(["--no-read"]).no_read
    assert not ceilings.parse_arguments([]).no_read


def test_stand_in_records_are_the_county_s_bills_settled_and_encoded_as_the_gateway_stores_them() -> None:
    county = build_county(2, villages=3, townships=1, counties=1, people=20)
    stream = bill_stream(county, random.Random(5))
    bodies = [next(stream)[1] for _ in range(10)]
    records = ceilings.stand_in_records(county, bodies)
    assert records
    for (record, request_hash, nonce), body in zip(records, bodies, strict=False):
        assert len(request_hash) == len(nonce) == 16
        stored = decode_record(record)
        assert stored.result.total == sum(item["amount"] for item in body["items"])
        assert "*" in stored.person and body["person_id"] not in stored.person  # masked, as stored


def metered(monkeypatch: pytest.MonkeyPatch, *snapshots: dict[int, float]) -> ceilings.CpuMeter:
    """A CPU meter watching one tree (root pid 1) whose successive readings are ``snapshots``."""
    meter = ceilings.CpuMeter()
    meter.roots = {"postgres": 1}
    readings = iter(snapshots)
    monkeypatch.setattr(meter, "_times", lambda pid: next(readings))
    monkeypatch.setattr(ceilings.time, "sleep", lambda seconds: None)
    return meter


def test_a_process_that_exits_during_a_measurement_counts_only_its_time_within_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Backend 2 had used 5 s when the measurement started, 1 s more before it exited; the postmaster (1)
    # reaped it, so its whole 6 s now sit in the postmaster's children times.
    meter = metered(monkeypatch, {1: 10.0, 2: 5.0}, {1: 10.0, 2: 5.0}, {1: 16.0}, {1: 16.0})
    meter.start()
    assert meter.stop("pgbench")["postgres"] == pytest.approx(1.0)


def test_backends_exiting_as_the_measurement_ends_are_counted_once_they_are_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The load generator disconnects as it ends: its backends (3, 4) are still there, then gone and
    # reaped into the postmaster's children times. A reading taken in between would lose them.
    meter = metered(
        monkeypatch,
        {1: 10.0},
        {1: 10.0},
        {1: 10.0, 3: 2.0, 4: 3.0},
        {1: 10.0},  # read while they were exiting: neither their own figures nor the postmaster's have them
        {1: 15.0},
        {1: 15.0},
    )
    meter.start()
    assert meter.stop("pgbench")["postgres"] == pytest.approx(5.0)
