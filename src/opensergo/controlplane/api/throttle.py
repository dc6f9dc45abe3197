"""Failed authentications per source: a token bucket, so guessing tokens gets slow.

Each source (the client's address) may fail ``burst`` times at once; after that one attempt
more per ``window / burst`` seconds. While a source has no attempt left, its logins and bearer
tokens are answered 429 with ``Retry-After`` without being checked. Successful attempts cost
nothing. At most ``max_sources`` sources are remembered (the least recently failing go first),
so the table stays bounded whatever addresses an attacker uses.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class FailureThrottle:
    def __init__(
        self,
        burst: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self.burst = burst
        self.rate = burst / window  # attempts regained per second
        self._clock = clock
        self._max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (left, at)

    def _left(self, source: str, now: float) -> float:
        bucket = self._buckets.get(source)
        if bucket is None:
            return float(self.burst)
        left, at = bucket
        return min(float(self.burst), left + (now - at) * self.rate)

    def retry_after(self, source: str) -> float:
        """Seconds until ``source`` may try again; 0 when it may try now."""
        left = self._left(source, self._clock())
        return 0.0 if left >= 1.0 else (1.0 - left) / self.rate

    def failed(self, source: str) -> None:
        now = self._clock()
        left = self._left(source, now) - 1.0
        self._buckets[source] = (left, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
