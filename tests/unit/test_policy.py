"""The policy loader: default.toml in fen and parts per million, and bad files refused by name."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from adapters.policy_files import load_policy_book, load_policy_file
from settlement.errors import PolicyError
from settlement.policy import Policy, PolicyBook, parse_policy

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_PATH = REPO / "policies" / "default.toml"
DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
POLICY = load_policy_file(DEFAULT_POLICY_PATH)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the policy text"
    return text.replace(old, new)


def without_section(text: str, header: str, next_header: str) -> str:
    start, end = text.index(header), text.index(next_header)
    return text[:start] + text[end:]


def load_text(tmp_path: Path, text: str, name: str = "bad.toml") -> Policy:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_policy_file(path)


# ---------------------------------------------------------------- the default policy


def test_default_policy_identity() -> None:
    assert POLICY.id == "default-2026"
    assert POLICY.effective_from == dt.date(2026, 1, 1)
    # B self-pay-first 10 %
    assert POLICY.b_self_pay_first_share == 100_000


def test_default_insurance_figures() -> None:
    ins = POLICY.insurance
    # outpatient deductible 200 yuan, outpatient cap 3,000, inpatient cap 200,000
    assert ins.outpatient_deductible == 20_000
    assert ins.outpatient_cap == 300_000
    assert ins.inpatient_cap == 20_000_000
    rows = {
        level: (rule.outpatient_rate, rule.inpatient_deductible, rule.inpatient_rate)
        for level, rule in ins.levels.items()
    }
    assert rows == {
        "village": (500_000, None, None),  # 0.50, no inpatient care
        "township": (450_000, 30_000, 850_000),  # 0.45, 300 per admission, 0.85
        "county": (350_000, 60_000, 750_000),  # 0.35, 600 per admission, 0.75
    }
    assert not ins.levels["village"].offers_inpatient
    assert ins.levels["county"].offers_inpatient


def test_default_subsidy_figures() -> None:
    rows = {
        name: (rule.outpatient_rate, rule.inpatient_rate, rule.annual_cap)
        for name, rule in POLICY.veteran_categories.items()
    }
    assert rows == {
        "disabled_veteran": (1_000_000, 1_000_000, 10_000_000),  # 1.00, 1.00, 100,000
        "priority_care": (500_000, 600_000, 1_000_000),  # 0.50, 0.60, 10,000
    }


def test_default_hardship_figures() -> None:
    rows = {
        name: (
            rule.outpatient_rate,
            [(band.up_to, band.rate) for band in rule.inpatient_bands],
            rule.annual_cap,
            rule.ytd_unpaid_threshold,
        )
        for name, rule in POLICY.hardship_tiers.items()
    }
    assert rows == {
        "destitute": (1_000_000, [(None, 1_000_000)], 6_000_000, 0),
        # 0.70 up to 10,000; 0.75 to 50,000; 0.80 above; cap 50,000
        "minimum_allowance": (500_000, [(1_000_000, 700_000), (5_000_000, 750_000), (None, 800_000)], 5_000_000, 0),
        "marginal": (500_000, [(1_000_000, 600_000), (5_000_000, 650_000), (None, 700_000)], 4_000_000, 0),
        "low_income": (500_000, [(1_000_000, 500_000), (5_000_000, 550_000), (None, 600_000)], 3_000_000, 0),
        # outpatient 0.00; 0.50 above 5,000 year-to-date unpaid eligible; cap 20,000
        "medical_hardship": (0, [(None, 500_000)], 2_000_000, 500_000),
    }
    assert [band.rate_text for band in POLICY.hardship_tiers["minimum_allowance"].inpatient_bands] == [
        "0.70",
        "0.75",
        "0.80",
    ]


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


NUMERIC_NAMES = ("rate", "cap", "deductible", "up_to", "threshold", "share")


def test_no_float_anywhere_in_the_loaded_policy() -> None:
    leaves = dict(_leaves(POLICY))
    assert not {path: value for path, value in leaves.items() if isinstance(value, float | Decimal)}
    numeric = {
        path: value
        for path, value in leaves.items()
        if any(word in path.rsplit(".", 1)[-1] for word in NUMERIC_NAMES) and not path.endswith("rate_text")
    }
    # every money and rate field is an int (not bool), except "no inpatient care" and open-ended bands
    allowed_none = {
        "policy.insurance.levels.village.inpatient_rate",
        "policy.insurance.levels.village.inpatient_deductible",
    }
    for path, value in numeric.items():
        if value is None:
            assert path in allowed_none or path.endswith("].up_to"), path
        else:
            assert type(value) is int, (path, value)
    # 49 money/rate values in default.toml, 5 open-ended bands and the village's two missing inpatient figures
    assert sum(type(value) is int for value in numeric.values()) == 49
    assert sum(value is None for value in numeric.values()) == 7


# ---------------------------------------------------------------- bad files


def _remove_marginal(text: str) -> str:
    return without_section(text, "[hardship_aid.tiers.marginal]", "[hardship_aid.tiers.low_income]")


BAD_FILES: list[tuple[str, Callable[[str], str], str, str]] = [
    (
        "rate-above-1",
        lambda t: replace_once(t, "inpatient_rate = 0.85", "inpatient_rate = 1.01"),
        "$.insurance.levels.township.inpatient_rate",
        "between 0 and 1",
    ),
    (
        "rate-below-0",
        lambda t: replace_once(
            t, "outpatient_rate = 0.50\ninpatient_rate = 0.60", "outpatient_rate = -0.5\ninpatient_rate = 0.60"
        ),
        "$.veteran_subsidy.categories.priority_care.outpatient_rate",
        "between 0 and 1",
    ),
    (
        "bands-descending",
        lambda t: replace_once(t, "{ up_to_yuan = 50000, rate = 0.75 }", "{ up_to_yuan = 5000, rate = 0.75 }"),
        "$.hardship_aid.tiers.minimum_allowance.inpatient_bands[1].up_to_yuan",
        "ascending",
    ),
    (
        "bands-equal",
        lambda t: replace_once(t, "{ up_to_yuan = 50000, rate = 0.65 }", "{ up_to_yuan = 10000, rate = 0.65 }"),
        "$.hardship_aid.tiers.marginal.inpatient_bands[1].up_to_yuan",
        "ascending",
    ),
    (
        "open-band-not-last",
        lambda t: replace_once(t, "{ up_to_yuan = 10000, rate = 0.60 }", "{ rate = 0.60 }"),
        "$.hardship_aid.tiers.marginal.inpatient_bands[0].up_to_yuan",
        "last band",
    ),
    (
        "last-band-closed",
        lambda t: replace_once(t, "  { rate = 0.60 },\n", "  { up_to_yuan = 90000, rate = 0.60 },\n"),
        "$.hardship_aid.tiers.low_income.inpatient_bands[2].up_to_yuan",
        "open-ended",
    ),
    (
        "missing-tier",
        _remove_marginal,
        "$.hardship_aid.tiers.marginal",
        "missing",
    ),
    (
        "unknown-tier-typo",
        lambda t: replace_once(t, "[hardship_aid.tiers.destitute]", "[hardship_aid.tiers.destitue]"),
        "$.hardship_aid.tiers.destitue",
        "unknown hardship tier",
    ),
    (
        "unknown-category",
        lambda t: replace_once(
            t, "[veteran_subsidy.categories.priority_care]", "[veteran_subsidy.categories.priority_cares]"
        ),
        "$.veteran_subsidy.categories.priority_cares",
        "unknown",
    ),
    (
        "negative-cap",
        lambda t: replace_once(t, "annual_cap_yuan = 10000\n", "annual_cap_yuan = -1\n"),
        "$.veteran_subsidy.categories.priority_care.annual_cap_yuan",
        ">= 0",
    ),
    (
        "sub-fen-amount",
        lambda t: replace_once(t, "outpatient_deductible_yuan = 200 ", "outpatient_deductible_yuan = 0.001 "),
        "$.insurance.outpatient_deductible_yuan",
        "whole number of fen",
    ),
    (
        "sub-fen-band",
        lambda t: replace_once(t, "{ up_to_yuan = 10000, rate = 0.50 }", "{ up_to_yuan = 10000.005, rate = 0.50 }"),
        "$.hardship_aid.tiers.low_income.inpatient_bands[0].up_to_yuan",
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
        lambda t: replace_once(t, "outpatient_cap_yuan = 3000 ", 'outpatient_cap_yuan = "3000" '),
        "$.insurance.outpatient_cap_yuan",
        "str",
    ),
    (
        "string-for-rate",
        lambda t: replace_once(t, "inpatient_rate = 0.75", 'inpatient_rate = "0.75"'),
        "$.insurance.levels.county.inpatient_rate",
        "str",
    ),
    (
        "bool-for-number",
        lambda t: replace_once(t, "outpatient_cap_yuan = 3000 ", "outpatient_cap_yuan = true "),
        "$.insurance.outpatient_cap_yuan",
        "bool",
    ),
    (
        "invalid-toml",
        lambda t: t + "\n[hardship_aid.tiers\n",
        "$",
        "not valid TOML",
    ),
    (
        "inpatient-rate-without-deductible",
        lambda t: replace_once(t, "inpatient_deductible_yuan = 300       # per admission\n", ""),
        "$.insurance.levels.township",
        "inpatient_deductible_yuan",
    ),
    (
        "village-deductible-without-rate",
        lambda t: replace_once(
            t, "outpatient_rate = 0.50\n# Village", "outpatient_rate = 0.50\ninpatient_deductible_yuan = 100\n# Village"
        ),
        "$.insurance.levels.village",
        "inpatient_rate",
    ),
    (
        "missing-level",
        lambda t: without_section(t, "[insurance.levels.township]", "[insurance.levels.county]"),
        "$.insurance.levels.township",
        "missing",
    ),
    (
        "misspelt-field",
        lambda t: replace_once(t, "outpatient_cap_yuan = 3000 ", "outpatient_cap = 3000 "),
        "$.insurance",
        "outpatient_cap",
    ),
    (
        "no-bands",
        lambda t: replace_once(t, "inpatient_bands = [{ rate = 1.00 }]", "inpatient_bands = []"),
        "$.hardship_aid.tiers.destitute.inpatient_bands",
        "at least one band",
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
        lambda t: replace_once(t, "inpatient_cap_yuan = 200000 ", "inpatient_cap_yuan = inf "),
        "$.insurance.inpatient_cap_yuan",
        "inf",
    ),
    (
        "huge-exponent",
        lambda t: replace_once(t, "inpatient_cap_yuan = 200000 ", "inpatient_cap_yuan = 1e999999999 "),
        "$.insurance.inpatient_cap_yuan",
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
    text = replace_once(DEFAULT_TEXT, "inpatient_rate = 0.85", "inpatient_rate = 0.875")
    text = replace_once(text, "outpatient_deductible_yuan = 200 ", "outpatient_deductible_yuan = 150.5 ")
    policy = load_text(tmp_path, text, "good.toml")
    assert policy.insurance.levels["township"].inpatient_rate == 875_000
    assert policy.insurance.outpatient_deductible == 15_050


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
    later = parse_policy(_variant("default-2026", "2026-07-01"), "later.toml")
    with pytest.raises(PolicyError) as caught:
        PolicyBook([POLICY, later])
    assert caught.value.path == "$.id"
    assert "default-2026" in str(caught.value)


def test_book_refuses_two_files_with_the_same_effective_date() -> None:
    twin = parse_policy(_variant("other-2026", "2026-01-01"), "twin.toml")
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
    bad.write_text(replace_once(DEFAULT_TEXT, "inpatient_rate = 0.85", "inpatient_rate = 85"), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_book(tmp_path)
    assert caught.value.source == str(bad)
    assert caught.value.path == "$.insurance.levels.township.inpatient_rate"


def test_repository_policy_folder_loads() -> None:
    book = load_policy_book(REPO / "policies")
    assert book.in_force(dt.date(2026, 1, 1)).id == "default-2026"
