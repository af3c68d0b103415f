"""Bills as hospitals send them: the HIS visit or admission number, invoice number, operator, ICD-10
diagnoses and the admission's dates travel with the bill, are kept with the settlement, come back in
its answer however it is read, and are printed on its receipt. A bill without them is the bill it
always was, with the same idempotency fingerprint.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import COUNTY, SignedClient, bill, register

pytestmark = pytest.mark.integration

DETAILS = {
    "his_visit_id": "ZY2026-0418-031",
    "invoice_number": "0413-88172",
    "operator": "收费员 王敏",
    "diagnoses": ["I21.000x001", "E11.900"],
    "admitted_on": "2026-04-18",
    "discharged_on": "2026-05-01",
}


async def admission(client: SignedClient, **fields: Any) -> dict[str, Any]:
    person = await register(client, ("insurance", "resident"))
    return {**bill(person, ("A", 300_000), ("B", 50_000)), **fields}


async def settle(client: SignedClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/settlements", json=body, headers=COUNTY)
    return response.status, await response.json(content_type=None)


def details_of(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: answer[name] for name in DETAILS}


async def test_the_details_are_kept_given_back_and_printed(client: SignedClient) -> None:
    body = await admission(client, **DETAILS)
    status, settled = await settle(client, body)
    assert status == 201, settled
    assert details_of(settled) == DETAILS

    stored = await (await client.get(f"/v1/settlements/{settled['settlement_id']}", headers=COUNTY)).json()
    assert details_of(stored) == DETAILS  # read back from the stored record, not the request
    status, replay = await settle(client, body)
    assert status == 200 and replay["replayed"] and details_of(replay) == DETAILS

    receipts = {}
    for lang in ("zh", "en"):
        for form in ("html", "text"):
            path = f"/v1/settlements/{settled['settlement_id']}/receipt?lang={lang}&format={form}"
            receipts[lang, form] = await (await client.get(path, headers=COUNTY)).text()
    for (lang, form), text in receipts.items():
        for value in ("ZY2026-0418-031", "0413-88172", "I21.000x001", "E11.900", "2026-04-18"):
            assert value in text, (lang, form, value)
        assert "收费员 王敏" in text
    assert "住院号" in receipts["zh", "html"] and "出院日期" in receipts["zh", "text"]
    assert "Admission no." in receipts["en", "html"] and "Diagnoses (ICD-10)" in receipts["en", "text"]


async def test_a_bill_without_details_answers_them_empty_and_prints_none(client: SignedClient) -> None:
    status, settled = await settle(client, await admission(client))
    assert status == 201, settled
    assert details_of(settled) == dict.fromkeys(DETAILS) | {"diagnoses": []}
    path = f"/v1/settlements/{settled['settlement_id']}/receipt?lang=zh&format=text"
    assert "住院号" not in await (await client.get(path, headers=COUNTY)).text()


async def test_a_retry_with_other_details_is_a_reused_request_id(client: SignedClient) -> None:
    body = await admission(client, **DETAILS)
    assert (await settle(client, body))[0] == 201
    status, problem = await settle(client, {**body, "invoice_number": "0413-88173"})
    assert (status, problem["code"]) == (422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"visit_type": "outpatient", "admitted_on": "2026-04-18"}, "invalid_bill", "admitted_on"),
        ({"visit_type": "outpatient", "discharged_on": "2026-05-01"}, "invalid_bill", "discharged_on"),
        ({"admitted_on": "2026-05-02", "discharged_on": "2026-05-01"}, "invalid_bill", "discharged_on"),
        ({"diagnoses": ["I21.000x001", "heart attack"]}, "validation_failed", "diagnoses[1]"),
        ({"diagnoses": ["I21"] * 21}, "validation_failed", "diagnoses"),
        ({"his_visit_id": ""}, "validation_failed", "his_visit_id"),
        ({"operator": "王\x00敏"}, "validation_failed", "operator"),
    ],
)
async def test_details_that_cannot_be_a_hospital_s_are_refused_naming_the_field(
    client: SignedClient, fields: dict[str, Any], code: str, field: str
) -> None:
    status, problem = await settle(client, await admission(client, **fields))
    assert (status, problem["code"], problem["field"]) == (422, code, field), problem
