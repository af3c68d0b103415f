"""A client for the insurer's core (the provincial platform), over one aiohttp session.

Every call says exactly what is known of its outcome:

* it returns a typed result: the insurer did it (or, for a read, answered);
* ``InsurerRefused``: the insurer answered no; nothing was done there;
* ``InsurerUnreachable``: the message certainly never arrived (connection refused, DNS, connect timeout,
  or a sign-in needed first that failed): nothing can have been done;
* ``OutcomeUnknown``: the message was sent and we cannot tell what happened (a read timeout, a reset after
  sending, an answer that is malformed, inconsistent, or not the answer to our message, an HTTP error
  without an envelope). The caller reverses the message by its id (2601) before it answers anyone.

An answer is ours when its output names what we sent: a settle's or pre-settle's visit (``mdtrt_id``),
person (``psn_no``) and total, a cancel's settlement, visit and person, a reversal's message and its
transaction. That holds whatever ``InsurerConfig.answer_id`` says of ``inf_refmsgid``; under ``"echo"`` the
answer must also name our ``msgid`` there. Under ``"platform"`` (the national interface) it is the
platform's receipt id, given back as the result's ``receipt_id``. (A refusal names nothing to match: under
``"platform"`` a stale refusal for another message would pass for ours.)

The caller picks every message id and records the attempt before it calls (``MessageIds`` makes them), so
an unknown outcome can always be reversed. The client signs in (9001) on first use and again when the
insurer answers ``SIGN_NO_EXPIRED``, then resends the same message with the same id: the refused attempt
did nothing, so the id still names at most one outcome, the one the caller recorded. Sign-in messages
take ids from ``sign_in_ids``, an async source: the gateway gives its database sequence, unique across
processes. Without one (the command line, benchmarks) the client uses sequences 9000-9999 of each second
of its own, which two processes signing in within the same second could both use.

``on_call(infno, outcome, seconds)`` hears of every exchange, sign-ins too: ``outcome`` is ``ok``,
``refused``, ``unreachable`` or ``unknown``, bounded labels for metrics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, Literal

import aiohttp
import msgspec

from adapters.insurer import protocol
from adapters.insurer.protocol import (
    Answer,
    CancelData,
    CancelInput,
    DetailData,
    DetailInput,
    DetailOutput,
    FundTotal,
    ProtocolError,
    Request,
    ReversalData,
    ReversalInput,
    ReversalOutput,
    SettleInput,
    SettleOutput,
    SignInData,
    SignInInput,
    SignInOutput,
    TotalsData,
    TotalsInput,
    to_fen,
    to_yuan,
)
from settlement.models import VisitType

Outcome = Literal["ok", "refused", "unreachable", "unknown"]
OnCall = Callable[[str, Outcome, float], None]


class InsurerError(Exception):
    """Any outcome of a call other than success."""


class InsurerRefused(InsurerError):
    """The insurer answered no (``infcode`` != 0, with its message): nothing was done there."""

    def __init__(self, infcode: int, message: str) -> None:
        super().__init__(f"insurer refused ({infcode}): {message}")
        self.infcode = infcode
        self.message = message


class InsurerUnreachable(InsurerError):
    """The message certainly did not reach the insurer: nothing can have been done."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"insurer unreachable: {reason}")
        self.reason = reason


class OutcomeUnknown(InsurerError):
    """The message was sent and what the insurer did is not known: reverse it by its msgid."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"outcome unknown: {reason}")
        self.reason = reason


class InsurerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach the insurer and who the gateway is to it. Timeouts in seconds: ``connect_timeout``
    bounds getting a connection (past it nothing was sent), ``total_timeout`` the whole exchange."""

    base_url: str
    institution_code: str  # fixmedins_code: 12 characters, [A-Z0-9]
    institution_name: str
    area_code: str  # mdtrtarea_admvs: where the care happens
    insured_area_code: str = ""  # insuplc_admdvs: the person's insurance area ("": area_code)
    operator: str = "medsettle"
    operator_name: str = "medsettle gateway"
    operator_type: str = "1"  # 1 经办人 (a person at a desk); 2 自助终端; 3 移动终端
    receiver_system_code: str = "FSI_LOCAL"  # recer_sys_code
    connect_timeout: float = 2.0
    total_timeout: float = 10.0
    answer_id: protocol.AnswerId = "platform"  # what inf_refmsgid holds (protocol.AnswerId)


class Buckets(msgspec.Struct, frozen=True, kw_only=True):
    """The bill's four parts as the insurer split them, in fen: 全自费 ``not_covered``, 超限价
    ``over_limit``, 先行自付 ``self_pay_first``, 政策范围内 ``eligible``; they add up to the total."""

    not_covered: int
    over_limit: int
    self_pay_first: int
    eligible: int


class SettleResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the insurer settled (or, for a pre-settle, would settle: ``insurer_settlement_id`` None), in
    fen. ``paid_by_fund_type`` maps each national fund type (390100...) to what it paid; their sum is
    ``fund_paid`` and ``fund_paid + psn_cash_pay == total``. ``receipt_id`` is the answer's
    ``inf_refmsgid`` (the platform's receipt, or our msgid echoed); ``raw_answer`` the answer as received."""

    msgid: str
    receipt_id: str
    insurer_settlement_id: str | None
    total: int
    paid_by_fund_type: dict[str, int]
    fund_paid: int
    psn_cash_pay: int
    buckets: Buckets
    settled_at: str
    raw_answer: bytes


class CancelResult(msgspec.Struct, frozen=True, kw_only=True):
    """``already``: the settlement had been undone before and nothing was given back now; else the insurer
    gave back ``fund_paid`` fen. ``receipt_id``: the answer's ``inf_refmsgid``."""

    msgid: str
    receipt_id: str
    insurer_settlement_id: str
    already: bool
    fund_paid: int
    raw_answer: bytes


class ReversalResult(msgspec.Struct, frozen=True, kw_only=True):
    """``found``: message ``omsgid`` had done something, now undone; False: nothing to undo (it never
    arrived, did nothing, or was undone before). ``receipt_id``: the answer's ``inf_refmsgid``."""

    msgid: str
    receipt_id: str
    omsgid: str
    found: bool
    raw_answer: bytes


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """Settlements in force over some days: how many, the bills' total and what each fund type paid (fen)."""

    count: int
    total: int
    fund_paid: int
    by_fund_type: dict[str, int]


class TotalsResult(msgspec.Struct, frozen=True, kw_only=True):
    balanced: bool
    description: str
    insurer: Totals
    raw_answer: bytes


class DetailRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One settlement the insurer committed in the period, in fen. ``state`` "cancelled" names the message
    that undid it (``cancel_msgid``, its ``cancel_infno`` 2208/2305/2601)."""

    msgid: str
    infno: str
    insurer_settlement_id: str
    mdtrt_id: str
    psn_no: str
    settled_at: str
    state: Literal["settled", "cancelled"]
    total: int
    fund_paid: int
    paid_by_fund_type: dict[str, int]
    cancel_msgid: str | None
    cancel_infno: str | None
    cancelled_at: str | None


SIGN_IN_SEQUENCES: Final = (9000, 9999)  # the fallback's sequences of each second, without sign_in_ids


class InsurerClient:
    """The insurer's transactions over ``session`` (owned by the caller). Methods raise ``InsurerRefused``,
    ``InsurerUnreachable`` or ``OutcomeUnknown`` as the module docstring says; a malformed ``msgid`` is a
    ValueError, and so is a national ID number as ``psn_no``: both raised before anything is sent."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: InsurerConfig,
        *,
        on_call: OnCall | None = None,
        sign_in_ids: Callable[[], Awaitable[str]] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not protocol.INSTITUTION_CODE.fullmatch(config.institution_code):
            raise ValueError("institution_code is 12 characters of A-Z and 0-9")
        self.config = config
        self._session = session
        self._url = config.base_url.rstrip("/") + protocol.ENDPOINT
        self._timeout = aiohttp.ClientTimeout(
            total=config.total_timeout, connect=config.connect_timeout, sock_connect=config.connect_timeout
        )
        self._on_call = on_call
        self._clock = clock or (lambda: dt.datetime.now(protocol.CHINA_TIME))
        if config.answer_id not in protocol.ANSWER_IDS:
            raise ValueError(f"answer_id is one of {', '.join(protocol.ANSWER_IDS)}")
        if sign_in_ids is None:
            first, last = SIGN_IN_SEQUENCES
            generator = protocol.MessageIds(config.institution_code, first=first, last=last)

            async def sign_in_ids() -> str:
                return generator.next(self._clock())

        self._sign_in_ids = sign_in_ids
        self._sign_no: str | None = None
        self._signing_in = asyncio.Lock()

    @property
    def sign_no(self) -> str | None:
        """The sign_no in use (None before the first sign-in)."""
        return self._sign_no

    # ------------------------------------------------------------ transactions

    async def sign_in(self) -> str:
        """Sign in (9001) now and return the new ``sign_no``. Calls sign in by themselves when needed."""
        async with self._signing_in:
            return await self._sign_in()

    async def settle(self, msgid: str, payload: SettleInput) -> SettleResult:
        """Settle a bill (2207 outpatient, 2304 inpatient, by ``payload.data.med_type``)."""
        infno = protocol.SETTLE_INFNO[protocol.visit_type_of(payload)]
        return self._settled(infno, msgid, payload, await self._call(infno, msgid, payload), pre=False)

    async def pre_settle(self, msgid: str, payload: SettleInput) -> SettleResult:
        """What the insurer would pay (2206/2303); nothing is recorded there."""
        infno = protocol.PRE_SETTLE_INFNO[protocol.visit_type_of(payload)]
        return self._settled(infno, msgid, payload, await self._call(infno, msgid, payload), pre=True)

    async def cancel(
        self, msgid: str, *, visit_type: VisitType, insurer_settlement_id: str, mdtrt_id: str, psn_no: str
    ) -> CancelResult:
        """Cancel a settlement (2208/2305). Idempotent: cancelling again answers ``already``."""
        infno = protocol.CANCEL_INFNO[visit_type]
        payload = CancelInput(data=CancelData(setl_id=insurer_settlement_id, mdtrt_id=mdtrt_id, psn_no=psn_no))
        answer, raw = await self._call(infno, msgid, payload)
        info = answer.output.setlinfo
        if info.setl_id != insurer_settlement_id:
            self._unknown(infno, "the cancel answer names another settlement")
        if info.mdtrt_id != mdtrt_id or info.psn_no != psn_no:
            self._unknown(infno, "the cancel answer names another visit or person")
        return CancelResult(
            msgid=msgid,
            receipt_id=answer.inf_refmsgid,
            insurer_settlement_id=info.setl_id,
            already=info.already_cancelled == "1",
            fund_paid=to_fen(info.fund_pay_sumamt),
            raw_answer=raw,
        )

    async def reverse(self, msgid: str, *, omsgid: str, oinfno: protocol.Infno, psn_no: str) -> ReversalResult:
        """Reverse message ``omsgid`` (2601): undo whatever it did. Idempotent: again answers found=False."""
        payload = ReversalInput(data=ReversalData(psn_no=psn_no, omsgid=omsgid, oinfno=oinfno))
        answer, raw = await self._call(protocol.REVERSAL, msgid, payload)
        output: ReversalOutput = answer.output
        if output.data.omsgid != omsgid or output.data.oinfno != oinfno:
            self._unknown(protocol.REVERSAL, "the reversal answer names another message")
        return ReversalResult(
            msgid=msgid,
            receipt_id=answer.inf_refmsgid,
            omsgid=omsgid,
            found=output.data.found == "1",
            raw_answer=raw,
        )

    async def totals(self, msgid: str, *, first_day: dt.date, last_day: dt.date, ours: Totals) -> TotalsResult:
        """Compare our totals over the days with the insurer's (3201)."""
        payload = TotalsInput(
            data=TotalsData(
                stmt_begndate=first_day,
                stmt_enddate=last_day,
                fixmedins_setl_cnt=ours.count,
                medfee_sumamt=to_yuan(ours.total),
                fund_pay_sumamt=to_yuan(ours.fund_paid),
                setldetail=tuple(
                    FundTotal(fund_pay_type=kind, fund_payamt=to_yuan(amount))
                    for kind, amount in sorted(ours.by_fund_type.items())
                ),
            )
        )
        answer, raw = await self._call(protocol.TOTALS, msgid, payload)
        info = answer.output.stmtinfo
        insurer = Totals(
            count=info.fixmedins_setl_cnt,
            total=to_fen(info.medfee_sumamt),
            fund_paid=to_fen(info.fund_pay_sumamt),
            by_fund_type=self._by_fund_type(protocol.TOTALS, info.setldetail),
        )
        return TotalsResult(
            balanced=info.stmt_rslt == "0", description=info.stmt_rslt_dscr, insurer=insurer, raw_answer=raw
        )

    async def detail(self, msgid: str, *, first_day: dt.date, last_day: dt.date) -> tuple[DetailRecord, ...]:
        """The insurer's settlements committed over the days, whatever became of them (3202, simplified)."""
        payload = DetailInput(data=DetailData(stmt_begndate=first_day, stmt_enddate=last_day))
        answer, _ = await self._call(protocol.DETAIL, msgid, payload)
        output: DetailOutput = answer.output
        return tuple(
            DetailRecord(
                msgid=row.msgid,
                infno=row.infno,
                insurer_settlement_id=row.setl_id,
                mdtrt_id=row.mdtrt_id,
                psn_no=row.psn_no,
                settled_at=row.setl_time,
                state=row.state,
                total=to_fen(row.medfee_sumamt),
                fund_paid=to_fen(row.fund_pay_sumamt),
                paid_by_fund_type=self._by_fund_type(protocol.DETAIL, row.setldetail),
                cancel_msgid=row.cncl_msgid or None,
                cancel_infno=row.cncl_infno or None,
                cancelled_at=row.cncl_time or None,
            )
            for row in output.detail
        )

    # ------------------------------------------------------------ checking a settle answer

    def _settled(
        self, infno: str, msgid: str, payload: SettleInput, exchanged: tuple[Answer, bytes], *, pre: bool
    ) -> SettleResult:
        """The settle answer as fen, after checking it conserves money and answers the bill we sent."""
        answer, raw = exchanged
        output: SettleOutput = answer.output
        info = output.setlinfo
        sent = payload.data
        if info.mdtrt_id != sent.mdtrt_id or info.psn_no != sent.psn_no:
            self._unknown(infno, "the answer names another visit or person")
        total = to_fen(info.medfee_sumamt)
        if total != to_fen(sent.medfee_sumamt):
            self._unknown(infno, "the answer's medfee_sumamt is not the bill's")
        paid = self._by_fund_type(infno, output.setldetail)
        fund_paid = to_fen(info.fund_pay_sumamt)
        cash = to_fen(info.psn_cash_pay)
        buckets = Buckets(
            not_covered=to_fen(info.fulamt_ownpay_amt),
            over_limit=to_fen(info.overlmt_selfpay),
            self_pay_first=to_fen(info.preselfpay_amt),
            eligible=to_fen(info.inscp_scp_amt),
        )
        if sum(paid.values()) != fund_paid or fund_paid + cash != total:
            self._unknown(infno, "the answer's fund parts, fund_pay_sumamt and psn_cash_pay do not add up")
        if sum(msgspec.structs.astuple(buckets)) != total:
            self._unknown(infno, "the answer's four buckets do not add up to medfee_sumamt")
        if fund_paid > buckets.eligible:
            self._unknown(infno, "the funds paid more than the eligible amount")
        if not pre and not info.setl_id:
            self._unknown(infno, "a settle answer without a setl_id")
        return SettleResult(
            msgid=msgid,
            receipt_id=answer.inf_refmsgid,
            insurer_settlement_id=None if pre else info.setl_id,
            total=total,
            paid_by_fund_type=paid,
            fund_paid=fund_paid,
            psn_cash_pay=cash,
            buckets=buckets,
            settled_at=info.setl_time,
            raw_answer=raw,
        )

    def _by_fund_type(self, infno: str, parts: tuple[protocol.SetlDetail, ...]) -> dict[str, int]:
        paid: dict[str, int] = {}
        for part in parts:
            if part.fund_pay_type in paid:
                self._unknown(infno, f"fund type {part.fund_pay_type} appears twice")
            paid[part.fund_pay_type] = to_fen(part.fund_payamt)
        return paid

    def _unknown(self, infno: str, reason: str) -> None:
        raise OutcomeUnknown(f"{infno}: {reason}")

    # ------------------------------------------------------------ the exchange

    async def _call(self, infno: str, msgid: str, payload: msgspec.Struct) -> tuple[Answer, bytes]:
        """Send one message, signing in first if needed and once more if the sign_no has expired. Returns a
        successful answer; raises for every other outcome."""
        if not protocol.is_message_id(msgid) or not msgid.startswith(self.config.institution_code):
            raise ValueError("msgid must be our institution code + yyyyMMddHHmmss + 4 digits (protocol.message_id)")
        person = getattr(getattr(payload, "data", None), "psn_no", None)
        if person is not None:
            try:
                protocol.check_person_number(person, "psn_no")
            except ProtocolError as error:
                raise ValueError(error.message) from None  # never sent, and never repeated in the message
        sign_no = await self._current_sign_no()
        answer, raw = await self._exchange(infno, msgid, payload, sign_no)
        if answer.infcode == protocol.SIGN_NO_EXPIRED:
            sign_no = await self._renew_sign_no(sign_no)
            answer, raw = await self._exchange(infno, msgid, payload, sign_no)
        self._raise_unless_success(answer)
        return answer, raw

    @staticmethod
    def _raise_unless_success(answer: Answer) -> None:
        if answer.infcode == protocol.DUPLICATE_MSGID:
            # Nothing was done now, but an earlier message with this id may have done something.
            raise OutcomeUnknown(f"the insurer already holds this msgid: {answer.err_msg or ''}")
        if answer.infcode != protocol.SUCCESS:
            raise InsurerRefused(answer.infcode, answer.err_msg or "")

    async def _current_sign_no(self) -> str:
        if self._sign_no is None:
            async with self._signing_in:
                if self._sign_no is None:
                    await self._sign_in_for_a_call()
        assert self._sign_no is not None
        return self._sign_no

    async def _renew_sign_no(self, expired: str) -> str:
        async with self._signing_in:
            if self._sign_no in (None, expired):  # else another call has signed in again already
                await self._sign_in_for_a_call()
        assert self._sign_no is not None
        return self._sign_no

    async def _sign_in_for_a_call(self) -> None:
        """Sign in before sending a call: the call itself has not been sent, so a sign-in that fails in any
        way leaves it certainly undelivered (or, refused, certainly refused)."""
        try:
            await self._sign_in()
        except InsurerRefused as error:
            raise InsurerRefused(error.infcode, f"sign-in refused: {error.message}") from None
        except (InsurerUnreachable, OutcomeUnknown) as error:
            raise InsurerUnreachable(f"could not sign in first ({error})") from None

    async def _sign_in(self) -> str:
        """Sign in (the caller holds ``_signing_in``). An id source that fails raises its own error; nothing
        was sent."""
        msgid = await self._sign_in_ids()
        if not protocol.is_message_id(msgid) or not msgid.startswith(self.config.institution_code):
            raise ValueError("the sign-in id source gave a msgid that is not our institution code + time + sequence")
        payload = SignInInput(signIn=SignInData(opter_no=self.config.operator))
        answer, _ = await self._exchange(protocol.SIGN_IN, msgid, payload, "")
        self._raise_unless_success(answer)
        output: SignInOutput = answer.output
        self._sign_no = output.signinoutb.sign_no
        return self._sign_no

    async def _exchange(self, infno: str, msgid: str, payload: msgspec.Struct, sign_no: str) -> tuple[Answer, bytes]:
        """One HTTP exchange: the decoded answer (any infcode) and its bytes, or InsurerUnreachable or
        OutcomeUnknown. Reports to ``on_call``."""
        config = self.config
        request = Request(
            infno=infno,  # type: ignore[arg-type]  # one of protocol.Infno, from the constants
            msgid=msgid,
            mdtrtarea_admvs=config.area_code,
            insuplc_admdvs=config.insured_area_code or config.area_code,
            recer_sys_code=config.receiver_system_code,
            infver=protocol.INTERFACE_VERSION,
            opter_type=config.operator_type,
            opter=config.operator,
            opter_name=config.operator_name,
            inf_time=protocol.inf_time(self._clock()),
            fixmedins_code=config.institution_code,
            fixmedins_name=config.institution_name,
            sign_no=sign_no,
            input=payload,
        )
        outcome: Outcome = "unknown"
        started = time.perf_counter()
        try:
            try:
                async with self._session.post(
                    self._url,
                    data=protocol.encode(request),
                    headers={"Content-Type": "application/json"},
                    timeout=self._timeout,
                ) as response:
                    status = response.status
                    raw = await response.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                outcome = "unreachable"
                raise InsurerUnreachable(f"{infno}: {type(error).__name__}: {error}") from None
            except (aiohttp.ClientError, TimeoutError) as error:
                raise OutcomeUnknown(f"{infno}: {type(error).__name__}: {str(error) or 'timed out'}") from None
            try:
                answer = protocol.decode_answer(raw, infno=infno, msgid=msgid, answer_id=config.answer_id)
            except ProtocolError as error:
                raise OutcomeUnknown(f"{infno}: HTTP {status}, {error}") from None
            if answer.infcode == protocol.SUCCESS and status != 200:
                raise OutcomeUnknown(f"{infno}: HTTP {status} with a success envelope")
            if answer.infcode == protocol.SUCCESS:
                outcome = "ok"
            elif answer.infcode != protocol.DUPLICATE_MSGID:
                outcome = "refused"
            return answer, raw
        finally:
            if self._on_call is not None:
                self._on_call(infno, outcome, time.perf_counter() - started)


@asynccontextmanager
async def open_client(
    config: InsurerConfig, *, connections: int = 64, **options: object
) -> AsyncIterator[InsurerClient]:
    """An ``InsurerClient`` on a session of its own (at most ``connections`` open), closed on exit.
    ``options`` go to ``InsurerClient`` (``on_call``, ``sign_in_ids``, ``clock``)."""
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield InsurerClient(session, config, **options)  # type: ignore[arg-type]
