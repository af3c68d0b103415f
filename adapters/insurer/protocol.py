"""The insurer's interface: the provincial platform's message envelope and the transactions the gateway uses.

One HTTP endpoint (``ENDPOINT``) takes a JSON envelope: the transaction code ``infno``, a message id
``msgid`` unique per attempt, who is sending (institution, operator, area codes, the ``sign_no`` from a
sign-in) and the transaction's ``input``. The answer carries ``infcode`` (0: done; anything else: refused,
with ``err_msg``), ``inf_refmsgid`` and the transaction's ``output``. Field names are the national
interface's (国家医保信息平台 接口规范), simplified; where this project adds or departs, the Struct says so.

``inf_refmsgid`` is, nationally, the *receiver's* message id (接收方报文ID): the platform's own receipt for
the answer, its area code (6) + yyyyMMddHHmmss + a 10-digit serial (``receipt_id``), e.g.
``220000202505301537082844878588``. Under ``answer_id="platform"`` (the default, the national interface)
it is kept and logged, never compared; a platform that echoes the request's ``msgid`` there instead is
``answer_id="echo"``, and then it must equal the request's ``msgid``. Under either, the client also
matches a successful answer to its message by what the output names (the visit and person of a settle or
cancel, the message a reversal undid), so a stale or misrouted answer is caught when ids are not echoed.

Money: yuan with at most two decimals as JSON numbers on the wire (``decimal.Decimal`` in the Structs),
int fen everywhere else. ``to_fen`` and ``to_yuan`` convert exactly and refuse anything else (a float,
sub-fen precision, a negative or absurd amount); nothing here rounds.

Decoding is strict: an unknown transaction, a wrong type, a missing field, an amount with more than two
decimals or below zero, or (``answer_id="echo"``) an answer naming another message raise ``ProtocolError``
naming the JSON path.
Unknown *envelope and output* fields are ignored, because platforms add signing fields (``cainfo``,
``signtype``) that cannot change what an answer says; unknown *input* fields are refused, so a sender's typo
is caught instead of silently dropped.

Departures from the national interface, on purpose:

* none about ``inf_refmsgid`` by default (``answer_id="platform"``: the platform's receipt id, as
  nationally). ``answer_id="echo"`` is for a platform that departs the other way and echoes the request's
  ``msgid`` there: then a different one is refused.
* the settle input carries its ``feedetail`` lines (nationally uploaded first, by 2204/2301), and adds
  ``clinic_level`` and ``referral_flag``, which the county rules need and the national settle leaves to the
  platform's own records.
* cancel (2208/2305) answers ``already_cancelled`` and reversal (2601) answers ``found``, so a repeat is a
  success the caller can tell from a first undo.
* 3202 "detail" answers the insurer's rows for the period instead of checking an uploaded file: a
  three-way reconciliation (insurer, gateway, clinic) needs the insurer's rows, not its verdict.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import msgspec

from adapters import identity
from settlement.models import Bill, Category, VisitType
from settlement.money import FEN_PER_YUAN, MAX_BILL_FEN

ENDPOINT: Final = "/fsi/api/rsfComIfsService/callService"
INTERFACE_VERSION: Final = "V1.0"
CHINA_TIME: Final = dt.timezone(dt.timedelta(hours=8), "CST")  # the platform's clock; no daylight saving

# ---------------------------------------------------------------- transaction codes

Infno = Literal["9001", "2206", "2207", "2208", "2303", "2304", "2305", "2601", "3201", "3202"]

SIGN_IN: Final = "9001"
OUTPATIENT_PRE_SETTLE: Final = "2206"
OUTPATIENT_SETTLE: Final = "2207"
OUTPATIENT_CANCEL: Final = "2208"
INPATIENT_PRE_SETTLE: Final = "2303"
INPATIENT_SETTLE: Final = "2304"
INPATIENT_CANCEL: Final = "2305"
REVERSAL: Final = "2601"
TOTALS: Final = "3201"
DETAIL: Final = "3202"

SETTLE_INFNO: Final[dict[VisitType, Infno]] = {"outpatient": "2207", "inpatient": "2304"}
PRE_SETTLE_INFNO: Final[dict[VisitType, Infno]] = {"outpatient": "2206", "inpatient": "2303"}
CANCEL_INFNO: Final[dict[VisitType, Infno]] = {"outpatient": "2208", "inpatient": "2305"}
VISIT_TYPE_OF: Final[dict[str, VisitType]] = {
    **{infno: visit for visit, infno in SETTLE_INFNO.items()},
    **{infno: visit for visit, infno in PRE_SETTLE_INFNO.items()},
    **{infno: visit for visit, infno in CANCEL_INFNO.items()},
}

# med_type (医疗类别): 11 普通门诊 (outpatient), 21 普通住院 (inpatient). Others exist nationally; this
# gateway settles these two.
MED_TYPE: Final[dict[VisitType, str]] = {"outpatient": "11", "inpatient": "21"}
RESIDENT_BASIC: Final = "390"  # insutype 城乡居民基本医疗保险

# chrgitm_lv (收费项目等级): 01 甲类 (A), 02 乙类 (B), 03 丙类 (C, fully self-pay).
CHRGITM_LV: Final[dict[Category, str]] = {"A": "01", "B": "02", "C": "03"}
CATEGORY_OF: Final[dict[str, Category]] = {level: category for category, level in CHRGITM_LV.items()}

# ---------------------------------------------------------------- answer codes (infcode)

SUCCESS: Final = 0
REFUSED: Final = -1
"""The platform's general refusal: a rule, a bad input or an unknown id; ``err_msg`` says which."""
SIGN_NO_EXPIRED: Final = 1001
"""The ``sign_no`` is unknown or has expired: sign in again (9001) and resend. Nothing was done."""
DUPLICATE_MSGID: Final = 1002
"""A message with this ``msgid`` was already taken, or reversed before it arrived. Nothing was done now,
but the earlier message may have done something: a sender treats this as an unknown outcome."""
VISIT_ALREADY_SETTLED: Final = 1003
"""The visit (``mdtrt_id``) has a settlement in force; cancel it before settling the visit again."""

# ---------------------------------------------------------------- money


class ProtocolError(ValueError):
    """A message that breaks the interface: ``path`` is where (``$.output.setlinfo.hifp_pay``)."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{message} (at {path})")
        self.message = message
        self.path = path


MAX_AMOUNT_YUAN: Final = Decimal(MAX_BILL_FEN) / FEN_PER_YUAN


def to_fen(amount: Decimal) -> int:
    """A wire amount in yuan as int fen, exactly: refuses a float, a non-finite or negative amount, one
    with a part of a fen (``Decimal('0.001')``) and one above 100 million yuan, the largest bill."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"an amount is a Decimal number of yuan, not {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError("an amount must be a finite number")
    if amount < 0:
        raise ValueError("an amount must not be negative")
    if amount > MAX_AMOUNT_YUAN:  # before scaling, so an exponent like 1e999999 costs nothing
        raise ValueError(f"an amount must not be above {MAX_AMOUNT_YUAN} yuan")
    fen = amount * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise ValueError("an amount must be a whole number of fen (at most two decimals)")
    return int(fen)


def to_yuan(fen: int) -> Decimal:
    """Int fen as yuan with exactly two decimals: 1220863 -> Decimal('12208.63'), 0 -> Decimal('0.00')."""
    if type(fen) is not int:  # bool and float are refused too: money is int fen
        raise TypeError(f"fen must be an int, not {type(fen).__name__}")
    if fen < 0:
        raise ValueError("an amount must not be negative")
    return Decimal(fen).scaleb(-2)


# ---------------------------------------------------------------- message ids and times

INSTITUTION_CODE = re.compile(r"[A-Z0-9]{12}")
MESSAGE_ID = re.compile(r"(?P<institution>[A-Z0-9]{12})(?P<when>[0-9]{14})(?P<sequence>[0-9]{4})")
RECEIPT_ID = re.compile(r"(?P<area>[0-9]{6})(?P<when>[0-9]{14})(?P<serial>[0-9]{10})")

AnswerId = Literal["platform", "echo"]
"""What an answer's ``inf_refmsgid`` holds: ``platform``, the platform's own receipt id (the national
interface; never compared); ``echo``, the request's ``msgid`` (then it must equal it)."""
ANSWER_IDS: Final[tuple[AnswerId, ...]] = ("platform", "echo")
INF_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
REFMSG_TIME_FORMAT: Final = "%Y%m%d%H%M%S%f"  # yyyyMMddHHmmssSSS once the microseconds are cut to three


def china_time(when: dt.datetime) -> dt.datetime:
    """An aware time in China time; a naive one is taken to be China time already."""
    return when.replace(tzinfo=CHINA_TIME) if when.tzinfo is None else when.astimezone(CHINA_TIME)


def message_id(institution_code: str, when: dt.datetime, sequence: int) -> str:
    """The 30-character msgid: institution code (12, [A-Z0-9]) + yyyyMMddHHmmss (China time) + a 4-digit
    sequence. Unique per attempt as long as a sender never reuses a sequence within one second."""
    if not INSTITUTION_CODE.fullmatch(institution_code):
        raise ValueError("an institution code is 12 characters of A-Z and 0-9")
    if type(sequence) is not int or not 0 <= sequence <= 9999:
        raise ValueError("a msgid sequence is an int from 0 to 9999")
    return f"{institution_code}{china_time(when):%Y%m%d%H%M%S}{sequence:04d}"


def is_message_id(text: str) -> bool:
    """Whether ``text`` is a well-formed msgid (the shape, and a real time in it)."""
    match = MESSAGE_ID.fullmatch(text)
    if match is None:
        return False
    try:
        dt.datetime.strptime(match["when"], "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def receipt_id(area_code: str, when: dt.datetime, serial: int) -> str:
    """The national platform's 30-digit receipt id (``inf_refmsgid``): its area code (6 digits) +
    yyyyMMddHHmmss (China time) + a 10-digit serial."""
    if not re.fullmatch(r"[0-9]{6}", area_code):
        raise ValueError("an area code is six digits")
    if type(serial) is not int or not 0 <= serial <= 9_999_999_999:
        raise ValueError("a receipt serial is an int from 0 to 9999999999")
    return f"{area_code}{china_time(when):%Y%m%d%H%M%S}{serial:010d}"


def id_for_logs(text: str) -> str:
    """A message id or receipt id as a log shows it: a msgid as institution-time-sequence
    (``H41010200001-20260301080509-0007``), a national receipt id as area-time-serial; anything else as it
    is. The log renderer masks every run of 17 or more digits (a national ID may hide in one), which would
    leave both ids unreadable whole; neither is an ID, and no part of the grouped form is that long. (Thirty
    digits are grouped as a receipt id: a msgid's institution code has a letter, nationally.)"""
    match = RECEIPT_ID.fullmatch(text) or MESSAGE_ID.fullmatch(text)
    return text if match is None else "-".join(match.groups())


class MessageIds:
    """Hands out msgids for one institution: the sequence counts up within each second and starts again at
    0 in the next. One generator per sending process; two processes sending for one institution need
    sequences of their own (say, a worker's number as the first digit), which ``first``/``last`` give."""

    def __init__(self, institution_code: str, *, first: int = 0, last: int = 9999) -> None:
        message_id(institution_code, dt.datetime(2026, 1, 1), first)  # validates the code and the range
        if not first <= last <= 9999:
            raise ValueError("a sequence range runs from first to last, within 0..9999")
        self.institution_code = institution_code
        self._first = first
        self._last = last
        self._second: str | None = None
        self._next = first

    def next(self, when: dt.datetime) -> str:
        """The next msgid at ``when``. Raises RuntimeError when the second's sequences are used up."""
        second = f"{china_time(when):%Y%m%d%H%M%S}"
        if second != self._second:
            self._second, self._next = second, self._first
        if self._next > self._last:
            raise RuntimeError(f"more than {self._last - self._first + 1} messages in one second")
        sequence, self._next = self._next, self._next + 1
        return f"{self.institution_code}{second}{sequence:04d}"


def inf_time(when: dt.datetime) -> str:
    """The envelope's ``inf_time``: yyyy-MM-dd HH:mm:ss, China time."""
    return china_time(when).strftime(INF_TIME_FORMAT)


def refmsg_time(when: dt.datetime) -> str:
    """The answer's ``refmsg_time``/``respond_time``: yyyyMMddHHmmssSSS, China time."""
    return china_time(when).strftime(REFMSG_TIME_FORMAT)[:17]


# ---------------------------------------------------------------- the structs

Flag = Literal["0", "1"]  # the national interface's yes/no
Text = Annotated[str, msgspec.Meta(max_length=200)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
PersonNumber = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
"""``psn_no``: the person's number at the insurer. The gateway sends a pseudonym; a national ID number is
refused (``check_person_number``)."""


class Input(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A transaction's input: unknown fields refused."""


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction's output: unknown fields ignored (a platform may add its own)."""


class SignInData(Input, frozen=True, kw_only=True):
    opter_no: Code
    mac: Text = ""
    ip: Text = ""


class SignInInput(Input, frozen=True, kw_only=True):
    signIn: SignInData  # the national spelling


class SignInInfo(Output, frozen=True, kw_only=True):
    sign_time: str
    sign_no: Code


class SignInOutput(Output, frozen=True, kw_only=True):
    signinoutb: SignInInfo


class FeeDetail(Input, frozen=True, kw_only=True):
    """One line of the bill (费用明细). ``cnt`` and ``pric`` go together, and ``cnt`` × ``pric`` equals
    ``det_item_fee_sumamt`` (nationally ``cnt`` has four decimals; here a whole number, as on the bill)."""

    feedetl_sn: Code  # the line's number within the bill
    med_list_codg: Code  # the item's national code (医保目录编码)
    med_list_name: Text
    chrgitm_lv: Literal["01", "02", "03"]  # CHRGITM_LV
    det_item_fee_sumamt: Decimal
    cnt: Annotated[int, msgspec.Meta(ge=1)] | None = None
    pric: Decimal | None = None


class SettleData(Input, frozen=True, kw_only=True):
    """What a (pre-)settle settles. The rules read ``enddate`` as the service date (an admission settles
    on discharge); ``begndate`` is the admission date, or the service date for an outpatient bill.
    ``psn_idet_type`` (人员身份类别) carries the person's hardship tier code in the policy's words
    (``minimum_allowance``), or "". ``insutype`` "" means not insured. ``clinic_level`` and
    ``referral_flag`` are this project's additions (the module docstring says why)."""

    psn_no: PersonNumber
    insutype: Literal["390", ""]
    med_type: Literal["11", "21"]
    mdtrt_id: Code  # the visit (就诊ID): one settlement in force per visit
    medfee_sumamt: Decimal
    begndate: dt.date
    enddate: dt.date
    psn_idet_type: Annotated[str, msgspec.Meta(max_length=64)] = ""
    clinic_level: Literal["village", "township", "county"]
    referral_flag: Flag = "0"


class SettleInput(Input, frozen=True, kw_only=True):
    data: SettleData
    feedetail: Annotated[tuple[FeeDetail, ...], msgspec.Meta(min_length=1, max_length=1000)]


class SetlInfo(Output, frozen=True, kw_only=True):
    """The settlement (结算信息). The four buckets (全自费 ``fulamt_ownpay_amt``, 超限价 ``overlmt_selfpay``,
    先行自付 ``preselfpay_amt``, 政策范围内 ``inscp_scp_amt``) add up to ``medfee_sumamt``;
    ``fund_pay_sumamt`` + ``psn_cash_pay`` == ``medfee_sumamt``. ``setl_id`` is "" for a pre-settle."""

    setl_id: str
    mdtrt_id: str
    psn_no: str
    medfee_sumamt: Decimal
    fulamt_ownpay_amt: Decimal
    overlmt_selfpay: Decimal
    preselfpay_amt: Decimal
    inscp_scp_amt: Decimal
    hifp_pay: Decimal  # basic medical insurance fund (统筹基金), fund type 390100
    hifmi_pay: Decimal  # critical-illness insurance (大病保险), fund type 390200
    fund_pay_sumamt: Decimal
    psn_cash_pay: Decimal
    setl_time: str


class SetlDetail(Output, frozen=True, kw_only=True):
    """One fund's part (基金分项): ``fund_pay_type`` is the six-digit national fund type (390100...)."""

    fund_pay_type: str
    fund_payamt: Decimal


class SettleOutput(Output, frozen=True, kw_only=True):
    setlinfo: SetlInfo
    setldetail: tuple[SetlDetail, ...]


class CancelData(Input, frozen=True, kw_only=True):
    setl_id: Code
    mdtrt_id: Code
    psn_no: PersonNumber


class CancelInput(Input, frozen=True, kw_only=True):
    data: CancelData


class CancelInfo(Output, frozen=True, kw_only=True):
    """What the cancel gave back (positive amounts). ``already_cancelled`` "1": the settlement was undone
    before (by a cancel or a reversal) and nothing was given back this time."""

    setl_id: str
    mdtrt_id: str
    psn_no: str
    medfee_sumamt: Decimal
    fund_pay_sumamt: Decimal
    already_cancelled: Flag


class CancelOutput(Output, frozen=True, kw_only=True):
    setlinfo: CancelInfo


class ReversalData(Input, frozen=True, kw_only=True):
    """Reverse (冲正) the message ``omsgid`` of transaction ``oinfno``: undo whatever it did, if anything."""

    psn_no: PersonNumber
    omsgid: Annotated[str, msgspec.Meta(min_length=30, max_length=30)]
    oinfno: Infno


class ReversalInput(Input, frozen=True, kw_only=True):
    data: ReversalData


class ReversalInfo(Output, frozen=True, kw_only=True):
    """``found`` "1": the message had done something, now undone. "0": nothing to undo (never arrived, did
    nothing, or undone before): also a success."""

    omsgid: str
    oinfno: str
    found: Flag


class ReversalOutput(Output, frozen=True, kw_only=True):
    data: ReversalInfo


class FundTotal(Input, frozen=True, kw_only=True):
    fund_pay_type: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    fund_payamt: Decimal


class TotalsData(Input, frozen=True, kw_only=True):
    """3201 (对总账): the sender's totals for the settlements in force from the days ``stmt_begndate`` to
    ``stmt_enddate`` (China dates of the insurer's commit), per fund type in ``setldetail``."""

    stmt_begndate: dt.date
    stmt_enddate: dt.date
    fixmedins_setl_cnt: Annotated[int, msgspec.Meta(ge=0)]
    medfee_sumamt: Decimal
    fund_pay_sumamt: Decimal
    setldetail: tuple[FundTotal, ...] = ()


class TotalsInput(Input, frozen=True, kw_only=True):
    data: TotalsData


class StmtInfo(Output, frozen=True, kw_only=True):
    """The insurer's own totals, and ``stmt_rslt`` "0" when they equal the sender's, "1" when not."""

    stmt_rslt: Flag
    stmt_rslt_dscr: str
    fixmedins_setl_cnt: int
    medfee_sumamt: Decimal
    fund_pay_sumamt: Decimal
    setldetail: tuple[SetlDetail, ...]


class TotalsOutput(Output, frozen=True, kw_only=True):
    stmtinfo: StmtInfo


class DetailData(Input, frozen=True, kw_only=True):
    stmt_begndate: dt.date
    stmt_enddate: dt.date


class DetailInput(Input, frozen=True, kw_only=True):
    data: DetailData


class DetailRow(Output, frozen=True, kw_only=True):
    """One settlement the insurer committed in the period, whatever became of it: ``state`` "cancelled"
    names the message that undid it (``cncl_msgid``, a 2208/2305 cancel or a 2601 reversal)."""

    msgid: str
    infno: str
    setl_id: str
    mdtrt_id: str
    psn_no: str
    setl_time: str
    state: Literal["settled", "cancelled"]
    medfee_sumamt: Decimal
    fund_pay_sumamt: Decimal
    setldetail: tuple[SetlDetail, ...]
    cncl_msgid: str = ""
    cncl_infno: str = ""
    cncl_time: str = ""


class DetailOutput(Output, frozen=True, kw_only=True):
    detail: tuple[DetailRow, ...]


INPUT_TYPES: Final[dict[str, type[Input]]] = {
    "9001": SignInInput,
    "2206": SettleInput,
    "2207": SettleInput,
    "2208": CancelInput,
    "2303": SettleInput,
    "2304": SettleInput,
    "2305": CancelInput,
    "2601": ReversalInput,
    "3201": TotalsInput,
    "3202": DetailInput,
}
OUTPUT_TYPES: Final[dict[str, type[Output]]] = {
    "9001": SignInOutput,
    "2206": SettleOutput,
    "2207": SettleOutput,
    "2208": CancelOutput,
    "2303": SettleOutput,
    "2304": SettleOutput,
    "2305": CancelOutput,
    "2601": ReversalOutput,
    "3201": TotalsOutput,
    "3202": DetailOutput,
}


class _RequestEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The request envelope's fields but ``input``, shared by the typed ``Request`` and the raw one it is
    decoded from (whose ``infno`` is any string, so that an unknown one is refused by name)."""

    infno: str
    msgid: str
    mdtrtarea_admvs: str
    insuplc_admdvs: str
    recer_sys_code: str
    infver: str
    opter_type: str
    opter: str
    opter_name: str
    inf_time: str
    fixmedins_code: str
    fixmedins_name: str
    sign_no: str


class Request(_RequestEnvelope, frozen=True, kw_only=True):
    """The request envelope. ``mdtrtarea_admvs`` is the national spelling (就医地医保区划, the area where the
    care happens); ``insuplc_admdvs`` the person's insurance area (参保地). ``sign_no`` is "" for 9001."""

    infno: Infno  # keeps its place first in the envelope: msgspec orders a redefined field where it was
    input: Any  # one of INPUT_TYPES[infno]


class _AnswerEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The answer envelope's fields but ``output``, shared by ``Answer`` and the raw one it is decoded from."""

    infcode: int
    inf_refmsgid: str
    refmsg_time: str
    respond_time: str
    err_msg: str | None = None


class Answer(_AnswerEnvelope, frozen=True, kw_only=True):
    """The answer envelope. ``output`` is None on a refusal (``infcode`` != 0). ``inf_refmsgid`` is the
    platform's receipt id, or the request's ``msgid`` from a platform that echoes it (``AnswerId``)."""

    output: Any = None  # one of OUTPUT_TYPES[infno] on success


class _RawRequest(_RequestEnvelope, frozen=True, kw_only=True):
    input: msgspec.Raw


class _RawAnswer(_AnswerEnvelope, frozen=True, kw_only=True):
    output: msgspec.Raw = msgspec.Raw()  # empty when left out (msgspec reads Raw whole, null included)


# ---------------------------------------------------------------- encoding and decoding

ENCODER: Final = msgspec.json.Encoder(decimal_format="number")  # amounts go out as JSON numbers
_REQUEST_DECODER: Final = msgspec.json.Decoder(_RawRequest)
_ANSWER_DECODER: Final = msgspec.json.Decoder(_RawAnswer)
_INPUT_DECODERS: Final = {infno: msgspec.json.Decoder(kind) for infno, kind in INPUT_TYPES.items()}
_OUTPUT_DECODERS: Final = {infno: msgspec.json.Decoder(kind) for infno, kind in OUTPUT_TYPES.items()}
_ERROR_PATH = re.compile(r" - at `(\$[^`]*)`$")


def encode(message: Request | Answer) -> bytes:
    return ENCODER.encode(message)


def error_and_path(error: msgspec.ValidationError) -> tuple[str, str]:
    """A msgspec validation error as (what is wrong, JSON path): ``Expected `str`, got `int` - at `$.a```
    gives ("Expected `str`, got `int`", "$.a")."""
    text = str(error)
    match = _ERROR_PATH.search(text)
    return (text[: match.start()], match[1]) if match else (text, "$")


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, prefix: str) -> Any:
    """Decode ``body`` (the part of a message at ``prefix``), turning msgspec's errors into ProtocolError."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        message, inner = error_and_path(error)
        raise ProtocolError(message, prefix + inner[1:]) from None
    except msgspec.DecodeError as error:
        raise ProtocolError(f"not JSON: {error}", prefix) from None


def _amounts(value: object, path: str) -> Iterator[tuple[Decimal, str]]:
    """Every Decimal in a decoded struct, with its JSON path."""
    if isinstance(value, Decimal):
        yield value, path
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _amounts(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _amounts(item, f"{path}[{index}]")


def check_amounts(value: object, path: str) -> None:
    """Refuse any amount in ``value`` that ``to_fen`` refuses (sub-fen, negative, not finite, too large)."""
    for amount, where in _amounts(value, path):
        try:
            to_fen(amount)
        except ValueError as error:
            raise ProtocolError(str(error), where) from None


def check_person_number(psn_no: str, path: str) -> None:
    """Refuse a ``psn_no`` that is a national ID number: the insurer gets the person's pseudonym. The
    error never repeats the value."""
    try:
        identity.validate(psn_no)
    except identity.InvalidNationalId:
        return
    raise ProtocolError("psn_no is a national ID number; send the person's pseudonym", path)


def decode_request(body: bytes) -> Request:
    """A request envelope with its typed input, or ProtocolError naming what is wrong and where."""
    raw: _RawRequest = _decode(_REQUEST_DECODER, body, "$")
    if raw.infno not in INPUT_TYPES:
        raise ProtocolError(f"unknown transaction {raw.infno!r}", "$.infno")
    if not is_message_id(raw.msgid):
        raise ProtocolError("msgid must be institution code (12) + yyyyMMddHHmmss + 4 digits", "$.msgid")
    if not raw.msgid.startswith(raw.fixmedins_code):
        raise ProtocolError("msgid must start with the sender's fixmedins_code", "$.msgid")
    if raw.infver != INTERFACE_VERSION:
        raise ProtocolError(f"infver must be {INTERFACE_VERSION}", "$.infver")
    try:
        dt.datetime.strptime(raw.inf_time, INF_TIME_FORMAT)
    except ValueError:
        raise ProtocolError("inf_time must be yyyy-MM-dd HH:mm:ss", "$.inf_time") from None
    payload = _decode(_INPUT_DECODERS[raw.infno], raw.input, "$.input")
    check_amounts(payload, "$.input")
    data = getattr(payload, "data", None)
    if data is not None and hasattr(data, "psn_no"):
        check_person_number(data.psn_no, "$.input.data.psn_no")
    fields = {name: getattr(raw, name) for name in raw.__struct_fields__ if name != "input"}
    return Request(**fields, input=payload)


def decode_answer(body: bytes, *, infno: str, msgid: str, answer_id: AnswerId = "platform") -> Answer:
    """The answer to message ``msgid`` of transaction ``infno``, with its typed output on success; raises
    ProtocolError for an answer that is malformed or, under ``answer_id="echo"``, names another message in
    ``inf_refmsgid``. Under ``"platform"`` (the national interface) ``inf_refmsgid`` is the platform's own
    receipt id and is not compared: whether the output is about this message is the caller's to check."""
    if answer_id not in ANSWER_IDS:
        raise ValueError(f"answer_id is one of {', '.join(ANSWER_IDS)}")
    raw: _RawAnswer = _decode(_ANSWER_DECODER, body, "$")
    if answer_id == "echo" and raw.inf_refmsgid != msgid:
        raise ProtocolError("the answer is for another message (inf_refmsgid is not our msgid)", "$.inf_refmsgid")
    output = None
    if raw.infcode == SUCCESS:
        if bytes(raw.output) in (b"", b"null"):
            raise ProtocolError("a successful answer needs its output", "$.output")
        output = _decode(_OUTPUT_DECODERS[infno], raw.output, "$.output")
        check_amounts(output, "$.output")
    fields = {name: getattr(raw, name) for name in raw.__struct_fields__ if name != "output"}
    return Answer(**fields, output=output)


# ---------------------------------------------------------------- from a bill


def settle_input(
    bill: Bill,
    *,
    psn_no: str,
    mdtrt_id: str,
    insured: bool = True,
    hardship_tier: str | None = None,
    categories: Sequence[Category] | None = None,
) -> SettleInput:
    """The settle input for a gateway bill. ``categories`` gives each line's category when the bill's own
    are not the ones it settles under (the item catalogue's); every line needs one. Raises ValueError for
    a national ID number as ``psn_no`` or a line without a category."""
    try:
        check_person_number(psn_no, "psn_no")
    except ProtocolError as error:
        raise ValueError(error.message) from None
    lines = []
    for index, item in enumerate(bill.items):
        category = categories[index] if categories is not None else item.category
        if category is None:
            raise ValueError(f"line {index} has no category: pass the one it settles under")
        lines.append(
            FeeDetail(
                feedetl_sn=str(index + 1),
                med_list_codg=item.code,
                med_list_name=item.name,
                chrgitm_lv=CHRGITM_LV[category],  # type: ignore[arg-type]  # "01" | "02" | "03"
                det_item_fee_sumamt=to_yuan(item.amount),
                cnt=item.quantity,
                pric=None if item.unit_price is None else to_yuan(item.unit_price),
            )
        )
    admitted = bill.details.admitted_on if bill.details is not None else None
    return SettleInput(
        data=SettleData(
            psn_no=psn_no,
            insutype=RESIDENT_BASIC if insured else "",
            med_type=MED_TYPE[bill.visit_type],  # type: ignore[arg-type]  # "11" | "21"
            mdtrt_id=mdtrt_id,
            medfee_sumamt=to_yuan(sum(item.amount for item in bill.items)),
            begndate=admitted or bill.service_date,
            enddate=bill.service_date,
            psn_idet_type=hardship_tier or "",
            clinic_level=bill.clinic_level,
            referral_flag="1" if bill.referral else "0",
        ),
        feedetail=tuple(lines),
    )


def visit_type_of(payload: SettleInput) -> VisitType:
    """Outpatient or inpatient, by the input's ``med_type``."""
    return "inpatient" if payload.data.med_type == MED_TYPE["inpatient"] else "outpatient"
