"""``medsettle client``: send one signed request as a terminal, for people trying the gateway by hand."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from adapters.terminal_client import TerminalClient
from gateway.cli.demo import demo_keys_path
from gateway.config import Settings


def cmd_client(settings: Settings, args: argparse.Namespace) -> int:
    """Send one signed request as a terminal, for people trying the gateway by hand."""
    if args.key_id and args.secret:
        key_id, secret = args.key_id, args.secret
    else:
        keys_file = Path(args.keys) if args.keys else demo_keys_path(settings)
        try:
            key = json.loads(keys_file.read_text(encoding="utf-8"))[args.terminal]
        except (OSError, KeyError, ValueError):
            print(
                f"medsettle client: no key for {args.terminal} in {keys_file}; pass --key-id and --secret",
                file=sys.stderr,
            )
            return 2
        key_id, secret = key["key_id"], key["secret"]
    body = None
    if args.data:
        source = args.data[1:] if args.data.startswith("@") else None
        try:
            text = args.data if source is None else Path(source).read_text(encoding="utf-8")
        except OSError as error:
            print(f"medsettle client: cannot read {source}: {error.strerror or error}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:
            print(f"medsettle client: cannot read {source}: not UTF-8 text", file=sys.stderr)
            return 2
        try:
            body = json.loads(text)
        except ValueError as error:
            print(f"medsettle client: {source or '--data'} is not valid JSON: {error}", file=sys.stderr)
            return 2
    base = args.url or f"http://{settings.host}:{settings.port}"

    async def send() -> Any:
        async with TerminalClient(base, key_id, secret) as client:
            return await client.request(args.method.upper(), args.path, body)

    try:
        reply = asyncio.run(send())
    except (OSError, TimeoutError, aiohttp.ClientError) as error:
        print(
            f"medsettle client: cannot reach the gateway at {base}: {_why_unreachable(error)}."
            " Is it running there? --url names another.",
            file=sys.stderr,
        )
        return 2
    print(f"HTTP {reply.status}" + (" (replayed)" if reply.replayed else ""), file=sys.stderr)
    print(json.dumps(reply.body, ensure_ascii=False, indent=2) if not isinstance(reply.body, str) else reply.body)
    return 0 if reply.status < 400 else 1


def _why_unreachable(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(getattr(error, "os_error", error), ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__
