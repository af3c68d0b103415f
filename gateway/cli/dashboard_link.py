"""``medsettle dashboard-link``: a login link for the finance dashboard, signed with a terminal's key.

Before printing, the key is checked against the database as the gateway will check the link
(``gateway.dashboard.pages._active_key``): a key it does not hold, a retired key or a revoked
terminal, a secret that is not the key's, or a key whose role may not open the dashboard (a
billing terminal's) is refused here, in words, instead of printing a link the browser would then
refuse.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from adapters.terminal_keys import ActiveKey, load_keys
from gateway.cli.database import Connection, database_url, with_connection
from gateway.cli.demo import demo_keys_path
from gateway.dashboard.sessions import DASHBOARD_ROLES, MAX_LINK_SECONDS, login_link

REFUSED = 1  # the key may not open the dashboard
UNUSABLE = 2  # the command line or the keys file


def refusal(key: ActiveKey | None, key_id: str, secret: str) -> str | None:
    """Why the gateway would refuse a link signed with this key id and secret, in words; None if it would not."""
    if key is None:
        return f"the database holds no key {key_id}: it was never made, or belongs to another gateway"
    if not key.secret:
        return f"key {key_id} of {key.terminal_id} is retired or its terminal revoked: use an active key"
    if not hmac.compare_digest(key.secret.encode(), secret.encode()):
        return f"the secret given is not key {key_id}'s: the gateway would refuse the link's signature"
    if key.role not in DASHBOARD_ROLES:
        roles = " and ".join(sorted(DASHBOARD_ROLES))
        return (
            f"{key.terminal_id}'s role is {key.role}: only {roles} terminals may open the finance dashboard;"
            " use one's key (medsettle terminals list shows each terminal's role)"
        )
    return None


def cmd_dashboard_link(settings: Any, args: Any) -> int:
    """Print a login link for the finance dashboard, signed with a finance or admin terminal's key."""
    if not 1 <= args.minutes <= MAX_LINK_SECONDS // 60:
        print(f"medsettle dashboard-link: --minutes must be 1 to {MAX_LINK_SECONDS // 60}", file=sys.stderr)
        return UNUSABLE
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
            return UNUSABLE

    async def stored_key(connection: Connection) -> ActiveKey | None:
        return (await load_keys(connection, settings.terminal_key_key, only=key_id)).get(key_id)

    refused = refusal(asyncio.run(with_connection(database_url(settings), stored_key)), key_id, secret)
    if refused is not None:
        print(f"medsettle dashboard-link: no link made: {refused}", file=sys.stderr)
        return REFUSED
    base = args.url or f"http://{settings.host}:{settings.port}"
    print(login_link(base, key_id, secret, minutes=args.minutes))
    return 0


def add_dashboard_link_parser(commands: Any) -> None:
    """``medsettle dashboard-link``: registered by ``gateway.cli.main.build_parser``."""
    link = commands.add_parser(
        "dashboard-link",
        help="print a short-lived login link for the finance dashboard",
        description="Sign a login link for /dashboard with a finance or admin terminal's key. Open it in a "
        "browser before it expires; it sets a session cookie and shows the dashboard. The key is checked "
        "in the database first. Exit status: 0 the link is printed, 1 the key may not open the dashboard "
        "(unknown, retired or revoked, a wrong secret, or a billing terminal's), 2 the command line or the "
        "keys file is unusable, or the database cannot be reached.",
    )
    link.add_argument("--terminal", default="finance-1", help="terminal whose key to use (from --keys)")
    link.add_argument("--minutes", type=int, default=30, help="how long the link works (default 30)")
    link.add_argument("--keys", help="JSON file of terminal keys (default: the demo's .data/terminal-keys.json)")
    link.add_argument("--key-id")
    link.add_argument("--secret")
    link.add_argument("--url", help="gateway base URL (default from MEDSETTLE_HOST and MEDSETTLE_PORT)")
    link.set_defaults(run=cmd_dashboard_link)
