"""CircuitBreakerStrategy: SlowRequestRatio and ErrorRequestRatio on Sentinel's state machine.

States and transitions (Sentinel ``AbstractCircuitBreaker``):

* CLOSED: every request passes. Each completion is counted in a tumbling window of
  ``statDuration`` (one epoch-aligned bucket, as Sentinel Java); once the window holds at least
  ``minRequestAmount`` completions and the bad ratio is strictly greater than ``triggerRatio``
  (or equals it when the ratio is 100 % for slow requests), the breaker opens.
* OPEN: requests are refused until ``recoveryTimeout`` has passed since opening; then exactly one
  request wins the move to HALF_OPEN and passes as the probe.
* HALF_OPEN: other requests are refused. The first completion decides: bad -> OPEN (a new
  recovery timeout), good -> CLOSED with the window's counts reset. A probe refused by a later
  breaker of the same resource sends this one back to OPEN without a new timeout.

A completion is *bad* when it took longer than ``slowConditions.maxAllowedRt`` (slow ratio; RT is
measured in nanoseconds, from entry to exit, queueing included) or carried an error (error ratio).
Completions are counted in every state; refused requests are never counted.

``probe_num`` (Sentinel Go's ProbeNum) is an extension with no OpenSergo field: with N > 0 every
request passes while HALF_OPEN and the breaker closes after N good completions.

Transitions happen under a lock (Sentinel uses CAS); listeners are called after it is released,
synchronously, on the thread whose request caused the transition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from enum import IntEnum
from functools import partial
from typing import TYPE_CHECKING

from opensergo.common.clock import NS_PER_MS
from opensergo.governance.errors import BlockedError, CircuitBreakerOpenError
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.compiling import Compilation
    from opensergo.spec.faulttolerance import CircuitBreakerStrategy

log = logging.getLogger("opensergo.governance")

CLOSED = 0
OPEN = 1
HALF_OPEN = 2

# try_pass results
BLOCK = 0
PASS = 1
PROBE = 2


class BreakerState(IntEnum):
    CLOSED = CLOSED
    OPEN = OPEN
    HALF_OPEN = HALF_OPEN


StateListener = Callable[[str, RuleRef, BreakerState, BreakerState, "float | None"], None]
"""``listener(resource, rule, old, new, snapshot)``: ``snapshot`` is the ratio that tripped the
breaker on CLOSED->OPEN, 1.0 on HALF_OPEN->OPEN, None otherwise."""

_LONG_AGO = -(2**62)


class CircuitBreaker:
    """One breaker of one resource. Times are nanoseconds on the engine's clock."""

    __slots__ = (
        "_lock",
        "bad",
        "end",
        "listeners",
        "min_requests",
        "next_retry",
        "probe_num",
        "probes",
        "ratio",
        "recovery_ns",
        "ref",
        "slow_rt_ns",
        "start",
        "stat_ns",
        "state",
        "total",
    )

    def __init__(
        self,
        *,
        ratio: float,
        stat_ms: int,
        recovery_ms: int,
        min_requests: int,
        slow_rt_ms: float | None = None,
        probe_num: int = 0,
        ref: RuleRef | None = None,
        listeners: list[StateListener] | None = None,
    ) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"trigger ratio must be within [0, 1], got {ratio}")
        if stat_ms <= 0:
            raise ValueError("statDuration must be positive")
        if recovery_ms <= 0:
            raise ValueError("recoveryTimeout must be positive")
        if min_requests < 1:
            raise ValueError("minRequestAmount must be at least 1")
        if slow_rt_ms is not None and slow_rt_ms < 0:
            raise ValueError("maxAllowedRt must not be negative")
        if probe_num < 0:
            raise ValueError("probe_num must not be negative")
        self.ratio = float(ratio)
        self.stat_ns = stat_ms * NS_PER_MS
        self.recovery_ns = recovery_ms * NS_PER_MS
        self.min_requests = min_requests
        # -1: an error-ratio breaker (errors are bad, RT is not looked at)
        self.slow_rt_ns = -1 if slow_rt_ms is None else round(slow_rt_ms * NS_PER_MS)
        self.probe_num = probe_num
        self.ref = ref or RuleRef("", "", "", "CircuitBreakerStrategy")
        self.listeners: list[StateListener] = listeners if listeners is not None else []
        self.state = CLOSED
        self.next_retry = _LONG_AGO
        self.probes = 0
        self.start = _LONG_AGO
        self.end = _LONG_AGO
        self.total = 0
        self.bad = 0
        self._lock = threading.Lock()

    @classmethod
    def from_strategy(
        cls,
        strategy: CircuitBreakerStrategy,
        *,
        ref: RuleRef | None = None,
        listeners: list[StateListener] | None = None,
    ) -> CircuitBreaker:
        # The spec models (pydantic) are imported with the first rules, not with this module.
        from opensergo.spec.faulttolerance import BreakerStrategy

        spec = strategy.spec
        slow = None
        if spec.strategy is BreakerStrategy.SLOW_REQUEST_RATIO:
            assert spec.slowConditions is not None  # the spec model enforces it
            slow = spec.slowConditions.maxAllowedRt.millis
        return cls(
            ratio=float(spec.triggerRatio),
            stat_ms=spec.statDuration.millis,
            recovery_ms=spec.recoveryTimeout.millis,
            min_requests=spec.minRequestAmount,
            slow_rt_ms=slow,
            ref=ref,
            listeners=listeners,
        )

    @property
    def slow_mode(self) -> bool:
        return self.slow_rt_ns >= 0

    @property
    def current_state(self) -> BreakerState:
        return BreakerState(self.state)

    # -- entry --------------------------------------------------------------------------------

    def try_pass(self, now: int) -> int:
        """PASS, PROBE (passes and now holds the half-open probe) or BLOCK."""
        state = self.state
        if state == CLOSED:
            return PASS
        if state == HALF_OPEN:
            return PASS if self.probe_num > 0 else BLOCK
        if now < self.next_retry:
            return BLOCK
        with self._lock:
            if self.state != OPEN or now < self.next_retry:
                moved = False
            else:
                self.state = HALF_OPEN
                self.probes = 0
                moved = True
        if not moved:
            return self.try_pass(now) if self.state != OPEN else BLOCK
        self._notify(OPEN, HALF_OPEN, None)
        return PROBE

    def revert_probe(self) -> None:
        """The probe was refused by a later check: back to OPEN, keeping the retry time."""
        with self._lock:
            if self.state != HALF_OPEN:
                return
            self.state = OPEN
        self._notify(HALF_OPEN, OPEN, 1.0)

    # -- exit ---------------------------------------------------------------------------------

    def on_complete(self, now: int, rt_ns: int, error: bool) -> None:
        """Count one finished request and apply the state machine."""
        if now >= self.end:
            self.roll(now)
        self.total += 1
        slow_rt = self.slow_rt_ns
        bad = (rt_ns > slow_rt) if slow_rt >= 0 else error
        if bad:
            self.bad += 1
        if bad or self.state or self.total == self.min_requests:
            self.judge(now, bad)

    def judge(self, now: int, bad: bool) -> None:
        """The state machine after a completion has been counted.

        A good completion in CLOSED can only trip the breaker when it brings the window to
        ``minRequestAmount`` (past that, a good completion only lowers the ratio), so callers may
        skip this for good completions in CLOSED at any other count.
        """
        state = self.state
        if state == CLOSED:
            total = self.total
            if total >= self.min_requests:
                current = self.bad / total
                ratio = self.ratio
                if current > ratio or (self.slow_rt_ns >= 0 and current == ratio == 1.0):
                    self._transition(CLOSED, OPEN, now, current)
        elif state == HALF_OPEN:
            if bad:
                self._transition(HALF_OPEN, OPEN, now, 1.0)
            elif self.probe_num <= 1:
                self._transition(HALF_OPEN, CLOSED, now, None)
            else:
                self.probes += 1
                if self.probes >= self.probe_num:
                    self._transition(HALF_OPEN, CLOSED, now, None)

    def roll(self, now: int) -> None:
        with self._lock:
            if now < self.end:
                return
            stat = self.stat_ns
            start = now - now % stat
            self.total = 0
            self.bad = 0
            self.start = start
            self.end = start + stat

    def _transition(self, old: int, new: int, now: int, snapshot: float | None) -> None:
        with self._lock:
            if self.state != old:
                return
            self.state = new
            self.probes = 0
            if new == OPEN:
                self.next_retry = now + self.recovery_ns
            elif new == CLOSED:
                self.total = 0
                self.bad = 0
        self._notify(old, new, snapshot)

    def _notify(self, old: int, new: int, snapshot: float | None) -> None:
        ref = self.ref
        log.debug(
            "circuit breaker %r of %r (rule %r): %s -> %s (%s)",
            ref.strategy,
            ref.resource,
            ref.rule,
            BreakerState(old).name,
            BreakerState(new).name,
            snapshot,
        )
        for listener in tuple(self.listeners):
            try:
                listener(ref.resource, ref, BreakerState(old), BreakerState(new), snapshot)
            except Exception:
                log.exception("circuit breaker state listener %r failed", listener)

    # -- introspection ------------------------------------------------------------------------

    def snapshot(self, now: int) -> tuple[int, int]:
        """(completions, bad completions) in the current statistics window."""
        if now >= self.end:
            return (0, 0)
        return (self.total, self.bad)


Breakers = tuple[CircuitBreaker, ...]


def claim(breakers: Breakers, now: int) -> BlockedError | None:
    """Pass every breaker of a resource (claiming the half-open probes that are due), or refuse.

    A refusal by a later breaker sends the probes claimed by earlier ones back to OPEN."""
    probes: list[CircuitBreaker] = []
    for b in breakers:
        result = b.try_pass(now)
        if result == BLOCK:
            for claimed in probes:
                claimed.revert_probe()
            return refusal(b)
        if result == PROBE:
            probes.append(b)
    return None


def would_refuse(breakers: Breakers, now: int) -> BlockedError | None:
    """The refusal that :func:`claim` would give at ``now``, without claiming anything (so that a
    request is not queued by throttling only to be refused after the wait)."""
    for b in breakers:
        state = b.state
        if (state == OPEN and now < b.next_retry) or (state == HALF_OPEN and b.probe_num <= 0):
            return refusal(b)
    return None


def refusal(b: CircuitBreaker) -> BlockedError:
    return CircuitBreakerOpenError.from_ref(b.ref, f"circuit {BreakerState(b.state).name}")


def compile_check(
    resource: str, strategies: Sequence[tuple[CircuitBreakerStrategy, RuleRef]], build: Compilation
) -> Breakers:
    """The breakers of ``resource``, in rule order. A breaker keeps its state across pushes while
    its strategy is unchanged; one that cannot be built is skipped and reported."""
    breakers: list[CircuitBreaker] = []
    for strategy, ref in strategies:
        key = ("breaker", resource, ref.namespace, strategy.name, build.spec_key(strategy))
        try:
            breaker = build.keep(
                key, partial(CircuitBreaker.from_strategy, strategy, ref=ref, listeners=build.listeners)
            )
        except ValueError as exc:
            build.problem(f"CircuitBreakerStrategy {ref.namespace}/{strategy.name}: {exc}; skipped")
            continue
        breaker.ref = ref  # the same strategy may now be applied by a renamed rule
        breakers.append(breaker)
    return tuple(breakers)
