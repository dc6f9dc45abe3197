"""Hot-key detection: per-key request rates over a sliding window, in bounded memory.

The window is cut into ``slices`` equal slices, each counted by its own
:class:`~opensergo.cache.topk.SpaceSaving` summary of ``capacity`` counters, so memory is
``slices * capacity`` counters whatever the number of distinct keys. When a slice ends, the
summaries of the whole window are merged: a key is hot while its rate over the window, or over
any one slice of it, reaches ``threshold`` requests per second, and the ``report_top`` heaviest
keys are kept for reporting. A key that reaches the threshold rate within the current slice is
hot at once, so a sudden storm is caught within ``threshold * slice`` requests rather than at
the next slice boundary, and it stays hot until the window no longer holds it.

A call to :meth:`record` is, for a key already counted in the current slice, one dictionary
increment and one set lookup, without a lock. A caller on a hot path may do that step itself
(see :meth:`record`): ``counts``, ``slice_end``, ``slice_hot`` and ``hot`` are public for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from opensergo.cache.topk import SpaceSaving

__all__ = ["HotKey", "HotKeyDetector"]


@dataclass(frozen=True, slots=True)
class HotKey:
    key: Hashable
    rate: float  # estimated requests per second over the window
    hot: bool


class HotKeyDetector:
    """Sliding-window Space-Saving; ``clock`` gives seconds (``time.monotonic`` by default)."""

    # Slots: every cache read touches this object; a slotted one is fewer cache lines.
    __slots__ = (
        "_clock", "_index", "_lock", "_ring", "_slice_len", "_slices", "_top", "capacity", "counts", "hot",
        "report_top", "rotations", "slice_end", "slice_hot", "threshold", "window",
    )  # fmt: skip

    def __init__(
        self,
        threshold: float,
        window: float,
        capacity: int,
        report_top: int = 20,
        slices: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold <= 0 or window <= 0 or slices < 1:
            raise ValueError("threshold, window and slices must be positive")
        self.threshold = threshold
        self.window = window
        self.capacity = capacity
        self.report_top = report_top
        self._slices = slices
        self._slice_len = window / slices
        # Requests of one key within one slice that alone mean the threshold rate.
        self.slice_hot = max(1, int(threshold * self._slice_len))
        self._clock = clock
        self._lock = threading.Lock()
        # The slice being counted plus the ``slices`` complete ones that make the window.
        self._ring: list[SpaceSaving] = [SpaceSaving(capacity) for _ in range(slices + 1)]
        start = clock()
        self._index = 0
        self.counts = self._ring[0].counts  # the current slice's counters
        self.slice_end = start + self._slice_len
        self.hot: frozenset[Hashable] = frozenset()
        self._top: list[HotKey] = []
        self.rotations = 0

    @property
    def hot_keys(self) -> frozenset[Hashable]:
        return self.hot

    def record(self, key: Hashable, now: float | None = None) -> bool:
        """Count one request of ``key``; returns whether the key is hot.

        A caller may do the common case inline and call this only for the rest: when
        ``counts.get(key)`` is a count ``c`` with ``now < slice_end`` and ``c + 1 < slice_hot``,
        storing ``c + 1`` in ``counts`` and answering ``key in hot`` is what this does.
        """
        if now is None:
            now = self._clock()
        counts = self.counts
        count = counts.get(key)
        if count is not None and now < self.slice_end:
            # The common case, without the lock: one dictionary update under the GIL. Racing
            # an eviction can re-add a key the summary just dropped; the slice's summary is
            # replaced when the slice ends, so such strays do not accumulate.
            count += 1
            counts[key] = count
        else:
            with self._lock:
                if now >= self.slice_end:
                    self._advance(now)
                count = self._ring[self._index].add(key)
        if count >= self.slice_hot and key not in self.hot:
            with self._lock:
                self.hot = self.hot | {key}
            return True
        return key in self.hot

    def is_hot(self, key: Hashable) -> bool:
        return key in self.hot

    def top(self, now: float | None = None) -> list[HotKey]:
        """The heaviest keys over the last complete window, heaviest first."""
        now = self._clock() if now is None else now
        with self._lock:
            if now >= self.slice_end:
                self._advance(now)
            return list(self._top)

    def _advance(self, now: float) -> None:
        """Close the slices that ended before ``now`` (the caller holds the lock)."""
        passed = int((now - self.slice_end) // self._slice_len) + 1
        ring = len(self._ring)
        for _ in range(min(passed, ring)):
            self._index = (self._index + 1) % ring
            self._ring[self._index] = SpaceSaving(self.capacity)
        self.counts = self._ring[self._index].counts
        self.slice_end += passed * self._slice_len
        self.rotations += 1
        self._recompute()

    def _recompute(self) -> None:
        merged: dict[Hashable, int] = {}
        peak: dict[Hashable, int] = {}  # the key's count in its busiest slice
        for i, summary in enumerate(self._ring):
            if i == self._index:
                continue
            for key, count, _ in summary.items():
                merged[key] = merged.get(key, 0) + count
                if count > peak.get(key, 0):
                    peak[key] = count
        floor = self.threshold * self.window
        slice_hot = self.slice_hot
        self.hot = frozenset(k for k, c in merged.items() if c >= floor or peak[k] >= slice_hot)
        ranked = sorted(merged.items(), key=lambda kv: kv[1], reverse=True)[: self.report_top]
        self._top = [HotKey(k, c / self.window, k in self.hot) for k, c in ranked]
