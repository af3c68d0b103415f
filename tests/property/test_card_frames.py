"""Fuzzing the card-reader frame decoder with Hypothesis.

A card reader's bytes arrive from a village network and may be anything. Whatever
they are, reading them gives a well-formed message of a known type or a
``FrameError`` (which closes that one connection), and never any other
exception, which would be a bug in the listener's only line of defence.

Failures print the falsifying example and a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import card_frames as frames

FUZZ = settings(
    max_examples=1500,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TAGS = [frames.type_name(kind) for kind in (*frames.REQUEST_TYPES, *frames.RESPONSE_TYPES)]
FIELDS = sorted({field for kind in (*frames.REQUEST_TYPES, *frames.RESPONSE_TYPES) for field in kind.__struct_fields__})

# What MessagePack can carry: every integer width, floats (NaN and infinities too), text, bytes, nesting.
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
# One level of nesting here (cheap to generate); deep nesting is a unit test.
values = leaves | st.lists(leaves, max_size=4) | st.dictionaries(st.text(max_size=6), leaves, max_size=4)
keys = st.sampled_from(FIELDS) | st.text(max_size=8) | st.integers(-5, 5)
types = st.sampled_from(TAGS) | st.text(max_size=12) | leaves

# Valid messages, to mutate and to round-trip.
ids = st.integers(min_value=0, max_value=2**63 - 1)
signed_fields = {
    "id": ids,
    "key_id": st.text(max_size=64),
    "ts": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "nonce": st.text(max_size=64),
    "sig": st.text(max_size=128),
    "body": st.binary(max_size=200),
}
valid_messages = st.one_of(
    *(st.builds(kind, **signed_fields) for kind in (frames.Swipe, frames.Settle, frames.Quote, frames.Reversal)),
    st.builds(frames.Heartbeat, id=ids),
    st.builds(
        frames.Result,
        id=ids,
        status=st.integers(100, 599),
        replayed=st.booleans(),
        body=st.dictionaries(st.text(max_size=6), values, max_size=5),
    ),
    st.builds(
        frames.Error,
        id=ids,
        status=st.integers(100, 599),
        code=st.text(max_size=20),
        detail=st.text(max_size=40),
        field=st.none() | st.text(max_size=20),
        retry_after=st.none() | st.integers(0, 3600),
    ),
    st.builds(frames.HeartbeatAck, id=ids, time=st.integers(0, 2**40)),
)


def read(payload: bytes) -> None:
    """Decode as a request and as an answer: a message of the right kind or a FrameError, nothing else."""
    for decoder, kinds in ((frames.requests, frames.REQUEST_TYPES), (frames.responses, frames.RESPONSE_TYPES)):
        try:
            message = frames.decode_payload(payload, decoder)
        except frames.FrameError as error:
            assert error.reason in {"undecodable", "unknown_type", "invalid_fields"}
            continue
        assert isinstance(message, kinds)
        # What was accepted is a message we could send again, and it reads back the same
        # (compared as bytes: a NaN in an answer's body is not equal to itself).
        again = frames.encode_frame(message)
        assert frames.encode_frame(frames.decode_payload(again[4:], decoder)) == again


@FUZZ
@given(st.binary(max_size=300))
def test_random_payloads(payload: bytes) -> None:
    read(payload)


@FUZZ
@given(st.dictionaries(keys, values, max_size=6), types)
def test_plausible_maps(fields: dict[Any, Any], message_type: Any) -> None:
    read(msgspec.msgpack.encode({**fields, "type": message_type}))


@FUZZ
@given(valid_messages, st.data())
def test_valid_messages_round_trip_and_mutants_are_refused_or_read(message: frames.Frame, data: st.DataObject) -> None:
    encoded = frames.encode_frame(message)
    assert frames.frame_length(encoded[:4]) == len(encoded) - 4
    decoder = frames.requests if isinstance(message, frames.REQUEST_TYPES) else frames.responses
    assert frames.encode_frame(frames.decode_payload(encoded[4:], decoder)) == encoded
    # One field changed, dropped or added, or the payload's bytes cut or flipped.
    fields = msgspec.to_builtins(message, builtin_types=(bytes,))
    mutation = data.draw(st.sampled_from(["replace", "drop", "add", "cut", "flip"]))
    if mutation in ("replace", "drop", "add"):
        name = data.draw(st.sampled_from(sorted(fields)) if mutation != "add" else keys)
        if mutation == "drop":
            del fields[name]
        else:
            fields[name] = data.draw(values)
        read(msgspec.msgpack.encode(fields))
    elif mutation == "cut":
        read(encoded[4 : data.draw(st.integers(4, len(encoded) - 1))])
    else:
        position = data.draw(st.integers(4, len(encoded) - 1))
        flipped = bytearray(encoded)
        flipped[position] ^= data.draw(st.integers(1, 255))
        read(bytes(flipped[4:]))


class _Stream:
    """Just enough of asyncio.StreamReader for ``read_frame``, with no event loop."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def readexactly(self, count: int) -> bytes:
        chunk, self.data = self.data[:count], self.data[count:]
        if len(chunk) < count:
            raise asyncio.IncompleteReadError(chunk, count)
        return chunk


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("read_frame waited for something other than its stream")


@FUZZ
@given(
    st.lists(
        st.one_of(
            valid_messages.map(frames.encode_frame),
            st.binary(max_size=60),
            st.binary(max_size=60).map(lambda payload: len(payload).to_bytes(4, "big") + payload),
            st.integers(0, 2**32 - 1).map(lambda length: length.to_bytes(4, "big")),
        ),
        max_size=6,
    )
)
def test_byte_streams(chunks: list[bytes]) -> None:
    """A connection's whole stream: frames are read in order until the end, or one FrameError stops it."""
    stream = _Stream(b"".join(chunks))
    read_count = 0
    while True:
        try:
            message = _run(frames.read_frame(stream, frames.requests))
        except frames.FrameError:
            break
        if message is None:
            assert stream.data == b""
            break
        assert isinstance(message, frames.REQUEST_TYPES)
        read_count += 1
    assert read_count <= len(chunks)
