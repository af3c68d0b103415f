"""The card-reader frame codec: the README's published example, each kind of unreadable frame, round trips."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from adapters import card_frames as frames
from adapters import signing

# README "Card readers": a swipe frame worked through byte by byte.
README_VECTOR = {
    "key_id": "k_3f9a1c2e4b5d6071",
    "secret": "sk_test_7Yq2pVfV8wq3mZkRr0cXnH4aJ1sLbT6eD9uQ5oWgI2E",
    "ts": 1795430400,
    "nonce": "n0nce-0123456789abcdef",
    "body": "82a9706572736f6e5f6964b2343130313032313936303033303230303236"
    "ac736572766963655f64617465aa323032362d30352d3031",
    "sig": "59781ea3b6820a8fb274a45298e522ad73cf9c1e3b19635d646cdddd03c95f6b",
}
README_HEARTBEAT = "0000001482a474797065a9686561727462656174a2696407"


def test_readme_signature_example():
    vector = README_VECTOR
    body = bytes.fromhex(vector["body"])
    assert msgspec.msgpack.decode(body) == {"person_id": "410102196003020026", "service_date": "2026-05-01"}
    assert signing.sign(vector["secret"], "FRAME", "swipe", str(vector["ts"]), vector["nonce"], body) == vector["sig"]
    swipe = frames.sign_frame(
        frames.Swipe, 1, vector["key_id"], vector["secret"], body, ts=vector["ts"], nonce=vector["nonce"]
    )
    assert swipe.sig == vector["sig"]
    assert frames.decode_payload(frames.encode_frame(swipe)[4:], frames.requests) == swipe


def test_readme_heartbeat_frame():
    assert frames.encode_frame(frames.Heartbeat(id=7)).hex() == README_HEARTBEAT


@pytest.mark.parametrize(
    "message",
    [
        frames.Heartbeat(id=0),
        frames.sign_frame(frames.Settle, 2**63 - 1, "k_1", "sk_1", b"\x80"),
        frames.sign_frame(frames.Quote, 3, "k_1", "sk_1", b""),
        frames.sign_frame(frames.Reversal, 4, "k_1", "sk_1", b"\x81\xa1a\x01"),
    ],
)
def test_requests_round_trip(message):
    assert frames.decode_payload(frames.encode_frame(message)[4:], frames.requests) == message


@pytest.mark.parametrize(
    "message",
    [
        frames.Result(id=1, status=201, body={"settlement_id": "x", "lines": [{"amount": 1}]}),
        frames.Error(id=2, status=422, code="validation_failed", detail="d", field="items[0].amount"),
        frames.HeartbeatAck(id=3, time=1795430400),
    ],
)
def test_responses_round_trip(message):
    assert frames.decode_payload(frames.encode_frame(message)[4:], frames.responses) == message


def test_a_request_is_not_an_answer_and_an_answer_is_not_a_request():
    with pytest.raises(frames.UnknownMessageType):
        frames.decode_payload(frames.encode_frame(frames.Heartbeat(id=1))[4:], frames.responses)
    with pytest.raises(frames.UnknownMessageType):
        frames.decode_payload(frames.encode_frame(frames.HeartbeatAck(id=1, time=0))[4:], frames.requests)


def test_deep_nesting_is_refused_not_a_crash():
    nested = b"\x81\xa1a" * 20_000 + b"\x00"  # {"a": {"a": ... }} 20,000 deep, in 60 KB
    head = msgspec.msgpack.encode({"type": "result", "id": 1, "status": 200})  # a map of 3: 0x83 ...
    payload = b"\x84" + head[1:] + b"\xa4body" + nested  # ... made a map of 4, the 4th the nested body
    with pytest.raises(frames.UndecodableFrame):
        frames.decode_payload(payload, frames.responses)
    with pytest.raises(frames.InvalidFrame):  # a request must be a map: refused at the first byte
        frames.decode_payload(b"\x91" * 60_000 + b"\x00", frames.requests)


def test_an_answer_too_large_for_a_frame_is_never_encoded():
    with pytest.raises(frames.OversizedFrame):
        frames.encode_frame(frames.Result(id=1, status=200, body={"x": "y" * frames.MAX_FRAME}))


def _stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def test_frames_in_a_row_then_a_clean_end():
    first, second = frames.Heartbeat(id=1), frames.sign_frame(frames.Swipe, 2, "k", "s", b"\x80")
    reader = _stream(frames.encode_frame(first) + frames.encode_frame(second))
    assert await frames.read_request(reader) == first
    assert await frames.read_request(reader) == second
    assert await frames.read_request(reader) is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00\x00", frames.TruncatedFrame),  # ends inside the header
        (b"\x00\x00\x00\x10\x82", frames.TruncatedFrame),  # ends inside the payload
        ((frames.MAX_FRAME + 1).to_bytes(4, "big"), frames.OversizedFrame),
        (b"\xff\xff\xff\xff", frames.OversizedFrame),
        (_frame(b"\xc1"), frames.UndecodableFrame),  # 0xc1 is never used in MessagePack
        (_frame(b""), frames.UndecodableFrame),
        (_frame(msgspec.msgpack.encode({"type": "heartbeat", "id": 1}) + b"\x00"), frames.UndecodableFrame),
        (_frame(msgspec.msgpack.encode({"type": "refund", "id": 1})), frames.UnknownMessageType),
        (_frame(msgspec.msgpack.encode({"id": 1})), frames.UnknownMessageType),
        (_frame(msgspec.msgpack.encode({"type": 5, "id": 1})), frames.UnknownMessageType),
        (_frame(msgspec.msgpack.encode({"type": "heartbeat", "id": "1"})), frames.InvalidFrame),
        (_frame(msgspec.msgpack.encode({"type": "heartbeat", "id": -1})), frames.InvalidFrame),
        (_frame(msgspec.msgpack.encode({"type": "heartbeat", "id": 1, "extra": 0})), frames.InvalidFrame),
        (_frame(msgspec.msgpack.encode({"type": "swipe", "id": 1, "body": b""})), frames.InvalidFrame),
        (_frame(msgspec.msgpack.encode([1, 2])), frames.InvalidFrame),
    ],
    ids=[
        "ends in header",
        "ends in payload",
        "one byte too long",
        "4 GiB",
        "not msgpack",
        "empty payload",
        "trailing bytes",
        "unknown type",
        "no type",
        "type not text",
        "id is text",
        "negative id",
        "unknown field",
        "signed fields missing",
        "not a map",
    ],
)
async def test_each_unreadable_frame_is_a_frame_error(data, error):
    with pytest.raises(error) as raised:
        await frames.read_request(_stream(data))
    assert isinstance(raised.value, frames.FrameError)
    assert raised.value.reason and "refund" not in str(raised.value)


async def test_the_largest_frame_is_read():
    payload = msgspec.msgpack.encode({"type": "heartbeat", "id": 1})
    padded = payload + b"\x00" * (frames.MAX_FRAME - len(payload))
    with pytest.raises(frames.UndecodableFrame):  # read in full, then refused for its trailing bytes
        await frames.read_request(_stream(_frame(padded)))
