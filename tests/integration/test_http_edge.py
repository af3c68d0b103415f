"""The HTTP edge under a hostile or broken client: raw bytes over real sockets into a real ``medsettle serve``.

Request ids a legacy terminal sends in GBK or latin-1, national IDs glued into ids, keys and
paths, headers too long or too many, a header or a body that never finishes arriving: every
answer is ``application/problem+json`` with a stable code, never a 500, no raw ID is echoed or
logged, and every line the process writes to stderr is one JSON object.

The gateway runs with header and body timeouts of 2 s. A test that waits for a timeout only
bounds how long it waits; nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import identity, signing
from gateway.http.app import create_app
from tests.integration.conftest import bill, fresh_national_id, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration

TIMEOUT = 2  # MEDSETTLE_HEADER_TIMEOUT and MEDSETTLE_BODY_TIMEOUT of the gateway under test
PATIENCE = 20.0  # how long a test waits for the gateway to act on a timeout before failing
DIGIT_RUN = re.compile(r"[0-9]{17}")
FRESH_ID = re.compile(r"[0-9a-f]{32}")
VALID = "11010519491231002X"


@dataclass
class Gateway:
    port: int
    log: Path
    keys: dict[str, Any]

    def signed(self, terminal: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        key = self.keys[terminal]
        return signing.signed_headers(key.key_id, key.secret, method, path, body)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge") / "stderr.log"


@pytest.fixture(scope="module")
async def gateway(client, database_url, gateway_log, tmp_path_factory) -> AsyncIterator[Gateway]:
    """``medsettle serve`` logging JSON at info to a file, with short client timeouts, and every
    reversal failing as if the database connection dropped (a 503 to check answers against)."""
    port = free_port()
    with gateway_log.open("w") as stderr:
        process = start_gateway(
            database_url,
            port,
            tmp_path_factory.mktemp("edge-data"),
            stderr=stderr,
            MEDSETTLE_LOG_FORMAT="json",
            MEDSETTLE_LOG_LEVEL="info",
            MEDSETTLE_HEADER_TIMEOUT=str(TIMEOUT),
            MEDSETTLE_BODY_TIMEOUT=str(TIMEOUT),
            MEDSETTLE_FAULTS="reverse.after_lock=raise",
        )
        try:
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, f"http://127.0.0.1:{port}", process)
            yield Gateway(port, gateway_log, client.by_terminal)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------- raw HTTP


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), self
        problem: dict[str, Any] = json.loads(self.body)
        assert problem["status"] == self.status and problem["request_id"] == self.headers["x-request-id"]
        assert problem["trace_id"] == problem["request_id"]
        return problem


def parse(data: bytes) -> Answer | None:
    """The first HTTP answer in ``data``, or None when there is none."""
    if not data:
        return None
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("ascii").split("\r\n")  # every header byte the gateway sends is ASCII
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return Answer(int(lines[0].split()[1]), headers, rest[:length])


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = PATIENCE) -> bytes:
    """Everything the gateway sends until it closes the connection; fails after ``timeout`` seconds."""
    received = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the gateway did not close the connection within {timeout:g} s; got {received!r}"
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except ConnectionResetError:
            return received
        except TimeoutError:
            continue
        if not chunk:
            return received
        received += chunk


async def exchange(port: int, data: bytes) -> Answer:
    """Send ``data`` (a request asking to close after its answer) and read the one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        answer = parse(await read_until_closed(reader))
    finally:
        writer.close()
    assert answer is not None, "the gateway closed the connection without answering"
    return answer


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", *, raw_headers: bytes = b""
) -> bytes:
    """An HTTP/1.1 request as bytes; ``raw_headers`` are sent exactly as given (any bytes at all)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n").encode() + raw_headers + b"\r\n" + body


def signed_json(gateway: Gateway, terminal: str, method: str, path: str, value: Any) -> tuple[dict[str, str], bytes]:
    body = msgspec.json.encode(value)
    return {**gateway.signed(terminal, method, path, body), "Content-Type": "application/json"}, body


async def logged(gateway: Gateway, wanted: Any, timeout: float = PATIENCE) -> dict[str, Any]:
    """The first log record ``wanted`` accepts, waiting for the gateway to write it."""
    deadline = time.monotonic() + timeout
    while True:
        for record in gateway.records():
            if wanted(record):
                return record
        assert time.monotonic() < deadline, "the gateway did not log the expected record"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- request ids


NOT_PRINTABLE_ASCII = {
    "gbk": "请求-0001".encode("gbk"),
    "latin-1": "café-0001".encode("latin-1"),
    "utf-8": "请求-0001".encode(),
    "tab": b"req\t0001",  # the one control character HTTP lets through in a header value
    "space": b"req 0001",
    "too long": b"r" * 65,
}


@pytest.mark.parametrize("case", list(NOT_PRINTABLE_ASCII))
async def test_a_request_id_that_is_not_printable_ascii_is_replaced_and_every_answer_stays_correct(
    gateway, client, case
):
    sent = b"X-Request-Id: " + NOT_PRINTABLE_ASCII[case] + b"\r\n"

    not_found = await exchange(gateway.port, request("GET", "/v1/no-such-route", raw_headers=sent))
    assert not_found.status == 404 and not_found.problem()["code"] == "not_found"
    assert FRESH_ID.fullmatch(not_found.headers["x-request-id"])

    person = {"person_id": fresh_national_id(), "memberships": []}
    headers, body = signed_json(gateway, "admin-1", "POST", "/v1/people", person)
    created = await exchange(gateway.port, request("POST", "/v1/people", headers, body, raw_headers=sent))
    assert created.status == 201, created
    assert FRESH_ID.fullmatch(created.headers["x-request-id"])

    national_id = await register(client, ("insurance", "resident"))
    headers, body = signed_json(gateway, "term-C001", "POST", "/v1/settlements", bill(national_id, ("A", 1_000)))
    settled = await exchange(gateway.port, request("POST", "/v1/settlements", headers, body))
    assert settled.status == 201, settled
    path = f"/v1/settlements/{json.loads(settled.body)['settlement_id']}/reversal"
    headers, body = signed_json(gateway, "term-C001", "POST", path, {"request_id": f"rev-{uuid.uuid4().hex}"})
    unavailable = await exchange(gateway.port, request("POST", path, headers, body, raw_headers=sent))
    assert unavailable.status == 503 and unavailable.problem()["code"] == "database_unavailable"
    assert unavailable.headers["retry-after"] == "2"


async def test_a_printable_request_id_is_echoed_as_sent(gateway):
    answer = await exchange(gateway.port, request("GET", "/v1/no-such-route", {"X-Request-Id": "term-C001:batch.7_x"}))
    assert answer.headers["x-request-id"] == answer.problem()["request_id"] == "term-C001:batch.7_x"


# ---------------------------------------------------------------- no ID echoed or logged


async def test_an_id_glued_into_the_request_id_is_masked_in_the_echo_the_problem_and_the_log(gateway):
    sent = f"req{VALID}"
    answer = await exchange(gateway.port, request("GET", "/v1/no-such-route", {"X-Request-Id": sent}))
    assert answer.headers["x-request-id"] == answer.problem()["request_id"] == "req110*************2X"
    masked = await logged(gateway, lambda record: record.get("request_id") == "req110*************2X")
    assert masked["status"] == 404
    assert VALID not in gateway.log.read_text()


@pytest.mark.parametrize(
    ("path", "document"),
    [
        ("/v1/people", {VALID: 1, "person_id": VALID}),  # a key that is an ID: "unknown field `<ID>`"
        ("/v1/people", {f"x{VALID}": 1, "person_id": VALID}),
        ("/v1/people", {f"9{VALID}0": 1, "person_id": VALID}),  # inside a longer run of digits
    ],
)
async def test_a_validation_problem_never_echoes_an_id_in_its_detail_or_field(gateway, path, document):
    headers, body = signed_json(gateway, "admin-1", "POST", path, document)
    answer = await exchange(gateway.port, request("POST", path, headers, body))
    problem = answer.problem()
    assert (answer.status, problem["code"]) == (422, "validation_failed")
    assert "*" * 13 in problem["field"] and "*" * 13 in problem["detail"]
    assert not DIGIT_RUN.search(answer.body.decode()), problem


@pytest.mark.parametrize("path", [f"/v1/{VALID}", f"/v1/people/req{VALID}", f"/v1/%31%31%30{VALID[3:]}"])
async def test_a_not_found_problem_never_echoes_an_id_from_the_path(gateway, path):
    answer = await exchange(gateway.port, request("GET", path))
    problem = answer.problem()
    assert (answer.status, problem["code"]) == (404, "not_found")
    assert "110*************2X" in problem["detail"] and not DIGIT_RUN.search(answer.body.decode())


@pytest.mark.parametrize(
    "path",
    [b"/v1/%C7%EB%C7%F3/caf%E9", b"/v1/%ED%A0%80", b"/v1/%00"],
)
async def test_a_path_that_is_not_utf_8_gets_a_problem_not_a_500(gateway, path):
    answer = await exchange(gateway.port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert (answer.status, answer.problem()["code"]) == (404, "not_found")


async def test_a_header_that_is_not_utf_8_quoted_in_a_problem_keeps_the_answer_correct(gateway):
    person = {"person_id": fresh_national_id(), "memberships": []}
    headers, body = signed_json(gateway, "admin-1", "POST", "/v1/people", person)
    del headers["Content-Type"]
    sent = b"Content-Type: application/" + "请求".encode("gbk") + b"\r\n"
    answer = await exchange(gateway.port, request("POST", "/v1/people", headers, body, raw_headers=sent))
    problem = answer.problem()
    assert (answer.status, problem["code"]) == (415, "unsupported_media_type")
    assert problem["detail"].startswith("Content-Type application/")


# ---------------------------------------------------------------- slow clients


async def test_a_connection_holding_a_partial_header_is_closed(gateway):
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial-Hea")
        await writer.drain()
        answer = parse(await read_until_closed(reader))
    finally:
        writer.close()
    assert answer is not None and answer.status == 408, answer
    assert answer.problem()["code"] == "request_timeout"


async def test_a_connection_that_never_sends_a_request_is_closed(gateway):
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        assert await read_until_closed(reader) == b""
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(gateway):
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    ask = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        for request_number in range(2):
            if request_number:
                await asyncio.sleep(TIMEOUT * 1.5)  # idle between requests, longer than the header timeout
            writer.write(ask)
            await writer.drain()
            answer = parse(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE))
            assert answer is not None and answer.status == 200, answer
            await asyncio.wait_for(reader.readexactly(int(answer.headers["content-length"])), PATIENCE)
    finally:
        writer.close()


async def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed(gateway):
    person = {"person_id": fresh_national_id(), "memberships": []}
    headers, body = signed_json(gateway, "admin-1", "POST", "/v1/people", person)
    whole = request("POST", "/v1/people", headers, body)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(whole[: len(whole) - len(body) // 2])  # the headers and half the body, then nothing
        await writer.drain()
        answer = parse(await read_until_closed(reader))
    finally:
        writer.close()
    assert answer is not None and answer.status == 408, answer
    problem = answer.problem()
    assert problem["code"] == "request_timeout" and "body" in problem["detail"]


async def test_a_trickled_body_is_answered_408(gateway):
    body = b"x" * 100_000
    headers = {**gateway.signed("admin-1", "POST", "/v1/people", body), "Content-Type": "application/json"}
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    answered = asyncio.create_task(read_until_closed(reader))
    try:
        writer.write(request("POST", "/v1/people", headers, body)[: -len(body)])
        for offset in range(400):  # a byte every 50 ms: never silent for long, never finished either
            if answered.done():
                break
            writer.write(body[offset : offset + 1])
            await writer.drain()
            await asyncio.sleep(0.05)
    except ConnectionError:
        pass  # the gateway closed the connection after answering
    finally:
        answer = parse(await answered)
        writer.close()
    assert answer is not None and answer.status == 408, answer
    assert answer.problem()["code"] == "request_timeout"


async def test_a_body_still_arriving_at_the_request_deadline_is_the_client_s_408_not_a_503(
    client, database_url, settings
):
    """Past ``MEDSETTLE_REQUEST_TIMEOUT``, a request whose body has not all arrived blames the client."""
    key = client.by_terminal["admin-1"]
    body = msgspec.json.encode({"person_id": fresh_national_id(), "memberships": []})
    headers = {**signing.signed_headers(key.key_id, key.secret, "POST", "/v1/people", body), "Content-Length": "999"}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    slow = msgspec.structs.replace(settings, request_timeout=0.5)
    # After answering, aiohttp reads and drops the rest of the body for lingering_time (10 s unless told) before
    # it closes the connection; the gateway's own runner lingers for MEDSETTLE_BODY_TIMEOUT.
    server = TestServer(create_app(slow, dsn=database_url), host="127.0.0.1")
    await server.start_server(lingering_time=TIMEOUT)  # TestClient starts no server already started
    async with TestClient(server) as test_client:
        port = test_client.server.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"POST /v1/people HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body[:10])
            await writer.drain()
            answer = parse(await read_until_closed(reader))
        finally:
            writer.close()
    assert answer is not None and answer.status == 408, answer
    assert answer.problem()["code"] == "request_timeout"


# ---------------------------------------------------------------- requests aiohttp refuses itself


ABUSE = {
    "a header too long": (request("GET", "/healthz", {"X-Long": "a" * 9000}), 431, "headers_too_large"),
    "a header name too long": (request("GET", "/healthz", {"X" * 9000: "1"}), 431, "headers_too_large"),
    "too many headers": (
        request("GET", "/healthz", {f"X-Header-{index}": "1" for index in range(200)}),
        431,
        "headers_too_large",
    ),
    "a request line too long": (request("GET", "/" + "a" * 9000), 431, "headers_too_large"),
    "a TLS hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400, "bad_request"),
    "GBK bytes in the path": (
        b"GET /v1/" + "请求".encode("gbk") + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        400,
        "bad_request",
    ),
    "a NUL in a header": (request("GET", "/healthz", raw_headers=b"X-Nul: a\x00b\r\n"), 400, "bad_request"),
    "an ID in a bad header": (request("GET", "/healthz", raw_headers=f"{VALID} x: 1\r\n".encode()), 400, "bad_request"),
}


@pytest.mark.parametrize("case", list(ABUSE))
async def test_a_request_aiohttp_cannot_parse_is_refused_with_a_problem(gateway, case):
    data, status, code = ABUSE[case]
    answer = await exchange(gateway.port, data)
    problem = answer.problem()
    assert (answer.status, problem["code"]) == (status, code), problem
    assert FRESH_ID.fullmatch(problem["request_id"]) and not DIGIT_RUN.search(answer.body.decode())
    refused = await logged(gateway, lambda record: record.get("request_id") == problem["request_id"])
    assert (refused["status"], refused["code"]) == (status, code)


async def test_every_line_the_gateway_writes_to_stderr_is_json_without_ids(gateway):
    for data, _, _ in ABUSE.values():
        await exchange(gateway.port, data)
    await exchange(gateway.port, request("GET", f"/v1/{VALID}", {"X-Request-Id": f"req{VALID}"}))
    marker = f"end-{uuid.uuid4().hex}"
    await exchange(gateway.port, request("GET", "/v1/no-such-route", {"X-Request-Id": marker}))
    await logged(gateway, lambda record: record.get("request_id") == marker)
    text = gateway.log.read_text()
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line on stderr: {line!r}") from None
        assert isinstance(record, dict) and "event" in record and "level" in record, line
    assert not DIGIT_RUN.search(text), "a run of 17 digits reached the log"
    assert identity.mask(VALID) in text  # the IDs sent were logged, masked
