"""Remote steps: the insurer's core pays the funds marked ``remote``; its split is booked as it answered and
the local steps pay from what it leaves (docs/insurer.md). Figures are worked by hand in the comments.

The policy is policies/examples/beside-the-insurer: the three-tier chain whose insurance and critical-illness
insurance the insurer's core pays. Money is int fen: ``14_000 * Y`` is 14,000.00 yuan.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from settlement.catalogue import Catalogue
from settlement.chain import caps_in_force, policy_document, remote_applies, settle
from settlement.chain_policy import parse_chain
from settlement.errors import InsurerDisagrees, PolicyError
from settlement.models import Bill, InsurerReference, LineItem, PersonStatus
from settlement.registry import Membership
from settlement.replay import HistoricBill, replay_person_year

REPO = Path(__file__).resolve().parents[2]
BESIDE_TEXT = (REPO / "policies/examples/beside-the-insurer/beside-the-insurer-2026.toml").read_text(encoding="utf-8")
BESIDE = parse_chain(BESIDE_TEXT, "beside")
THREE_TIER = parse_chain(
    (REPO / "policies/examples/three-tier/three-tier-2026.toml").read_text(encoding="utf-8"), "three-tier"
)
Y = 100
DAY = dt.date(2026, 5, 12)


def bill(*amounts: tuple[str, int], visit: str = "inpatient", referral: bool = True) -> Bill:
    return Bill(
        clinic_level="county",
        visit_type=visit,  # type: ignore[arg-type]
        service_date=DAY,
        items=tuple(
            LineItem(code=f"{category}{index}", name="item", category=category, amount=amount)  # type: ignore[arg-type]
            for index, (category, amount) in enumerate(amounts)
        ),
        referral=referral,
    )


MINIMUM_ALLOWANCE = PersonStatus(insured=True, hardship_tier="minimum_allowance", veteran_category=None)


def test_the_insurers_split_is_booked_as_answered_and_the_local_steps_pay_on_what_it_leaves() -> None:
    # DESIGN Part 2, example 3: inpatient, referral, minimum_allowance, A 400,000 at a county hospital. The
    # insurer answers insurance 200,000.00 and critical illness 135,125.00, as the three-tier rules compute.
    # Aid (400,000 - 335,125) x 0.75 = 48,656.25; tilted (16,218.75 - 10,000) x 0.50 = 3,109.38 (3,109.375
    # half up); out of pocket 13,109.37.
    remote = {"insurance": 200_000 * Y, "critical_illness": 135_125 * Y}
    result = settle(bill(("A", 400_000 * Y)), MINIMUM_ALLOWANCE, {}, BESIDE, remote=remote)
    paid = {trace.payer: trace.paid for trace in result.traces}
    assert paid == {
        "insurance": 200_000 * Y,
        "critical_illness": 135_125 * Y,
        "hardship_aid": 48_656_25,
        "tilted_aid": 3_109_38,
        "veteran_subsidy": 0,
        "charity": 0,
    }
    assert result.out_of_pocket == 13_109_37
    assert [trace.remote for trace in result.traces] == [True, True, False, False, False, False]
    # The same bill settled locally by the three-tier chain gives the same amounts.
    local = settle(bill(("A", 400_000 * Y)), MINIMUM_ALLOWANCE, {}, THREE_TIER)
    assert {trace.payer: trace.paid for trace in local.traces} == paid


def test_a_different_split_from_the_insurer_is_not_recomputed() -> None:
    # The insurer pays 150,000.00 + 100,000.00 (its own rules, whatever they are): aid pays on the 150,000.00
    # left: 150,000 x 0.75 = 112,500.00 is cut by the minimum_allowance cap of 60,000.00; tilted (90,000 -
    # 10,000) x 0.50 = 40,000.00 is cut by its cap of 30,000.00; out of pocket 400,000 - 150,000 - 100,000
    # - 60,000 - 30,000 = 60,000.00.
    remote = {"insurance": 150_000 * Y, "critical_illness": 100_000 * Y}
    result = settle(bill(("A", 400_000 * Y)), MINIMUM_ALLOWANCE, {}, BESIDE, remote=remote)
    assert [trace.paid for trace in result.traces] == [150_000 * Y, 100_000 * Y, 60_000 * Y, 30_000 * Y, 0, 0]
    assert result.out_of_pocket == 60_000 * Y
    # The remote funds' paid counters move by what the insurer paid.
    assert result.counters_after["insurance_inpatient_paid"] == 150_000 * Y
    assert result.counters_after["critical_illness_paid"] == 100_000 * Y


def test_an_insurer_paying_more_than_the_eligible_amount_is_refused() -> None:
    # A 1,000.00 + C 500.00: eligible 1,000.00. The insurer says it paid 1,000.01.
    with pytest.raises(InsurerDisagrees):
        settle(bill(("A", 1_000 * Y), ("C", 500 * Y)), MINIMUM_ALLOWANCE, {}, BESIDE, remote={"insurance": 1_000_01})
    # Exactly the eligible amount is booked; the patient pays the C line.
    result = settle(
        bill(("A", 1_000 * Y), ("C", 500 * Y)), MINIMUM_ALLOWANCE, {}, BESIDE, remote={"insurance": 1_000 * Y}
    )
    assert result.out_of_pocket == 500 * Y
    assert sum(trace.paid for trace in result.traces) == 1_000 * Y


def test_a_split_naming_a_local_fund_or_a_negative_amount_is_refused() -> None:
    with pytest.raises(InsurerDisagrees, match="hardship_aid"):
        settle(bill(("A", 1_000 * Y)), MINIMUM_ALLOWANCE, {}, BESIDE, remote={"hardship_aid": 100})
    with pytest.raises(InsurerDisagrees, match="negative"):
        settle(bill(("A", 1_000 * Y)), MINIMUM_ALLOWANCE, {}, BESIDE, remote={"insurance": -1})


def test_the_insurer_is_asked_only_when_a_remote_step_may_pay() -> None:
    assert remote_applies(BESIDE, bill(("A", 100 * Y)), MINIMUM_ALLOWANCE)
    uninsured = PersonStatus(insured=False, hardship_tier="minimum_allowance", veteran_category=None)
    assert not remote_applies(BESIDE, bill(("A", 100 * Y)), uninsured)
    assert not remote_applies(THREE_TIER, bill(("A", 100 * Y)), MINIMUM_ALLOWANCE)


def test_remote_funds_have_no_local_cap_in_the_databases_check() -> None:
    # The insurer keeps its own caps: the ceiling written beside the counters must not refuse its answer.
    caps = caps_in_force(BESIDE, MINIMUM_ALLOWANCE)
    assert caps["insurance_inpatient_paid"] == caps["critical_illness_paid"] == 10**15
    assert caps["aid_paid"] == 60_000 * Y


def test_the_insurer_table_and_remote_flags_leave_existing_policies_identity_alone() -> None:
    three_tier_document = policy_document(THREE_TIER)
    assert "remote" not in three_tier_document and "insurer" not in three_tier_document
    # The address is operational: moving the insurer does not change the policy's identity.
    moved = parse_chain(BESIDE_TEXT.replace("http://127.0.0.1:8090", "https://platform.example:443"), "moved")
    assert policy_document(moved) == policy_document(BESIDE)
    assert '"remote":true' in policy_document(BESIDE)


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (("remote = true                                # the", "# the"), "$.chain[1]", "must come before"),
        (('institution_code = "H33042400001"', 'institution_code = "h3304"'), "$.insurer.institution_code", "12"),
        (('area_code = "330424"', 'area_code = "3304"'), "$.insurer.area_code", "six digits"),
        (("timeout_ms = 3000", "timeout_ms = 5"), "$.insurer.timeout_ms", "between"),
        (('url = "http://127.0.0.1:8090"', 'url = "ftp://x"'), "$.insurer.url", "http"),
        (('answer_id = "platform"', 'answer_id = "msgid"'), "$.insurer.answer_id", '"platform"'),
    ],
)
def test_a_wrong_insurer_setup_is_refused_naming_the_field(change: tuple[str, str], path: str, problem: str) -> None:
    old, new = change
    assert old in BESIDE_TEXT
    with pytest.raises(PolicyError) as refused:
        parse_chain(BESIDE_TEXT.replace(old, new, 1), "bad")
    assert refused.value.path == path
    assert problem in refused.value.problem


def test_the_answers_id_is_the_platforms_own_unless_the_policy_says_it_echoes_ours() -> None:
    assert BESIDE.insurer is not None and BESIDE.insurer.answer_id == "platform"
    unsaid = parse_chain(BESIDE_TEXT.replace('answer_id = "platform"\n', "", 1), "unsaid")
    assert unsaid.insurer is not None and unsaid.insurer.answer_id == "platform"  # the national interface
    echo = parse_chain(BESIDE_TEXT.replace('answer_id = "platform"', 'answer_id = "echo"', 1), "echo")
    assert echo.insurer is not None and echo.insurer.answer_id == "echo"
    assert policy_document(echo) == policy_document(BESIDE)  # how the platform answers is not money


def test_a_remote_fund_needs_an_insurer_table() -> None:
    text = BESIDE_TEXT[: BESIDE_TEXT.index("[insurer]")] + BESIDE_TEXT[BESIDE_TEXT.index("[eligibility]") :]
    with pytest.raises(PolicyError) as refused:
        parse_chain(text, "bad")
    assert refused.value.path == "$.funds.insurance.remote"
    assert "[insurer]" in refused.value.problem


def test_a_remote_fund_needs_its_national_fund_type() -> None:
    text = BESIDE_TEXT.replace('fund_type = "390200"\n', "", 1)
    with pytest.raises(PolicyError) as refused:
        parse_chain(text, "bad")
    assert refused.value.path == "$.funds.critical_illness.fund_type"


def test_an_insurer_table_without_remote_funds_is_refused() -> None:
    text = BESIDE_TEXT.replace("remote = true", "remote = false")
    with pytest.raises(PolicyError) as refused:
        parse_chain(text, "bad")
    assert refused.value.path == "$.insurer"


def test_a_replay_keeps_what_the_insurer_paid() -> None:
    # Re-adjudication and what-ifs settle the local steps again but never the insurer's: a past bill on which
    # the insurer paid 150,000.00 + 100,000.00 replays with those amounts, whatever the rules would compute.
    remote = {"insurance": 150_000 * Y, "critical_illness": 100_000 * Y}
    the_bill = bill(("A", 400_000 * Y))
    settled = settle(the_bill, MINIMUM_ALLOWANCE, {}, BESIDE, remote=remote)
    settled = settled.__class__(
        **{name: getattr(settled, name) for name in settled.__struct_fields__}
        | {"insurer": InsurerReference(message_id="H33042400001202605120930000001", settlement_id="S1")}
    )
    memberships = [
        Membership(programme="insurance", code="resident", effective_from=dt.date(2026, 1, 1), struck_off_on=None),
        Membership(
            programme="hardship_aid", code="minimum_allowance", effective_from=dt.date(2026, 1, 1), struck_off_on=None
        ),
    ]
    (replayed,) = replay_person_year([HistoricBill(the_bill, settled)], memberships, lambda day: BESIDE, Catalogue())
    assert replayed.again is not None
    assert [trace.paid for trace in replayed.again.traces] == [trace.paid for trace in settled.traces]
    # Under a chain where the insurer pays nothing, the rules compute every step.
    (local,) = replay_person_year([HistoricBill(the_bill, settled)], memberships, lambda day: THREE_TIER, Catalogue())
    assert local.again is not None and local.again.traces[0].paid == 200_000 * Y


@settings(max_examples=150, deadline=None)
@given(
    amounts=st.lists(st.tuples(st.sampled_from("ABC"), st.integers(1, 50_000 * Y)), min_size=1, max_size=6),
    shares=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
    tier=st.sampled_from([None, "destitute", "minimum_allowance", "marginal", "low_income"]),
)
def test_any_bookable_split_conserves_money_per_line_and_per_bill(
    amounts: list[tuple[str, int]], shares: tuple[int, int], tier: str | None
) -> None:
    the_bill = bill(*amounts)
    status = PersonStatus(insured=True, hardship_tier=tier, veteran_category=None)
    eligible = settle(the_bill, status, {}, BESIDE).eligible
    # Any split within the eligible amount: insurance takes shares[0]/1000 of it, critical illness
    # shares[1]/1000 of what is left.
    insurance = eligible * shares[0] // 1000
    critical = (eligible - insurance) * shares[1] // 1000
    result = settle(the_bill, status, {}, BESIDE, remote={"insurance": insurance, "critical_illness": critical})
    assert result.traces[0].paid == insurance and result.traces[1].paid == critical
    assert sum(trace.paid for trace in result.traces) + result.out_of_pocket == result.total
    for index, trace in enumerate(result.traces):
        assert sum(line.payers[index] for line in result.lines) == trace.paid
    for line in result.lines:
        assert sum(line.payers) + line.out_of_pocket == line.amount
        assert line.out_of_pocket >= 0
