"""Per-resource state that outlives a rule-set version (Sentinel's resource node).

A recompile builds new checks for a resource but keeps its node: the in-flight count, the rate-limit
windows (one per window length, shared by every rate limit of that length) and the completion
window that BBR reads. So a push that leaves a resource's rules unchanged, or changes one
threshold, continues counting where the previous version stopped.
"""

from __future__ import annotations

from opensergo.common.stats import Window, window_shape


class InFlight:
    """Requests of one resource in flight.

    Counted without a lock: a request adds itself first and then compares with its limit, taking
    itself back when over it. The add is one ``+=`` statement on an int attribute, which CPython
    (3.11+) runs without a thread switch in the middle (the interpreter switches threads only at
    calls and backward jumps). So every admitted request saw ``count <= limit`` just after its own
    add, with every earlier admitted request still counted: admitted requests never exceed the
    limit at any moment, with threads or asyncio alike. Concurrent losers can make a request fail
    while the true count is momentarily below the limit (a conservative false refusal), never the
    reverse.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class ResourceNode:
    """The state of one resource that survives recompiles."""

    __slots__ = ("in_flight", "metrics", "windows")

    def __init__(self) -> None:
        self.in_flight = InFlight()
        self.windows: dict[int, Window] = {}
        self.metrics: Window | None = None

    def window(self, interval_ms: int) -> Window:
        """The rate-limit window of this length (created on first use)."""
        w = self.windows.get(interval_ms)
        if w is None:
            n, ms = window_shape(interval_ms)
            w = self.windows[interval_ms] = Window(n, ms)
        return w

    def metrics_window(self) -> Window:
        """Sentinel's per-resource "second" window (2 x 500 ms of completions) that BBR reads."""
        if self.metrics is None:
            self.metrics = Window(2, 1000)
        return self.metrics

    def keep_only(self, windows: set[int], metrics: bool) -> None:
        """Drop the windows (by id) and the completion window the new version no longer uses."""
        self.windows = {ms: w for ms, w in self.windows.items() if id(w) in windows}
        if not metrics:
            self.metrics = None
