"""Named fault points on the settle and reversal paths, switched on only by fault tests.

A fault point is a place in a money transaction where a real failure could strike:
the process dying, the database stalling, an error arriving. Tests name a point and
an action, and the gateway misbehaves there on purpose, so the tests can prove that
no settlement is lost, half-written or counted twice.

Off unless ``MEDSETTLE_FAULTS`` is set; the gateway refuses the setting in
production. The setting is a comma-separated list of ``point=action``:

    settle.before_commit=kill            SIGKILL the process at that point
    settle.after_commit=raise            fail the request there with a connection error
    settle.after_lock=stall:2.5          sleep 2.5 seconds there (holding the row lock)
    reverse.before_commit=kill@3         act on the 3rd time the point is reached only

Points (``POINTS``), in the order a settlement reaches them:

    insurer.after_answer   the insurer's core settled and its answer is recorded; nothing booked here

    settle.after_lock      the accumulator row is locked; nothing written yet
    settle.before_commit   everything written, COMMIT not yet sent
    settle.after_commit    committed; the answer not yet sent to the terminal

and the same three for ``reverse``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field

POINTS = (
    "insurer.after_answer",
    "settle.after_lock",
    "settle.before_commit",
    "settle.after_commit",
    "reverse.after_lock",
    "reverse.before_commit",
    "reverse.after_commit",
)
ACTIONS = ("kill", "raise", "stall")


class FaultInjected(ConnectionError):
    """Raised by the ``raise`` action. A ConnectionError, so the gateway treats it like a lost
    database connection: 503, retry with the same request id."""


class FaultConfigError(ValueError):
    pass


@dataclass
class Fault:
    action: str
    seconds: float = 0.0
    on_hit: int | None = None  # act on this hit only (1-based); None: every hit
    hits: int = 0


@dataclass
class Faults:
    """The armed fault points. ``Faults()`` is empty and costs one attribute check per point."""

    armed: dict[str, Fault] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Faults:
        armed: dict[str, Fault] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            point, sep, spec = item.partition("=")
            if not sep or point not in POINTS:
                raise FaultConfigError(f"MEDSETTLE_FAULTS: unknown fault point in {item!r}; known: {', '.join(POINTS)}")
            spec, at, nth = spec.partition("@")
            action, colon, argument = spec.partition(":")
            if action not in ACTIONS:
                raise FaultConfigError(f"MEDSETTLE_FAULTS: unknown action in {item!r}; known: {', '.join(ACTIONS)}")
            try:
                seconds = float(argument) if colon else 0.0
                on_hit = int(nth) if at else None
            except ValueError:
                raise FaultConfigError(f"MEDSETTLE_FAULTS: bad number in {item!r}") from None
            if action == "stall" and not colon:
                raise FaultConfigError(f"MEDSETTLE_FAULTS: stall needs seconds, e.g. {point}=stall:2")
            armed[point] = Fault(action, seconds, on_hit)
        return cls(armed)

    @property
    def enabled(self) -> bool:
        return bool(self.armed)

    def arm(self, point: str, action: str, *, seconds: float = 0.0, on_hit: int | None = None) -> None:
        """Arm a point from a test running the gateway in-process."""
        if point not in POINTS or action not in ACTIONS:
            raise FaultConfigError(f"unknown fault point or action: {point}={action}")
        self.armed[point] = Fault(action, seconds, on_hit)

    def disarm(self) -> None:
        self.armed.clear()

    async def reach(self, point: str) -> None:
        fault = self.armed.get(point)
        if fault is None:
            return
        fault.hits += 1
        if fault.on_hit is not None and fault.hits != fault.on_hit:
            return
        if fault.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault.action == "stall":
            await asyncio.sleep(fault.seconds)
        else:
            raise FaultInjected(f"fault injected at {point}")


NO_FAULTS = Faults()
