"""Find a key repeated within one object of a JSON or MessagePack body.

msgspec, like most decoders, keeps the last of two equal keys without a word. For money
that is ambiguous: a line with two ``amount`` keys, or a bill with two ``person_id``
keys, may be read one way by the terminal's software and another way by the gateway.
So the gateway refuses such a body (400 ``duplicate_key``, with the path of the repeat).

The check runs on every body that decoded, so its common case is built to be cheap and
to do its work in C: it only has to prove that no key was lost.

* JSON: a valid document has one colon per key, plus the colons inside its strings. A
  body that lost no key to the decoder has as many as its decoded value re-encoded: one
  ``count(b":")`` of each (and of ``\\u003a`` when the body has escapes) tells them apart.
* MessagePack: map headers carry their counts, so a body that re-encodes to the same
  bytes lost nothing. Encoders that write the shortest form (msgspec, msgpack-python,
  most others) always do; a body written another way is read by a small skimmer instead.

Only when a key was lost is the body read again, slowly, to name the path of the repeat
in the form msgspec uses for validation errors (``items[0].amount``).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import msgspec

from gateway.problems import ApiError

_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


class Duplicate(NamedTuple):
    key: str
    path: str | None  # None when the key repeats but its place could not be named


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------- JSON


def json_duplicate(body: bytes) -> Duplicate | None:
    """The first key repeated within one object of ``body`` (valid JSON), or None."""
    try:
        canonical = _json_encoder.encode(_json_decoder.decode(body))
    except (msgspec.DecodeError, msgspec.EncodeError, RecursionError):
        return _find_json_duplicate(body)  # the typed decoder took it; read it the slow way
    # Colons are the keys' plus those inside strings. The re-encoding keeps every string the
    # decoder kept, writes each colon as itself, and has one colon per key it kept. The body
    # has one per key it sent, and at most as many colons in strings as it has ":" and
    # "\u003a" (a "\\u003a" is counted too, which only sends the body the slow way).
    # So the sums are equal when no key was lost, and the body's is larger when one was.
    colons = body.count(b":")
    if b"\\" in body:
        colons += body.count(b"\\u003a") + body.count(b"\\u003A")
    if colons == canonical.count(b":"):
        return None
    return _find_json_duplicate(body)


def _find_json_duplicate(body: bytes) -> Duplicate | None:
    repeated: dict[int, str] = {}  # id of the object -> its first repeated key
    made: list[dict[str, Any]] = []  # kept alive, so no id is reused by a later object

    def object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        made.append(value)
        if len(value) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    repeated.setdefault(id(value), key)
                seen.add(key)
        return value

    try:
        document = json.loads(body, object_pairs_hook=object_from_pairs)
    except (ValueError, RecursionError):  # e.g. an integer longer than Python's digit limit
        return Duplicate("", None)
    if not repeated:
        return None
    return _locate(document, repeated, "")


def _locate(value: Any, repeated: dict[int, str], path: str) -> Duplicate | None:
    if isinstance(value, dict):
        if id(value) in repeated:
            key = repeated[id(value)]
            return Duplicate(key, _join(path, key))
        for key, item in value.items():
            found = _locate(item, repeated, _join(path, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _locate(item, repeated, f"{path}[{index}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------- MessagePack


def msgpack_duplicate(body: bytes) -> Duplicate | None:
    """The first key repeated within one map of ``body`` (valid MessagePack), or None."""
    try:
        if _msgpack_encoder.encode(_msgpack_decoder.decode(body)) == body:
            return None
    except (msgspec.DecodeError, msgspec.EncodeError, RecursionError):
        pass
    try:
        _Skimmer(body).value("")
    except _Repeated as repeated:
        return repeated.duplicate
    except (IndexError, msgspec.DecodeError, RecursionError):
        return None  # not MessagePack after all: the typed decoder has the last word
    return None


class _Repeated(Exception):
    def __init__(self, duplicate: Duplicate) -> None:
        self.duplicate = duplicate


# Byte counts of the fixed-width values, by their first byte.
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED |= {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
# The width of the length that follows the first byte: bin, ext (plus a type byte), str, array, map.
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}
_MAP = {0xDE: 2, 0xDF: 4}
_STR_HEADER = {0xD9: 2, 0xDA: 3, 0xDB: 5}  # bytes before a str8, str16 or str32's text


class _Skimmer:
    """Walks MessagePack bytes without building values, raising ``_Repeated`` at a repeated map key."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.position = 0

    def _length(self, width: int) -> int:
        start = self.position
        self.position += width
        if self.position > len(self.body):
            raise IndexError("truncated")
        return int.from_bytes(self.body[start : self.position], "big")

    def value(self, path: str) -> None:
        first = self.body[self.position]
        self.position += 1
        if first <= 0x7F or first >= 0xE0:
            return
        if 0x80 <= first <= 0x8F:
            return self._map(first & 0x0F, path)
        if 0x90 <= first <= 0x9F:
            return self._array(first & 0x0F, path)
        if 0xA0 <= first <= 0xBF:
            self.position += first & 0x1F
        elif first in _FIXED:
            self.position += _FIXED[first]
        elif first in _SIZED:
            length = self._length(_SIZED[first])  # read before moving past it
            self.position += length
        elif first in _EXT:
            length = self._length(_EXT[first]) + 1  # the ext's type byte, then its data
            self.position += length
        elif first in _ARRAY:
            return self._array(self._length(_ARRAY[first]), path)
        elif first in _MAP:
            return self._map(self._length(_MAP[first]), path)
        else:
            raise IndexError(f"0x{first:02x} is not a MessagePack type")
        if self.position > len(self.body):
            raise IndexError("truncated")

    def _array(self, count: int, path: str) -> None:
        for index in range(count):
            self.value(f"{path}[{index}]")

    def _map(self, count: int, path: str) -> None:
        seen: set[Any] = set()
        for _ in range(count):
            start = self.position
            self.value(path)
            first = self.body[start]
            header = 1 if 0xA0 <= first <= 0xBF else _STR_HEADER.get(first)
            key: Any
            if header:  # a string, the usual key: its UTF-8 is its identity
                key = self.body[start + header : self.position].decode(errors="replace")
            else:
                key = msgspec.msgpack.decode(self.body[start : self.position])
            if not isinstance(key, str | int | float | bool | bytes | None):
                key = self.body[start : self.position]  # a map or array as a key: compare its bytes
            if key in seen:
                name = key if isinstance(key, str) else repr(key)
                raise _Repeated(Duplicate(name, _join(path, name)))
            seen.add(key)
            self.value(_join(path, key if isinstance(key, str) else repr(key)))


def refuse_duplicate_keys(body: bytes, *, msgpack: bool) -> None:
    """Raise 400 ``duplicate_key`` naming the repeat, for a body that decoded but repeats a key."""
    found = msgpack_duplicate(body) if msgpack else json_duplicate(body)
    if found is not None:
        where = f" at {found.path}" if found.path else ""
        raise ApiError(
            400,
            "duplicate_key",
            f"the key {found.key!r} appears more than once in one object{where}; send each key once",
            field=found.path,
        )
