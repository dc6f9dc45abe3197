"""ThrottlingStrategy: uniform pacing with a bounded queue (Sentinel's "rate limiter" behaviour).

A :class:`Throttler` is a virtual-scheduling leaky bucket (Sentinel Go ``tc_throttling.go``): each
request is charged its own cost ``ceil(count / threshold * interval)`` counted from the previous
admission; a request whose projected wait exceeds the queue timeout is rejected, one whose wait is
exactly the timeout still queues. The check only *reserves* a slot and returns how long to wait,
so sync callers ``sleep`` and asyncio callers ``await asyncio.sleep`` (the per-call path does
either).

OpenSergo's ``minIntervalOfRequests`` maps to threshold 1 per that interval: the spacing is kept
exactly (Sentinel Java's OpenSergo data source rounds ``1000 / interval`` up to a count, which
distorts any interval that does not divide 1000 ms).

The reservation runs under a lock, so under a frozen clock exactly one of any number of
simultaneous callers passes without queueing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from opensergo.common.clock import NS_PER_MS
from opensergo.governance.errors import BlockedError, ThrottledError
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.compiling import Compilation
    from opensergo.spec.faulttolerance import ThrottlingStrategy

REJECT = -1

# "No previous admission": far enough in the past that the first request always passes.
_LONG_AGO = -(2**62)


class Throttler:
    """Paces admissions ``interval / threshold`` apart; ``reserve`` returns the wait or REJECT."""

    __slots__ = ("_last", "_lock", "interval_ns", "max_queue_ns", "threshold")

    def __init__(self, threshold: float, interval_ms: float, max_queue_ms: float) -> None:
        if interval_ms < 0 or max_queue_ms < 0:
            raise ValueError("interval and queue timeout must not be negative")
        self.threshold = threshold
        self.interval_ns = round(interval_ms * NS_PER_MS)
        self.max_queue_ns = round(max_queue_ms * NS_PER_MS)
        self._last = _LONG_AGO
        self._lock = threading.Lock()

    @classmethod
    def from_strategy(cls, strategy: ThrottlingStrategy) -> Throttler:
        spec = strategy.spec
        return cls(1, spec.minIntervalOfRequests.millis, spec.queueTimeout.millis)

    @property
    def spacing_ms(self) -> float:
        """The pacing interval for a single request."""
        if self.threshold <= 0:
            return math.inf
        return self.interval_ns / self.threshold / NS_PER_MS

    @property
    def queue_timeout_ms(self) -> float:
        return self.max_queue_ns / NS_PER_MS

    def reserve(self, now: int, count: int = 1) -> int:
        """Admit ``count`` at ``now`` (ns): the wait in ns (0 = at once), or REJECT."""
        if count <= 0:
            return 0
        threshold = self.threshold
        if threshold <= 0 or count > threshold:
            return REJECT
        cost = math.ceil(count * self.interval_ns / threshold)
        with self._lock:
            last = self._last
            if last + cost <= now:
                self._last = now
                return 0
            wait = last + cost - now
            if wait > self.max_queue_ns:
                return REJECT
            self._last = last + cost
            return wait


class Throttling:
    """The compiled throttling strategies of one resource: a slot in each, in rule order."""

    __slots__ = ("throttlers",)

    def __init__(self, throttlers: tuple[tuple[Throttler, RuleRef], ...]) -> None:
        self.throttlers = throttlers

    def reserve(self, now: int) -> int | BlockedError:
        """Reserve a slot in every throttler, each after the previous one's; the total wait (ns),
        or the refusal of the first whose queue is too long (slots reserved before it stay
        reserved, as in Sentinel)."""
        at = now
        for throttler, ref in self.throttlers:
            wait = throttler.reserve(at)
            if wait == REJECT:
                detail = (
                    f"queueing would exceed {throttler.queue_timeout_ms:g} ms "
                    f"(spacing {throttler.spacing_ms:g} ms)"
                )
                return ThrottledError.from_ref(ref, detail)
            at += wait
        return at - now


def compile_check(
    resource: str, strategies: Sequence[tuple[ThrottlingStrategy, RuleRef]], build: Compilation
) -> Throttling | None:
    """The throttling check of ``resource`` (None: no throttling applies). A throttler keeps its
    pacing across pushes while its strategy is unchanged."""
    if not strategies:
        return None
    return Throttling(
        tuple(
            (
                build.keep(
                    ("throttler", resource, ref.namespace, strategy.name, build.spec_key(strategy)),
                    partial(Throttler.from_strategy, strategy),
                ),
                ref,
            )
            for strategy, ref in strategies
        )
    )
