"""The installable client package (clients/python, ``medsettle-client``) against a real gateway.

It settles the README's worked example, answers with typed values, refuses as the gateway does,
and when an answer is lost on the way back it sends the same bill again and gets the same
settlement: one row in the database, never two. The client is synchronous, as most hospital
systems are, so it runs in a thread beside the test's event loop that serves the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest
from medsettle_client import Bill, Client, Eligibility, GatewayError, Reversal, Settlement

from tests.integration.conftest import SignedClient
from tests.integration.conftest import worked_example_bill as worked_example

pytestmark = pytest.mark.integration

TIMEOUT = 10.0  # seconds for any one exchange through the proxy


def terminal(client: SignedClient, base_url: str, terminal_id: str = "term-C001", **options: float) -> Client:
    key = client.by_terminal[terminal_id]
    return Client(base_url, key.key_id, key.secret, backoff=0.01, **options)


def gateway_url(client: SignedClient) -> str:
    return str(client.client.make_url("")).rstrip("/")


async def worked_example_bill(client: SignedClient, request_id: str) -> Bill:
    """Worked example 2 for a person of the test's own, as the package's typed bill."""
    return msgspec.convert(await worked_example(client, request_id), Bill)


async def test_the_client_settles_the_worked_example_with_typed_answers(client: SignedClient) -> None:
    gateway = terminal(client, gateway_url(client))
    bill = await worked_example_bill(client, "package-worked-example")
    bill = msgspec.structs.replace(bill, his_visit_id="ZY2026-0418-031", diagnoses=["I21.000x001"])

    settlement = await asyncio.to_thread(gateway.settle, bill)
    assert isinstance(settlement, Settlement) and not settlement.replayed
    assert (settlement.total, settlement.insurance, settlement.veteran_subsidy) == (2000000, 1275000, 291000)
    assert (settlement.hardship_aid, settlement.out_of_pocket) == (135800, 298200)
    assert sum(payer.amount for payer in settlement.payers) + settlement.out_of_pocket == settlement.total
    assert [line.amount for line in settlement.lines] == [1400000, 400000, 200000]
    assert (settlement.his_visit_id, settlement.diagnoses, settlement.invoice_number) == (
        "ZY2026-0418-031",
        ("I21.000x001",),
        None,
    )

    again = await asyncio.to_thread(gateway.settle, bill)
    assert again.replayed and again.settlement_id == settlement.settlement_id

    stored = await asyncio.to_thread(gateway.get_settlement, settlement.settlement_id)
    assert stored.out_of_pocket == 298200 and stored.request_id == bill.request_id

    standing = await asyncio.to_thread(gateway.eligibility, bill.person_id, "2026-05-01")
    assert isinstance(standing, Eligibility) and standing.insured
    assert [fund.fund for fund in standing.funds] == ["insurance", "veteran_subsidy", "hardship_aid"]

    reversal = await asyncio.to_thread(gateway.reverse, settlement.settlement_id, "package-worked-example-rev")
    assert isinstance(reversal, Reversal) and reversal.out_of_pocket == 298200


async def test_a_refusal_is_raised_with_the_gateway_s_code_and_field(client: SignedClient) -> None:
    gateway = terminal(client, gateway_url(client))
    bill = await worked_example_bill(client, "package-refused")
    with pytest.raises(GatewayError) as refused:
        await asyncio.to_thread(gateway.settle, {**msgspec.to_builtins(bill), "visit_type": "day_care"})
    assert (refused.value.problem.status, refused.value.problem.code) == (422, "validation_failed")
    assert refused.value.problem.field == "visit_type" and refused.value.problem.trace_id

    stranger = Client(gateway_url(client), "k_nobody", "sk_wrong", backoff=0.01)
    with pytest.raises(GatewayError) as unsigned:
        await asyncio.to_thread(stranger.settle, bill)
    assert (unsigned.value.problem.status, unsigned.value.problem.code) == (401, "unknown_key")


class DropFirstAnswer:
    """A TCP relay to the gateway that forwards every request but, the first time, drops the gateway's
    answer and closes the connection: the terminal cannot know whether its bill was settled."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self.dropped = 0

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(head + body)
            await up_writer.drain()
            answer = await asyncio.wait_for(up_reader.read(1 << 20), TIMEOUT)  # the whole answer: it is small
            up_writer.close()
            if self.dropped == 0:
                self.dropped += 1  # the gateway answered; the terminal never hears it
            else:
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def lossy_relay(client: SignedClient) -> AsyncIterator[tuple[str, DropFirstAnswer]]:
    relay = DropFirstAnswer(client.client.port)
    server = await asyncio.start_server(relay.relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", relay


async def test_an_answer_lost_on_the_way_back_is_retried_and_settles_once(
    client: SignedClient, pool: asyncpg.Pool, lossy_relay: tuple[str, DropFirstAnswer]
) -> None:
    base_url, relay = lossy_relay
    gateway = terminal(client, base_url)
    bill = await worked_example_bill(client, "package-lost-answer")

    settlement = await asyncio.to_thread(gateway.settle, bill)

    assert relay.dropped == 1 and relay.connections == 2  # the first answer was lost, the retry got through
    assert settlement.replayed, "the retry is answered with the first settlement"
    assert settlement.out_of_pocket == 298200
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT settlement_id::text FROM settlements WHERE request_id = $1 AND terminal_id = 'term-C001'",
            bill.request_id,
        )
    assert [row["settlement_id"] for row in rows] == [settlement.settlement_id]
