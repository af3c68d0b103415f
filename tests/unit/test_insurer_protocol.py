"""The insurer's envelope (adapters/insurer/protocol.py): message ids, exact yuan <-> fen, strict decoding."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.insurer import protocol
from adapters.insurer.protocol import ProtocolError, to_fen, to_yuan
from settlement.models import Bill, BillDetails, LineItem
from settlement.money import MAX_BILL_FEN

INSTITUTION = "H41010200001"
WHEN = dt.datetime(2026, 3, 1, 8, 5, 9, tzinfo=protocol.CHINA_TIME)
MSGID = protocol.message_id(INSTITUTION, WHEN, 7)
NATIONAL_ID = "410102196003020026"  # a valid GB 11643 number (the README's demo person)

# ---------------------------------------------------------------- message ids


def test_a_message_id_is_institution_time_and_sequence() -> None:
    assert MSGID == "H41010200001" + "20260301080509" + "0007"
    assert len(MSGID) == 30
    assert protocol.is_message_id(MSGID)


def test_a_message_id_is_written_in_china_time() -> None:
    utc = dt.datetime(2026, 3, 1, 0, 5, 9, tzinfo=dt.UTC)
    assert protocol.message_id(INSTITUTION, utc, 7) == MSGID
    assert protocol.message_id(INSTITUTION, WHEN.replace(tzinfo=None), 7) == MSGID  # naive: China time already


def test_message_ids_differ_by_sequence() -> None:
    ids = {protocol.message_id(INSTITUTION, WHEN, sequence) for sequence in range(10_000)}
    assert len(ids) == 10_000
    assert all(protocol.is_message_id(one) for one in ids)


def test_message_ids_count_up_within_a_second_and_start_again_in_the_next() -> None:
    ids = protocol.MessageIds(INSTITUTION, first=0, last=2)
    first_second = [ids.next(WHEN) for _ in range(3)]
    assert [one[-4:] for one in first_second] == ["0000", "0001", "0002"]
    with pytest.raises(RuntimeError, match="more than 3 messages in one second"):
        ids.next(WHEN)
    assert ids.next(WHEN + dt.timedelta(seconds=1)) == protocol.message_id(INSTITUTION, WHEN, 0)[:-6] + "100000"


@pytest.mark.parametrize(
    ("institution", "sequence"),
    [("h41010200001", 1), ("H4101020000", 1), ("H410102000012", 1), (INSTITUTION, 10_000), (INSTITUTION, -1)],
)
def test_a_message_id_refuses_a_bad_institution_code_or_sequence(institution: str, sequence: int) -> None:
    with pytest.raises(ValueError):
        protocol.message_id(institution, WHEN, sequence)


@pytest.mark.parametrize(
    "text",
    [
        MSGID[:-1],  # 29 characters
        MSGID + "0",  # 31
        MSGID.lower(),
        "H41010200001" + "20261301080509" + "0007",  # month 13
        "H41010200001" + "20260230080509" + "0007",  # 30 February
        "H41010200001-0260301080509" + "0007",
    ],
)
def test_a_malformed_message_id_is_not_one(text: str) -> None:
    assert not protocol.is_message_id(text)


# ---------------------------------------------------------------- yuan <-> fen


@pytest.mark.parametrize(
    ("yuan", "fen"),
    [("0.01", 1), ("12208.63", 1_220_863), ("12208.630", 1_220_863), ("0", 0), ("1E+2", 10_000), ("100000000", 10**10)],
)
def test_yuan_to_fen_is_exact(yuan: str, fen: int) -> None:
    assert to_fen(Decimal(yuan)) == fen


@pytest.mark.parametrize(
    ("yuan", "reason"),
    [
        ("1e-3", "whole number of fen"),
        ("0.001", "whole number of fen"),
        ("12208.625", "whole number of fen"),
        ("-0.01", "negative"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("100000000.01", "above"),
        ("1e999999", "above"),
    ],
)
def test_yuan_to_fen_refuses_what_is_not_a_whole_amount_of_fen(yuan: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        to_fen(Decimal(yuan))


@pytest.mark.parametrize("value", [0.01, 1, True, "0.01"])
def test_yuan_to_fen_takes_only_a_decimal(value: Any) -> None:
    with pytest.raises(TypeError):
        to_fen(value)


def test_fen_to_yuan_has_two_decimals() -> None:
    assert str(to_yuan(1_220_863)) == "12208.63"
    assert str(to_yuan(1)) == "0.01"
    assert str(to_yuan(0)) == "0.00"
    assert str(to_yuan(10_000)) == "100.00"


@pytest.mark.parametrize("value", [-1, 0.5, True, Decimal("1")])
def test_fen_to_yuan_refuses_what_is_not_int_fen(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        to_yuan(value)


@given(st.integers(min_value=0, max_value=MAX_BILL_FEN))
def test_fen_survives_the_wire(fen: int) -> None:
    wire = protocol.ENCODER.encode({"amount": to_yuan(fen)})
    assert to_fen(msgspec.json.decode(wire, type=dict[str, Decimal])["amount"]) == fen


def test_amounts_go_out_as_json_numbers() -> None:
    part = protocol.SetlDetail(fund_pay_type="390100", fund_payamt=to_yuan(1_220_863))
    assert protocol.ENCODER.encode(part) == b'{"fund_pay_type":"390100","fund_payamt":12208.63}'


# ---------------------------------------------------------------- requests


def _bill() -> Bill:
    return Bill(
        clinic_level="county",
        visit_type="inpatient",
        service_date=dt.date(2026, 3, 5),
        items=(
            LineItem(code="A1", name="ward", category="A", amount=1_400_000, quantity=2, unit_price=700_000),
            LineItem(code="B1", name="drug", category="B", amount=400_000),
            LineItem(code="C1", name="extra", category="C", amount=200_000),
        ),
        referral=True,
        details=BillDetails(admitted_on=dt.date(2026, 3, 1)),
    )


def _request(infno: str = "2304", payload: msgspec.Struct | None = None) -> dict[str, Any]:
    """A valid request envelope as a JSON-ready dict, amounts as Decimal."""
    payload = payload or protocol.settle_input(_bill(), psn_no="P-7f3a", mdtrt_id="ZY2026-0001")
    envelope = protocol.Request(
        infno=infno,  # type: ignore[arg-type]
        msgid=MSGID,
        mdtrtarea_admvs="410102",
        insuplc_admdvs="410102",
        recer_sys_code="FSI_LOCAL",
        infver="V1.0",
        opter_type="1",
        opter="medsettle",
        opter_name="medsettle gateway",
        inf_time="2026-03-01 08:05:09",
        fixmedins_code=INSTITUTION,
        fixmedins_name="County Hospital",
        sign_no="S0001",
        input=payload,
    )
    return json.loads(protocol.encode(envelope), parse_float=Decimal)  # type: ignore[no-any-return]


def _encoded(message: dict[str, Any]) -> bytes:
    return protocol.ENCODER.encode(message)


def test_settle_input_carries_the_bill_in_national_names() -> None:
    request = protocol.decode_request(_encoded(_request()))
    assert request.infno == "2304"
    payload = request.input
    assert isinstance(payload, protocol.SettleInput)
    assert payload.data.medfee_sumamt == Decimal("20000.00")
    assert payload.data.med_type == "21"
    assert (payload.data.begndate, payload.data.enddate) == (dt.date(2026, 3, 1), dt.date(2026, 3, 5))
    assert payload.data.referral_flag == "1"
    assert [line.chrgitm_lv for line in payload.feedetail] == ["01", "02", "03"]
    assert (payload.feedetail[0].cnt, payload.feedetail[0].pric) == (2, Decimal("7000.00"))
    assert protocol.visit_type_of(payload) == "inpatient"


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(message: dict[str, Any]) -> None:
        target: Any = message
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _remove(path: list[str | int]) -> Callable[[dict[str, Any]], None]:
    def change(message: dict[str, Any]) -> None:
        target: Any = message
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (_set(["infno"], "9999"), "$.infno", "unknown transaction"),
        (_set(["msgid"], MSGID[:-1]), "$.msgid", "msgid"),
        (_set(["msgid"], "H41010200002" + MSGID[12:]), "$.msgid", "fixmedins_code"),
        (_set(["infver"], "V2.0"), "$.infver", "V1.0"),
        (_set(["inf_time"], "2026/03/01 08:05:09"), "$.inf_time", "inf_time"),
        (_remove(["sign_no"]), "$", "missing required field `sign_no`"),
        (_set(["input", "data", "psn_no"], 42), "$.input.data.psn_no", "Expected `str`"),
        (_set(["input", "data", "medfee_sumamt"], True), "$.input.data.medfee_sumamt", "Expected `decimal`"),
        (_remove(["input", "data", "mdtrt_id"]), "$.input.data", "missing required field `mdtrt_id`"),
        (_set(["input", "data", "med_type"], "99"), "$.input.data.med_type", "Invalid enum value"),
        (_set(["input", "data", "refl_flg"], "1"), "$.input.data", "unknown field `refl_flg`"),
        (_set(["input", "feedetail"], []), "$.input.feedetail", "length >= 1"),
        (
            _set(["input", "feedetail", 1, "det_item_fee_sumamt"], Decimal("4000.001")),
            "$.input.feedetail[1].det_item_fee_sumamt",
            "whole number of fen",
        ),
        (_set(["input", "data", "medfee_sumamt"], Decimal("-1.00")), "$.input.data.medfee_sumamt", "negative"),
        (_set(["input", "data", "psn_no"], NATIONAL_ID), "$.input.data.psn_no", "pseudonym"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(
    change: Callable[[dict[str, Any]], None], path: str, says: str
) -> None:
    message = _request()
    change(message)
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_request(_encoded(message))
    assert caught.value.path == path
    assert says in caught.value.message
    assert NATIONAL_ID not in str(caught.value)


def test_a_request_that_is_not_json_is_refused() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        protocol.decode_request(b'{"infno": "2207",')


def test_each_transaction_decodes_its_own_input() -> None:
    cancel = protocol.CancelInput(data=protocol.CancelData(setl_id="S1", mdtrt_id="V1", psn_no="P1"))
    assert isinstance(protocol.decode_request(_encoded(_request("2305", cancel))).input, protocol.CancelInput)
    with pytest.raises(ProtocolError) as caught:  # a settle's input under a cancel's code
        protocol.decode_request(_encoded(_request("2305")))
    assert caught.value.path == "$.input.data"  # a settle's data is not a cancel's


def test_settle_input_refuses_a_national_id_and_a_line_without_category() -> None:
    with pytest.raises(ValueError, match="pseudonym") as caught:
        protocol.settle_input(_bill(), psn_no=NATIONAL_ID, mdtrt_id="V1")
    assert NATIONAL_ID not in str(caught.value)
    bill = msgspec.structs.replace(_bill(), items=(LineItem(code="X", name="x", amount=100),))
    with pytest.raises(ValueError, match="line 0 has no category"):
        protocol.settle_input(bill, psn_no="P1", mdtrt_id="V1")
    assert protocol.settle_input(bill, psn_no="P1", mdtrt_id="V1", categories=["B"]).feedetail[0].chrgitm_lv == "02"


# ---------------------------------------------------------------- answers

SETTLED: dict[str, Any] = {
    "infcode": 0,
    "inf_refmsgid": MSGID,
    "refmsg_time": "20260301080509123",
    "respond_time": "20260301080509125",
    "err_msg": "成功",
    "signtype": "SM2",  # a field the platform adds: ignored
    "output": {
        "setlinfo": {
            "setl_id": "S1",
            "mdtrt_id": "V1",
            "psn_no": "P1",
            "medfee_sumamt": Decimal("400000.00"),
            "fulamt_ownpay_amt": Decimal("0.00"),
            "overlmt_selfpay": Decimal("0.00"),
            "preselfpay_amt": Decimal("0.00"),
            "inscp_scp_amt": Decimal("400000.00"),
            "hifp_pay": Decimal("200000.00"),
            "hifmi_pay": Decimal("135125.00"),
            "fund_pay_sumamt": Decimal("335125.00"),
            "psn_cash_pay": Decimal("64875.00"),
            "setl_time": "2026-03-01 08:05:09",
        },
        "setldetail": [
            {"fund_pay_type": "390100", "fund_payamt": Decimal("200000.00")},
            {"fund_pay_type": "390200", "fund_payamt": Decimal("135125.00")},
        ],
    },
}


def _answer() -> dict[str, Any]:
    return json.loads(_encoded(SETTLED), parse_float=Decimal)  # type: ignore[no-any-return]


def test_a_settle_answer_decodes_to_its_output() -> None:
    answer = protocol.decode_answer(_encoded(_answer()), infno="2304", msgid=MSGID)
    assert answer.infcode == 0
    assert isinstance(answer.output, protocol.SettleOutput)
    assert to_fen(answer.output.setlinfo.hifmi_pay) == 13_512_500


RECEIPT = "220000202505301537082844878588"  # the national interface's example of a receiver's message id


def test_the_platform_answers_with_its_own_receipt_id_which_is_kept_not_compared() -> None:
    message = _answer()
    message["inf_refmsgid"] = RECEIPT
    answer = protocol.decode_answer(_encoded(message), infno="2304", msgid=MSGID)  # "platform" by default
    assert answer.inf_refmsgid == RECEIPT
    assert protocol.decode_answer(_encoded(message), infno="2304", msgid=MSGID, answer_id="platform") == answer


def test_an_echoing_platform_must_name_our_message() -> None:
    assert protocol.decode_answer(_encoded(_answer()), infno="2304", msgid=MSGID, answer_id="echo").infcode == 0
    for other in (protocol.message_id(INSTITUTION, WHEN, 8), RECEIPT):
        message = _answer()
        message["inf_refmsgid"] = other
        with pytest.raises(ProtocolError) as caught:
            protocol.decode_answer(_encoded(message), infno="2304", msgid=MSGID, answer_id="echo")
        assert caught.value.path == "$.inf_refmsgid"
        assert "another message" in caught.value.message
    with pytest.raises(ValueError, match="answer_id"):
        protocol.decode_answer(_encoded(_answer()), infno="2304", msgid=MSGID, answer_id="receipt")  # type: ignore[arg-type]


def test_a_receipt_id_is_area_time_and_serial() -> None:
    when = dt.datetime(2025, 5, 30, 15, 37, 8, tzinfo=protocol.CHINA_TIME)
    assert protocol.receipt_id("220000", when, 2_844_878_588) == RECEIPT
    assert protocol.receipt_id("220000", when.astimezone(dt.UTC), 1)[6:20] == "20250530153708"  # China time
    for area, serial in (("22000", 1), ("2200001", 1), ("220000", 10**10), ("220000", -1)):
        with pytest.raises(ValueError):
            protocol.receipt_id(area, when, serial)


def test_ids_are_grouped_for_logs_which_mask_long_runs_of_digits() -> None:
    assert protocol.id_for_logs(MSGID) == "H41010200001-20260301080509-0007"
    assert protocol.id_for_logs(RECEIPT) == "220000-20250530153708-2844878588"
    assert protocol.id_for_logs("SOMETHING-ELSE") == "SOMETHING-ELSE"
    assert protocol.id_for_logs(NATIONAL_ID) == NATIONAL_ID  # not an id of either kind: left to the log's mask


def test_a_refusal_decodes_without_output() -> None:
    refusal = {"infcode": -1, "inf_refmsgid": MSGID, "refmsg_time": "x", "respond_time": "x", "err_msg": "no"}
    answer = protocol.decode_answer(_encoded(refusal), infno="2304", msgid=MSGID)
    assert (answer.infcode, answer.err_msg, answer.output) == (-1, "no", None)


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (_set(["infcode"], "0"), "$.infcode", "Expected `int`"),
        (_remove(["inf_refmsgid"]), "$", "missing required field `inf_refmsgid`"),
        (_remove(["output"]), "$.output", "needs its output"),
        (_set(["output"], None), "$.output", "needs its output"),
        (_remove(["output", "setlinfo", "setl_id"]), "$.output.setlinfo", "missing required field `setl_id`"),
        (_set(["output", "setlinfo", "hifp_pay"], [1]), "$.output.setlinfo.hifp_pay", "Expected `decimal`"),
        (
            _set(["output", "setldetail", 0, "fund_payamt"], Decimal("1e-3")),
            "$.output.setldetail[0].fund_payamt",
            "whole number of fen",
        ),
        (_set(["output", "setlinfo", "psn_cash_pay"], Decimal("-0.01")), "$.output.setlinfo.psn_cash_pay", "negative"),
    ],
)
def test_a_malformed_answer_is_refused_naming_the_field(
    change: Callable[[dict[str, Any]], None], path: str, says: str
) -> None:
    message = _answer()
    change(message)
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_answer(_encoded(message), infno="2304", msgid=MSGID)
    assert caught.value.path == path
    assert says in caught.value.message


def test_an_answer_that_is_not_json_is_refused() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        protocol.decode_answer(b"<html>502 Bad Gateway</html>", infno="2207", msgid=MSGID)
