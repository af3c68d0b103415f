"""The idempotency fingerprint is keyed: a stored fingerprint cannot be brute-forced back to a national ID."""

from __future__ import annotations

import hashlib

import msgspec

from gateway.api_models import ReversalRequest
from gateway.service import request_hash


def test_fingerprint_depends_on_the_pepper_and_is_not_a_plain_hash():
    request = ReversalRequest(request_id="r-1", reason="")
    first = request_hash(b"pepper-a", "reverse", request, "settlement")
    assert first == request_hash(b"pepper-a", "reverse", request, "settlement")
    assert first != request_hash(b"pepper-b", "reverse", request, "settlement")
    plain = hashlib.sha256(b"reverse\x00settlement\x00" + msgspec.json.encode(request)).digest()
    assert first != plain
