"""Read the policy folder into a PolicyBook. The engine parses; this module does the IO."""

from __future__ import annotations

import os
from pathlib import Path

from settlement.chain import Chain
from settlement.chain_policy import parse_chain
from settlement.errors import PolicyError
from settlement.policy_book import PolicyBook

DEFAULT_POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"


def policy_dir() -> Path:
    """The folder of policy files: ``MEDSETTLE_POLICY_DIR`` or the repository's ``policies/``."""
    return Path(os.environ.get("MEDSETTLE_POLICY_DIR", DEFAULT_POLICY_DIR))


def load_policy_file(path: Path) -> Chain:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(str(path), "$", f"cannot read: {error}") from None
    return parse_chain(text, source=str(path))


def load_policy_book(folder: Path | None = None) -> PolicyBook:
    """Every ``*.toml`` in the folder, validated. Refuses an empty folder."""
    folder = folder or policy_dir()
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise PolicyError(str(folder), "$", "no policy files (*.toml) found")
    return PolicyBook(load_policy_file(path) for path in files)
