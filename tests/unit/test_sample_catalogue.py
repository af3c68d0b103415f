"""The sample item catalogue (samples/catalogue-2026.*) covers every item the demo county bills, as it bills it.

The demo (``make run``) imports it, and the worked example must still give the same amounts: each item
of the sample bills, the OpenAPI example and benchmarks/county.py's lists is in the catalogue with the
category those send, and a cap never cuts a price they bill, but for the one plate meant to show
over-limit self-pay.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.catalogue_files import CatalogueRow, read_catalogue
from benchmarks import county
from gateway.http.openapi import openapi_document
from gateway.http.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
CSV, XLSX = SAMPLES / "catalogue-2026.csv", SAMPLES / "catalogue-2026.xlsx"
OVER_LIMIT_DEMO = {"M-PLATE-001": 1_200_000}  # caps inside the billed price range, on purpose


def catalogue() -> dict[str, CatalogueRow]:
    rows, rejected = read_catalogue(CSV)
    assert rejected == []
    return {row.code: row for row in rows}


def county_items() -> list[county.Item]:
    items: list[county.Item] = [*county.OUTPATIENT_CONSULTATION.values()]
    for listed in county.OUTPATIENT_ITEMS.values():
        items.extend(listed)
    items.extend([*county.PER_DAY, *county.INPATIENT_ITEMS, *county.COUNTY_INPATIENT_ITEMS])
    for operations, materials in county.OPERATIONS.values():
        items.extend([*operations, *materials])
    return items


def bill_lines() -> list[dict[str, Any]]:
    """Every line of the sample bills and of the examples in /openapi.json."""
    lines = []
    for path in sorted(SAMPLES.glob("bill-*.json")):
        lines.extend(json.loads(path.read_text(encoding="utf-8"))["items"])

    def examples(node: Any) -> None:
        if isinstance(node, dict):
            example = node.get("example")
            if isinstance(example, dict) and isinstance(example.get("items"), list):
                lines.extend(example["items"])
            for value in node.values():
                examples(value)
        elif isinstance(node, list):
            for value in node:
                examples(value)

    examples(openapi_document(ROUTES))
    return lines


def test_the_sample_files_read_cleanly_and_alike() -> None:
    rows, rejected = read_catalogue(XLSX)
    assert rejected == []
    assert {row.code: row for row in rows} == catalogue()


def test_the_sample_files_are_what_make_samples_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    csv_path, xlsx_path = module.write_catalogue_samples(tmp_path)
    assert csv_path.read_bytes() == CSV.read_bytes(), "run samples/make_samples.py"
    assert read_catalogue(xlsx_path) == read_catalogue(XLSX), "run samples/make_samples.py"


def test_every_item_the_county_bills_is_in_the_catalogue_with_its_category() -> None:
    held = catalogue()
    items = county_items()
    assert len(items) > 60
    for item in items:
        assert item.code in held, item.code
        assert held[item.code].category == item.category, item.code


def test_every_line_of_the_sample_bills_and_the_openapi_example_keeps_its_category() -> None:
    held = catalogue()
    lines = bill_lines()
    assert {"DRUG-001", "MAT-002", "SVC-003", "SURG-001"} <= {line["code"] for line in lines}
    for line in lines:
        assert held[line["code"]].category == line["category"], line["code"]
        if line.get("unit_price") is None:  # a capped item needs the unit price to be settled
            assert held[line["code"]].price_cap is None, line["code"]


def test_the_worked_example_keeps_the_policys_share_and_no_cap() -> None:
    held = catalogue()
    worked_example = [held[code] for code in ("DRUG-001", "MAT-002", "SVC-003")]
    assert [(row.category, row.self_pay_share, row.price_cap) for row in worked_example] == [
        ("A", None, None),
        ("B", None, None),  # the policy's 10 %, which docs/worked-examples.md computes with
        ("C", None, None),
    ]


def test_some_b_items_have_their_own_share_of_5_to_20_percent() -> None:
    shares = {row.code: row.self_pay_share for row in catalogue().values() if row.self_pay_share is not None}
    assert len(shares) >= 5
    assert all(50_000 <= share <= 200_000 for share in shares.values())
    assert shares["210400001"] == shares["210300001"] == 200_000  # imaging
    assert shares["XJ01DDA090B001"] == 50_000  # a drug


@pytest.mark.parametrize("item", county_items(), ids=lambda item: item.code)
def test_a_cap_sits_above_the_prices_billed_but_for_the_over_limit_demo(item: county.Item) -> None:
    cap = catalogue()[item.code].price_cap
    if cap is None:
        return
    low, high = item.price
    if item.code in OVER_LIMIT_DEMO:
        assert cap == OVER_LIMIT_DEMO[item.code]
        assert low < cap < high
    else:
        assert cap > high


def test_a_dozen_or_more_items_are_capped() -> None:
    assert sum(row.price_cap is not None for row in catalogue().values()) >= 12
