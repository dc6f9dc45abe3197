"""The fault-tolerance engine: compiles OpenSergo rules into per-resource checks and runs them.

Compiling
    The engine holds the current fault-tolerance objects (FaultToleranceRule, the five strategy
    kinds, HttpRequestFallbackAction). Every change (:meth:`Engine.set_rules`,
    :meth:`Engine.update_kind`, :meth:`Engine.set_instance_count`) recompiles all of them into a
    fresh ``{resource: ResourceChecks}`` table and publishes it with one reference assignment, so
    a request sees either the old set or the new one, never a mix. Strategy references resolve by
    (namespace, kind, name); a reference without ``kind`` resolves by name across the strategy
    kinds. Unresolvable references are skipped and reported in :attr:`Engine.problems` (and
    logged), never raised. State that must outlive a push is kept by key: circuit breakers and
    throttlers per (resource, strategy, spec) -- an unchanged strategy keeps its state, a changed
    one starts fresh, as Sentinel reuses an equal breaker -- and sliding windows and the
    concurrency gauge per resource.

Checking (the hot path)
    ``ResourceChecks.enter`` reads the clock once and runs, in order, adaptive protection (inbound
    only) -> concurrency -> rate limits -> throttling -> circuit breakers: the refusals without side
    effects first, then throttling's queue reservation and the breaker's probe claim (a request
    that an open breaker would refuse is refused before it queues). The first refusal raises a
    :class:`~opensergo.governance.errors.BlockedError` subclass and undoes what earlier checks
    did for this request: its concurrency slot and its rate-limit counts are given back, and a
    half-open probe claimed by an earlier breaker goes back to OPEN (the throttling reservation
    stays, as in Sentinel). ``enter`` returns the start time; ``ResourceChecks.exit`` releases
    the concurrency slot and reports RT and error to the breakers (and, with BBR, to the
    resource's completion window). Everything is plain attribute and list access over tuples
    built at compile time; the clock is read once in ``enter`` (twice when the request queued)
    and once in ``exit`` (only when a breaker or BBR needs the RT).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Protocol

from opensergo.common.clock import NS_PER_S, SYSTEM_CLOCK, Clock
from opensergo.common.stats import ConcurrencyGauge, Window, window_shape
from opensergo.governance.errors import (
    BlockedError,
    CircuitBreakerOpenError,
    ConcurrencyLimitedError,
    OverloadedError,
    RateLimitedError,
    ThrottledError,
)
from opensergo.governance.faulttolerance import concurrency, ratelimit
from opensergo.governance.faulttolerance.adaptive import AdaptiveCheck, SystemSampler
from opensergo.governance.faulttolerance.breaker import (
    BLOCK,
    CLOSED,
    HALF_OPEN,
    OPEN,
    PROBE,
    BreakerState,
    CircuitBreaker,
    StateListener,
)
from opensergo.governance.faulttolerance.cluster import GlobalPermits, GlobalRate, TokenSource
from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.faulttolerance.ref import BlockCounter, RuleRef
from opensergo.governance.faulttolerance.throttling import REJECT, Throttler
from opensergo.spec.base import Resource
from opensergo.spec.faulttolerance import (
    GROUP,
    AdaptiveOverloadProtectionStrategy,
    CircuitBreakerStrategy,
    ConcurrencyLimitStrategy,
    FaultToleranceRule,
    HttpRequestFallbackAction,
    LimitMode,
    RateLimitStrategy,
    ThrottlingStrategy,
)

log = logging.getLogger("opensergo.governance")

STRATEGY_KINDS: tuple[type[Resource], ...] = (
    AdaptiveOverloadProtectionStrategy,
    ConcurrencyLimitStrategy,
    RateLimitStrategy,
    ThrottlingStrategy,
    CircuitBreakerStrategy,
)
"""Strategy kinds, in the order their checks run."""

KINDS: tuple[str, ...] = (
    FaultToleranceRule.KIND,
    *(k.KIND for k in STRATEGY_KINDS),
    HttpRequestFallbackAction.KIND,
)
"""Every kind the engine consumes."""

_NO_LIMIT = sys.maxsize


class EntryObserver(Protocol):
    """Per-request callbacks for metrics and tracing (see :meth:`Engine.set_observer`).

    Called synchronously on the request's thread (so the current span is the request's);
    they must be quick and must not raise."""

    def on_pass(self, resource: str) -> None:
        """The request was admitted (after any throttling wait)."""

    def on_block(self, error: BlockedError) -> None:
        """The request is refused with ``error`` (raised right after this call)."""

    def on_complete(self, resource: str, rt_ns: int, error: bool) -> None:
        """An admitted request ended after ``rt_ns``; ``error`` when it counts as an error."""


class _Node:
    """Per-resource state that survives recompiles: the concurrency gauge and the windows."""

    __slots__ = ("gauge", "metrics", "windows")

    def __init__(self) -> None:
        self.gauge = ConcurrencyGauge()
        self.windows: dict[int, Window] = {}
        self.metrics: Window | None = None

    def window(self, interval_ms: int) -> Window:
        w = self.windows.get(interval_ms)
        if w is None:
            n, ms = window_shape(interval_ms)
            w = self.windows[interval_ms] = Window(n, ms)
        return w

    def metrics_window(self) -> Window:
        # Sentinel's per-resource "second" window (2 x 500 ms) that BBR reads.
        if self.metrics is None:
            self.metrics = Window(2, 1000)
        return self.metrics


class ResourceChecks:
    """The compiled checks of one resource for one rule-set version (immutable once built)."""

    __slots__ = (
        "adaptive",
        "asleep",
        "breakers",
        "conc_limit",
        "conc_limits",
        "engine",
        "exits",
        "gauge",
        "gperms",
        "grates",
        "metrics",
        "now",
        "observer",
        "rates",
        "refs",
        "resource",
        "sleep",
        "throttles",
        "timed_exit",
    )

    def __init__(
        self,
        engine: Engine,
        resource: str,
        *,
        adaptive: AdaptiveCheck | None,
        gauge: ConcurrencyGauge | None,
        conc_limits: tuple[tuple[int, RuleRef], ...],
        rates: tuple[tuple[Window, int, RuleRef], ...],  # in rule order
        throttles: tuple[tuple[Throttler, RuleRef], ...],
        breakers: tuple[CircuitBreaker, ...],
        metrics: Window | None,
        refs: tuple[RuleRef, ...],
        grates: tuple[tuple[GlobalRate, RuleRef], ...] = (),
        gperms: tuple[tuple[GlobalPermits, RuleRef], ...] = (),
    ) -> None:
        self.engine = engine
        self.resource = resource
        self.now = engine._now
        self.sleep = engine.clock.sleep
        self.asleep = engine.clock.asleep
        self.adaptive = adaptive
        # The deque itself: append/pop/len are the whole hot-path protocol.
        self.gauge = gauge.slots if gauge is not None else None
        self.conc_limits = conc_limits
        self.conc_limit = min((limit for limit, _ in conc_limits), default=_NO_LIMIT)
        # One entry per window: (window, lowest threshold, every (threshold, rule) in rule order).
        grouped: dict[int, tuple[Window, list[tuple[int, RuleRef]]]] = {}
        for w, threshold, ref in rates:
            grouped.setdefault(id(w), (w, []))[1].append((threshold, ref))
        self.rates: tuple[tuple[Window, int, tuple[tuple[int, RuleRef], ...]], ...] = tuple(
            (w, min(t for t, _ in limits), tuple(limits)) for w, limits in grouped.values()
        )
        self.throttles = throttles
        self.breakers = breakers
        self.metrics = metrics
        self.refs = refs
        self.grates = grates
        self.gperms = gperms
        self.observer = engine._observer
        self.timed_exit = bool(breakers) or metrics is not None or self.observer is not None
        self.exits = self.timed_exit or self.gauge is not None or bool(gperms)

    # -- entry --------------------------------------------------------------------------------

    def enter(self, inbound: bool = True) -> int:
        """Run every check; return the start time (ns) or raise a BlockedError.

        With throttling, a queued caller sleeps (``clock.sleep``) before the breakers are checked.
        """
        if self.throttles:
            return self._enter_queued(inbound)
        now = self.now()
        adaptive = self.adaptive
        if adaptive is not None and inbound:
            hit = adaptive.check(now)
            if hit is not None:
                self._refuse_adaptive(hit)
        gauge = self.gauge
        if gauge is not None:
            gauge.append(None)
            if len(gauge) > self.conc_limit:
                gauge.pop()
                self._refuse_concurrency(len(gauge))
        if self.gperms:
            self._acquire_permits()
        for w, threshold, _ in self.rates:
            if now >= w.end:
                w.roll(now)
            passes = w.passes
            i = w.idx
            if w.hist_pass + passes[i] >= threshold:
                self._refuse_rate(w, now)
            passes[i] += 1  # counted now; taken back if a later check refuses
        if self.grates:
            self._acquire_tokens(now)
        for b in self.breakers:
            if b.state != CLOSED:
                self._check_breakers(now, now)
                break
        if self.observer is not None:
            self.observer.on_pass(self.resource)
        return now

    async def aenter(self, inbound: bool = True) -> int:
        """``enter`` for asyncio: a caller queued by throttling awaits instead of blocking."""
        if not self.throttles:
            return self.enter(inbound)
        now = self.now()
        self._before_queue(now, inbound)
        wait = self._reserve(now)
        if wait > 0:
            try:
                await self.asleep(wait / NS_PER_S)
            except BaseException:  # cancelled while queued: it never ran
                self._uncount(now, None)
                self._release()
                raise
            self._after_queue(self.now(), now)
        else:
            self._after_queue(now, now)
        return now

    def _enter_queued(self, inbound: bool) -> int:
        now = self.now()
        self._before_queue(now, inbound)
        wait = self._reserve(now)
        if wait > 0:
            try:
                self.sleep(wait / NS_PER_S)
            except BaseException:  # interrupted while queued: it never ran
                self._uncount(now, None)
                self._release()
                raise
            self._after_queue(self.now(), now)
        else:
            self._after_queue(now, now)
        return now

    def _before_queue(self, now: int, inbound: bool) -> None:
        adaptive = self.adaptive
        if adaptive is not None and inbound:
            hit = adaptive.check(now)
            if hit is not None:
                self._refuse_adaptive(hit)
        gauge = self.gauge
        if gauge is not None:
            gauge.append(None)
            if len(gauge) > self.conc_limit:
                gauge.pop()
                self._refuse_concurrency(len(gauge))
        if self.gperms:
            self._acquire_permits()
        for w, threshold, _ in self.rates:
            if now >= w.end:
                w.roll(now)
            passes = w.passes
            i = w.idx
            if w.hist_pass + passes[i] >= threshold:
                self._refuse_rate(w, now)
            passes[i] += 1  # counted now; taken back if a later check refuses
        if self.grates:
            self._acquire_tokens(now)
        # Do not queue a request that a breaker would refuse anyway (a side-effect-free check;
        # the probe itself is claimed after the wait).
        for b in self.breakers:
            state = b.state
            if (state == OPEN and now < b.next_retry) or (state == HALF_OPEN and b.probe_num <= 0):
                self._uncount(now, None)
                self._release()
                self._refuse(CircuitBreakerOpenError, b.ref, f"circuit {BreakerState(state).name}")

    def _reserve(self, now: int) -> int:
        """Reserve a slot in every throttler (in order); the total wait in ns."""
        at = now
        for throttler, ref in self.throttles:
            wait = throttler.reserve(at)
            if wait == REJECT:
                self._uncount(now, None)
                self._release()
                self._refuse(
                    ThrottledError,
                    ref,
                    f"queueing would exceed {throttler.queue_timeout_ms:g} ms "
                    f"(spacing {throttler.spacing_ms:g} ms)",
                )
            at += wait
        return at - now

    def _after_queue(self, now: int, counted_at: int) -> None:
        for b in self.breakers:
            if b.state != CLOSED:
                self._check_breakers(now, counted_at)
                break
        if self.observer is not None:
            self.observer.on_pass(self.resource)

    def _check_breakers(self, now: int, counted_at: int) -> None:
        probes: list[CircuitBreaker] = []
        for b in self.breakers:
            result = b.try_pass(now)
            if result == BLOCK:
                for claimed in probes:
                    claimed.revert_probe()
                self._uncount(counted_at, None)
                self._release()
                state = BreakerState(b.state).name
                self._refuse(CircuitBreakerOpenError, b.ref, f"circuit {state}")
            if result == PROBE:
                probes.append(b)

    def _uncount(self, counted_at: int, upto: Window | None) -> None:
        """Take back the passes this request added (windows before ``upto``; all when None)."""
        for w, _, _ in self.rates:
            if w is upto:
                return
            # Only while the bucket it went into is still current (else it stays counted).
            if w.start <= counted_at < w.end:
                w.passes[w.idx] -= 1

    def _acquire_permits(self) -> None:
        """Global concurrency permits (after the local gauge; released by _release / exit)."""
        for i, (permits, ref) in enumerate(self.gperms):
            if not permits.acquire():
                for taken, _ in self.gperms[:i]:
                    taken.release()
                gauge = self.gauge
                if gauge is not None:
                    gauge.pop()
                self._refuse(ConcurrencyLimitedError, ref, "global max concurrency reached")

    def _acquire_tokens(self, now: int) -> None:
        for rate, ref in self.grates:
            if not rate.acquire(now):
                self._uncount(now, None)
                self._release()
                mode = "cluster" if rate.global_mode else f"local share {rate.local_threshold}"
                self._refuse(RateLimitedError, ref, f"global rate limit reached ({mode})")

    def _release(self) -> None:
        for permits, _ in self.gperms:
            permits.release()
        gauge = self.gauge
        if gauge is not None:
            try:  # noqa: SIM105 - zero-cost in 3.11, unlike contextlib.suppress
                gauge.pop()
            except IndexError:  # pragma: no cover - never below zero
                pass

    # -- refusals (slow path) -----------------------------------------------------------------

    def _refuse(self, cls: type[BlockedError], ref: RuleRef, detail: str) -> NoReturn:
        counter = self.engine._counters.get(ref.key)
        if counter is not None:
            counter.count += 1
        log.debug("blocked %r: %s %r of rule %r: %s", ref.resource, ref.kind, ref.strategy, ref.rule, detail)
        error = cls.from_ref(ref, detail)
        observer = self.observer
        if observer is not None:
            observer.on_block(error)
        raise error

    def _refuse_adaptive(self, hit: tuple[RuleRef, str]) -> NoReturn:
        self._refuse(OverloadedError, hit[0], hit[1])

    def _refuse_concurrency(self, in_flight: int) -> NoReturn:
        ref = concurrency.attribute(self.conc_limits, in_flight)
        limit = next(limit for limit, r in self.conc_limits if r is ref)
        self._refuse(ConcurrencyLimitedError, ref, f"{in_flight} in flight, max {limit}")

    def _refuse_rate(self, w: Window, now: int) -> NoReturn:
        self._uncount(now, w)
        self._release()
        passed = w.hist_pass + w.passes[w.idx]
        w.blocks[w.idx] += 1
        for window, _, limits in self.rates:
            if window is w:
                for threshold, ref in limits:
                    if passed >= threshold:
                        self._refuse(
                            RateLimitedError,
                            ref,
                            f"{passed} passed in {w.interval_ms} ms, threshold {threshold}",
                        )
        raise AssertionError("unreachable: no rate limit to attribute")  # pragma: no cover

    # -- exit ---------------------------------------------------------------------------------

    def exit(self, start: int, error: BaseException | None = None) -> None:
        """Release the slot and report the completion (RT since ``start``; error if not None)."""
        for permits, _ in self.gperms:
            permits.release()
        gauge = self.gauge
        if gauge is not None:
            try:  # noqa: SIM105 - zero-cost in 3.11, unlike contextlib.suppress
                gauge.pop()
            except IndexError:  # pragma: no cover - never below zero
                pass
        if self.timed_exit:
            now = self.now()
            rt = now - start
            failed = error is not None
            for b in self.breakers:  # CircuitBreaker.on_complete, inlined
                if now >= b.end:
                    b.roll(now)
                b.total += 1
                slow = b.slow_rt_ns
                bad = rt > slow if slow >= 0 else failed
                if bad:
                    b.bad += 1
                if bad or b.state or b.total == b.min_requests:
                    b.judge(now, bad)
            metrics = self.metrics
            if metrics is not None:
                metrics.add_completion(now, rt, failed)
            observer = self.observer
            if observer is not None:
                observer.on_complete(self.resource, rt, failed)


class Entry:
    """One admitted request (from :meth:`Engine.entry`); call :meth:`exit` exactly when it ends.

    ``exit`` is idempotent. The entry is also a context manager whose ``__exit__`` passes the
    exception (if any) as the error; whether it counts as one is the engine's ``errors`` /
    ``ignore`` configuration.
    """

    __slots__ = ("_checks", "_done", "_engine", "start")

    def __init__(self, engine: Engine, checks: ResourceChecks | None, start: int) -> None:
        self._engine = engine
        self._checks = checks
        self.start = start
        self._done = False

    def exit(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        checks = self._checks
        if checks is not None and checks.exits:
            if error is not None and not self._engine.counts_as_error(error):
                error = None
            checks.exit(self.start, error)

    def __enter__(self) -> Entry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exit(exc)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of a recompile."""

    version: int
    resources: tuple[str, ...]
    """Resources that now have at least one check."""
    problems: tuple[str, ...]
    """References that could not be resolved, and similar; each was skipped."""
    ignored: int = 0
    """Objects that are not fault-tolerance kinds, or were filtered out (load_rules)."""


def _spec_key(obj: Resource) -> str:
    return str(obj.spec.model_dump_json())


class Engine:
    """Compiles fault-tolerance rules and guards resources with them.

    ``errors`` / ``ignore`` say which exceptions raised inside a guard count as errors for circuit
    breakers (default: every ``Exception``; a BlockedError never counts). ``instances`` is the
    app's live instance count for GlobalToLocal rate limits. ``sampler`` provides CPU and load
    figures for adaptive protection (a :class:`SystemSampler` that starts when the first adaptive
    rule arrives, by default).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        errors: tuple[type[BaseException], ...] = (Exception,),
        ignore: tuple[type[BaseException], ...] = (),
        sampler: SystemSampler | None = None,
        instances: int = 1,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._now = self.clock.now_ns
        self.errors = errors
        self.ignore = ignore
        self._sampler = sampler
        self._owns_sampler = sampler is None
        self._instances = max(1, instances)
        self._table: dict[str, ResourceChecks] = {}
        self._objects: dict[str, list[Resource]] = {}
        self._nodes: dict[str, _Node] = {}
        self._breakers: dict[tuple[str, str, str, str], CircuitBreaker] = {}
        self._throttlers: dict[tuple[str, str, str, str], Throttler] = {}
        self._counters: dict[tuple[str, str, str], BlockCounter] = {}
        self._listeners: list[StateListener] = []
        self._observer: EntryObserver | None = None
        self._warned_global: set[tuple[str, str]] = set()
        self._token_source: TokenSource | None = None
        self._global_rates: dict[tuple[str, str, str, str], GlobalRate] = {}
        self._global_permits: dict[tuple[str, str, str, str], GlobalPermits] = {}
        self._compile_lock = threading.RLock()
        self._problems: tuple[str, ...] = ()
        self._version = 0
        self._unguarded = Entry(self, None, 0)  # shared by every request to an unguarded resource

    # -- hot path -----------------------------------------------------------------------------

    def entry(self, resource: str, *, inbound: bool = True) -> Entry:
        """Admit one request to ``resource`` or raise a BlockedError; sleeps when throttled."""
        checks = self._table.get(resource)
        if checks is None:
            return self._unguarded
        return Entry(self, checks, checks.enter(inbound))

    async def aentry(self, resource: str, *, inbound: bool = True) -> Entry:
        """``entry`` for asyncio: waits for throttling without blocking the event loop."""
        checks = self._table.get(resource)
        if checks is None:
            return self._unguarded
        if checks.throttles:
            return Entry(self, checks, await checks.aenter(inbound))
        return Entry(self, checks, checks.enter(inbound))

    def checks(self, resource: str) -> ResourceChecks | None:
        """The compiled checks of ``resource`` in the current version (None: unguarded)."""
        return self._table.get(resource)

    def counts_as_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` raised inside a guard counts as an error (engine-wide setting)."""
        return (
            isinstance(exc, self.errors)
            and not isinstance(exc, self.ignore)
            and not isinstance(exc, BlockedError)
        )

    # -- rules --------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Incremented by every recompile."""
        return self._version

    @property
    def problems(self) -> tuple[str, ...]:
        """What the last compile skipped and why."""
        return self._problems

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(sorted(self._table))

    @property
    def instances(self) -> int:
        return self._instances

    def objects(self) -> list[Resource]:
        """The fault-tolerance objects the current version was compiled from."""
        with self._compile_lock:
            return [obj for kind in KINDS for obj in self._objects.get(kind, ())]

    def set_rules(self, objects: Iterable[Resource]) -> ApplyResult:
        """Replace every fault-tolerance object and recompile (non fault-tolerance objects are ignored)."""
        grouped: dict[str, list[Resource]] = {}
        ignored = 0
        for obj in objects:
            if getattr(obj, "GROUP", None) == GROUP and obj.kind in KINDS:
                grouped.setdefault(obj.kind, []).append(obj)
            else:
                ignored += 1
        with self._compile_lock:
            self._objects = grouped
            return self._recompile(ignored)

    def update_kind(self, kind: str, objects: Iterable[Resource]) -> ApplyResult:
        """Replace the objects of one kind (a per-kind push) and recompile."""
        if kind not in KINDS:
            raise ValueError(f"{kind!r} is not a fault-tolerance kind; expected one of {', '.join(KINDS)}")
        items = list(objects)
        for obj in items:
            if obj.kind != kind:
                raise ValueError(f"update_kind({kind!r}) got a {obj.kind} ({obj.name!r})")
        with self._compile_lock:
            objs = dict(self._objects)
            objs[kind] = items
            self._objects = objs
            return self._recompile(0)

    def clear(self) -> ApplyResult:
        return self.set_rules(())

    def set_token_source(self, source: TokenSource | None) -> None:
        """Enforce ``limitMode: Global`` through this token service client (None: local shares)."""
        with self._compile_lock:
            self._token_source = source
            self._recompile(0)

    def set_instance_count(self, instances: int) -> None:
        """The app's live instance count (for GlobalToLocal); recompiles when it changes."""
        instances = max(1, int(instances))
        with self._compile_lock:
            if instances == self._instances:
                return
            self._instances = instances
            self._recompile(0)

    # -- observability ------------------------------------------------------------------------

    def set_observer(self, observer: EntryObserver | None) -> None:
        """Call ``observer`` for every request to a guarded resource (None removes it): see
        :class:`EntryObserver`. Recompiles, so every resource sees the change at once."""
        with self._compile_lock:
            self._observer = observer
            self._recompile(0)

    def add_state_listener(self, listener: StateListener) -> None:
        """``listener(resource, rule, old, new, snapshot)`` on every breaker state change."""
        self._listeners.append(listener)

    def remove_state_listener(self, listener: StateListener) -> None:
        self._listeners.remove(listener)

    def block_counts(self) -> dict[tuple[str, str, str], int]:
        """Blocks so far per (resource, rule, strategy); counts survive recompiles."""
        return {key: c.count for key, c in list(self._counters.items()) if c.count}

    def in_flight(self, resource: str) -> int:
        """Requests of ``resource`` in flight (tracked while a concurrency or BBR rule applies).

        Under contention this may read one above a limit for an instant: a refused caller's own
        tentative count, which it takes back at once (see ConcurrencyGauge).
        """
        node = self._nodes.get(resource)
        return node.gauge.value if node is not None else 0

    def breaker(self, resource: str, strategy: str) -> CircuitBreaker | None:
        checks = self._table.get(resource)
        if checks is None:
            return None
        for b in checks.breakers:
            if b.ref.strategy == strategy:
                return b
        return None

    def breaker_states(self) -> dict[tuple[str, str], BreakerState]:
        return {
            (resource, b.ref.strategy): b.current_state
            for resource, checks in list(self._table.items())
            for b in checks.breakers
        }

    def close(self) -> None:
        """Stop the system sampler thread if this engine started it."""
        if self._sampler is not None and self._owns_sampler:
            self._sampler.stop()

    # -- compiling ----------------------------------------------------------------------------

    def _system_sampler(self) -> SystemSampler:
        if self._sampler is None:
            self._sampler = SystemSampler()
        return self._sampler

    def _recompile(self, ignored: int) -> ApplyResult:
        problems: list[str] = []
        per_resource = self._resolve(problems)
        nodes: dict[str, _Node] = {}
        breakers: dict[tuple[str, str, str, str], CircuitBreaker] = {}
        throttlers: dict[tuple[str, str, str, str], Throttler] = {}
        self._next_rates: dict[tuple[str, str, str, str], GlobalRate] = {}
        self._next_permits: dict[tuple[str, str, str, str], GlobalPermits] = {}
        table: dict[str, ResourceChecks] = {}
        uses_sampler = False
        for resource, items in per_resource.items():
            node = nodes[resource] = self._nodes.get(resource) or _Node()
            checks = self._build(resource, items, node, breakers, throttlers, problems)
            table[resource] = checks
            uses_sampler = uses_sampler or checks.adaptive is not None
            for ref in checks.refs:
                if ref.key not in self._counters:
                    self._counters[ref.key] = BlockCounter()
        # The switch: one reference assignment.
        self._table = table
        self._nodes = nodes
        self._breakers = breakers
        self._throttlers = throttlers
        for key, old in self._global_rates.items():
            if self._next_rates.get(key) is not old:
                old.close()
        for pkey, old_permits in self._global_permits.items():
            if self._next_permits.get(pkey) is not old_permits:
                old_permits.close()
        self._global_rates, self._global_permits = self._next_rates, self._next_permits
        self._problems = tuple(problems)
        self._version += 1
        for problem in problems:
            log.warning("fault-tolerance rules: %s", problem)
        if uses_sampler:
            self._system_sampler().start()
        elif self._sampler is not None and self._owns_sampler:
            self._sampler.stop()
        return ApplyResult(self._version, tuple(sorted(table)), tuple(problems), ignored)

    def _resolve(self, problems: list[str]) -> dict[str, list[tuple[Resource, RuleRef]]]:
        """Strategies per resource, in rule order (rules sorted by namespace and name)."""
        by_key: dict[tuple[str, str, str], Resource] = {}
        by_name: dict[tuple[str, str], list[Resource]] = {}
        for kind in STRATEGY_KINDS:
            for obj in self._objects.get(kind.KIND, ()):
                by_key[(obj.namespace, obj.kind, obj.name)] = obj
                by_name.setdefault((obj.namespace, obj.name), []).append(obj)
        actions = {
            (obj.namespace, obj.name): obj for obj in self._objects.get(HttpRequestFallbackAction.KIND, ())
        }
        rules = sorted(
            (r for r in self._objects.get(FaultToleranceRule.KIND, ()) if isinstance(r, FaultToleranceRule)),
            key=lambda r: (r.namespace, r.name),
        )
        per_resource: dict[str, list[tuple[Resource, RuleRef]]] = {}
        seen: set[tuple[str, str, str, str]] = set()
        for rule in rules:
            ns = rule.namespace
            where = f"FaultToleranceRule {ns}/{rule.name}"
            fallback: FallbackResponse | None = None
            action_ref = rule.spec.fallbackAction
            if action_ref is not None:
                action = actions.get((ns, action_ref.name))
                if isinstance(action, HttpRequestFallbackAction):
                    fallback = FallbackResponse.from_action(action)
                else:
                    problems.append(
                        f"{where}: fallbackAction {action_ref.name!r} not found "
                        "(no HttpRequestFallbackAction of that name); blocked requests get the default"
                    )
            strategies: list[Resource] = []
            for sref in rule.spec.strategies:
                if sref.kind is not None:
                    found = by_key.get((ns, sref.kind.value, sref.name))
                    if found is None:
                        problems.append(f"{where}: {sref.kind.value} {sref.name!r} not found; skipped")
                        continue
                    strategies.append(found)
                    continue
                candidates = by_name.get((ns, sref.name), [])
                if not candidates:
                    problems.append(f"{where}: no strategy named {sref.name!r}; skipped")
                elif len(candidates) > 1:
                    kinds = ", ".join(c.kind for c in candidates)
                    problems.append(
                        f"{where}: strategy {sref.name!r} is ambiguous ({kinds}); give its kind; skipped"
                    )
                else:
                    strategies.append(candidates[0])
            for target in rule.spec.targets:
                resource = target.targetResourceName
                for strategy in strategies:
                    key = (resource, ns, strategy.kind, strategy.name)
                    if key in seen:  # one strategy applies once per resource
                        continue
                    seen.add(key)
                    ref = RuleRef(resource, rule.name, strategy.name, strategy.kind, fallback, ns)
                    per_resource.setdefault(resource, []).append((strategy, ref))
        return per_resource

    def _build(
        self,
        resource: str,
        items: Sequence[tuple[Resource, RuleRef]],
        node: _Node,
        breakers: dict[tuple[str, str, str, str], CircuitBreaker],
        throttlers: dict[tuple[str, str, str, str], Throttler],
        problems: list[str],
    ) -> ResourceChecks:
        adaptive: AdaptiveCheck | None = None
        conc: list[tuple[int, RuleRef]] = []
        rates: list[tuple[Window, int, RuleRef]] = []
        throttles: list[tuple[Throttler, RuleRef]] = []
        cbs: list[CircuitBreaker] = []
        grates: list[tuple[GlobalRate, RuleRef]] = []
        gperms: list[tuple[GlobalPermits, RuleRef]] = []
        source = self._token_source
        for kind in STRATEGY_KINDS:
            for strategy, ref in items:
                if strategy.kind != kind.KIND:
                    continue
                key = (resource, ref.namespace, strategy.name, _spec_key(strategy))
                if isinstance(strategy, AdaptiveOverloadProtectionStrategy):
                    if adaptive is None:
                        adaptive = AdaptiveCheck(self._system_sampler(), node.gauge, node.metrics_window())
                    adaptive.add(strategy, ref)
                elif isinstance(strategy, ConcurrencyLimitStrategy):
                    if concurrency.is_global(strategy) and source is not None:
                        share = max(1, strategy.spec.maxConcurrency // self._instances)
                        fkey = (ref.namespace, strategy.app or "", resource, strategy.name)
                        permits = self._global_permits.get(key) or GlobalPermits(fkey, source, share)
                        permits.local_max = share
                        self._next_permits[key] = permits
                        gperms.append((permits, ref))
                        continue
                    if concurrency.is_global(strategy):
                        self._warn_global(ref, "ConcurrencyLimitStrategy")
                    conc.append((concurrency.max_concurrency(strategy), ref))
                elif isinstance(strategy, RateLimitStrategy):
                    threshold = ratelimit.local_threshold(strategy, self._instances)
                    window = node.window(ratelimit.interval_ms(strategy))
                    if strategy.spec.limitMode is LimitMode.GLOBAL and source is not None:
                        fkey = (ref.namespace, strategy.app or "", resource, strategy.name)
                        rate = self._global_rates.get(key) or GlobalRate(
                            fkey, source, window, threshold, self._now
                        )
                        rate.local_threshold = threshold
                        self._next_rates[key] = rate
                        grates.append((rate, ref))
                        continue
                    if strategy.spec.limitMode is LimitMode.GLOBAL:
                        self._warn_global(ref, "RateLimitStrategy")
                    rates.append((window, threshold, ref))
                elif isinstance(strategy, ThrottlingStrategy):
                    throttler = self._throttlers.get(key) or throttlers.get(key)
                    if throttler is None:
                        throttler = Throttler.from_strategy(strategy)
                    throttlers[key] = throttler
                    throttles.append((throttler, ref))
                elif isinstance(strategy, CircuitBreakerStrategy):
                    breaker = self._breakers.get(key) or breakers.get(key)
                    if breaker is None:
                        try:
                            breaker = CircuitBreaker.from_strategy(
                                strategy, ref=ref, listeners=self._listeners
                            )
                        except ValueError as exc:
                            problems.append(
                                f"CircuitBreakerStrategy {ref.namespace}/{strategy.name}: {exc}; skipped"
                            )
                            continue
                    else:
                        breaker.ref = ref
                    breakers[key] = breaker
                    cbs.append(breaker)
        bbr = adaptive is not None and adaptive.uses_bbr
        if not bbr:
            node.metrics = None
        used = {id(w) for w, _, _ in rates} | {id(g.fallback) for g, _ in grates}
        node.windows = {ms: w for ms, w in node.windows.items() if id(w) in used}
        refs = tuple(ref for _, ref in items)
        return ResourceChecks(
            self,
            resource,
            adaptive=adaptive,
            gauge=node.gauge if conc or bbr else None,
            conc_limits=tuple(conc),
            rates=tuple(rates),
            throttles=tuple(throttles),
            breakers=tuple(cbs),
            metrics=node.metrics if bbr else None,
            refs=refs,
            grates=tuple(grates),
            gperms=tuple(gperms),
        )

    def _warn_global(self, ref: RuleRef, kind: str) -> None:
        key = (ref.namespace, ref.strategy)
        if key in self._warned_global:
            return
        self._warned_global.add(key)
        how = "per instance"
        if kind == "RateLimitStrategy":
            how = "as GlobalToLocal (threshold / live instances)"
        log.warning(
            "%s %s/%s uses limitMode Global but no token service is attached; enforcing it %s",
            kind,
            ref.namespace,
            ref.strategy,
            how,
        )


def describe(checks: ResourceChecks) -> dict[str, Any]:
    """A plain-data view of compiled checks (for debugging and the dashboard)."""
    return {
        "resource": checks.resource,
        "adaptive": checks.adaptive is not None,
        "concurrency": [limit for limit, _ in checks.conc_limits],
        "rate_limits": [(t, w.interval_ms) for w, _, limits in checks.rates for t, _ in limits],
        "throttles": [(t.spacing_ms, t.queue_timeout_ms) for t, _ in checks.throttles],
        "breakers": [(b.ref.strategy, b.current_state.name) for b in checks.breakers],
        "rules": sorted({ref.rule for ref in checks.refs}),
    }
