"""Card readers end to end: real TCP frames on 127.0.0.1 into the gateway app, real PostgreSQL.

The listener runs inside the app built by ``create_app`` (its cleanup context), next
to the HTTP routes of the same app, so both doors share one Service, Authenticator
and RateLimiter.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from adapters import card_frames as frames
from adapters import db, signing
from adapters.demo import seed_demo
from adapters.terminal_keys import ActiveKey, load_keys
from gateway.app_keys import authenticator_key, limiter_key, metrics_key, service_key
from gateway.card_reader.client import ReaderClient
from gateway.card_reader.listener import READER_MAX_LINES, CardReaderListener, card_reader_key
from gateway.http.app import create_app
from tests.integration.conftest import KEY_ENCRYPTION_KEY, PEPPER, SignedClient, bill, register, row_counts

pytestmark = pytest.mark.integration

WORKED_ITEMS = (("A", 1_400_000), ("B", 400_000), ("C", 200_000))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gateway:
    app: web.Application
    port: int
    http: SignedClient
    keys: dict[str, ActiveKey]

    def reader(self, terminal: str = "term-C001", **options: Any) -> ReaderClient:
        key = self.keys[terminal]
        return ReaderClient("127.0.0.1", self.port, key.key_id, key.secret, **options)


@pytest.fixture(scope="module")
async def gateway(client, database_url, settings) -> AsyncIterator[Gateway]:
    """One gateway app with its reader port open, and an HTTP client of that very app."""
    port = _free_port()
    app = create_app(msgspec.structs.replace(settings, reader_port=port), dsn=database_url)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        http = SignedClient(test_client, {})
        http.by_terminal = client.by_terminal
        yield Gateway(app, app[card_reader_key].port, http, client.by_terminal)


async def settlement_rows(pool: asyncpg.Pool, request_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as connection:
        return await connection.fetch(
            "SELECT settlement_id, terminal_id FROM settlements WHERE request_id = $1", request_id
        )


async def closed_by_gateway(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the gateway closes the connection (FIN or reset) without answering."""
    try:
        data = await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return True
    return data == b""


def expect_result(reply: frames.Response, status: int = 200) -> dict[str, Any]:
    assert isinstance(reply, frames.Result), reply
    assert reply.status == status, reply
    return reply.body


def expect_error(reply: frames.Response, status: int, code: str) -> frames.Error:
    assert isinstance(reply, frames.Error), reply
    assert (reply.status, reply.code) == (status, code), reply
    return reply


# ---------------------------------------------------------------- the four requests


async def test_swipe_shows_what_http_eligibility_shows(gateway):
    person = await register(gateway.http, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    async with gateway.reader() as reader:
        body = expect_result(await reader.swipe(person, "2026-06-01"))
    assert body["insured"] is True
    assert body["person"].startswith(person[:3]) and person not in str(body)
    aid = next(programme for programme in body["programmes"] if programme["programme"] == "hardship_aid")
    assert aid["code"] == "minimum_allowance" and aid["remaining"] == aid["annual_cap"] > 0
    response = await gateway.http.post(
        "/v1/eligibility",
        json={"person_id": person, "service_date": "2026-06-01"},
        headers={"X-Terminal-Id": "term-C001"},
    )
    assert response.status == 200
    assert body == await response.json()


async def test_settle_worked_example_over_the_reader(gateway, pool):
    person = await register(gateway.http, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    worked = bill(person, *WORKED_ITEMS)
    async with gateway.reader() as reader:
        before = await row_counts(pool)
        quote = expect_result(await reader.quote(worked))
        assert await row_counts(pool) == before, "a quote writes nothing"
        reply = await reader.settle(worked)
    settled = expect_result(reply, 201)
    assert reply.replayed is False
    # docs/worked-examples.md, example 1: county inpatient, insurance + minimum_allowance.
    assert (settled["insurance"], settled["veteran_subsidy"]) == (1_275_000, 0)
    assert (settled["hardship_aid"], settled["out_of_pocket"]) == (339_500, 385_500)
    assert settled["total"] == 2_000_000 and settled["clinic_id"] == "C001" and settled["terminal_id"] == "term-C001"
    assert (quote["insurance"], quote["hardship_aid"], quote["out_of_pocket"]) == (1_275_000, 339_500, 385_500)
    # Frames carry what HTTP answers: every step of the chain, in order, by name.
    assert [(payer["fund"], payer["amount"]) for payer in settled["payers"]] == [
        ("insurance", 1_275_000),
        ("veteran_subsidy", 0),
        ("hardship_aid", 339_500),
    ]
    assert settled["payers"][2]["name"] == "城乡困难人员医疗救助" and settled["referral"] is False
    assert any("3855.00" in line for line in settled["explanation"])
    # The same settlement over HTTP, from the same store.
    response = await gateway.http.get(
        f"/v1/settlements/{settled['settlement_id']}", headers={"X-Terminal-Id": "term-C001"}
    )
    assert response.status == 200
    assert (await response.json())["out_of_pocket"] == 385_500
    metrics = await (await gateway.http.get("/metrics")).text()
    assert 'medsettle_reader_frames_total{outcome="ok",type="settle"}' in metrics


async def test_dropped_connection_then_resend_gives_the_first_settlement(gateway, pool):
    person = await register(gateway.http, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    worked = bill(person, *WORKED_ITEMS)
    reader = await gateway.reader().connect()
    sent = reader.frame(frames.Settle, worked)
    await reader.send(sent)
    await reader.close()  # the line drops before the answer arrives
    deadline = time.monotonic() + 10
    while not await settlement_rows(pool, worked["request_id"]):
        assert time.monotonic() < deadline, "the settle sent before the drop was never written"
        await asyncio.sleep(0.05)

    async with gateway.reader() as retry:
        # The captured frame, verbatim, is refused: its nonce is spent.
        expect_error(await retry.call(sent), 401, "nonce_reused")
        reply = await retry.call(retry.resign(sent))
    body = expect_result(reply, 200)
    assert reply.id == sent.id and reply.replayed is True and body["replayed"] is True
    rows = await settlement_rows(pool, worked["request_id"])
    assert len(rows) == 1
    assert body["settlement_id"] == str(rows[0]["settlement_id"])
    assert (body["insurance"], body["hardship_aid"], body["out_of_pocket"]) == (1_275_000, 339_500, 385_500)


async def test_cross_clinic_reversal_is_not_found_and_the_owner_reverses_once(gateway, pool):
    person = await register(gateway.http, ("insurance", "resident"))
    async with gateway.reader("term-C001") as county, gateway.reader("term-T001") as township:
        settled = expect_result(await county.settle(bill(person, ("A", 80_000))), 201)
        settlement_id = settled["settlement_id"]
        refused = await township.reverse(settlement_id, f"rev-{uuid.uuid4().hex}", "not ours")
        expect_error(refused, 404, "settlement_not_found")
        # The township's own bill for the county's clinic is refused too.
        expect_error(await township.settle(bill(person, ("A", 1_000))), 403, "terminal_not_for_clinic")

        reversal_id = f"rev-{uuid.uuid4().hex}"
        reversed_ = expect_result(await county.reverse(settlement_id, reversal_id, "wrong patient"), 201)
        assert reversed_["settlement_id"] == settlement_id and reversed_["insurance"] == settled["insurance"]
        expect_error(await county.reverse(settlement_id, f"rev-{uuid.uuid4().hex}"), 409, "already_reversed")
        again = await county.reverse(settlement_id, reversal_id, "wrong patient")
        assert expect_result(again, 200)["reversal_id"] == reversed_["reversal_id"] and again.replayed
        expect_error(await county.reverse("not-a-uuid", f"rev-{uuid.uuid4().hex}"), 404, "settlement_not_found")


# ---------------------------------------------------------------- refusals keep the connection


async def test_wrong_signature_is_refused_and_the_connection_still_works(gateway):
    person = await register(gateway.http, ("insurance", "resident"))
    async with gateway.reader() as reader:
        good = reader.frame(frames.Swipe, {"person_id": person})
        forged = msgspec.structs.replace(good, sig="0" * 64)
        reply = expect_error(await reader.call(forged), 401, "bad_signature")
        assert reply.id == forged.id
        other = person[:-1] + ("1" if person.endswith("0") else "0")  # a body that differs, whatever the ID
        tampered = msgspec.structs.replace(good, body=msgspec.msgpack.encode({"person_id": other}))
        expect_error(await reader.call(tampered), 401, "bad_signature")
        stale = frames.sign_frame(frames.Swipe, 7, reader.key_id, reader.secret, good.body, ts=int(time.time()) - 301)
        expect_error(await reader.call(stale), 401, "timestamp_out_of_window")
        stranger = frames.sign_frame(frames.Swipe, 8, "k_nobody000000000", "sk_x", good.body)
        expect_error(await reader.call(stranger), 401, "unknown_key")
        assert isinstance(await reader.heartbeat(), frames.HeartbeatAck)
        assert expect_result(await reader.call(good))["insured"] is True


async def test_a_nonce_spent_over_http_cannot_be_spent_on_the_reader_port(gateway):
    person = await register(gateway.http, ("insurance", "resident"))
    key = gateway.keys["term-C001"]
    body = msgspec.msgpack.encode({"person_id": person})
    headers = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/eligibility", body)
    response = await gateway.http.client.post(
        "/v1/eligibility", data=body, headers={**headers, "Content-Type": "application/msgpack"}
    )
    assert response.status == 200
    spent = frames.sign_frame(frames.Swipe, 1, key.key_id, key.secret, body, nonce=headers["X-Nonce"])
    async with gateway.reader() as reader:
        expect_error(await reader.call(spent), 401, "nonce_reused")


async def test_only_terminals_may_use_the_reader(gateway):
    person = await register(gateway.http, ("insurance", "resident"))
    for terminal in ("admin-1", "finance-1"):
        async with gateway.reader(terminal) as reader:
            reply = expect_error(await reader.swipe(person), 403, "forbidden")
            assert "card reader" in reply.detail


async def test_refusals_carry_the_http_codes_and_fields(gateway, pool):
    person = await register(gateway.http, ("insurance", "resident"))
    async with gateway.reader() as reader:
        before = await row_counts(pool)
        negative = bill(person, ("A", 1_000))
        negative["items"][0]["amount"] = -1
        reply = expect_error(await reader.settle(negative), 422, "validation_failed")
        assert reply.field == "items[0].amount"
        missing = bill(person, ("A", 1_000))
        del missing["visit_type"]
        assert expect_error(await reader.settle(missing), 422, "validation_failed").field == "visit_type"
        bad_id = bill(person[:-1] + ("0" if person[-1] != "0" else "1"), ("A", 1_000))
        assert expect_error(await reader.settle(bad_id), 422, "invalid_national_id").field == "person_id"
        other_clinic = bill(person, ("A", 1_000), clinic_id="V001")
        expect_error(await reader.settle(other_clinic), 403, "terminal_not_for_clinic")
        not_msgpack = frames.sign_frame(frames.Settle, 99, reader.key_id, reader.secret, b"\xc1\xc1")
        expect_error(await reader.call(not_msgpack), 400, "bad_request")
        expect_error(await reader.swipe("12345"), 422, "invalid_national_id")
        own = reader.frame(frames.Swipe, {"person_id": person, "clinic_id": "C001"})
        assert expect_result(await reader.call(own))["insured"] is True
        other = reader.frame(frames.Swipe, {"person_id": person, "clinic_id": "V001"})
        assert expect_error(await reader.call(other), 403, "terminal_not_for_clinic").field == "clinic_id"
        assert await row_counts(pool) == before
        assert isinstance(await reader.heartbeat(), frames.HeartbeatAck)


VALID_ID = "11010519491231002X"  # GB 11643's own example
BAD_REVERSALS: dict[str, dict[str, Any]] = {
    "a NUL in the reason": {"reason": "wrong\x00patient"},  # PostgreSQL cannot store it
    "an ESC in the reason": {"reason": "\x1b[2Jwrong patient"},  # would clear an operator's terminal
    "a BEL in the reason": {"reason": "wrong patient\x07"},
    "a reason too long": {"reason": "x" * 501},
    "a reason that is not text": {"reason": 7},
    "a request id with a space": {"request_id": "rev 1"},
    "no request id": {"request_id": None},
    "an unknown field": {"note": "x"},
    "an unknown field named by an ID": {VALID_ID: "x"},
}


@pytest.mark.parametrize("case", list(BAD_REVERSALS))
async def test_a_reversal_body_is_refused_by_the_reader_exactly_as_over_http(gateway, pool, case):
    person = await register(gateway.http, ("insurance", "resident"))
    body = {"request_id": f"rev-{uuid.uuid4().hex}", "reason": "wrong patient", **BAD_REVERSALS[case]}
    body = {name: value for name, value in body.items() if value is not None}  # None: not sent
    async with gateway.reader() as reader:
        settlement_id = expect_result(await reader.settle(bill(person, ("A", 1_000))), 201)["settlement_id"]
        response = await gateway.http.post(
            f"/v1/settlements/{settlement_id}/reversal", json=body, headers={"X-Terminal-Id": "term-C001"}
        )
        problem = await response.json()
        reply = await reader.call(reader.frame(frames.Reversal, {"settlement_id": settlement_id, **body}))
    assert (response.status, problem["code"]) == (422, "validation_failed")
    refused = expect_error(reply, 422, "validation_failed")
    assert (refused.field, refused.detail) == (problem.get("field"), problem["detail"])
    assert VALID_ID not in refused.detail and VALID_ID not in (refused.field or "")
    async with pool.acquire() as connection:
        reversals = await connection.fetchval(
            "SELECT count(*) FROM reversals WHERE settlement_id = $1", uuid.UUID(settlement_id)
        )
    assert reversals == 0


async def test_the_longest_bill_a_reader_may_send_is_answered_and_longer_is_refused(gateway, pool):
    person = await register(gateway.http, ("insurance", "resident"), ("hardship_aid", "destitute"))
    longest = bill(person, *(("ABC"[index % 3], 1_000 + index) for index in range(READER_MAX_LINES)))
    for index, item in enumerate(longest["items"]):
        item["code"] = f"{index:03d}-" + "X" * 60  # the longest codes the API accepts
    async with gateway.reader() as reader:
        settled = expect_result(await reader.settle(longest), 201)
        assert len(settled["lines"]) == READER_MAX_LINES
        assert sum(line["out_of_pocket"] for line in settled["lines"]) == settled["out_of_pocket"]
        too_long = bill(person, *(("A", 100),) * (READER_MAX_LINES + 1))
        before = await row_counts(pool)
        assert expect_error(await reader.settle(too_long), 413, "too_many_lines").field == "items"
        assert await row_counts(pool) == before


async def test_an_unexpected_failure_is_a_500_frame_and_the_listener_carries_on(gateway, monkeypatch):
    person = await register(gateway.http, ("insurance", "resident"))

    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gateway.app[service_key], "eligibility", broken)
    async with gateway.reader() as reader:
        with capture_logs() as logs:
            expect_error(await reader.swipe(person), 500, "internal_error")
        assert any(entry["event"] == "reader_unhandled_error" and entry.get("exc_info") for entry in logs)
        monkeypatch.undo()
        assert expect_result(await reader.swipe(person))["insured"] is True


# ---------------------------------------------------------------- frames that cannot be read


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


UNREADABLE = {
    "garbage": _frame(b"\xc1" * 12),
    "http request": b"POST /v1/settlements HTTP/1.1\r\nHost: gateway\r\n\r\n",
    "truncated": (100).to_bytes(4, "big") + msgspec.msgpack.encode({"type": "heartbeat", "id": 1}),
    "oversized": (frames.MAX_FRAME + 1).to_bytes(4, "big"),
    "unknown type": _frame(msgspec.msgpack.encode({"type": "refund", "id": 1, "person_id": "410103194001010000"})),
    "wrong field type": _frame(msgspec.msgpack.encode({"type": "heartbeat", "id": "one"})),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
async def test_an_unreadable_frame_closes_only_its_own_connection(gateway, case):
    person = await register(gateway.http, ("insurance", "resident"))
    async with gateway.reader() as bystander:
        assert isinstance(await bystander.heartbeat(), frames.HeartbeatAck)
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        with capture_logs() as logs:
            writer.write(UNREADABLE[case])
            if case == "truncated":
                writer.write_eof()  # the reader's line drops mid-frame
            await writer.drain()
            assert await closed_by_gateway(reader), "the gateway kept a connection it could not read"
        writer.close()
        warning = next(entry for entry in logs if entry["event"] == "reader_bad_frame")
        assert warning["peer"].startswith("127.0.0.1:") and warning["log_level"] == "warning"
        assert "410103194001010000" not in str(logs) and "refund" not in str(logs)
        # The other reader, connected all along, is served; so is a new one.
        assert expect_result(await bystander.swipe(person))["insured"] is True
    async with gateway.reader() as newcomer:
        assert expect_result(await newcomer.swipe(person))["insured"] is True


async def test_a_silent_or_stalled_connection_is_closed_after_the_idle_timeout(gateway):
    app = gateway.app
    listener = CardReaderListener(
        app[service_key], app[authenticator_key], app[limiter_key], app[metrics_key], idle_timeout=0.3
    )
    await listener.start("127.0.0.1", 0)
    try:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", listener.port)
        stalled_reader, stalled = await asyncio.open_connection("127.0.0.1", listener.port)
        stalled.write((50).to_bytes(4, "big") + b"\x82")  # half a frame, then nothing
        started = time.monotonic()
        assert await closed_by_gateway(silent_reader, timeout=3)
        assert await closed_by_gateway(stalled_reader, timeout=3)
        assert time.monotonic() - started < 2
        silent.close()
        stalled.close()
    finally:
        await listener.close(timeout=2)
    assert listener.connections == 0


# ---------------------------------------------------------------- lifecycle and the database


async def test_shutdown_closes_reader_connections_and_stops_listening(client, database_url, settings):
    port = _free_port()
    app = create_app(msgspec.structs.replace(settings, reader_port=port), dsn=database_url)
    key = client.by_terminal["term-V001"]
    async with TestClient(TestServer(app, host="127.0.0.1")):
        idle = await ReaderClient("127.0.0.1", port, key.key_id, key.secret).connect()
        assert isinstance(await idle.heartbeat(), frames.HeartbeatAck)
    # The app has stopped: the idle reader was closed and nobody else gets in.
    with pytest.raises(ConnectionError):
        await idle.receive()
    await idle.close()
    with pytest.raises(OSError):
        await ReaderClient("127.0.0.1", port, key.key_id, key.secret).connect()


async def test_database_down_is_a_503_frame_and_the_connection_stays(settings):
    # Not under pytest's temporary folder, which another pytest run on the machine may clear.
    folder = Path(tempfile.mkdtemp(prefix="medsettle-test-pg-"))
    url, server = db.start_embedded(folder / "pg")
    running = True
    try:
        connection = await asyncpg.connect(url)
        try:
            await db.migrate(connection)
            await seed_demo(connection, PEPPER, KEY_ENCRYPTION_KEY, population=10)
            keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
        finally:
            await connection.close()
        key = next(key for key in keys.values() if key.terminal_id == "term-C001" and key.secret)
        port = _free_port()
        app = create_app(msgspec.structs.replace(settings, reader_port=port, pool_acquire_timeout=1.0), dsn=url)
        async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
            http = SignedClient(test_client, keys)
            person = await register(http, ("insurance", "resident"))
            async with ReaderClient("127.0.0.1", port, key.key_id, key.secret, timeout=30) as reader:
                expect_result(await reader.settle(bill(person, ("A", 1_000), visit_type="outpatient")), 201)
                server.cleanup()  # PostgreSQL stops under the running gateway
                running = False
                reply = await reader.settle(bill(person, ("A", 2_000), visit_type="outpatient"))
                assert expect_error(reply, 503, "database_unavailable").retry_after
                assert isinstance(await reader.heartbeat(), frames.HeartbeatAck)
    finally:
        if running:
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


async def test_medsettle_serve_listens_for_card_readers_and_stops_cleanly(client, database_url, tmp_path):
    http_port, reader_port = _free_port(), _free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDSETTLE_ID_PEPPER": PEPPER.decode(),
        "MEDSETTLE_TERMINAL_KEY_KEY": KEY_ENCRYPTION_KEY.hex(),
        "MEDSETTLE_PORT": str(http_port),
        "MEDSETTLE_READER_PORT": str(reader_port),
        "MEDSETTLE_LOG_FORMAT": "json",
        "MEDSETTLE_DATA_DIR": str(tmp_path),
        "MEDSETTLE_SHUTDOWN_DRAIN_SECONDS": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    key = client.by_terminal["term-C001"]
    person = await register(client, ("insurance", "resident"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                idle = await ReaderClient("127.0.0.1", reader_port, key.key_id, key.secret).connect()
                break
            except OSError:
                assert process.returncode is None, "medsettle serve exited"
                assert time.monotonic() < deadline, "no card-reader listener within 30 s"
                await asyncio.sleep(0.2)
        assert isinstance(await idle.heartbeat(), frames.HeartbeatAck)
        async with ReaderClient("127.0.0.1", reader_port, key.key_id, key.secret) as reader:
            expect_result(await reader.settle(bill(person, ("A", 10_000), visit_type="outpatient")), 201)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    with pytest.raises(ConnectionError):  # SIGTERM closed the idle reader's connection
        await idle.receive()
    await idle.close()
    output = (stdout + stderr).decode()
    assert person not in output
    frames_logged = [json.loads(line) for line in output.splitlines() if '"reader_frame"' in line]
    assert [(line["type"], line["status"]) for line in frames_logged] == [("settle", 201)]
    assert frames_logged[0]["terminal"] == "term-C001" and frames_logged[0]["peer"].startswith("127.0.0.1:")


# ---------------------------------------------------------------- medsettle reader-sim


async def medsettle_reader_sim(gateway: Gateway, tmp_path: Any, *args: str) -> tuple[int, str, str]:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps({name: {"key_id": key.key_id, "secret": key.secret} for name, key in gateway.keys.items()})
    )
    environment = {**os.environ, "MEDSETTLE_DATA_DIR": str(tmp_path / "data"), "MEDSETTLE_LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "reader-sim",
        "--port",
        str(gateway.port),
        "--keys",
        str(keys_file),
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_reader_sim_swipes_and_settles_by_hand(gateway, tmp_path, pool):
    person = await register(gateway.http, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    code, out, err = await medsettle_reader_sim(gateway, tmp_path, "swipe", person, "--date", "2026-05-01")
    assert code == 0, err
    assert json.loads(out)["insured"] is True and person not in out

    bill_file = tmp_path / "bill.json"
    worked = bill(person, *WORKED_ITEMS)
    bill_file.write_text(json.dumps(worked))
    code, out, err = await medsettle_reader_sim(gateway, tmp_path, "settle", f"@{bill_file}")
    assert code == 0, err
    assert err.strip() == "201"
    answer = json.loads(out)
    assert (answer["insurance"], answer["hardship_aid"], answer["out_of_pocket"]) == (1_275_000, 339_500, 385_500)
    code, out, err = await medsettle_reader_sim(gateway, tmp_path, "settle", f"@{bill_file}")
    assert code == 0 and err.strip() == "200 (replayed)"
    assert json.loads(out)["settlement_id"] == answer["settlement_id"]
    assert len(await settlement_rows(pool, worked["request_id"])) == 1

    code, out, err = await medsettle_reader_sim(gateway, tmp_path, "--terminal", "term-T001", "settle", f"@{bill_file}")
    assert code == 1
    assert json.loads(out)["code"] == "terminal_not_for_clinic"

    code, out, _ = await medsettle_reader_sim(gateway, tmp_path, "heartbeat")
    assert code == 0 and abs(json.loads(out)["time"] - time.time()) < 60
