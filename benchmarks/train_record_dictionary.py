"""Train the compression dictionary of stored settlement records (adapters/settlement_sql.py).

    .venv/bin/python benchmarks/train_record_dictionary.py --out adapters/record_dictionary_v3.bin

A settlement's record (billed items, masked ID, the engine's result) is about 3.2 KB of
MessagePack, most of it field names and values every record shares. Compressed with a
dictionary trained on typical records it takes about 440 bytes in about 6 µs; without
one, zstd or zlib give about 1 KB in 15-50 µs. The dictionary is part of the storage
format: records name it by their first byte, and a record can only be read with the exact
dictionary it was written with. So a trained dictionary is committed once and never
changed; a better one is added next to it, with its own first byte (adapters/settlement_sql.py).
Version 1 was trained on the records of the engine before the payer chain, version 2 on today's.

This script makes the records from the synthetic county's bills (benchmarks/county.py,
seed 1), settled by the engine for people with every mix of programmes, so it needs no
database and gives the same records on every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zstandard  # noqa: E402

from adapters.policy_files import load_policy_book, policy_dir  # noqa: E402
from adapters.settlement_sql import Record, record_bytes  # noqa: E402
from benchmarks.county import bill_stream, build_county  # noqa: E402
from settlement.decision import decide  # noqa: E402
from settlement.models import Accumulators, Bill, LineItem  # noqa: E402
from settlement.registry import Membership  # noqa: E402

START = dt.date(2026, 1, 1)
PROGRAMMES = [
    (),
    (("veteran_subsidy", "priority_care"),),
    (("hardship_aid", "destitute"),),
    (("hardship_aid", "low_income"),),
    (("veteran_subsidy", "priority_care"), ("hardship_aid", "medical_hardship")),
]


def sample_records(count: int) -> list[bytes]:
    book = load_policy_book(policy_dir())
    county = build_county(seed=1)
    rng = random.Random(1)
    day = dt.date(2026, 6, 1)
    policy = book.in_force(day)
    levels = {clinic.clinic_id: clinic.level for clinic in county.clinics}
    stream = bill_stream(county, rng, service_date=day)
    records = []
    for n in range(count):
        _terminal, body = next(stream)
        bill = Bill(
            clinic_level=levels[body["clinic_id"]],  # type: ignore[arg-type]
            visit_type=body["visit_type"],
            service_date=day,
            items=tuple(LineItem(**item) for item in body["items"]),
        )
        memberships = [Membership(programme="insurance", code="resident", effective_from=START)] + [
            Membership(programme=programme, code=code, effective_from=START)  # type: ignore[arg-type]
            for programme, code in PROGRAMMES[n % len(PROGRAMMES)]
        ]
        used = rng.choice([0, 50_000, 2_000_000])
        accumulators = Accumulators(insurance_outpatient_paid=used, unpaid_eligible=used)
        try:
            decision = decide(bill, policy, memberships, accumulators)
        except Exception:  # a bill the engine refuses (a village inpatient bill, say) is no record
            continue
        masked = f"{rng.randrange(100, 999)}*************{rng.randrange(10, 99)}"
        records.append(record_bytes(Record(masked, bill.items, decision.settlement)))
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="a new file: a committed dictionary never changes")
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--size", type=int, default=4096, help="dictionary size in bytes (default 4096)")
    args = parser.parse_args()
    records = sample_records(args.records)
    dictionary = zstandard.train_dictionary(args.size, records[: len(records) // 2], level=3, threads=1)
    compressor = zstandard.ZstdCompressor(level=3, dict_data=dictionary, write_checksum=False, write_dict_id=False)
    held_out = records[len(records) // 2 :]
    compressed = sum(len(compressor.compress(record)) for record in held_out)
    raw = sum(len(record) for record in held_out)
    args.out.write_bytes(dictionary.as_bytes())
    print(
        f"wrote {args.out} ({len(dictionary.as_bytes())} bytes); {len(held_out)} held-out records: "
        f"{raw / len(held_out):.0f} B raw, {compressed / len(held_out):.0f} B compressed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
