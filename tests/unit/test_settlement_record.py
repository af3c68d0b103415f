"""The stored settlement record: compact, read back whole, and readable forever with its dictionary."""

from __future__ import annotations

import hashlib
from importlib import resources

import msgspec
import pytest
import zstandard

from adapters.settlement_sql import Record, decode_record, encode_record, record_bytes
from benchmarks.train_record_dictionary import sample_records

# Records name their dictionary by their first byte and can only be read with exactly these bytes:
# changing a file would make every settlement stored with it unreadable. A new dictionary is a new version.
DICTIONARIES_SHA256 = {
    1: "cc4efea95654375c9a3f232db7da8a7cb9ffc44bda43f62ca30416261eaf4c4e",
    2: "4caa8fe425884d94f6b94673367963f2f71f5bd7660eda6b3ef4e3ef17db1dde",
}


@pytest.mark.parametrize("version", sorted(DICTIONARIES_SHA256))
def test_the_dictionaries_records_are_written_with_never_change(version: int) -> None:
    data = (resources.files("adapters") / f"record_dictionary_v{version}.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DICTIONARIES_SHA256[version]


def test_records_are_written_with_dictionary_2_and_those_written_with_dictionary_1_still_read_back() -> None:
    samples = sample_records(20)
    records = [msgspec.msgpack.decode(raw, type=Record) for raw in samples]
    assert {encode_record(record)[:1] for record in records} == {b"\x02"}
    # As the gateway wrote them before dictionary 2: the same MessagePack, dictionary 1, first byte 1.
    first = zstandard.ZstdCompressionDict(
        (resources.files("adapters") / "record_dictionary_v1.bin").read_bytes(), dict_type=zstandard.DICT_TYPE_FULLDICT
    )
    compressor = zstandard.ZstdCompressor(level=3, dict_data=first, write_checksum=False, write_dict_id=False)
    written_before = [b"\x01" + compressor.compress(raw) for raw in samples]
    assert [decode_record(data) for data in written_before] == records


def test_a_record_reads_back_whole_and_takes_a_fraction_of_its_msgpack() -> None:
    samples = sample_records(60)
    records = [msgspec.msgpack.decode(raw, type=Record) for raw in samples]
    stored = [encode_record(record) for record in records]
    assert [decode_record(data) for data in stored] == records
    # About 2.7 KB of MessagePack each; stored in well under a third of that.
    assert sum(map(len, stored)) * 3 < sum(map(len, samples))


def test_a_record_migrated_from_the_json_documents_reads_back() -> None:
    (raw,) = sample_records(1)
    record = msgspec.msgpack.decode(raw, type=Record)
    legacy = b"\x00" + msgspec.json.encode(
        {"person": record.person, "items": record.items, "result": record.result, "ignored": 1}
    )
    assert decode_record(legacy) == record


def test_a_record_stored_before_bills_carried_his_details_reads_back_without_them() -> None:
    (raw,) = sample_records(1)
    person, items, result = msgspec.msgpack.decode(raw)
    assert "details" in result
    del result["details"]
    old = msgspec.msgpack.decode(msgspec.msgpack.encode([person, items, result]), type=Record)
    assert old.result.details is None
    assert old.result == msgspec.msgpack.decode(raw, type=Record).result


def test_an_unknown_format_is_refused_not_misread() -> None:
    (raw,) = sample_records(1)
    with pytest.raises(ValueError, match="unknown settlement record format"):
        decode_record(b"\x07" + raw)
    assert record_bytes(msgspec.msgpack.decode(raw, type=Record)) == raw
