"""The figures the docs show, checked against the real engine and the shipped policies.

docs/worked-examples.md: each test settles one example and checks it twice: against the key figures written
here, and against every figure table and receipt explanation the page shows for it. Examples 1 to 9
settle under policies/default.toml the way the gateway does (today's settlement shape); examples 10
to 12 settle along the three-tier example policy with the chain engine (settlement.chain.settle).
A change to the rules or to a policy that moves a figure fails here until the page says the same;
a page edit that gets a figure wrong fails too.

Tables on the page: ``| label | fen | yuan |`` lists settlement fields, payers by fund code, or
accumulators and counters (only the rows shown are checked, and fen and yuan must agree); ``| line
| ... |`` lists each line's breakdown in yuan; ``| Steps... | base | ... |`` lists each chain step.
Every such table and every ``text`` block in an example must be checked by its test.

docs/policy-files.md: the refusal messages it shows are the loader's (and the gateway's), word for
word, and every one it shows is checked; its TOML blocks are pieces of policies/default.toml, of the
three-tier example or of the new version it shows; and it names every field of both files and every
field the loader reads.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
import typing
from collections.abc import Iterator, Mapping
from decimal import Decimal

import msgspec
import pytest

from settlement import (
    Accumulators,
    Bill,
    LineItem,
    PersonStatus,
    PolicyError,
    Settlement,
    apply_deltas,
    explain,
    reversal_deltas,
    settlement_deltas,
)
from settlement.chain import settle as settle_along
from settlement.chain_policy import _ChainFile, _FundFile, parse_chain
from settlement.explain import Language
from settlement.models import ACCUMULATOR_FIELDS
from settlement.models import Settlement as ChainSettlement
from settlement.policy_book import PolicyBook
from settlement.registry import Membership, status_on
from tests.unit.test_engine_rules import DEFAULT_TEXT, POLICY, REPO, Y, bill, item, person, replace_once, run

PAGE_PATH = REPO / "docs" / "worked-examples.md"
PAGE = PAGE_PATH.read_text(encoding="utf-8")
EXAMPLES = range(1, 13)

THREE_TIER_PATH = REPO / "policies" / "examples" / "three-tier" / "three-tier-2026.toml"
BESIDE_THE_INSURER_PATH = REPO / "policies" / "examples" / "beside-the-insurer" / "beside-the-insurer-2026.toml"
THREE_TIER_TEXT = THREE_TIER_PATH.read_text(encoding="utf-8")
THREE_TIER = parse_chain(THREE_TIER_TEXT, str(THREE_TIER_PATH))
THREE_TIER_FUNDS = ("insurance", "critical_illness", "hardship_aid", "tilted_aid", "veteran_subsidy", "charity")

# Example 9's new version, also shown on docs/policy-files.md: policies/default.toml with these edits.
NEW_VERSION_CHANGES = [
    ('id = "default-2026"', 'id = "county-2026-07"'),
    ("effective_from = 2026-01-01", "effective_from = 2026-07-01"),
    (
        "rate = { village = 0.50, township = 0.45, county = 0.35 }",  # insurance's outpatient rates
        "rate = { village = 0.50, township = 0.45, county = 0.40 }",
    ),
]


def new_version_text() -> str:
    text = DEFAULT_TEXT
    for old, new in NEW_VERSION_CHANGES:
        text = replace_once(text, old, new)
    return text


SETTLEMENT_FIELDS = (
    "total",
    "eligible",
    "self_pay_first",
    "not_covered",
    "insurance",
    "veteran_subsidy",
    "hardship_aid",
    "out_of_pocket",
)
LINE_FIELDS = (
    "amount",
    "self_pay_first",
    "eligible",
    "insurance",
    "veteran_subsidy",
    "hardship_aid",
    "out_of_pocket",
)
STEP_COLUMNS = ("base", "set aside", "computed", "cap cut", "paid", "reason")


# ---------------------------------------------------------------- reading the page


def fen_from_yuan_cell(cell: str) -> int:
    fen = Decimal(cell.replace(",", "")) * 100
    assert fen == fen.to_integral_value(), f"{cell!r} is not a whole number of fen"
    return int(fen)


def fen_cell(cell: str) -> int:
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*", cell), f"{cell!r} is not a fen figure like 1,275,000"
    return int(cell.replace(",", ""))


def name_cell(cell: str) -> str:
    return cell.strip("`")


def table_rows(text: str) -> Iterator[list[list[str]]]:
    """Every markdown table in ``text``: its header row, then its body rows (separator left out)."""
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if rows:
            assert set(rows[1]) <= {"---", "---:"}, f"table {rows[0]} has no separator row"
            yield [rows[0], *rows[2:]]
            rows = []


class Example:
    """One ``## N.`` section of the page (up to the next ``##`` heading), and what its test has checked
    of it."""

    def __init__(self, number: int) -> None:
        starts = {int(m.group(1)): m.start() for m in re.finditer(r"^## (\d+)\. ", PAGE, flags=re.MULTILINE)}
        assert number in starts, f"docs/worked-examples.md has no example {number}"
        later = [m.start() for m in re.finditer(r"^## ", PAGE, flags=re.MULTILINE) if m.start() > starts[number]]
        self.number = number
        self.text = PAGE[starts[number] : min(later, default=len(PAGE))]
        self.tables = self._tables()
        self.blocks = re.findall(r"^```text\n(.*?)\n```$", self.text, flags=re.MULTILINE | re.DOTALL)
        self.checked_tables: set[str] = set()
        self.checked_blocks: set[int] = set()

    def _tables(self) -> dict[str, list[list[str]]]:
        tables: dict[str, list[list[str]]] = {}
        for table in table_rows(self.text):
            label = table[0][0]
            assert label not in tables, f"example {self.number}: two tables labelled {label!r}"
            tables[label] = table
        return tables

    def _table(self, label: str) -> list[list[str]]:
        assert label in self.tables, f"example {self.number} has no table labelled {label!r}"
        self.checked_tables.add(label)
        return self.tables[label]

    def figures(self, label: str, actual: Mapping[str, int]) -> list[str]:
        """A ``| label | fen | yuan |`` table: each row shown equals ``actual``. Returns the rows' names."""
        header, *rows = self._table(label)
        assert header[1:] == ["fen", "yuan"], header
        assert rows, f"example {self.number}: {label!r} is empty"
        shown = []
        for name, fen, yuan in rows:
            field = name_cell(name)
            assert field in actual, f"example {self.number}, {label!r}: unknown row {name}"
            assert fen_cell(fen) == fen_from_yuan_cell(yuan), f"{label!r}, {field}: {fen} fen is not {yuan} yuan"
            assert fen_cell(fen) == actual[field], (
                f"{label!r}, {field}: the page says {fen}, the engine {actual[field]}"
            )
            shown.append(field)
        return shown

    def settlement(self, label: str, s: Settlement) -> None:
        self.figures(label, {name: getattr(s, name) for name in SETTLEMENT_FIELDS})

    def accumulators(self, label: str, accumulators: Accumulators) -> None:
        self.figures(label, {name: getattr(accumulators, name) for name in ACCUMULATOR_FIELDS})

    def items(self, items: tuple[LineItem, ...]) -> None:
        """The ``| item | category | amount |`` table: the bill as settled."""
        header, *rows = self._table("item")
        assert header[1:] == ["category", "amount"], header
        shown = [
            (re.match(r"`([^`]+)`", code), category, fen_from_yuan_cell(amount)) for code, category, amount in rows
        ]
        assert [(m.group(1) if m else None, category, amount) for m, category, amount in shown] == [
            (line.code, line.category, line.amount) for line in items
        ]

    def lines(self, s: Settlement) -> None:
        """The ``| line | ... |`` table: every line of the bill, every column in yuan."""
        header, *rows = self._table("line")
        assert header[1:] == list(LINE_FIELDS), header
        assert [name_cell(row[0]) for row in rows] == [line.code for line in s.lines]
        for row, line in zip(rows, s.lines, strict=True):
            shown = dict(zip(LINE_FIELDS, map(fen_from_yuan_cell, row[1:]), strict=True))
            assert shown == {name: getattr(line, name) for name in LINE_FIELDS}, line.code

    def explanation(self, s: Settlement, language: Language = "en") -> None:
        """The receipt explanation appears as a ``text`` block, line for line."""
        expected = "\n".join(explain(s, language))
        assert expected in self.blocks, f"example {self.number}: no text block reads\n{expected}"
        self.checked_blocks.add(self.blocks.index(expected))

    # ------------------------------------------------------------ along a chain

    def chain_result(self, label: str, r: ChainSettlement) -> None:
        """A ``| label | fen | yuan |`` table of a chain settlement: its totals and each fund's payment."""
        totals = ("total", "eligible", "self_pay_first", "not_covered", "out_of_pocket")
        self.figures(label, {name: getattr(r, name) for name in totals} | {step.payer: step.paid for step in r.traces})

    def counters(self, label: str, counters: Mapping[str, int]) -> None:
        """A ``| label | fen | yuan |`` table of counters: exactly those above 0, as the page says."""
        shown = self.figures(label, counters)
        assert sorted(shown) == sorted(name for name, value in counters.items() if value), (
            f"example {self.number}, {label!r}: shows {shown}, not every counter above 0"
        )

    def steps(self, label: str, r: ChainSettlement) -> None:
        """A ``| label | base | set aside | computed | cap cut | paid | reason |`` table: every step."""
        header, *rows = self._table(label)
        assert header[1:] == list(STEP_COLUMNS), header
        assert [name_cell(row[0]) for row in rows] == [step.payer for step in r.traces]
        for row, step in zip(rows, r.traces, strict=True):
            *money, reason = row[1:]
            assert [fen_from_yuan_cell(cell) for cell in money] == [
                step.base,
                step.deductible_consumed + step.below_threshold,
                step.computed,
                step.cap_cut,
                step.paid,
            ], f"example {self.number}, {label!r}: {step.payer}"
            assert (name_cell(reason) or None) == step.reason, f"example {self.number}, {label!r}: {step.payer}"

    def chain_lines(self, r: ChainSettlement) -> None:
        """The ``| line | ... |`` table of a chain settlement: every line, each fund's share, in yuan."""
        header, *rows = self._table("line")
        columns = ["amount", "self_pay_first", "eligible", *(step.payer for step in r.traces), "out_of_pocket"]
        assert header[1:] == columns, header
        assert [name_cell(row[0]) for row in rows] == [line.code for line in r.lines]
        for row, line in zip(rows, r.lines, strict=True):
            expected = [line.amount, line.self_pay_first, line.eligible, *line.payers, line.out_of_pocket]
            assert [fen_from_yuan_cell(cell) for cell in row[1:]] == expected, line.code

    def done(self) -> None:
        assert set(self.tables) == self.checked_tables, f"unchecked tables: {set(self.tables) - self.checked_tables}"
        assert self.checked_blocks == set(range(len(self.blocks))), "a text block on the page is not checked"


def test_every_example_on_the_page_has_a_test() -> None:
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", PAGE, flags=re.MULTILINE)]
    assert numbers == list(EXAMPLES)


# ---------------------------------------------------------------- the examples

WORKED_ITEMS = (item("A", 14_000 * Y, "A1"), item("B", 4_000 * Y, "B1"), item("C", 2_000 * Y, "C1"))
MAY_12 = dt.date(2026, 5, 12)


def test_1_county_admission_minimum_allowance() -> None:
    s = run(bill("county", "inpatient", *WORKED_ITEMS, day=MAY_12), person(tier="minimum_allowance"))
    # 20,000.00 total; eligible 14,000 + 3,600 = 17,600.00; (17,600 − 600) × 0.75 = 12,750.00;
    # aid 4,850 × 0.70 = 3,395.00; out of pocket 3,855.00
    assert (s.total, s.eligible) == (2_000_000, 1_760_000)
    assert (s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket) == (1_275_000, 0, 339_500, 385_500)
    # the tie in spreading aid (270,056.5 / 69,443.5) goes to the earlier line
    assert [(line.insurance, line.hardship_aid) for line in s.lines] == [
        (1_014_205, 270_057),
        (260_795, 69_443),
        (0, 0),
    ]
    example = Example(1)
    example.items(WORKED_ITEMS)
    example.settlement("Result", s)
    example.lines(s)
    example.accumulators("Accumulators after", s.accumulators())
    example.explanation(s, "en")
    example.explanation(s, "zh")
    example.done()


def test_2_same_admission_also_priority_care() -> None:
    s = run(
        bill("county", "inpatient", *WORKED_ITEMS, day=MAY_12),
        person(veteran="priority_care", tier="minimum_allowance"),
    )
    # subsidy 4,850 × 0.60 = 2,910.00; aid 1,940 × 0.70 = 1,358.00; out of pocket 2,982.00
    assert (s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket) == (1_275_000, 291_000, 135_800, 298_200)
    example = Example(2)
    example.settlement("Result", s)
    example.lines(s)
    example.accumulators("Accumulators after", s.accumulators())
    example.explanation(s)
    example.done()


def test_3_bands_apply_marginally() -> None:
    s = run(bill("county", "inpatient", item("A", 46_200 * Y, "A1"), day=MAY_12), person(tier="minimum_allowance"))
    # insurance (46,200 − 600) × 0.75 = 34,200.00 leaves 12,000.00: 10,000 × 0.70 + 2,000 × 0.75 = 8,500.00
    assert s.insurance == 3_420_000
    assert s.hardship_aid == 850_000
    assert s.out_of_pocket == 350_000
    example = Example(3)
    example.settlement("Result", s)
    example.explanation(s)
    example.done()


def outpatient_year() -> tuple[Settlement, Settlement, Settlement]:
    """Example 4's three visits for an insured person."""
    insured = person()
    v1 = run(bill("township", "outpatient", item("A", 150 * Y, "A1"), day=dt.date(2026, 3, 2)), insured)
    v2 = run(
        bill("county", "outpatient", item("A", 200 * Y, "A1"), item("B", 100 * Y, "B1"), day=dt.date(2026, 4, 8)),
        insured,
        v1.accumulators(),
    )
    v3 = run(
        bill("village", "outpatient", item("A", 3_515, "A1"), day=dt.date(2026, 5, 20)), insured, v2.accumulators()
    )
    return v1, v2, v3


def test_4_outpatient_deductible_over_several_visits() -> None:
    v1, v2, v3 = outpatient_year()
    # 150.00 all to the deductible; then 50.00 more and (290 − 50) × 0.35 = 84.00; then 35.15 × 0.50 = 17.575 → 17.58
    assert (v1.insurance, v2.insurance, v3.insurance) == (0, 8_400, 1_758)
    assert v2.accumulators().outpatient_deductible_used == 200 * Y
    assert v3.out_of_pocket == 1_757
    example = Example(4)
    for number, visit in enumerate((v1, v2, v3), start=1):
        example.settlement(f"Visit {number}", visit)
        example.accumulators(f"Accumulators after visit {number}", visit.accumulators())
    example.lines(v2)
    example.explanation(v2)
    example.done()


def test_5_cap_reached_mid_bill() -> None:
    before = Accumulators(
        outpatient_deductible_used=200 * Y,
        insurance_outpatient_paid=2_990 * Y,
        subsidy_paid=2_400 * Y,
        unpaid_eligible=2_400 * Y,
    )
    status = person(veteran="priority_care")
    v1 = run(bill("township", "outpatient", item("A", 100 * Y, "A1"), day=dt.date(2026, 11, 3)), status, before)
    # 100 × 0.45 = 45.00 cut to the 10.00 left of the cap; subsidy 90 × 0.50 = 45.00
    assert (v1.insurance, v1.veteran_subsidy, v1.out_of_pocket) == (1_000, 4_500, 4_500)
    v2 = run(
        bill("township", "outpatient", item("A", 100 * Y, "A1"), day=dt.date(2026, 12, 1)),
        status,
        v1.accumulators(),
    )
    assert (v2.insurance, v2.veteran_subsidy, v2.out_of_pocket) == (0, 5_000, 5_000)
    example = Example(5)
    example.accumulators("Accumulators before", before)
    example.settlement("Visit 1", v1)
    example.accumulators("Accumulators after visit 1", v1.accumulators())
    example.explanation(v1)
    example.settlement("Visit 2", v2)
    example.done()


def test_6_medical_hardship_threshold() -> None:
    rows = [
        Membership(programme="insurance", code="resident", effective_from=dt.date(2020, 1, 1)),
        Membership(programme="hardship_aid", code="medical_hardship", effective_from=dt.date(2026, 4, 1)),
    ]
    visits = [
        ("county", "outpatient", 4_200, dt.date(2026, 2, 10)),
        ("village", "outpatient", 2_400, dt.date(2026, 4, 15)),
        ("county", "inpatient", 10_200, dt.date(2026, 6, 1)),
        ("county", "inpatient", 10_200, dt.date(2026, 9, 1)),
    ]
    settled: list[Settlement] = []
    before = Accumulators()
    for level, visit, yuan, day in visits:
        s = run(bill(level, visit, item("A", yuan * Y, "A1"), day=day), status_on(rows, day), before)
        settled.append(s)
        before = s.accumulators()
    v1, v2, v3, v4 = settled
    assert v1.veteran_subsidy == v1.hardship_aid == 0 and v1.accumulators().unpaid_eligible == 280_000
    assert v2.hardship_aid == 0 and v2.accumulators().unpaid_eligible == 400_000
    # 4,000 → 7,000: 1,000.00 below the 5,000.00 threshold, 2,000.00 above × 0.50 = 1,000.00
    assert (v3.insurance, v3.hardship_aid, v3.out_of_pocket) == (720_000, 100_000, 200_000)
    # already above: 3,000 × 0.50 = 1,500.00
    assert v4.hardship_aid == 150_000
    example = Example(6)
    for number, s in enumerate(settled, start=1):
        example.settlement(f"Visit {number}", s)
        example.accumulators(f"Accumulators after visit {number}", s.accumulators())
    example.explanation(v3)
    example.done()


def test_7_struck_off_a_tier() -> None:
    strike_off = dt.date(2026, 3, 1)
    rows = [
        Membership(programme="insurance", code="resident", effective_from=dt.date(2020, 1, 1)),
        Membership(
            programme="hardship_aid",
            code="minimum_allowance",
            effective_from=dt.date(2024, 7, 1),
            struck_off_on=strike_off,
        ),
    ]
    day_before = strike_off - dt.timedelta(days=1)
    before = run(bill("county", "inpatient", *WORKED_ITEMS, day=day_before), status_on(rows, day_before))
    after = run(bill("county", "inpatient", *WORKED_ITEMS, day=strike_off), status_on(rows, strike_off))
    assert (before.hardship_aid, before.warnings) == (339_500, ())
    assert (after.hardship_aid, after.out_of_pocket) == (0, 725_000)
    assert [t.reason for t in after.traces if t.payer == "hardship_aid"] == ["struck_off"]
    assert [(w.code, w.programme, w.date) for w in after.warnings] == [("struck_off", "hardship_aid", strike_off)]
    example = Example(7)
    example.settlement("Day before", before)
    example.settlement("Strike-off day", after)
    example.explanation(after)
    example.done()


def test_8_reversal_gives_back_what_the_settlement_took() -> None:
    _, v2, v3 = outpatient_year()
    returned = settlement_deltas(v2)
    restored = apply_deltas(v3.accumulators(), reversal_deltas(v2))
    assert returned == Accumulators(
        outpatient_deductible_used=5_000, insurance_outpatient_paid=8_400, unpaid_eligible=20_600
    )
    assert restored.outpatient_deductible_used == 15_000
    v4 = run(bill("village", "outpatient", item("A", 100 * Y, "A1"), day=dt.date(2026, 6, 3)), person(), restored)
    # the 50.00 given back is filled again, then 50 × 0.50 = 25.00
    assert (v4.insurance, v4.out_of_pocket) == (2_500, 7_500)
    example = Example(8)
    example.accumulators("Returned by the reversal", returned)
    example.accumulators("Accumulators after the reversal", restored)
    example.settlement("Visit 4", v4)
    example.explanation(v4)
    example.done()


def test_9_new_policy_version_from_a_date() -> None:
    example = Example(9)
    text = new_version_text()
    for _, new in NEW_VERSION_CHANGES:
        assert new in example.text, f"the page's policy snippet should show {new!r}"
    for block in re.findall(r"^```toml\n(.*?)\n```$", example.text, flags=re.MULTILINE | re.DOTALL):
        assert_piece_of(block, text)
    book = PolicyBook([POLICY, parse_chain(text, "county-2026-07.toml")])
    used_up = Accumulators(outpatient_deductible_used=200 * Y)
    results = {}
    for day in (dt.date(2026, 6, 30), dt.date(2026, 7, 1)):
        s = run(
            bill("county", "outpatient", item("A", 1_200 * Y, "A1"), day=day), person(), used_up, book.in_force(day)
        )
        results[day] = s
        example.settlement(f"Service date {day.isoformat()}", s)
        assert f"`{s.policy_version}`" in example.text
    # 1,200 × 0.35 = 420.00 under default-2026; 1,200 × 0.40 = 480.00 under county-2026-07
    assert [(s.policy_version, s.insurance) for s in results.values()] == [
        ("default-2026", 42_000),
        ("county-2026-07", 48_000),
    ]
    example.done()


# ---------------------------------------------------------------- the three-tier examples (chain engine)


def referred(level: str, *items: LineItem, day: dt.date = MAY_12) -> Bill:
    return Bill(clinic_level=level, visit_type="inpatient", service_date=day, items=items, referral=True)  # type: ignore[arg-type]


def member(tier: str, category: str | None = None, **programmes: str) -> PersonStatus:
    """An insured person in a hardship tier, perhaps a priority-care category and other programmes."""
    return PersonStatus(insured=True, hardship_tier=tier, veteran_category=category, programmes=programmes)


def along_three_tier(b: Bill, status: PersonStatus, counters: Mapping[str, int] | None = None) -> ChainSettlement:
    r = settle_along(b, status, counters or {}, THREE_TIER)
    assert [step.payer for step in r.traces] == list(THREE_TIER_FUNDS)
    assert sum(step.paid for step in r.traces) + r.out_of_pocket == r.total
    return r


def paid(r: ChainSettlement) -> dict[str, int]:
    return {step.payer: step.paid for step in r.traces if step.paid}


def test_10_three_tier_admission_with_aid_and_priority_care() -> None:
    r = along_three_tier(referred("county", *WORKED_ITEMS), member("minimum_allowance", "priority_care"))
    # insurance (17,600 − 600) × 0.75 = 12,750.00; critical illness: 4,850 stays below 7,500 → 0;
    # aid 4,850 × 0.75 = 3,637.50; tilted: 1,212.50 below 10,000 → 0; subsidy 1,212.50 × 0.60 = 727.50
    assert paid(r) == {"insurance": 1_275_000, "hardship_aid": 363_750, "veteran_subsidy": 72_750}
    assert r.out_of_pocket == 288_500  # 2,400.00 not eligible + 485.00 unpaid
    assert r.traces[5].reason == "not_enrolled"
    example = Example(10)
    example.chain_result("Result", r)
    example.steps("Steps", r)
    example.chain_lines(r)
    example.counters("Counters after", r.counters_after)
    example.done()


def test_11_three_tier_aid_deductible_carries_to_the_next_admission() -> None:
    marginal = member("marginal")
    first = along_three_tier(referred("county", item("A", 180_000 * Y, "A1")), marginal)
    # insurance (180,000 − 600) × 0.75 = 134,550.00; critical illness (45,450 − 7,500) × 0.65 = 24,667.50;
    # aid (20,782.50 − 2,000) × 0.65 = 12,208.625 → 12,208.63; tilted 8,573.87 below 10,000 → 0
    assert paid(first) == {"insurance": 13_455_000, "critical_illness": 2_466_750, "hardship_aid": 1_220_863}
    assert first.out_of_pocket == 857_387
    second = along_three_tier(
        referred("township", item("A", 30_000 * Y, "A1"), day=dt.date(2026, 8, 20)), marginal, first.counters_after
    )
    # insurance (30,000 − 300) × 0.85 = 25,245.00; critical illness (50,205 − 45,450) × 0.65 = 3,090.75;
    # aid, the deductible met: 1,664.25 × 0.65 = 1,081.7625 → 1,081.76; tilted 9,156.36 below 10,000 → 0
    assert paid(second) == {"insurance": 2_524_500, "critical_illness": 309_075, "hardship_aid": 108_176}
    assert second.out_of_pocket == 58_249
    assert (first.traces[2].deductible_consumed, second.traces[2].deductible_consumed) == (2_000 * Y, 0)
    example = Example(11)
    for number, r in enumerate((first, second), start=1):
        example.chain_result(f"Admission {number}", r)
        example.steps(f"Steps, admission {number}", r)
        example.counters(f"Counters after admission {number}", r.counters_after)
    example.done()


def test_12_three_tier_cap_bands_tilted_aid_and_charity() -> None:
    big = referred("county", item("A", 400_000 * Y, "A1"))
    r = along_three_tier(big, member("minimum_allowance"))
    # insurance 299,550.00 capped at 200,000.00; critical illness (100,000 − 7,500) × 0.65 + 100,000 × 0.75
    # = 135,125.00; aid 64,875 × 0.75 = 48,656.25; tilted (16,218.75 − 10,000) × 0.50 = 3,109.375 → 3,109.38
    assert paid(r) == {
        "insurance": 20_000_000,
        "critical_illness": 13_512_500,
        "hardship_aid": 4_865_625,
        "tilted_aid": 310_938,
    }
    assert r.out_of_pocket == 1_310_937
    with_charity = along_three_tier(big, member("minimum_allowance", charity="child_major_disease"))
    # charity 13,109.37 × 0.50 = 6,554.685 → 6,554.69
    assert paid(with_charity) == paid(r) | {"charity": 655_469}
    assert with_charity.out_of_pocket == 655_468
    example = Example(12)
    example.chain_result("Result", r)
    example.steps("Steps", r)
    example.counters("Counters after", r.counters_after)
    example.chain_result("Also in charity", with_charity)
    example.done()


# ---------------------------------------------------------------- docs/policy-files.md

POLICY_PAGE = (REPO / "docs" / "policy-files.md").read_text(encoding="utf-8")
README = (REPO / "README.md").read_text(encoding="utf-8")
BASES = {"default": DEFAULT_TEXT, "three-tier": THREE_TIER_TEXT}

# Each edit of a shipped policy the page shows a refusal for, and the message after the file's path.
POLICY_FILE_ERRORS = [
    (
        "default",
        "{ up_to_yuan = 50000, rate = 0.65 }",
        "{ up_to_yuan = 5000, rate = 0.65 }",
        "$.funds.hardship_aid.rules[4].bands[1].up_to_yuan: bands must be in ascending order of up_to_yuan",
    ),
    (
        "default",
        "annual_cap_yuan = 3000\n",
        "annual_cap = 3000\n",
        "$.funds.insurance.rules[0]: Object contains unknown field `annual_cap`",
    ),
    (
        "default",
        'fund_type = "390100"\nstatutory = true\n',
        'fund_type = "390100"\n',
        "$.funds.insurance: Object missing required field `statutory`",
    ),
    (
        "default",
        'codes = ["destitute"]',
        'codes = ["destitue"]',
        "$.funds.hardship_aid.rules[0].codes[0]: 'destitue' is not a code of programme 'hardship_aid'",
    ),
    (
        "default",
        'visit_types = ["outpatient"]\ndeductible',
        'visit_types = ["outpatients"]\ndeductible',
        "$.funds.insurance.rules[0].visit_types[0]: Invalid enum value 'outpatients'",
    ),
    (
        "default",
        "rate = { township = 0.85, county = 0.75 }",
        "rate = { township = 85, county = 0.75 }",
        "$.funds.insurance.rules[1].rate.township: rate 85 must be between 0 and 1",
    ),
    (
        "default",
        "b_self_pay_first_share = 0.10",
        "b_self_pay_first_share = 0.1234567",
        "$.eligibility.b_self_pay_first_share: rate 0.1234567 has more than 6 decimal places",
    ),
    (
        "default",
        "per_year_yuan = 200,",
        "per_year_yuan = 200.005,",
        "$.funds.insurance.rules[0].deductible.per_year_yuan: amount 200.005 yuan is not a whole number of fen",
    ),
    (
        "default",
        "annual_cap_yuan = 200000\n",
        'annual_cap_yuan = "200000"\n',
        "$.funds.insurance.rules[1].annual_cap_yuan: expected a number, got str",
    ),
    (
        "default",
        "effective_from = 2026-01-01",
        "effective_from = 2026-01-01T00:00:00",
        "$.effective_from: Expected `date`, got `datetime`",
    ),
    (
        "default",
        "rate = { township = 0.85, county = 0.75 }",
        "rate = { county = 0.75 }",
        "$.funds.insurance.rules[1].rate.township: missing: the rule can settle bills at this level",
    ),
    (
        "default",
        "rate = { township = 0.85, county = 0.75 }",
        "rate = { township = 0.85, county = 0.75, city = 0.90 }",
        "$.funds.insurance.rules[1].rate.city: unknown clinic level; expected one of village, township, county",
    ),
    (
        "default",
        'chain = ["insurance", "veteran_subsidy", "hardship_aid"]',
        'chain = ["insurance", "veteran_subsidy", "hardship"]',
        "$.chain[2]: fund 'hardship' is not declared under [funds.hardship]",
    ),
    (
        "default",
        'chain = ["insurance", "veteran_subsidy", "hardship_aid"]',
        'chain = ["insurance", "veteran_subsidy"]',
        "$.funds.hardship_aid: declared but not in the chain",
    ),
    (
        "default",
        'chain = ["insurance", "veteran_subsidy", "hardship_aid"]',
        'chain = ["insurance", "veteran_subsidy", "insurance", "hardship_aid"]',
        "$.chain[2]: fund 'insurance' is already in the chain: one step per fund",
    ),
    (
        "default",
        'name_en = "priority-care subsidy"\nstatutory = true',
        'name_en = "priority-care subsidy"\nstatutory = false',
        "$.chain[2]: statutory fund 'hardship_aid' comes after non-statutory fund 'veteran_subsidy': "
        "statutory payers pay first",
    ),
    (
        "default",
        'fund_type = "390100"',
        'fund_type = "3901"',
        "$.funds.insurance.fund_type: a national fund type is six digits, such as 390100",
    ),
    (
        "default",
        'hardship_aid = ["destitute", "minimum_allowance", "marginal", "low_income", "medical_hardship"]\n',
        "",
        "$.funds.hardship_aid.programme: programme 'hardship_aid' is not declared under [programmes]",
    ),
    (
        "three-tier",
        'members_of = { hardship_aid = ["destitute", "minimum_allowance", "marginal"] }',
        'members_of = { welfare = ["destitute"] }',
        "$.funds.critical_illness.rules[0].members_of.welfare: programme is not declared under [programmes]",
    ),
    (
        "default",
        'programme = "veteran_subsidy"\n',
        "",
        "$.funds.veteran_subsidy.rules[0].codes: codes need the fund's programme: set programme on the fund",
    ),
    (
        "default",
        'codes = ["priority_care"]                    # other entitled groups',
        "codes = []",
        "$.funds.veteran_subsidy.rules[1].codes: an empty list matches nobody; leave it out to match every code",
    ),
    (
        "default",
        "[programmes]\n",
        '[programmes]\ninsurance = ["resident"]\n',
        "$.programmes.insurance: insurance is not a programme with codes: use insured = true on a fund",
    ),
    (
        "default",
        'codes = ["destitute"]                        # 特困\nrate = 1.00\n',
        'codes = ["destitute"]\nrate = 1.00\nbands = [{ rate = 1.00 }]\n',
        "$.funds.hardship_aid.rules[0]: give exactly one of rate, bands or ytd_bands",
    ),
    (
        "default",
        "  { rate = 0.80 },\n",
        "  { up_to_yuan = 90000, rate = 0.80 },\n",
        "$.funds.hardship_aid.rules[2].bands[2].up_to_yuan: the last band must be open-ended (leave out up_to_yuan)",
    ),
    (
        "default",
        "  { up_to_yuan = 10000, rate = 0.70 },\n",
        "  { rate = 0.70 },\n",
        "$.funds.hardship_aid.rules[2].bands[0].up_to_yuan: only the last band may be open-ended",
    ),
    (
        "default",
        "deductible = { per_admission_yuan = { township = 300, county = 600 } }",
        "deductible = { per_year_yuan = 200, per_admission_yuan = 300 }",
        "$.funds.insurance.rules[1].deductible: give per_year_yuan (with its counter) or per_admission_yuan",
    ),
    (
        "default",
        'deductible = { per_year_yuan = 200, counter = "outpatient_deductible_used" }',
        "deductible = { per_year_yuan = 200 }",
        "$.funds.insurance.rules[0].deductible.counter: a per-year deductible needs a counter of what has been met",
    ),
    (
        "default",
        "deductible = { per_admission_yuan = { township = 300, county = 600 } }",
        'deductible = { per_admission_yuan = { township = 300, county = 600 }, counter = "admission_met" }',
        "$.funds.insurance.rules[1].deductible.counter: a per-admission deductible starts afresh on every bill",
    ),
    (
        "default",
        'ytd_counter = { name = "unpaid_eligible", counts = "every_bill" }\n',
        "",
        "$.funds.hardship_aid.rules[8].ytd_bands: bands over a year-to-date counter need ytd_counter on the fund",
    ),
    (
        "default",
        "ytd_bands = { threshold_yuan = 5000, bands = [{ rate = 0.50 }] }\n",
        "ytd_bands = { threshold_yuan = 5000, bands = [{ rate = 0.50 }] }\ndeductible = { per_admission_yuan = 100 }\n",
        "$.funds.hardship_aid.rules[8].deductible: a rule over a year-to-date counter takes its threshold instead "
        "of a deductible",
    ),
    (
        "default",
        "ytd_bands = { threshold_yuan = 5000, bands = [{ rate = 0.50 }] }",
        "ytd_bands = { threshold_yuan = 5000, bands = [{ up_to_yuan = 5000, rate = 0.50 }, { rate = 0.60 }] }",
        "$.funds.hardship_aid.rules[8].ytd_bands.bands[0].up_to_yuan: the first band must end above threshold_yuan",
    ),
    (
        "default",
        'counts = "every_bill"',
        'counts = "every_bil"',
        "$.funds.hardship_aid.ytd_counter.counts: Invalid enum value 'every_bil'",
    ),
    (
        "default",
        'paid_counter = "aid_paid" ',
        "",
        "$.funds.hardship_aid.rules[0].paid_counter: name the counter of what the fund has paid (here or on the fund)",
    ),
    (
        "default",
        'paid_counter = "subsidy_paid" ',
        'paid_counter = "outpatient_deductible_used" ',
        "$.funds.veteran_subsidy.paid_counter: counter 'outpatient_deductible_used' is already a deductible counter; "
        "it cannot also be paid",
    ),
    (
        "three-tier",
        "[[funds.charity.rules]]\nrate = 0.50\n",
        '[[funds.charity.rules]]\ndeductible = { per_year_yuan = 100, counter = "aid_deductible_met" }\nrate = 0.50\n',
        "$.funds.charity.rules[0].deductible.counter: deductible counter 'aid_deductible_met' already belongs to "
        "fund 'hardship_aid'",
    ),
    (
        "default",
        'paid_counter = "insurance_outpatient_paid"',
        'paid_counter = "Insurance-Outpatient"',
        "$.funds.insurance.rules[0].paid_counter: counter name 'Insurance-Outpatient' must be lower-case letters, "
        "digits and _",
    ),
]

SAME_DATE = (
    "county-2027: $.effective_from: same effective date as default-2026: which one is in force would be ambiguous"
)
SAME_ID = "default-2026: $.id: two policy files share this id"

# Every whole refusal line the docs may show, each checked by a test below.
CHECKED_LINES = {
    f"policies/2027.toml: {POLICY_FILE_ERRORS[0][3]}",
    SAME_DATE,
    SAME_ID,
}


@pytest.mark.parametrize(
    ("base", "old", "new", "message"), POLICY_FILE_ERRORS, ids=[e[3].split(":")[0] for e in POLICY_FILE_ERRORS]
)
def test_policy_page_shows_the_loaders_messages(base: str, old: str, new: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_chain(replace_once(BASES[base], old, new), "policies/2027.toml")
    assert str(caught.value) == f"policies/2027.toml: {message}"
    assert message in POLICY_PAGE


def test_policy_page_shows_the_messages_for_two_versions_that_clash() -> None:
    same_date = parse_chain(replace_once(DEFAULT_TEXT, 'id = "default-2026"', 'id = "county-2027"'), "county-2027")
    same_id = parse_chain(replace_once(DEFAULT_TEXT, "effective_from = 2026-01-01", "effective_from = 2027-01-01"), "x")
    for other, expected in ((same_date, SAME_DATE), (same_id, SAME_ID)):
        with pytest.raises(PolicyError) as caught:
            PolicyBook([POLICY, other])
        assert str(caught.value) == expected
        assert expected in POLICY_PAGE


def code_span(cell: str) -> str:
    """The text of a markdown code span: `a` or `` a `b` ``."""
    match = re.fullmatch(r"(`+) ?(.*?) ?\1", cell)
    assert match, f"not a code span: {cell!r}"
    return match.group(2)


def plain_code_blocks(document: str) -> list[list[str]]:
    """The lines of each fenced block that names no language (```), fence by fence."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    in_block = False
    for line in document.splitlines():
        if line.startswith("```"):
            if in_block:
                if current is not None:
                    blocks.append(current)
                in_block, current = False, None
            else:
                in_block, current = True, ([] if line == "```" else None)
        elif current is not None:
            current.append(line)
    return blocks


def test_every_refusal_the_docs_show_is_checked() -> None:
    checked = {message for *_, message in POLICY_FILE_ERRORS}
    (table,) = [table for table in table_rows(POLICY_PAGE) if table[0] == ["what is wrong", "message"]]
    shown = [code_span(row[1]) for row in table[1:]]
    assert len(shown) == len(set(shown)), "a message is shown twice"
    assert set(shown) <= checked, f"not checked: {set(shown) - checked}"
    # Whole refusal lines in plain code blocks, on the policy page and in the README.
    for document in (POLICY_PAGE, README):
        lines = [line for block in plain_code_blocks(document) for line in block if ": $" in line]
        assert lines
        assert set(lines) <= CHECKED_LINES, f"not checked: {set(lines) - CHECKED_LINES}"


def fields_of_file(table: Mapping[str, object]) -> set[str]:
    """The names of the fields that hold values, at any depth (not the tables' names)."""
    found = set()
    for name, value in table.items():
        if isinstance(value, dict):
            found |= fields_of_file(value)
            continue
        found.add(name)
        if isinstance(value, list):
            for inner in value:
                if isinstance(inner, dict):
                    found |= fields_of_file(inner)
    return found


def fields_of_loader(shape: type) -> set[str]:
    """Every field the loader reads into ``shape``, at any depth."""

    def structs(annotation: object) -> Iterator[type]:
        if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
            yield annotation
        for inner in typing.get_args(annotation):
            yield from structs(inner)

    found = set()
    for field in msgspec.structs.fields(shape):
        found.add(field.encode_name)
        for inner in structs(field.type):
            found |= fields_of_loader(inner)
    return found


def test_policy_page_explains_every_field_of_both_files_and_of_the_loader() -> None:
    names = (
        fields_of_file(tomllib.loads(DEFAULT_TEXT))
        | fields_of_file(tomllib.loads(THREE_TIER_TEXT))
        | fields_of_loader(_ChainFile)
        | fields_of_loader(_FundFile)
    )
    assert {"counts", "members_of", "referral", "levels", "ytd_bands", "up_to_yuan"} <= names  # the walk goes deep
    # a field by its name in a code span, a table also by its header: `[eligibility]`, `[funds.X]`
    missing = sorted(name for name in names if f"`{name}`" not in POLICY_PAGE and f"`[{name}" not in POLICY_PAGE)
    assert not missing, f"docs/policy-files.md does not name {missing}"


def assert_piece_of(block: str, text: str) -> None:
    lines = {line.split("#")[0].rstrip() for line in text.splitlines()}
    for line in block.splitlines():
        assert line.split("#")[0].rstrip() in lines, f"not in the policy file: {line!r}"


def test_policy_page_shows_pieces_of_the_shipped_files() -> None:
    # every TOML block on the page is a piece of one file, line for line: the default policy, the
    # three-tier example, the example beside the insurer's core, or the new version the page shows (which
    # must load)
    files = {
        "default": DEFAULT_TEXT,
        "three-tier": THREE_TIER_TEXT,
        "beside the insurer": BESIDE_THE_INSURER_PATH.read_text(encoding="utf-8"),
        "new version": new_version_text(),
    }
    parse_chain(files["new version"], "county-2026-07.toml")
    blocks = re.findall(r"^```toml\n(.*?)\n```$", POLICY_PAGE, flags=re.MULTILINE | re.DOTALL)
    assert blocks
    for block in blocks:
        sources = []
        for name, text in files.items():
            try:
                assert_piece_of(block, text)
            except AssertionError:
                continue
            sources.append(name)
        assert sources, f"docs/policy-files.md shows a TOML block from none of {list(files)}:\n{block}"
    # the page shows the new version's changes, and the README's new-version advice still holds
    for _, new in NEW_VERSION_CHANGES:
        assert new in POLICY_PAGE
