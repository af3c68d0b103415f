"""The three-way comparison with the insurer (adapters/insurer_reconciliation.py), without a database or an insurer:
each discrepancy it names, with its repair, the day a message belongs to, and the totals sent to 3201."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest

from adapters.finance import ReconciliationError, SubmittedSettlement
from adapters.insurer.client import DetailRecord, Totals, TotalsResult
from adapters.insurer.protocol import CHINA_TIME
from adapters.insurer_reconciliation import (
    BookedSettlement,
    CancelledAtInsurerOnly,
    ClinicAmountDiffers,
    ClinicMissingAtClinic,
    ClinicMissingAtGateway,
    ClinicReversedAtClinicOnly,
    ClinicReversedAtGatewayOnly,
    FundDiffers,
    LedgerMessage,
    MissingAtInsurer,
    MissingHere,
    ReversedHereOnly,
    check_clinic_list,
    compare,
    gateway_totals,
    id_bounds,
    settled_on,
)

DAY = dt.date(2026, 5, 1)
FUND_TYPES = {"insurance": "390100", "critical_illness": "390200"}
INSTITUTION = "H33042400001"


def at(day: dt.date, hour: int = 10, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=CHINA_TIME)


def message_id(when: dt.datetime, sequence: int) -> str:
    return f"{INSTITUTION}{when:%Y%m%d%H%M%S}{sequence:04d}"


def booked(
    insurance: int, critical: int = 0, *, total: int = 100_000, reversed_: bool = False, other: int = 0
) -> BookedSettlement:
    return BookedSettlement(
        settlement_id=uuid.uuid4(),
        request_id=f"r-{uuid.uuid4().hex[:8]}",
        total=total,
        insurance=insurance,
        veteran_subsidy=0,
        hardship_aid=other,
        out_of_pocket=total - insurance - critical - other,
        other_funds={"critical_illness": critical} if critical else {},
        reversed=reversed_,
    )


def ours(
    sent: dt.datetime, sequence: int, settlement: BookedSettlement | None, *, state: str = "committed", **more: Any
) -> LedgerMessage:
    return LedgerMessage(
        message_id=message_id(sent, sequence),
        state=state,
        transaction_code="2304",
        visit_id=f"term-C001:v{sequence}",
        clinic_id="C001",
        sent_at=sent,
        insurer_settlement_id=f"S{sequence:08d}",
        settlement=settlement,
        **more,
    )


def theirs(
    message: LedgerMessage | str,
    insurance: int,
    critical: int = 0,
    *,
    settled: dt.datetime | None = None,
    total: int = 100_000,
    cancelled_by: str | None = None,
) -> DetailRecord:
    msgid = message if isinstance(message, str) else message.message_id
    when = settled or (message.sent_at if isinstance(message, LedgerMessage) else at(DAY))
    paid = {"390100": insurance} | ({"390200": critical} if critical else {})
    return DetailRecord(
        msgid=msgid,
        infno="2304",
        insurer_settlement_id=f"S{msgid[-8:]}",
        mdtrt_id=f"term-C001:{msgid[-4:]}",
        psn_no="ab" * 15,
        settled_at=f"{when.astimezone(CHINA_TIME):%Y-%m-%d %H:%M:%S}",
        state="cancelled" if cancelled_by else "settled",
        total=total,
        fund_paid=sum(paid.values()),
        paid_by_fund_type=paid,
        cancel_msgid=cancelled_by,
        cancel_infno="2305" if cancelled_by else None,
        cancelled_at=None,
    )


def verdict(ledger: list[LedgerMessage], detail: list[DetailRecord], balanced: bool = True) -> TotalsResult:
    """The insurer's 3201 answer as the simulator gives it: its own totals of the day, and its verdict."""
    standing = [r for r in detail if r.state == "settled" and r.settled_at.startswith(DAY.isoformat())]
    by_type: dict[str, int] = {}
    for record in standing:
        for kind, amount in record.paid_by_fund_type.items():
            by_type[kind] = by_type.get(kind, 0) + amount
    insurer = Totals(
        count=len(standing),
        total=sum(r.total for r in standing),
        fund_paid=sum(by_type.values()),
        by_fund_type=by_type,
    )
    return TotalsResult(
        balanced=balanced, description="balanced" if balanced else "count", insurer=insurer, raw_answer=b""
    )


def reconcile(ledger: list[LedgerMessage], detail: list[DetailRecord], **options: Any) -> Any:
    balanced = options.pop("balanced", True)
    return compare(
        DAY,
        ledger,
        detail,
        verdict(ledger, detail, balanced),
        institution_code=INSTITUTION,
        fund_types=FUND_TYPES,
        **options,
    )


def test_a_day_both_sides_agree_on_is_clean_with_each_sides_totals_per_fund() -> None:
    one = ours(at(DAY, 9), 1, booked(60_000, 5_000))
    two = ours(at(DAY, 11), 2, booked(30_000))
    # Refused at the insurer, and a settle reversed by its id after a timeout: nothing on either side.
    refused = ours(at(DAY, 12), 3, None, state="refused")
    undone = ours(at(DAY, 13), 4, None, state="reversed")
    detail = [theirs(one, 60_000, 5_000), theirs(two, 30_000), theirs(undone, 40_000, cancelled_by="X" * 30)]
    report = reconcile([one, two, refused, undone], detail)
    assert report.clean and report.matched_count == 2
    assert report.discrepancies == [] and report.clinic is None
    assert report.gateway.settlements == report.insurer.settlements == 2
    assert report.gateway.funds == report.insurer.funds == {"insurance": 90_000, "critical_illness": 5_000}
    assert [(fund.code, fund.fund_type) for fund in report.funds] == [
        ("insurance", "390100"),
        ("critical_illness", "390200"),
    ]


def test_the_totals_sent_to_3201_are_the_settlements_booked_and_not_reversed_by_fund_type() -> None:
    kept = ours(at(DAY, 9), 1, booked(60_000, 5_000, total=90_000))
    reversed_ = ours(at(DAY, 10), 2, booked(10_000, reversed_=True), cancel_state="committed")
    other_day = ours(at(DAY - dt.timedelta(days=1), 9), 3, booked(7_000))
    detail = [theirs(kept, 60_000, 5_000), theirs(reversed_, 10_000, cancelled_by="C" * 30), theirs(other_day, 7_000)]
    totals = gateway_totals(DAY, [kept, reversed_, other_day], detail, FUND_TYPES)
    assert totals == Totals(count=1, total=90_000, fund_paid=65_000, by_fund_type={"390100": 60_000, "390200": 5_000})


def test_an_orphan_says_whether_the_sweeper_will_undo_it() -> None:
    open_ = ours(at(DAY, 9), 1, None, state="answered")
    closed = ours(at(DAY, 10), 2, None, state="reversed")
    foreign = message_id(at(DAY, 11), 3)
    detail = [theirs(open_, 100), theirs(closed, 200), theirs(foreign, 300)]
    report = reconcile([open_, closed], detail, balanced=False)
    assert not report.clean
    assert [type(d) for d in report.discrepancies] == [MissingHere] * 3
    will, wont, never = report.discrepancies
    assert (will.message_state, will.sweeper_will_undo, will.cancel_with) == ("answered", True, "2305")
    assert "the sweeper will cancel it (2305)" in will.repair
    assert (wont.message_state, wont.sweeper_will_undo) == ("reversed", False)
    assert "cancel it at the insurer (2305" in wont.repair and "the sweeper will not" in wont.repair
    assert (never.message_state, never.sweeper_will_undo) == (None, False)
    assert "never recorded" in never.repair
    assert never.insurer_paid == {"insurance": 300, "critical_illness": 0}
    assert report.discrepancy_counts == {"missing_here": 3}


def test_a_sent_message_in_force_at_the_insurer_is_reversed_by_the_sweeper() -> None:
    sent = ours(at(DAY, 9), 1, None, state="sent")
    (found,) = reconcile([sent], [theirs(sent, 100)]).discrepancies
    assert isinstance(found, MissingHere) and found.sweeper_will_undo
    assert "reverse it (2601)" in found.repair


def test_booked_here_but_not_in_force_at_the_insurer_is_missing_there() -> None:
    absent = ours(at(DAY, 9), 1, booked(100))
    refunded = ours(at(DAY, 10), 2, booked(200))
    foreign_cancel = message_id(at(DAY, 15), 9)
    report = reconcile([absent, refunded], [theirs(refunded, 200, cancelled_by=foreign_cancel)], balanced=False)
    first, second = report.discrepancies
    assert isinstance(first, MissingAtInsurer) and first.insurer_state == "absent"
    assert first.gateway_paid == {"insurance": 100, "critical_illness": 0}
    assert "holds no settlement" in first.repair and f"/v1/settlements/{first.settlement_id}/reversal" in first.repair
    assert isinstance(second, MissingAtInsurer) and second.insurer_state == "cancelled"
    assert second.cancelled_by == foreign_cancel and not second.sweeper_will_reverse
    assert "did not send" in second.repair
    assert report.gateway.settlements == 2 and report.insurer.settlements == 0


def test_a_reversal_half_done_names_the_other_half_and_who_does_it() -> None:
    cancel = message_id(at(DAY, 16), 7)
    pending = ours(at(DAY, 9), 1, booked(100), cancel_message_ids=(cancel,), cancel_state="answered")
    stuck_cancel = message_id(at(DAY, 16), 8)
    stuck = ours(at(DAY, 10), 2, booked(200), cancel_message_ids=(stuck_cancel,), cancel_state="superseded")
    here_only = ours(at(DAY, 11), 3, booked(300, reversed_=True))
    detail = [theirs(pending, 100, cancelled_by=cancel), theirs(stuck, 200, cancelled_by=stuck_cancel)]
    detail.append(theirs(here_only, 300))
    report = reconcile([pending, stuck, here_only], detail)
    will, wont, there = report.discrepancies
    assert isinstance(will, CancelledAtInsurerOnly) and will.sweeper_will_reverse and will.cancelled_by == cancel
    assert "the sweeper will book the local reversal" in will.repair
    assert isinstance(wont, CancelledAtInsurerOnly) and not wont.sweeper_will_reverse
    assert "reverse it again" in wont.repair
    assert isinstance(there, ReversedHereOnly) and there.cancel_with == "2305" and not there.sweeper_will_cancel
    assert "cancel it there (2305" in there.repair
    assert report.discrepancy_counts == {"cancelled_at_insurer_only": 2, "reversed_here_only": 1}


def test_amounts_that_differ_are_named_per_fund_with_both_figures() -> None:
    message = ours(at(DAY, 9), 1, booked(60_000, 5_000))
    (insurance, critical) = reconcile([message], [theirs(message, 60_100, 4_900)], balanced=False).discrepancies
    assert isinstance(insurance, FundDiffers)
    assert (insurance.field, insurance.fund_type, insurance.gateway, insurance.insurer) == (
        "insurance",
        "390100",
        60_000,
        60_100,
    )
    assert (critical.field, critical.gateway, critical.insurer) == ("critical_illness", 5_000, 4_900)
    assert "a person must look" in critical.repair
    total = reconcile([message], [theirs(message, 60_000, 5_000, total=99_000)]).discrepancies
    assert [(d.field, d.gateway, d.insurer) for d in total] == [("total", 100_000, 99_000)]


def test_a_message_sent_before_midnight_and_committed_after_it_counts_on_the_later_day() -> None:
    late = ours(at(DAY, 23, 59, 59), 1, booked(100))
    committed = at(DAY + dt.timedelta(days=1), 0, 0, 1)
    detail = [theirs(late, 100, settled=committed)]
    on_day = reconcile([late], detail)
    assert on_day.clean and on_day.gateway.settlements == 0 and on_day.matched_count == 0
    (crossed,) = on_day.crossed_midnight
    assert (crossed.message_id, crossed.reconciled_on) == (late.message_id, DAY + dt.timedelta(days=1))
    next_day = compare(
        DAY + dt.timedelta(days=1),
        [late],
        detail,
        TotalsResult(balanced=True, description="balanced", insurer=Totals(count=1, total=100_000, fund_paid=100,
                                                                             by_fund_type={"390100": 100}),
                     raw_answer=b""),
        institution_code=INSTITUTION,
        fund_types=FUND_TYPES,
    )  # fmt: skip
    assert next_day.clean and next_day.matched_count == 1 and next_day.gateway.settlements == 1
    assert [c.message_id for c in next_day.crossed_midnight] == [late.message_id]
    assert gateway_totals(DAY, [late], detail, FUND_TYPES).count == 0
    assert gateway_totals(DAY + dt.timedelta(days=1), [late], detail, FUND_TYPES).count == 1


def test_the_clinics_list_is_compared_as_the_existing_reconciliation_names_it() -> None:
    one = ours(at(DAY, 9), 1, booked(60_000, 5_000))
    two = ours(at(DAY, 10), 2, booked(30_000))
    three = ours(at(DAY, 11), 3, booked(20_000, reversed_=True))
    detail = [theirs(one, 60_000, 5_000), theirs(two, 30_000), theirs(three, 20_000, cancelled_by="Z" * 30)]

    def line(settlement: BookedSettlement, **change: Any) -> SubmittedSettlement:
        fields = {
            "settlement_id": settlement.settlement_id,
            "total": settlement.total,
            "insurance": settlement.insurance,
            "veteran_subsidy": 0,
            "hardship_aid": settlement.hardship_aid,
            "out_of_pocket": settlement.out_of_pocket,
            "other_funds": settlement.other_funds,
            "request_id": settlement.request_id,
        }
        return SubmittedSettlement(**(fields | change))

    assert one.settlement and two.settlement and three.settlement
    stranger = uuid.uuid4()
    clinic_list = [
        line(one.settlement, insurance=60_001, out_of_pocket=one.settlement.out_of_pocket - 1),  # two amounts wrong
        line(three.settlement),  # not marked reversed
        SubmittedSettlement(  # a bill the gateway never booked, with insurance: missing here
            settlement_id=stranger, total=500, insurance=100, veteran_subsidy=0, hardship_aid=0, out_of_pocket=400
        ),
        SubmittedSettlement(  # an uninsured bill the insurer never saw: another reconciliation's business
            settlement_id=uuid.uuid4(), total=500, insurance=0, veteran_subsidy=0, hardship_aid=500, out_of_pocket=0
        ),
    ]  # and two is left out
    report = reconcile([one, two, three], detail, clinic_list=clinic_list)
    assert report.discrepancies == [] and not report.clean
    kinds = {type(d): d for d in report.clinic_discrepancies}
    assert set(kinds) == {
        ClinicAmountDiffers,
        ClinicReversedAtGatewayOnly,
        ClinicMissingAtGateway,
        ClinicMissingAtClinic,
    }
    differs = [d for d in report.clinic_discrepancies if isinstance(d, ClinicAmountDiffers)]
    assert [(d.field, d.gateway, d.submitted) for d in differs] == [
        ("insurance", 60_000, 60_001),
        ("out_of_pocket", one.settlement.out_of_pocket, one.settlement.out_of_pocket - 1),
    ]
    assert kinds[ClinicMissingAtGateway].settlement_id == stranger
    missing = kinds[ClinicMissingAtClinic]
    assert (missing.settlement_id, missing.request_id) == (two.settlement.settlement_id, two.settlement.request_id)
    assert all(d.repair for d in report.clinic_discrepancies)
    assert report.clinic is not None
    assert (report.clinic.settlements, report.clinic.funds) == (3, {"insurance": 80_101, "critical_illness": 5_000})
    assert report.clinic_discrepancy_counts["amount_differs"] == 2


def test_a_line_reversed_only_in_the_clinics_list_and_another_clinics_settlements() -> None:
    one = ours(at(DAY, 9), 1, booked(100))
    elsewhere = msgspec.structs.replace(ours(at(DAY, 10), 2, booked(200)), clinic_id="V001")
    detail = [theirs(one, 100), theirs(elsewhere, 200)]
    assert one.settlement is not None
    line = SubmittedSettlement(
        settlement_id=one.settlement.settlement_id,
        total=100_000,
        insurance=100,
        veteran_subsidy=0,
        hardship_aid=0,
        out_of_pocket=99_900,
        reversed=True,
    )
    report = reconcile([one, elsewhere], detail, clinic_list=[line], clinic_id="C001")
    assert [type(d) for d in report.clinic_discrepancies] == [ClinicReversedAtClinicOnly]
    assert report.clinic is not None and report.clinic.settlements == 0


def test_a_clinic_list_that_cannot_be_compared_is_refused_with_its_field() -> None:
    line = SubmittedSettlement(
        settlement_id=uuid.uuid4(), total=1, insurance=1, veteran_subsidy=0, hardship_aid=0, out_of_pocket=0
    )
    with pytest.raises(ReconciliationError) as twice:
        check_clinic_list([line, line])
    assert twice.value.field == "clinic_list"
    named = SubmittedSettlement(
        settlement_id=uuid.uuid4(),
        total=1,
        insurance=0,
        veteran_subsidy=0,
        hardship_aid=0,
        out_of_pocket=0,
        other_funds={"insurance": 1},
    )
    with pytest.raises(ReconciliationError) as own_field:
        check_clinic_list([named])
    assert own_field.value.field == "clinic_list[0].other_funds"


def test_message_ids_of_a_window_lie_between_its_bounds() -> None:
    low, high = id_bounds(INSTITUTION, DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1))
    inside = [
        message_id(at(DAY - dt.timedelta(days=1), 0, 0, 0), 0),
        message_id(at(DAY + dt.timedelta(days=1), 23, 59, 59), 9999),
    ]
    outside = [
        message_id(at(DAY - dt.timedelta(days=2), 23, 59, 59), 9999),
        message_id(at(DAY + dt.timedelta(days=2), 0), 0),
    ]
    assert all(low <= mid < high for mid in inside)
    assert not any(low <= mid < high for mid in outside)


@pytest.mark.parametrize("text", ["2026-05-01T10:00:00", "2026-13-01 10:00:00", "2026-05-01 10:00", "garbage"])
def test_an_insurer_time_not_in_its_form_is_refused(text: str) -> None:
    record = msgspec.structs.replace(theirs(message_id(at(DAY), 1), 100), settled_at=text)
    with pytest.raises(ValueError):
        settled_on(record)
