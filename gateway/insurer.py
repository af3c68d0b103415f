"""Beside the insurer's core: the remote steps of a chain, with no outcome ever left unknown.

Where the province's platform settles the insurance funds, a policy marks those funds ``remote`` and
names the platform in ``[insurer]`` (docs/insurer.md). For a bill such a step may pay on, the gateway:

1. records the settle message (adapters/insurer_messages.py) before it sends it;
2. sends it, and records the answer: the insurer's split is booked as it is, never recomputed;
3. settles the local steps on what is left and commits, flipping the message to ``committed`` in the same
   transaction.

What can go wrong, and what is done about it:

* the insurer refuses: nothing was done there; the terminal gets 422 ``insurer_refused``.
* the message never left (connection refused): 503 ``insurer_unavailable``.
* the outcome is unknown (a timeout, a reset after sending, an answer that does not parse or answers
  another message): the message is reversed by its id (2601) before the terminal gets 503
  ``insurer_unavailable``; if the reversal itself fails, the sweeper finishes it.
* the local commit never comes (the database fails, the process dies): a retry of the same request
  books the recorded answer without asking the insurer again; failing that, the sweeper cancels the
  remote settlement (2208/2305) once the message is older than the grace.
* a reversal cancels the remote part first, then reverses locally with the cancel's message flipped in
  the same transaction; a cancel whose outcome is unknown is sent again (cancelling is idempotent).

A circuit breaker answers 503 ``insurer_unavailable`` with Retry-After at once while the insurer keeps
failing, instead of letting requests pile up behind its timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from adapters import insurer_messages
from adapters.insurer.client import (
    InsurerClient,
    InsurerConfig,
    InsurerError,
    InsurerRefused,
    InsurerUnreachable,
    OutcomeUnknown,
)
from adapters.insurer.protocol import id_for_logs, settle_input
from adapters.insurer_messages import Answered, Message, MessageLog
from gateway.logs import log
from gateway.metrics import Metrics
from gateway.problems import shown
from settlement.chain import Chain, InsurerLink
from settlement.errors import Refused
from settlement.models import Bill, InsurerReference, PersonStatus, Settlement, VisitType

# Moves a message's state if it is still in one of ``expect`` (adapters.insurer_messages.mark, on a pool or on
# the connection whose transaction holds the message).
Mark = Callable[..., Awaitable[bool]]

# Transaction codes of the public interface, by visit type.
SETTLE_CODES: Mapping[str, str] = {"outpatient": "2207", "inpatient": "2304"}
CANCEL_CODES: Mapping[str, str] = {"outpatient": "2208", "inpatient": "2305"}


class Breaker:
    """A circuit breaker over the insurer: ``threshold`` failures in a row open it for ``cooldown`` seconds;
    then one request at a time may probe (half open) until one succeeds. A probe that never reports (its
    request failed before reaching the insurer) frees the way for another after ``cooldown``."""

    def __init__(self, threshold: int = 5, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._probe_started: float | None = None

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() - self.opened_at < self.cooldown else "half_open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open":
            now = self.clock()
            if self._probe_started is None or now - self._probe_started >= self.cooldown:
                self._probe_started = now
                return True
        return False

    def retry_after(self) -> int:
        if self.opened_at is None:
            return 1
        return max(1, math.ceil(self.cooldown - (self.clock() - self.opened_at)))

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._probe_started = None

    def failed(self) -> None:
        self.failures += 1
        self._probe_started = None
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock()


@dataclass(frozen=True, slots=True)
class RemotePaid:
    """What the insurer paid on one bill: by fund code, and the reference of its settlement."""

    paid: dict[str, int]
    reference: InsurerReference
    visit_id: str


def insurer_config(link: InsurerLink, url_override: str | None = None) -> InsurerConfig:
    """How a client reaches the insurer a policy names (``url_override``: MEDSETTLE_INSURER_URL)."""
    return InsurerConfig(
        base_url=url_override or link.url,
        institution_code=link.institution_code,
        institution_name=link.institution_name,
        area_code=link.area_code,
        total_timeout=link.timeout_ms / 1000,
        connect_timeout=link.connect_timeout_ms / 1000,
        answer_id=link.answer_id,
    )


def unavailable(detail: str, retry_after: int = 1) -> Refused:
    return Refused("insurer_unavailable", detail, retry_after=retry_after)


def visit_of(terminal_id: str, request_id: str) -> str:
    """The visit id (mdtrt_id, at most 30 characters) a bill is settled under at the insurer: a digest of the
    terminal's request, unique per terminal and request id however long they are; its cancellation names
    the same visit, and a retry of the request settles the same visit again."""
    digest = hashlib.sha256(f"{terminal_id}\x00{request_id}".encode()).hexdigest()
    return f"V{digest[:29]}"


def visit_type_of(message: Message) -> VisitType:
    inpatient = message.transaction_code in (SETTLE_CODES["inpatient"], CANCEL_CODES["inpatient"])
    return "inpatient" if inpatient else "outpatient"


def pseudonym(person_key: bytes) -> str:
    """The person's number at the insurer as this gateway sends it: derived from the keyed person key, so
    the national ID never leaves in a message and the same person always has the same number."""
    return person_key.hex()[:30]


class RemoteSteps:
    """The insurer's side of settling and reversing, for one gateway process."""

    def __init__(
        self,
        log_: MessageLog,
        metrics: Metrics,
        *,
        url_override: str | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.log = log_
        self.metrics = metrics
        self.url_override = url_override
        self.breaker = breaker or Breaker()
        self._clients: dict[InsurerLink, InsurerClient] = {}
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ plumbing

    def client(self, link: InsurerLink) -> InsurerClient:
        found = self._clients.get(link)
        if found is None:
            if self._session is None:
                # One connection pool for every call to the insurer; a reset connection is simply reopened.
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
            config = insurer_config(link, self.url_override)
            # Sign-ins take ids of the database's sequence too: two gateway processes signing in within one
            # second would otherwise send the same msgid, which the platform refuses as a duplicate.
            found = self._clients[link] = InsurerClient(
                self._session,
                config,
                on_call=self._observe,
                sign_in_ids=functools.partial(self.log.new_message_id, link.institution_code),
            )
        return found

    def grace(self, link: InsurerLink) -> dt.timedelta:
        """How long a message may stay open before the sweeper finishes it: past the longest a live request
        holds one (its own timeout, then a reversal's), so the sweeper never overtakes a request."""
        return dt.timedelta(seconds=1 + 3 * link.timeout_ms / 1000)

    def _observe(self, transaction_code: str, outcome: str, seconds: float) -> None:
        self.metrics.child(self.metrics.insurer_calls, transaction_code, outcome).inc()
        self.metrics.child(self.metrics.insurer_call_seconds, transaction_code).observe(seconds)

    async def close(self) -> None:
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def ready(self) -> tuple[bool, str]:
        """For /readyz: whether the breaker lets settlements through to the insurer, and its state."""
        state = self.breaker.state
        self.metrics.insurer_breaker_open.set(0 if state == "closed" else 1)
        return state != "open", state

    def _admit(self) -> None:
        if not self.breaker.allow():
            raise unavailable(
                "the insurer's core is failing; retry with the same request id", self.breaker.retry_after()
            )

    # ------------------------------------------------------------ settle

    async def settle(
        self,
        policy: Chain,
        *,
        person_key: bytes,
        terminal_id: str,
        request_id: str,
        clinic_id: str,
        bill: Bill,
        status: PersonStatus,
        estimate: Settlement,
    ) -> RemotePaid:
        """Have the insurer settle its funds on this bill, and return what it paid, recorded as answered.

        A retry of a request whose answer is recorded but whose local commit never came gets that answer
        again, without a second settlement at the insurer. Raises ``Refused`` for every failure."""
        link = policy.insurer
        assert link is not None  # the caller asks only for a chain with remote steps
        visit_id = visit_of(terminal_id, request_id)
        transaction_code = SETTLE_CODES[bill.visit_type]
        message = {
            "institution_code": link.institution_code,
            "person_key": person_key,
            "kind": "settle",
            "transaction_code": transaction_code,
            "terminal_id": terminal_id,
            "request_id": request_id,
            "visit_id": visit_id,
            "clinic_id": clinic_id,
            "service_date": bill.service_date,
        }
        # Almost every request is new: record its message at once (the breaker closed lets it through), and
        # only when the request already has one open (a retry, a copy in flight) read that one, to book its
        # answer or make it safe first. One round trip fewer than reading first, with the same outcomes.
        message_id = await self.log.record(**message) if self.breaker.state == "closed" else None
        if message_id is None:
            existing = await self.log.open_message(person_key, terminal_id, request_id, "settle")
            if existing is not None:
                answered = await self._resume(link, existing)
                if answered is not None:
                    return _paid(answered)
            self._admit()
            message_id = await self.log.record(**message)
            if message_id is None:
                raise _in_flight()
        key = (person_key, message_id)
        payload = settle_input(
            bill,
            psn_no=pseudonym(person_key),
            mdtrt_id=visit_id,
            insured=status.insured,
            hardship_tier=status.hardship_tier,
            # The lines as the item catalogue classified them: the insurer settles the same bill.
            categories=[line.category for line in estimate.lines],
        )
        try:
            answer = await self.client(link).settle(message_id, payload)
        except InsurerError as error:
            undone = False
            if isinstance(error, OutcomeUnknown) and await self.log.mark(
                key, "reversing", expect=("sent",), detail=error.reason[:500]
            ):
                undone = await self._reverse(link, key, transaction_code)
            after = "it was undone" if undone else "it is being undone"
            raise await self._failed(key, error, "the bill", after) from None
        self.breaker.succeeded()
        paid = _by_fund(policy, answer.paid_by_fund_type)
        if (
            paid is None
            or answer.insurer_settlement_id is None
            or not await self.log.answered(Answered(person_key, message_id, answer.insurer_settlement_id, paid))
        ):
            # The answer pays a fund this chain does not give the insurer, or the sweeper has already reversed
            # the message (this request outlived the grace): undo whatever the insurer did.
            log.warning(
                "insurer_answer_not_bookable",
                transaction=transaction_code,
                message_id=id_for_logs(message_id),
                receipt_id=id_for_logs(answer.receipt_id),
            )
            if await self.log.mark(key, "reversing", expect=("sent",), detail="answer not bookable"):
                await self._reverse(link, key, transaction_code)
            raise unavailable("the insurer's answer could not be booked; it was undone: retry with the same request id")
        _answered(transaction_code, message_id, answer.receipt_id)
        return RemotePaid(
            paid, InsurerReference(message_id=message_id, settlement_id=answer.insurer_settlement_id), visit_id
        )

    async def pre_settle(
        self,
        policy: Chain,
        *,
        person_key: bytes,
        terminal_id: str,
        bill: Bill,
        status: PersonStatus,
        estimate: Settlement,
    ) -> dict[str, int] | None:
        """What the insurer would pay on this bill (2206/2303, which records nothing there), by fund code; None
        when it cannot say now (down, refusing, unclear), and the quote falls back to the policy's rules."""
        link = policy.insurer
        assert link is not None
        if self.breaker.state == "open":
            return None
        payload = settle_input(
            bill,
            psn_no=pseudonym(person_key),
            mdtrt_id=visit_of(terminal_id, "quote"),
            insured=status.insured,
            hardship_tier=status.hardship_tier,
            categories=[line.category for line in estimate.lines],
        )
        try:
            answer = await self.client(link).pre_settle(await self.log.new_message_id(link.institution_code), payload)
        except (InsurerRefused, InsurerUnreachable, OutcomeUnknown) as error:
            log.info("insurer_pre_settle_failed", error=type(error).__name__)
            return None
        return _by_fund(policy, answer.paid_by_fund_type)

    async def _failed(self, key: tuple[bytes, str], error: InsurerError, what: str, after: str) -> Refused:
        """Record a call to the insurer that did not succeed, and what the terminal is told (``after``: what
        becomes of an unclear outcome)."""
        if isinstance(error, InsurerRefused):
            self.breaker.succeeded()  # it answered
            await self.log.mark(key, "refused", expect=("sent",), detail=f"{error.infcode}: {error.message}"[:500])
            # The insurer's words may quote anything: shown() masks a national ID in them.
            return Refused("insurer_refused", f"the insurer refused {what} ({error.infcode}): {shown(error.message)}")
        self.breaker.failed()
        if isinstance(error, InsurerUnreachable):
            await self.log.mark(key, "unsent", expect=("sent",), detail="unreachable")
            return unavailable("the insurer's core cannot be reached; retry with the same request id")
        log.warning("insurer_outcome_unknown", message_id=id_for_logs(key[1]), reason=getattr(error, "reason", ""))
        return unavailable(f"the insurer did not answer {what} clearly; {after}: retry with the same request id")

    async def _resume(self, link: InsurerLink, message: Message) -> Message | None:
        """An earlier attempt of this request is still open: its answer when it is answered (the retry books
        it); otherwise it is made safe (reversed, once it is too old to be in flight still) and None is
        returned, or the request is told to wait."""
        if message.state == "answered":
            return message
        age = dt.datetime.now(dt.UTC) - message.sent_at
        if message.state == "cancelling" or age < dt.timedelta(milliseconds=link.timeout_ms * 2):
            raise _in_flight()
        key = (message.person_key, message.message_id)
        if message.state == "sent":
            await self.log.mark(key, "reversing", expect=("sent",), detail="retried after an unknown outcome")
        if not await self._reverse(link, key, message.transaction_code):
            raise unavailable(
                "an earlier attempt of this request could not be undone yet; retry with the same request id"
            )
        return None

    async def _reverse(
        self, link: InsurerLink, key: tuple[bytes, str], transaction_code: str, mark: Mark | None = None
    ) -> bool:
        """Reverse a settle message whose outcome is unknown (2601, by its id); whether that is now known
        to be done. A failure leaves it ``reversing``, for the sweeper."""
        mark = mark or self.log.mark
        try:
            reversal_id = await self.log.new_message_id(link.institution_code)
            result = await self.client(link).reverse(
                reversal_id,
                omsgid=key[1],
                oinfno=transaction_code,
                psn_no=pseudonym(key[0]),  # type: ignore[arg-type]
            )
        except (InsurerRefused, InsurerUnreachable, OutcomeUnknown) as error:
            log.warning("insurer_reversal_failed", message_id=id_for_logs(key[1]), error=type(error).__name__)
            return False
        await mark(key, "reversed", expect=("reversing",), detail="reversed" if result.found else "nothing to reverse")
        _answered("2601", reversal_id, result.receipt_id, of_message=key[1])
        return True

    async def cancel_unbooked(
        self, policy: Chain, remote: RemotePaid, person_key: bytes, visit_type: VisitType
    ) -> None:
        """The insurer settled but the local steps cannot be booked (the bill is refused after all): cancel
        the remote settlement now; what fails here, the sweeper finishes."""
        link = policy.insurer
        assert link is not None
        key = (person_key, remote.reference.message_id)
        if await self.log.mark(key, "cancelling", expect=("answered",), detail="the local steps refused the bill"):
            await self._cancel(link, key, remote.reference.settlement_id, visit_type, remote.visit_id)

    async def _cancel(
        self,
        link: InsurerLink,
        key: tuple[bytes, str],
        insurer_settlement_id: str,
        visit_type: VisitType,
        visit_id: str,
        *,
        to: str = "cancelled",
        expect: tuple[str, ...] = ("cancelling",),
        mark: Mark | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Cancel the insurer's settlement ``insurer_settlement_id`` (idempotent there) and move the message
        ``key`` to ``to``; whether the insurer confirmed. A failure leaves the message as it is, and raises
        when ``message_id`` (a cancel the terminal waits on) is given, else is logged."""
        mark = mark or self.log.mark
        try:
            cancel_id = message_id or await self.log.new_message_id(link.institution_code)
            result = await self.client(link).cancel(
                cancel_id,
                visit_type=visit_type,
                insurer_settlement_id=insurer_settlement_id,
                mdtrt_id=visit_id,
                psn_no=pseudonym(key[0]),
            )
        except (InsurerRefused, InsurerUnreachable, OutcomeUnknown) as error:
            if message_id is not None:
                raise
            log.warning("insurer_cancel_failed", message_id=id_for_logs(key[1]), error=type(error).__name__)
            return False
        await mark(key, to, expect=expect)
        _answered(CANCEL_CODES[visit_type], cancel_id, result.receipt_id, of_message=key[1])
        return True

    # ------------------------------------------------------------ reverse

    async def cancel_for_reversal(
        self,
        link: InsurerLink,
        settlement: Settlement,
        *,
        person_key: bytes,
        terminal_id: str,
        request_id: str,
        clinic_id: str,
        settlement_id: uuid.UUID,
        visit_id: str,
        reversal: dict[str, Any],
    ) -> str:
        """Cancel a settlement's remote part before it is reversed locally. Returns the cancel's message id,
        to flip in the reversal's transaction. ``reversal`` is what the sweeper needs to finish the local
        reversal if this process cannot. Raises ``Refused`` when the insurer has not confirmed."""
        reference = settlement.insurer
        assert reference is not None  # the caller asks only for a settlement the insurer paid on
        existing = await self.log.open_message(person_key, terminal_id, request_id, "cancel")
        if existing is not None:
            if existing.state == "answered":
                return existing.message_id
            # A cancel is idempotent at the insurer: an earlier attempt whose outcome is unknown is superseded.
            await self.log.mark(existing, "superseded", expect=("sent",))
        self._admit()
        message_id = await self.log.record(
            institution_code=link.institution_code,
            person_key=person_key,
            kind="cancel",
            transaction_code=CANCEL_CODES[settlement.visit_type],
            terminal_id=terminal_id,
            request_id=request_id,
            visit_id=visit_id,
            clinic_id=clinic_id,
            service_date=settlement.service_date,
            settlement_id=settlement_id,
            insurer_settlement_id=reference.settlement_id,
            request=reversal,
        )
        if message_id is None:
            raise _in_flight()
        key = (person_key, message_id)
        try:
            await self._cancel(
                link, key, reference.settlement_id, settlement.visit_type, visit_id,
                to="answered", expect=("sent",), message_id=message_id,
            )  # fmt: skip
        except InsurerError as error:
            # An unknown outcome stays sent: a cancel is idempotent, and the retry (or the sweeper) sends another.
            raise await self._failed(key, error, "the cancellation", "nothing was reversed here") from None
        self.breaker.succeeded()
        return message_id


def _answered(transaction_code: str, message_id: str, receipt_id: str, *, of_message: str | None = None) -> None:
    """Log an answer of the insurer once it is recorded: our message id, and the platform's receipt id for it
    (``inf_refmsgid``), the two ids by which either side finds the exchange. ``of_message``: the message whose
    state the answer moved, when it is another (the settle a cancel or a reversal undid)."""
    fields = {} if of_message is None or of_message == message_id else {"of_message": id_for_logs(of_message)}
    log.info(
        "insurer_answered",
        transaction=transaction_code,
        message_id=id_for_logs(message_id),
        receipt_id=id_for_logs(receipt_id),
        **fields,
    )


def _paid(message: Message) -> RemotePaid:
    assert message.insurer_settlement_id is not None  # an answered message has one (a CHECK says so)
    return RemotePaid(
        dict(message.paid or {}),
        InsurerReference(message_id=message.message_id, settlement_id=message.insurer_settlement_id),
        message.visit_id,
    )


def _by_fund(policy: Chain, by_type: Mapping[str, int]) -> dict[str, int] | None:
    """The insurer's split by the chain's fund codes; None when it pays from a fund type the chain does not
    give it (nothing could book that)."""
    codes = {fund.fund_type: fund.code for fund in policy.remote_funds}
    paid: dict[str, int] = {}
    for fund_type, amount in by_type.items():
        if fund_type not in codes:
            if amount:
                return None
            continue
        paid[codes[fund_type]] = paid.get(codes[fund_type], 0) + amount
    return paid


def _in_flight() -> Refused:
    return Refused(
        "request_in_flight", "this request is at the insurer now; retry with the same request id", retry_after=1
    )


class Sweeper:
    """Finishes, in the background, every message a crash, a lost connection or a timeout left open: it
    reverses settles whose outcome is unknown, cancels settles whose local commit never came, and sends
    again cancels whose outcome is unknown and books the local reversal of those the insurer confirmed."""

    def __init__(
        self,
        remote: RemoteSteps,
        link_for: Callable[[], InsurerLink | None],
        finish_reversal: Callable[[Message], Any],
        every: float = 2.0,
    ) -> None:
        self.remote = remote
        self.link_for = link_for
        self.finish_reversal = finish_reversal
        self.every = every
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def sweep(self, limit: int = 100) -> int:
        """Finish up to ``limit`` open messages past the grace; how many were looked at."""
        link = self.link_for()
        if link is None:
            return 0
        remote = self.remote
        done = 0
        for _ in range(limit):
            async with remote.log.due(remote.grace(link)) as due:
                if due is None:
                    break
                message, connection = due
                finish_locally = await self._finish(link, message, functools.partial(insurer_messages.mark, connection))
            # After the message's lock is released: the local reversal flips it in its own transaction.
            if finish_locally:
                await self.finish_reversal(message)
            done += 1
        return done

    async def _finish(self, link: InsurerLink, message: Message, mark: Mark) -> bool:
        """Act on one open message (locked); whether the local reversal of a confirmed cancel remains."""
        key = (message.person_key, message.message_id)
        remote = self.remote
        if message.kind == "settle":
            if message.state in ("sent", "reversing"):
                await mark(key, "reversing", expect=("sent", "reversing"), detail="unknown outcome: swept")
                await remote._reverse(link, key, message.transaction_code, mark)
            else:  # answered and never booked, or a cancel of it that did not finish
                assert message.insurer_settlement_id is not None  # answered messages have one (a CHECK says so)
                await mark(key, "cancelling", expect=("answered", "cancelling"), detail="never booked: swept")
                await remote._cancel(
                    link, key, message.insurer_settlement_id, visit_type_of(message), message.visit_id, mark=mark
                )
            return False
        # A cancel for a reversal: an unknown outcome is sent again; once confirmed the reversal is booked.
        if message.state == "sent":
            assert message.insurer_settlement_id is not None
            confirmed = await remote._cancel(
                link, key, message.insurer_settlement_id, visit_type_of(message), message.visit_id,
                to="answered", expect=("sent",), mark=mark,
            )  # fmt: skip
            return confirmed
        return message.state == "answered"

    async def run(self) -> None:
        """Sweep every ``every`` seconds (or when woken), for as long as the gateway runs."""
        while True:
            try:
                await self.sweep()
            except Exception as error:  # the next round tries again; a failure here must not stop the loop
                log.warning("insurer_sweep_failed", error=type(error).__name__)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every)
