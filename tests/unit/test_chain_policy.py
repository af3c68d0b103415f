"""The chain policy loader: what it builds from the shipped files, and how it refuses a mistake.

Each refusal names the file, the field path and the problem, so a policy officer can find the
line to fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from settlement.chain import DERIVED_FIELDS, Chain, Rule, Step, policy_document
from settlement.chain_policy import parse_chain
from settlement.errors import PolicyError

REPO = Path(__file__).resolve().parents[2]
THREE_TIER_TEXT = (REPO / "policies/examples/three-tier/three-tier-2026.toml").read_text(encoding="utf-8")


def refusal(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_chain(text, "county.toml")
    assert caught.value.source == "county.toml"
    return f"{caught.value.path}: {caught.value.problem}"


def edited(old: str, new: str) -> str:
    assert old in THREE_TIER_TEXT, old
    return THREE_TIER_TEXT.replace(old, new, 1)


def test_the_three_tier_file_builds_its_six_funds_in_chain_order() -> None:
    chain = parse_chain(THREE_TIER_TEXT, "three-tier")
    assert [(fund.code, fund.fund_type, fund.statutory) for fund in chain.funds] == [
        ("insurance", "390100", True),
        ("critical_illness", "390200", True),
        ("hardship_aid", "610100", True),
        ("tilted_aid", "610102", True),
        ("veteran_subsidy", "350100", True),
        ("charity", None, False),
    ]
    assert chain.funds[1].name == "城乡居民大病保险"
    assert chain.inpatient_levels == ("township", "county")
    assert chain.programmes["charity"] == ("child_major_disease",)
    insurance = chain.steps[0]
    assert insurance.rules[1].deductible_by_level == {"township": 30_000, "county": 60_000}
    assert insurance.rules[0].rate_by_level == {"village": 500_000, "township": 450_000, "county": 350_000}


def test_a_non_statutory_fund_before_a_statutory_one_is_refused() -> None:
    text = edited(
        'chain = ["insurance", "critical_illness", "hardship_aid", "tilted_aid", "veteran_subsidy", "charity"]',
        'chain = ["insurance", "critical_illness", "hardship_aid", "charity", "tilted_aid", "veteran_subsidy"]',
    )
    assert refusal(text) == (
        "$.chain[4]: statutory fund 'tilted_aid' comes after non-statutory fund 'charity': statutory payers pay first"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'chain = ["insurance", "critical_illness",',
            'chain = ["insurance", "insurance", "critical_illness",',
            "$.chain[1]: fund 'insurance' is already in the chain: one step per fund",
        ),
        (
            'chain = ["insurance", "critical_illness",',
            'chain = ["insurance", "supplementary", "critical_illness",',
            "$.chain[1]: fund 'supplementary' is not declared under [funds.supplementary]",
        ),
        (
            '"veteran_subsidy", "charity"]',
            '"veteran_subsidy"]',
            "$.funds.charity: declared but not in the chain",
        ),
        (
            "rate = { township = 0.85, county = 0.75 }",
            "rate = { county = 0.75 }",
            "$.funds.insurance.rules[1].rate.township: missing: the rule can settle bills at this level",
        ),
        (
            "rate = { township = 0.85, county = 0.75 }",
            "rate = { township = 0.85, county = 0.75, city = 0.9 }",
            "$.funds.insurance.rules[1].rate.city: unknown clinic level; expected one of village, township, county",
        ),
        (
            "rate = 0.65\nannual_cap_yuan = 50000",
            "rate = 1.65\nannual_cap_yuan = 50000",
            "$.funds.hardship_aid.rules[2].rate: rate 1.65 must be between 0 and 1",
        ),
        (
            'codes = ["marginal"]\ndeductible',
            'codes = ["marginl"]\ndeductible',
            "$.funds.hardship_aid.rules[2].codes[0]: 'marginl' is not a code of programme 'hardship_aid'",
        ),
        (
            'ytd_counter = { name = "tilted_aid_base", counts = "applied" }\n',
            "",
            "$.funds.tilted_aid.rules[0].ytd_bands: bands over a year-to-date counter need ytd_counter on the fund",
        ),
        (
            'paid_counter = "tilted_aid_paid"',
            'paid_counter = "aid_deductible_met"',
            "$.funds.tilted_aid.paid_counter: counter 'aid_deductible_met' is already a deductible counter; "
            "it cannot also be paid",
        ),
        (
            'ytd_counter = { name = "tilted_aid_base", counts = "applied" }',
            'ytd_counter = { name = "critical_illness_base", counts = "applied" }',
            "$.funds.tilted_aid.ytd_counter.name: year-to-date counter 'critical_illness_base' already belongs to "
            "fund 'critical_illness'",
        ),
        (
            "ytd_bands = { threshold_yuan = 10000, bands = [{ rate = 0.50 }] }",
            "ytd_bands = { threshold_yuan = 10000, bands = [{ rate = 0.50 }] }\nrate = 0.5",
            "$.funds.tilted_aid.rules[0]: give exactly one of rate, bands or ytd_bands",
        ),
        (
            'deductible = { per_year_yuan = 2000, counter = "aid_deductible_met" }\nrate = 0.65',
            "deductible = { per_year_yuan = 2000 }\nrate = 0.65",
            "$.funds.hardship_aid.rules[2].deductible.counter: a per-year deductible needs a counter of what has "
            "been met",
        ),
        (
            "ytd_bands = { threshold_yuan = 7500, bands = [{ up_to_yuan = 100000, rate = 0.65 }",
            "ytd_bands = { threshold_yuan = 7500, bands = [{ up_to_yuan = 7000, rate = 0.65 }",
            "$.funds.critical_illness.rules[0].ytd_bands.bands[0].up_to_yuan: the first band must end above "
            "threshold_yuan",
        ),
        (
            'members_of = { hardship_aid = ["destitute", "minimum_allowance", "marginal"] }',
            'members_of = { welfare = ["destitute"] }',
            "$.funds.critical_illness.rules[0].members_of.welfare: programme is not declared under [programmes]",
        ),
        (
            '"veteran_subsidy", "charity"]',
            '"veteran_subsidy", "aid"]',
            "$.chain[5]: fund 'aid' is not declared under [funds.aid]",
        ),
        (
            'fund_type = "390200"',
            'fund_type = "3902"',
            "$.funds.critical_illness.fund_type: a national fund type is six digits, such as 390100",
        ),
        (
            'visit_types = ["inpatient"]\nreferral = true',
            'visit_types = ["inpatent"]\nreferral = true',
            "$.funds.tilted_aid.visit_types[0]: Invalid enum value 'inpatent'",
        ),
        (
            "annual_cap_yuan = 30000\n",
            "anual_cap_yuan = 30000\n",
            "$.funds.tilted_aid.rules[0]: Object contains unknown field `anual_cap_yuan`",
        ),
        (
            "annual_cap_yuan = 20000\n",
            'annual_cap_yuan = "20000"\n',
            "$.funds.charity.rules[0].annual_cap_yuan: expected a number, got str",
        ),
    ],
)
def test_a_mistake_is_refused_naming_the_field(old: str, new: str, expected: str) -> None:
    assert refusal(edited(old, new)) == expected


def test_the_stored_document_says_what_the_file_says_and_nothing_derived() -> None:
    """A version's identity in the database: the loader's speed-ups (first-rule tables, rate texts, the named
    funds' places) are left out, so making the engine faster never makes a stored version look changed."""
    chain = parse_chain(THREE_TIER_TEXT, "three-tier")
    document = json.loads(policy_document(chain))
    assert document["id"] == "three-tier-2026"
    assert document["steps"][1]["fund"]["name"] == "城乡居民大病保险"
    text = json.dumps(document)
    for derived in DERIVED_FIELDS:
        assert f'"{derived}"' not in text
    # each name is a real field, so the list cannot go stale unnoticed
    fields = {*Chain.__struct_fields__, *Step.__struct_fields__, *Rule.__struct_fields__}
    assert fields >= DERIVED_FIELDS


def test_a_fund_code_that_would_share_a_named_funds_ledger_account_is_refused() -> None:
    text = (
        THREE_TIER_TEXT.replace('"veteran_subsidy", "charity"]', '"veteran_subsidy", "aid"]')
        .replace("[funds.charity]", "[funds.aid]")
        .replace("[[funds.charity.rules]]", "[[funds.aid.rules]]")
    )
    assert refusal(text) == (
        "$.funds.aid: fund code 'aid' would be booked as aid_fund, the ledger account of 'hardship_aid'"
    )
