"""``medsettle dashboard-link``: a login link for the finance dashboard, signed with a terminal's key."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.demo import demo_keys_path
from gateway.dashboard.sessions import MAX_LINK_SECONDS, login_link


def cmd_dashboard_link(settings: Any, args: Any) -> int:
    """Print a login link for the finance dashboard, signed with a finance or admin terminal's key."""
    if not 1 <= args.minutes <= MAX_LINK_SECONDS // 60:
        print(f"medsettle dashboard-link: --minutes must be 1 to {MAX_LINK_SECONDS // 60}", file=sys.stderr)
        return 2
    if args.key_id and args.secret:
        key_id, secret = args.key_id, args.secret
    else:
        keys_file = Path(args.keys) if args.keys else demo_keys_path(settings)
        try:
            key = json.loads(keys_file.read_text(encoding="utf-8"))[args.terminal]
            key_id, secret = key["key_id"], key["secret"]
        except (OSError, KeyError, TypeError, ValueError):
            print(
                f"medsettle dashboard-link: no key for {args.terminal} in {keys_file}; pass --key-id and --secret",
                file=sys.stderr,
            )
            return 2
    base = args.url or f"http://{settings.host}:{settings.port}"
    print(login_link(base, key_id, secret, minutes=args.minutes))
    return 0


def add_dashboard_link_parser(commands: Any) -> None:
    """``medsettle dashboard-link``: registered by ``gateway.cli.main.build_parser``."""
    link = commands.add_parser(
        "dashboard-link",
        help="print a short-lived login link for the finance dashboard",
        description="Sign a login link for /dashboard with a finance or admin terminal's key. Open it in a "
        "browser before it expires; it sets a session cookie and shows the dashboard.",
    )
    link.add_argument("--terminal", default="finance-1", help="terminal whose key to use (from --keys)")
    link.add_argument("--minutes", type=int, default=30, help="how long the link works (default 30)")
    link.add_argument("--keys", help="JSON file of terminal keys (default: the demo's .data/terminal-keys.json)")
    link.add_argument("--key-id")
    link.add_argument("--secret")
    link.add_argument("--url", help="gateway base URL (default from MEDSETTLE_HOST and MEDSETTLE_PORT)")
    link.set_defaults(run=cmd_dashboard_link)
