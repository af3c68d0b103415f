"""Locust harness: simulated billing terminals of the synthetic county, signing every request.

Run it through the runner, which loads the county, starts a gateway and writes the file this
harness reads (``benchmarks/load.py``). By hand, against a gateway loaded by ``load.py``:

    MEDSETTLE_BENCH_COUNTY=benchmarks/out/bench-county.json \\
        .venv/bin/locust -f benchmarks/locustfile.py --host http://127.0.0.1:8080

Each simulated user is one billing terminal of one clinic (a terminal settles only for its
own clinic). Terminals are dealt out in proportion to their clinics' traffic, distinct
while there are enough, so a few users still see county hospitals, township centres and
village stations. Each user does, by weight:

    settle       POST /v1/settlements, a fresh bill from ``county.settle_body``     expects 201
    eligibility  POST /v1/eligibility, a card swipe                                 expects 200
    quote        POST /v1/quotes, a fresh bill, nothing written                     expects 200
    retry        the same body (same request_id) as one of its earlier settles      expects 200, replayed
    reversal     POST /v1/settlements/{id}/reversal of one of its settlements       expects 201

Weights are locust arguments (``--weight-settle`` ...) or environment variables
(``MEDSETTLE_BENCH_WEIGHT_SETTLE`` ...); defaults 60 / 25 / 12 / 2 / 1. Any other answer
is a failure in locust's statistics, named by status and problem code. A retry answered
201 is a failure: the request was settled twice.

Every acknowledged settlement (201) and reversal is appended to the acknowledgements file
named in the county file, so the runner can check that nothing acknowledged is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
from collections import deque
from pathlib import Path
from typing import Any, TextIO

import msgspec
from locust import FastHttpUser, events, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent))

import county as synthetic

from adapters.signing import signed_headers

ACTIONS = ("settle", "eligibility", "quote", "retry", "reversal")
DEFAULT_WEIGHTS = {"settle": 60, "eligibility": 25, "quote": 12, "retry": 2, "reversal": 1}
RECENT_SETTLES = 200  # bodies a terminal may resend; older ones are forgotten


class Acknowledged(msgspec.Struct):
    """The only fields the harness reads from a 201 or a replay."""

    settlement_id: str
    replayed: bool = False
    reversal_id: str | None = None


class Problem(msgspec.Struct):
    code: str = ""


_decode_ack = msgspec.json.Decoder(Acknowledged).decode
_decode_problem = msgspec.json.Decoder(Problem).decode
_encode = msgspec.json.Encoder().encode


class Run:
    """What every user of this locust process shares: the county, the keys, the acknowledgements file."""

    county: synthetic.County
    keys: dict[str, dict[str, str]]
    assignment: list[str]
    token: str
    acks: TextIO | None = None
    environment: Environment | None = None
    users = itertools.count()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--county-file",
        default=os.environ.get("MEDSETTLE_BENCH_COUNTY", "benchmarks/out/bench-county.json"),
        help="the county and terminal keys written by benchmarks/load.py (env MEDSETTLE_BENCH_COUNTY)",
        include_in_web_ui=False,
    )
    for action in ACTIONS:
        variable = f"MEDSETTLE_BENCH_WEIGHT_{action.upper()}"
        parser.add_argument(
            f"--weight-{action}",
            type=int,
            default=int(os.environ.get(variable, DEFAULT_WEIGHTS[action])),
            help=f"relative weight of {action} requests (env {variable}, default {DEFAULT_WEIGHTS[action]})",
        )
    parser.add_argument(
        "--final-stats",
        default=os.environ.get("MEDSETTLE_BENCH_FINAL_STATS", ""),
        help="write the final statistics here as JSON when locust quits (the CSV files can lag by a second)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--think-time-ms",
        type=int,
        default=int(os.environ.get("MEDSETTLE_BENCH_THINK_MS", "0")),
        help="pause between one terminal's requests, in ms (env MEDSETTLE_BENCH_THINK_MS; 0: closed loop)",
    )


@events.init.add_listener
def _load(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is None:
        return
    Run.environment = environment
    document = json.loads(Path(environment.parsed_options.county_file).read_text(encoding="utf-8"))
    Run.county = synthetic.county_from_parameters(document["county"])
    Run.keys = document["terminals"]
    Run.token = document.get("run", "run")
    known = set(Run.keys)
    Run.assignment = [
        terminal
        for terminal in synthetic.terminals_for_users(Run.county, len(Run.county.terminals), document["county"]["seed"])
        if terminal in known
    ]
    if not Run.assignment:
        raise SystemExit("the county file has no terminal keys")
    if document.get("acks"):
        Run.acks = open(document["acks"], "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run


@events.quit.add_listener
def _close(**_: Any) -> None:
    if Run.acks is not None:
        Run.acks.close()
        Run.acks = None
    environment = Run.environment
    if environment is None or environment.runner is None or not environment.parsed_options.final_stats:
        return
    stats = environment.runner.stats
    document = {
        "entries": [_figures(entry) for entry in [*stats.entries.values(), stats.total] if entry.num_requests],
        "errors": [
            {"name": error.name, "error": str(error.error), "occurrences": error.occurrences}
            for error in stats.errors.values()
        ],
    }
    Path(environment.parsed_options.final_stats).write_text(json.dumps(document, indent=1), encoding="utf-8")


def _figures(entry: Any) -> dict[str, Any]:
    """One line of statistics, in the CSV's terms; times in ms (locust rounds them to 2 significant digits)."""
    return {
        "name": entry.name,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": entry.total_rps,
        "p50_ms": entry.get_response_time_percentile(0.50),
        "p95_ms": entry.get_response_time_percentile(0.95),
        "p99_ms": entry.get_response_time_percentile(0.99),
        "max_ms": entry.max_response_time,
    }


def _record(kind: str, identifier: str) -> None:
    if Run.acks is not None:
        Run.acks.write(f"{kind},{identifier}\n")
        Run.acks.flush()  # a run cut short still leaves what was acknowledged


class BillingTerminal(FastHttpUser):
    """One billing terminal of one clinic, sending bills, swipes, quotes, retries and reversals."""

    def wait_time(self) -> float:
        return self.think_seconds

    def on_start(self) -> None:
        options = self.environment.parsed_options
        index = next(Run.users)
        self.terminal_id = Run.assignment[index % len(Run.assignment)]
        self.key_id = Run.keys[self.terminal_id]["key_id"]
        self.secret = Run.keys[self.terminal_id]["secret"]
        self.clinic = Run.county.clinic_by_terminal[self.terminal_id]
        self.rng = random.Random(f"{Run.token}-{index}")
        weights = [max(0, getattr(options, f"weight_{action}", DEFAULT_WEIGHTS[action])) for action in ACTIONS]
        if not any(weights):
            weights = list(DEFAULT_WEIGHTS.values())
        self.cumulative = list(itertools.accumulate(weights))
        self.think_seconds = max(0, getattr(options, "think_time_ms", 0)) / 1000
        self.recent: deque[tuple[bytes, str]] = deque(maxlen=RECENT_SETTLES)  # (body, settlement_id)
        self.reversible: list[str] = []

    @task
    def next_request(self) -> None:
        action = self.rng.choices(ACTIONS, cum_weights=self.cumulative)[0]
        if action == "retry" and self.recent:
            self.retry()
        elif action == "reversal" and self.reversible:
            self.reversal()
        elif action == "eligibility":
            self.eligibility()
        elif action == "quote":
            self.quote()
        else:
            self.settle()

    # ------------------------------------------------------------ requests

    def _post(self, path: str, body: bytes, name: str, expected: int) -> tuple[Any, bytes] | None:
        """POST signed; the response and its body when the status is the expected one, else a failure."""
        headers = {"Content-Type": "application/json", **signed_headers(self.key_id, self.secret, "POST", path, body)}
        with self.client.post(path, data=body, headers=headers, name=name, catch_response=True) as response:
            if response.status_code != expected:
                response.failure(_failure(response, expected))
                return None
            return response, response.content or b""

    def settle(self) -> None:
        body = _encode(synthetic.settle_body(Run.county, self.clinic, self.rng))
        answered = self._post("/v1/settlements", body, "settle", 201)
        if answered is None:
            return
        response, content = answered
        try:
            settlement_id = _decode_ack(content).settlement_id
        except msgspec.DecodeError as error:
            response.failure(f"201 without a settlement_id: {error}")
            return
        _record("settlement", settlement_id)
        self.recent.append((body, settlement_id))
        self.reversible.append(settlement_id)
        if len(self.reversible) > 10 * RECENT_SETTLES:
            del self.reversible[:RECENT_SETTLES]

    def retry(self) -> None:
        body, settlement_id = self.rng.choice(self.recent)
        path = "/v1/settlements"
        headers = {"Content-Type": "application/json", **signed_headers(self.key_id, self.secret, "POST", path, body)}
        with self.client.post(path, data=body, headers=headers, name="settle retry", catch_response=True) as response:
            if response.status_code == 201:
                response.failure("retry answered 201: the same request id settled twice")
                return
            if response.status_code != 200:
                response.failure(_failure(response, 200))
                return
            try:
                answer = _decode_ack(response.content or b"")
            except msgspec.DecodeError as error:
                response.failure(f"replay without a settlement: {error}")
                return
            header = (response.headers.get("Idempotent-Replayed") or "").lower()
            if header != "true" or not answer.replayed:
                response.failure("200 without Idempotent-Replayed: true and replayed: true")
            elif answer.settlement_id != settlement_id:
                response.failure("replay names another settlement than the first answer")

    def reversal(self) -> None:
        settlement_id = self.reversible.pop(self.rng.randrange(len(self.reversible)))
        body = _encode(
            {"request_id": synthetic.request_id(self.rng, self.terminal_id), "reason": "billed to the wrong patient"}
        )
        answered = self._post(f"/v1/settlements/{settlement_id}/reversal", body, "reversal", 201)
        if answered is None:
            return
        response, content = answered
        try:
            reversal_id = _decode_ack(content).reversal_id
        except msgspec.DecodeError as error:
            response.failure(f"201 without a reversal: {error}")
            return
        _record("reversal", f"{settlement_id} {reversal_id}")

    def quote(self) -> None:
        self._post("/v1/quotes", _encode(synthetic.settle_body(Run.county, self.clinic, self.rng)), "quote", 200)

    def eligibility(self) -> None:
        body = _encode(synthetic.eligibility_body(Run.county, self.clinic, self.rng))
        self._post("/v1/eligibility", body, "eligibility", 200)


def _failure(response: Any, expected: int) -> str:
    """``HTTP 422 invalid_bill (expected 201)``: status and problem code, never the body (it may name a person)."""
    code = ""
    if response.status_code:
        try:
            code = _decode_problem(response.content or b"{}").code
        except msgspec.DecodeError:
            code = "not a problem document"
    else:
        code = type(response.error).__name__ if getattr(response, "error", None) else "no response"
    return f"HTTP {response.status_code} {code} (expected {expected})".replace("  ", " ")
