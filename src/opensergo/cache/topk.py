"""Space-Saving: the most frequent items of a stream in bounded memory (Metwally et al., 2005).

At most ``capacity`` counters are kept. An item already counted is incremented; a new item takes
a free counter, or else replaces the item with the smallest count ``m`` and starts at ``m + 1``
with over-estimation ``m`` remembered. For every kept item ``count - error <= true <= count``,
and every item seen more than ``N / capacity`` times is kept.

The minimum is found through a lazy min-heap: increments do not touch the heap, so an eviction
pops entries until one whose count is current (stale ones are pushed back with the new count).
Each increment is a dictionary update; the heap work is paid only by misses when full.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator

__all__ = ["SpaceSaving"]


class SpaceSaving:
    """Approximate counts of the heaviest ``capacity`` items."""

    __slots__ = ("_errors", "_heap", "capacity", "counts", "total")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 (got {capacity})")
        self.capacity = capacity
        self.counts: dict[Hashable, int] = {}
        self._errors: dict[Hashable, int] = {}
        self._heap: list[tuple[int, int, Hashable]] = []  # (count when pushed, tie-break, item)
        self.total = 0

    def add(self, item: Hashable, weight: int = 1) -> int:
        """Count ``item`` ``weight`` more times; returns its (over-)estimated count."""
        self.total += weight
        counts = self.counts
        count = counts.get(item)
        if count is not None:
            count += weight
            counts[item] = count
            return count
        if len(counts) < self.capacity:
            counts[item] = weight
            self._errors[item] = 0
            heapq.heappush(self._heap, (weight, id(item), item))
            return weight
        floor = self._evict_min()
        count = floor + weight
        counts[item] = count
        self._errors[item] = floor
        heapq.heappush(self._heap, (count, id(item), item))
        return count

    def _evict_min(self) -> int:
        heap = self._heap
        counts = self.counts
        while True:
            if not heap:  # only strays of racing updates are left: drop any one
                item = next(iter(counts))
                self._errors.pop(item, None)
                return counts.pop(item)
            pushed, tie, item = heap[0]
            current = counts.get(item)
            if current is None:  # dropped by a racing update; its heap entry is stale
                heapq.heappop(heap)
                continue
            if current == pushed:
                heapq.heappop(heap)
                del counts[item]
                self._errors.pop(item, None)
                return current
            heapq.heapreplace(heap, (current, tie, item))  # stale: re-file under its real count

    def count(self, item: Hashable) -> int:
        """The estimated count (0 if not kept)."""
        return self.counts.get(item, 0)

    def error(self, item: Hashable) -> int:
        """How much the count may over-estimate."""
        return self._errors.get(item, 0)

    def items(self) -> Iterator[tuple[Hashable, int, int]]:
        """(item, count, error) for every kept item, in no order."""
        errors = self._errors
        for item, count in list(self.counts.items()):
            yield item, count, errors.get(item, 0)

    def top(self, k: int) -> list[tuple[Hashable, int]]:
        """The ``k`` items with the highest estimated counts, highest first."""
        return heapq.nlargest(k, self.counts.items(), key=lambda kv: kv[1])

    def __len__(self) -> int:
        return len(self.counts)
