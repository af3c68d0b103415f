"""Request bodies into typed models, the same way through every door.

One decoder pair per model, built once, and one mapping of what can go wrong to a problem:
a field missing, unknown, of the wrong type or out of range is 422 ``validation_failed``
with its path in ``field``; bytes that are not JSON or MessagePack are 400 ``bad_request``;
a key sent twice is 400 ``duplicate_key``. The card reader decodes a frame's body here, and
HTTP's ``decode_body`` can after its Content-Type and size checks, so the same body is
refused with the same status, code and field whichever way it came.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from gateway.duplicate_keys import refuse_duplicate_keys
from gateway.problems import ApiError, validation_failed

T = TypeVar("T")

_decoders: dict[type, tuple[msgspec.json.Decoder[Any], msgspec.msgpack.Decoder[Any]]] = {}


def decoders(model: type[T]) -> tuple[msgspec.json.Decoder[T], msgspec.msgpack.Decoder[T]]:
    """The JSON and MessagePack decoders for ``model``, made on first use and kept."""
    pair = _decoders.get(model)
    if pair is None:
        pair = _decoders[model] = (msgspec.json.Decoder(model), msgspec.msgpack.Decoder(model))
    return pair


def decode(model: type[T], body: bytes, *, msgpack: bool) -> T:
    """``body`` (JSON, or MessagePack when ``msgpack``) as ``model``, or the ``ApiError`` HTTP answers with."""
    json_decoder, msgpack_decoder = decoders(model)
    try:
        value = msgpack_decoder.decode(body) if msgpack else json_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise validation_failed(error) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ApiError(
            400, "bad_request", f"the body is not valid {'MessagePack' if msgpack else 'JSON'}: {error}"
        ) from None
    refuse_duplicate_keys(body, msgpack=msgpack)  # the decoder kept the last silently
    return value
