"""Sliding-window statistics with Sentinel's LeapArray semantics, and a concurrency gauge.

A :class:`Window` is a ring of ``sample_count`` buckets of ``interval / sample_count`` each. The bucket
for time ``t`` is slot ``(t // length) % sample_count`` and starts at ``t - t % length``; a slot
whose start is older than the current bucket's is reset in place when time reaches it again, and a
slot older than one interval is left out of every sum (so stale history never leaks in). Buckets
are preallocated as parallel lists of ints; nothing is allocated while counting.

Only the current bucket is ever written. The sum of pass counts over the other valid buckets is
therefore constant until time enters the next bucket: :meth:`Window.roll` recomputes it once per
bucket (``hist_pass``), and a rate-limit check is a comparison of ``hist_pass + passes[idx]``. The
hot path only calls ``roll`` when ``now >= end``.

Thread safety: rolling (moving to a new bucket) takes a lock, once per bucket length. Counter
updates are single ``+=`` statements on ints without calls in between, which the GIL does not
interrupt in CPython 3.11+; like Sentinel (whose adders race with a bucket reset), a count that
lands exactly while another thread moves to the next bucket may be attributed to either bucket.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from opensergo.common.clock import NS_PER_MS

# Sentinel Java's SentinelConfig.statisticMaxRt: the min-RT of a bucket with no completion.
DEFAULT_MAX_RT_MS = 5000

# Start of a slot that was never used: older than any valid bucket.
_NEVER = -(2**62)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A read-only copy of one bucket (times in milliseconds on the window's clock)."""

    start_ms: float
    passed: int
    blocked: int
    success: int
    errors: int
    rt_sum_ms: float
    min_rt_ms: float


class Window:
    """A LeapArray: ``sample_count`` buckets over ``interval_ms``; counters pass, block, success
    (completions, with or without error), error, rt_sum and min_rt.

    All ``now`` arguments are nanoseconds from the engine's clock.
    """

    __slots__ = (
        "_lock",
        "blocks",
        "end",
        "errors",
        "hist_pass",
        "idx",
        "interval_ns",
        "length_ns",
        "max_rt_ns",
        "min_rts",
        "passes",
        "rt_sums",
        "sample_count",
        "start",
        "starts",
        "successes",
    )

    def __init__(self, sample_count: int, interval_ms: int, *, max_rt_ms: int = DEFAULT_MAX_RT_MS) -> None:
        if sample_count < 1 or interval_ms < 1:
            raise ValueError("sample_count and interval_ms must be positive")
        if interval_ms % sample_count:
            raise ValueError(f"interval {interval_ms} ms is not a multiple of {sample_count} buckets")
        n = sample_count
        self.sample_count = n
        self.interval_ns = interval_ms * NS_PER_MS
        self.length_ns = self.interval_ns // n
        self.max_rt_ns = max_rt_ms * NS_PER_MS
        self.starts = [_NEVER] * n
        self.passes = [0] * n
        self.blocks = [0] * n
        self.successes = [0] * n
        self.errors = [0] * n
        self.rt_sums = [0] * n
        self.min_rts = [self.max_rt_ns] * n
        self.idx = 0
        self.hist_pass = 0
        # [start, end) of the current bucket; end = _NEVER forces a roll on first use.
        self.start = _NEVER
        self.end = _NEVER
        self._lock = threading.Lock()

    @property
    def interval_ms(self) -> int:
        return self.interval_ns // NS_PER_MS

    def roll(self, now: int) -> None:
        """Make the bucket holding ``now`` current (resetting its slot if stale).

        Callers on the hot path call this only when ``now >= self.end``. A clock that went back
        (``now < start``) keeps counting into the current bucket.
        """
        with self._lock:
            if now < self.end:  # another thread moved on already, or the clock went back
                return
            length = self.length_ns
            start = now - now % length
            idx = (now // length) % self.sample_count
            starts = self.starts
            if starts[idx] != start:
                starts[idx] = start
                self.passes[idx] = 0
                self.blocks[idx] = 0
                self.successes[idx] = 0
                self.errors[idx] = 0
                self.rt_sums[idx] = 0
                self.min_rts[idx] = self.max_rt_ns
            oldest = start - self.interval_ns
            hist = 0
            passes = self.passes
            for i in range(self.sample_count):
                s = starts[i]
                if oldest < s < start:
                    hist += passes[i]
            self.hist_pass = hist
            self.idx = idx
            self.start = start
            # Published last: a reader that sees the new end also sees idx and hist_pass.
            self.end = start + length

    # -- counting (the engine inlines the pass count; these are for everything else) ----------

    def add_pass(self, now: int, count: int = 1) -> None:
        if now >= self.end:
            self.roll(now)
        self.passes[self.idx] += count

    def add_block(self, now: int, count: int = 1) -> None:
        if now >= self.end:
            self.roll(now)
        self.blocks[self.idx] += count

    def add_completion(self, now: int, rt_ns: int, error: bool = False) -> None:
        """One finished request: success (= completed) +1, rt, min_rt, error +1 if ``error``."""
        if now >= self.end:
            self.roll(now)
        i = self.idx
        self.successes[i] += 1
        self.rt_sums[i] += rt_ns
        if rt_ns < self.min_rts[i]:
            self.min_rts[i] = rt_ns
        if error:
            self.errors[i] += 1

    # -- reading ------------------------------------------------------------------------------

    def pass_count(self, now: int) -> int:
        """Passes in the window ending at ``now`` (what a rate-limit rule compares)."""
        if now >= self.end:
            self.roll(now)
        return self.hist_pass + self.passes[self.idx]

    def _valid(self, now: int) -> list[int]:
        if now >= self.end:
            self.roll(now)
        current = self.start
        oldest = current - self.interval_ns
        return [i for i, s in enumerate(self.starts) if oldest < s <= current]

    def _bucket(self, i: int) -> Bucket:
        return Bucket(
            start_ms=self.starts[i] / NS_PER_MS,
            passed=self.passes[i],
            blocked=self.blocks[i],
            success=self.successes[i],
            errors=self.errors[i],
            rt_sum_ms=self.rt_sums[i] / NS_PER_MS,
            min_rt_ms=self.min_rts[i] / NS_PER_MS,
        )

    def buckets(self, now: int) -> list[Bucket]:
        """The valid buckets at ``now`` (current one included), oldest first."""
        return sorted((self._bucket(i) for i in self._valid(now)), key=lambda b: b.start_ms)

    def current_bucket(self, now: int) -> Bucket:
        if now >= self.end:
            self.roll(now)
        return self._bucket(self.idx)

    def previous_bucket(self, now: int) -> Bucket | None:
        """The bucket one length before the current one, if it is still valid and was used."""
        if now >= self.end:
            self.roll(now)
        prev_start = self.start - self.length_ns
        for i in self._valid(now):
            if self.starts[i] == prev_start:
                return self._bucket(i)
        return None

    def totals(self, now: int) -> Bucket:
        """Sums over the valid buckets (min_rt is the minimum; start is the current bucket's)."""
        valid = self._valid(now)
        return Bucket(
            start_ms=self.start / NS_PER_MS,
            passed=sum(self.passes[i] for i in valid),
            blocked=sum(self.blocks[i] for i in valid),
            success=sum(self.successes[i] for i in valid),
            errors=sum(self.errors[i] for i in valid),
            rt_sum_ms=sum(self.rt_sums[i] for i in valid) / NS_PER_MS,
            min_rt_ms=min((self.min_rts[i] for i in valid), default=self.max_rt_ns) / NS_PER_MS,
        )

    def max_success_per_second(self, now: int) -> float:
        """Sentinel's maxSuccessQps: the busiest bucket's completions scaled to a second (floor 1)."""
        valid = self._valid(now)
        best = max([1, *(self.successes[i] for i in valid)])
        return best * self.sample_count * 1_000_000_000 / self.interval_ns

    def min_rt_ms(self, now: int) -> float:
        """Sentinel's minRt: the smallest bucket min-RT in the window, at least 1 ms."""
        valid = self._valid(now)
        rt = min((self.min_rts[i] for i in valid), default=self.max_rt_ns)
        return max(1.0, rt / NS_PER_MS)


def window_shape(interval_ms: int) -> tuple[int, int]:
    """``(sample_count, interval_ms)`` for a rate-limit window of ``interval_ms``.

    Buckets of at least 500 ms (Sentinel's granularity: 1 s gives its 2 x 500 ms), at most 60 of
    them, and an exact division; an interval that does not divide (or is shorter than 1 s) falls
    back to fewer, longer buckets, down to one tumbling bucket.
    """
    if interval_ms < 1:
        raise ValueError("interval must be at least 1 ms")
    floor = min(500, interval_ms)
    for n in range(min(60, interval_ms // floor), 0, -1):
        if interval_ms % n == 0 and interval_ms // n >= floor:
            return n, interval_ms
    return 1, interval_ms  # pragma: no cover - n = 1 always qualifies
