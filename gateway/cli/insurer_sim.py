"""``medsettle insurer-sim``: run the insurer simulator (adapters/insurer/simulator.py) as a process."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from adapters.insurer import protocol
from adapters.insurer.simulator import Faults, InsurerSimulator, SimulatorServer, insurer_chain
from adapters.policy_files import load_policy_book
from gateway.config import Settings
from settlement.errors import PolicyError
from settlement.policy_book import PolicyBook


def add_insurer_sim_parser(commands: Any) -> None:
    """``medsettle insurer-sim``: registered by ``gateway.cli.main.build_parser``."""
    sim = commands.add_parser(
        "insurer-sim",
        help="run the insurer simulator: the provincial platform's interface, paying with the engine, with faults",
        description="Serve the insurer's interface (POST /fsi/api/rsfComIfsService/callService) on HOST:PORT, paying "
        "the insurer's funds of the policy in force with the settlement engine, and /sim/faults, /sim/state and "
        "/sim/expire-sign-ins on PORT and on the control port (which stays up while the insurer is 'down'). "
        "State is in memory. Stop it with Ctrl-C.",
    )
    sim.add_argument("--host", dest="sim_host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument(
        "--port", dest="sim_port", type=int, default=8090, help="the insurer's port (default 8090; 0: any)"
    )
    sim.add_argument(
        "--control-port", type=int, help="port of the /sim routes alone (default PORT + 1; 0 with --port 0: any)"
    )
    sim.add_argument("--policy-dir", help="policy folder (default MEDSETTLE_POLICY_DIR or policies/)")
    sim.add_argument(
        "--funds",
        help="fund codes the insurer pays, comma-separated (default: the steps a policy marks remote, else insurance "
        "and critical_illness where the chain has them)",
    )
    sim.add_argument("--delay-ms", type=int, help="delay every answer by this many milliseconds")
    sim.add_argument(
        "--faults", help='faults as POST /sim/faults takes them, JSON or @FILE: {"drop_after_commit": true}'
    )
    sim.add_argument("--institution-code", help="serve only this institution (12 characters A-Z 0-9; default any)")
    sim.add_argument(
        "--answer-id",
        choices=protocol.ANSWER_IDS,
        default="platform",
        help="what answers carry as inf_refmsgid: platform, a receipt id of the simulator's own as the national "
        "interface does (default); echo, the request's msgid (a policy's [insurer] answer_id says which it expects)",
    )
    sim.set_defaults(run=cmd_insurer_sim)


def _faults(args: argparse.Namespace) -> Faults:
    """The faults of ``--faults``, with ``--delay-ms`` over its delay."""
    faults = Faults()
    if args.faults:
        text = Path(args.faults[1:]).read_text(encoding="utf-8") if args.faults.startswith("@") else args.faults
        faults = msgspec.json.decode(text, type=Faults)
    if args.delay_ms is not None:
        if not 0 <= args.delay_ms <= 600_000:
            raise ValueError("--delay-ms must be from 0 to 600000")
        faults = msgspec.structs.replace(faults, delay_ms=args.delay_ms)
    return faults


def cmd_insurer_sim(settings: Settings, args: argparse.Namespace) -> int:
    try:
        book = load_policy_book(Path(args.policy_dir) if args.policy_dir else None)
    except PolicyError as error:
        print(f"medsettle insurer-sim: {error}", file=sys.stderr)
        return 2
    try:
        faults = _faults(args)
    except (OSError, ValueError, msgspec.MsgspecError) as error:
        print(f"medsettle insurer-sim: faults: {error}", file=sys.stderr)
        return 2
    if args.institution_code is not None and not protocol.INSTITUTION_CODE.fullmatch(args.institution_code):
        print("medsettle insurer-sim: --institution-code is 12 characters of A-Z and 0-9", file=sys.stderr)
        return 2
    funds = [code.strip() for code in args.funds.split(",") if code.strip()] if args.funds else None
    try:
        simulator = InsurerSimulator(
            book, funds=funds, institution_code=args.institution_code, answer_id=args.answer_id
        )
    except ValueError as error:
        print(f"medsettle insurer-sim: {error}", file=sys.stderr)
        return 2
    control_port = args.control_port
    if control_port is None:
        control_port = args.sim_port + 1 if args.sim_port else 0
    server = SimulatorServer(
        simulator, host=args.sim_host, port=args.sim_port, control_port=control_port, faults=faults
    )
    try:
        asyncio.run(_serve(server, book, funds))
    except OSError as error:
        print(f"medsettle insurer-sim: {error}", file=sys.stderr)
        return 2
    return 0


async def _serve(server: SimulatorServer, book: PolicyBook, funds: list[str] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        print(
            f"insurer simulator on {server.url} (control {server.control_url}); pays {paying(book, funds)}", flush=True
        )
        await stop.wait()
    finally:
        await server.close()


def paying(book: PolicyBook, funds: list[str] | None = None) -> str:
    """What the simulator pays under each policy version, for a person reading its start-up line."""
    return "; ".join(
        f"{chain.id}: {', '.join(step.fund.code for step in insurer_chain(chain, funds).steps) or 'nothing'}"
        for chain in book
    )
