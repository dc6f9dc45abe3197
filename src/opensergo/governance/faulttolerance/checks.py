"""The per-call path: the compiled checks of one resource, run in order on every request.

:attr:`ResourceChecks.enter` reads the clock once and runs, in order, adaptive protection
(inbound only) -> concurrency -> rate limits -> throttling -> circuit breakers: the refusals
without side effects first, then throttling's queue reservation and the breakers' probe claim (a
request that an open breaker would refuse is refused before it queues). The first refusal raises
a :class:`~opensergo.governance.errors.BlockedError` subclass and undoes what earlier checks did
for this request: its concurrency slot, its Global permits and its rate-limit counts are given
back, and a half-open probe claimed by an earlier breaker goes back to OPEN (the throttling
reservation stays, as in Sentinel). ``enter`` returns the start time; :attr:`ResourceChecks.exit`
releases the slot and reports RT and error to the breakers (and, with BBR, to the resource's
completion window).

Each strategy module compiled its part from the specs (``compile_check``) and decides everything
about it: what refuses, which rule is blamed, how a refusal is undone. This module only runs those
parts in order. ``enter`` and ``exit`` are generated per resource from one template each, with
only the parts the resource has, as closures over the objects they read; the tests that run on
every call (a counter against a limit, a breaker's state) read those objects' fields directly
rather than calling a method per strategy: a Python call per strategy would cost more than the
checks themselves.

A request queued by throttling waits between the checks before the queue and the breakers after
it: ``enter`` sleeps there (``clock.sleep``); :meth:`~ResourceChecks.aenter` runs the same
``enter``, which hands the wait back to it to be awaited (``clock.asleep``), and then the same
checks after the queue (:meth:`~ResourceChecks._admitted`).
"""

from __future__ import annotations

import functools
import linecache
import logging
import textwrap
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NoReturn, Protocol, cast

from opensergo.common.clock import NS_PER_MS, NS_PER_S
from opensergo.common.stats import Window
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance import breaker
from opensergo.governance.faulttolerance.adaptive import AdaptiveCheck
from opensergo.governance.faulttolerance.breaker import Breakers
from opensergo.governance.faulttolerance.concurrency import NO_LIMIT, ConcurrencyLimits
from opensergo.governance.faulttolerance.hotparam import HotParams, ParamLookup
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


class EnterPath(Protocol):
    """A resource's compiled entry: run every check, return the start time (ns) or raise."""

    def __call__(self, inbound: bool = True, defer: bool = False, /) -> int: ...


class ExitPath(Protocol):
    """A resource's compiled exit: release, and report the completion since ``start``."""

    def __call__(self, start: int, error: BaseException | None = None, /) -> None: ...


class ResourceChecks:
    """The compiled checks of one resource for one rule-set version (immutable once built).

    :attr:`enter` and :attr:`exit` are the per-call path, compiled for this resource (see
    :func:`_compile_enter` and :func:`_compile_exit`); ``exit`` is None when an exit has nothing
    to do. They run the first rate-limit window and the first breaker inline; what is rarer (more
    windows, Global limits, throttling, more breakers, Global permits, BBR's completion window,
    an observer) is behind one branch per side (``_enter_rare`` / ``_exit_rare``), so a resource
    pays only for what it uses. A new kind of check slots in there.
    """

    __slots__ = (
        "_rare_entry",
        "_rare_exit",
        "adaptive",
        "asleep",
        "breakers",
        "concurrency",
        "counters",
        "enter",
        "exit",
        "hot_params",
        "in_flight",
        "metrics",
        "now",
        "observer",
        "rate_limits",
        "rates",
        "refs",
        "resource",
        "sleep",
        "throttles",
        "throttling",
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
        hot_params: HotParams | None = None,
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
        self.in_flight = in_flight  # counted while a concurrency limit or BBR applies
        self.rate_limits = rate_limits
        self.rates = rate_limits.windows if rate_limits is not None else ()
        self.throttling = throttling
        self.throttles = throttling.throttlers if throttling is not None else ()
        self.breakers = breakers
        self.metrics = metrics
        self.hot_params = hot_params  # checked only by enter_params / aenter_params
        permits = concurrency is not None and bool(concurrency.permits)
        self._rare_entry = (
            len(self.rates) > 1
            or (rate_limits is not None and bool(rate_limits.global_rates))
            or throttling is not None
            or len(breakers) > 1
            or observer is not None
        )
        self._rare_exit = permits or len(breakers) > 1 or metrics is not None or observer is not None
        self.enter: EnterPath = _compile_enter(self)
        self.exit: ExitPath | None = _compile_exit(self)

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

    def enter_params(self, lookup: ParamLookup, inbound: bool = True) -> int:
        """``enter`` after the hot-parameter limits, which read the request's parameters through
        ``lookup`` (a Throttling one sleeps here). Plain ``enter`` skips those limits."""
        hot = self.hot_params
        if hot is not None:
            wait = hot.admit(lookup, self.now() // NS_PER_MS)
            if isinstance(wait, BlockedError):
                self._block(wait)
            if wait:
                self.sleep(wait / 1000)
        return self.enter(inbound)

    async def aenter_params(self, lookup: ParamLookup, inbound: bool = True) -> int:
        """``enter_params`` for asyncio: queueing is awaited, not slept."""
        hot = self.hot_params
        if hot is not None:
            wait = hot.admit(lookup, self.now() // NS_PER_MS)
            if isinstance(wait, BlockedError):
                self._block(wait)
            if wait:
                await self.asleep(wait / 1000)
        return await self.aenter(inbound) if self.throttles else self.enter(inbound)

    def _enter_rare(self, now: int, defer: bool) -> int:
        """The rest of the rate limits, then throttling (waiting for the reserved slot: sync; with
        ``defer`` the asyncio caller awaits it), then the breakers."""
        rate_limits = self.rate_limits
        if rate_limits is not None:
            for w, threshold, _ in self.rates[1:]:
                if now >= w.end:
                    w.roll(now)
                if w.hist_pass + w.passes[w.idx] >= threshold:
                    self._refuse_rate(w, now)
                w.passes[w.idx] += 1
            if rate_limits.global_rates:
                error = rate_limits.acquire_tokens(now)
                if error is not None:
                    self._undo(now)
                    self._block(error)
        throttling = self.throttling
        if throttling is None:
            return self._admitted(now, now)
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
        """The checks after any queueing: the breakers (claiming due probes), then the observer."""
        if self.breakers:
            error = breaker.claim(self.breakers, now)
            if error is not None:
                self._undo(start)
                self._block(error)
        observer = self.observer
        if observer is not None:
            observer.on_pass(self.resource)
        return start

    # -- refusals and undo (slow path) --------------------------------------------------------

    def _admit_in_flight(self, flight: InFlight, now: int, inbound: bool) -> None:
        """Adaptive protection (inbound requests), the smallest local concurrency limit, then
        Global permits: a refusal takes the request's count back."""
        adaptive = self.adaptive
        if adaptive is not None and inbound:
            error = adaptive.refusal(now, flight.count - 1)
            if error is not None:
                flight.count -= 1
                self._block(error)
        concurrency = self.concurrency
        if concurrency is None:
            return
        if flight.count > concurrency.max:
            flight.count -= 1
            self._block(concurrency.refusal(flight.count))
        error = concurrency.acquire_permits()
        if error is not None:
            flight.count -= 1
            self._block(error)

    def _refuse_rate(self, w: Window, now: int) -> NoReturn:
        rate_limits = self.rate_limits
        assert rate_limits is not None
        rate_limits.uncount(now, w)
        self._release()
        self._block(rate_limits.refusal(w, now))

    def _undo(self, counted_at: int) -> None:
        """Take back a refused (or cancelled) request's rate-limit counts and concurrency slot."""
        if self.rate_limits is not None:
            self.rate_limits.uncount(counted_at)
        self._release()

    def _release(self) -> None:
        flight = self.in_flight
        if flight is not None:
            flight.count -= 1
        if self.concurrency is not None:
            self.concurrency.release_permits()

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

    # -- exit (slow path) -----------------------------------------------------------------

    def _exit_rare(self, now: int, rt: int, failed: bool) -> None:
        """Global permits back, the other breakers, BBR's completion window, the observer."""
        if self.concurrency is not None:
            self.concurrency.release_permits()
        for b in self.breakers[1:]:
            b.on_complete(now, rt, failed)
        metrics = self.metrics
        if metrics is not None:
            metrics.add_completion(now, rt, failed)
        observer = self.observer
        if observer is not None:
            observer.on_complete(self.resource, rt, failed)


# -- the per-call path, compiled per resource --------------------------------------------------
# ``enter`` and ``exit`` are generated from the two bodies below, keeping only the parts the
# resource has: a test for a part that is absent (``if flight is not None``) would be paid by
# every call of every resource (about 60 ns of a guarded call's 350, measured). Each combination
# of parts is compiled once; a resource's ``enter``/``exit`` are closures over its own objects, so
# a call does no attribute lookups on the checks object. These bodies are the only copy of the
# per-call path: ``enter`` serves ``aenter`` (``defer``), ``Engine.entry`` and the async guard
# forms, ``exit`` their exits; :func:`compile_around` inlines the same bodies into the sync guard
# forms' own code.

# (part, source): a part's lines are kept when the resource has it ("" = always). The entry body
# sets ``start`` (the exit body reads it, and ``error``).
_Template = tuple[tuple[str, str], ...]
_ENTER_BODY: _Template = (
    ("", "    now = now_ns()\n"),
    (
        "flight",
        "    flight.count += 1  # counted first, then compared (see node.InFlight)\n"
        "    if flight.count > max_in_flight:\n"
        "        admit_in_flight(flight, now, inbound)\n",
    ),
    (
        "window",
        "    if now >= w.end:\n"
        "        w.roll(now)\n"
        "    passes = w.passes\n"
        "    i = w.idx\n"
        "    if w.hist_pass + passes[i] >= threshold:\n"
        "        refuse_rate(w, now)\n"
        "    passes[i] += 1  # counted now; taken back if a later check refuses\n",
    ),
    ("rare", "    start = enter_rare(now, defer)  # it checks the breakers itself\n"),
    ("breaker", "    start = admitted(now, now) if b.state else now  # b.state: not CLOSED\n"),
    ("plain", "    start = now\n"),
)
_EXIT_BODY: _Template = (
    ("flight", "    flight.count -= 1\n"),
    ("clock", "    now = now_ns()\n"),
    (
        "breaker",  # CircuitBreaker.on_complete, inlined
        "    if now >= b.end:\n        b.roll(now)\n    b.total += 1\n",
    ),
    ("errors", "    if error is not None:  # an error-ratio breaker: RT is not looked at\n"),
    ("slow", "    if now - start > slow:\n"),
    (
        "breaker",
        "        b.bad += 1\n"
        "        b.judge(now, True)\n"
        "    elif b.state or b.total == min_requests:\n"
        "        b.judge(now, False)\n",
    ),
    ("rare", "    exit_rare(now, now - start, error is not None)\n"),
)
_ENTER_TEMPLATE = (
    ("", "def enter(inbound=True, defer=False, /):\n"),
    *_ENTER_BODY,
    ("", "    return start\n"),
)
_EXIT_TEMPLATE = (("", "def exit(start, error=None, /):\n"), *_EXIT_BODY)
# What the bodies read, bound per resource as closure variables.
_READS = (
    "now_ns",
    "flight",
    "max_in_flight",
    "admit_in_flight",
    "w",
    "threshold",
    "refuse_rate",
    "enter_rare",
    "b",
    "admitted",
    "exit_rare",
    "slow",
    "min_requests",
)
_FACTORIES: dict[tuple[str, str, _Template, frozenset[str], tuple[str, ...]], Callable[..., Any]] = {}


def _generate(
    name: str, template: _Template, parts: frozenset[str], names: tuple[str, ...] = _READS, label: str = ""
) -> Callable[..., Any]:
    """The factory of ``name`` with ``parts``: called with ``names`` (every name the template reads,
    by keyword), it returns the function, a closure over them. ``label`` tells templates that
    define the same name apart in tracebacks (their source is kept under its own file name)."""
    key = (name, label, template, parts, names)
    factory = _FACTORIES.get(key)
    if factory is None:
        body = "".join(source for part, source in template if not part or part in parts)
        source = (
            f"def factory(*, {', '.join(names)}):\n" + textwrap.indent(body, "    ") + f"    return {name}\n"
        )
        filename = f"<opensergo {label}{name}: {'+'.join(sorted(parts))}>"
        namespace: dict[str, Any] = {}
        exec(compile(source, filename, "exec"), namespace)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks
        factory = _FACTORIES[key] = namespace["factory"]
    return factory


def _enter_parts(c: ResourceChecks) -> tuple[frozenset[str], dict[str, Any]]:
    """What ``enter`` runs: concurrency (adaptive protection and Global permits behind it), the
    first rate-limit window, then the rare checks, or else the first breaker when it is not CLOSED.
    Returns its parts and what they read (besides :func:`_reads`' common names)."""
    flight = c.in_flight
    limits = c.concurrency
    # Adaptive protection and Global permits are checked where a local limit refuses: -1 sends
    # every request there.
    if c.adaptive is not None or (limits is not None and limits.permits):
        max_in_flight = -1
    else:
        max_in_flight = limits.max if limits is not None else NO_LIMIT
    w, threshold, _ = c.rates[0] if c.rates else (None, 0, ())
    rare = c._enter_rare if c._rare_entry else None
    b = c.breakers[0] if c.breakers else None  # the exit's too, where both are inlined together
    parts = {"flight": flight is not None, "window": w is not None, "rare": rare is not None}
    parts["breaker"] = b is not None and rare is None
    parts["plain"] = rare is None and b is None
    reads = dict(flight=flight, max_in_flight=max_in_flight, w=w, threshold=threshold, enter_rare=rare, b=b)
    return frozenset(k for k, v in parts.items() if v), reads


def _exit_parts(c: ResourceChecks) -> tuple[frozenset[str], dict[str, Any]]:
    """What ``exit`` runs: the in-flight release, the first breaker's completion, then the rare
    rest (no parts: an exit has nothing to do). Returns its parts and what they read."""
    flight = c.in_flight
    b = c.breakers[0] if c.breakers else None
    rare = c._exit_rare if c._rare_exit else None
    slow = b.slow_rt_ns if b is not None else -1
    parts = {"flight": flight is not None, "breaker": b is not None, "rare": rare is not None}
    parts["clock"] = b is not None or rare is not None
    parts["errors"] = b is not None and slow < 0
    parts["slow"] = b is not None and slow >= 0
    min_requests = b.min_requests if b is not None else 0
    reads = dict(flight=flight, b=b, exit_rare=rare, slow=slow, min_requests=min_requests)
    return frozenset(k for k, v in parts.items() if v), reads


def _compile_enter(c: ResourceChecks) -> EnterPath:
    parts, reads = _enter_parts(c)
    return cast(EnterPath, _generate("enter", _ENTER_TEMPLATE, parts)(**_reads(c, reads)))


def _compile_exit(c: ResourceChecks) -> ExitPath | None:
    parts, reads = _exit_parts(c)
    if not parts:
        return None
    return cast(ExitPath, _generate("exit", _EXIT_TEMPLATE, parts)(**_reads(c, reads)))


def _reads(c: ResourceChecks, given: dict[str, Any]) -> dict[str, Any]:
    """Every name in :data:`_READS`: ``given``, else the checks' clock and slow-path methods."""
    reads: dict[str, Any] = dict.fromkeys(_READS)
    reads.update(now_ns=c.now, admit_in_flight=c._admit_in_flight, refuse_rate=c._refuse_rate)
    reads.update(admitted=c._admitted, **given)
    return reads


ENTRY_BODY = "<the entry body>"
"""Where :func:`compile_around` inlines a resource's entry checks (they set ``start``)."""
EXIT_BODY = "<the exit body>"
"""Where :func:`compile_around` inlines a resource's exit (it reads ``start`` and ``error``)."""


def compile_around(
    checks: ResourceChecks | None, label: str, name: str, code: tuple[str, ...], names: Mapping[str, Any]
) -> Callable[..., Any]:
    """The function ``name`` defined by ``code`` (source pieces), with ``checks``' entry checks
    inlined at :data:`ENTRY_BODY` and its exit at :data:`EXIT_BODY` (function-level indentation).
    A caller that keeps its own state around the checks so pays one Python call, not one per side.

    The code reads ``names``, and ``leave``: ``checks.exit``, what an entry admitted here reports
    to (None: nothing). The entry body reads ``inbound`` and ``defer``: give them in ``names``.
    ``checks`` None (an unguarded resource): the entry body is ``start = 0``, the exit body
    empty. ``label`` names the code in tracebacks."""
    if checks is None:
        parts, reads, leave = frozenset[str](), dict.fromkeys(_READS), None
    else:
        entry_parts, entry_reads = _enter_parts(checks)
        exit_parts, exit_reads = _exit_parts(checks)
        # the two bodies' parts are told apart by a prefix (see _around)
        parts = frozenset([*(f"entry {p}" for p in entry_parts), *(f"exit {p}" for p in exit_parts)])
        reads = _reads(checks, {**entry_reads, **exit_reads})  # both read one flight, one first breaker
        leave = checks.exit
    extra = tuple(names)
    template = _around(code, checks is None)
    factory = _generate(name, template, parts, (*_READS, "leave", *extra), f"{label} ")
    function: Callable[..., Any] = factory(**reads, leave=leave, **names)
    return function


@functools.cache
def _around(code: tuple[str, ...], unguarded: bool) -> _Template:
    """``code`` with the bodies in, their parts prefixed ("entry ...", "exit ...")."""
    entry_body = _ENTER_BODY if not unguarded else (("", "    start = 0\n"),)
    exit_body = _EXIT_BODY if not unguarded else ()
    template: list[tuple[str, str]] = []
    for piece in code:
        if piece == ENTRY_BODY:
            template += ((f"entry {p}" if p else "", source) for p, source in entry_body)
        elif piece == EXIT_BODY:
            template += ((f"exit {p}" if p else "", source) for p, source in exit_body)
        else:
            template.append(("", piece))
    return tuple(template)


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
        "hot_params": checks.hot_params.describe() if checks.hot_params is not None else [],
        "rules": sorted({ref.rule for ref in checks.refs}),
    }
