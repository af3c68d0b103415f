"""One terminal cannot stall the gateway: another terminal's latency while over-long bills arrive.

    .venv/bin/python benchmarks/overlong_bills.py
    .venv/bin/python benchmarks/overlong_bills.py --requests 2000 --concurrency 20 --json

A signed MessagePack bill of about 1 MiB holds some 30,000 lines. The gateway refuses it
with 413 ``too_many_lines``, and must do so without decoding the lines on its event loop,
or every other terminal waits behind it. This script starts a private database (as
``benchmarks/load.py``: a new database on ``DATABASE_URL``'s server, else an embedded
PostgreSQL), seeds the demo county (``adapters.demo.seed_demo``) with a fresh pepper and
key-encryption key, starts ``medsettle serve`` on a free port of 127.0.0.1 with
``MEDSETTLE_MAX_BODY_BYTES`` at 1 MiB, and times a victim terminal's signed
``GET /v1/clinics``, one request at a time, in three phases:

1. quiet: the victim alone;
2. bills: another terminal keeps ``--concurrency`` (20) over-long signed MessagePack bills in
   flight, each under the body limit, so each reaches the line check (expected: 413
   ``too_many_lines``);
3. big posts: the same number of unsigned 15 MiB POSTs to ``/v1/finance/reconciliation``
   (expected: 401 ``signature_missing``, before the body is read).

The attacker runs in a process of its own, so its signing and sending do not delay the
victim's client. Each phase stops after ``--requests`` victim requests or ``--phase-seconds``,
whichever comes first; the attacker stops with it. It prints per phase the victim's
p50/p95/p99/max, the ratio to the quiet phase, every answer the attacker got, the gateway's
RSS before and after, the load average, and a verdict: the p99 of each attack phase below
``--max-p99-ms`` (50) and every attacker answer the expected refusal. Exit status 0 on PASS,
1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import multiprocessing
import multiprocessing.synchronize
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for folder in (ROOT, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import load  # noqa: E402
import msgspec  # noqa: E402

from adapters import db, signing  # noqa: E402
from adapters.demo import demo_population, seed_demo  # noqa: E402
from adapters.terminal_keys import load_keys  # noqa: E402

MAX_BODY_BYTES = 1024 * 1024
BIG_POST_BYTES = 15 * 1024 * 1024
VICTIM = "term-V050"  # a village station reading the clinic list
ATTACKER = "term-C001"  # a county hospital's terminal sending over-long bills
ATTACK_TIMEOUT = 60.0  # seconds for one attacker request, answer included
CHUNK = 256 * 1024
ZEROS = memoryview(bytes(CHUNK))  # the unsigned posts' body, sent chunk by chunk


# ---------------------------------------------------------------- the attacker (a process of its own)


def over_long_bill(clinic_id: str, person_id: str, lines: int) -> bytes:
    """A MessagePack bill of ``lines`` valid, minimal lines (about 34 bytes each)."""
    line = {"code": "X", "name": "x", "category": "A", "amount": 1}
    body = msgspec.msgpack.encode(
        {
            "request_id": f"overlong-{secrets.token_hex(8)}",
            "clinic_id": clinic_id,
            "person_id": person_id,
            "visit_type": "outpatient",
            "service_date": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date().isoformat(),
            "items": [line] * lines,
        }
    )
    return body


async def _one_attack(host: str, port: int, head: bytes, body: bytes | None, body_size: int) -> tuple[str, float, int]:
    """Send one request on a fresh connection, the body in chunks while the answer is awaited.

    Returns ("<status> <code>", seconds, body bytes the socket took before the answer came).
    The rest of the body is not sent once the answer is in. A plain socket, not asyncio's
    streams: when the gateway closes a connection whose body it refused unread, sending
    fails, and a stream would then drop the answer already received; a socket still reads it.
    """
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sent = 0
    answered_after = -1
    view = memoryview(body) if body is not None else None

    async def send() -> None:
        nonlocal sent
        with contextlib.suppress(OSError):  # the gateway closed the connection: stop sending
            await loop.sock_sendall(sock, head)
            while sent < body_size and answered_after < 0:
                size = min(CHUNK, body_size - sent)
                await loop.sock_sendall(sock, view[sent : sent + size] if view is not None else ZEROS[:size])
                sent += size

    sender: asyncio.Task[None] | None = None
    received = bytearray()
    try:
        async with asyncio.timeout(ATTACK_TIMEOUT):
            await loop.sock_connect(sock, (host, port))
            sender = asyncio.create_task(send())
            while True:
                try:
                    chunk = await loop.sock_recv(sock, 65536)
                except OSError as error:  # a reset after the whole answer was read is the gateway closing
                    if not _answer_complete(received):
                        return f"connection error {type(error).__name__}", time.perf_counter() - started, sent
                    break
                if answered_after < 0 and chunk:
                    answered_after = sent
                received += chunk
                if not chunk or _answer_complete(received):
                    break
    except TimeoutError:
        return "no answer in time", time.perf_counter() - started, sent
    except OSError as error:
        return f"connection error {type(error).__name__}", time.perf_counter() - started, sent
    finally:
        answered_after = max(answered_after, 0)
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        sock.close()
    if not received:
        return "closed without an answer", time.perf_counter() - started, sent
    head_end = received.find(b"\r\n\r\n")
    status = int(received.split(b" ", 2)[1]) if head_end > 0 else 0
    code = ""
    with contextlib.suppress(ValueError, msgspec.DecodeError, AttributeError):
        code = msgspec.json.decode(bytes(received[head_end + 4 :])).get("code", "")
    return f"{status} {code}".strip(), time.perf_counter() - started, answered_after


def _answer_complete(received: bytearray) -> bool:
    """The head and a body as long as its Content-Length have arrived."""
    head_end = received.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = 0
    for line in bytes(received[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    return len(received) >= head_end + 4 + length


async def _attack(
    plan: dict[str, Any], stop: multiprocessing.synchronize.Event, ready: multiprocessing.synchronize.Event
) -> dict[str, Any]:
    host, port = plan["host"], plan["port"]
    kind = plan["kind"]
    bodies = [over_long_bill(plan["clinic_id"], plan["person_id"], plan["lines"]) for _ in range(plan["concurrency"])]
    answers: collections.Counter[str] = collections.Counter()
    seconds: list[float] = []
    sent_bytes: list[int] = []
    sent = 0
    deadline = time.monotonic() + plan["max_seconds"]

    def request(slot: int) -> tuple[bytes, bytes | None, int]:
        if kind == "bills":
            body = bodies[slot]
            path = "/v1/settlements"
            signed = signing.signed_headers(plan["key_id"], plan["secret"], "POST", path, body)
            lines = [f"POST {path} HTTP/1.1", "Content-Type: application/msgpack", f"Content-Length: {len(body)}"]
            lines += [f"{name}: {value}" for name, value in signed.items()]
            size: int = len(body)
            payload: bytes | None = body
        else:  # unsigned 15 MiB reconciliation lists
            path = "/v1/finance/reconciliation"
            lines = [f"POST {path} HTTP/1.1", "Content-Type: application/json", f"Content-Length: {BIG_POST_BYTES}"]
            size, payload = BIG_POST_BYTES, None
        lines += [f"Host: {host}:{port}", "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), payload, size

    every = plan["burst_every"]
    first_burst = time.monotonic()

    async def worker(slot: int) -> None:
        nonlocal sent
        burst = first_burst
        while not stop.is_set() and time.monotonic() < deadline and sent < plan["max_requests"]:
            if every > 0:  # bursts: every worker sends at the same tick, once per tick
                while (wait := burst - time.monotonic()) > 0 and not stop.is_set():
                    await asyncio.sleep(min(wait, 0.1))
                if stop.is_set():
                    break
                burst = max(burst + every, time.monotonic())
            sent += 1
            head, payload, size = request(slot)
            answer, took, body_sent = await _one_attack(host, port, head, payload, size)
            answers[answer] += 1
            seconds.append(took)
            sent_bytes.append(body_sent)

    ready.set()  # bodies built: the first requests go out now
    await asyncio.gather(*(worker(slot) for slot in range(plan["concurrency"])))
    return {
        "answers": dict(answers),
        "requests": sent,
        "seconds": seconds,
        "body_bytes_before_answer": sorted(sent_bytes),
        "ended_at": time.time(),
    }


def attacker_main(
    plan: dict[str, Any],
    stop: multiprocessing.synchronize.Event,
    ready: multiprocessing.synchronize.Event,
    results: Any,
) -> None:
    """Entry point of the attacker process: attack until ``stop`` is set, then report."""
    results.put(asyncio.run(_attack(plan, stop, ready)))


# ---------------------------------------------------------------- the victim and the phases


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)  # wall clock of each timed victim request
    victim_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0
    attack: dict[str, Any] | None = None
    expected: str | None = None
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def victim_loop(
    base_url: str, key_id: str, secret: str, phase: Phase, requests: int, max_seconds: float, pause: float = 0.0
) -> None:
    """Signed GET /v1/clinics, one at a time on one keep-alive connection, ``pause`` seconds apart,
    bounded in count and time."""
    path = "/v1/clinics"
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=30)
    started = time.monotonic()
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
        for _ in range(requests):
            if time.monotonic() - started > max_seconds:
                break
            if pause:
                await asyncio.sleep(pause)
            headers = signing.signed_headers(key_id, secret, "GET", path, b"")
            wall = time.time()
            begun = time.perf_counter()
            try:
                async with session.get(path, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                phase.victim_errors[type(error).__name__] += 1
                continue
            elapsed = (time.perf_counter() - begun) * 1000
            if status != 200:
                phase.victim_errors[f"HTTP {status}"] += 1
            else:
                phase.latencies_ms.append(elapsed)
                phase.started_at.append(wall)
    phase.seconds = time.monotonic() - started


def run_phase(
    args: argparse.Namespace,
    name: str,
    kind: str | None,
    gateway: subprocess.Popen[bytes],
    base_url: str,
    keys: dict[str, tuple[str, str, str]],
    person_id: str,
) -> Phase:
    phase = Phase(
        name, expected={"bills": "413 too_many_lines", "big posts": "401 signature_missing", None: None}[kind]
    )
    phase.rss_before_kib = rss_kib(gateway.pid)
    victim_key, victim_secret, _ = keys[VICTIM]
    process = None
    context = multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Event()
    results = context.Queue()
    if kind is not None:
        key_id, secret, clinic_id = keys[ATTACKER]
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        plan = {
            "kind": kind,
            "host": host,
            "port": int(port),
            "key_id": key_id,
            "secret": secret,
            "clinic_id": clinic_id,
            "person_id": person_id,
            "lines": args.lines,
            "concurrency": args.concurrency,
            "max_requests": args.max_attack_requests,
            "max_seconds": args.phase_seconds + 30,
            "burst_every": args.burst_every,
        }
        process = context.Process(target=attacker_main, args=(plan, stop, ready, results), daemon=True)
        process.start()
        ready.wait(60)  # the attacker's process has started and built its bodies
        time.sleep(args.attack_lead)  # the attack is under way before the first victim request
    try:
        asyncio.run(
            victim_loop(
                base_url,
                victim_key,
                victim_secret,
                phase,
                args.requests,
                args.phase_seconds,
                args.victim_pause_ms / 1000,
            )
        )
    finally:
        if process is not None:
            stop.set()
            try:
                phase.attack = results.get(timeout=ATTACK_TIMEOUT + 30)
            except Exception:  # queue.Empty: the attacker hung; it is ours, so end it
                phase.attack = {"answers": {"attacker did not report": 1}, "requests": 0, "seconds": []}
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(10)
    phase.rss_after_kib = rss_kib(gateway.pid)
    phase.loadavg = os.getloadavg()
    return phase


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- set-up


async def _seed(database_url: str, pepper: bytes, kek: bytes) -> dict[str, tuple[str, str, str]]:
    connection = await asyncpg.connect(database_url)
    try:
        await db.migrate(connection)
        await seed_demo(connection, pepper, kek)
        keys = await load_keys(connection, kek)
    finally:
        await connection.close()
    return {key.terminal_id: (key.key_id, key.secret, key.clinic_id) for key in keys.values() if key.secret}


@contextlib.contextmanager
def gateway_process(database_url: str, pepper: str, kek: bytes, out: Path) -> Any:
    """``medsettle serve`` on a free port of 127.0.0.1; stopped (only it) on the way out."""
    port = load.free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="medsettle-bench-data-"))
    # No rate limit (gateway_environment): the attacker must reach the line check on every bill, not be
    # throttled after its first 100.
    environment = load.gateway_environment(
        os.environ, database_url=database_url, port=port, pepper=pepper, kek=kek, data_dir=data_dir
    )
    environment["MEDSETTLE_MAX_BODY_BYTES"] = str(MAX_BODY_BYTES)
    for name in ("MEDSETTLE_FAULTS", "MEDSETTLE_WORKERS", "MEDSETTLE_MAX_LINES", "PROMETHEUS_MULTIPROC_DIR"):
        environment.pop(name, None)
    medsettle = (
        [str(load.BIN / "medsettle")] if (load.BIN / "medsettle").exists() else [sys.executable, "-m", "gateway.cli"]
    )
    log_path = out / "overlong-gateway.log"
    gateway = None
    try:
        with log_path.open("wb") as log:
            gateway = subprocess.Popen(
                [*medsettle, "serve"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        base_url = f"http://127.0.0.1:{port}"
        load.wait_ready(base_url, gateway, log_path)
        yield gateway, base_url
    finally:
        code = load.stop(gateway, load.STOP_TIMEOUT, "the gateway")
        if code not in (None, 0):
            print(f"the gateway exited with status {code}; its log ends:\n{load.tail(log_path)}", file=sys.stderr)
        shutil.rmtree(data_dir, ignore_errors=True)


# ---------------------------------------------------------------- report


def median_mib(attack: dict[str, Any]) -> float:
    sizes = attack.get("body_bytes_before_answer") or [0]
    return statistics.median(sizes) / 2**20


def report(phases: list[Phase], args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    quiet = phases[0]
    print()
    header = (
        f"{'phase':<11} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'p50 x':>6} {'p99 x':>6} {'RSS MiB before-after':>21} {'load avg':>16}"
    )
    print(header)
    print("-" * len(header))
    for phase in phases:
        p50, p99 = phase.percentile(50), phase.percentile(99)
        print(
            f"{phase.name:<11} {len(phase.latencies_ms):>8,} {sum(phase.victim_errors.values()):>6} "
            f"{p50:>7.2f} {phase.percentile(95):>7.2f} {p99:>7.2f} {max(phase.latencies_ms, default=0):>7.1f} "
            f"{p50 / quiet.percentile(50):>6.2f} {p99 / quiet.percentile(99):>6.2f} "
            f"{phase.rss_before_kib / 1024:>9.1f} - {phase.rss_after_kib / 1024:>7.1f}  "
            f"{' / '.join(f'{value:.2f}' for value in phase.loadavg):>16}"
        )
    print()
    problems = []
    for phase in phases:
        if phase.victim_errors:
            problems.append(f"{phase.name}: the victim got {dict(phase.victim_errors)}")
        if phase.attack is None:
            continue
        answers = phase.attack["answers"]
        took = sorted(phase.attack["seconds"])
        median = statistics.median(took) * 1000 if took else float("nan")
        print(
            f"{phase.name}: the attacker sent {phase.attack['requests']:,} requests, {args.concurrency} at a time"
            + (f", a burst every {args.burst_every:g} s; " if args.burst_every > 0 else " in a closed loop; ")
            + "answers: "
            + ", ".join(f"{count:,} x {answer}" for answer, count in sorted(answers.items()))
            + f"; median {median:.0f} ms per request; body sent before the answer: median "
            f"{median_mib(phase.attack):.2f} MiB"
        )
        after = sum(1 for wall in phase.started_at if wall > phase.attack.get("ended_at", float("inf")))
        if after:
            problems.append(
                f"{phase.name}: the attack ended before the phase did ({after} victim requests after it; "
                "raise --max-attack-requests)"
            )
        wrong = {answer: count for answer, count in answers.items() if answer != phase.expected}
        if wrong:
            problems.append(f"{phase.name}: the attacker got answers other than {phase.expected}: {wrong}")
        if not answers:
            problems.append(f"{phase.name}: the attacker got no answers")
        if phase.percentile(99) >= args.max_p99_ms:
            problems.append(f"{phase.name}: victim p99 {phase.percentile(99):.1f} ms, not below {args.max_p99_ms:g} ms")
    document = {
        "max_p99_ms": args.max_p99_ms,
        "lines": args.lines,
        "concurrency": args.concurrency,
        "phases": [
            {
                **{k: v for k, v in asdict(phase).items() if k not in ("latencies_ms", "started_at", "victim_errors")},
                "victim_requests": len(phase.latencies_ms),
                "victim_errors": dict(phase.victim_errors),
                "p50_ms": phase.percentile(50),
                "p95_ms": phase.percentile(95),
                "p99_ms": phase.percentile(99),
                "max_ms": max(phase.latencies_ms, default=0),
            }
            for phase in phases
        ],
        "problems": problems,
        "passed": not problems,
    }
    for entry in document["phases"]:
        if entry.get("attack"):
            took = sorted(entry["attack"]["seconds"])
            entry["attack"]["body_mib_before_answer_median"] = median_mib(entry["attack"])
            entry["attack"] = {
                k: v for k, v in entry["attack"].items() if k not in ("seconds", "body_bytes_before_answer")
            }
            entry["attack"]["median_ms"] = statistics.median(took) * 1000 if took else None
    attacks = [phase for phase in phases if phase.attack is not None]
    worst = max((phase.percentile(99) for phase in attacks), default=float("nan"))
    print()
    print(
        f"verdict: victim p99 under attack {worst:.1f} ms (quiet {quiet.percentile(99):.1f} ms) against "
        f"< {args.max_p99_ms:g} ms, attacker answers as expected: "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems))
    )
    return problems, document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="victim requests per phase (default 1000)")
    parser.add_argument("--phase-seconds", type=float, default=60.0, help="most seconds per phase (default 60)")
    parser.add_argument("--concurrency", type=int, default=20, help="attacker requests in flight (default 20)")
    parser.add_argument("--lines", type=int, default=30_000, help="lines per over-long bill (default 30000)")
    parser.add_argument(
        "--max-attack-requests",
        type=int,
        default=100_000,
        help="most attacker requests per phase (default 100000; the phase's time bounds it first)",
    )
    parser.add_argument(
        "--burst-every",
        type=float,
        default=1.0,
        help="the attacker sends --concurrency requests at once every this many seconds (default 1); "
        "0: a closed loop, the next as soon as one is answered",
    )
    parser.add_argument(
        "--victim-pause-ms", type=float, default=10.0, help="pause between the victim's requests (default 10)"
    )
    parser.add_argument("--attack-lead", type=float, default=1.0, help="seconds the attack runs before the victim")
    parser.add_argument("--max-p99-ms", type=float, default=50.0, help="the verdict's bound (default 50)")
    parser.add_argument("--only", default="quiet,bills,big posts", help="phases, comma-separated (quiet always runs)")
    parser.add_argument("--json", action="store_true", help="also write benchmarks/out/overlong-<time>.json")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    if args.requests < 10 or args.concurrency < 1 or args.lines < 1:
        parser.error("--requests must be at least 10, --concurrency and --lines at least 1")
    body_size = len(over_long_bill("C001", "0" * 18, args.lines))
    if body_size > MAX_BODY_BYTES:
        parser.error(f"--lines {args.lines}: the bill is {body_size:,} bytes, over the {MAX_BODY_BYTES:,}-byte limit")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_hex(16)
    kek = secrets.token_bytes(32)
    person_id = demo_population()[0].national_id
    load_average = os.getloadavg()
    print(
        f"over-long bills: {args.lines:,} lines, {body_size:,} bytes of MessagePack (limit {MAX_BODY_BYTES:,}); "
        f"attacker {ATTACKER}, {args.concurrency} requests at a time; victim {VICTIM}, signed GET /v1/clinics, "
        f"one at a time {args.victim_pause_ms:g} ms apart, up to {args.requests:,} per phase "
        f"or {args.phase_seconds:g} s; "
        + (f"attack bursts every {args.burst_every:g} s; " if args.burst_every > 0 else "attack in a closed loop; ")
        + f"{os.cpu_count()} CPUs, load average {' / '.join(f'{v:.2f}' for v in load_average)}",
        flush=True,
    )
    wanted = [name.strip() for name in args.only.split(",")]
    phases: list[Phase] = []
    with load.private_database() as database_url:
        keys = asyncio.run(_seed(database_url, pepper.encode(), kek))
        with gateway_process(database_url, pepper, kek, out) as (gateway, base_url):
            print(f"gateway: {base_url} (pid {gateway.pid})", flush=True)
            # Warm up: connections, the key cache, the first decode.
            run_phase(
                argparse.Namespace(**{**vars(args), "requests": 50}),
                "warm-up",
                None,
                gateway,
                base_url,
                keys,
                person_id,
            )
            for name, kind in (("quiet", None), ("bills", "bills"), ("big posts", "big posts")):
                if name != "quiet" and name not in wanted:
                    continue
                phases.append(run_phase(args, name, kind, gateway, base_url, keys, person_id))
                print(
                    f"  {name}: {len(phases[-1].latencies_ms):,} victim requests in {phases[-1].seconds:.1f} s, "
                    f"p99 {phases[-1].percentile(99):.1f} ms",
                    flush=True,
                )
    problems, document = report(phases, args)
    document["load_average_at_start"] = load_average
    if args.json:
        path = out / f"overlong-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        print(f"written to {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
