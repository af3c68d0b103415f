"""A JSON body that cannot hold a control character is decoded without the text fields' NO_CONTROL pattern
(gateway.bodies.relaxed): it must give what the model itself gives, value or refusal, for any body."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import api_models as api
from gateway.bodies import NO_CONTROL, decode, relaxed
from gateway.problems import ApiError, validation_failed

BILL: dict[str, Any] = {
    "request_id": "r-1",
    "clinic_id": "C001",
    "person_id": "410102196003020026",
    "visit_type": "inpatient",
    "service_date": "2026-05-01",
    "items": [{"code": "DRUG-001", "name": "头孢曲松钠", "category": "A", "amount": 7000}],
}

# Text a terminal may send: mostly ordinary, sometimes a character NO_CONTROL refuses or one it allows.
_TEXT = st.text(
    alphabet=st.sampled_from(["a", "Z", "7", "-", " ", "头", "\\", '"', "\t", "\n", "\r", "\x00", "\x08", "\x0b",
                              "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\u2028"]),
    min_size=1,
    max_size=8,
)  # fmt: skip


def _outcome(model: type[Any], body: bytes) -> object:
    try:
        return decode(model, body, msgpack=False)
    except ApiError as error:
        return (error.status, error.code, error.field)


def _strict(model: type[Any], body: bytes) -> object:
    """What the model's own decoder, patterns and all, makes of the body, as ``decode`` reports it."""
    try:
        value = msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as error:
        problem = validation_failed(error)
        return (problem.status, problem.code, problem.field)
    return value


@given(
    code=_TEXT,
    name=_TEXT,
    clinic=_TEXT,
    operator=st.none() | _TEXT,
    ascii_only=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_a_bill_decodes_as_the_model_decodes_it_whatever_its_text(
    code: str, name: str, clinic: str, operator: str | None, ascii_only: bool
) -> None:
    bill = BILL | {"clinic_id": clinic, "items": [BILL["items"][0] | {"code": code, "name": name}]}
    if operator is not None:
        bill["operator"] = operator
    body = json.dumps(bill, ensure_ascii=ascii_only).encode()
    found, expected = _outcome(api.SettleRequest, body), _strict(api.SettleRequest, body)
    if isinstance(expected, api.SettleRequest):
        # A twin's value is an instance of the model (== holds only within one class), with the same fields.
        assert isinstance(found, api.SettleRequest)
        assert all(isinstance(item, api.ItemIn) for item in found.items)
        assert msgspec.json.encode(found) == msgspec.json.encode(expected)
    else:
        assert found == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("a\x7fb", "items[0].name"),  # sent raw: JSON allows it
        ("a\x00b", "items[0].name"),
        ("a\x1bb", "items[0].name"),
        ("\x0c", "items[0].name"),
    ],
)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_a_control_character_in_a_name_is_still_refused(text: str, field: str, ascii_only: bool) -> None:
    body = json.dumps(BILL | {"items": [BILL["items"][0] | {"name": text}]}, ensure_ascii=ascii_only).encode()
    with pytest.raises(ApiError) as refused:
        decode(api.SettleRequest, body, msgpack=False)
    assert (refused.value.status, refused.value.code, refused.value.field) == (422, "validation_failed", field)


def _without_the_guard(schema: Any) -> Any:
    """A JSON Schema with the NO_CONTROL patterns taken out."""
    if isinstance(schema, dict):
        return {
            key: _without_the_guard(value)
            for key, value in schema.items()
            if not (key == "pattern" and value == NO_CONTROL)
        }
    if isinstance(schema, list):
        return [_without_the_guard(value) for value in schema]
    return schema


@pytest.mark.parametrize("model", [api.SettleRequest, api.ItemIn, api.PersonRequest, api.ReversalRequest])
def test_the_twin_differs_from_its_model_by_the_control_character_pattern_only(model: type[Any]) -> None:
    twin = relaxed(model)
    assert issubclass(twin, model)
    assert twin.__struct_fields__ == model.__struct_fields__
    assert msgspec.structs.fields(twin) != msgspec.structs.fields(model)  # it did leave a pattern out
    assert _without_the_guard(msgspec.json.schema(twin)) == _without_the_guard(msgspec.json.schema(model))
    assert NO_CONTROL not in json.dumps(msgspec.json.schema(twin))


def test_a_model_without_the_pattern_is_its_own_twin() -> None:
    plain = msgspec.defstruct("Plain", [("amount", int)])
    assert relaxed(plain) is plain
