"""Sliding-window statistics (LeapArray): reference §10 scenarios 1-3, plus the concurrency gauge."""

from __future__ import annotations

import threading

import pytest

from opensergo.common.clock import NS_PER_MS
from opensergo.common.stats import Window, window_shape

pytestmark = pytest.mark.unit

MS = NS_PER_MS


def test_scenario_01_bucket_arithmetic() -> None:
    """§10.1: interval 2000 ms / 2 buckets; adds at a bucket's start and +500 ms share it."""
    w = Window(2, 2000)
    t0 = 1_234_567  # ms
    start = t0 - t0 % 1000
    w.add_pass(start * MS)
    w.add_pass((start + 500) * MS)
    w.add_block((start + 500) * MS)
    bucket = w.current_bucket((start + 500) * MS)
    assert bucket.start_ms == start
    assert (bucket.passed, bucket.blocked) == (2, 1)
    assert w.current_bucket(t0 * MS).start_ms == start
    nxt = w.current_bucket((start + 1000) * MS)
    assert nxt.start_ms == start + 1000
    assert (nxt.passed, nxt.blocked, nxt.success, nxt.errors) == (0, 0, 0, 0)
    # ... while the previous bucket is still part of the window
    assert w.pass_count((start + 1000) * MS) == 2


def test_scenario_02_concurrent_first_touch() -> None:
    """§10.2: 16 threads add one pass to an empty bucket at the same timestamp -> 16."""
    w = Window(2, 1000)
    now = 42_000 * MS
    barrier = threading.Barrier(16)

    def add() -> None:
        barrier.wait()
        w.add_pass(now)

    threads = [threading.Thread(target=add) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.current_bucket(now).passed == 16
    assert w.pass_count(now) == 16


def test_scenario_03_stale_buckets_excluded() -> None:
    """§10.3: 10 x 100 ms: writes at t and t+100, then one write at t+interval+100 -> 1 valid bucket."""
    w = Window(10, 1000)
    t = 5_000
    w.add_pass(t * MS)
    w.add_pass((t + 100) * MS)
    assert len(w.buckets((t + 100) * MS)) == 2
    later = (t + 1000 + 100) * MS
    w.add_pass(later)
    valid = w.buckets(later)
    assert len(valid) == 1
    assert valid[0].passed == 1
    assert w.pass_count(later) == 1


def test_scenario_03_previous_window() -> None:
    """§10.3: 2 x 1000 ms: previous bucket empty at t, the t bucket at t+1000, empty at t+11000."""
    w = Window(2, 2000)
    t = 7_000
    w.add_pass(t * MS)
    assert w.previous_bucket(t * MS) is None
    prev = w.previous_bucket((t + 1000) * MS)
    assert prev is not None
    assert prev.start_ms == t
    assert prev.passed == 1
    assert w.previous_bucket((t + 11_000) * MS) is None


def test_stale_history_never_leaks_after_a_long_gap() -> None:
    w = Window(2, 1000)
    for _ in range(5):
        w.add_pass(0)
    w.add_pass(600 * MS)
    assert w.pass_count(600 * MS) == 6
    # The ring slot of t=0 is reused at t=2000: reset, not accumulated.
    assert w.pass_count(2000 * MS) == 0
    assert w.pass_count(2600 * MS) == 0


def test_completions_rt_and_min_rt() -> None:
    w = Window(2, 1000)
    w.add_completion(100 * MS, 30 * MS)
    w.add_completion(200 * MS, 10 * MS, error=True)
    w.add_completion(600 * MS, 20 * MS)
    totals = w.totals(700 * MS)
    assert (totals.success, totals.errors) == (3, 1)
    assert totals.rt_sum_ms == 60
    assert totals.min_rt_ms == 10
    assert w.min_rt_ms(700 * MS) == 10
    # busiest bucket has 2 completions -> 2 * 2 buckets / 1 s
    assert w.max_success_per_second(700 * MS) == 4


def test_empty_window_defaults_match_sentinel() -> None:
    w = Window(2, 1000)
    assert w.min_rt_ms(0) == 5000  # statisticMaxRt
    assert w.max_success_per_second(0) == 2  # floor of 1 success per bucket


def test_clock_going_back_counts_into_the_current_bucket() -> None:
    w = Window(2, 1000)
    w.add_pass(1500 * MS)
    w.add_pass(1200 * MS)  # earlier bucket, but time went back: no reset, no loss
    assert w.pass_count(1500 * MS) == 2


def test_window_validation() -> None:
    with pytest.raises(ValueError):
        Window(3, 1000)
    with pytest.raises(ValueError):
        Window(0, 1000)


@pytest.mark.parametrize(
    ("interval", "buckets"),
    [(1000, 2), (500, 1), (100, 1), (1500, 3), (2000, 4), (20_000, 40), (60_000, 60), (1700, 2), (750, 1)],
)
def test_window_shape(interval: int, buckets: int) -> None:
    assert window_shape(interval) == (buckets, interval)
