"""Per-value limits for hot parameters (Sentinel's ``ParamFlowRule``), as bounded LRU tables.

A hot-parameter limit applies a threshold to each *value* of a parameter separately: every user
id, product id or cache key gets its own allowance. Two behaviours, both keyed by the value:

* :class:`ParamBuckets` (reject): Sentinel's per-value token bucket (Java
  ``ParamFlowChecker.passDefaultLocalCheck``, Go ``rejectTrafficShapingController``). A value
  first seen is admitted with ``threshold + burst - count`` tokens left; later calls spend tokens;
  once *more than* ``duration`` has passed since the last refill the bucket refills by
  ``floor(elapsed * threshold / duration)``, capped at ``threshold + burst``. In effect a fixed
  window anchored at the first request after the previous one expired: with threshold 5 per 1 s,
  five calls at ``t`` pass and a sixth at any time up to ``t + 1000 ms`` is blocked.
* :class:`ParamPacer` (throttling): requests of one value are spaced
  ``count * duration / threshold`` apart, queueing for at most ``max_queue_ms`` (Java
  ``passThrottleLocalCheck``).

Both take a threshold 0 as "block every request of that value", refuse a batch the threshold
cannot ever hold, and track at most ``max_values`` values: the least recently used one is
forgotten when a new one arrives. A forgotten value comes back with a full allowance (so cycling
through more distinct values than the capacity evades the limit, as in Sentinel; size the
capacity to the hot set).

Sentinel keeps (time, tokens) in lock-free maps and retries a lost CAS. Here one small lock
guards the table: a check is a few dictionary operations, the lock is uncontended almost always,
and (time, tokens) always change together, which Sentinel Go does not guarantee.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from opensergo.common.clock import SYSTEM_CLOCK, Clock

# Sentinel's default number of tracked values per rule at a 1 s duration (Java ParameterMetric,
# Go traffic_shaping.go); both grow it with the duration, Java up to 200 000.
DEFAULT_MAX_VALUES = 4000
MAX_VALUES_CAP = 200_000

BLOCKED = -1


def default_max_values(duration_seconds: int) -> int:
    """Sentinel Java's capacity for a rule without one: 4000 per second of duration, at most
    200 000."""
    return min(DEFAULT_MAX_VALUES * max(duration_seconds, 1), MAX_VALUES_CAP)


class _ValueTable:
    """What both behaviours share: thresholds per value, the clock and the bounded LRU table."""

    __slots__ = ("_lock", "_now_ms", "_table", "duration_ms", "exceptions", "max_values", "threshold")

    def __init__(
        self,
        threshold: int,
        duration_seconds: int,
        exceptions: Mapping[str, int] | None,
        max_values: int,
        clock: Clock,
    ) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must not be negative (got {threshold})")
        if duration_seconds <= 0:
            raise ValueError(f"duration must be at least 1 second (got {duration_seconds})")
        if max_values <= 0:
            raise ValueError(f"max tracked values must be at least 1 (got {max_values})")
        items = dict(exceptions or {})
        for value, limit in items.items():
            if limit < 0:
                raise ValueError(f"exception threshold for {value!r} must not be negative (got {limit})")
        self.threshold = threshold
        self.duration_ms = duration_seconds * 1000
        self.exceptions = items
        self.max_values = max_values
        self._now_ms = clock.now_ms
        self._lock = threading.Lock()
        self._table: OrderedDict[str, list[int]] = OrderedDict()

    def threshold_for(self, value: str) -> int:
        """The threshold of ``value``: its exception item's, else the rule's."""
        return self.exceptions.get(value, self.threshold)

    def __len__(self) -> int:
        return len(self._table)

    def tracked(self) -> list[str]:
        """The tracked values, least recently used first."""
        with self._lock:
            return list(self._table)

    def _remember(self, value: str, state: list[int]) -> None:
        """Track a new value (the caller holds the lock), forgetting the least recently used."""
        table = self._table
        if len(table) >= self.max_values:
            table.popitem(last=False)
        table[value] = state


class ParamBuckets(_ValueTable):
    """A token bucket per value (Sentinel's QPS reject behaviour); see the module docstring."""

    __slots__ = ("burst",)

    def __init__(
        self,
        threshold: int,
        duration_seconds: int = 1,
        burst: int = 0,
        exceptions: Mapping[str, int] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if burst < 0:
            raise ValueError(f"burst must not be negative (got {burst})")
        super().__init__(threshold, duration_seconds, exceptions, max_values, clock)
        self.burst = burst

    def try_acquire(self, value: str, count: int = 1, now_ms: int | None = None) -> bool:
        """Take ``count`` tokens of ``value``'s bucket at ``now_ms`` (the clock's when None)."""
        tokens = self.exceptions.get(value, self.threshold) if self.exceptions else self.threshold
        if tokens == 0:
            return False
        most = tokens + self.burst
        if count > most:
            return False
        if now_ms is None:
            now_ms = self._now_ms()
        with self._lock:
            table = self._table
            state = table.get(value)
            if state is None:
                # [last refill (ms), tokens left]
                self._remember(value, [now_ms, most - count])
                return True
            table.move_to_end(value)
            elapsed = now_ms - state[0]
            rest = state[1]
            if elapsed > self.duration_ms:
                added = elapsed * tokens // self.duration_ms
                left = most - count if added + rest > most else added + rest - count
                if left < 0:
                    return False
                state[0] = now_ms
                state[1] = left
                return True
            if rest - count >= 0:
                state[1] = rest - count
                return True
            return False


class ParamPacer(_ValueTable):
    """Uniform pacing per value with a bounded queue (Sentinel's throttling behaviour)."""

    __slots__ = ("max_queue_ms",)

    def __init__(
        self,
        threshold: int,
        duration_seconds: int = 1,
        max_queue_ms: int = 0,
        exceptions: Mapping[str, int] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if max_queue_ms < 0:
            raise ValueError(f"queue timeout must not be negative (got {max_queue_ms})")
        super().__init__(threshold, duration_seconds, exceptions, max_values, clock)
        self.max_queue_ms = max_queue_ms

    def reserve(self, value: str, count: int = 1, now_ms: int | None = None) -> int:
        """Admit ``count`` requests of ``value``: the wait in ms (0 = at once), or BLOCKED.

        The cost of a request is ``count * duration / threshold`` ms, rounded (Sentinel Java).
        It passes when the previous admission plus the cost has already passed, or when the wait
        is *less than* the queue timeout (so a timeout of 0 never queues); the slot is then
        reserved and the caller waits. The first request of a value passes at once."""
        tokens = self.exceptions.get(value, self.threshold) if self.exceptions else self.threshold
        if tokens == 0:
            return BLOCKED
        cost = round(count * self.duration_ms / tokens)
        if now_ms is None:
            now_ms = self._now_ms()
        with self._lock:
            table = self._table
            state = table.get(value)
            if state is None:
                self._remember(value, [now_ms])
                return 0
            table.move_to_end(value)
            expected = state[0] + cost
            if expected <= now_ms:
                state[0] = now_ms
                return 0
            wait = expected - now_ms
            if wait < self.max_queue_ms:
                state[0] = expected
                return wait
            return BLOCKED
