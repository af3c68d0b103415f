"""``medsettle serve --workers N``: several processes on one port, and what must hold across them.

Workers start at the same moment on the same database, the kernel spreads connections
between them, and their metrics add up. Nothing in one worker's memory may be what keeps
a cap or the one-settlement-per-request rule, so the two-gateway races run again here
against a single port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from adapters import card_frames as frames
from adapters.terminal_client import Reply, TerminalClient
from gateway.card_reader.client import ReaderClient
from gateway.http import workers as workers_module
from gateway.http.app import create_app
from tests.integration import test_two_gateways as two_gateways
from tests.integration.conftest import bill, register
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = pytest.mark.integration


async def test_processes_starting_at_once_on_a_fresh_database_all_start(database_url, settings):
    """Migrations and the policy sync race when N workers start together on an empty database."""
    name = f"medsettle_fresh_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        fresh = urllib.parse.urlunsplit(urllib.parse.urlsplit(database_url)._replace(path=f"/{name}"))
        runners = [web.AppRunner(create_app(settings, dsn=fresh), handle_signals=False) for _ in range(4)]
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(runner.setup() for runner in runners), return_exceptions=True), timeout=60
            )
        finally:
            for runner in runners:
                await runner.cleanup()
        assert [repr(outcome) for outcome in outcomes if outcome is not None] == []
        connection = await asyncpg.connect(fresh)
        try:
            assert await connection.fetchval("SELECT count(*) FROM policy_versions") >= 1
            loaded = await connection.fetchval("SELECT count(*) FROM audit_log WHERE action = 'policy.loaded'")
            assert loaded == await connection.fetchval("SELECT count(*) FROM policy_versions")
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# ---------------------------------------------------------------- real `medsettle serve --workers 2`

WORKERS = 2
PID_HEADER = "X-Worker-Pid"


@dataclass
class Gateway:
    base: str
    process: subprocess.Popen[str]
    reader_port: int = 0


def _children(parent: int) -> set[int]:
    """Live child processes of ``parent``, from /proc (Linux)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone while we looked
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _fresh_connections() -> aiohttp.ClientSession:
    """A new TCP connection per request, so the kernel picks a worker for each."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def _answering_pids(base: str, requests: int) -> set[int]:
    async with _fresh_connections() as session:
        pids = set()
        for _ in range(requests):
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
                pids.add(int(response.headers[PID_HEADER]))
        return pids


async def _start_workers(database_url: str, data_dir: Path, **settings: str) -> Gateway:
    """`medsettle serve --workers 2`, returned once both workers answer."""
    port = free_port()
    process = start_gateway(database_url, port, data_dir, extra_args=["--workers", str(WORKERS)], **settings)
    gateway = Gateway(f"http://127.0.0.1:{port}", process, int(settings.get("MEDSETTLE_READER_PORT", "0")))
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, gateway.base, process)
        deadline = time.monotonic() + 30
        while len(await _answering_pids(gateway.base, 10)) < WORKERS:  # the second may still be starting
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "both workers did not answer within 30 s"
            await asyncio.sleep(0.2)
    except BaseException:
        _kill_all(process)
        raise
    return gateway


def _kill_all(process: subprocess.Popen[str]) -> None:
    """Clean-up only: SIGKILL a supervisor we started and its workers."""
    for pid in _children(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.kill()
    process.communicate(timeout=30)


def _stop(gateway: Gateway, timeout: float = 40, signum: int = signal.SIGTERM) -> tuple[int, str]:
    gateway.process.send_signal(signum)
    try:
        _, stderr = gateway.process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(gateway.process)
        raise
    return gateway.process.returncode, stderr


def _total(exposition: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` with these labels in a /metrics text."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(label) == value for label, value in labels.items())
    )


def _settled(exposition: str) -> float:
    return _total(exposition, "medsettle_settlements_total", outcome="settled")


async def _scrape(session: aiohttp.ClientSession, base: str) -> tuple[int, str]:
    async with session.get(f"{base}/metrics") as response:
        assert response.status == 200
        return int(response.headers[PID_HEADER]), await response.text()


async def _settle_spread(client, base: str, count: int) -> list[Reply]:
    """``count`` settlements, one connection each, a few at a time."""
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "marginal"))
    key = client.by_terminal["term-T001"]
    async with _fresh_connections() as session:
        terminal = TerminalClient(base, key.key_id, key.secret, session=session)
        replies: list[Reply] = []
        for start in range(0, count, 5):
            replies += await asyncio.gather(
                *(
                    terminal.settle(bill(person, ("A", 20_000), clinic_id="T001", visit_type="outpatient"))
                    for _ in range(min(5, count - start))
                )
            )
    assert [reply.status for reply in replies] == [201] * count, [r.body for r in replies if r.status != 201]
    return replies


@pytest.fixture(scope="module")
async def workers(database_url, pool, tmp_path_factory) -> AsyncIterator[Gateway]:
    # ``pool`` seeds the demo county first: workers load clinics at start and only every 5 s after.
    gateway = await _start_workers(
        database_url, tmp_path_factory.mktemp("workers"), MEDSETTLE_READER_PORT=str(free_port())
    )
    try:
        yield gateway
    finally:
        returncode, stderr = _stop(gateway)
        assert returncode == 0, stderr


async def test_the_kernel_spreads_connections_over_both_workers(workers):
    pids = await _answering_pids(workers.base, 40)
    assert pids == _children(workers.process.pid)
    assert len(pids) == WORKERS


async def test_metrics_add_up_across_workers(client, workers):
    async with _fresh_connections() as session:
        _, before = await _scrape(session, workers.base)
        replies = await _settle_spread(client, workers.base, 30)
        scrapes = [await _scrape(session, workers.base) for _ in range(12)]
    assert len({int(reply.headers[PID_HEADER]) for reply in replies}) == WORKERS, "one worker settled them all"
    assert len({pid for pid, _ in scrapes}) == WORKERS, "one worker answered every scrape"
    for _, exposition in scrapes:  # whichever worker answers, it reports every worker's counts
        assert _settled(exposition) - _settled(before) == 30
        for payer in ("insurance", "hardship_aid", "out_of_pocket"):
            paid = _total(exposition, "medsettle_paid_fen_total", payer=payer)
            assert paid - _total(before, "medsettle_paid_fen_total", payer=payer) == sum(
                reply.body[payer] for reply in replies
            )


async def test_card_readers_are_served_by_the_workers_too(client, workers):
    """Every worker listens on the reader port as well (a second plain bind would have failed)."""
    person = await register(client, ("insurance", "resident"))
    key = client.by_terminal["term-T001"]
    async with _fresh_connections() as session:
        _, before = await _scrape(session, workers.base)
        for _ in range(10):  # a connection each: the kernel picks a worker for each
            async with ReaderClient("127.0.0.1", workers.reader_port, key.key_id, key.secret) as reader:
                reply = await reader.settle(bill(person, ("A", 20_000), clinic_id="T001", visit_type="outpatient"))
            assert isinstance(reply, frames.Result) and reply.status == 201, reply
        _, after = await _scrape(session, workers.base)
    name = "medsettle_reader_frames_total"
    assert _total(after, name, type="settle", outcome="ok") - _total(before, name, type="settle", outcome="ok") == 10
    assert _settled(after) - _settled(before) == 10


async def test_caps_hold_with_requests_spread_over_worker_processes(client, pool, workers):
    await two_gateways.test_caps_hold_with_requests_alternating_between_two_gateways(client, pool, [workers.base] * 2)


async def test_duplicate_storm_over_worker_processes_settles_once(client, pool, workers):
    await two_gateways.test_duplicate_storm_across_two_gateways_settles_once(client, pool, [workers.base] * 2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_stops_every_worker_and_exits_0(database_url, tmp_path, signum):
    gateway = await _start_workers(database_url, tmp_path)
    pids = _children(gateway.process.pid)
    assert len(pids) == WORKERS
    started = time.monotonic()
    returncode, stderr = _stop(gateway, signum=signum)
    assert returncode == 0, stderr
    assert time.monotonic() - started < 20  # MEDSETTLE_SHUTDOWN_TIMEOUT
    assert not [pid for pid in pids if _alive(pid)]


async def test_a_killed_worker_is_restarted_and_its_counts_are_kept(client, database_url, tmp_path):
    gateway = await _start_workers(database_url, tmp_path, MEDSETTLE_LOG_LEVEL="info", MEDSETTLE_LOG_FORMAT="json")
    try:
        replies = await _settle_spread(client, gateway.base, 10)
        victim = int(replies[0].headers[PID_HEADER])
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(answering := await _answering_pids(gateway.base, 10)) < WORKERS:
            assert time.monotonic() < deadline, "the killed worker was not replaced within 30 s"
            await asyncio.sleep(0.2)
        assert victim not in answering
        assert answering == _children(gateway.process.pid)
        async with _fresh_connections() as session:
            for _ in range(4):  # the dead worker's settlements still count, whoever answers
                _, exposition = await _scrape(session, gateway.base)
                assert _settled(exposition) == 10
    finally:
        returncode, stderr = _stop(gateway)
    assert returncode == 0, stderr
    died = [json.loads(line) for line in stderr.splitlines() if '"worker_died"' in line]
    assert [(line["pid"], line["signal"]) for line in died] == [(victim, "SIGKILL")]


async def test_workers_stop_when_their_parent_is_killed(database_url, tmp_path):
    gateway = await _start_workers(database_url, tmp_path)
    pids = _children(gateway.process.pid)
    try:
        gateway.process.kill()
        gateway.process.communicate(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "orphaned workers still running after 30 s"
            await asyncio.sleep(0.2)
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_workers_that_keep_dying_make_the_parent_exit_1(database_url, tmp_path):
    # Every worker fails its start-up: there are no policy files to load. (A missing database would be
    # refused by the parent before any worker starts.)
    port = free_port()
    process = start_gateway(
        database_url,
        port,
        tmp_path,
        extra_args=["--workers", str(WORKERS)],
        MEDSETTLE_LOG_FORMAT="json",
        MEDSETTLE_POLICY_DIR=str(tmp_path / "no-policies"),
    )
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        _kill_all(process)
        raise
    assert process.returncode == 1, stderr
    # Counted in the raw text: the workers write to the same stderr, so a parent's JSON line can
    # share a line with a worker's output when both write at once.
    assert len(re.findall(r'"event": ?"worker_died"', stderr)) == workers_module.RESTART_BUDGET + 1, stderr
    assert re.search(r'"event": ?"worker_restarts_exhausted"', stderr), stderr


async def test_a_port_already_in_use_is_refused(database_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_gateway(database_url, port, tmp_path, extra_args=["--workers", str(WORKERS)])
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _kill_all(process)
            raise
    assert process.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in stderr


async def test_every_worker_drains_and_a_second_sigterm_cuts_the_drain_short(database_url, tmp_path):
    gateway = await _start_workers(database_url, tmp_path, MEDSETTLE_SHUTDOWN_DRAIN_SECONDS="60")
    try:
        gateway.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        async with _fresh_connections() as session:
            draining: set[int] = set()
            while len(draining) < WORKERS:  # both fail readiness, both still answer during the drain
                assert time.monotonic() < deadline, f"only {draining} failed readiness within 20 s"
                async with session.get(f"{gateway.base}/readyz") as response:
                    if response.status == 503:
                        draining.add(int(response.headers[PID_HEADER]))
        started = time.monotonic()
        returncode, stderr = _stop(gateway, timeout=40)  # the second SIGTERM
    except BaseException:
        _kill_all(gateway.process)
        raise
    assert returncode == 0, stderr
    assert time.monotonic() - started < 20  # not the 60 s drain
