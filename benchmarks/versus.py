"""The gateway's CPU per settlement against another revision's, both measured at the same moment.

    git worktree add ../medsettle-before 822275f
    .venv/bin/python benchmarks/versus.py ../medsettle-before --runs 3

On a shared VM the machine's speed drifts by 20-40 % from one minute to the next, so two ceilings
runs taken one after the other can differ by more than any change being judged (benchmarks/RESULTS.md,
2026-12-03). This runs ``benchmarks/ceilings.py --only gateway`` in this checkout and in ``OTHER`` at
once, each with its own embedded PostgreSQL, gateway and wrk, so both see the same machine: they share
the two cores evenly, and each counts only its own processes' CPU. Their 64-terminal windows start within
a second or two of each other; a long ``--duration`` keeps the overlap close to whole.

``--alone`` measures the acceptance's own way instead: one checkout at a time on a quiet machine, in pairs
whose order alternates (this then other, other then this, ...), so that a slow drift of the machine's
speed weighs on both sides alike; each pair gives one ratio.

The other checkout runs with its own code (``PYTHONPATH=OTHER``) and this checkout's virtualenv, so its
dependencies must be this one's (true of any revision since the lean settlement row, 822275f). Prints,
for each run, each side's gateway and PostgreSQL CPU per settlement and the ratios, then their medians.
Exits 1 if a run failed, or if ``--limit`` is given and the median total ratio is above it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ceilings.py's row of CPU per settlement: server, PostgreSQL, load generator, total (µs).
_PER_SETTLEMENT = re.compile(
    r"^gateway, (?P<terminals>\d+) terminals, per settlement\s+(?P<gateway>[\d,]+)\s+(?P<postgres>[\d,]+)\s+"
    r"(?P<load>[\d,]+)\s+(?P<total>[\d,]+)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Cpu:
    """One side's CPU per settlement in one run, in µs."""

    gateway: int
    postgres: int

    @property
    def total(self) -> int:
        return self.gateway + self.postgres


def cpu_per_settlement(output: str, terminals: int) -> Cpu | None:
    """The ceilings report's gateway and PostgreSQL CPU per settlement at ``terminals`` (None: no such row)."""
    for found in _PER_SETTLEMENT.finditer(output):
        if int(found["terminals"]) == terminals:
            return Cpu(int(found["gateway"].replace(",", "")), int(found["postgres"].replace(",", "")))
    return None


def ceilings_command(checkout: Path, duration: int, terminals: int) -> list[str]:
    return [
        sys.executable,
        str(checkout / "benchmarks" / "ceilings.py"),
        "--only",
        "gateway",
        "--connections",
        str(terminals),
        "--duration",
        str(duration),
    ]


def _start(checkout: Path, duration: int, terminals: int) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return subprocess.Popen(
        ceilings_command(checkout, duration, terminals),
        cwd=checkout,
        env={**environment, "PYTHONPATH": str(checkout)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_alone(other: Path, duration: int, terminals: int, timeout: float, other_first: bool) -> tuple[str, str]:
    """One ceilings run of each checkout, one after the other; their outputs (this checkout's first)."""
    order = (other, ROOT) if other_first else (ROOT, other)
    outputs = {}
    for checkout in order:
        process = _start(checkout, duration, terminals)
        try:
            outputs[checkout], _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    return outputs[ROOT], outputs[other]


def pair_order(run: int) -> bool:
    """Whether run ``run`` (from 1) measures the other checkout first: this-other, other-this, this-other..."""
    return run % 2 == 0


def run_both(other: Path, duration: int, terminals: int, timeout: float) -> tuple[str, str]:
    """Both ceilings runs at once; their outputs (this checkout's first)."""
    processes = [_start(checkout, duration, terminals) for checkout in (ROOT, other)]
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for started in processes:
                started.kill()
            raise
        outputs.append(output)
    return outputs[0], outputs[1]


def ratio(this: int, other: int) -> float:
    return this / other if other else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="a checkout of the revision to compare with")
    parser.add_argument("--runs", type=int, default=3, help="runs of both at once, or pairs (default 3)")
    parser.add_argument("--alone", action="store_true", help="one checkout at a time, in pairs of alternating order")
    parser.add_argument("--duration", type=int, default=40, help="seconds of each measurement (default 40)")
    parser.add_argument("--terminals", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--limit", type=float, help="fail if the median total ratio is above this (1.10: 10 %%)")
    args = parser.parse_args(argv)
    other = args.other.resolve()
    if not (other / "benchmarks" / "ceilings.py").is_file():
        parser.error(f"{other} has no benchmarks/ceilings.py")
    # Setting up the county and the warm-up take about half a minute; wait well past both.
    timeout = 240 + 2 * args.duration
    totals, gateways, postgres = [], [], []
    how = "one at a time, in pairs of alternating order" if args.alone else "both at once"
    print(f"this checkout ({ROOT}) against {other}, {args.terminals} terminals, {args.duration} s, {how}")
    this_head, other_head = "this: gateway + PG = total", "other: gateway + PG = total"
    print(f"{'run':>3}  {this_head:>28}  {other_head:>28}  ratios gateway / PG / total")
    for run in range(1, args.runs + 1):
        if args.alone:
            this_output, other_output = run_alone(other, args.duration, args.terminals, timeout, pair_order(run))
        else:
            this_output, other_output = run_both(other, args.duration, args.terminals, timeout)
        this = cpu_per_settlement(this_output, args.terminals)
        that = cpu_per_settlement(other_output, args.terminals)
        if this is None or that is None:
            failed = this_output if this is None else other_output
            print(f"run {run}: a ceilings run reported no CPU per settlement; its output ends:\n{failed[-2000:]}")
            return 1
        gateways.append(ratio(this.gateway, that.gateway))
        postgres.append(ratio(this.postgres, that.postgres))
        totals.append(ratio(this.total, that.total))
        print(
            f"{run:>3}  {this.gateway:>8} + {this.postgres:>5} = {this.total:>7} µs"
            f"  {that.gateway:>8} + {that.postgres:>5} = {that.total:>7} µs"
            f"  {gateways[-1]:.2f} / {postgres[-1]:.2f} / {totals[-1]:.2f}"
        )
    median = statistics.median(totals)
    print(
        f"median ratios: gateway {statistics.median(gateways):.2f}, PostgreSQL {statistics.median(postgres):.2f},"
        f" total {median:.2f} (range {min(totals):.2f}-{max(totals):.2f})"
    )
    if args.limit is not None and median > args.limit:
        print(f"median total ratio {median:.2f} is above the limit {args.limit:.2f}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
