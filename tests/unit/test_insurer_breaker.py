"""The circuit breaker before the insurer's core (gateway/insurer.py), on a clock the test moves."""

from __future__ import annotations

from gateway.insurer import Breaker, visit_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_in_a_row_open_it_and_a_success_between_resets_the_count() -> None:
    clock = Clock()
    breaker = Breaker(threshold=5, cooldown=5.0, clock=clock)
    for _ in range(4):
        breaker.failed()
    breaker.succeeded()
    for _ in range(4):
        breaker.failed()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_after() == 5
    clock.now += 3.5
    assert breaker.retry_after() == 2  # rounded up: never tells a terminal to come back too early


def test_after_the_cooldown_one_probe_at_a_time_and_its_outcome_decides() -> None:
    clock = Clock()
    breaker = Breaker(threshold=1, cooldown=5.0, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for it
    breaker.failed()  # the probe failed: open again for a whole cooldown
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 5
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_probe_that_never_reports_does_not_hold_the_breaker_half_open_for_ever() -> None:
    clock = Clock()
    breaker = Breaker(threshold=1, cooldown=5.0, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.allow()  # a probe whose request then failed before reaching the insurer
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_a_visit_id_fits_the_interface_and_tells_long_request_ids_apart() -> None:
    first = visit_of("term-C001", "HIS-2026-12-03-000001-outpatient-window-3")
    second = visit_of("term-C001", "HIS-2026-12-03-000001-outpatient-window-4")
    assert first != second
    assert len(first) == len(second) == 30
    assert visit_of("term-C001", "r1") == visit_of("term-C001", "r1")
    assert visit_of("term-C001", "r1") != visit_of("term-C002", "r1")
