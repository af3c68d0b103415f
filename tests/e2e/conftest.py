"""Browser tests run against the same real gateway and PostgreSQL as the integration tests.

The fixtures are the integration suite's (tests/integration/conftest.py); importing them
here gives this directory its own instances of them for the session. ``browser`` is one
headless Chromium per test module (tests/e2e/browser.py); a test that asks for it is
skipped where Chromium is not installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.browser import CHROMIUM, Browser
from tests.integration.conftest import client, database_url, pool, settings  # noqa: F401


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("install Chromium: apt-get install -y chromium (and fonts-noto-cjk for Chinese text)")
    async with Browser.running(tmp_path_factory.mktemp("chromium")) as running:
        yield running
