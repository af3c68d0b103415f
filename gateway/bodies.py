"""Request bodies into typed models, the same way through every door.

One decoder pair per model, built once, and one mapping of what can go wrong to a problem:
a field missing, unknown, of the wrong type or out of range is 422 ``validation_failed``
with its path in ``field``; bytes that are not JSON or MessagePack are 400 ``bad_request``;
a key sent twice is 400 ``duplicate_key``. The card reader decodes a frame's body here, and
HTTP's ``decode_body`` does after its Content-Type and size checks, so the same body is
refused with the same status, code and field whichever way it came.

Text fields refuse control characters with the pattern ``NO_CONTROL``, which msgspec runs as a regular
expression call per string: for a 10-line bill that is over half the decode. A JSON body cannot carry a
raw control character inside a string (the decoder refuses it as malformed), only an escaped one or a raw
DEL; so a JSON body with neither is decoded by a twin of the model that leaves that one pattern out
(``relaxed``), and gives the same value, or the same error, as the model itself.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from typing import Annotated, Any, TypeVar

import msgspec

from gateway.duplicate_keys import refuse_duplicate_keys
from gateway.problems import ApiError, validation_failed

T = TypeVar("T")

# Text fields refuse control characters: PostgreSQL cannot store NUL, and none belongs in a bill. Tab, line
# feed and carriage return are allowed (a reason may have lines).
NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

# What in a JSON body can become a character NO_CONTROL refuses: a raw DEL, or an escape that may decode
# to one (\b, \f, \u0000-\u001f, \u007f). It may also match what cannot (an escaped backslash before a
# "b"), which only sends that body through the model's own patterns.
_MAY_HOLD_CONTROL = re.compile(rb"\x7f|\\(?:[bf]|u00[01][0-9A-Fa-f]|u007[Ff])")


class Decoders(typing.NamedTuple, typing.Generic[T]):
    json: msgspec.json.Decoder[T]
    msgpack: msgspec.msgpack.Decoder[T]
    clean_json: msgspec.json.Decoder[T]  # for a JSON body ``_MAY_HOLD_CONTROL`` finds nothing in


_decoders: dict[type, Decoders[Any]] = {}


def decoders(model: type[T]) -> Decoders[T]:
    """The decoders for ``model``, made on first use and kept."""
    found = _decoders.get(model)
    if found is None:
        found = _decoders[model] = Decoders(
            msgspec.json.Decoder(model), msgspec.msgpack.Decoder(model), msgspec.json.Decoder(relaxed(model))
        )
    return found


def relaxed(model: type[T]) -> type[T]:
    """``model`` without the ``NO_CONTROL`` pattern on its text fields, nested models included: a subclass
    that redefines only those fields, with every other limit, default and setting kept (``model`` itself
    when it has none). Its values are instances of ``model``, and encode as ``model``'s do."""
    return _relaxed_struct(model, {}) if isinstance(model, type) and issubclass(model, msgspec.Struct) else model


_META_OPTIONS = (
    "gt", "ge", "lt", "le", "multiple_of", "pattern", "min_length", "max_length", "tz",
    "title", "description", "examples", "extra_json_schema", "extra",
)  # fmt: skip


def _relaxed_struct(model: type[Any], made: dict[type, type]) -> type[Any]:
    if model in made:
        return made[model]
    made[model] = model  # a model that holds itself is left as it is
    changed: list[tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(model):
        annotation = _relaxed_type(field.type, made)
        if annotation == field.type:
            continue
        if field.default_factory is not msgspec.NODEFAULT:
            changed.append((field.name, annotation, msgspec.field(default_factory=field.default_factory)))
        elif field.default is not msgspec.NODEFAULT:
            changed.append((field.name, annotation, field.default))
        else:
            changed.append((field.name, annotation))  # type: ignore[arg-type]
    if changed:
        config = model.__struct_config__
        made[model] = msgspec.defstruct(
            model.__name__,  # its errors and its values' repr read as the model's
            changed,
            bases=(model,),
            module=model.__module__,
            namespace={"__doc__": model.__doc__, "__qualname__": model.__qualname__},
            kw_only=True,
            frozen=config.frozen,
            forbid_unknown_fields=config.forbid_unknown_fields,
        )
    return made[model]


def _relaxed_type(annotation: Any, made: dict[type, type]) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return Annotated[(_relaxed_type(args[0], made), *(_relaxed_meta(meta) for meta in args[1:]))]
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return _relaxed_struct(annotation, made)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_relaxed_type(arg, made) for arg in args)]  # noqa: UP007
    if origin in (list, tuple, set, frozenset, dict):
        return origin[tuple(arg if arg is Ellipsis else _relaxed_type(arg, made) for arg in args)]
    return annotation


def _relaxed_meta(meta: Any) -> Any:
    if not isinstance(meta, msgspec.Meta) or meta.pattern != NO_CONTROL:
        return meta
    kept = {name: getattr(meta, name) for name in _META_OPTIONS if name != "pattern"}
    return msgspec.Meta(**{name: value for name, value in kept.items() if value is not None})


def decode(model: type[T], body: bytes, *, msgpack: bool, max_lines: int | None = None) -> T:
    """``body`` (JSON, or MessagePack when ``msgpack``) as ``model``, or the ``ApiError`` HTTP answers with.

    With ``max_lines``, a bill with more lines is refused (413 ``too_many_lines``) before any
    line is decoded or checked for repeated keys.
    """
    if max_lines is not None:
        refuse_too_many_lines(body, max_lines, msgpack=msgpack)
    found = decoders(model)
    if msgpack:
        decoder: msgspec.json.Decoder[T] | msgspec.msgpack.Decoder[T] = found.msgpack
    elif (b"\\" not in body and b"\x7f" not in body) or _MAY_HOLD_CONTROL.search(body) is None:
        decoder = found.clean_json
    else:
        decoder = found.json
    try:
        value = decoder.decode(body)
    except msgspec.ValidationError as error:
        raise validation_failed(error) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ApiError(
            400, "bad_request", f"the body is not valid {'MessagePack' if msgpack else 'JSON'}: {error}"
        ) from None
    refuse_duplicate_keys(body, msgpack=msgpack)  # the decoder kept the last silently
    return value


@functools.cache
def _line_counters(max_lines: int) -> tuple[msgspec.json.Decoder[Any], msgspec.msgpack.Decoder[Any]]:
    """Decoders that read only how many lines a bill has, skipping every line unread.

    MessagePack states an array's length in its header, so an over-long bill is refused in
    microseconds; JSON lines are only delimited, in C. Either way no line is decoded and no
    key is checked for repeats before the count is known (30,000 lines cost ~0.1 s of that).
    """
    lines = Annotated[list[msgspec.Raw], msgspec.Meta(max_length=max_lines)]
    LineCount = msgspec.defstruct("LineCount", [("items", lines, [])])
    return msgspec.json.Decoder(LineCount), msgspec.msgpack.Decoder(LineCount)


def refuse_too_many_lines(body: bytes, max_lines: int, *, msgpack: bool) -> None:
    json_counter, msgpack_counter = _line_counters(max_lines)
    try:
        msgpack_counter.decode(body) if msgpack else json_counter.decode(body)
    except msgspec.ValidationError as error:
        if str(error).endswith("- at `$.items`") and "length <=" in str(error):
            raise ApiError(413, "too_many_lines", f"a bill may have at most {max_lines} lines", field="items") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass  # not readable at all (or nested too deep): the full decode names the problem
