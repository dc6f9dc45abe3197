"""The per-call path: the compiled checks of one resource, run in order on every request.

:meth:`ResourceChecks.enter` reads the clock once and runs, in order, adaptive protection (inbound
only) -> concurrency -> rate limits -> throttling -> circuit breakers: the refusals without side
effects first, then throttling's queue reservation and the breakers' probe claim (a request that
an open breaker would refuse is refused before it queues). The first refusal raises a
:class:`~opensergo.governance.errors.BlockedError` subclass and undoes what earlier checks did for
this request: its concurrency slot, its Global permits and its rate-limit counts are given back,
and a half-open probe claimed by an earlier breaker goes back to OPEN (the throttling reservation
stays, as in Sentinel). ``enter`` returns the start time; :meth:`ResourceChecks.exit` releases the
slot and reports RT and error to the breakers (and, with BBR, to the resource's completion window).

Each strategy module compiled its part from the specs (``compile_check``) and decides everything
about it: what refuses, which rule is blamed, how a refusal is undone. This module only runs those
parts in order. The tests that run on every call (a counter against a limit, a breaker's state)
read the compiled objects' fields directly rather than calling a method per strategy: a Python
call per strategy would cost more than the checks themselves.

A request queued by throttling waits between the two halves: :meth:`~ResourceChecks.enter`
sleeps (``clock.sleep``), :meth:`~ResourceChecks.aenter` awaits (``clock.asleep``); both run the
same checks, :meth:`~ResourceChecks._queue` being where they part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NoReturn, Protocol

from opensergo.common.clock import NS_PER_S
from opensergo.common.stats import Window
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance import breaker
from opensergo.governance.faulttolerance.adaptive import AdaptiveCheck
from opensergo.governance.faulttolerance.breaker import CLOSED, Breakers
from opensergo.governance.faulttolerance.concurrency import NO_LIMIT, ConcurrencyLimits
from opensergo.governance.faulttolerance.node import InFlight
from opensergo.governance.faulttolerance.ratelimit import RateLimits
from opensergo.governance.faulttolerance.ref import BlockCounter, RuleRef
from opensergo.governance.faulttolerance.throttling import Throttling

log = logging.getLogger("opensergo.governance")


class EntryObserver(Protocol):
    """Per-request callbacks for metrics and tracing (see ``Engine.set_observer``).

    Called synchronously on the request's thread (so the current span is the request's);
    they must be quick and must not raise."""

    def on_pass(self, resource: str) -> None:
        """The request was admitted (after any throttling wait)."""

    def on_block(self, error: BlockedError) -> None:
        """The request is refused with ``error`` (raised right after this call)."""

    def on_complete(self, resource: str, rt_ns: int, error: bool) -> None:
        """An admitted request ended after ``rt_ns``; ``error`` when it counts as an error."""


class _Queued(Exception):
    """How ``enter``, called by ``aenter``, hands a request queued by throttling back to be awaited
    (its checks so far stay in effect)."""

    def __init__(self, start: int, wait_ns: int) -> None:
        super().__init__(start, wait_ns)
        self.start = start
        self.wait_ns = wait_ns


class ResourceChecks:
    """The compiled checks of one resource for one rule-set version (immutable once built)."""

    __slots__ = (
        "adaptive",
        "asleep",
        "breakers",
        "concurrency",
        "counters",
        "exits",
        "global_rates",
        "in_flight",
        "max_in_flight",
        "metrics",
        "now",
        "observer",
        "permits",
        "rate_limits",
        "rates",
        "refs",
        "resource",
        "sleep",
        "throttles",
        "throttling",
        "timed_exit",
    )

    def __init__(
        self,
        resource: str,
        *,
        now: Callable[[], int],
        sleep: Callable[[float], None],
        asleep: Callable[[float], Coroutine[Any, Any, None]],
        counters: Mapping[tuple[str, str, str], BlockCounter],
        observer: EntryObserver | None,
        refs: tuple[RuleRef, ...],
        adaptive: AdaptiveCheck | None = None,
        concurrency: ConcurrencyLimits | None = None,
        in_flight: InFlight | None = None,
        rate_limits: RateLimits | None = None,
        throttling: Throttling | None = None,
        breakers: Breakers = (),
        metrics: Window | None = None,
    ) -> None:
        self.resource = resource
        self.now = now
        self.sleep = sleep
        self.asleep = asleep
        self.counters = counters
        self.observer = observer
        self.refs = refs
        self.adaptive = adaptive
        self.concurrency = concurrency
        # Counted while a concurrency limit or BBR applies.
        self.in_flight = in_flight
        self.max_in_flight = concurrency.max if concurrency is not None else NO_LIMIT
        self.permits = bool(concurrency is not None and concurrency.permits)
        self.rate_limits = rate_limits
        self.rates = rate_limits.windows if rate_limits is not None else ()
        self.global_rates = bool(rate_limits is not None and rate_limits.global_rates)
        self.throttling = throttling
        self.throttles = throttling.throttlers if throttling is not None else ()
        self.breakers = breakers
        self.metrics = metrics
        self.timed_exit = bool(breakers) or metrics is not None or observer is not None
        self.exits = self.timed_exit or in_flight is not None or self.permits

    # -- entry --------------------------------------------------------------------------------

    def enter(self, inbound: bool = True, _defer: bool = False) -> int:
        """Run every check; return the start time (ns) or raise a BlockedError.

        With throttling, a queued caller sleeps (``clock.sleep``) before the breakers are checked.
        """
        now = self.now()
        adaptive = self.adaptive
        if adaptive is not None and inbound:
            error = adaptive.refusal(now)
            if error is not None:
                self._block(error)
        flight = self.in_flight
        if flight is not None:
            flight.count += 1  # counted first, then compared (see node.InFlight)
            if flight.count > self.max_in_flight:
                self._refuse_concurrency(flight)
            if self.permits:
                self._acquire_permits()
        for w, threshold, _ in self.rates:
            if now >= w.end:
                w.roll(now)
            passes = w.passes
            i = w.idx
            if w.hist_pass + passes[i] >= threshold:
                self._refuse_rate(w, now)
            passes[i] += 1  # counted now; taken back if a later check refuses
        if self.global_rates:
            self._acquire_tokens(now)
        if self.throttling is not None:
            return self._queue(now, _defer)
        for b in self.breakers:
            if b.state != CLOSED:
                self._claim_probes(now, now)
                break
        observer = self.observer
        if observer is not None:
            observer.on_pass(self.resource)
        return now

    async def aenter(self, inbound: bool = True) -> int:
        """``enter`` for asyncio: a caller queued by throttling awaits instead of blocking."""
        try:
            return self.enter(inbound, True)
        except _Queued as queued:
            start, wait = queued.start, queued.wait_ns
        try:
            await self.asleep(wait / NS_PER_S)
        except BaseException:  # cancelled while queued: it never ran
            self._undo(start)
            raise
        return self._admitted(self.now(), start)

    def _queue(self, now: int, defer: bool) -> int:
        """Throttling: reserve a slot (unless a breaker would refuse anyway), wait for it (sync;
        with ``defer`` the asyncio caller awaits), then the breakers."""
        throttling = self.throttling
        assert throttling is not None
        reserved = breaker.would_refuse(self.breakers, now) or throttling.reserve(now)
        if isinstance(reserved, BlockedError):
            self._undo(now)
            self._block(reserved)
        if reserved <= 0:
            return self._admitted(now, now)
        if defer:
            raise _Queued(now, reserved)
        try:
            self.sleep(reserved / NS_PER_S)
        except BaseException:  # interrupted while queued: it never ran
            self._undo(now)
            raise
        return self._admitted(self.now(), now)

    def _admitted(self, now: int, start: int) -> int:
        """The checks after the queue: the breakers (claiming due probes), then the observer."""
        for b in self.breakers:
            if b.state != CLOSED:
                self._claim_probes(now, start)
                break
        observer = self.observer
        if observer is not None:
            observer.on_pass(self.resource)
        return start

    # -- refusals and undo (slow path) --------------------------------------------------------

    def _claim_probes(self, now: int, counted_at: int) -> None:
        error = breaker.claim(self.breakers, now)
        if error is not None:
            self._undo(counted_at)
            self._block(error)

    def _refuse_concurrency(self, flight: InFlight) -> NoReturn:
        flight.count -= 1
        concurrency = self.concurrency
        assert concurrency is not None
        self._block(concurrency.refusal(flight.count))

    def _acquire_permits(self) -> None:
        concurrency = self.concurrency
        assert concurrency is not None
        error = concurrency.acquire_permits()
        if error is not None:
            flight = self.in_flight
            assert flight is not None
            flight.count -= 1
            self._block(error)

    def _refuse_rate(self, w: Window, now: int) -> NoReturn:
        rate_limits = self.rate_limits
        assert rate_limits is not None
        rate_limits.uncount(now, w)
        self._release()
        self._block(rate_limits.refusal(w, now))

    def _acquire_tokens(self, now: int) -> None:
        rate_limits = self.rate_limits
        assert rate_limits is not None
        error = rate_limits.acquire_tokens(now)
        if error is not None:
            self._undo(now)
            self._block(error)

    def _undo(self, counted_at: int) -> None:
        """Take back a refused (or cancelled) request's rate-limit counts and concurrency slot."""
        if self.rate_limits is not None:
            self.rate_limits.uncount(counted_at)
        self._release()

    def _release(self) -> None:
        flight = self.in_flight
        if flight is not None:
            flight.count -= 1
        if self.permits:
            concurrency = self.concurrency
            assert concurrency is not None
            concurrency.release_permits()

    def _block(self, error: BlockedError) -> NoReturn:
        counter = self.counters.get((error.resource, error.rule, error.strategy))
        if counter is not None:
            counter.count += 1
        log.debug(
            "blocked %r: %s %r of rule %r: %s",
            error.resource,
            error.kind,
            error.strategy,
            error.rule,
            error.detail,
        )
        observer = self.observer
        if observer is not None:
            observer.on_block(error)
        raise error

    # -- exit ---------------------------------------------------------------------------------

    def exit(self, start: int, error: BaseException | None = None) -> None:
        """Release the slot and report the completion (RT since ``start``; error if not None)."""
        flight = self.in_flight
        if flight is not None:
            flight.count -= 1
        if self.permits:
            concurrency = self.concurrency
            assert concurrency is not None
            concurrency.release_permits()
        if self.timed_exit:
            now = self.now()
            rt = now - start
            failed = error is not None
            for b in self.breakers:
                b.on_complete(now, rt, failed)
            metrics = self.metrics
            if metrics is not None:
                metrics.add_completion(now, rt, failed)
            observer = self.observer
            if observer is not None:
                observer.on_complete(self.resource, rt, failed)


def describe(checks: ResourceChecks) -> dict[str, Any]:
    """A plain-data view of compiled checks (for debugging and the dashboard)."""
    concurrency = checks.concurrency.limits if checks.concurrency is not None else ()
    return {
        "resource": checks.resource,
        "adaptive": checks.adaptive is not None,
        "concurrency": [limit for limit, _ in concurrency],
        "rate_limits": [(t, w.interval_ms) for w, _, limits in checks.rates for t, _ in limits],
        "throttles": [(t.spacing_ms, t.queue_timeout_ms) for t, _ in checks.throttles],
        "breakers": [(b.ref.strategy, b.current_state.name) for b in checks.breakers],
        "rules": sorted({ref.rule for ref in checks.refs}),
    }
