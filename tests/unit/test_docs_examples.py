"""The figures the docs show, checked against the real engine and policies/default.toml.

docs/worked-examples.md: each test settles one example and checks it twice: against the key figures written
here, and against every figure table and receipt explanation the page shows for it.
A change to the rules or to the default policy that moves a figure fails here until
the page says the same; a page edit that gets a figure wrong fails too.

Tables on the page: ``| label | fen | yuan |`` lists settlement fields or accumulators
(only the rows shown are checked, and fen and yuan must agree); ``| line | ... |`` lists
each line's breakdown in yuan. Every such table and every ``text`` block in an example
must be checked by its test.

docs/policy-files.md: the validation messages it shows are the loader's, word for word,
its TOML blocks are pieces of policies/default.toml, and it names every field of it.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal

import pytest

from settlement import (
    Accumulators,
    LineItem,
    PolicyError,
    Settlement,
    apply_deltas,
    explain,
    reversal_deltas,
    settlement_deltas,
)
from settlement.explain import Language
from settlement.models import ACCUMULATOR_FIELDS
from settlement.policy import PolicyBook, parse_policy
from settlement.registry import Membership, status_on
from tests.unit.test_engine_rules import DEFAULT_TEXT, POLICY, REPO, Y, bill, item, person, replace_once, run

PAGE_PATH = REPO / "docs" / "worked-examples.md"
PAGE = PAGE_PATH.read_text(encoding="utf-8")
EXAMPLES = range(1, 10)

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


class Example:
    """One ``## N.`` section of the page, and what its test has checked of it."""

    def __init__(self, number: int) -> None:
        headings = re.finditer(r"^## (\d+)\. ", PAGE, flags=re.MULTILINE)
        starts = {int(m.group(1)): m.start() for m in headings}
        assert number in starts, f"docs/worked-examples.md has no example {number}"
        later = [start for start in starts.values() if start > starts[number]]
        self.number = number
        self.text = PAGE[starts[number] : min(later, default=len(PAGE))]
        self.tables = self._tables()
        self.blocks = re.findall(r"^```text\n(.*?)\n```$", self.text, flags=re.MULTILINE | re.DOTALL)
        self.checked_tables: set[str] = set()
        self.checked_blocks: set[int] = set()

    def _tables(self) -> dict[str, list[list[str]]]:
        tables: dict[str, list[list[str]]] = {}
        rows: list[list[str]] = []
        for line in [*self.text.splitlines(), ""]:
            if line.startswith("|"):
                rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
                continue
            if rows:
                label = rows[0][0]
                assert label not in tables, f"example {self.number}: two tables labelled {label!r}"
                assert set(rows[1]) <= {"---", "---:"}, f"example {self.number}: {label!r} has no separator row"
                tables[label] = [rows[0], *rows[2:]]
                rows = []
        return tables

    def _table(self, label: str) -> list[list[str]]:
        assert label in self.tables, f"example {self.number} has no table labelled {label!r}"
        self.checked_tables.add(label)
        return self.tables[label]

    def figures(self, label: str, actual: Mapping[str, int]) -> None:
        """A ``| label | fen | yuan |`` table: each row shown equals ``actual``."""
        header, *rows = self._table(label)
        assert header[1:] == ["fen", "yuan"], header
        assert rows, f"example {self.number}: {label!r} is empty"
        for name, fen, yuan in rows:
            field = name_cell(name)
            assert field in actual, f"example {self.number}, {label!r}: unknown row {name}"
            assert fen_cell(fen) == fen_from_yuan_cell(yuan), f"{label!r}, {field}: {fen} fen is not {yuan} yuan"
            assert fen_cell(fen) == actual[field], (
                f"{label!r}, {field}: the page says {fen}, the engine {actual[field]}"
            )

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
    example.accumulators("Accumulators after", s.accumulators_after)
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
    example.accumulators("Accumulators after", s.accumulators_after)
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
        v1.accumulators_after,
    )
    v3 = run(
        bill("village", "outpatient", item("A", 3_515, "A1"), day=dt.date(2026, 5, 20)), insured, v2.accumulators_after
    )
    return v1, v2, v3


def test_4_outpatient_deductible_over_several_visits() -> None:
    v1, v2, v3 = outpatient_year()
    # 150.00 all to the deductible; then 50.00 more and (290 − 50) × 0.35 = 84.00; then 35.15 × 0.50 = 17.575 → 17.58
    assert (v1.insurance, v2.insurance, v3.insurance) == (0, 8_400, 1_758)
    assert v2.accumulators_after.outpatient_deductible_used == 200 * Y
    assert v3.out_of_pocket == 1_757
    example = Example(4)
    for number, visit in enumerate((v1, v2, v3), start=1):
        example.settlement(f"Visit {number}", visit)
        example.accumulators(f"Accumulators after visit {number}", visit.accumulators_after)
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
        v1.accumulators_after,
    )
    assert (v2.insurance, v2.veteran_subsidy, v2.out_of_pocket) == (0, 5_000, 5_000)
    example = Example(5)
    example.accumulators("Accumulators before", before)
    example.settlement("Visit 1", v1)
    example.accumulators("Accumulators after visit 1", v1.accumulators_after)
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
        before = s.accumulators_after
    v1, v2, v3, v4 = settled
    assert v1.veteran_subsidy == v1.hardship_aid == 0 and v1.accumulators_after.unpaid_eligible == 280_000
    assert v2.hardship_aid == 0 and v2.accumulators_after.unpaid_eligible == 400_000
    # 4,000 → 7,000: 1,000.00 below the 5,000.00 threshold, 2,000.00 above × 0.50 = 1,000.00
    assert (v3.insurance, v3.hardship_aid, v3.out_of_pocket) == (720_000, 100_000, 200_000)
    # already above: 3,000 × 0.50 = 1,500.00
    assert v4.hardship_aid == 150_000
    example = Example(6)
    for number, s in enumerate(settled, start=1):
        example.settlement(f"Visit {number}", s)
        example.accumulators(f"Accumulators after visit {number}", s.accumulators_after)
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
    restored = apply_deltas(v3.accumulators_after, reversal_deltas(v2))
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
    changes = [
        ('id = "default-2026"', 'id = "county-2026-07"'),
        ("effective_from = 2026-01-01", "effective_from = 2026-07-01"),
        ("outpatient_rate = 0.35", "outpatient_rate = 0.40"),  # the county level's
    ]
    text = DEFAULT_TEXT
    for old, new in changes:
        assert new in example.text, f"the page's policy snippet should show {new!r}"
        text = replace_once(text, old, new)
    book = PolicyBook([POLICY, parse_policy(text, "county-2026-07.toml")])
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


# ---------------------------------------------------------------- docs/policy-files.md

POLICY_PAGE = (REPO / "docs" / "policy-files.md").read_text(encoding="utf-8")

# Each edit of policies/default.toml the page shows an error for, and the message after the file's path.
POLICY_FILE_ERRORS = [
    (
        "{ up_to_yuan = 50000, rate = 0.65 }",
        "{ up_to_yuan = 5000, rate = 0.65 }",
        "$.hardship_aid.tiers.marginal.inpatient_bands[1].up_to_yuan: bands must be in ascending order of up_to_yuan",
    ),
    (
        "outpatient_cap_yuan = 3000 ",
        "outpatient_cap = 3000 ",
        "$.insurance: Object contains unknown field `outpatient_cap`",
    ),
    (
        "[hardship_aid.tiers.destitute]",
        "[hardship_aid.tiers.destitue]",
        "$.hardship_aid.tiers.destitue: unknown hardship tier; expected one of destitute, minimum_allowance, marginal, "
        "low_income, medical_hardship",
    ),
    (
        "annual_cap_yuan = 10000\n",
        "",
        "$.veteran_subsidy.categories[...]: Object missing required field `annual_cap_yuan`",
    ),
    (
        "inpatient_rate = 0.85",
        "inpatient_rate = 85",
        "$.insurance.levels.township.inpatient_rate: rate 85 must be between 0 and 1",
    ),
    (
        "b_self_pay_first_share = 0.10",
        "b_self_pay_first_share = 0.1234567",
        "$.eligibility.b_self_pay_first_share: rate 0.1234567 has more than 6 decimal places",
    ),
    (
        "outpatient_deductible_yuan = 200 ",
        "outpatient_deductible_yuan = 200.005 ",
        "$.insurance.outpatient_deductible_yuan: amount 200.005 yuan is not a whole number of fen",
    ),
    (
        "inpatient_cap_yuan = 200000 ",
        'inpatient_cap_yuan = "200000" ',
        "$.insurance.inpatient_cap_yuan: expected a number, got str",
    ),
    (
        "inpatient_deductible_yuan = 300       # per admission\n",
        "",
        "$.insurance.levels.township: give both inpatient_rate and inpatient_deductible_yuan, or neither for a level "
        "without inpatient care",
    ),
    (
        "  { rate = 0.80 },\n",
        "  { up_to_yuan = 90000, rate = 0.80 },\n",
        "$.hardship_aid.tiers.minimum_allowance.inpatient_bands[2].up_to_yuan: the last band must be open-ended "
        "(leave out up_to_yuan)",
    ),
    (
        "outpatient_rate = 0.00\n",
        "outpatient_rate = 0.10\n",
        "$.hardship_aid.tiers.medical_hardship.outpatient_rate: "
        "medical_hardship pays only on inpatient bills: use 0.00",
    ),
    (
        "effective_from = 2026-01-01",
        "effective_from = 2026-01-01T00:00:00",
        "$.effective_from: Expected `date`, got `datetime`",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "message"), POLICY_FILE_ERRORS, ids=[e[2].split(":")[0] for e in POLICY_FILE_ERRORS]
)
def test_policy_page_shows_the_loaders_messages(old: str, new: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(replace_once(DEFAULT_TEXT, old, new), "policies/2027.toml")
    assert str(caught.value) == f"policies/2027.toml: {message}"
    assert message in POLICY_PAGE


def test_policy_page_shows_the_message_for_two_files_on_one_date() -> None:
    text = replace_once(DEFAULT_TEXT, 'id = "default-2026"', 'id = "county-2027"')
    with pytest.raises(PolicyError) as caught:
        PolicyBook([POLICY, parse_policy(text, "policies/county-2027.toml")])
    message = str(caught.value)
    assert message == (
        "county-2027: $.effective_from: same effective date as default-2026: which one is in force would be ambiguous"
    )
    assert message in POLICY_PAGE


def test_policy_page_explains_every_field_of_the_default_file() -> None:
    def keys(table: Mapping[str, object]) -> set[str]:
        """The names of the fields that hold values, at any depth (not the tables' names)."""
        found = set()
        for name, value in table.items():
            if isinstance(value, dict):
                found |= keys(value)
                continue
            found.add(name)
            if isinstance(value, list):
                for inner in value:
                    found |= keys(inner)
        return found

    names = keys(tomllib.loads(DEFAULT_TEXT)) | {"ytd_unpaid_threshold_yuan", "inpatient_rate", "up_to_yuan"}
    missing = sorted(name for name in names if f"`{name}`" not in POLICY_PAGE)
    assert not missing, f"docs/policy-files.md does not name {missing}"


def test_policy_page_shows_the_default_file() -> None:
    # every TOML block on the page is a piece of policies/default.toml, line for line
    blocks = re.findall(r"^```toml\n(.*?)\n```$", POLICY_PAGE, flags=re.MULTILINE | re.DOTALL)
    assert blocks
    default_lines = {line.split("#")[0].rstrip() for line in DEFAULT_TEXT.splitlines()}
    for block in blocks:
        for line in block.splitlines():
            assert line.split("#")[0].rstrip() in default_lines, f"not in policies/default.toml: {line!r}"
