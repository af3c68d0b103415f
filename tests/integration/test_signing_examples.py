"""The Java and C# signing examples (clients/java, clients/csharp) against the test vector and a real gateway.

Most hospital systems are written in Java or C#: each example uses its language's standard library
only, is compiled and run as a vendor would, reproduces the README's test vector and settles the
worked example, whose retry returns the same settlement. A language whose tools are not on the
machine is skipped, saying how to get them: javac and java are Debian's openjdk-17-jdk-headless; the
.NET SDK is not in Debian bookworm's repositories, so C# runs on Mono's compiler and runtime, which are.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import SignedClient, worked_example_bill

ROOT = Path(__file__).resolve().parents[2]
# README, "Signing requests".
VECTOR_SECRET = "sk_test_7Yq2pVfV8wq3mZkRr0cXnH4aJ1sLbT6eD9uQ5oWgI2E"
VECTOR_PATH = "/v1/settlements/2f6e1c7a-93d4-4d3e-9a8c-0b7f5e4d3c2a/reversal"
VECTOR_SIGNATURE = "47607cd9f7ba8735cc2b73bdd4533b9040feafb5ec893d1ea7cfe98bea24e279"
RUN_TIMEOUT = 120  # seconds for one compile or run on a busy machine

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Language:
    name: str
    tools: tuple[str, ...]
    how_to_get_them: str
    source: Path

    def compile(self, folder: Path) -> list[str]:
        if self.name == "java":
            return ["javac", "-Xlint:all", "-Werror", "-d", str(folder), str(self.source)]
        return ["mcs", "-warnaserror", "-r:System.Net.Http", f"-out:{folder / 'MedsettleClient.exe'}", str(self.source)]

    def run(self, folder: Path) -> list[str]:
        if self.name == "java":
            return ["java", "-cp", str(folder), "MedsettleClient"]
        return ["mono", str(folder / "MedsettleClient.exe")]


LANGUAGES = [
    Language(
        "java",
        ("javac", "java"),
        "no JDK on this machine: `apt-get install openjdk-17-jdk-headless` runs the Java example",
        ROOT / "clients" / "java" / "MedsettleClient.java",
    ),
    Language(
        "csharp",
        ("mcs", "mono"),
        "no C# compiler on this machine (the .NET SDK is not in Debian bookworm's repositories): "
        "`apt-get install mono-mcs mono-runtime libmono-system-net-http4.0-cil` runs the C# example on Mono",
        ROOT / "clients" / "csharp" / "MedsettleClient.cs",
    ),
]


@pytest.fixture(scope="module", params=LANGUAGES, ids=lambda language: language.name)
def example(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The compiled example's command line, or a skip naming what to install."""
    language: Language = request.param
    if not all(shutil.which(tool) for tool in language.tools):
        pytest.skip(language.how_to_get_them)
    folder = tmp_path_factory.mktemp(language.name)
    result = subprocess.run(language.compile(folder), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return language.run(folder)


def keys(key_id: str, secret: str) -> dict[str, str]:
    """The key goes in the environment, never on the command line, where other users could read it."""
    return {**os.environ, "MEDSETTLE_KEY_ID": key_id, "MEDSETTLE_SECRET": secret}


def test_the_example_reproduces_the_test_vector(example: list[str], tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"request_id":"r-1","reason":""}')
    command = [*example, "sign", "POST", VECTOR_PATH, "1795430400", "n0nce-0123456789abcdef", str(body)]
    result = subprocess.run(command, env=keys("", VECTOR_SECRET), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == VECTOR_SIGNATURE


async def settle(example: list[str], base_url: str, bill: Path, key_id: str, secret: str) -> tuple[int, str, str]:
    """The example settling ``bill``, as a subprocess, while this event loop serves the gateway it talks to."""
    process = await asyncio.create_subprocess_exec(
        *example,
        "settle",
        base_url,
        str(bill),
        env=keys(key_id, secret),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_example_settles_a_bill_and_its_retry_settles_nothing_more(
    client: SignedClient, example: list[str], tmp_path: Path
) -> None:
    bill = tmp_path / "bill.json"
    bill.write_text(json.dumps(await worked_example_bill(client, f"{example[0]}-example-worked-example")), "utf-8")
    key = client.by_terminal["term-C001"]
    base_url = str(client.client.make_url("")).rstrip("/")

    status, stdout, stderr = await settle(example, base_url, bill, key.key_id, key.secret)
    assert (status, stderr.strip()) == (0, "HTTP 201"), stdout
    settlement = json.loads(stdout)
    paid = (settlement["insurance"], settlement["veteran_subsidy"], settlement["hardship_aid"])
    assert paid == (1275000, 291000, 135800) and settlement["out_of_pocket"] == 298200

    status, stdout, stderr = await settle(example, base_url, bill, key.key_id, key.secret)
    assert (status, stderr.strip()) == (0, "HTTP 200"), stdout
    replay = json.loads(stdout)
    assert replay["replayed"] and replay["settlement_id"] == settlement["settlement_id"]

    status, stdout, stderr = await settle(example, base_url, bill, key.key_id, "sk_wrong")
    assert (status, stderr.strip(), json.loads(stdout)["code"]) == (1, "HTTP 401", "bad_signature")
