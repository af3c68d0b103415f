"""The receipt's words where no database is needed: amounts in capitals (大写), grouped yuan, each step of the
chain in plain words, the short receipt number, and text a GBK thermal printer can print. The receipt as a
whole, over HTTP, is tests/integration/test_receipts.py."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.http.handlers.receipts import gbk_safe, receipt_number, unique_receipt_number
from settlement.explain import explain_step, programme_name
from settlement.models import BandTrace, PayerTrace
from settlement.money import FEN_PER_YUAN, format_yuan, format_yuan_grouped, yuan_in_capitals


@pytest.mark.parametrize(
    ("fen", "capitals"),
    [
        (0, "零元整"),
        (5, "伍分"),
        (50, "伍角整"),
        (1_010, "壹拾元壹角整"),  # 壹拾, never a bare 拾
        (10_000_000_000, "壹亿元整"),  # 100,000,000.00
        (100_100, "壹仟零壹元整"),  # 1,001.00
        (298_200, "贰仟玖佰捌拾贰元整"),
        (10_505, "壹佰零伍元零伍分"),  # 零 between 元 and 分 when 角 is zero
        (100_050, "壹仟元伍角整"),
        (10_010_000, "壹拾万零壹佰元整"),  # a run of zeros across the 万 is one 零
        (100_010_000, "壹佰万零壹佰元整"),
        (10_000_000_100, "壹亿零壹元整"),
        (10_100_000_000, "壹亿零壹佰万元整"),
        (-500, "负伍元整"),
    ],
)
def test_amounts_in_capitals(fen: int, capitals: str) -> None:
    assert yuan_in_capitals(fen) == capitals


def test_yuan() -> None:
    assert [format_yuan(fen) for fen in (0, 5, 99, 100, 298_200, -5, -123_456)] == [
        "0.00",
        "0.05",
        "0.99",
        "1.00",
        "2982.00",
        "-0.05",
        "-1234.56",
    ]


@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_yuan_is_whole_yuan_point_two_digits_of_fen(fen: int) -> None:
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    assert format_yuan(fen) == f"{'-' if fen < 0 else ''}{whole}.{part:02d}"


def test_grouped_yuan() -> None:
    assert [format_yuan_grouped(fen) for fen in (0, 5, 298_200, 10_000_000_000, -123_456)] == [
        "0.00",
        "0.05",
        "2,982.00",
        "100,000,000.00",
        "-1,234.56",
    ]


TRACE = PayerTrace(
    payer="insurance",
    applied=True,
    reason=None,
    programme="village",
    base=14_120,
    deductible=20_000,
    deductible_consumed=14_120,
    threshold=0,
    below_threshold=0,
    bands=(BandTrace(lower=0, upper=None, rate="0.50", amount=0),),
    computed=0,
    annual_cap=300_000,
    cap_remaining=300_000,
    cap_cut=0,
    paid=0,
    policy_version="default-2026",
)


def test_a_deductible_met_in_part_says_how_much_of_it_this_bill_met() -> None:
    assert explain_step(TRACE, "zh") == [
        "政策范围内待付 141.20",
        "起付线 200.00，本次计入 141.20",
        "本年已支付 0.00",
        "年度封顶线剩余 3,000.00",
    ]
    assert "deductible 200.00, of which 141.20 met by this bill" in explain_step(TRACE, "en")


def test_bands_as_percentages_and_a_cap_that_cuts() -> None:
    trace = msgspec.structs.replace(
        TRACE,
        base=1_200_000,
        deductible=0,
        deductible_consumed=0,
        bands=(
            BandTrace(lower=0, upper=1_000_000, rate="0.70", amount=1_000_000),
            BandTrace(lower=1_000_000, upper=None, rate="0.625", amount=200_000),
        ),
        computed=825_000,
        cap_remaining=100_000,
        cap_cut=725_000,
        paid=100_000,
    )
    assert explain_step(trace, "zh") == [
        "政策范围内待付 12,000.00",
        "10,000.00 × 70% + 2,000.00 × 62.5% = 8,250.00",
        "年度封顶线剩余 1,000.00，超出的 7,250.00 不予支付",
        "本年已支付 3,000.00",
        "年度封顶线剩余 0.00",
    ]


def test_a_step_that_does_not_apply_says_why_in_words() -> None:
    not_insured = msgspec.structs.replace(TRACE, applied=False, reason="not_insured", bands=(), paid=0)
    assert explain_step(not_insured, "zh") == ["未参保，不支付"]
    assert explain_step(not_insured, "en") == ["not insured: pays nothing"]
    unknown = msgspec.structs.replace(not_insured, reason="some_new_reason")
    assert explain_step(unknown, "en") == ["some_new_reason"]  # shown as it is rather than hidden


def test_programmes_and_levels_in_the_readers_language() -> None:
    assert programme_name("minimum_allowance", "zh") == "低保对象"
    assert programme_name("county", "zh") == "县级医院"
    assert programme_name("priority_care", "en") == "priority care"
    assert programme_name(None, "zh") == ""


def test_the_short_receipt_number_is_the_ids_beginning() -> None:
    settlement_id = uuid.UUID("0f3a9c1e-77b0-4c2d-9a1e-123456789abc")
    number = receipt_number(settlement_id)
    assert number == "0F3A-9C1E-77B0"
    assert str(settlement_id).replace("-", "").upper().startswith(number.replace("-", ""))


def test_text_for_a_gbk_printer() -> None:
    assert gbk_safe("起付线 200.00 − 141.20 → 支付") == "起付线 200.00 ? 141.20 → 支付"
    assert gbk_safe("李娜 Li Na ×").encode("gbk")


async def test_a_receipt_number_another_settlement_shares_is_lengthened() -> None:
    settlement_id = uuid.UUID("0f3a9c1e-77b0-4c2d-9a1e-123456789abc")
    twin = uuid.UUID("0f3a9c1e-77b0-4fff-8000-000000000000")  # the same first 12 digits, not 16
    asked: list[tuple[uuid.UUID, uuid.UUID]] = []

    def stored(*ids: uuid.UUID) -> Callable[[uuid.UUID, uuid.UUID], Awaitable[int]]:
        async def count_in_range(low: uuid.UUID, high: uuid.UUID) -> int:
            asked.append((low, high))
            return sum(low <= stored_id <= high for stored_id in ids)

        return count_in_range

    assert await unique_receipt_number(settlement_id, stored(settlement_id)) == "0F3A-9C1E-77B0"
    assert asked == [
        (uuid.UUID("0f3a9c1e-77b0-0000-0000-000000000000"), uuid.UUID("0f3a9c1e-77b0-ffff-ffff-ffffffffffff"))
    ]
    assert await unique_receipt_number(settlement_id, stored(settlement_id, twin)) == "0F3A-9C1E-77B0-4C2D"
    assert await unique_receipt_number(twin, stored(settlement_id, twin)) == "0F3A-9C1E-77B0-4FFF"
