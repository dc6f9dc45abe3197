"""ParamBuckets / ParamPacer: Sentinel's per-value hot-parameter algorithm (reference
cache-hotparam.md §1.3, §1.4), driven by explicit timestamps and by a ManualClock."""

from __future__ import annotations

import threading

import pytest

from opensergo.common.clock import ManualClock
from opensergo.governance.faulttolerance.hotparam import (
    BLOCKED,
    ParamBuckets,
    ParamPacer,
    default_max_values,
)

pytestmark = pytest.mark.unit


def passes(buckets: ParamBuckets, value: str, n: int, now: int, count: int = 1) -> int:
    return sum(buckets.try_acquire(value, count, now) for _ in range(n))


def test_five_per_second_sixth_blocked_until_window_strictly_over() -> None:
    b = ParamBuckets(5, 1)
    t = 10_000
    assert passes(b, "alice", 5, t) == 5
    assert not b.try_acquire("alice", 1, t)
    assert not b.try_acquire("alice", 1, t + 999)
    # Exactly one duration later is not yet "more than" the duration (strict '>').
    assert not b.try_acquire("alice", 1, t + 1000)
    # 1001 ms: refill floor(1001 * 5 / 1000) = 5 tokens, one spent.
    assert b.try_acquire("alice", 1, t + 1001)
    assert passes(b, "alice", 10, t + 1001) == 4


def test_window_anchors_at_first_request_after_expiry() -> None:
    b = ParamBuckets(5, 1)
    assert b.try_acquire("v", 1, 0)  # 4 left, refill anchored at 0
    assert passes(b, "v", 10, 500) == 4  # spends what is left; no refill inside the window
    assert b.try_acquire("v", 1, 1500)  # new anchor at 1500 with a full bucket (capped), 4 left
    assert passes(b, "v", 10, 2400) == 4
    assert not b.try_acquire("v", 1, 2500)  # 1000 ms after 1500: not strictly more
    assert b.try_acquire("v", 1, 2501)


def test_partial_refill_uses_floor_of_elapsed_share() -> None:
    # Threshold 10 per 2 s, and 3 per 4 s: refills are floor(elapsed * threshold / duration).
    b = ParamBuckets(10, 2)
    assert passes(b, "k", 10, 0) == 10  # rest 0
    # 2001 ms: add floor(2001*10/2000) = 10 -> rest 10 - 1 = 9
    assert b.try_acquire("k", 1, 2001)
    assert passes(b, "k", 20, 2001) == 9
    b2 = ParamBuckets(3, 4)  # 4000 ms windows, 3 tokens
    assert passes(b2, "k", 3, 0) == 3
    # 4001 ms elapsed: floor(4001 * 3 / 4000) = 3
    assert passes(b2, "k", 5, 4001) == 3
    # With a burst the cap is high enough to see the floor: threshold 3 + burst 10 per 4 s, all
    # 13 spent at 0; at 6000 ms the refill is floor(6000 * 3 / 4000) = 4 (not 4.5, not 5).
    b3 = ParamBuckets(3, 4, burst=10)
    assert passes(b3, "k", 13, 0) == 13
    assert passes(b3, "k", 20, 6000) == 4


def test_refill_adds_to_leftover_without_exceeding_threshold_plus_burst() -> None:
    b = ParamBuckets(4, 1, burst=2)  # max 6
    assert b.try_acquire("k", 1, 0)  # rest 5
    # 1001 ms: add floor(1001*4/1000)=4; 4+5 > 6 -> rest = 6 - 1 = 5
    assert b.try_acquire("k", 1, 1001)
    assert passes(b, "k", 10, 1001) == 5


def test_burst_adds_to_first_window() -> None:
    b = ParamBuckets(5, 1, burst=3)
    assert passes(b, "u", 20, 0) == 8


def test_exception_items_have_their_own_threshold() -> None:
    b = ParamBuckets(5, 1, exceptions={"vip": 50, "banned": 0})
    assert passes(b, "vip", 100, 0) == 50
    assert passes(b, "plain", 100, 0) == 5
    assert passes(b, "banned", 3, 0) == 0


def test_threshold_zero_blocks_every_value() -> None:
    b = ParamBuckets(0, 1, exceptions={"ok": 2})
    assert not b.try_acquire("any", 1, 0)
    assert passes(b, "ok", 5, 0) == 2


def test_batch_larger_than_threshold_plus_burst_blocks_even_first_time() -> None:
    b = ParamBuckets(5, 1, burst=1)
    assert not b.try_acquire("x", 7, 0)
    assert b.try_acquire("x", 6, 0)
    assert not b.try_acquire("x", 1, 0)


def test_refill_refuses_batch_bigger_than_what_it_brings() -> None:
    b = ParamBuckets(10, 1)
    assert passes(b, "k", 10, 0) == 10  # rest 0
    # 1001 ms: add 10, rest 10, batch 10 -> ok
    assert b.try_acquire("k", 10, 1001)
    assert not b.try_acquire("k", 1, 1500)


def test_values_are_independent() -> None:
    b = ParamBuckets(2, 1)
    assert passes(b, "a", 5, 0) == 2
    for user in ("b", "c", "d"):
        assert passes(b, user, 5, 0) == 2


def test_lru_eviction_forgets_least_recently_used() -> None:
    b = ParamBuckets(1, 1, max_values=3)
    for v in ("a", "b", "c"):
        assert b.try_acquire(v, 1, 0)
    assert not b.try_acquire("a", 1, 0)  # touches "a": now b is least recently used
    assert b.try_acquire("d", 1, 0)  # evicts "b"
    assert b.tracked() == ["c", "a", "d"]
    assert len(b) == 3
    assert b.try_acquire("b", 1, 0)  # forgotten, so it comes back with a full bucket (evicts "c")
    assert b.tracked() == ["a", "d", "b"]
    assert not b.try_acquire("a", 1, 0)  # still tracked, still spent


def test_eviction_bounds_memory_under_many_distinct_values() -> None:
    b = ParamBuckets(1, 1, max_values=100)
    for i in range(10_000):
        b.try_acquire(f"user-{i}", 1, 0)
    assert len(b) == 100
    assert b.tracked()[0] == "user-9900"


def test_reads_the_clock_when_no_time_given() -> None:
    clock = ManualClock(start_ms=5_000)
    b = ParamBuckets(2, 1, clock=clock)
    assert b.try_acquire("u") and b.try_acquire("u")
    assert not b.try_acquire("u")
    clock.advance(1000)
    assert not b.try_acquire("u")
    clock.advance(1)
    assert b.try_acquire("u")


def test_thread_safe_exact_count_under_contention() -> None:
    b = ParamBuckets(1000, 1)
    passed = [0] * 8
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(500):
            if b.try_acquire("hot", 1, 0):
                passed[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(passed) == 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": -1}, "threshold must not be negative"),
        ({"threshold": 1, "duration_seconds": 0}, "duration must be at least 1 second"),
        ({"threshold": 1, "burst": -1}, "burst must not be negative"),
        ({"threshold": 1, "max_values": 0}, "max tracked values must be at least 1"),
        ({"threshold": 1, "exceptions": {"x": -2}}, "exception threshold for 'x'"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ParamBuckets(**kwargs)  # type: ignore[arg-type]


def test_default_capacity_grows_with_duration_like_sentinel_java() -> None:
    assert default_max_values(1) == 4000
    assert default_max_values(10) == 40_000
    assert default_max_values(3600) == 200_000


# Throttling (§1.4): 10 per second -> 100 ms apart per value.


def test_pacer_spaces_requests_of_one_value() -> None:
    p = ParamPacer(10, 1, max_queue_ms=500)
    assert p.reserve("u", 1, 0) == 0  # first sight passes at once
    waits = [p.reserve("u", 1, 0) for _ in range(6)]
    # waits 100..400 (< 500) queue; 500 is not strictly less than the queue timeout
    assert waits == [100, 200, 300, 400, BLOCKED, BLOCKED]
    assert p.reserve("other", 1, 0) == 0


def test_pacer_without_queue_only_passes_on_schedule() -> None:
    p = ParamPacer(5, 1)  # 200 ms apart, queue 0
    assert p.reserve("u", 1, 0) == 0
    assert p.reserve("u", 1, 199) == BLOCKED
    assert p.reserve("u", 1, 200) == 0
    # after an idle period it passes at once and re-anchors at now
    assert p.reserve("u", 1, 10_000) == 0
    assert p.reserve("u", 1, 10_100) == BLOCKED


def test_pacer_zero_threshold_and_exceptions() -> None:
    p = ParamPacer(0, 1, max_queue_ms=1000, exceptions={"vip": 100})
    assert p.reserve("u", 1, 0) == BLOCKED
    assert p.reserve("vip", 1, 0) == 0
    assert p.reserve("vip", 1, 0) == 10
