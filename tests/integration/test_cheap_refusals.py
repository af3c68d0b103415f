"""Refuse cheaply before expensive work: the signature headers before the body, line count before decoding.

One terminal, or anybody who can reach the port, must not be able to make the gateway read
megabytes or decode tens of thousands of lines on its event loop before it says no. Each
test here shows the refusal comes first by what the client sees, never by timing: a body
that is never sent still gets its answer, and an over-long bill whose lines are also
invalid is refused for its length, not for the lines a decoder would have had to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import io

import msgspec
import pytest

from adapters import signing
from gateway.config import Settings
from tests.integration.conftest import COUNTY, SignedClient, bill, register

pytestmark = pytest.mark.integration

# Far more than any test here needs: only a gateway that waits for a body never sent reaches it.
ANSWER_WITHIN = 30.0


async def _answer_without_body(
    client: SignedClient, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send only the request head of a POST that announces a large body, and read the answer.

    The body never comes: a gateway that reads it before deciding would sit waiting.
    """
    server = client.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {server.host}:{server.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status, answer_headers, body = await _read_answer(reader)
    finally:
        writer.close()
    return status, answer_headers, body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer off a raw connection: status, headers (lower-case names) and body."""
    async with asyncio.timeout(ANSWER_WITHIN):
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def test_an_unsigned_post_is_refused_before_its_body_is_read(client):
    status, headers, body = await _answer_without_body(
        client,
        "/v1/finance/reconciliation",
        {"Content-Type": "application/json", "Content-Length": str(15 * 1024 * 1024)},
    )
    assert status == 401
    assert headers["content-type"].startswith("application/problem+json")
    assert msgspec.json.decode(body)["code"] == "signature_missing"


async def test_an_unknown_key_is_refused_before_its_body_is_read(client):
    big = b"x" * (15 * 1024 * 1024)
    signed = signing.signed_headers("k_nobody", "sk_nobody", "POST", "/v1/finance/reconciliation", big)
    status, _, body = await _answer_without_body(
        client,
        "/v1/finance/reconciliation",
        {"Content-Type": "application/json", "Content-Length": str(len(big)), **signed},
    )
    assert status == 401
    assert msgspec.json.decode(body)["code"] == "unknown_key"


async def test_a_stale_timestamp_is_refused_before_its_body_is_read(client):
    key = client.by_terminal["term-C001"]
    signed = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/settlements", b"{}")
    signed["X-Timestamp"] = str(int(signed["X-Timestamp"]) - 3600)
    status, _, body = await _answer_without_body(
        client, "/v1/settlements", {"Content-Type": "application/json", "Content-Length": "900000", **signed}
    )
    assert status == 401
    assert msgspec.json.decode(body)["code"] == "timestamp_out_of_window"


async def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(client):
    key = client.by_terminal["term-C001"]
    big = b"x" * (2 * 1024 * 1024)  # the settle route takes 1 MiB by default
    signed = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/settlements", big)
    status, _, body = await _answer_without_body(
        client, "/v1/settlements", {"Content-Type": "application/json", "Content-Length": str(len(big)), **signed}
    )
    assert status == 413
    assert msgspec.json.decode(body)["code"] == "body_too_large"


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
@pytest.mark.parametrize("route", ["/v1/settlements", "/v1/quotes"])
async def test_an_over_long_bill_is_refused_for_its_length_before_its_lines_are_read(client, encoding, route):
    """15,000 lines (under the body limit), each also invalid: refused for the length, so no line was decoded."""
    person = await register(client, ("insurance", "resident"))
    good = bill(person, ("A", 100))
    bad_line = {"code": "X", "name": "x", "category": "A", "amount": "n"}
    over_long = {**good, "items": [bad_line] * 15_000}
    encoder = msgspec.msgpack if encoding == "msgpack" else msgspec.json
    response = await client.post(
        route,
        data=io.BytesIO(encoder.encode(over_long)),
        headers={**COUNTY, "Content-Type": f"application/{encoding}"},
    )
    assert response.status == 413, await response.text()
    problem = await response.json(content_type=None)
    assert (problem["code"], problem["field"]) == ("too_many_lines", "items")


async def test_a_bill_at_the_line_limit_is_settled(client):
    person = await register(client, ("insurance", "resident"))
    at_limit = bill(person, *[("A", 100)] * Settings().max_lines)
    response = await client.post("/v1/settlements", json=at_limit, headers=COUNTY)
    assert response.status == 201, await response.text()
    assert (await response.json())["total"] == 100 * Settings().max_lines


async def test_a_post_refused_before_its_body_is_read_closes_the_connection(client):
    """The rest of a refused body is not read only to be thrown away: the answer says the
    connection closes, and it does, so a sender of megabytes cannot keep the gateway reading."""
    server = client.client.server
    announced = 15 * 1024 * 1024
    chunk = b"x" * (64 * 1024)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = [
            "POST /v1/finance/reconciliation HTTP/1.1",
            f"Host: {server.host}:{server.port}",
            "Content-Type: application/json",
            f"Content-Length: {announced}",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + chunk)
        await writer.drain()
        status, answer_headers, body = await _read_answer(reader)
        assert (status, msgspec.json.decode(body)["code"]) == (401, "signature_missing")
        assert answer_headers.get("connection", "").lower() == "close"
        # Go on sending the announced body: a gateway still reading it takes it all; one that has
        # closed the connection makes the sending fail before the end.
        sent = len(chunk)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            async with asyncio.timeout(ANSWER_WITHIN):
                while sent < announced:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
        assert sent < announced
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_a_refusal_after_the_body_was_read_keeps_the_connection(client):
    key = client.by_terminal["term-C001"]
    body = b'{"request_id": "r"}'
    signed = signing.signed_headers(key.key_id, key.secret, "POST", "/v1/settlements", body)
    signed["X-Signature"] = "0" * 64
    response = await client.post("/v1/settlements", data=body, headers={"Content-Type": "application/json", **signed})
    assert response.status == 401
    assert (await response.json(content_type=None))["code"] == "bad_signature"
    assert response.headers.get("Connection", "").lower() != "close"


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_a_deeply_nested_bill_is_a_problem_not_a_500(client, encoding):
    """The line count skips unread what is nested in a bill; nesting too deep for it is the full decode's to name."""
    if encoding == "json":
        body = b'{"request_id": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    else:
        body = b"\x81" + msgspec.msgpack.encode("request_id") + b"\x91" * 3000 + b"\x90"
    response = await client.post(
        "/v1/settlements", data=body, headers={**COUNTY, "Content-Type": f"application/{encoding}"}
    )
    assert response.status in (400, 422), await response.text()
    assert (await response.json(content_type=None))["code"] in ("bad_request", "validation_failed")
