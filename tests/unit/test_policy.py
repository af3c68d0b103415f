"""The policy loader: the default chain in fen and parts per million, and bad files refused by name."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from adapters.policy_files import load_policy_book, load_policy_file
from settlement.chain import Chain, Rule
from settlement.chain_policy import parse_chain
from settlement.errors import PolicyError
from settlement.policy_book import PolicyBook

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_PATH = REPO / "policies" / "default.toml"
DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
POLICY = load_policy_file(DEFAULT_POLICY_PATH)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the policy text"
    return text.replace(old, new)


def load_text(tmp_path: Path, text: str, name: str = "bad.toml") -> Chain:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_policy_file(path)


# ---------------------------------------------------------------- the default policy


def test_default_policy_identity() -> None:
    assert POLICY.id == "default-2026"
    assert POLICY.effective_from == dt.date(2026, 1, 1)
    # B self-pay-first 10 %
    assert POLICY.b_self_pay_first_share == 100_000


def _rules(fund: str) -> list[Rule]:
    return list(next(step for step in POLICY.steps if step.fund.code == fund).rules)


def test_default_chain_order_and_funds() -> None:
    assert [(fund.code, fund.fund_type, fund.statutory) for fund in POLICY.funds] == [
        ("insurance", "390100", True),
        ("veteran_subsidy", None, True),
        ("hardship_aid", "610100", True),
    ]
    assert POLICY.inpatient_levels == ("township", "county")  # village stations take no admissions
    assert POLICY.offers_inpatient("county")
    assert not POLICY.offers_inpatient("village")


def test_default_insurance_figures() -> None:
    outpatient, inpatient = _rules("insurance")
    # outpatient: deductible 200 yuan a year, cap 3,000; rates 0.50 / 0.45 / 0.35
    assert (outpatient.deductible, outpatient.deductible_counter) == ("per_year", "outpatient_deductible_used")
    assert set(outpatient.deductible_by_level.values()) == {20_000}
    assert outpatient.rate_by_level == {"village": 500_000, "township": 450_000, "county": 350_000}
    assert (outpatient.annual_cap, outpatient.paid_counter) == (300_000, "insurance_outpatient_paid")
    # inpatient: 300 / 600 per admission, 0.85 / 0.75, cap 200,000
    assert inpatient.deductible == "per_admission"
    assert inpatient.deductible_by_level == {"township": 30_000, "county": 60_000}
    assert inpatient.rate_by_level == {"township": 850_000, "county": 750_000}
    assert (inpatient.annual_cap, inpatient.paid_counter) == (20_000_000, "insurance_inpatient_paid")


def test_default_subsidy_figures() -> None:
    rows = [
        (rule.codes, rule.visit_types, rule.rate_by_level.get("county"), rule.annual_cap)
        for rule in _rules("veteran_subsidy")
    ]
    assert rows == [
        (("disabled_veteran",), None, 1_000_000, 10_000_000),  # 1.00 both visit types, 100,000
        (("priority_care",), ("outpatient",), 500_000, 1_000_000),  # 0.50, 10,000
        (("priority_care",), ("inpatient",), 600_000, 1_000_000),  # 0.60, 10,000
    ]
    assert {rule.paid_counter for rule in _rules("veteran_subsidy")} == {"subsidy_paid"}


def test_default_hardship_figures() -> None:
    rows = [
        (
            rule.codes,
            rule.visit_types,
            rule.rate_kind,
            rule.rate_by_level.get("county"),
            [(band.up_to, band.rate) for band in rule.bands],
            rule.threshold,
            rule.annual_cap,
        )
        for rule in _rules("hardship_aid")
    ]
    assert rows == [
        (("destitute",), None, "flat", 1_000_000, [], 0, 6_000_000),
        (("minimum_allowance",), ("outpatient",), "flat", 500_000, [], 0, 5_000_000),
        # 0.70 up to 10,000; 0.75 to 50,000; 0.80 above; cap 50,000
        (
            ("minimum_allowance",),
            ("inpatient",),
            "bands",
            None,
            [(1_000_000, 700_000), (5_000_000, 750_000), (None, 800_000)],
            0,
            5_000_000,
        ),
        (("marginal",), ("outpatient",), "flat", 500_000, [], 0, 4_000_000),
        (
            ("marginal",),
            ("inpatient",),
            "bands",
            None,
            [(1_000_000, 600_000), (5_000_000, 650_000), (None, 700_000)],
            0,
            4_000_000,
        ),
        (("low_income",), ("outpatient",), "flat", 500_000, [], 0, 3_000_000),
        (
            ("low_income",),
            ("inpatient",),
            "bands",
            None,
            [(1_000_000, 500_000), (5_000_000, 550_000), (None, 600_000)],
            0,
            3_000_000,
        ),
        # outpatient 0.00; 0.50 on year-to-date unpaid eligible above 5,000; cap 20,000
        (("medical_hardship",), ("outpatient",), "flat", 0, [], 0, 2_000_000),
        (("medical_hardship",), ("inpatient",), "ytd_bands", None, [(None, 500_000)], 500_000, 2_000_000),
    ]
    step = next(step for step in POLICY.steps if step.fund.code == "hardship_aid")
    assert (step.ytd_counter, step.ytd_counts) == ("unpaid_eligible", "every_bill")
    assert [band.rate_text for band in _rules("hardship_aid")[2].bands] == ["0.70", "0.75", "0.80"]


def _leaves(value: object, path: str = "policy") -> Iterator[tuple[str, object]]:
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _leaves(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}")
    elif isinstance(value, tuple | list):
        for index, child in enumerate(value):
            yield from _leaves(child, f"{path}[{index}]")
    else:
        yield path, value


def test_no_float_anywhere_in_the_loaded_policy() -> None:
    leaves = dict(_leaves(POLICY))
    assert not {path: value for path, value in leaves.items() if isinstance(value, float | Decimal)}
    # every figure (money in fen, rates in parts per million) is an int, never a bool
    figures = {path: value for path, value in leaves.items() if type(value) is int}
    assert figures["policy.b_self_pay_first_share"] == 100_000
    assert figures["policy.steps[0].rules[0].rate_by_level.county"] == 350_000
    unexpected = {
        path: value
        for path, value in leaves.items()
        if not isinstance(value, str | dt.date | type(None)) and type(value) is not int and type(value) is not bool
    }
    assert not unexpected


# ---------------------------------------------------------------- bad files


BAD_FILES: list[tuple[str, Callable[[str], str], str, str]] = [
    (
        "rate-above-1",
        lambda t: replace_once(
            t, "rate = { township = 0.85, county = 0.75 }", "rate = { township = 1.01, county = 0.75 }"
        ),
        "$.funds.insurance.rules[1].rate.township",
        "between 0 and 1",
    ),
    (
        "rate-below-0",
        lambda t: replace_once(
            t,
            'visit_types = ["outpatient"]\nrate = 0.50\nannual_cap_yuan = 10000',
            'visit_types = ["outpatient"]\nrate = -0.5\nannual_cap_yuan = 10000',
        ),
        "$.funds.veteran_subsidy.rules[1].rate",
        "between 0 and 1",
    ),
    (
        "bands-descending",
        lambda t: replace_once(t, "{ up_to_yuan = 50000, rate = 0.75 }", "{ up_to_yuan = 5000, rate = 0.75 }"),
        "$.funds.hardship_aid.rules[2].bands[1].up_to_yuan",
        "ascending",
    ),
    (
        "bands-equal",
        lambda t: replace_once(t, "{ up_to_yuan = 50000, rate = 0.65 }", "{ up_to_yuan = 10000, rate = 0.65 }"),
        "$.funds.hardship_aid.rules[4].bands[1].up_to_yuan",
        "ascending",
    ),
    (
        "open-band-not-last",
        lambda t: replace_once(t, "{ up_to_yuan = 10000, rate = 0.60 }", "{ rate = 0.60 }"),
        "$.funds.hardship_aid.rules[4].bands[0].up_to_yuan",
        "last band",
    ),
    (
        "last-band-closed",
        lambda t: replace_once(t, "  { rate = 0.60 },\n", "  { up_to_yuan = 90000, rate = 0.60 },\n"),
        "$.funds.hardship_aid.rules[6].bands[2].up_to_yuan",
        "open-ended",
    ),
    (
        "unknown-tier-typo",
        lambda t: replace_once(t, 'codes = ["destitute"]', 'codes = ["destitue"]'),
        "$.funds.hardship_aid.rules[0].codes[0]",
        "not a code of programme 'hardship_aid'",
    ),
    (
        "undeclared-programme",
        lambda t: replace_once(t, 'programme = "veteran_subsidy"', 'programme = "veterans"'),
        "$.funds.veteran_subsidy.programme",
        "not declared under [programmes]",
    ),
    (
        "negative-cap",
        lambda t: replace_once(t, "rate = 0.60\nannual_cap_yuan = 10000\n", "rate = 0.60\nannual_cap_yuan = -1\n"),
        "$.funds.veteran_subsidy.rules[2].annual_cap_yuan",
        ">= 0",
    ),
    (
        "sub-fen-amount",
        lambda t: replace_once(t, "per_year_yuan = 200,", "per_year_yuan = 0.001,"),
        "$.funds.insurance.rules[0].deductible.per_year_yuan",
        "whole number of fen",
    ),
    (
        "sub-fen-band",
        lambda t: replace_once(t, "{ up_to_yuan = 10000, rate = 0.50 }", "{ up_to_yuan = 10000.005, rate = 0.50 }"),
        "$.funds.hardship_aid.rules[6].bands[0].up_to_yuan",
        "whole number of fen",
    ),
    (
        "rate-7-places",
        lambda t: replace_once(t, "b_self_pay_first_share = 0.10", "b_self_pay_first_share = 0.1000001"),
        "$.eligibility.b_self_pay_first_share",
        "6 decimal places",
    ),
    (
        "string-for-number",
        lambda t: replace_once(t, "annual_cap_yuan = 3000\n", 'annual_cap_yuan = "3000"\n'),
        "$.funds.insurance.rules[0].annual_cap_yuan",
        "str",
    ),
    (
        "string-for-rate",
        lambda t: replace_once(t, "county = 0.75 }", 'county = "0.75" }'),
        "$.funds.insurance.rules[1].rate.county",
        "str",
    ),
    (
        "bool-for-number",
        lambda t: replace_once(t, "annual_cap_yuan = 3000\n", "annual_cap_yuan = true\n"),
        "$.funds.insurance.rules[0].annual_cap_yuan",
        "bool",
    ),
    (
        "invalid-toml",
        lambda t: t + "\n[funds.charity\n",
        "$",
        "not valid TOML",
    ),
    (
        "inpatient-rule-without-a-level",
        lambda t: replace_once(
            t,
            "deductible = { per_admission_yuan = { township = 300, county = 600 } }",
            "deductible = { per_admission_yuan = { county = 600 } }",
        ),
        "$.funds.insurance.rules[1].deductible.per_admission_yuan.township",
        "missing",
    ),
    (
        "per-admission-with-counter",
        lambda t: replace_once(
            t,
            "per_admission_yuan = { township = 300, county = 600 } }",
            'per_admission_yuan = { township = 300, county = 600 }, counter = "x" }',
        ),
        "$.funds.insurance.rules[1].deductible.counter",
        "starts afresh on every bill",
    ),
    (
        "misspelt-field",
        lambda t: replace_once(t, "annual_cap_yuan = 3000\n", "annual_cap = 3000\n"),
        "$.funds.insurance.rules[0]",
        "annual_cap",
    ),
    (
        "no-bands",
        lambda t: replace_once(
            t,
            "ytd_bands = { threshold_yuan = 5000, bands = [{ rate = 0.50 }] }",
            "ytd_bands = { threshold_yuan = 5000, bands = [] }",
        ),
        "$.funds.hardship_aid.rules[8].ytd_bands.bands",
        "at least one band",
    ),
    (
        "no-chain",
        lambda t: replace_once(t, 'chain = ["insurance", "veteran_subsidy", "hardship_aid"]', "chain = []"),
        "$.chain",
        "at least one fund",
    ),
    (
        "empty-id",
        lambda t: replace_once(t, 'id = "default-2026"', 'id = "  "'),
        "$.id",
        "empty",
    ),
    (
        "datetime-for-date",
        lambda t: replace_once(t, "effective_from = 2026-01-01", "effective_from = 2026-01-01T08:00:00"),
        "$.effective_from",
        "date",
    ),
    # Non-finite and out-of-range numbers are bad files too: the loader must say where, not crash.
    (
        "nan-rate",
        lambda t: replace_once(t, "b_self_pay_first_share = 0.10", "b_self_pay_first_share = nan"),
        "$.eligibility.b_self_pay_first_share",
        "nan",
    ),
    (
        "inf-cap",
        lambda t: replace_once(t, "annual_cap_yuan = 200000\n", "annual_cap_yuan = inf\n"),
        "$.funds.insurance.rules[1].annual_cap_yuan",
        "inf",
    ),
    (
        "huge-exponent",
        lambda t: replace_once(t, "annual_cap_yuan = 200000\n", "annual_cap_yuan = 1e999999999\n"),
        "$.funds.insurance.rules[1].annual_cap_yuan",
        "",
    ),
]


@pytest.mark.parametrize(("change", "path", "problem"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_policy_file_is_refused_with_where_and_why(
    tmp_path: Path, change: Callable[[str], str], path: str, problem: str
) -> None:
    text = change(DEFAULT_TEXT)
    assert text != DEFAULT_TEXT
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, text)
    error = caught.value
    assert error.source == str(tmp_path / "bad.toml")
    assert error.path == path
    assert problem.lower() in error.problem.lower()
    assert error.problem
    # the message a policy officer sees names the file, the field and the problem
    assert str(error) == f"{error.source}: {error.path}: {error.problem}"


def test_a_good_edit_still_loads(tmp_path: Path) -> None:
    # guards the bad-file cases: the same kind of edit with valid values is accepted
    text = replace_once(
        DEFAULT_TEXT, "rate = { township = 0.85, county = 0.75 }", "rate = { township = 0.875, county = 0.75 }"
    )
    text = replace_once(text, "per_year_yuan = 200,", "per_year_yuan = 150.5,")
    policy = load_text(tmp_path, text, "good.toml")
    insurance = policy.steps[0]
    assert insurance.rules[1].rate_by_level["township"] == 875_000
    assert set(insurance.rules[0].deductible_by_level.values()) == {15_050}


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(PolicyError) as caught:
        load_policy_file(missing)
    assert caught.value.source == str(missing)
    assert caught.value.path == "$"


# ---------------------------------------------------------------- policy book


def _variant(policy_id: str, effective_from: str) -> str:
    text = replace_once(DEFAULT_TEXT, 'id = "default-2026"', f'id = "{policy_id}"')
    return replace_once(text, "effective_from = 2026-01-01", f"effective_from = {effective_from}")


def test_book_refuses_two_files_with_the_same_id() -> None:
    later = parse_chain(_variant("default-2026", "2026-07-01"), "later.toml")
    with pytest.raises(PolicyError) as caught:
        PolicyBook([POLICY, later])
    assert caught.value.path == "$.id"
    assert "default-2026" in str(caught.value)


def test_book_refuses_two_files_with_the_same_effective_date() -> None:
    twin = parse_chain(_variant("other-2026", "2026-01-01"), "twin.toml")
    with pytest.raises(PolicyError) as caught:
        PolicyBook([POLICY, twin])
    assert caught.value.path == "$.effective_from"
    assert "default-2026" in str(caught.value) or "other-2026" in str(caught.value)


def test_load_policy_book_refuses_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a policy", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_book(tmp_path)
    assert caught.value.source == str(tmp_path)
    assert caught.value.path == "$"
    assert "no policy files" in caught.value.problem


def test_load_policy_book_reads_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(DEFAULT_TEXT, encoding="utf-8")
    (tmp_path / "b.toml").write_text(_variant("county-2026-07", "2026-07-01"), encoding="utf-8")
    book = load_policy_book(tmp_path)
    assert len(book) == 2
    assert book.in_force(dt.date(2026, 6, 30)).id == "default-2026"
    assert book.in_force(dt.date(2026, 7, 1)).id == "county-2026-07"
    assert book.by_id("default-2026") == POLICY


def test_load_policy_book_names_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(DEFAULT_TEXT, encoding="utf-8")
    bad = tmp_path / "b.toml"
    bad.write_text(replace_once(DEFAULT_TEXT, "township = 0.85,", "township = 85,"), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_book(tmp_path)
    assert caught.value.source == str(bad)
    assert caught.value.path == "$.funds.insurance.rules[1].rate.township"


def test_repository_policy_folder_loads() -> None:
    book = load_policy_book(REPO / "policies")
    assert book.in_force(dt.date(2026, 1, 1)).id == "default-2026"
