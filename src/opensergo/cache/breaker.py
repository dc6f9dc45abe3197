"""A circuit breaker on the cache server itself (not on one resource of the app).

Calls to the cache that fail with a connection or timeout error count as errors. Over a sliding
window of ``stat_window`` seconds (ten buckets), once at least ``min_requests`` calls were made
and the error ratio reaches ``error_ratio``, the breaker opens: calls are not sent for
``recovery`` seconds. Then it is half-open: one call at a time probes the server; a success
closes the breaker, a failure opens it for another ``recovery``. Sentinel's breaker has the same
three states; this one sits below the application's resources, on the connection to the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import IntEnum

__all__ = ["BreakerState", "CacheBreaker"]

_BUCKETS = 10


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CacheBreaker:
    def __init__(
        self,
        error_ratio: float,
        min_requests: int,
        stat_window: float,
        recovery: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.error_ratio = error_ratio
        self.min_requests = min_requests
        self.recovery = recovery
        self._bucket_len = stat_window / _BUCKETS
        self._clock = clock
        self._lock = threading.Lock()
        self._starts = [-1] * _BUCKETS  # bucket number each slot holds
        self._totals = [0] * _BUCKETS
        self._errors = [0] * _BUCKETS
        self.state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probing = False
        self.opens = 0

    def allow(self, now: float | None = None) -> bool:
        """Whether a call may be sent now (in half-open: only the one probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self._clock() if now is None else now
        with self._lock:
            if self.state is BreakerState.OPEN:
                if now - self._opened_at < self.recovery:
                    return False
                self.state = BreakerState.HALF_OPEN
                self._probing = False
            if self._probing:
                return False
            self._probing = True
            return True

    def on_success(self, now: float | None = None) -> None:
        if self.state is not BreakerState.CLOSED:
            with self._lock:
                self._close()
            return
        self._count(self._clock() if now is None else now, error=False)

    def on_error(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        if self.state is not BreakerState.CLOSED:
            with self._lock:
                self._open(now)
            return
        total, errors = self._count(now, error=True)
        if total >= self.min_requests and errors >= self.error_ratio * total:
            with self._lock:
                if self.state is BreakerState.CLOSED:
                    self._open(now)

    def _count(self, now: float, *, error: bool) -> tuple[int, int]:
        """Add one call; (calls, errors) over the window when it was an error, else (0, 0).
        Unlocked: a success racing a bucket reset may be lost, which a ratio can afford."""
        number = int(now // self._bucket_len)
        i = number % _BUCKETS
        if self._starts[i] != number:
            self._starts[i] = number
            self._totals[i] = 0
            self._errors[i] = 0
        self._totals[i] += 1
        if not error:
            return 0, 0
        self._errors[i] += 1
        oldest = number - _BUCKETS + 1
        total = errors = 0
        for j in range(_BUCKETS):
            if self._starts[j] >= oldest:
                total += self._totals[j]
                errors += self._errors[j]
        return total, errors

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now
        self._probing = False
        self.opens += 1

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._probing = False
        self._starts = [-1] * _BUCKETS
