"""A CachePolicy compiled into the objects one governed cache consults on every call.

Everything a call needs is built here once per rule change: the detector, the near-cache, the
breaker, the per-key load limits and the big-value check. A governed client swaps its whole
:class:`Policy` in one assignment, so a call sees either the old policy or the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from opensergo.cache.bigvalue import BigValueCheck
from opensergo.cache.breaker import CacheBreaker
from opensergo.cache.detector import HotKeyDetector
from opensergo.cache.errors import SourceProtectedError
from opensergo.cache.nearcache import NearCache
from opensergo.common.clock import SYSTEM_CLOCK, Clock
from opensergo.governance.faulttolerance.hotparam import ParamBuckets
from opensergo.spec.cache import CachePolicy, InvalidationMode, WhenOpen

__all__ = ["LoadGuard", "Policy", "compile_policy"]


class LoadGuard:
    """Per-key limits on loads from the source: a Sentinel token bucket per key and a cap on
    loads in flight per key."""

    def __init__(
        self, cache: str, policy: str, buckets: ParamBuckets | None, max_concurrent: int | None
    ) -> None:
        self.cache = cache
        self.policy = policy
        self.buckets = buckets
        self.max_concurrent = max_concurrent
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self.refused = 0

    def acquire(self, key: str) -> None:
        """Take a load slot for ``key`` or raise SourceProtectedError; pair with :meth:`release`."""
        if self.max_concurrent is not None:
            with self._lock:
                current = self._in_flight.get(key, 0)
                if current >= self.max_concurrent:
                    self.refused += 1
                    raise SourceProtectedError(
                        self.cache, self.policy, key, f"{current} loads in flight (maxConcurrentLoads)"
                    )
                self._in_flight[key] = current + 1
        if self.buckets is not None and not self.buckets.try_acquire(key):
            self.release(key)
            self.refused += 1
            raise SourceProtectedError(
                self.cache,
                self.policy,
                key,
                f"above {self.buckets.threshold} loads per second (maxLoadsPerSecond)",
            )

    def release(self, key: str) -> None:
        if self.max_concurrent is None:
            return
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)


@dataclass(slots=True)
class Policy:
    cache: str
    name: str  # the CachePolicy object's name
    detector: HotKeyDetector | None = None
    near: NearCache | None = None
    tracking: bool = False
    coalesce: bool = True
    loads: LoadGuard | None = None
    breaker: CacheBreaker | None = None
    stale: bool = False
    miss_when_open: bool = False
    big: BigValueCheck | None = None
    source: CachePolicy | None = field(default=None, repr=False)


def _seconds(clock: Clock) -> Callable[[], float]:
    ns = clock.now_ns
    return lambda: ns() / 1e9


def compile_policy(cache: str, obj: CachePolicy | None, clock: Clock = SYSTEM_CLOCK) -> Policy:
    """The policy for ``cache`` from ``obj`` (None: coalescing only, the default)."""
    if obj is None:
        return Policy(cache, "")
    spec = obj.spec
    seconds = _seconds(clock)
    policy = Policy(cache, obj.name, coalesce=spec.coalescing.enabled, source=obj)
    if spec.hotKey is not None:
        hk = spec.hotKey
        policy.detector = HotKeyDetector(
            hk.threshold, hk.window.seconds, hk.capacity, hk.reportTop, clock=seconds
        )
    breaker = spec.breaker
    if spec.nearCache is not None:
        nc = spec.nearCache
        stale_for = breaker.staleIfError.seconds if breaker is not None else 0.0
        policy.tracking = nc.invalidation is InvalidationMode.TRACKING
        policy.near = NearCache(nc.maxEntries, nc.ttl.seconds, stale_for, tracking=policy.tracking)
        policy.stale = stale_for > 0
    if breaker is not None:
        policy.breaker = CacheBreaker(
            float(breaker.errorRatio),
            breaker.minRequestAmount,
            breaker.statDuration.seconds,
            breaker.recoveryTimeout.seconds,
            clock=seconds,
        )
        policy.miss_when_open = breaker.whenOpen is WhenOpen.MISS
    sp = spec.sourceProtection
    if sp is not None:
        buckets = None
        if sp.maxLoadsPerSecond is not None:
            buckets = ParamBuckets(
                sp.maxLoadsPerSecond, 1, sp.burst, max_values=sp.maxTrackedKeys, clock=clock
            )
        policy.loads = LoadGuard(cache, obj.name, buckets, sp.maxConcurrentLoads)
    if spec.bigValue is not None:
        policy.big = BigValueCheck(cache, spec.bigValue.warnAbove, spec.bigValue.refuseAbove)
    return policy
