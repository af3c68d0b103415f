"""The medsettle command line against the test database, run as a user would run it."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import asyncpg
import pytest

from tests.integration.conftest import COUNTY, KEY_ENCRYPTION_KEY, PEPPER, _admin, _with_database, bill, register
from tests.integration.processes import free_port, medsettle, start_gateway, wait_ready

pytestmark = pytest.mark.integration


async def test_migrate_is_idempotent(database_url, pool):
    result = medsettle(database_url, "migrate")
    assert result.returncode == 0, result.stderr
    assert "none, schema is current" in result.stdout


async def test_check_passes_then_names_a_tampered_settlement(client, pool, database_url):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    response = await client.post("/v1/settlements", json=bill(person, ("A", 300_000)), headers=COUNTY)
    settlement = await response.json()
    result = medsettle(database_url, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all invariants hold" in result.stdout

    # Move one fen from the aid fund to the patient: the settlement still conserves money, but the aid
    # accumulator no longer equals the aid fund's ledger. Settlements are append-only, so this plays an
    # owner switching the guard trigger off. Put everything back afterwards.
    move = (
        "UPDATE settlements SET hardship_aid = hardship_aid - $2, out_of_pocket = out_of_pocket + $2"
        " WHERE settlement_id = $1::uuid"
    )
    async with pool.acquire() as connection:
        await connection.execute("ALTER TABLE settlements DISABLE TRIGGER settlements_append_only")
        await connection.execute(move, settlement["settlement_id"], 1)
        try:
            result = medsettle(database_url, "check", "--json")
        finally:
            await connection.execute(move, settlement["settlement_id"], -1)
            await connection.execute("ALTER TABLE settlements ENABLE TRIGGER settlements_append_only")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the guard is back on
            await connection.execute(move, settlement["settlement_id"], 0)
    assert result.returncode == 1
    rules = {violation["rule"] for violation in json.loads(result.stdout)}
    assert "accumulators_equal_ledger" in rules
    year = settlement["service_date"][:4]
    assert any(
        v["rule"] == "accumulators_equal_ledger" and v["detail"].endswith(f" {year}") for v in json.loads(result.stdout)
    )


async def test_check_names_acknowledged_ids_the_database_does_not_hold(client, database_url, tmp_path):
    person = await register(client, ("insurance", "resident"))
    settled = await (await client.post("/v1/settlements", json=bill(person, ("A", 5_000)), headers=COUNTY)).json()
    reversal = await (
        await client.post(
            f"/v1/settlements/{settled['settlement_id']}/reversal",
            json={"request_id": f"rev-{settled['request_id']}", "reason": ""},
            headers=COUNTY,
        )
    ).json()
    held = [settled["settlement_id"], reversal["reversal_id"]]
    lines = tmp_path / "acknowledged.txt"
    lines.write_text("# what the terminal printed\n" + "\n".join(held) + "\n\n", encoding="utf-8")
    result = medsettle(database_url, "check", "--acknowledged", str(lines))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 2 acknowledged ids are stored" in result.stdout

    never_stored = "7d1f4a52-0c3b-4e8e-9a51-3f2d6c0b9e17"  # acknowledged, then lost: what the check exists for
    listed = tmp_path / "acknowledged.json"
    listed.write_text(json.dumps([*held, never_stored]), encoding="utf-8")
    result = medsettle(database_url, "check", "--acknowledged", str(listed), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout) == [{"rule": "acknowledged_but_missing", "detail": never_stored}]

    listed.write_text("not-an-id\n", encoding="utf-8")
    result = medsettle(database_url, "check", "--acknowledged", str(listed))
    assert result.returncode == 2
    assert "not a settlement or reversal id: 'not-an-id'" in result.stderr


async def test_production_refuses_to_start_without_pepper(database_url):
    environment = {**os.environ, "DATABASE_URL": database_url, "MEDSETTLE_ENV": "production"}
    environment.pop("MEDSETTLE_ID_PEPPER", None)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "MEDSETTLE_ID_PEPPER is not set" in result.stderr


# ---------------------------------------------------------------- the database out of reach

PASSWORD = "hunter2-not-for-logs"
NEEDS_THE_DATABASE = [
    ["migrate"],
    ["demo"],
    ["check"],
    ["serve"],
    ["terminals", "list"],
    ["terminals", "add", "--clinic", "C001"],
    ["terminals", "revoke", "term-C001"],
    ["audit", "verify"],
    ["registry", "stats"],
    ["report", "daily"],
    ["report", "stats"],
    ["catalogue", "versions"],
    ["catalogue", "show", "110200001"],
    ["dashboard-link", "--key-id", "k_finance", "--secret", "sk_finance"],  # the key is checked in the database
]


def unreachable_url(port: int) -> str:
    return f"postgresql://medsettle:{PASSWORD}@127.0.0.1:{port}/medsettle"


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], port: int) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "DATABASE_URL" in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", NEEDS_THE_DATABASE, ids=" ".join)
def test_a_refused_database_connection_is_one_clear_line(command):
    port = free_port()  # bound and closed again: nothing listens there
    result = medsettle(unreachable_url(port), *command, MEDSETTLE_READER_PORT="0")
    line = assert_one_line_refusal(result, port)
    assert "connection refused" in line
    assert "is the PostgreSQL server running" in line


def test_a_malformed_database_url_is_one_clear_line():
    result = medsettle(f"postgresql://medsettle:{PASSWORD}@127.0.0.1:notaport/medsettle", "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert PASSWORD not in result.stderr
    assert result.stderr.startswith("medsettle check: cannot connect to the database at the address in DATABASE_URL")


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port where connections are accepted by the kernel and then never answered, as behind a dead proxy."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_database_that_never_answers_is_given_up_on_after_the_connect_timeout():
    # Both commands wait out the same 5 s at once, rather than one after the other.
    commands = (["migrate"], ["serve"])
    with silent_server() as port, ThreadPoolExecutor(len(commands)) as threads:
        results = list(
            threads.map(lambda command: medsettle(unreachable_url(port), *command, MEDSETTLE_READER_PORT="0"), commands)
        )
    for command, result in zip(commands, results, strict=True):
        line = assert_one_line_refusal(result, port)
        assert "no answer within 5 s" in line, command


# ---------------------------------------------------------------- medsettle client


def test_client_names_bad_json_and_missing_files(tmp_path, database_url):
    closed = f"http://127.0.0.1:{free_port()}"
    signed = ["--key-id", "k_demo", "--secret", "sk_demo", "--url", closed]
    result = medsettle(database_url, "client", "POST", "/v1/settlements", "--data", '{"request_id": ', *signed)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("medsettle client: --data is not valid JSON:"), result.stderr

    bad = tmp_path / "bill.json"
    bad.write_text('{"items": [1, 2,]}', encoding="utf-8")
    result = medsettle(database_url, "client", "POST", "/v1/settlements", "--data", f"@{bad}", *signed)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"medsettle client: {bad} is not valid JSON: "), result.stderr
    assert "line 1 column 17" in result.stderr

    missing = tmp_path / "no-such-bill.json"
    result = medsettle(database_url, "client", "POST", "/v1/settlements", "--data", f"@{missing}", *signed)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"medsettle client: cannot read {missing}: "), result.stderr


def test_client_names_a_gateway_it_cannot_reach(database_url):
    port = free_port()
    result = medsettle(
        database_url,
        "client",
        "GET",
        "/v1/clinics",
        "--key-id",
        "k",
        "--secret",
        "s",
        "--url",
        f"http://127.0.0.1:{port}",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"medsettle client: cannot reach the gateway at http://127.0.0.1:{port}"), (
        result.stderr
    )


def _banner_command(output: str) -> str:
    """The ready-to-paste `medsettle client` command in the start-up banner, continuation lines joined."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if "medsettle client " in line)
    command = lines[start].strip()
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + " " + lines[start].strip()
    return command


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A database of the test's own: ``serve --demo`` seeds the demo county there with its item catalogue,
    which the shared test database, settling on terminals' categories, must not get."""
    name = f"medsettle_demo_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    yield _with_database(database_url, name)
    await _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_the_banners_example_works_pasted_into_another_shell(empty_database, tmp_path):
    port = free_port()
    assert port != 8080
    process = start_gateway(empty_database, port, tmp_path / "data", stdout=subprocess.PIPE, extra_args=["--demo"])
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{port}", process)
        assert process.stdout is not None
        # The banner is printed and flushed before the listener opens, so it is all in the pipe by now.
        os.set_blocking(process.stdout.fileno(), False)
        output = os.read(process.stdout.fileno(), 1 << 16).decode()
        command = _banner_command(output)
        # Another shell: none of the gateway's settings, its own data folder (so nothing lands in the work tree).
        other_shell = {key: value for key, value in os.environ.items() if not key.startswith("MEDSETTLE_")}
        other_shell.pop("DATABASE_URL", None)
        other_shell["MEDSETTLE_DATA_DIR"] = str(tmp_path / "other-shell")
        pasted = subprocess.run(
            ["bash", "-c", command], env=other_shell, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert pasted.returncode == 0, command + "\n" + pasted.stderr
    assert re.match(r"HTTP 201", pasted.stderr), pasted.stderr
    assert json.loads(pasted.stdout)["request_id"] == "demo-0001"
    # The demo county came with its item catalogue.
    result = medsettle(empty_database, "catalogue", "versions", "--format", "json")
    [version] = json.loads(result.stdout)
    assert (version["effective_from"], version["source"], version["actor"]) == (
        "2026-01-01",
        "catalogue-2026.csv",
        "demo",
    )


# ---------------------------------------------------------------- --version and terminals list


def test_version_is_the_installed_packages(database_url):
    result = medsettle(database_url, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"medsettle {importlib.metadata.version('medsettle')}"


def _printed_secret(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("secret: "))


def _printed_key_id(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("key_id: "))


async def test_terminals_list_shows_each_terminal_and_its_keys_without_secrets(pool, database_url):
    added = medsettle(database_url, "terminals", "add", "--clinic", "T001", "--role", "finance", "--id", "fin-T001-x")
    assert added.returncode == 0, added.stderr
    rotated = medsettle(database_url, "terminals", "rotate", "fin-T001-x")
    assert rotated.returncode == 0, rotated.stderr
    first, second = _printed_key_id(added.stdout), _printed_key_id(rotated.stdout)
    secrets = [_printed_secret(added.stdout), _printed_secret(rotated.stdout)]
    assert medsettle(database_url, "terminals", "retire-key", first).returncode == 0

    listed = medsettle(database_url, "terminals", "list", "--clinic", "T001", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    terminals = {terminal["terminal_id"]: terminal for terminal in json.loads(listed.stdout)}
    assert {terminal["clinic_id"] for terminal in terminals.values()} == {"T001"}
    assert terminals["term-T001"]["role"] == "terminal"
    mine = terminals["fin-T001-x"]
    assert (mine["role"], mine["status"], mine["revoked_at"]) == ("finance", "active", None)
    assert [(key["key_id"], key["state"]) for key in mine["keys"]] == [(first, "retired"), (second, "active")]
    assert mine["keys"][0]["retired_at"] is not None and mine["keys"][1]["retired_at"] is None
    assert mine["created_at"] <= mine["keys"][1]["created_at"] == mine["rotated_at"]

    table = medsettle(database_url, "terminals", "list", "--clinic", "T001")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TERMINAL", "CLINIC", "ROLE", "STATUS", "CREATED", "ROTATED", "KEYS"]
    row = next(row for row in rows if row.startswith("fin-T001-x "))
    assert f"{first} (retired)" in row and f"{second} (active)" in row

    assert medsettle(database_url, "terminals", "revoke", "fin-T001-x").returncode == 0
    everyone = medsettle(database_url, "terminals", "list", "--format", "json")
    assert everyone.returncode == 0, everyone.stderr
    revoked = next(terminal for terminal in json.loads(everyone.stdout) if terminal["terminal_id"] == "fin-T001-x")
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    assert [key["state"] for key in revoked["keys"]] == ["retired", "revoked"]
    assert {"term-C001", "term-V001", "admin-1"} <= {
        terminal["terminal_id"] for terminal in json.loads(everyone.stdout)
    }

    for output in (listed.stdout, table.stdout, everyone.stdout):
        assert "secret" not in output and "ciphertext" not in output
        assert not any(secret in output for secret in secrets)

    unknown = medsettle(database_url, "terminals", "list", "--clinic", "NOPE")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "medsettle terminals list: no clinic NOPE"


def test_a_reader_that_goes_away_stops_the_output_quietly(pool, database_url):
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDSETTLE_ID_PEPPER": PEPPER.decode(),
        "MEDSETTLE_TERMINAL_KEY_KEY": KEY_ENCRYPTION_KEY.hex(),
    }
    # As `medsettle terminals list | head -1`, with the reader gone before the first write.
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "terminals", "list"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert process.returncode == 1
