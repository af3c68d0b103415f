"""The card-reader wire format: length-prefixed MessagePack frames over TCP.

Village card readers cannot speak HTTP. Each message is one frame:

    4 bytes     payload length, big-endian unsigned, at most MAX_FRAME (64 KiB)
    payload     a MessagePack map whose "type" names the message

Requests (reader to gateway) are ``swipe``, ``settle``, ``quote`` and ``reversal``,
which are signed, and ``heartbeat``, which is not. A signed request carries its
body as MessagePack-encoded bytes, so the signature covers exactly the bytes sent:

    sig = signing.sign(secret, "FRAME", <type>, str(ts), nonce, body)

the HTTP construction with METHOD "FRAME" and PATH the message type. Answers
(gateway to reader) are ``result``, ``error`` and ``heartbeat_ack``; each echoes
the request's ``id``.

Reading never trusts the peer: a frame that is cut short, announces more than
MAX_FRAME, is not MessagePack, names an unknown type or has a field of the wrong
type raises a ``FrameError`` subclass, and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, TypeVar

import msgspec

from adapters import signing

MAX_FRAME = 64 * 1024
HEADER = 4
FRAME_METHOD = "FRAME"

FrameId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


# ---------------------------------------------------------------- errors


class FrameError(Exception):
    """A frame that cannot be read. ``reason`` is a short fixed label, safe for logs and metrics:
    it never carries the frame's bytes."""

    reason = "bad_frame"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TruncatedFrame(FrameError):
    reason = "truncated"


class OversizedFrame(FrameError):
    reason = "oversized"


class UndecodableFrame(FrameError):
    reason = "undecodable"


class UnknownMessageType(FrameError):
    reason = "unknown_type"


class InvalidFrame(FrameError):
    reason = "invalid_fields"


# ---------------------------------------------------------------- messages


class Frame(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    id: FrameId  # chosen by the reader, echoed in the answer


class Signed(Frame, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key_id: Annotated[str, msgspec.Meta(max_length=64)]
    ts: int  # Unix seconds
    nonce: Annotated[str, msgspec.Meta(max_length=64)]
    sig: Annotated[str, msgspec.Meta(max_length=128)]  # lower-case hex HMAC-SHA256
    body: bytes  # the MessagePack-encoded request body


class Swipe(Signed, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="swipe"):
    """Eligibility: body is {person_id, service_date?, clinic_id?} as for POST /v1/eligibility."""


class Settle(Signed, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="settle"):
    """Settle a bill: body is the bill as for POST /v1/settlements."""


class Quote(Signed, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="quote"):
    """Quote a bill, nothing written: body as for POST /v1/quotes."""


class Reversal(Signed, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="reversal"):
    """Reverse a settlement: body is {settlement_id, request_id, reason}."""


class Heartbeat(Frame, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="heartbeat"):
    """Unsigned: keeps an idle connection open and shows the gateway's clock."""


class Result(Frame, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="result"):
    status: int  # as HTTP would answer: 200, or 201 for a new settlement or reversal
    replayed: bool = False
    body: dict[str, Any]  # the JSON answer HTTP would give, as a map


class Error(Frame, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="error"):
    status: int
    code: str  # the same stable codes as the HTTP problems
    detail: str
    field: str | None = None
    retry_after: int | None = None


class HeartbeatAck(Frame, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="heartbeat_ack"):
    time: int  # the gateway's clock, Unix seconds


Request = Swipe | Settle | Quote | Reversal | Heartbeat
Response = Result | Error | HeartbeatAck
SignedRequest = Swipe | Settle | Quote | Reversal

REQUEST_TYPES: tuple[type[Frame], ...] = (Swipe, Settle, Quote, Reversal, Heartbeat)
RESPONSE_TYPES: tuple[type[Frame], ...] = (Result, Error, HeartbeatAck)

_encoder = msgspec.msgpack.Encoder()
requests = msgspec.msgpack.Decoder(Request)
responses = msgspec.msgpack.Decoder(Response)

S = TypeVar("S", bound=Signed)
M = TypeVar("M")


def type_name(message: Frame | type[Frame]) -> str:
    """The wire ``type`` of a message or message class, e.g. "settle"."""
    tag = message.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


# ---------------------------------------------------------------- signing


def sign_frame(
    kind: type[S],
    frame_id: int,
    key_id: str,
    secret: str,
    body: bytes,
    *,
    ts: int | None = None,
    nonce: str | None = None,
) -> S:
    """A signed request of class ``kind``; a fresh timestamp and nonce unless given."""
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or signing.new_nonce()
    sig = signing.sign(secret, FRAME_METHOD, type_name(kind), str(ts), nonce, body)
    return kind(id=frame_id, key_id=key_id, ts=ts, nonce=nonce, sig=sig, body=body)


def signature_headers(message: Signed) -> dict[str, str]:
    """The frame's signature as the HTTP headers ``Authenticator.verify`` reads."""
    return {
        "X-Key-Id": message.key_id,
        "X-Timestamp": str(message.ts),
        "X-Nonce": message.nonce,
        "X-Signature": message.sig,
    }


# ---------------------------------------------------------------- encoding and decoding


def encode_frame(message: Frame) -> bytes:
    payload = _encoder.encode(message)
    if len(payload) > MAX_FRAME:
        raise OversizedFrame(f"a {type_name(message)} message of {len(payload)} bytes does not fit in a frame")
    return len(payload).to_bytes(HEADER, "big") + payload


def frame_length(header: bytes) -> int:
    """The payload length a header announces; OversizedFrame past MAX_FRAME."""
    length = int.from_bytes(header, "big")
    if length > MAX_FRAME:
        raise OversizedFrame(f"the frame announces {length} bytes; at most {MAX_FRAME} are accepted")
    return length


def decode_payload(payload: bytes, decoder: msgspec.msgpack.Decoder[M]) -> M:
    """One message from one frame's payload, or a FrameError; never another exception."""
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as error:
        text = str(error)
        where = text.rsplit(" - at ", 1)[1] if " - at " in text else "`$`"
        if where == "`$.type`" or text.startswith("Object missing required field `type`"):
            raise UnknownMessageType(f"unknown or missing message type (at {where})") from None
        # Only the path, never a value: the detail is logged.
        raise InvalidFrame(f"a field is missing, unknown or of the wrong type (at {where})") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError, OverflowError):
        raise UndecodableFrame("the payload is not valid MessagePack") from None


async def read_frame(reader: asyncio.StreamReader, decoder: msgspec.msgpack.Decoder[M]) -> M | None:
    """The next message, or None at a clean end of stream (between frames)."""
    try:
        header = await reader.readexactly(HEADER)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise TruncatedFrame(f"the stream ended {len(error.partial)} bytes into a frame header") from None
    length = frame_length(header)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise TruncatedFrame(f"the stream ended {len(error.partial)} of {length} bytes into a frame") from None
    return decode_payload(payload, decoder)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    return await read_frame(reader, requests)


async def read_response(reader: asyncio.StreamReader) -> Response | None:
    return await read_frame(reader, responses)
