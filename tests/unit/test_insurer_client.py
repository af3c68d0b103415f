"""The insurer client (adapters/insurer/client.py) against the simulator in memory: which answers it takes
for its own under each ``answer_id``, and where its sign-in message ids come from.

A fake session hands each request to an ``InsurerSimulator`` (no network) and can swap the answer, as a
stale or misrouted answer would arrive. tests/integration/test_insurer_simulator.py runs the same client
against the simulator over HTTP, faults included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from adapters.insurer import protocol
from adapters.insurer.client import InsurerClient, InsurerConfig, InsurerUnreachable, OutcomeUnknown
from adapters.insurer.simulator import InsurerSimulator
from adapters.policy_files import load_policy_book
from gateway import insurer as gateway_insurer
from gateway.insurer import RemoteSteps, insurer_config
from gateway.logs import scrub
from gateway.metrics import Metrics
from settlement.models import Bill, LineItem

ROOT = Path(__file__).resolve().parents[2]
THREE_TIER = load_policy_book(ROOT / "policies" / "examples" / "three-tier")
BESIDE = load_policy_book(ROOT / "policies" / "examples" / "beside-the-insurer")
INSTITUTION = "H41010200001"
NOW = dt.datetime(2026, 6, 30, 10, 0, tzinfo=protocol.CHINA_TIME)
SETTINGS = ("platform", "echo")


def clock() -> dt.datetime:
    return NOW


class _Response:
    def __init__(self, body: bytes) -> None:
        self.status = 200
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class FakeSession:
    """Stands for the aiohttp session: every post is handled by ``simulator``; ``swap``, when set, turns the
    next answer into another. ``sent`` and ``answers`` keep every exchange, decoded."""

    def __init__(self, simulator: InsurerSimulator) -> None:
        self.simulator = simulator
        self.swap: Callable[[bytes], bytes] | None = None
        self.sent: list[dict[str, Any]] = []
        self.answers: list[bytes] = []

    def post(self, url: str, *, data: bytes, headers: object, timeout: object) -> _Response:
        self.sent.append(json.loads(data))
        answer = self.simulator.handle(data)
        if self.swap is not None:
            answer, self.swap = self.swap(answer), None
        self.answers.append(answer)
        return _Response(answer)


def simulator(answer_id: str) -> InsurerSimulator:
    return InsurerSimulator(THREE_TIER, answer_id=answer_id, area_code="410000", clock=clock)  # type: ignore[arg-type]


def client(session: FakeSession, answer_id: str = "platform", **options: Any) -> InsurerClient:
    config = InsurerConfig(
        base_url="http://insurer.invalid",
        institution_code=INSTITUTION,
        institution_name="County People's Hospital",
        area_code="410102",
        answer_id=answer_id,  # type: ignore[arg-type]
    )
    return InsurerClient(session, config, clock=clock, **options)  # type: ignore[arg-type]


class Ids:
    """Message ids for the tests' own messages (sequences 0..8999, as the database's)."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> str:
        self.next += 1
        return protocol.message_id(INSTITUTION, NOW, self.next)


def bill(amount: int = 3_000_000) -> Bill:
    return Bill(
        clinic_level="county",
        visit_type="inpatient",
        service_date=NOW.date(),
        items=(LineItem(code="A-0001", name="ward and surgery", category="A", amount=amount),),
        referral=True,
    )


def payload(visit: str, person: str = "P-0001") -> protocol.SettleInput:
    return protocol.settle_input(bill(), psn_no=person, mdtrt_id=visit, hardship_tier="minimum_allowance")


def with_refmsgid(refmsgid: str) -> Callable[[bytes], bytes]:
    """The answer as it came, but naming ``refmsgid`` in ``inf_refmsgid``."""

    def swap(answer: bytes) -> bytes:
        message = json.loads(answer, parse_float=Decimal)
        message["inf_refmsgid"] = refmsgid
        return protocol.ENCODER.encode(message)

    return swap


# ---------------------------------------------------------------- whose answer it is


@pytest.mark.parametrize("answer_id", SETTINGS)
async def test_a_copied_answer_for_another_visit_is_an_unknown_outcome(answer_id: str) -> None:
    # The same person, the same bill: only the visit tells the copied answer from ours.
    session, ids = FakeSession(simulator(answer_id)), Ids()
    insurer = client(session, answer_id)
    first = await insurer.settle(ids(), payload("ZY-0001"))
    copied = session.answers[-1]
    session.swap = lambda _: copied
    with pytest.raises(OutcomeUnknown) as unknown:
        await insurer.settle(ids(), payload("ZY-0002"))
    said = "another message" if answer_id == "echo" else "another visit or person"
    assert said in unknown.value.reason
    # A copied cancel answer (another settlement) and a copied reversal answer (another message) too.
    assert first.insurer_settlement_id is not None
    second_msgid = ids()
    second = await insurer.settle(second_msgid, payload("ZY-0003"))
    assert second.insurer_settlement_id is not None
    await insurer.cancel(
        ids(), visit_type="inpatient", insurer_settlement_id=first.insurer_settlement_id, mdtrt_id="ZY-0001",
        psn_no="P-0001",
    )  # fmt: skip
    copied = session.answers[-1]
    session.swap = lambda _: copied
    with pytest.raises(OutcomeUnknown):
        await insurer.cancel(
            ids(), visit_type="inpatient", insurer_settlement_id=second.insurer_settlement_id, mdtrt_id="ZY-0003",
            psn_no="P-0001",
        )  # fmt: skip
    await insurer.reverse(ids(), omsgid=protocol.message_id(INSTITUTION, NOW, 8000), oinfno="2304", psn_no="P-0001")
    copied = session.answers[-1]
    session.swap = lambda _: copied
    with pytest.raises(OutcomeUnknown, match="another message"):
        await insurer.reverse(ids(), omsgid=second_msgid, oinfno="2304", psn_no="P-0001")


@pytest.mark.parametrize("answer_id", SETTINGS)
async def test_a_foreign_receipt_id_with_our_content_is_ours_only_from_a_platform_that_does_not_echo(
    answer_id: str,
) -> None:
    session, ids = FakeSession(simulator(answer_id)), Ids()
    insurer = client(session, answer_id)
    await insurer.sign_in()
    foreign = "990000202606301000000000000042"
    session.swap = with_refmsgid(foreign)
    if answer_id == "echo":
        with pytest.raises(OutcomeUnknown, match="inf_refmsgid is not our msgid"):
            await insurer.settle(ids(), payload("ZY-0001"))
        return
    result = await insurer.settle(ids(), payload("ZY-0001"))
    assert result.receipt_id == foreign
    assert result.insurer_settlement_id is not None


async def test_the_simulator_answers_with_receipt_ids_of_its_own_or_echoes_ours() -> None:
    session, ids = FakeSession(simulator("platform")), Ids()
    insurer = client(session)
    msgid = ids()
    settled = await insurer.settle(msgid, payload("ZY-0001"))
    assert settled.receipt_id == "410000" + "20260630100000" + "0000000002"  # the sign-in's answer was the first
    undone = await insurer.reverse(ids(), omsgid=msgid, oinfno="2304", psn_no="P-0001")
    assert undone.found and undone.receipt_id.endswith("0000000003")
    session, ids = FakeSession(simulator("echo")), Ids()
    msgid = ids()
    assert (await client(session, "echo").settle(msgid, payload("ZY-0001"))).receipt_id == msgid
    with pytest.raises(ValueError, match="answer_id"):
        simulator("receipt")


@pytest.mark.parametrize(("field", "value"), [("mdtrt_id", "ZY-9999"), ("psn_no", "P-9999")])
async def test_a_cancel_answer_naming_another_visit_or_person_is_an_unknown_outcome(field: str, value: str) -> None:
    session, ids = FakeSession(simulator("platform")), Ids()
    insurer = client(session)
    settled = await insurer.settle(ids(), payload("ZY-0001"))
    assert settled.insurer_settlement_id is not None

    def swap(answer: bytes) -> bytes:
        message = json.loads(answer, parse_float=Decimal)
        message["output"]["setlinfo"][field] = value
        return protocol.ENCODER.encode(message)

    session.swap = swap
    cancel = {"visit_type": "inpatient", "insurer_settlement_id": settled.insurer_settlement_id}
    with pytest.raises(OutcomeUnknown, match="another visit or person"):
        await insurer.cancel(ids(), **cancel, mdtrt_id="ZY-0001", psn_no="P-0001")  # type: ignore[arg-type]
    done = await insurer.cancel(ids(), **cancel, mdtrt_id="ZY-0001", psn_no="P-0001")  # type: ignore[arg-type]
    assert done.already  # the first cancel was done there: the doubt is what an unknown outcome means


# ---------------------------------------------------------------- sign-in message ids


class SharedSource:
    """Stands for the database's sequence: one counter for every client, awaited like a query."""

    def __init__(self) -> None:
        self.given: list[str] = []

    async def __call__(self) -> str:
        await asyncio.sleep(0)
        msgid = protocol.message_id(INSTITUTION, NOW, len(self.given))
        self.given.append(msgid)
        return msgid


def sign_in_ids(*sessions: FakeSession) -> list[str]:
    return [message["msgid"] for session in sessions for message in session.sent if message["infno"] == "9001"]


async def test_two_clients_sharing_one_id_source_never_sign_in_with_the_same_id() -> None:
    insurer = simulator("platform")
    source = SharedSource()
    sessions = [FakeSession(insurer), FakeSession(insurer)]
    clients = [client(session, sign_in_ids=source) for session in sessions]
    # Both sign in ten times within the same second (the clock stands still), interleaved.
    await asyncio.gather(*(one.sign_in() for one in clients for _ in range(10)))
    ids = sign_in_ids(*sessions)
    assert len(ids) == 20 == len(set(ids))
    assert sorted(ids) == sorted(source.given)
    # Without a source each client counts 9000.. of the second on its own: two processes collide.
    alone = [FakeSession(insurer), FakeSession(insurer)]
    for session in alone:
        await client(session).sign_in()
    assert sign_in_ids(alone[0]) == sign_in_ids(alone[1]) == [protocol.message_id(INSTITUTION, NOW, 9000)]


async def test_a_source_giving_a_malformed_id_is_refused_before_anything_is_sent() -> None:
    session = FakeSession(simulator("platform"))

    async def wrong() -> str:
        return protocol.message_id("H99999999999", NOW, 1)  # another institution's

    with pytest.raises(ValueError, match="sign-in id source"):
        await client(session, sign_in_ids=wrong).sign_in()
    assert session.sent == []


class FakeLog:
    """The message log's id source, and nothing else of it."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def new_message_id(self, institution_code: str) -> str:
        self.asked.append(institution_code)
        return protocol.message_id(institution_code, NOW, 8999)


async def test_the_gateway_signs_in_with_ids_of_the_database_sequence() -> None:
    link = BESIDE.latest().insurer
    assert link is not None
    with socket.socket() as probe:  # a port nothing listens on: the sign-in is refused a connection
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    log = FakeLog()
    remote = RemoteSteps(log, Metrics(), url_override=closed)  # type: ignore[arg-type]
    try:
        assert remote.client(link).config == insurer_config(link, closed)
        assert remote.client(link).config.answer_id == link.answer_id == "platform"
        with pytest.raises(InsurerUnreachable):
            await remote.client(link).sign_in()
    finally:
        await remote.close()
    assert log.asked == [link.institution_code]


def test_a_recorded_answer_is_logged_with_both_ids_readable_past_the_logs_mask() -> None:
    msgid, receipt = protocol.message_id(INSTITUTION, NOW, 42), "410000202606301000000000000007"
    assert scrub(msgid) != msgid and scrub(receipt) != receipt  # whole, the mask would hide both
    with structlog.testing.capture_logs() as logs:
        gateway_insurer._answered("2208", msgid, receipt, of_message=protocol.message_id(INSTITUTION, NOW, 41))
    assert logs == [
        {
            "event": "insurer_answered",
            "log_level": "info",
            "transaction": "2208",
            "message_id": "H41010200001-20260630100000-0042",
            "receipt_id": "410000-20260630100000-0000000007",
            "of_message": "H41010200001-20260630100000-0041",
        }
    ]
    assert scrub(logs[0]) == logs[0]
