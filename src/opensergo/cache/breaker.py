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
    # Slots: every cache call touches this object; a slotted one is fewer cache lines.
    __slots__ = (
        "_bucket_len", "_clock", "_done", "_errors", "_lock", "_number", "_opened_at", "_probing",
        "bucket_calls", "bucket_end", "closed", "error_ratio", "min_requests", "opens", "recovery", "state",
    )  # fmt: skip

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
        # Completed buckets: bucket number -> (calls, errors); the current one in plain fields,
        # so that a success (every cache call) is one comparison and one increment. They are
        # public so that a caller's hot path can do that step inline (see :meth:`on_success`).
        self._done: dict[int, tuple[int, int]] = {}
        self._number = -1
        self.bucket_end = float("-inf")
        self.bucket_calls = 0
        self._errors = 0
        self.state = BreakerState.CLOSED
        self.closed = True
        self._opened_at = 0.0
        self._probing = False
        self.opens = 0

    def allow(self, now: float | None = None) -> bool:
        """Whether a call may be sent now (in half-open: only the one probe)."""
        if self.closed:
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
        """Count a successful call. While ``closed`` and ``now < bucket_end`` this is
        ``bucket_calls += 1``, which a caller may do inline."""
        if not self.closed:
            with self._lock:
                self._close()
            return
        if now is None:
            now = self._clock()
        if now >= self.bucket_end:
            self._roll(now)
        self.bucket_calls += 1  # unlocked: a success racing a roll may be lost, which a ratio affords

    def on_error(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            if not self.closed:
                self._open(now)
                return
            if now >= self.bucket_end:
                self._roll(now)
            self.bucket_calls += 1
            self._errors += 1
            oldest = self._number - _BUCKETS + 1
            total, errors = self.bucket_calls, self._errors
            for number, (t, e) in self._done.items():
                if number >= oldest:
                    total += t
                    errors += e
            if total >= self.min_requests and errors >= self.error_ratio * total:
                self._open(now)

    def _roll(self, now: float) -> None:
        """Close the current bucket and start the one holding ``now``."""
        number = int(now // self._bucket_len)
        if self.bucket_calls:
            self._done[self._number] = (self.bucket_calls, self._errors)
        oldest = number - _BUCKETS + 1
        for old in [n for n in self._done if n < oldest]:
            del self._done[old]
        self._number = number
        self.bucket_end = (number + 1) * self._bucket_len
        self.bucket_calls = 0
        self._errors = 0

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.closed = False
        self._opened_at = now
        self._probing = False
        self.opens += 1

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self.closed = True
        self._probing = False
        self._done.clear()
        self.bucket_end = float("-inf")
        self.bucket_calls = 0
        self._errors = 0
