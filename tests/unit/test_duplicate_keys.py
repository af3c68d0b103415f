"""The repeated-key check against a reference, on documents with every awkward spelling.

``gateway.duplicate_keys`` takes a shortcut (it counts keys instead of reading them) and a
MessagePack skimmer of its own, so both are checked here against what the documents are
known to hold: generated as lists of pairs, written with random whitespace, escapes and
integer and string widths, and then asked "is a key repeated anywhere, and where?".
Failures print the falsifying example and a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import api_models as api
from gateway import bodies
from gateway.duplicate_keys import Duplicate, _find_json_duplicate, json_duplicate, msgpack_duplicate
from gateway.problems import ApiError

CHECKS = settings(max_examples=400, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])


class Obj(tuple[tuple[str, Any], ...]):
    """An object as the list of its pairs, so that a key may repeat."""


# Characters that matter to the counting: quotes, backslashes, colons, brackets, non-ASCII.
awkward = st.text(alphabet=st.sampled_from('ab:"\\{}[], é中\n\u2028'), max_size=4)
keys = awkward | st.sampled_from(["amount", "person_id", "items"])
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | awkward
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.lists(st.tuples(keys, children), max_size=4).map(Obj),
    max_leaves=12,
).map(lambda value: value if isinstance(value, Obj) else Obj((("value", value),)))


def repeated_keys(value: Any) -> set[str]:
    """Every key that repeats within one object, anywhere in the document."""
    found: set[str] = set()
    if isinstance(value, Obj):
        names = [key for key, _ in value]
        found |= {key for key in names if names.count(key) > 1}
        for _, item in value:
            found |= repeated_keys(item)
    elif isinstance(value, list):
        for item in value:
            found |= repeated_keys(item)
    return found


def write_json(value: Any, rng: random.Random, *, escapes: bool = True) -> str:
    """JSON with random whitespace and, if ``escapes``, random ``\\u`` escapes of any character."""

    def space() -> str:
        return "".join(rng.choice(" \t\r\n") for _ in range(rng.choice([0, 0, 0, 1, 2])))

    def text(string: str) -> str:
        if escapes and rng.random() < 0.3:  # every character as a \\u escape, even a quote or a backslash
            hex_format = rng.choice(["04x", "04X"])
            escaped = (f"\\u{ord(char):{hex_format}}" if ord(char) < 0x10000 else char for char in string)
            return '"' + "".join(escaped) + '"'
        return json.dumps(string, ensure_ascii=escapes and rng.random() < 0.5)

    if isinstance(value, Obj):
        pairs = [
            f"{space()}{text(key)}{space()}:{space()}{write_json(item, rng, escapes=escapes)}{space()}"
            for key, item in value
        ]
        return "{" + ",".join(pairs) + space() + "}"
    if isinstance(value, list):
        items = (space() + write_json(item, rng, escapes=escapes) + space() for item in value)
        return "[" + ",".join(items) + space() + "]"
    if isinstance(value, str):
        return text(value)
    return json.dumps(value)


def write_msgpack(value: Any, rng: random.Random) -> bytes:
    """MessagePack with a random valid width for every integer, string and header, not only the shortest."""

    def header(size: int, fixed: int | None, fixed_limit: int, wide: list[tuple[int, int]]) -> bytes:
        choices = [bytes([fixed | size])] if fixed is not None and size < fixed_limit else []
        choices += [bytes([code]) + size.to_bytes(width, "big") for code, width in wide if size < 256**width]
        return rng.choice(choices)

    if value is None:
        return b"\xc0"
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, bytes):
        return header(len(value), None, 0, [(0xC4, 1), (0xC5, 2), (0xC6, 4)]) + value
    if isinstance(value, msgspec.msgpack.Ext):
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}.get(len(value.data))
        head = rng.choice(([bytes([fixed])] if fixed else []) + [b"\xc7" + bytes([len(value.data)])])
        return head + value.code.to_bytes(1, "big", signed=True) + value.data
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        choices = []
        if 0 <= value < 128 or -32 <= value < 0:
            choices.append(value.to_bytes(1, "big", signed=value < 0))
        for code, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if 0 <= value < 256**width:
                choices.append(bytes([code]) + value.to_bytes(width, "big"))
        for code, width in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if -(256**width) // 2 <= value < 256**width // 2:
                choices.append(bytes([code]) + value.to_bytes(width, "big", signed=True))
        return rng.choice(choices)
    if isinstance(value, str):
        data = value.encode()
        return header(len(data), 0xA0, 32, [(0xD9, 1), (0xDA, 2), (0xDB, 4)]) + data
    if isinstance(value, Obj):
        head = header(len(value), 0x80, 16, [(0xDE, 2), (0xDF, 4)])
        return head + b"".join(write_msgpack(key, rng) + write_msgpack(item, rng) for key, item in value)
    head = header(len(value), 0x90, 16, [(0xDC, 2), (0xDD, 4)])
    return head + b"".join(write_msgpack(item, rng) for item in value)


def agrees(found: Duplicate | None, repeated: set[str]) -> None:
    if not repeated:
        assert found is None
    else:
        assert found is not None and found.key in repeated, (found, repeated)
        assert found.path is not None and found.path.endswith(found.key)


@CHECKS
@given(documents, st.randoms(use_true_random=False))
@example(Obj((("a", '"\\":'), ("b", Obj((("c", 1), ("c", 2)))))), random.Random(0))
def test_json(document: Obj, rng: random.Random) -> None:
    body = write_json(document, rng).encode()
    msgspec.json.decode(body)  # the generator writes valid JSON
    found = json_duplicate(body)
    agrees(found, repeated_keys(document))
    assert found == _find_json_duplicate(body)  # the shortcut and the slow reading agree


# Without quotes, backslashes or control characters a writer needs no escapes: the shortcut's other path.
plain = st.text(alphabet=st.sampled_from("ab:{}[], é中\u2028"), max_size=4)
plain_documents = st.recursive(
    st.none() | st.integers() | plain,
    lambda children: (
        st.lists(children, max_size=3) | st.lists(st.tuples(plain | st.just("amount"), children), max_size=4).map(Obj)
    ),
    max_leaves=12,
).map(lambda value: value if isinstance(value, Obj) else Obj((("value", value),)))


@CHECKS
@given(plain_documents, st.randoms(use_true_random=False))
def test_json_without_escapes(document: Obj, rng: random.Random) -> None:
    body = write_json(document, rng, escapes=False).encode()
    assert b"\\" not in body
    found = json_duplicate(body)
    agrees(found, repeated_keys(document))
    assert found == _find_json_duplicate(body)


# MessagePack carries more than JSON: floats, binary and extension types (an unknown one, 5).
msgpack_documents = st.recursive(
    scalars | st.floats() | st.binary(max_size=20) | st.builds(msgspec.msgpack.Ext, st.just(5), st.binary(max_size=17)),
    lambda children: st.lists(children, max_size=3) | st.lists(st.tuples(keys, children), max_size=4).map(Obj),
    max_leaves=12,
).map(lambda value: value if isinstance(value, Obj) else Obj((("value", value),)))


@CHECKS
@given(msgpack_documents, st.randoms(use_true_random=False))
def test_msgpack(document: Obj, rng: random.Random) -> None:
    body = write_msgpack(document, rng)
    msgspec.msgpack.decode(body)  # the generator writes valid MessagePack
    agrees(msgpack_duplicate(body), repeated_keys(document))


def test_paths_name_the_repeat_as_validation_errors_do() -> None:
    bill = b'{"request_id":"r","items":[{"amount":1},{"amount":100,"code":"X","amount":1}]}'
    assert json_duplicate(bill) == Duplicate("amount", "items[1].amount")
    assert json_duplicate(b'{"person_id":"1","person_id":"2"}') == Duplicate("person_id", "person_id")
    assert json_duplicate(b'{"person_id":"1","person_\\u0069d":"2"}') == Duplicate("person_id", "person_id")
    # An escaped colon in a string, and an escaped backslash before "u003a", which is no colon at all.
    assert json_duplicate(b'{"a":"\\u003A","b":"\\\\u003a","c":1}') is None
    assert json_duplicate(b'{"a":"\\u003a","b":"\\\\u003a","b":1}') == Duplicate("b", "b")
    items = b"\x91\x82\xa6amount\x01\xa6amount\x02"
    assert msgpack_duplicate(b"\x81\xa5items" + items) == Duplicate("amount", "items[0].amount")


def test_a_card_reader_body_with_a_repeated_key_is_refused_as_over_http() -> None:
    body = msgspec.msgpack.encode({"person_id": "410103195001010012", "clinic_id": "V001"})
    repeated = bytes([body[0] + 1]) + body[1:] + msgspec.msgpack.encode("person_id") + msgspec.msgpack.encode("1")
    assert bodies.decode(api.EligibilityRequest, body, msgpack=True).clinic_id == "V001"
    with pytest.raises(ApiError) as refused:
        bodies.decode(api.EligibilityRequest, repeated, msgpack=True)
    assert (refused.value.status, refused.value.code, refused.value.field) == (400, "duplicate_key", "person_id")
