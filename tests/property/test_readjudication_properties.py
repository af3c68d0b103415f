"""Re-adjudication's invariants, for any history and any retroactive change (settlement/readjudication.py).

A person-year is settled bill by bill under the registry as it was; then the registry changes with a past
date (and, sometimes, one bill is refunded). Whatever the change:

* settled amounts + corrections = a fresh settlement of the whole history under the corrected registry, to
  the fen, per fund and for the patient (a refunded bill: nothing);
* the counters, moved by the corrections, are the fresh settlement's;
* every correction conserves money (the bill's total never changes);
* re-adjudicating again, with the corrections booked, corrects nothing;
* the orders are, per fund, the net of the corrections.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settlement.catalogue import Catalogue
from settlement.chain import Chain, settle
from settlement.chain_policy import parse_chain
from settlement.models import Bill, LineItem
from settlement.readjudication import (
    NOTHING,
    OUT_OF_POCKET,
    Amounts,
    Correction,
    PastSettlement,
    orders_for,
    readjudicate,
)
from settlement.registry import Membership, status_on
from settlement.replay import HistoricBill, replay_person_year

REPO = Path(__file__).resolve().parents[2]
DEFAULT = parse_chain((REPO / "policies/default.toml").read_text(encoding="utf-8"), "default.toml")
TIERS = DEFAULT.programmes["hardship_aid"]
VETERANS = DEFAULT.programmes["veteran_subsidy"]
NO_CATALOGUE = Catalogue()
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

days = st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31))


def policy_for(_: dt.date) -> Chain:
    return DEFAULT


@st.composite
def bills(draw: st.DrawFn) -> Bill:
    inpatient = draw(st.booleans())
    lines = tuple(
        LineItem(
            code=f"ITEM-{index}",
            name="x",
            category=draw(st.sampled_from("ABC")),
            amount=draw(st.integers(0, 2_000_000)),
        )
        for index in range(draw(st.integers(1, 4)))
    )
    level = "county" if inpatient else draw(st.sampled_from(["village", "township", "county"]))
    return Bill(
        clinic_level=level,
        visit_type="inpatient" if inpatient else "outpatient",
        service_date=draw(days),
        items=lines,
    )


@st.composite
def registries(draw: st.DrawFn) -> list[Membership]:
    held = []
    if draw(st.integers(0, 9)):  # insured, mostly
        held.append(Membership(programme="insurance", code="resident", effective_from=dt.date(2025, 1, 1)))
    for programme, codes in (("hardship_aid", TIERS), ("veteran_subsidy", VETERANS)):
        if draw(st.booleans()):
            start = draw(days)
            end = draw(st.one_of(st.none(), days.filter(lambda day, start=start: day > start)))
            held.append(
                Membership(
                    programme=programme, code=draw(st.sampled_from(codes)), effective_from=start, struck_off_on=end
                )
            )
    return held


def settled_as_it_was(history: list[Bill], registry: list[Membership]) -> list[HistoricBill]:
    """The bills settled one after another, in service-date order, under the registry of the time."""
    counters: dict[str, int] = {}
    settled = []
    for bill in history:
        settlement = settle(
            bill, status_on(registry, bill.service_date), counters, DEFAULT, NO_CATALOGUE.on(bill.service_date)
        )
        counters = settlement.counters_after
        settled.append(HistoricBill(bill, settlement))
    return settled


@PROPERTY
@given(history=st.lists(bills(), min_size=1, max_size=8), before=registries(), after=registries(), data=st.data())
def test_settled_plus_corrections_is_a_fresh_settlement_under_the_corrected_registry(
    history: list[Bill], before: list[Membership], after: list[Membership], data: st.DataObject
) -> None:
    history.sort(key=lambda bill: bill.service_date)
    refunded = data.draw(st.one_of(st.none(), st.integers(0, len(history) - 1)))
    past = [
        PastSettlement(uuid.UUID(int=number + 1), historic, number == refunded, NOTHING)
        for number, historic in enumerate(settled_as_it_was(history, before))
    ]
    result = readjudicate(past, after, policy_for, NO_CATALOGUE)
    assert result.refused is None

    live = [p for p in past if not p.reversed]
    fresh = {
        p.settlement_id: replayed.again
        for p, replayed in zip(
            live, replay_person_year([p.historic for p in live], after, policy_for, NO_CATALOGUE), strict=True
        )
    }
    corrected = {correction.settlement_id: correction.change for correction in result.corrections}
    for p in past:
        change = corrected.get(p.settlement_id, NOTHING)
        assert sum(change.funds.values()) == 0  # the bill's total never changes
        now = p.paid.plus(change)
        again = fresh.get(p.settlement_id)
        assert now.funds == (NOTHING if again is None else Amounts.of(again)).funds

    counters_before = NOTHING
    for p in live:
        counters_before = counters_before.plus(Amounts({}, p.historic.settled.counter_deltas()))
    fresh_counters = {
        name: value for name, value in (fresh[live[-1].settlement_id].counters_after if live else {}).items() if value
    }
    assert counters_before.plus(Amounts({}, result.counters)).counters == fresh_counters

    # Booked, the corrections leave nothing to correct.
    booked = [p._replace(adjusted=p.adjusted.plus(corrected.get(p.settlement_id, NOTHING))) for p in past]
    assert readjudicate(booked, after, policy_for, NO_CATALOGUE).corrections == []

    # The orders are the net per fund, whatever the de-minimis and recovery settings.
    net: dict[str, int] = {}
    for change in corrected.values():
        for fund, value in change.funds.items():
            if fund != OUT_OF_POCKET:
                net[fund] = net.get(fund, 0) + value
    recover = data.draw(st.booleans())
    orders = orders_for(result.corrections, de_minimis=data.draw(st.integers(0, 500)), recover_overpayments=recover)
    assert {order.fund: order.amount if order.kind == "payable" else -order.amount for order in orders} == {
        fund: value for fund, value in net.items() if value
    }
    assert all(order.kind != ("overpayment" if recover else "recovery") for order in orders)


def test_an_order_below_the_de_minimis_amount_is_waived_and_one_at_it_is_not() -> None:
    def order(aid: int, de_minimis: int) -> tuple[str, int, str]:
        change = Amounts({"hardship_aid": aid, OUT_OF_POCKET: -aid}, {})
        (only,) = orders_for([Correction(uuid.uuid4(), change)], de_minimis=de_minimis, recover_overpayments=False)
        return only.kind, only.amount, only.status

    assert order(99, 100) == ("payable", 99, "waived")
    assert order(100, 100) == ("payable", 100, "open")
    assert order(-99, 100) == ("overpayment", 99, "waived")
    assert order(-250, 100) == ("overpayment", 250, "reported")
