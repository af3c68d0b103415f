"""``medsettle reader-sim``: act as a clinic card reader by hand, one frame at a time (``ReaderClient``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from adapters import card_frames as frames
from gateway.card_reader.client import ReaderClient
from gateway.cli.demo import demo_keys_path
from gateway.config import Settings


def add_reader_sim_parser(commands: Any) -> None:
    """``medsettle reader-sim``: registered by ``gateway.cli.main.build_parser``."""
    reader = commands.add_parser(
        "reader-sim",
        help="act as a clinic card reader: swipe, settle, quote, reverse or heartbeat over the frame protocol",
        description="Send one card-reader frame to the gateway's reader port (MEDSETTLE_READER_PORT) and print "
        "the answer as JSON. Options go before the action, e.g. "
        "medsettle reader-sim --terminal term-V001 swipe 410102196003020026",
    )
    reader.add_argument("--terminal", default="term-C001", help="terminal whose key to use (from --keys)")
    reader.add_argument("--keys", help="JSON file of terminal keys (default: the demo's .data/terminal-keys.json)")
    reader.add_argument("--key-id")
    reader.add_argument("--secret")
    reader.add_argument("--host", dest="reader_host", help="gateway host (default MEDSETTLE_HOST)")
    reader.add_argument("--port", dest="reader_port", type=int, help="reader port (default MEDSETTLE_READER_PORT)")
    actions = reader.add_subparsers(dest="action", required=True)
    swipe = actions.add_parser("swipe", help="eligibility: programmes in force and what is left of each cap")
    swipe.add_argument("person_id", metavar="PERSON_ID", help="national ID number")
    swipe.add_argument("--date", help="service date YYYY-MM-DD (default today)")
    for name, text in (("settle", "settle a bill"), ("quote", "quote a bill; nothing is written")):
        command = actions.add_parser(name, help=text)
        command.add_argument("bill", metavar="BILL", help="the bill as JSON, or @FILE (as for POST /v1/settlements)")
    reverse = actions.add_parser("reverse", help="reverse a settlement")
    reverse.add_argument("settlement_id", metavar="SETTLEMENT_ID")
    reverse.add_argument("request_id", metavar="REQUEST_ID", help="the reversal's own request id")
    reverse.add_argument("--reason", default="")
    actions.add_parser("heartbeat", help="check the connection and see the gateway's clock")
    reader.set_defaults(run=cmd_reader_sim)


def _key(settings: Settings, args: argparse.Namespace) -> tuple[str, str] | None:
    if args.key_id and args.secret:
        return args.key_id, args.secret
    keys_file = Path(args.keys) if args.keys else demo_keys_path(settings)
    try:
        key = json.loads(keys_file.read_text(encoding="utf-8"))[args.terminal]
        return key["key_id"], key["secret"]
    except (OSError, KeyError, TypeError, ValueError):
        print(
            f"medsettle reader-sim: no key for {args.terminal} in {keys_file}; pass --key-id and --secret",
            file=sys.stderr,
        )
        return None


def cmd_reader_sim(settings: Settings, args: argparse.Namespace) -> int:
    key = _key(settings, args)
    if key is None:
        return 2
    host = args.reader_host or settings.host
    port = args.reader_port if args.reader_port is not None else settings.reader_port
    if not port:
        print("medsettle reader-sim: the reader port is 0 (turned off); pass --port", file=sys.stderr)
        return 2
    body: Any = None
    if args.action in ("settle", "quote"):
        try:
            text = Path(args.bill[1:]).read_text(encoding="utf-8") if args.bill.startswith("@") else args.bill
            body = json.loads(text)
        except (OSError, ValueError) as error:
            print(f"medsettle reader-sim: cannot read the bill: {error}", file=sys.stderr)
            return 2

    async def send() -> frames.Response:
        async with ReaderClient(host, port, *key) as reader:
            if args.action == "swipe":
                return await reader.swipe(args.person_id, args.date)
            if args.action == "settle":
                return await reader.settle(body)
            if args.action == "quote":
                return await reader.quote(body)
            if args.action == "reverse":
                return await reader.reverse(args.settlement_id, args.request_id, args.reason)
            return await reader.heartbeat()

    try:
        reply = asyncio.run(send())
    except (OSError, TimeoutError, frames.FrameError) as error:
        print(f"medsettle reader-sim: {host}:{port}: {error or type(error).__name__}", file=sys.stderr)
        return 2
    if isinstance(reply, frames.Result):
        print(f"{reply.status}" + (" (replayed)" if reply.replayed else ""), file=sys.stderr)
        answer: dict[str, Any] = reply.body
    elif isinstance(reply, frames.Error):
        print(f"{reply.status} {reply.code}", file=sys.stderr)
        answer = msgspec.structs.asdict(reply)
        answer.pop("id")
    else:
        answer = {"time": reply.time}
    print(json.dumps(answer, ensure_ascii=False, indent=2, default=str))
    return 1 if isinstance(reply, frames.Error) else 0
