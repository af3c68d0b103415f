"""One command for a load run: a database, the synthetic county, a gateway, locust, then the checks.

    .venv/bin/python benchmarks/load.py --users 32 --spawn-rate 32 --run-time 60s
    .venv/bin/python benchmarks/load.py --users 32 --max-error-rate 0.001 --max-p99-ms 50
    .venv/bin/python benchmarks/load.py --web                      # locust's web UI on 127.0.0.1:8089

In order, and undone in reverse in ``finally`` whatever happens:

1. a private PostgreSQL database: a new database on ``DATABASE_URL``'s server when it is set
   (dropped afterwards), else an embedded server (``adapters.db.start_embedded``) in a
   temporary folder;
2. the migrations and the synthetic county (``benchmarks/county.py``), with a fresh pepper,
   key-encryption key and one signing key per terminal;
3. ``medsettle serve`` on a free port of 127.0.0.1, with a per-terminal rate limit high
   enough never to throttle the benchmark, no card-reader port and warning-level logs
   (``--workers N`` is passed on only when given);
4. locust, headless, with ``--csv`` into ``--out`` (``load_stats.csv``, ``load_failures.csv``,
   ``load_stats_history.csv``), or its web UI with ``--web``;
5. ``adapters.check.check_invariants`` over the whole database, and a look-up of every
   settlement and reversal locust saw acknowledged.

It prints a summary and writes it to ``<out>/load-summary.json``. The exit status is 0
when requests were made, the error rate and the p99 over all requests are within their
thresholds, every invariant holds and nothing acknowledged is missing; otherwise 1.
Arguments it does not know are passed to locust (``-- --weight-retry 5``).

**Any deployment** (staging, a county's own servers), by URL, with no database or gateway
started here. Once, load the synthetic county into the deployment's database with the
deployment's own pepper and key-encryption key, and keep the terminal keys file it writes
(mode 0600: it holds signing secrets):

    DATABASE_URL=postgresql://... MEDSETTLE_ID_PEPPER=... MEDSETTLE_TERMINAL_KEY_KEY=... \
        .venv/bin/python benchmarks/load.py --write-keys county-keys.json --people 20000

Then run against it as often as wanted; with ``--database-url`` (a read-only login is
enough) the invariants and the acknowledgement check run as above, without it they are
skipped and the summary says so:

    .venv/bin/python benchmarks/load.py --url https://staging.example --keys county-keys.json \
        --users 32 --run-time 60s [--database-url postgresql://reader@.../medsettle]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for folder in (ROOT, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import asyncpg  # noqa: E402
import county as synthetic  # noqa: E402

from adapters import db  # noqa: E402
from adapters.check import check_invariants  # noqa: E402

BIN = Path(sys.executable).parent
READY_TIMEOUT = 90.0  # seconds for the gateway to answer /readyz (a busy 2-core machine starts slowly)
STOP_TIMEOUT = 40.0  # seconds for the gateway to drain (MEDSETTLE_SHUTDOWN_TIMEOUT is 20) before SIGKILL
LOCUST_GRACE = 120.0  # seconds past --run-time before a headless locust is killed
REQUEST_TYPES = ("settle", "eligibility", "quote", "settle retry", "reversal")


# ---------------------------------------------------------------- arguments


def parser(description: str = __doc__.split("\n\n")[0]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    load = parser.add_argument_group("load")
    load.add_argument("--users", type=int, default=32, help="simulated terminals (default %(default)s)")
    load.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    load.add_argument(
        "--run-time",
        default=None,
        help="e.g. 30s, 10m, 1h30m (load.py: 60s, or until stopped with --web; soak.py: 10m)",
    )
    load.add_argument("--think-time-ms", type=int, default=0, help="pause between a terminal's requests (default 0)")
    load.add_argument("--web", action="store_true", help="locust's web UI on 127.0.0.1 instead of a headless run")
    load.add_argument("--web-port", type=int, default=8089)
    load.add_argument("--web-max-minutes", type=float, default=240, help="stop a --web session after this long")
    gates = parser.add_argument_group("thresholds")
    gates.add_argument("--max-error-rate", type=float, default=0.001, help="failures / requests (default 0.001)")
    gates.add_argument("--max-p99-ms", type=float, default=None, help="p99 over all requests, ms (default: not gated)")
    world = parser.add_argument_group("county")
    world.add_argument("--seed", type=int, default=1)
    world.add_argument("--people", type=int, default=20_000)
    world.add_argument("--villages", type=int, default=100)
    world.add_argument("--townships", type=int, default=13)
    world.add_argument("--counties", type=int, default=3, help="county hospitals")
    world.add_argument("--scale", type=int, default=1, help="multiply clinics and people (10: a small province)")
    gateway = parser.add_argument_group("gateway")
    gateway.add_argument("--workers", type=int, default=None, help="passed to `medsettle serve --workers` if given")
    gateway.add_argument("--pool-max", type=int, default=None, help="MEDSETTLE_POOL_MAX for the gateway")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="CSV, logs and summary (default benchmarks/out)")
    return parser


def add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for a deployment this runner does not start (load.py only; soak.py starts its own)."""
    deployment = parser.add_argument_group("an existing deployment (no database or gateway started here)")
    deployment.add_argument("--url", help="the gateway's base URL, e.g. https://staging.example:8443")
    deployment.add_argument("--keys", type=Path, help="terminal keys file written by --write-keys (with --url)")
    deployment.add_argument(
        "--database-url",
        help="with --url: the deployment's database, for the invariant and acknowledgement checks (else skipped)",
    )
    deployment.add_argument(
        "--write-keys",
        type=Path,
        metavar="FILE",
        help="load the county into DATABASE_URL with MEDSETTLE_ID_PEPPER and MEDSETTLE_TERMINAL_KEY_KEY from the"
        " environment (the deployment's own), write the terminal keys to FILE and exit",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.users < 1 or args.scale < 1:
        parser.error("--users and --scale must be at least 1")
    if args.run_time is not None:
        try:
            parse_run_time(args.run_time)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))


def parse_run_time(text: str) -> float:
    """Locust's run-time format: 90, 90s, 10m, 1h30m -> seconds."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"run time {text!r}: use e.g. 30s, 10m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


# ---------------------------------------------------------------- processes and database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def private_database() -> Iterator[str]:
    """A database of our own: created on DATABASE_URL's server and dropped after, or an embedded server."""
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        name = f"medsettle_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(_execute(server_url, f'CREATE DATABASE "{name}"'))
        try:
            yield _with_database(server_url, name)
        finally:
            asyncio.run(_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    folder = Path(tempfile.mkdtemp(prefix="medsettle-bench-pg-"))
    server = None
    try:
        url, server = db.start_embedded(folder)
        yield url
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def stop(process: subprocess.Popen[Any] | None, timeout: float, name: str) -> int | None:
    """SIGTERM one process we started; SIGKILL its session (only our processes) if it outlives ``timeout``."""
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in {timeout:g} s: killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # started with start_new_session: the group is ours alone
        return process.wait(10)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (gateway workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


# ---------------------------------------------------------------- the bench


@dataclass
class Bench:
    """A loaded database and a running gateway, ready for locust."""

    out: Path
    database_url: str | None  # None: a deployment whose database this runner cannot reach
    base_url: str
    county_file: Path
    acks_file: Path
    gateway: subprocess.Popen[bytes] | None  # None: a gateway started by someone else
    gateway_log: Path | None
    loaded: dict[str, Any] = field(default_factory=dict)


async def _prepare(database_url: str, county: synthetic.County, pepper: bytes, kek: bytes) -> dict[str, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        await db.migrate(connection)
        keys = await synthetic.load_county(connection, county, pepper=pepper, key_encryption_key=kek)
        return {"keys": keys, "seconds": time.perf_counter() - started}
    finally:
        await connection.close()


def _gateway_supports_workers(medsettle: list[str]) -> bool:
    result = subprocess.run([*medsettle, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False)
    return "--workers" in result.stdout


def gateway_environment(
    base: Mapping[str, str], *, database_url: str, port: int, pepper: str, kek: bytes, data_dir: Path
) -> dict[str, str]:
    """``base`` with what a benchmark's ``medsettle serve`` runs on: its database, a port of 127.0.0.1 (no
    card-reader listener), the pepper and key-encryption key the county was loaded with, its data folder,
    warnings only as JSON lines, and no per-terminal rate limit."""
    return {
        **base,
        "DATABASE_URL": database_url,
        "MEDSETTLE_HOST": "127.0.0.1",
        "MEDSETTLE_PORT": str(port),
        "MEDSETTLE_READER_PORT": "0",
        "MEDSETTLE_ID_PEPPER": pepper,
        "MEDSETTLE_TERMINAL_KEY_KEY": kek.hex(),
        "MEDSETTLE_DATA_DIR": str(data_dir),
        "MEDSETTLE_LOG_LEVEL": "warning",
        "MEDSETTLE_LOG_FORMAT": "json",
        # The per-terminal limiter (50/s, burst 100) would throttle a closed-loop terminal, or an attacker
        # that must reach the check under test on every request: lift it.
        "MEDSETTLE_RATE_LIMIT_PER_SECOND": "1000000",
        "MEDSETTLE_RATE_LIMIT_BURST": "1000000",
    }


@contextlib.contextmanager
def bench(args: argparse.Namespace, *, prefix: str = "load") -> Iterator[Bench]:
    """Database, county and gateway for one run; everything started here is stopped in ``finally``."""
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = {name: getattr(args, name) * args.scale for name in ("villages", "townships", "counties", "people")}
    started = time.perf_counter()
    county = synthetic.build_county(args.seed, **sizes)
    print(
        f"county: seed {args.seed}, {len(county.clinics)} clinics ({sizes['villages']} village, "
        f"{sizes['townships']} township, {sizes['counties']} county), {len(county.people):,} people "
        f"(built in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    pepper = secrets.token_hex(16)
    kek = secrets.token_bytes(32)
    medsettle = [str(BIN / "medsettle")] if (BIN / "medsettle").exists() else [sys.executable, "-m", "gateway.cli"]
    if args.workers is not None and not _gateway_supports_workers(medsettle):
        raise SystemExit("--workers: this gateway's `medsettle serve` has no --workers option")
    gateway: subprocess.Popen[bytes] | None = None
    data_dir = Path(tempfile.mkdtemp(prefix="medsettle-bench-data-"))  # the gateway's MEDSETTLE_DATA_DIR
    with private_database() as database_url:
        try:
            loaded = asyncio.run(_prepare(database_url, county, pepper.encode(), kek))
            print(f"database: migrated and loaded in {loaded['seconds']:.1f} s", flush=True)
            county_file = out / f"{prefix}-county.json"
            acks_file = out / f"{prefix}-acks.csv"
            write_county_file(county_file, county_document(args.seed, sizes, county, loaded["keys"]), acks_file)
            port = free_port()
            environment = gateway_environment(
                os.environ, database_url=database_url, port=port, pepper=pepper, kek=kek, data_dir=data_dir
            )
            environment.pop("MEDSETTLE_FAULTS", None)
            if args.pool_max is not None:
                environment["MEDSETTLE_POOL_MAX"] = str(args.pool_max)
            command = [*medsettle, "serve"]
            if args.workers is not None:
                command += ["--workers", str(args.workers)]
                environment["MEDSETTLE_WORKERS"] = str(args.workers)
            gateway_log = out / f"{prefix}-gateway.log"
            with gateway_log.open("wb") as log:
                gateway = subprocess.Popen(
                    command,
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,  # Ctrl-C in the runner's terminal does not reach it
                )
            base_url = f"http://127.0.0.1:{port}"
            wait_ready(base_url, gateway, gateway_log)
            print(f"gateway: {base_url} (pid {gateway.pid}, log {gateway_log})", flush=True)
            yield Bench(out, database_url, base_url, county_file, acks_file, gateway, gateway_log, loaded)
        finally:
            code = stop(gateway, STOP_TIMEOUT, "the gateway")
            if code not in (None, 0):
                print(f"the gateway exited with status {code}; its log ends:\n{tail(out / f'{prefix}-gateway.log')}")
            shutil.rmtree(data_dir, ignore_errors=True)


def county_document(
    seed: int, sizes: dict[str, int], county: synthetic.County, keys: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """What the harness needs of a loaded county: how to rebuild it, and each terminal's key and clinic."""
    return {
        "county": {"seed": seed, **sizes},
        "terminals": {
            terminal_id: {
                "key_id": key_id,
                "secret": secret,
                "clinic_id": county.clinic_by_terminal[terminal_id].clinic_id,
            }
            for terminal_id, (key_id, secret) in sorted(keys.items())
        },
    }


def write_county_file(path: Path, document: dict[str, Any], acks_file: Path | None) -> None:
    """The file locustfile.py reads, for one run: ``document`` with a fresh run token (request ids differ
    from any earlier run's) and where to append acknowledgements; mode 0600, as it holds terminal secrets."""
    if acks_file is not None:
        acks_file.write_text("", encoding="utf-8")
    path.touch(mode=0o600)
    path.chmod(0o600)
    run = {"run": secrets.token_hex(8), "acks": str(acks_file) if acks_file is not None else ""}
    path.write_text(json.dumps({**document, **run}, indent=1), encoding="utf-8")


def write_keys(args: argparse.Namespace) -> int:
    """``--write-keys``: the synthetic county into a deployment's database, under its own secrets."""
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    pepper = os.environ.get("MEDSETTLE_ID_PEPPER", "")
    kek_hex = os.environ.get("MEDSETTLE_TERMINAL_KEY_KEY", "")
    if not database_url or not pepper or len(kek_hex) != 64:
        raise SystemExit(
            "--write-keys needs DATABASE_URL (or --database-url), MEDSETTLE_ID_PEPPER and MEDSETTLE_TERMINAL_KEY_KEY"
            " (64 hex characters): the deployment's own, so its gateway knows the people and the keys"
        )
    sizes = {name: getattr(args, name) * args.scale for name in ("villages", "townships", "counties", "people")}
    county = synthetic.build_county(args.seed, **sizes)
    loaded = asyncio.run(_prepare(database_url, county, pepper.encode(), bytes.fromhex(kek_hex)))
    write_county_file(args.write_keys, county_document(args.seed, sizes, county, loaded["keys"]), None)
    print(
        f"loaded {len(county.clinics)} clinics and {len(county.people):,} people in {loaded['seconds']:.1f} s;"
        f" {len(loaded['keys'])} terminal keys in {args.write_keys} (keep it secret)"
    )
    return 0


@contextlib.contextmanager
def deployment(args: argparse.Namespace, *, prefix: str = "load") -> Iterator[Bench]:
    """A gateway someone else runs, at ``--url``, with the terminals of ``--keys``; nothing to stop after."""
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    document = json.loads(args.keys.read_text(encoding="utf-8"))
    document = {"county": document["county"], "terminals": document["terminals"]}
    county_file = out / f"{prefix}-county.json"
    acks_file = out / f"{prefix}-acks.csv"
    write_county_file(county_file, document, acks_file)
    base_url = args.url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=10) as response:
            print(f"gateway: {base_url} (ready: {response.status})", flush=True)
    except OSError as error:  # refused, unresolvable, or /readyz answering 503 (HTTPError)
        raise SystemExit(f"the gateway at {base_url} is not ready: {error}") from None
    yield Bench(out, args.database_url, base_url, county_file, acks_file, None, None)


def wait_ready(
    base_url: str, process: subprocess.Popen[Any], log: Path, *, path: str = "/readyz", name: str = "the gateway"
) -> None:
    """Wait for ``process`` to answer 200 at ``path``; end the run with the end of its log if it exits or is not
    ready in time. The insurer simulator is ready when its control port answers at /sim/faults."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode}; its log ends:\n{tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base_url}{path}", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{name} was not ready in {READY_TIMEOUT:g} s; its log ends:\n{tail(log)}")


# ---------------------------------------------------------------- locust


def locust_command(args: argparse.Namespace, run: Bench, prefix: str, extra: list[str]) -> list[str]:
    locust = str(BIN / "locust") if (BIN / "locust").exists() else "locust"
    command = [
        locust,
        "-f",
        str(HERE / "locustfile.py"),
        "--host",
        run.base_url,
        "--county-file",
        str(run.county_file),
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate if args.spawn_rate is not None else args.users),
        "--think-time-ms",
        str(args.think_time_ms),
        "--csv",
        str(run.out / prefix),
        "--csv-full-history",
        "--final-stats",
        str(run.out / f"{prefix}-final-stats.json"),
        "--stop-timeout",
        "10",  # let in-flight requests finish, so what the gateway settled is acknowledged
    ]
    if args.web:
        command += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port)]
        if args.run_time:
            command += ["--run-time", args.run_time]
    else:
        command += ["--headless", "--only-summary", "--run-time", args.run_time or "60s"]
    return command + extra


def run_locust(
    args: argparse.Namespace,
    run: Bench,
    extra: list[str],
    *,
    prefix: str = "load",
    every: float = 10.0,
    on_tick: Callable[[float], None] | None = None,
) -> tuple[int, float]:
    """Run locust to its end (or Ctrl-C with --web), calling ``on_tick(elapsed)`` every ``every`` seconds.
    Returns locust's exit status and how long it ran."""
    limit = args.web_max_minutes * 60 if args.web else parse_run_time(args.run_time or "60s") + LOCUST_GRACE
    log_path = run.out / f"{prefix}-locust.log"
    (run.out / f"{prefix}-final-stats.json").unlink(missing_ok=True)  # never read an earlier run's figures
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            locust_command(args, run, prefix, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "MEDSETTLE_BENCH_COUNTY": str(run.county_file)},
            start_new_session=True,
        )
        if args.web:
            print(f"locust web UI: http://127.0.0.1:{args.web_port}  (Ctrl-C here to stop and check)", flush=True)
        next_tick = started + every
        try:
            while process.poll() is None:
                now = time.monotonic()
                if now - started > limit:
                    print(f"locust still running after {limit:g} s: stopping it", file=sys.stderr)
                    break
                if on_tick is not None and now >= next_tick:
                    next_tick += every
                    on_tick(now - started)
                time.sleep(min(0.5, max(0.05, next_tick - time.monotonic())))
        except KeyboardInterrupt:
            print("\nstopping locust ...", file=sys.stderr)
        finally:
            stop(process, 60, "locust")
    if process.returncode not in (0, 1):  # 1 is locust's "there were failures"; the summary judges those
        print(f"locust exited with status {process.returncode}; its log ends:\n{tail(log_path)}", file=sys.stderr)
    return process.returncode, time.monotonic() - started


# ---------------------------------------------------------------- checks and summary


@dataclass
class Verification:
    violations: list[dict[str, str]]
    acknowledged_settlements: int
    acknowledged_reversals: int
    missing_settlements: list[str]
    missing_reversals: list[str]
    settlements_in_database: int
    reversals_in_database: int


def read_acks(path: Path) -> tuple[set[str], dict[str, str]]:
    settlements: set[str] = set()
    reversals: dict[str, str] = {}  # reversal_id -> settlement_id
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as file:
        for line in file:
            kind, _, identifier = line.strip().partition(",")
            if kind == "settlement":
                settlements.add(identifier)
            elif kind == "reversal":
                settlement_id, _, reversal_id = identifier.partition(" ")
                reversals[reversal_id] = settlement_id
    return settlements, reversals


async def _verify(database_url: str, acks: Path) -> Verification:
    settlements, reversals = read_acks(acks)
    connection = await asyncpg.connect(database_url)
    try:
        violations = await check_invariants(connection)
        found = {
            str(row[0])
            for row in await connection.fetch(
                "SELECT settlement_id FROM settlements WHERE settlement_id = ANY($1::uuid[])", list(settlements)
            )
        }
        found_reversals = {
            (str(row[0]), str(row[1]))
            for row in await connection.fetch(
                "SELECT reversal_id, settlement_id FROM reversals WHERE reversal_id = ANY($1::uuid[])",
                [reversal_id for reversal_id in reversals if reversal_id and reversal_id != "None"],
            )
        }
        in_database = await connection.fetchval("SELECT count(*) FROM settlements")
        reversals_in_database = await connection.fetchval("SELECT count(*) FROM reversals")
    finally:
        await connection.close()
    return Verification(
        violations=[{"rule": item.rule, "detail": item.detail} for item in violations],
        acknowledged_settlements=len(settlements),
        acknowledged_reversals=len(reversals),
        missing_settlements=sorted(settlements - found),
        missing_reversals=sorted(r for r, s in reversals.items() if (r, s) not in found_reversals),
        settlements_in_database=in_database,
        reversals_in_database=reversals_in_database,
    )


def verify(run: Bench) -> Verification | None:
    """The invariants and the acknowledgement check, or None without access to the database."""
    if run.database_url is None:
        return None
    return asyncio.run(_verify(run.database_url, run.acks_file))


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def read_stats(out: Path, prefix: str) -> dict[str, dict[str, float]]:
    """Per request name (and "Aggregated"): counts, rate and percentiles, from the harness's final JSON,
    else from locust's ``<prefix>_stats.csv`` (written every second, so it may miss the last one)."""
    stats: dict[str, dict[str, float]] = {}
    final = out / f"{prefix}-final-stats.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        for entry in json.loads(final.read_text(encoding="utf-8"))["entries"]:
            name = entry.pop("name")
            stats[name] = {key: float(value or 0) for key, value in entry.items()}
        return stats
    path = out / f"{prefix}_stats.csv"
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as file:
        for row in csv.DictReader(file):
            stats[row["Name"]] = {
                "requests": _number(row["Request Count"]),
                "failures": _number(row["Failure Count"]),
                "rps": _number(row["Requests/s"]),
                "p50_ms": _number(row["50%"]),
                "p95_ms": _number(row["95%"]),
                "p99_ms": _number(row["99%"]),
                "max_ms": _number(row["Max Response Time"]),
            }
    return stats


def read_failures(out: Path, prefix: str) -> list[tuple[str, str, int]]:
    failures = []
    with contextlib.suppress(FileNotFoundError, ValueError):
        errors = json.loads((out / f"{prefix}-final-stats.json").read_text(encoding="utf-8"))["errors"]
        failures = [(error["name"], error["error"], int(error["occurrences"])) for error in errors]
        return sorted(failures, key=lambda item: -item[2])
    path = out / f"{prefix}_failures.csv"
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as file:
        for row in csv.DictReader(file):
            failures.append((row["Name"], row["Error"], int(_number(row["Occurrences"]))))
    return sorted(failures, key=lambda item: -item[2])


def _acknowledged_rate(figures: dict[str, float] | None) -> float:
    """Settles per second that succeeded: locust's rate for the name, less the failed share."""
    if not figures or not figures["requests"]:
        return 0.0
    return figures["rps"] * (figures["requests"] - figures["failures"]) / figures["requests"]


def summarise(
    args: argparse.Namespace, run: Bench, prefix: str, seconds: float, verification: Verification | None
) -> tuple[dict[str, Any], list[str]]:
    """The summary document and the list of reasons the run failed (empty when it passed)."""
    stats = read_stats(run.out, prefix)
    total = stats.get("Aggregated", {"requests": 0.0, "failures": 0.0, "rps": 0.0, "p99_ms": 0.0})
    requests, failures = int(total["requests"]), int(total["failures"])
    error_rate = failures / requests if requests else 0.0
    problems = []
    if requests == 0:
        problems.append("no requests were made")
    if error_rate > args.max_error_rate:
        problems.append(f"error rate {error_rate:.4%} above {args.max_error_rate:.4%}")
    if args.max_p99_ms is not None and total["p99_ms"] > args.max_p99_ms:
        problems.append(f"p99 {total['p99_ms']:g} ms above {args.max_p99_ms:g} ms")
    if verification is not None and verification.violations:
        problems.append(f"{len(verification.violations)} invariant violations")
    if verification is not None and (verification.missing_settlements or verification.missing_reversals):
        problems.append(
            f"{len(verification.missing_settlements)} acknowledged settlements and "
            f"{len(verification.missing_reversals)} reversals missing from the database"
        )
    summary = {
        "url": run.base_url,
        "database_checked": verification is not None,
        "users": args.users,
        "think_time_ms": args.think_time_ms,
        "workers": args.workers,
        "run_seconds": round(seconds, 1),
        "requests": requests,
        "failures": failures,
        "error_rate": error_rate,
        "requests_per_second": total["rps"],
        "settlements_per_second": _acknowledged_rate(stats.get("settle")),
        "by_type": {name: figures for name, figures in stats.items()},
        "top_failures": [{"name": n, "error": e, "count": c} for n, e, c in read_failures(run.out, prefix)[:10]],
        **_checked(run, verification),
        "thresholds": {"max_error_rate": args.max_error_rate, "max_p99_ms": args.max_p99_ms},
        "passed": not problems,
        "problems": problems,
    }
    return summary, problems


def _checked(run: Bench, verification: Verification | None) -> dict[str, Any]:
    """The summary's database figures; without the database, what was acknowledged and None for the rest."""
    if verification is None:
        settlements, reversals = read_acks(run.acks_file)
        return {
            "invariant_violations": None,
            "acknowledged_settlements": len(settlements),
            "acknowledged_reversals": len(reversals),
            "acknowledged_but_missing": None,
            "missing_examples": [],
            "settlements_in_database": None,
            "reversals_in_database": None,
        }
    return {
        "invariant_violations": verification.violations,
        "acknowledged_settlements": verification.acknowledged_settlements,
        "acknowledged_reversals": verification.acknowledged_reversals,
        "acknowledged_but_missing": len(verification.missing_settlements) + len(verification.missing_reversals),
        "missing_examples": (verification.missing_settlements + verification.missing_reversals)[:10],
        "settlements_in_database": verification.settlements_in_database,
        "reversals_in_database": verification.reversals_in_database,
    }


def print_summary(summary: dict[str, Any]) -> None:
    think = f", think time {summary['think_time_ms']} ms" if summary["think_time_ms"] else ", no think time"
    print()
    print(
        f"offered load: {summary['users']} terminals in a closed loop{think}"
        + (f", gateway workers {summary['workers']}" if summary["workers"] else "")
        + f"; ran {summary['run_seconds']:g} s"
    )
    print()
    header = f"{'request':<14} {'requests':>9} {'failures':>9} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    print(header)
    print("-" * len(header))
    names = [name for name in REQUEST_TYPES if name in summary["by_type"]]
    names += sorted(set(summary["by_type"]) - set(names) - {"Aggregated"})
    for name in [*names, "Aggregated"]:
        figures = summary["by_type"].get(name)
        if figures is None:
            continue
        label = "all" if name == "Aggregated" else name
        print(
            f"{label:<14} {int(figures['requests']):>9,} {int(figures['failures']):>9,} {figures['rps']:>8.1f}"
            f" {figures['p50_ms']:>7g} {figures['p95_ms']:>7g} {figures['p99_ms']:>7g}"
        )
    print()
    print(
        f"requests {summary['requests']:,}, failures {summary['failures']:,} ({summary['error_rate']:.3%}), "
        f"throughput {summary['requests_per_second']:.1f} req/s"
    )
    for failure in summary["top_failures"][:5]:
        print(f"  failure: {failure['count']:>6,} x {failure['name']}: {failure['error']}")
    acknowledged = (
        f"acknowledged: {summary['acknowledged_settlements']:,} settlements, "
        f"{summary['acknowledged_reversals']:,} reversals"
    )
    if summary.get("database_checked", True):
        print(
            f"{acknowledged}; in the database: "
            f"{summary['settlements_in_database']:,} settlements, {summary['reversals_in_database']:,} reversals"
        )
        print(f"acknowledged but missing: {summary['acknowledged_but_missing']}")
        print(f"invariant violations: {len(summary['invariant_violations'])}")
        for violation in summary["invariant_violations"][:10]:
            print(f"  {violation['rule']}: {violation['detail']}")
    else:
        print(acknowledged)
        print("acknowledgement and invariant checks: skipped (no --database-url: the database is out of reach)")
    print()
    print("PASS" if summary["passed"] else "FAIL: " + "; ".join(summary["problems"]))


def main(argv: list[str] | None = None) -> int:
    arguments = parser()
    add_deployment_arguments(arguments)
    args, extra = arguments.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    check_arguments(arguments, args)
    if args.write_keys is not None:
        return write_keys(args)
    if (args.url is None) != (args.keys is None):
        arguments.error("--url and --keys go together: a deployment and its terminals' keys")
    if args.database_url is not None and args.url is None:
        arguments.error("--database-url is for --url; without it the runner makes its own database")
    prefix = "load"
    with (deployment if args.url else bench)(args, prefix=prefix) as run:
        status, seconds = run_locust(args, run, extra, prefix=prefix)
        verification = verify(run)
    summary, problems = summarise(args, run, prefix, seconds, verification)
    summary["locust_exit_status"] = status
    (args.out / f"{prefix}-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print_summary(summary)
    print(f"CSV and logs in {args.out}: {prefix}_stats.csv, {prefix}_failures.csv, {prefix}_stats_history.csv, ...")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
