"""Hypothesis-generated bills over HTTP: every answer conserves money or is a 4xx problem that wrote nothing.

Bills are drawn mostly valid (registered people of every programme, the terminal's
own clinic, dates in 2026, categories A/B/C, amounts up to the line limit) and then
mutated: a field dropped, added, repeated or given a value of the wrong type, the
amount fractional, negative, huge or NaN, dates impossible, decades past or in the
future, codes and names in any Unicode (control characters and lone surrogates
included), 0 lines or about the line limit (2,000), request ids reused, the wrong terminal for the clinic.
They go to ``/v1/settlements`` and ``/v1/quotes`` as JSON or MessagePack.

Every answer must be either

- a success (201, or 200 for a quote or a replay) whose payers and out of pocket add up
  to the total of the lines, every amount a non-negative ``int``; a quote writes nothing;
- or a 4xx ``application/problem+json`` with a documented ``code``, the ``field`` it is
  about where there is one, and the database row counts unchanged;

and never a 5xx. The run's Hypothesis seed is printed (``tests/conftest.py``);
``--hypothesis-seed=N`` replays it, and a failure prints ``@reproduce_failure``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from gateway import api_models as api
from gateway.config import Settings
from gateway.problems import TITLES
from tests.integration.conftest import SignedClient, own_gateway, register, row_counts

MAX_LINES = Settings().max_lines

pytestmark = pytest.mark.integration

# 200 bills keep this near 5 s of the suite's ten minutes; MEDSETTLE_HOSTILE_EXAMPLES=2000 digs deeper.
HOSTILE = settings(
    max_examples=int(os.environ.get("MEDSETTLE_HOSTILE_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
TERMINALS = {"C001": "term-C001", "T001": "term-T001", "V001": "term-V001"}
PAYERS = ("insurance", "veteran_subsidy", "hardship_aid", "out_of_pocket")
BILL_FIELDS = set(api.SettleRequest.__struct_fields__)
# Codes whose problem names the field it is about.
FIELD_CODES = {
    "validation_failed",
    "invalid_bill",
    "invalid_national_id",
    "unknown_person",
    "unknown_clinic",
    "inpatient_not_offered",
    "no_policy_in_force",
    "service_date_in_future",
    "terminal_not_for_clinic",
    "idempotency_key_reused",
    "too_many_lines",
    "duplicate_key",
}
PROGRAMMES = [
    (("insurance", "resident"),),
    (("insurance", "resident"), ("hardship_aid", "minimum_allowance")),
    (("insurance", "resident"), ("veteran_subsidy", "priority_care"), ("hardship_aid", "destitute")),
    (("veteran_subsidy", "disabled_veteran"),),
    (("insurance", "resident"), ("hardship_aid", "medical_hardship")),
    (),
]


Gateway = tuple[SignedClient, asyncpg.Pool, str]  # the test client, a pool and the URL of the database


@pytest.fixture(scope="module")
async def gateway(database_url: str, settings: Any) -> AsyncIterator[Gateway]:
    """A gateway over a small database of its own, checked for every invariant at the end. Each example counts
    the rows of six tables before and after its request: on the suite's shared database, tens of thousands of
    ledger lines by the time this test runs, those counts were four fifths of the test's time."""
    async with own_gateway(database_url, settings) as own:
        yield own


@pytest.fixture(scope="module")
async def people(gateway: Gateway) -> list[str]:
    client, _, _ = gateway
    return [await register(client, *programmes) for programmes in PROGRAMMES]


# ---------------------------------------------------------------- strategies

# Anything a field could wrongly hold.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# Printable text in any script for codes and names; hostile text adds control characters and lone surrogates.
printable = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=30)
hostile_text = st.text(max_size=40)
hostile_amounts = st.sampled_from([-1, 12.5, 100.0, api.MAX_FEN + 1, 10**30, math.nan, math.inf, "100", True])
hostile_dates = st.one_of(
    st.sampled_from(["2026-02-30", "2026-13-01", "2026/05/01", "20260501", "", "0000-01-01", "2026-5-1"]),
    st.dates(dt.date(1900, 1, 1), dt.date(2000, 12, 31)).map(dt.date.isoformat),  # no policy in force
    st.integers(2, 3650).map(lambda days: (dt.date.today() + dt.timedelta(days=days)).isoformat()),  # future
    junk,
)


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {
        "code": draw(st.sampled_from(["DRUG-001", "MAT-002", "SVC-003"]) | printable),
        "name": draw(st.sampled_from(["Ceftriaxone", "头孢曲松钠", ""]) | printable),
        "category": draw(st.sampled_from(["A", "B", "C"])),
        "amount": draw(st.integers(0, 5_000_000) | st.sampled_from([0, 1, 49, 50, 99, 100, api.MAX_FEN])),
    }
    if draw(st.booleans()):  # quantity × unit price, agreeing with the amount
        item["quantity"] = draw(st.integers(1, 1000))
        item["unit_price"] = draw(st.integers(0, 10_000))
        item["amount"] = item["quantity"] * item["unit_price"]
    return item


@st.composite
def valid_bills(draw: st.DrawFn, people: list[str]) -> dict[str, Any]:
    today = dt.date.today()
    return {
        # A small pool of ids, so that some requests replay or reuse an id with another body.
        "request_id": draw(
            st.sampled_from([f"hostile-{n}" for n in range(8)]) | st.uuids().map(str) | st.uuids().map(str)
        ),
        "clinic_id": draw(st.sampled_from(sorted(TERMINALS))),
        "person_id": draw(st.sampled_from(people)),
        "visit_type": draw(st.sampled_from(["inpatient", "outpatient"])),
        "service_date": draw(st.dates(dt.date(2026, 1, 1), min(today, dt.date(2026, 12, 31)))).isoformat(),
        "items": draw(st.lists(items(), min_size=1, max_size=6)),
    }


MUTATIONS = [
    "drop",
    "add",
    "wrong_type",
    "item_drop",
    "item_add",
    "item_wrong_type",
    "amount",
    "quantity_disagrees",
    "category",
    "text",
    "date",
    "clinic",
    "person",
    "lines",
    "repeat_key",
    "not_an_object",
    "wrong_terminal",
]


def mutate(draw: st.DrawFn, bill: dict[str, Any], mutation: str) -> None:
    """One change to a drawn bill; ``repeat_key``, ``not_an_object`` and ``wrong_terminal`` act later."""
    line = draw(st.integers(0, len(bill["items"]) - 1)) if isinstance(bill.get("items"), list) and bill["items"] else 0
    item = bill["items"][line] if isinstance(bill.get("items"), list) and bill["items"] else {}
    if mutation == "drop":
        bill.pop(draw(st.sampled_from(sorted(bill))), None)
    elif mutation == "add":
        bill[draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))] = draw(junk)
    elif mutation == "wrong_type":
        bill[draw(st.sampled_from(sorted(bill)))] = draw(junk)
    elif mutation == "item_drop" and item:
        item.pop(draw(st.sampled_from(sorted(item))), None)
    elif mutation == "item_add" and item:
        item[draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))] = draw(junk)
    elif mutation == "item_wrong_type" and item:
        item[draw(st.sampled_from(sorted(item)))] = draw(junk)
    elif mutation == "amount" and item:
        item["amount"] = draw(hostile_amounts)
    elif mutation == "quantity_disagrees" and item:
        item |= {"quantity": draw(st.integers(-1, 5)), "unit_price": draw(st.integers(-1, 5))}
    elif mutation == "category" and item:
        item["category"] = draw(st.sampled_from(["D", "a", "", "AB"]))
    elif mutation == "text" and item:
        item[draw(st.sampled_from(["code", "name"]))] = draw(hostile_text)
    elif mutation == "date":
        bill["service_date"] = draw(hostile_dates)
    elif mutation == "clinic":
        bill["clinic_id"] = draw(st.sampled_from(["C999", "", "c001", "C001 "]) | hostile_text)
    elif mutation == "person":
        bill["person_id"] = draw(st.sampled_from(["", "123", "410102196003020027", "41010219600302002X"]) | junk)
    elif mutation == "lines" and item:
        # One line repeated: cheap to draw. Either side of the limit.
        bill["items"] = [item] * draw(st.sampled_from([0, MAX_LINES - 1, MAX_LINES, MAX_LINES + 1]))


@st.composite
def requests(draw: st.DrawFn, people: list[str]) -> tuple[str, str, str, bytes, Any]:
    """(path, terminal, content type, body bytes, the document sent): a valid bill with up to two changes."""
    bill = draw(valid_bills(people))
    count = draw(st.sampled_from([0, 0, 1, 1, 2]))  # mostly valid: two bills in five are sent as drawn
    mutations = draw(st.lists(st.sampled_from(MUTATIONS), min_size=count, max_size=count))
    for mutation in mutations:
        mutate(draw, bill, mutation)
    wrong_terminal = "wrong_terminal" in mutations
    clinic = bill.get("clinic_id")
    terminal = "term-T001" if wrong_terminal else TERMINALS.get(clinic if isinstance(clinic, str) else "", "term-C001")
    path = draw(st.sampled_from(["/v1/settlements", "/v1/quotes"]))
    content_type = draw(st.sampled_from(["application/json", "application/json", "application/msgpack"]))
    document: Any = [bill] if "not_an_object" in mutations else bill
    body = None
    if content_type == "application/msgpack":
        try:
            body = msgspec.msgpack.encode(document)
        except (OverflowError, UnicodeEncodeError):  # past 64 bits, or a lone surrogate: send it as JSON
            content_type = "application/json"
    if body is None:
        body = json.dumps(document).encode()  # NaN and Infinity as bare tokens; surrogates as \\ud800
        if "repeat_key" in mutations:
            repeated = draw(st.sampled_from(['"amount": ', '"person_id": ', '"service_date": ', '"category": ']))
            body = body.replace(repeated.encode(), repeated.encode() + b'"1", ' + repeated.encode(), 1)
    return path, terminal, content_type, body, document


# ---------------------------------------------------------------- the property


def _conserves_money(answer: dict[str, Any], bill: dict[str, Any]) -> None:
    figures = {name: answer[name] for name in (*PAYERS, "total", "eligible")}
    assert all(type(value) is int and value >= 0 for value in figures.values()), figures
    assert sum(answer[name] for name in PAYERS) == answer["total"], figures
    assert answer["total"] == sum(item["amount"] for item in bill["items"]), figures
    for line in answer["lines"]:
        assert all(type(line[name]) is int and line[name] >= 0 for name in PAYERS), line


@HOSTILE
@given(data=st.data())
async def test_hostile_bills_conserve_money_or_are_refused_without_a_write(gateway, people, data) -> None:
    client, pool, _ = gateway
    path, terminal, content_type, body, bill = data.draw(requests(people))  # bill: the document sent
    note(f"{path} as {terminal}, {content_type}: {body[:2000]!r}")
    before = await row_counts(pool)
    response = await client.post(
        path, data=body, headers={"X-Terminal-Id": terminal, "Content-Type": content_type, "Accept": "application/json"}
    )
    after = await row_counts(pool)
    assert response.status < 500, await response.text()
    if response.status < 300:
        event(f"{path} {response.status}")  # --hypothesis-show-statistics shows how often each answer came
        assert response.content_type == "application/json"
        answer = await response.json()
        _conserves_money(answer, bill)
        if path == "/v1/quotes" or response.status == 200:  # a quote, or a replay of the first answer
            assert after == before
        else:
            assert response.status == 201 and after["settlements"] == before["settlements"] + 1
        return
    assert 400 <= response.status < 500
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    event(f"{path} {response.status} {problem['code']}")
    assert problem["status"] == response.status and problem["code"] in TITLES, problem
    assert problem["title"] and problem["detail"] and problem["request_id"], problem
    if problem["code"] in FIELD_CODES and isinstance(bill, dict) and "Expected `object`" not in problem["detail"]:
        field = problem.get("field")
        assert field, problem
        assert field.split(".")[0].split("[")[0] in BILL_FIELDS | set(bill), problem
    assert after == before, problem
