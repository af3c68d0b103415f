"""Hand-computed settlements along the three-tier chain (docs/worked-examples.md), and one test per
rule kind of a chain step at its boundaries, one fen either side.

Every expected figure is worked out by hand in the comment next to it; none is copied from the
engine's output. Money is int fen: ``14_000 * Y`` is 14,000.00 yuan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import pytest

from settlement.chain import Chain, caps_in_force, settle
from settlement.chain_policy import parse_chain
from settlement.models import Bill, LineItem, PersonStatus, Settlement

REPO = Path(__file__).resolve().parents[2]
THREE_TIER = parse_chain(
    (REPO / "policies/examples/three-tier/three-tier-2026.toml").read_text(encoding="utf-8"), "three-tier"
)
Y = 100
DAY = dt.date(2026, 5, 12)
CHAIN_ORDER = ("insurance", "critical_illness", "hardship_aid", "tilted_aid", "veteran_subsidy", "charity")


def bill(*amounts: tuple[str, int], level: str = "county", visit: str = "inpatient", referral: bool = True) -> Bill:
    return Bill(
        clinic_level=level,  # type: ignore[arg-type]
        visit_type=visit,  # type: ignore[arg-type]
        service_date=DAY,
        items=tuple(
            LineItem(code=f"{category}{index}", name="item", category=category, amount=amount)  # type: ignore[arg-type]
            for index, (category, amount) in enumerate(amounts)
        ),
        referral=referral,
    )


def person(tier: str | None = None, category: str | None = None, *, insured: bool = True, **other: str) -> PersonStatus:
    return PersonStatus(insured=insured, hardship_tier=tier, veteran_category=category, programmes=other)


def paid(result: Settlement) -> dict[str, int]:
    return {step.payer: step.paid for step in result.traces}


def conserved(result: Settlement) -> None:
    assert sum(step.paid for step in result.traces) + result.out_of_pocket == result.total
    for index, step in enumerate(result.traces):
        assert sum(line.payers[index] for line in result.lines) == step.paid
    assert sum(line.out_of_pocket for line in result.lines) == result.out_of_pocket


def run(chain: Chain, b: Bill, status: PersonStatus, counters: Mapping[str, int] | None = None) -> Settlement:
    result = settle(b, status, counters or {}, chain)
    conserved(result)
    return result


# ---------------------------------------------------------------- the three worked examples


def test_worked_example_1_aid_then_priority_care_on_what_aid_left() -> None:
    result = run(
        THREE_TIER,
        bill(("A", 14_000 * Y), ("B", 4_000 * Y), ("C", 2_000 * Y)),
        person("minimum_allowance", "priority_care"),
    )
    assert [step.payer for step in result.traces] == list(CHAIN_ORDER)
    # Eligible 14,000 + 3,600 = 17,600; insurance (17,600 − 600) × 0.75 = 12,750.
    # Critical illness: ytd base 4,850 < 7,500 → 0. Aid 4,850 × 0.75 = 3,637.50.
    # Tilted: 1,212.50 < 10,000 → 0. Subsidy 1,212.50 × 0.60 = 727.50.
    assert paid(result) == {
        "insurance": 1_275_000,
        "critical_illness": 0,
        "hardship_aid": 363_750,
        "tilted_aid": 0,
        "veteran_subsidy": 72_750,
        "charity": 0,
    }
    assert result.out_of_pocket == 288_500  # 2,400 not eligible + 485 unpaid
    assert result.counters_after["critical_illness_base"] == 485_000
    assert result.counters_after["tilted_aid_base"] == 121_250
    charity = result.traces[5]
    assert (charity.applied, charity.reason) == (False, "not_enrolled")


def test_worked_example_2_aid_deductible_met_on_the_first_admission_carries_to_the_second() -> None:
    marginal = person("marginal")
    first = run(THREE_TIER, bill(("A", 180_000 * Y)), marginal)
    # Insurance (180,000 − 600) × 0.75 = 134,550. Critical illness (45,450 − 7,500) × 0.65 = 24,667.50.
    # Aid (20,782.50 − 2,000) × 0.65 = 12,208.625 → 12,208.63. Tilted 8,573.87 < 10,000 → 0.
    assert paid(first) == {
        "insurance": 13_455_000,
        "critical_illness": 2_466_750,
        "hardship_aid": 1_220_863,
        "tilted_aid": 0,
        "veteran_subsidy": 0,
        "charity": 0,
    }
    assert first.out_of_pocket == 857_387
    assert first.traces[2].deductible_consumed == 2_000 * Y

    second = run(THREE_TIER, bill(("A", 30_000 * Y), level="township"), marginal, first.counters_after)
    # Insurance (30,000 − 300) × 0.85 = 25,245. Critical illness (50,205 − 45,450) × 0.65 = 3,090.75.
    # Aid, deductible met: 1,664.25 × 0.65 = 1,081.7625 → 1,081.76. Tilted 9,156.36 < 10,000 → 0.
    assert paid(second) == {
        "insurance": 2_524_500,
        "critical_illness": 309_075,
        "hardship_aid": 108_176,
        "tilted_aid": 0,
        "veteran_subsidy": 0,
        "charity": 0,
    }
    assert second.out_of_pocket == 58_249
    assert second.traces[2].deductible_consumed == 0
    assert second.counters_after["tilted_aid_base"] == 915_636


def test_worked_example_3_insurance_cap_critical_illness_bands_tilted_aid_and_charity() -> None:
    big = bill(("A", 400_000 * Y))
    result = run(THREE_TIER, big, person("minimum_allowance"))
    # Insurance 299,550 capped at 200,000. Critical illness (100,000 − 7,500) × 0.65 + 100,000 × 0.75
    # = 135,125 (no cap for aid recipients). Aid 64,875 × 0.75 = 48,656.25.
    # Tilted (16,218.75 − 10,000) × 0.50 = 3,109.375 → 3,109.38.
    assert paid(result) == {
        "insurance": 20_000_000,
        "critical_illness": 13_512_500,
        "hardship_aid": 4_865_625,
        "tilted_aid": 310_938,
        "veteran_subsidy": 0,
        "charity": 0,
    }
    assert result.out_of_pocket == 1_310_937
    assert result.traces[0].cap_cut == 29_955_000 - 20_000_000
    assert result.traces[1].annual_cap is None

    with_charity = run(THREE_TIER, big, person("minimum_allowance", charity="child_major_disease"))
    # Charity 13,109.37 × 0.50 = 6,554.685 → 6,554.69.
    assert paid(with_charity)["charity"] == 655_469
    assert with_charity.out_of_pocket == 655_468


# ---------------------------------------------------------------- rule kinds at their boundaries


@pytest.mark.parametrize(
    ("met_before", "consumed", "aid"),
    [
        # Marginal aid base 1,000.00 (outpatient: an uninsured person, nothing before aid).
        (0, 1_000 * Y, 0),  # deductible 2,000 not reached: all of the bill goes to it
        (1_000 * Y - 1, 1_000 * Y, 0),  # 1 fen short of 1,000 left: still all consumed
        (1_000 * Y + 1, 1_000 * Y - 1, 1),  # met mid-bill: 1 fen above it × 0.65 = 0.65 → 1 fen
        (2_000 * Y, 0, 65_000),  # met before the bill: 1,000 × 0.65
    ],
)
def test_a_per_year_deductible_is_met_mid_bill(met_before: int, consumed: int, aid: int) -> None:
    result = run(
        THREE_TIER,
        bill(("A", 1_000 * Y), visit="outpatient", level="township", referral=False),
        person("marginal", insured=False),
        {"aid_deductible_met": met_before},
    )
    step = result.traces[2]
    assert (step.deductible_consumed, step.paid) == (consumed, aid)
    assert result.counters_after["aid_deductible_met"] == met_before + consumed


@pytest.mark.parametrize(
    ("ytd_before", "expected"),
    [
        # An insured low-income person (standard critical illness: T 15,000, 0.60 to 100,000, 0.70 above)
        # at a township admission of A 10,300: insurance (10,300 − 300) × 0.85 = 8,500, base 1,800.
        (15_000 * Y - 1_800 * Y, 0),  # ends exactly at the threshold: nothing above it
        (15_000 * Y - 1_800 * Y + 1, 1),  # 1 fen above: 0.60 fen → 1
        (100_000 * Y - 1_800 * Y, 108_000),  # ends at the band edge: 1,800 × 0.60
        (100_000 * Y - 1_800 * Y + 1, 108_000),  # 1 fen in the upper band: 1,799.99 × 0.60 + 0.01 × 0.70
        (100_000 * Y, 126_000),  # wholly above the edge: 1,800 × 0.70
    ],
)
def test_bands_over_a_year_to_date_counter_pay_on_the_part_above_each_edge(ytd_before: int, expected: int) -> None:
    result = run(
        THREE_TIER,
        bill(("A", 10_300 * Y), level="township"),
        person("low_income"),
        {"critical_illness_base": ytd_before},
    )
    step = result.traces[1]
    assert step.base == 1_800 * Y
    assert step.paid == expected
    assert (step.ytd_before, step.ytd_after) == (ytd_before, ytd_before + 1_800 * Y)


def test_one_fen_into_the_upper_band_rounds_once_over_both_bands() -> None:
    # 179,999 fen × 0.60 + 1 fen × 0.70 = 107,999.4 + 0.7 = 108,000.1 → 108,000 (rounded once, not per band).
    result = run(
        THREE_TIER,
        bill(("A", 10_300 * Y), level="township"),
        person("low_income"),
        {"critical_illness_base": 100_000 * Y - 1_800 * Y + 1},
    )
    assert result.traces[1].computed == 108_000
    assert [band.amount for band in result.traces[1].bands] == [179_999, 1]


@pytest.mark.parametrize(
    ("aid_paid_before", "aid"),
    [
        # Aid paid earlier this year under minimum_allowance (cap 60,000) counts against marginal's 50,000.
        (50_000 * Y - 650 * Y, 650 * Y),  # exactly enough cap left for 1,000 × 0.65
        (50_000 * Y - 650 * Y + 1, 650 * Y - 1),  # one fen short: the cap cuts the bill mid-way
        (55_000 * Y, 0),  # over this tier's cap (reached under a richer tier): nothing
    ],
)
def test_a_cap_shared_by_tiers_is_reached_mid_bill(aid_paid_before: int, aid: int) -> None:
    result = run(
        THREE_TIER,
        bill(("A", 1_000 * Y), visit="outpatient", level="township", referral=False),
        person("marginal", insured=False),
        {"aid_paid": aid_paid_before, "aid_deductible_met": 2_000 * Y},
    )
    step = result.traces[2]
    assert step.paid == aid
    assert step.cap_remaining == max(0, 50_000 * Y - aid_paid_before)
    assert result.counters_after["aid_paid"] == aid_paid_before + aid
    assert caps_in_force(THREE_TIER, person("marginal", insured=False))["aid_paid"] == 50_000 * Y


def test_the_caps_in_force_follow_each_person_s_codes_however_often_they_are_asked() -> None:
    """Worked out once per chain and set of codes: each person still gets their own, and a caller that
    changes the answer it was given changes nobody else's."""
    for _ in range(2):
        destitute = caps_in_force(THREE_TIER, person("destitute"))
        marginal = caps_in_force(THREE_TIER, person("marginal"))
        veteran = caps_in_force(THREE_TIER, person("marginal", "disabled_veteran"))
        aid_caps = (destitute["aid_paid"], marginal["aid_paid"], veteran["aid_paid"])
        assert aid_caps == (100_000 * Y, 50_000 * Y, 50_000 * Y)
        assert "subsidy_paid" not in marginal and veteran["subsidy_paid"] == 100_000 * Y
        destitute["aid_paid"] = 0


@pytest.mark.parametrize("referral", [True, False])
def test_tilted_aid_needs_a_referral(referral: bool) -> None:
    result = run(THREE_TIER, bill(("A", 400_000 * Y), referral=referral), person("minimum_allowance"))
    tilted = result.traces[3]
    if referral:
        assert tilted.paid == 310_938
        assert result.counters_after["tilted_aid_base"] == 1_621_875
    else:
        # Not referred: tilted aid does not apply, and its counter counts only the bills it applies to.
        assert (tilted.applied, tilted.reason, tilted.paid) == (False, "referral_required", 0)
        assert result.counters_after["tilted_aid_base"] == 0
        assert result.out_of_pocket == 1_310_937 + 310_938


def test_a_counter_that_counts_every_bill_counts_for_people_the_step_does_not_pay() -> None:
    # The default chain's unpaid_eligible counts every bill, whatever the tier (or none): medical_hardship
    # looks back over the whole year.
    default = parse_chain((REPO / "policies/default.toml").read_text(encoding="utf-8"), "default")
    nobody = run(default, bill(("A", 1_000 * Y), visit="outpatient", level="village"), person())
    # Village outpatient: deductible 200, then (1,000 − 200) × 0.50 = 400; 600 unpaid, counted.
    assert nobody.traces[2].reason == "not_enrolled"
    assert nobody.counters_after["unpaid_eligible"] == 600 * Y

    # The three-tier critical-illness counter counts only the bills it applies to: not outpatient ones.
    outpatient = run(THREE_TIER, bill(("A", 1_000 * Y), visit="outpatient", level="village"), person())
    assert outpatient.traces[1].reason == "visit_type_not_covered"
    assert outpatient.counters_after["critical_illness_base"] == 0


def test_an_uninsured_person_gets_no_insurance_and_no_critical_illness_but_aid_on_the_whole_eligible() -> None:
    result = run(THREE_TIER, bill(("A", 10_000 * Y)), person("destitute", insured=False))
    assert [(step.payer, step.reason) for step in result.traces[:2]] == [
        ("insurance", "not_insured"),
        ("critical_illness", "not_insured"),
    ]
    assert paid(result)["hardship_aid"] == 10_000 * Y  # destitute: no deductible, 1.00
    assert result.out_of_pocket == 0


def test_a_version_taking_over_mid_year_continues_the_counters_by_name() -> None:
    """From 1 July a county raises medical aid for marginal households to 0.70 and lowers its cap to
    45,000. The counters keep their names, so the deductible met and the aid paid under the January
    version count in July: no second deductible, and the new cap is measured against the whole year."""
    text = (REPO / "policies/examples/three-tier/three-tier-2026.toml").read_text(encoding="utf-8")
    july_text = text.replace('id = "three-tier-2026"', 'id = "three-tier-2026-07"').replace(
        "effective_from = 2026-01-01", "effective_from = 2026-07-01"
    )
    july_text = july_text.replace(
        'codes = ["marginal"]\ndeductible = { per_year_yuan = 2000, counter = "aid_deductible_met" }\n'
        "rate = 0.65\nannual_cap_yuan = 50000",
        'codes = ["marginal"]\ndeductible = { per_year_yuan = 2000, counter = "aid_deductible_met" }\n'
        "rate = 0.70\nannual_cap_yuan = 45000",
    )
    july = parse_chain(july_text, "three-tier-2026-07")
    marginal = person("marginal", insured=False)
    january = run(THREE_TIER, bill(("A", 60_000 * Y), referral=False), marginal)
    # Uninsured: aid (60,000 − 2,000) × 0.65 = 37,700.
    assert paid(january)["hardship_aid"] == 37_700 * Y
    later = run(july, bill(("A", 20_000 * Y), referral=False), marginal, january.counters_after)
    # July: no deductible left; 20,000 × 0.70 = 14,000, but only 45,000 − 37,700 = 7,300 of the cap is left.
    aid = later.traces[2]
    assert (aid.deductible_consumed, aid.computed, aid.cap_remaining, aid.paid) == (0, 1_400_000, 730_000, 730_000)
    assert later.counters_after["aid_paid"] == 45_000 * Y
