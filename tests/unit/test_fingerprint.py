"""The idempotency fingerprint is keyed: a stored fingerprint cannot be brute-forced back to a national ID."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path

import msgspec
import pytest

from gateway.api_models import ReversalRequest, SettleRequest
from gateway.service import request_hash

WORKED_EXAMPLE = (Path(__file__).resolve().parents[2] / "samples" / "bill-worked-example.json").read_bytes()


def test_fingerprint_depends_on_the_pepper_and_is_not_a_plain_hash():
    request = ReversalRequest(request_id="r-1", reason="")
    first = request_hash(b"pepper-a", "reverse", request, "settlement")
    assert first == request_hash(b"pepper-a", "reverse", request, "settlement")
    assert first != request_hash(b"pepper-b", "reverse", request, "settlement")
    plain = hashlib.sha256(b"reverse\x00settlement\x00" + msgspec.json.encode(request)).digest()
    assert first != plain


def test_a_bill_without_his_details_keeps_the_fingerprint_it_had_before_they_existed():
    """Settlements stored before bills carried HIS details hold the fingerprint of the request as it then
    was: a retry of such a bill must still match, or it would be refused as a reused request id."""
    request = msgspec.json.decode(WORKED_EXAMPLE, type=SettleRequest)
    as_it_was = (
        '{"request_id":"demo-0001","clinic_id":"C001","person_id":"410102196003020026","visit_type":"inpatient",'
        '"service_date":"2026-05-01","items":[{"code":"DRUG-001","name":"头孢曲松钠","category":"A",'
        '"amount":1400000,"quantity":200,"unit_price":7000},{"code":"MAT-002","name":"冠脉支架","category":"B",'
        '"amount":400000,"quantity":1,"unit_price":400000},{"code":"SVC-003","name":"单人病房","category":"C",'
        '"amount":200000,"quantity":10,"unit_price":20000}],"referral":false}'
    ).encode()
    expected = hmac.new(b"pepper", b"settle", hashlib.sha256)
    expected.update(b"\x00" + as_it_was)
    assert request_hash(b"pepper", "settle", request.fingerprinted()) == expected.digest()[:16]


def test_his_details_are_part_of_the_fingerprint_when_given():
    request = msgspec.json.decode(WORKED_EXAMPLE, type=SettleRequest)
    with_invoice = msgspec.structs.replace(request, invoice_number="0413-88172")
    other_invoice = msgspec.structs.replace(request, invoice_number="0413-88173")
    fingerprints = {
        request_hash(b"pepper", "settle", each.fingerprinted()) for each in (request, with_invoice, other_invoice)
    }
    assert len(fingerprints) == 3


@pytest.mark.parametrize(
    "details",
    [
        {},
        {"invoice_number": "0413-88172"},
        {"diagnoses": ["J18.900"]},
        {"discharged_on": dt.date(2026, 5, 9), "admitted_on": dt.date(2026, 5, 1)},
        {"his_visit_id": "ZY-1", "operator": "王敏"},
        {"referral": True},
    ],
)
def test_the_fingerprint_covers_every_field_and_the_details_given(details: dict[str, object]) -> None:
    request = msgspec.structs.replace(msgspec.json.decode(WORKED_EXAMPLE, type=SettleRequest), **details)
    fields = msgspec.structs.asdict(request)
    covered = {name: value for name, value in fields.items() if name not in SettleRequest.DETAIL_FIELDS}
    covered |= {name: value for name, value in fields.items() if name in details}
    assert request.fingerprinted() == msgspec.json.encode(covered)
