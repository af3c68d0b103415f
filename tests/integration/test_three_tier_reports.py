"""Finance and patient outputs of the three-tier chain: every fund by its name, with the right fen.

A gateway on policies/examples/three-tier (a database of its own, as in test_three_tier.py) settles
the demo's charity admission (samples/bill-charity-admission.json) at the county hospital, and a
referred admission at a township centre that is then reversed. The day's statement (JSON and CSV),
a reconciliation of the critical-illness fund's list, the statistics, the dashboard and the
receipt must each show the chain's six funds by the names the policy gives them, and the amounts
the settlements paid.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest

from gateway.dashboard.sessions import COOKIE, login_link
from gateway.service import china_today
from settlement.money import format_yuan
from tests.integration.conftest import (
    ADMIN,
    COUNTY,
    TOWNSHIP,
    SignedClient,
    ThreeTier,
)
from tests.integration.test_three_tier import (
    CHAIN,
    REPO,
    Y,
    paid,
    referred,
    register,
    settle,
)

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
NAMES = {
    "insurance": "城乡居民基本医疗保险",
    "critical_illness": "城乡居民大病保险",
    "hardship_aid": "城乡医疗救助",
    "tilted_aid": "倾斜救助",
    "veteran_subsidy": "重点优抚对象医疗补助",
    "charity": "慈善医疗救助",
}
ACCOUNTS = [
    "insurance_fund",
    "critical_illness_fund",
    "aid_fund",
    "tilted_aid_fund",
    "priority_care_fund",
    "charity_fund",
    "patient",
]
# The charity admission, worked example 3 (test_three_tier.py checks the same figures).
CHARITY = {
    "insurance": 20_000_000,
    "critical_illness": 13_512_500,
    "hardship_aid": 4_865_625,
    "tilted_aid": 310_938,
    "veteran_subsidy": 0,
    "charity": 655_469,
}
CHARITY_OUT_OF_POCKET = 655_468
OTHERS = ("critical_illness", "tilted_aid", "charity")  # the funds without columns of their own


Day = tuple[SignedClient, dict[str, Any]]  # the client, and today's settlements by name


@pytest.fixture(scope="module")
async def day(three_tier: ThreeTier) -> Day:
    """Today's business on the three-tier gateway: the charity admission, and a township admission reversed."""
    client, _, _ = three_tier
    body = json.loads((REPO / "samples" / "bill-charity-admission.json").read_text(encoding="utf-8"))
    charity = await settle(client, body)
    assert paid(charity) == CHARITY and charity["out_of_pocket"] == CHARITY_OUT_OF_POCKET
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    township = await settle(client, referred(person, ("A", 100_000 * Y), clinic_id="T001"), TOWNSHIP)
    assert paid(township)["critical_illness"] > 0
    response = await client.post(
        f"/v1/settlements/{township['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "wrong patient"},
        headers=TOWNSHIP,
    )
    assert response.status == 201, await response.text()
    return client, {"charity": charity, "township": township}


def line(answer: dict[str, Any], *, reversed_: bool = False, **changes: Any) -> dict[str, Any]:
    """A settlement as a clinic or a fund lists it: every amount the gateway answered."""
    amounts = paid(answer)
    return {
        "settlement_id": answer["settlement_id"],
        "total": answer["total"],
        "insurance": answer["insurance"],
        "veteran_subsidy": answer["veteran_subsidy"],
        "hardship_aid": answer["hardship_aid"],
        "out_of_pocket": answer["out_of_pocket"],
        "other_funds": {code: amounts[code] for code in OTHERS},
        "reversed": reversed_,
    } | changes


async def reconcile(client: SignedClient, body: dict[str, Any], headers: dict[str, str] = FINANCE) -> Any:
    response = await client.post("/v1/finance/reconciliation", json=body, headers=headers)
    return response.status, await response.json()


# ---------------------------------------------------------------- the daily statement


async def test_the_daily_statement_lists_every_fund_of_the_chain_by_name(day: Day) -> None:
    client, settled = day
    township = paid(settled["township"])
    response = await client.get(f"/v1/finance/daily?date={china_today().isoformat()}", headers=FINANCE)
    statement = await response.json()
    assert response.status == 200, statement
    # The chain's order, then the patient; each account with its fund's code and the policy's name.
    assert statement["funds"] == ACCOUNTS
    assert [(entry["account"], entry["code"], entry["name"]) for entry in statement["accounts"]] == [
        *((account, code, NAMES[code]) for account, code in zip(ACCOUNTS, CHAIN, strict=False)),
        ("patient", "out_of_pocket", "个人自付"),
    ]
    (county,) = [block for block in statement["by_clinic"] if block["clinic_id"] == "C001"]
    assert list(county["funds"]) == ACCOUNTS
    for account, code in zip(ACCOUNTS, CHAIN, strict=False):
        assert county["funds"][account] == {
            "settlements_count": 1 if CHARITY[code] else 0,  # a line of 0 is booked, not counted
            "settlements_fen": CHARITY[code],
            "reversals_count": 0,
            "reversals_fen": 0,
            "adjustments_count": 0,
            "adjustments_fen": 0,
            "net_fen": CHARITY[code],
        }, account
    assert county["funds"]["patient"]["net_fen"] == CHARITY_OUT_OF_POCKET
    # The township admission was settled and reversed today: booked both ways, net nothing.
    (centre,) = [block for block in statement["by_clinic"] if block["clinic_id"] == "T001"]
    critical = centre["funds"]["critical_illness_fund"]
    assert critical["settlements_fen"] == critical["reversals_fen"] == township["critical_illness"]
    assert critical["net_fen"] == 0 and critical["reversals_count"] == 1
    total = statement["total"]["funds"]
    both = CHARITY["critical_illness"] + township["critical_illness"]
    assert total["critical_illness_fund"]["settlements_fen"] == both
    assert total["critical_illness_fund"]["net_fen"] == CHARITY["critical_illness"]
    assert total["charity_fund"]["net_fen"] == CHARITY["charity"]
    # The reversal names what every other fund gave back, in chain order.
    (reversal,) = statement["reversals"]
    assert reversal["settlement_id"] == settled["township"]["settlement_id"]
    assert reversal["other_funds_fen"] == {code: township[code] for code in OTHERS}
    assert list(reversal["other_funds_fen"]) == list(OTHERS)
    assert reversal["hardship_aid_fen"] == township["hardship_aid"]

    response = await client.get(f"/v1/finance/daily?date={china_today().isoformat()}&format=csv", headers=ADMIN)
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8").lstrip("\ufeff"))))
    (county,) = [row for row in rows if row["机构编码 Clinic ID"] == "C001"]
    # Every fund in chain order, by its Chinese name, paid, reversed and net; the patient last.
    paying = [name.split(" ")[0].removesuffix("支付") for name in county if " " in name and name.endswith(" paid")]
    chain = ("insurance", "critical_illness", "hardship_aid", "tilted_aid", "veteran_subsidy", "charity")
    assert paying == [*(NAMES[code] for code in chain), "个人自付"]
    critical = NAMES["critical_illness"]
    assert county[f"{critical}支付 critical-illness insurance paid"] == format_yuan(CHARITY["critical_illness"])
    assert county[f"{critical}净额 critical-illness insurance net"] == format_yuan(CHARITY["critical_illness"])
    assert county["个人自付净额 patient net"] == format_yuan(CHARITY_OUT_OF_POCKET)


# ---------------------------------------------------------------- reconciliation


async def test_the_critical_illness_fund_reconciles_its_list(day: Day) -> None:
    client, settled = day
    today = china_today().isoformat()
    listed = [line(settled["charity"]), line(settled["township"], reversed_=True)]
    # By its code or its ledger account: the fund's list across clinics, compared on its own amount.
    for asked in ("critical_illness", "critical_illness_fund"):
        status, result = await reconcile(client, {"date": today, "fund": asked, "settlements": listed})
        assert status == 200, result
        assert result["clean"] is True and result["confirmed"] is True, result["discrepancies"]
        assert (result["fund"], result["fund_code"], result["fund_name"]) == (
            "critical_illness_fund",
            "critical_illness",
            NAMES["critical_illness"],
        )
        assert result["gateway_count"] == result["matched_count"] == 2
        # The reversed one is not summed.
        assert result["matched_sums_fen"]["other_funds"]["critical_illness"] == CHARITY["critical_illness"]
        assert result["gateway_sums_fen"] == result["submitted_sums_fen"] == result["matched_sums_fen"]

    # A wrong amount is named by the fund's code, with both values.
    wrong = [line(settled["charity"], other_funds={"critical_illness": 13_512_400}), listed[1]]
    status, result = await reconcile(client, {"date": today, "fund": "critical_illness", "settlements": wrong})
    assert status == 200 and result["clean"] is False
    assert [(item["field"], item["gateway"], item["submitted"]) for item in result["discrepancies"]] == [
        ("critical_illness", CHARITY["critical_illness"], 13_512_400)
    ]
    # A list without what the fund paid on the charity admission: the gateway's is missing at the fund.
    status, result = await reconcile(
        client, {"date": today, "fund": "critical_illness", "settlements": [line(settled["charity"], other_funds={})]}
    )
    assert {(item["kind"], item["settlement_id"]) for item in result["discrepancies"]} == {
        ("missing_at_clinic", settled["charity"]["settlement_id"]),
        ("missing_at_clinic", settled["township"]["settlement_id"]),
    }

    # The clinic's own list is compared on every fund: one it leaves out paid nothing by its account.
    status, result = await reconcile(
        client,
        {"date": today, "clinic_id": "C001", "settlements": [line(settled["charity"], other_funds={})]},
        COUNTY,
    )
    assert status == 200 and result["clean"] is False
    assert [(item["field"], item["gateway"], item["submitted"]) for item in result["discrepancies"]] == [
        (code, CHARITY[code], 0) for code in OTHERS
    ]
    status, result = await reconcile(
        client, {"date": today, "clinic_id": "C001", "settlements": [line(settled["charity"])]}, COUNTY
    )
    assert result["clean"] is True and result["matched_sums_fen"]["other_funds"] == {c: CHARITY[c] for c in OTHERS}


async def test_a_fund_the_ledger_does_not_know_is_refused(day: Day) -> None:
    client, settled = day
    body = {"date": china_today().isoformat(), "settlements": []}
    status, problem = await reconcile(client, body | {"fund": "lottery_fund"})
    assert (status, problem["code"], problem["field"]) == (422, "unknown_fund", "fund")
    assert "lottery_fund" in problem["detail"]
    # A fund of the chain with nothing on the day reconciles (empty) rather than being refused.
    status, result = await reconcile(client, {"date": "2026-01-02", "settlements": [], "fund": "charity"})
    assert status == 200 and result["gateway_count"] == 0 and result["fund_name"] == NAMES["charity"]
    # The three named funds keep their own fields: other_funds does not take them.
    listed = [line(settled["charity"], other_funds={"insurance": CHARITY["insurance"]})]
    status, problem = await reconcile(client, body | {"clinic_id": "C001", "settlements": listed})
    assert (status, problem["field"]) == (422, "settlements[0].other_funds")


# ---------------------------------------------------------------- statistics and the dashboard


async def test_statistics_show_every_fund(day: Day) -> None:
    client, _ = day
    period = "from=2026-05-01&to=2026-05-31"  # both admissions' service dates; the reversed one is left out
    response = await client.get(f"/v1/finance/stats?by=level&{period}", headers=FINANCE)
    stats = await response.json()
    assert response.status == 200, stats
    assert [(fund["code"], fund["account"], fund["name"]) for fund in stats["funds"]] == [
        (code, account, NAMES[code]) for code, account in zip(CHAIN, ACCOUNTS, strict=False)
    ]
    (county,) = stats["groups"]
    assert county["level"] == "county" and county["settlements"] == 1
    assert county["other_funds_fen"] == {code: CHARITY[code] for code in OTHERS}
    assert county["insurance_fen"] == CHARITY["insurance"] and county["out_of_pocket_fen"] == CHARITY_OUT_OF_POCKET

    response = await client.get(f"/v1/finance/stats?by=programme&{period}", headers=FINANCE)
    programmes = {group["programme"]: group for group in (await response.json())["groups"]}
    # The person's programmes, and every other fund that paid.
    assert set(programmes) == {"insurance", "hardship_aid", *OTHERS}
    assert programmes["charity"]["other_funds_fen"]["charity"] == CHARITY["charity"]

    response = await client.get(f"/v1/finance/stats?by=level&{period}&format=csv", headers=FINANCE)
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8").lstrip("\ufeff"))))
    assert [rows[0][f"{code}_fen"] for code in OTHERS] == [str(CHARITY[code]) for code in OTHERS]


async def test_the_dashboard_shows_every_fund(day: Day) -> None:
    client, _ = day
    finance = client.by_terminal["finance-1"]
    base = str(client.client.make_url("")).rstrip("/")
    link = login_link(base, finance.key_id, finance.secret, minutes=5)
    login = await client.client.get(link[len(base) :], allow_redirects=False)
    assert login.status == 303
    page = await client.client.get(
        "/dashboard?from=2026-05-01&to=2026-05-31", cookies={COOKIE: login.cookies[COOKIE].value}
    )
    text = await page.text()
    assert page.status == 200
    assert 'data-fund-critical-illness="13512500"' in text and 'data-fund-charity="655469"' in text
    assert 'id="total-fund-critical-illness">135,125.00<' in text
    assert 'id="total-fund-tilted-aid">3,109.38<' in text
    assert "城乡居民大病保险 critical-illness insurance" in text and "慈善医疗救助 charity medical aid" in text
    assert 'id="total-insurance">200,000.00<' in text


# ---------------------------------------------------------------- the receipt


async def test_the_receipt_prints_every_step_by_its_fund_name(day: Day) -> None:
    client, settled = day
    receipt = f"/v1/settlements/{settled['charity']['settlement_id']}/receipt"
    response = await client.get(f"{receipt}?format=text", headers=COUNTY)
    text = await response.text()
    assert response.status == 200, text
    # The three funds of the first policies keep their labels; the others print under their names.
    order = ["基本医疗保险", NAMES["critical_illness"], "医疗救助", NAMES["tilted_aid"], "优抚医疗补助"]
    order.append(NAMES["charity"])
    lines = text.splitlines()
    starts = [next(i for i, row in enumerate(lines) if row.startswith(label)) for label in order]
    assert starts == sorted(starts), "every step in chain order"
    # A name with its programme is wider than the printer: its amount closes the next line.
    assert "135,125.00" in lines[starts[1]] + lines[starts[1] + 1]
    assert "6,554.69" in lines[starts[5]] + lines[starts[5] + 1]
    assert not any(row.startswith(("critical_illness", "tilted_aid", "charity")) for row in lines)

    response = await client.get(f"{receipt}?format=html&lang=en", headers=COUNTY)
    page = await response.text()
    assert response.status == 200
    assert [fund for fund in CHAIN if f'data-fund="{fund}"' in page] == CHAIN
    assert 'id="critical_illness">135,125.00<' in page and 'id="charity">6,554.69<' in page
    assert "<td>critical-illness insurance (county hospital)</td>" in page
    assert "<td>charity medical aid (child with a major disease)</td>" in page
    assert 'id="insurance">200,000.00<' in page and "<td>Basic medical insurance (county hospital)</td>" in page
    # The settlement's own explanation names the funds too.
    assert any(row.startswith(NAMES["critical_illness"]) for row in settled["charity"]["explanation"])
