"""Replay protection: a nonce is refused while its timestamp is accepted, forgotten after, and kept small."""

from __future__ import annotations

import tracemalloc

from gateway.auth import NonceCache

SKEW = 300


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_430_400.0

    def __call__(self) -> float:
        return self.now


def test_a_nonce_is_refused_while_its_timestamp_is_accepted_and_forgotten_after():
    clock = Clock()
    cache = NonceCache(clock=clock)
    signed_at = clock.now + 120  # a terminal whose clock runs two minutes fast
    assert cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa", expires_at=signed_at + SKEW)
    assert not cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa", expires_at=signed_at + SKEW)
    assert cache.first_use("k_2", "nonce-aaaaaaaaaaaaaaaa", expires_at=signed_at + SKEW), "nonces are per key"
    clock.now = signed_at + SKEW  # the last second the gateway still accepts that timestamp
    assert not cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa", expires_at=signed_at + SKEW)
    clock.now += NonceCache.SLOT_SECONDS + 1  # the timestamp check refuses a replay from here on
    assert cache.first_use("k_1", "nonce-aaaaaaaaaaaaaaaa", expires_at=clock.now + SKEW)


def test_memory_stops_growing_once_the_first_nonces_expire_and_stays_small():
    clock = Clock()
    cache = NonceCache(clock=clock)
    window = 60  # a short skew, so the test runs three windows quickly
    tracemalloc.start()
    try:
        for second in range(180):  # 500 requests a second, signed with the gateway's own time
            clock.now += 1
            for n in range(500):
                assert cache.first_use("k_1", f"n-{second:05d}-{n:05d}-padding", expires_at=clock.now + window)
            if second == 89:
                after_one_and_a_half_windows = tracemalloc.get_traced_memory()[0]
        at_the_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) <= 500 * (window + 2 * NonceCache.SLOT_SECONDS)
    assert at_the_end < after_one_and_a_half_windows * 1.2, "the cache kept growing after the window filled"
    assert at_the_end / len(cache) < 160, f"{at_the_end / len(cache):.0f} bytes per nonce"
