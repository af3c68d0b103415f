"""An insurer simulator: a real aiohttp server speaking the insurer's envelope (adapters/insurer/protocol.py),
paying its funds with the project's own engine, with faults to switch on and off.

What it pays: ``settlement.chain.settle`` on the policy in force, restricted to the insurer's steps
(``insurer_chain``): the funds given, else the steps a policy marks ``remote``, else basic insurance and,
where the chain has it, critical-illness insurance. The person is insured when ``insutype`` is given; the
hardship tier comes from ``psn_idet_type``. The insurer keeps its own counters per ``psn_no`` and year,
moved by settles and given back by cancels and reversals.

All state is in memory and lives as long as the process: it is a test double and a demo, not a ledger.

Answers carry ``inf_refmsgid`` the national way by default (``answer_id="platform"``): a receipt id of the
simulator's own, its ``area_code`` (6) + yyyyMMddHHmmss + a 10-digit serial counting up from 1.
``answer_id="echo"`` (``medsettle insurer-sim --answer-id echo``) echoes the request's ``msgid`` there instead,
as some platforms do.
Messages are handled one at a time between awaits, so a settle's check-compute-commit is atomic.

Rules the simulator keeps, as a careful insurer would:
* a committing message id is taken once: a repeat is refused (``DUPLICATE_MSGID``), and so is a settle
  whose id was reversed (2601) before it arrived, so a late message can never undo a reversal;
* a visit (``mdtrt_id``) has at most one settlement in force (``VISIT_ALREADY_SETTLED``);
* cancel and reversal are idempotent: undoing twice is a success that says nothing was left to undo;
* every call but 9001 needs a ``sign_no`` it issued (``SIGN_NO_EXPIRED`` otherwise;
  ``POST /sim/expire-sign-ins`` forgets them all).
* a reconciliation day is the China date the insurer committed a settlement; a settlement counts in 3201
  while it stands, and 3202 lists it whatever became of it.

Faults (``Faults``), set at start, by ``POST /sim/faults`` (the whole set: what the body leaves out is
off) and read by ``GET /sim/faults``. Each is on for every call (``true``, or a number for the delays), or
for the next ``calls`` calls and/or one ``infno`` only (``{"calls": 1, "infno": "2207"}``, with ``ms`` for
a delay). Order within a call: ``delay_ms``; ``drop_before_commit`` (read the request, close the
connection, do nothing); commit; ``delay_after_commit_ms``; ``drop_after_commit`` (close without
answering); ``duplicate_answer`` (answer with a copy of the previous answer, another message's: a client
tells it by what its output names, and under ``answer_id="echo"`` by its ``inf_refmsgid`` too). ``down``
stops listening on the insurer's port (connections refused; open ones closed once idle) until set off, or
for ``{"seconds": N}``. The ``/sim`` routes are served on the insurer's port and on a control port that
stays up while the insurer is down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from adapters.insurer import protocol
from adapters.insurer.protocol import (
    Answer,
    CancelInfo,
    CancelInput,
    CancelOutput,
    DetailInput,
    DetailOutput,
    DetailRow,
    ProtocolError,
    Request,
    ReversalInfo,
    ReversalInput,
    ReversalOutput,
    SetlDetail,
    SetlInfo,
    SettleInput,
    SettleOutput,
    SignInInfo,
    SignInOutput,
    StmtInfo,
    TotalsInput,
    TotalsOutput,
    to_fen,
    to_yuan,
)
from settlement.chain import NAMED_FUNDS, Chain, settle
from settlement.errors import SettlementError
from settlement.models import Bill, LineItem, PersonStatus, VisitType
from settlement.policy_book import PolicyBook

DEFAULT_FUNDS: Final = ("insurance", "critical_illness")
BASIC_INSURANCE: Final = "390100"  # hifp_pay
CRITICAL_ILLNESS: Final = "390200"  # hifmi_pay

# ---------------------------------------------------------------- the insurer's chain


def default_funds(chain: Chain) -> tuple[str, ...]:
    """The funds the insurer pays in ``chain``: the steps marked ``remote`` when the policy marks any, else
    basic insurance and critical-illness insurance, those of them the chain has."""
    remote = tuple(step.fund.code for step in chain.steps if getattr(step, "remote", False))
    return remote or tuple(step.fund.code for step in chain.steps if step.fund.code in DEFAULT_FUNDS)


def insurer_chain(chain: Chain, funds: Iterable[str] | None = None) -> Chain:
    """``chain`` with only the insurer's steps (``funds``, default ``default_funds``), in their order, the
    counters they use, and ``named_steps`` recomputed for the steps kept."""
    codes = set(default_funds(chain) if funds is None else funds)
    kept = tuple(step for step in chain.steps if step.fund.code in codes)
    used: set[str] = set()
    for step in kept:
        if step.ytd_counter is not None:
            used.add(step.ytd_counter)
        for rule in step.rules:
            used.add(rule.paid_counter)
            if rule.deductible_counter is not None:
                used.add(rule.deductible_counter)
    positions = [step.fund.code for step in kept]
    return msgspec.structs.replace(
        chain,
        steps=kept,
        named_steps=tuple(positions.index(code) if code in positions else None for code in NAMED_FUNDS),
        counters=tuple(name for name in chain.counters if name in used),
    )


# ---------------------------------------------------------------- faults

Milliseconds = Annotated[int, msgspec.Meta(ge=0, le=600_000)]


class FaultScope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a fault applies: the next ``calls`` calls (None: every call until changed), of transaction
    ``infno`` only (None: any)."""

    calls: Annotated[int, msgspec.Meta(ge=1)] | None = None
    infno: protocol.Infno | None = None


class Delay(FaultScope, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ms: Milliseconds


class Down(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None  # None: until set off


class Faults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The faults switched on. ``GET /sim/faults`` shows what is left of each (``calls`` counts down; a
    fault whose calls are used up is off)."""

    delay_ms: Milliseconds | Delay = 0
    delay_after_commit_ms: Milliseconds | Delay = 0
    drop_before_commit: bool | FaultScope = False
    drop_after_commit: bool | FaultScope = False
    duplicate_answer: bool | FaultScope = False
    down: bool | Down = False


@dataclass(frozen=True)
class _Fired:
    """The faults that fire on one call."""

    delay_ms: int = 0
    delay_after_commit_ms: int = 0
    drop_before_commit: bool = False
    drop_after_commit: bool = False
    duplicate_answer: bool = False


def _take(fault: int | bool | FaultScope, infno: str) -> tuple[int | bool, int | bool | FaultScope]:
    """Whether ``fault`` fires on a call of ``infno`` (for a delay: how long), and the fault left after."""
    if not isinstance(fault, FaultScope):
        return fault, fault
    off: int | bool = 0 if isinstance(fault, Delay) else False
    if fault.infno is not None and fault.infno != infno:
        return off, fault
    fired = fault.ms if isinstance(fault, Delay) else True
    if fault.calls is None:
        return fired, fault
    return fired, (msgspec.structs.replace(fault, calls=fault.calls - 1) if fault.calls > 1 else off)


def take_faults(faults: Faults, infno: str) -> tuple[_Fired, Faults]:
    """The faults that fire on one call of ``infno``, and the faults left for later calls."""
    fired: dict[str, int | bool] = {}
    left: dict[str, object] = {}
    for name in _Fired.__dataclass_fields__:
        fired[name], left[name] = _take(getattr(faults, name), infno)
    return _Fired(**fired), msgspec.structs.replace(faults, **left)  # type: ignore[arg-type]


# ---------------------------------------------------------------- what the simulator holds


class Refusal(Exception):
    """A call the insurer refuses: answered with ``infcode`` and ``message``; nothing done."""

    def __init__(self, infcode: int, message: str) -> None:
        super().__init__(message)
        self.infcode = infcode
        self.message = message


@dataclass
class SettlementRecord:
    """One settlement the insurer committed, and what became of it. Money in fen."""

    setl_id: str
    msgid: str
    infno: str
    psn_no: str
    mdtrt_id: str
    visit_type: VisitType
    year: int
    settled_at: dt.datetime
    total: int
    fund_paid: int
    paid_by_fund_type: dict[str, int]
    counter_deltas: dict[str, int]
    state: Literal["settled", "cancelled"] = "settled"
    cancel_msgid: str = ""
    cancel_infno: str = ""
    cancelled_at: dt.datetime | None = None


class SettlementView(msgspec.Struct, frozen=True, kw_only=True):
    """A settlement as ``GET /sim/state`` shows it (fen)."""

    setl_id: str
    msgid: str
    infno: str
    psn_no: str
    mdtrt_id: str
    state: Literal["settled", "cancelled"]
    settled_at: str
    total: int
    fund_paid: int
    paid_by_fund_type: dict[str, int]
    cancel_msgid: str
    cancel_infno: str


class SimulatorState(msgspec.Struct, frozen=True, kw_only=True):
    """What the insurer holds: its settlements, its counters by ``psn_no`` then year, the messages it has
    handled by transaction, and the ids reversed before they arrived."""

    settlements: tuple[SettlementView, ...]
    counters: dict[str, dict[str, dict[str, int]]]
    calls: dict[str, int]
    reversed_before_arrival: tuple[str, ...]


class _MessageIdOnly(msgspec.Struct):
    msgid: str = ""
    infno: str = ""


@dataclass
class InsurerSimulator:
    """The insurer's core, without the network: ``handle`` takes a request's bytes and gives the answer's.

    ``funds``: the fund codes it pays (None: ``default_funds`` of each policy version).
    ``institution_code``: the one institution it serves (None: any well-formed code).
    ``answer_id``: what its answers' ``inf_refmsgid`` holds (the module docstring); ``area_code``: the
    platform's own area code, the first part of its receipt ids."""

    book: PolicyBook
    funds: Sequence[str] | None = None
    institution_code: str | None = None
    answer_id: protocol.AnswerId = "platform"
    area_code: str = "330000"
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(protocol.CHINA_TIME))
    _chains: dict[str, Chain] = field(default_factory=dict, init=False)
    _sign_nos: dict[str, str] = field(default_factory=dict, init=False)
    _settlements: dict[str, SettlementRecord] = field(default_factory=dict, init=False)
    _by_msgid: dict[str, SettlementRecord] = field(default_factory=dict, init=False)
    _standing_visits: dict[str, str] = field(default_factory=dict, init=False)
    _reversed_unseen: dict[str, str] = field(default_factory=dict, init=False)
    _counters: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict, init=False)
    _calls: dict[str, int] = field(default_factory=dict, init=False)
    _issued: int = field(default=0, init=False)
    _receipts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.answer_id not in protocol.ANSWER_IDS:
            raise ValueError(f"answer_id is one of {', '.join(protocol.ANSWER_IDS)}")
        protocol.receipt_id(self.area_code, dt.datetime(2026, 1, 1), 0)  # validates the area code
        for chain in self.book:
            restricted = insurer_chain(chain, self.funds)
            types = [step.fund.fund_type for step in restricted.steps]
            for step in restricted.steps:
                if step.fund.fund_type is None:
                    raise ValueError(f"{chain.id}: fund {step.fund.code} has no national fund type to answer with")
            if len(set(types)) != len(types):
                raise ValueError(f"{chain.id}: two of the insurer's funds share a national fund type")
            self._chains[chain.id] = restricted
        if self.funds is not None:
            known = {step.fund.code for chain in self.book for step in chain.steps}
            unknown = sorted(set(self.funds) - known)
            if unknown:
                raise ValueError(f"no policy version has the funds {', '.join(unknown)}")

    # ------------------------------------------------------------ one message

    def handle(self, body: bytes) -> bytes:
        """The answer to one request (always an envelope, refusals included)."""
        now = self.clock()
        try:
            request = protocol.decode_request(body)
        except ProtocolError as error:
            return self._answer(self._msgid_of(body), now, infcode=protocol.REFUSED, message=str(error))
        self._calls[request.infno] = self._calls.get(request.infno, 0) + 1
        try:
            self._check_sender(request)
            output = self._dispatch(request, now)
        except Refusal as refusal:
            return self._answer(request.msgid, now, infcode=refusal.infcode, message=refusal.message)
        return self._answer(request.msgid, now, output=output)

    def stale_answer(self) -> bytes:
        """An answer to a message that was never sent: what a duplicated answer looks like with no previous."""
        return self._answer("0" * 30, self.clock(), output=None)

    def expire_sign_ins(self) -> None:
        """Forget every sign_no: the next call of each sender is answered SIGN_NO_EXPIRED."""
        self._sign_nos.clear()

    def _answer(
        self, msgid: str, now: dt.datetime, *, infcode: int = protocol.SUCCESS, message: str = "", output: object = None
    ) -> bytes:
        stamp = protocol.refmsg_time(now)
        if self.answer_id == "echo":
            reference = msgid
        else:
            self._receipts += 1
            reference = protocol.receipt_id(self.area_code, now, self._receipts % 10**10)
        answer = Answer(
            infcode=infcode,
            inf_refmsgid=reference,
            refmsg_time=stamp,
            respond_time=stamp,
            err_msg=message or ("成功" if infcode == protocol.SUCCESS else ""),
            output=output,
        )
        return protocol.encode(answer)

    @staticmethod
    def _msgid_of(body: bytes) -> str:
        try:
            return msgspec.json.decode(body, type=_MessageIdOnly).msgid
        except msgspec.MsgspecError:
            return ""

    def _check_sender(self, request: Request) -> None:
        if self.institution_code is not None and request.fixmedins_code != self.institution_code:
            raise Refusal(protocol.REFUSED, f"institution {request.fixmedins_code} is not served here")
        if request.infno != protocol.SIGN_IN and self._sign_nos.get(request.sign_no) != request.fixmedins_code:
            raise Refusal(protocol.SIGN_NO_EXPIRED, "sign_no unknown or expired: sign in (9001) again")

    # ------------------------------------------------------------ transactions

    def _dispatch(self, request: Request, now: dt.datetime) -> msgspec.Struct:
        match request.infno:
            case "9001":
                return self._sign_in(request, now)
            case "2206" | "2303":
                return self._settle(request, now, commit=False)
            case "2207" | "2304":
                return self._settle(request, now, commit=True)
            case "2208" | "2305":
                return self._cancel(request, now)
            case "2601":
                return self._reverse(request, now)
            case "3201":
                return self._totals(request)
            case "3202":
                return self._detail(request)
        raise Refusal(protocol.REFUSED, f"unknown transaction {request.infno}")  # decode_request refuses it first

    def _sign_in(self, request: Request, now: dt.datetime) -> SignInOutput:
        self._issued += 1
        sign_no = f"{request.fixmedins_code}{self._issued:08d}"
        self._sign_nos[sign_no] = request.fixmedins_code
        return SignInOutput(signinoutb=SignInInfo(sign_time=protocol.inf_time(now), sign_no=sign_no))

    def _settle(self, request: Request, now: dt.datetime, *, commit: bool) -> SettleOutput:
        payload: SettleInput = request.input
        data = payload.data
        visit_type = protocol.VISIT_TYPE_OF[request.infno]
        if data.med_type != protocol.MED_TYPE[visit_type]:
            raise Refusal(protocol.REFUSED, f"med_type {data.med_type} does not go with transaction {request.infno}")
        if data.enddate < data.begndate:
            raise Refusal(protocol.REFUSED, "enddate is before begndate")
        if commit:
            self._check_new(request.msgid, data.mdtrt_id)
        bill = self._bill(payload, visit_type)
        try:
            chain = self._chains[self.book.in_force(bill.service_date).id]
            status = PersonStatus(insured=data.insutype != "", hardship_tier=data.psn_idet_type or None)
            key = (data.psn_no, bill.service_date.year)
            result = settle(bill, status, self._counters.get(key, {}), chain)
        except SettlementError as error:
            where = f" (at {error.field})" if error.field else ""
            raise Refusal(protocol.REFUSED, f"{error.detail}{where}") from None
        paid = {step.fund.fund_type or "": trace.paid for step, trace in zip(chain.steps, result.traces, strict=True)}
        fund_paid = sum(paid.values())
        setl_id = ""
        if commit:
            self._issued += 1
            setl_id = f"S{now:%Y%m%d}{self._issued:010d}"
            record = SettlementRecord(
                setl_id=setl_id,
                msgid=request.msgid,
                infno=request.infno,
                psn_no=data.psn_no,
                mdtrt_id=data.mdtrt_id,
                visit_type=visit_type,
                year=bill.service_date.year,
                settled_at=protocol.china_time(now),
                total=result.total,
                fund_paid=fund_paid,
                paid_by_fund_type=paid,
                counter_deltas=result.counter_deltas(),
            )
            self._settlements[setl_id] = self._by_msgid[request.msgid] = record
            self._standing_visits[data.mdtrt_id] = setl_id
            self._counters[key] = dict(result.counters_after)
        return SettleOutput(
            setlinfo=SetlInfo(
                setl_id=setl_id,
                mdtrt_id=data.mdtrt_id,
                psn_no=data.psn_no,
                medfee_sumamt=to_yuan(result.total),
                fulamt_ownpay_amt=to_yuan(result.not_covered),
                overlmt_selfpay=to_yuan(result.over_limit),
                preselfpay_amt=to_yuan(result.self_pay_first),
                inscp_scp_amt=to_yuan(result.eligible),
                hifp_pay=to_yuan(paid.get(BASIC_INSURANCE, 0)),
                hifmi_pay=to_yuan(paid.get(CRITICAL_ILLNESS, 0)),
                fund_pay_sumamt=to_yuan(fund_paid),
                psn_cash_pay=to_yuan(result.total - fund_paid),
                setl_time=protocol.inf_time(now),
            ),
            setldetail=_fund_parts(paid),
        )

    def _check_new(self, msgid: str, mdtrt_id: str) -> None:
        if msgid in self._by_msgid:
            raise Refusal(protocol.DUPLICATE_MSGID, "this msgid was taken already")
        if msgid in self._reversed_unseen:
            raise Refusal(protocol.DUPLICATE_MSGID, "this msgid was reversed before it arrived")
        standing = self._standing_visits.get(mdtrt_id)
        if standing is not None:
            raise Refusal(protocol.VISIT_ALREADY_SETTLED, f"visit {mdtrt_id} is settled ({standing}); cancel it first")

    @staticmethod
    def _bill(payload: SettleInput, visit_type: VisitType) -> Bill:
        data = payload.data
        items = tuple(
            LineItem(
                code=line.med_list_codg,
                name=line.med_list_name,
                category=protocol.CATEGORY_OF[line.chrgitm_lv],
                amount=to_fen(line.det_item_fee_sumamt),
                quantity=line.cnt,
                unit_price=None if line.pric is None else to_fen(line.pric),
            )
            for line in payload.feedetail
        )
        if sum(item.amount for item in items) != to_fen(data.medfee_sumamt):
            raise Refusal(protocol.REFUSED, "medfee_sumamt is not the sum of the feedetail lines")
        return Bill(
            clinic_level=data.clinic_level,
            visit_type=visit_type,
            service_date=data.enddate,
            items=items,
            referral=data.referral_flag == "1",
        )

    def _cancel(self, request: Request, now: dt.datetime) -> CancelOutput:
        assert isinstance(request.input, CancelInput)
        data = request.input.data
        record = self._settlements.get(data.setl_id)
        if record is None or record.mdtrt_id != data.mdtrt_id or record.psn_no != data.psn_no:
            raise Refusal(protocol.REFUSED, f"no settlement {data.setl_id} for this visit and person")
        if protocol.CANCEL_INFNO[record.visit_type] != request.infno:
            raise Refusal(
                protocol.REFUSED, f"settlement {data.setl_id} is {record.visit_type}: cancel it by its own code"
            )
        already = record.state == "cancelled"
        if not already:
            self._undo(record, request, now)
        return CancelOutput(
            setlinfo=CancelInfo(
                setl_id=record.setl_id,
                mdtrt_id=record.mdtrt_id,
                psn_no=record.psn_no,
                medfee_sumamt=to_yuan(record.total),
                fund_pay_sumamt=to_yuan(record.fund_paid),
                already_cancelled="1" if already else "0",
            )
        )

    def _reverse(self, request: Request, now: dt.datetime) -> ReversalOutput:
        assert isinstance(request.input, ReversalInput)
        data = request.input.data
        if not data.omsgid.startswith(request.fixmedins_code):
            raise Refusal(protocol.REFUSED, "a sender reverses only its own messages")
        if data.oinfno not in protocol.SETTLE_INFNO.values() and data.oinfno not in protocol.PRE_SETTLE_INFNO.values():
            raise Refusal(
                protocol.REFUSED, f"{data.oinfno} is not reversed here: send a cancel again (it is idempotent)"
            )
        found = False
        record = self._by_msgid.get(data.omsgid)
        if record is not None:
            if record.infno != data.oinfno or record.psn_no != data.psn_no:
                raise Refusal(protocol.REFUSED, f"message {data.omsgid} was not a {data.oinfno} for this person")
            if record.state == "settled":
                self._undo(record, request, now)
                found = True
        elif data.oinfno in protocol.SETTLE_INFNO.values():
            # Not seen (yet): remember, so the message is refused if it arrives after its reversal.
            self._reversed_unseen.setdefault(data.omsgid, request.msgid)
        return ReversalOutput(data=ReversalInfo(omsgid=data.omsgid, oinfno=data.oinfno, found="1" if found else "0"))

    def _undo(self, record: SettlementRecord, request: Request, now: dt.datetime) -> None:
        """Give back what the settlement took from the person-year's counters; mark it cancelled."""
        counters = self._counters.setdefault((record.psn_no, record.year), {})
        for name, delta in record.counter_deltas.items():
            counters[name] = counters.get(name, 0) - delta
        record.state = "cancelled"
        record.cancel_msgid = request.msgid
        record.cancel_infno = request.infno
        record.cancelled_at = protocol.china_time(now)
        if self._standing_visits.get(record.mdtrt_id) == record.setl_id:
            del self._standing_visits[record.mdtrt_id]

    def _committed_between(self, first: dt.date, last: dt.date) -> list[SettlementRecord]:
        if last < first:
            raise Refusal(protocol.REFUSED, "stmt_enddate is before stmt_begndate")
        return [record for record in self._settlements.values() if first <= record.settled_at.date() <= last]

    def _totals(self, request: Request) -> TotalsOutput:
        assert isinstance(request.input, TotalsInput)
        data = request.input.data
        standing = [r for r in self._committed_between(data.stmt_begndate, data.stmt_enddate) if r.state == "settled"]
        by_type: dict[str, int] = {}
        for record in standing:
            for kind, amount in record.paid_by_fund_type.items():
                by_type[kind] = by_type.get(kind, 0) + amount
        ours = (len(standing), sum(r.total for r in standing), sum(r.fund_paid for r in standing))
        theirs = (data.fixmedins_setl_cnt, to_fen(data.medfee_sumamt), to_fen(data.fund_pay_sumamt))
        their_types = {part.fund_pay_type: to_fen(part.fund_payamt) for part in data.setldetail}
        differences = [
            f"{name}: ours {mine}, yours {yours}"
            for name, mine, yours in zip(("count", "medfee_sumamt", "fund_pay_sumamt"), ours, theirs, strict=True)
            if mine != yours
        ]
        differences += [
            f"{kind}: ours {by_type.get(kind, 0)}, yours {their_types.get(kind, 0)}"
            for kind in sorted(set(by_type) | set(their_types))
            if by_type.get(kind, 0) != their_types.get(kind, 0)
        ]
        return TotalsOutput(
            stmtinfo=StmtInfo(
                stmt_rslt="1" if differences else "0",
                stmt_rslt_dscr="; ".join(differences) + " (fen)" if differences else "balanced",
                fixmedins_setl_cnt=ours[0],
                medfee_sumamt=to_yuan(ours[1]),
                fund_pay_sumamt=to_yuan(ours[2]),
                setldetail=_fund_parts(by_type),
            )
        )

    def _detail(self, request: Request) -> DetailOutput:
        assert isinstance(request.input, DetailInput)
        data = request.input.data
        records = self._committed_between(data.stmt_begndate, data.stmt_enddate)
        return DetailOutput(
            detail=tuple(
                DetailRow(
                    msgid=record.msgid,
                    infno=record.infno,
                    setl_id=record.setl_id,
                    mdtrt_id=record.mdtrt_id,
                    psn_no=record.psn_no,
                    setl_time=protocol.inf_time(record.settled_at),
                    state=record.state,
                    medfee_sumamt=to_yuan(record.total),
                    fund_pay_sumamt=to_yuan(record.fund_paid),
                    setldetail=_fund_parts(record.paid_by_fund_type),
                    cncl_msgid=record.cancel_msgid,
                    cncl_infno=record.cancel_infno,
                    cncl_time="" if record.cancelled_at is None else protocol.inf_time(record.cancelled_at),
                )
                for record in records
            )
        )

    # ------------------------------------------------------------ for tests

    def state(self) -> SimulatorState:
        counters: dict[str, dict[str, dict[str, int]]] = {}
        for (psn_no, year), values in self._counters.items():
            counters.setdefault(psn_no, {})[str(year)] = dict(values)
        return SimulatorState(
            settlements=tuple(
                SettlementView(
                    setl_id=record.setl_id,
                    msgid=record.msgid,
                    infno=record.infno,
                    psn_no=record.psn_no,
                    mdtrt_id=record.mdtrt_id,
                    state=record.state,
                    settled_at=protocol.inf_time(record.settled_at),
                    total=record.total,
                    fund_paid=record.fund_paid,
                    paid_by_fund_type=dict(record.paid_by_fund_type),
                    cancel_msgid=record.cancel_msgid,
                    cancel_infno=record.cancel_infno,
                )
                for record in self._settlements.values()
            ),
            counters=counters,
            calls=dict(self._calls),
            reversed_before_arrival=tuple(self._reversed_unseen),
        )


def _fund_parts(paid: dict[str, int]) -> tuple[SetlDetail, ...]:
    return tuple(SetlDetail(fund_pay_type=kind, fund_payamt=to_yuan(amount)) for kind, amount in paid.items())


# ---------------------------------------------------------------- the server

_FAULTS_DECODER: Final = msgspec.json.Decoder(Faults)
_JSON: Final = msgspec.json.Encoder()


class SimulatorServer:
    """The simulator over HTTP: the insurer's endpoint (and the ``/sim`` routes) at ``url``, the ``/sim``
    routes alone at ``control_url``. ``start`` binds both (port 0: a free port); ``close`` stops them."""

    def __init__(
        self,
        simulator: InsurerSimulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = 0,
        faults: Faults | None = None,
    ) -> None:
        self.simulator = simulator
        self.host = host
        self._port = port
        self._control_port = control_port
        self._faults = faults or Faults()
        self._previous_answer: bytes | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._control_runner: web.AppRunner | None = None
        self._up_again: asyncio.Task[None] | None = None
        self._busy: set[object] = set()  # connections of the insurer's port with a request in flight

    @property
    def url(self) -> str:
        """The insurer's base URL (the client posts to ``url + protocol.ENDPOINT``)."""
        return f"http://{self.host}:{self._port}"

    @property
    def control_url(self) -> str | None:
        return None if self._control_port is None else f"http://{self.host}:{self._control_port}"

    @property
    def faults(self) -> Faults:
        return self._faults

    async def start(self) -> SimulatorServer:
        insurer = web.Application(middlewares=[self._track_busy])
        insurer.router.add_post(protocol.ENDPOINT, self._call_service)
        self._add_control_routes(insurer)
        self._runner = web.AppRunner(insurer, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self._port)
        await self._site.start()
        self._port = self._bound_port(self._runner)
        if self._control_port is not None:
            control = web.Application()
            self._add_control_routes(control)
            self._control_runner = web.AppRunner(control, access_log=None)
            await self._control_runner.setup()
            await web.TCPSite(self._control_runner, self.host, self._control_port).start()
            self._control_port = self._bound_port(self._control_runner)
        await self.set_faults(self._faults)
        return self

    async def close(self) -> None:
        if self._up_again is not None:
            self._up_again.cancel()
        for runner in (self._runner, self._control_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._control_runner = self._site = None

    async def __aenter__(self) -> SimulatorServer:
        return self if self._runner is not None else await self.start()  # start_simulator's server is started

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def set_faults(self, faults: Faults) -> None:
        """Switch to ``faults`` (the whole set), going down or coming back up as ``down`` says."""
        self._faults = faults
        if self._up_again is not None:
            self._up_again.cancel()
            self._up_again = None
        if faults.down is False:
            await self._listen()
            return
        await self._stop_listening()
        if isinstance(faults.down, Down) and faults.down.seconds is not None:
            self._up_again = asyncio.create_task(self._back_up_after(faults.down.seconds))

    async def _back_up_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._up_again = None
        await self.set_faults(msgspec.structs.replace(self._faults, down=False))

    async def _listen(self) -> None:
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, self.host, self._port)
            await self._site.start()

    async def _stop_listening(self) -> None:
        site, self._site = self._site, None
        if site is None or self._runner is None:
            return
        await site.stop()
        server = self._runner.server
        for connection in server.connections if server is not None else ():
            if connection in self._busy:
                connection.close()  # once its request in flight is answered
            else:
                connection.force_close()  # an idle keep-alive connection: close() would leave it open
        # A moment for clients to see their idle connections closed. One that sends on such a connection
        # at this instant sees a reset (an unknown outcome), as it would with a real insurer going down.
        await asyncio.sleep(0.05)

    @staticmethod
    def _bound_port(runner: web.AppRunner) -> int:
        return int(runner.addresses[0][1])

    # ------------------------------------------------------------ handlers

    @web.middleware
    async def _track_busy(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._busy.add(request.protocol)
        try:
            return await handler(request)
        finally:
            self._busy.discard(request.protocol)

    async def _call_service(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            infno = msgspec.json.decode(body, type=_MessageIdOnly).infno
        except msgspec.MsgspecError:
            infno = ""
        fired, self._faults = take_faults(self._faults, infno)
        if fired.delay_ms:
            await asyncio.sleep(fired.delay_ms / 1000)
        if fired.drop_before_commit:
            return self._drop(request)
        answer = self.simulator.handle(body)
        if fired.delay_after_commit_ms:
            await asyncio.sleep(fired.delay_after_commit_ms / 1000)
        if fired.drop_after_commit:
            return self._drop(request)
        reply = answer
        if fired.duplicate_answer:
            reply = self._previous_answer or self.simulator.stale_answer()
        self._previous_answer = answer
        return web.Response(body=reply, content_type="application/json")

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the connection without a word: the client sees a reset after it sent its request."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response()  # never reaches the client

    def _add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/sim/faults", self._get_faults)
        app.router.add_post("/sim/faults", self._post_faults)
        app.router.add_get("/sim/state", self._get_state)
        app.router.add_post("/sim/expire-sign-ins", self._expire_sign_ins)

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.Response(body=_JSON.encode(self._faults), content_type="application/json")

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            faults = _FAULTS_DECODER.decode(await request.read())
        except msgspec.MsgspecError as error:
            detail, path = (
                protocol.error_and_path(error) if isinstance(error, msgspec.ValidationError) else (str(error), "$")
            )
            problem = {
                "type": "about:blank",
                "title": "Invalid faults",
                "status": 422,
                "code": "invalid_faults",
                "detail": detail,
                "field": path,
            }
            return web.Response(status=422, body=_JSON.encode(problem), content_type="application/problem+json")
        await self.set_faults(faults)
        return await self._get_faults(request)

    async def _get_state(self, request: web.Request) -> web.Response:
        return web.Response(body=_JSON.encode(self.simulator.state()), content_type="application/json")

    async def _expire_sign_ins(self, request: web.Request) -> web.Response:
        self.simulator.expire_sign_ins()
        return web.Response(status=204)


async def start_simulator(
    book: PolicyBook,
    *,
    funds: Sequence[str] | None = None,
    faults: Faults | None = None,
    institution_code: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    control_port: int | None = 0,
    clock: Callable[[], dt.datetime] | None = None,
    answer_id: protocol.AnswerId = "platform",
) -> SimulatorServer:
    """A started simulator paying ``funds`` under ``book``: ``server.url`` is the insurer's base URL. Close it
    with ``await server.close()`` (or use it as ``async with``). ``answer_id``: ``InsurerSimulator``'s."""
    simulator = InsurerSimulator(book, funds=funds, institution_code=institution_code, answer_id=answer_id)
    if clock is not None:
        simulator.clock = clock
    return await SimulatorServer(simulator, host=host, port=port, control_port=control_port, faults=faults).start()
