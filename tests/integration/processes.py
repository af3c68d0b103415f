"""Real `medsettle serve` processes for tests: started on 127.0.0.1 against the test database."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.conftest import KEY_ENCRYPTION_KEY, PEPPER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gateway(
    database_url: str,
    port: int,
    data_dir: Path | None,
    *,
    stdout: int = subprocess.DEVNULL,
    stderr: Any = subprocess.PIPE,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
    **settings: str,
) -> subprocess.Popen[str]:
    """``medsettle serve`` with the test secrets, no card-reader port (a running `make run` may hold 8081),
    generous rate limits and quiet logs; ``settings`` adds or overrides MEDSETTLE_* variables and
    ``extra_args`` are added to the command line (for example ``["--workers", "2"]``); ``stderr`` may be a
    file, for a gateway that runs long enough to fill a pipe nobody reads. ``data_dir`` None leaves
    MEDSETTLE_DATA_DIR unset, for the command's own default below ``cwd``."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDSETTLE_ID_PEPPER": PEPPER.decode(),
        "MEDSETTLE_TERMINAL_KEY_KEY": KEY_ENCRYPTION_KEY.hex(),
        "MEDSETTLE_HOST": "127.0.0.1",
        "MEDSETTLE_PORT": str(port),
        "MEDSETTLE_READER_PORT": "0",
        "MEDSETTLE_LOG_LEVEL": "warning",
        "MEDSETTLE_RATE_LIMIT_PER_SECOND": "100000",
        "MEDSETTLE_RATE_LIMIT_BURST": "100000",
        "MEDSETTLE_DATA_DIR": str(data_dir),
        "MEDSETTLE_SHUTDOWN_DRAIN_SECONDS": "0",  # tests stop at once; test_sigterm.py sets a drain
        **settings,
    }
    if data_dir is None:
        del environment["MEDSETTLE_DATA_DIR"]
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", *extra_args],
        env=environment,
        stdout=stdout,
        stderr=stderr,
        text=True,
        cwd=cwd,
    )


async def wait_ready(
    session: aiohttp.ClientSession, base: str, process: subprocess.Popen[str], timeout: float = 30.0
) -> None:
    """Poll /readyz until 200; fail at once if the process exits, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"the gateway did not become ready in {timeout:g} s"
        await asyncio.sleep(0.1)


def medsettle(
    database_url: str, *args: str, timeout: float = 120, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run the ``medsettle`` command line against ``database_url`` with the tests' pepper and key, as an
    operator would; ``variables`` add to its environment."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDSETTLE_ID_PEPPER": PEPPER.decode(),
        "MEDSETTLE_TERMINAL_KEY_KEY": KEY_ENCRYPTION_KEY.hex(),
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
