"""What refusing repeated keys costs per request, on a 20-line bill.

    .venv/bin/python -m benchmarks.duplicate_keys

Compares the check in ``gateway/duplicate_keys.py`` with the obvious alternative, the
standard library's ``json.loads(..., object_pairs_hook=...)``, for the same body as
compact JSON (msgspec), pretty JSON with ``\\u`` escapes (``json.dumps(indent=2)``) and
MessagePack, next to the typed decode every request pays anyway. Times are CPU time per
call (best of several rounds, so a busy machine inflates them less than wall time).
"""

from __future__ import annotations

import json
import time
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from gateway import api_models as api
from gateway.duplicate_keys import _find_json_duplicate, _Skimmer, json_duplicate, msgpack_duplicate

BILL = {
    "request_id": "req-0f4c3a9e8b7d4c2a9e1f0b3c5d7e9a1b",
    "clinic_id": "C001",
    "person_id": "410103195001010012",
    "visit_type": "inpatient",
    "service_date": "2026-05-01",
    "items": [
        {
            "code": f"ITEM-{index:03d}",
            "name": f"头孢克肟胶囊 item {index}",
            "category": "ABC"[index % 3],
            "amount": 1200 * (index + 1),
            "quantity": index + 1,
            "unit_price": 1200,
        }
        for index in range(20)
    ],
}


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("repeated key")
    return value


def per_call_us(function: Callable[[], object], number: int = 5000, rounds: int = 9) -> float:
    timer = timeit.Timer(function, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=rounds)) / number * 1e6


def main() -> None:
    compact = msgspec.json.encode(BILL)
    pretty = json.dumps(BILL, indent=2).encode()
    packed = msgspec.msgpack.encode(BILL)
    typed_json = msgspec.json.Decoder(api.SettleRequest)
    typed_msgpack = msgspec.msgpack.Decoder(api.SettleRequest)
    print(f"20-line bill: {len(compact)} B compact JSON, {len(pretty)} B pretty JSON, {len(packed)} B MessagePack")
    print(f"{'':34}{'compact':>10}{'pretty':>10}")
    for label, check in (
        ("typed decode (paid anyway)", typed_json.decode),
        ("json_duplicate (the gateway's)", json_duplicate),
        ("json.loads + object_pairs_hook", lambda body: json.loads(body, object_pairs_hook=_pairs_hook)),
        ("slow reading, path included", _find_json_duplicate),
    ):
        times = [per_call_us(lambda body=body, check=check: check(body)) for body in (compact, pretty)]
        print(f"{label:34}" + "".join(f"{value:8.1f}µs" for value in times))
    print(f"{'':34}{'msgpack':>10}")
    for label, check in (
        ("typed decode (paid anyway)", typed_msgpack.decode),
        ("msgpack_duplicate (the gateway's)", msgpack_duplicate),
        ("skimmer (non-shortest encodings)", lambda body: _Skimmer(body).value("")),
    ):
        print(f"{label:34}{per_call_us(lambda check=check: check(packed)):8.1f}µs")  # type: ignore[misc]


if __name__ == "__main__":
    main()
