"""Replay protection: a nonce is refused for the whole window, forgotten after it, and kept small."""

from __future__ import annotations

import tracemalloc

from gateway.auth import NonceCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_nonce_is_refused_for_the_whole_window_and_forgotten_after_it():
    clock = Clock()
    cache = NonceCache(window=600, clock=clock)
    assert cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa")
    assert not cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa")
    assert cache.first_use("k_2", "nonce-aaaaaaaaaaaaaaaa"), "nonces are per key"
    clock.now += 600  # still inside the window: a replay at its very end is refused
    assert not cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa")
    clock.now += 611  # past the window (and the slot that held the last sighting)
    assert cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa")


def test_memory_stops_growing_after_one_window_and_stays_small():
    clock = Clock()
    cache = NonceCache(window=60, clock=clock)
    tracemalloc.start()
    try:
        for second in range(180):  # three windows at 500 requests a second
            clock.now += 1
            for n in range(500):
                assert cache.first_use("k_1", f"n-{second:05d}-{n:05d}-padding")
            if second == 89:
                after_one_and_a_half_windows = tracemalloc.get_traced_memory()[0]
        at_the_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) <= 500 * 71  # one window plus one partly expired slot
    assert at_the_end < after_one_and_a_half_windows * 1.2, "the cache kept growing after the window filled"
    assert at_the_end / len(cache) < 160, f"{at_the_end / len(cache):.0f} bytes per nonce"
