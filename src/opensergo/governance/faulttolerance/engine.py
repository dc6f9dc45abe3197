"""The fault-tolerance engine: the rule table, reference resolution, and the atomic swap.

The engine holds the current fault-tolerance objects (FaultToleranceRule, the six strategy kinds,
HttpRequestFallbackAction). Every change (:meth:`Engine.set_rules`, :meth:`Engine.update_kind`,
:meth:`Engine.set_instance_count`, ...) recompiles all of them into a fresh
``{resource: ResourceChecks}`` table and publishes it with one reference assignment, so a request
sees either the old set or the new one, never a mix.

Resolving: strategy references resolve by (namespace, kind, name); a reference without ``kind``
resolves by name across the strategy kinds. Unresolvable references are skipped and reported in
:attr:`Engine.problems` (and logged), never raised.

Compiling is each strategy module's business (``compile_check`` in ``adaptive``, ``concurrency``,
``ratelimit``, ``throttling``, ``breaker`` and ``hotparam``; see ``compiling`` for what they share); the
per-call path that runs the result is ``checks``. Per-resource state that must outlive a push
(the in-flight count, the windows) lives in the resource's ``node``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from opensergo.common.clock import SYSTEM_CLOCK, Clock
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance import (
    adaptive,
    breaker,
    concurrency,
    hotparam,
    ratelimit,
    throttling,
)
from opensergo.governance.faulttolerance.adaptive import SystemSampler
from opensergo.governance.faulttolerance.breaker import BreakerState, CircuitBreaker, StateListener
from opensergo.governance.faulttolerance.checks import EntryObserver, ResourceChecks
from opensergo.governance.faulttolerance.cluster import GlobalPermits, GlobalRate, TokenSource
from opensergo.governance.faulttolerance.compiling import Compilation
from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.faulttolerance.hotparam import ParamLookup
from opensergo.governance.faulttolerance.node import ResourceNode
from opensergo.governance.faulttolerance.ref import BlockCounter, RuleRef

if TYPE_CHECKING:
    from opensergo.spec.base import Resource
    from opensergo.spec.faulttolerance import FaultToleranceRule

log = logging.getLogger("opensergo.governance")

# The kinds are the spec models (pydantic): they are imported with the first rules, or when these
# names are first read (the module's __getattr__), so that importing the guard API stays light.
STRATEGY_KINDS: tuple[type[Resource], ...]
"""Strategy kinds, in the order their checks run."""

KINDS: tuple[str, ...]
"""Every kind the engine consumes."""


@functools.cache
def _kinds() -> tuple[tuple[type[Resource], ...], tuple[str, ...]]:
    """(STRATEGY_KINDS, KINDS)."""
    from opensergo.spec import faulttolerance as ft

    strategies: tuple[type[Resource], ...] = (
        ft.HotParamRateLimitStrategy,
        ft.AdaptiveOverloadProtectionStrategy,
        ft.ConcurrencyLimitStrategy,
        ft.RateLimitStrategy,
        ft.ThrottlingStrategy,
        ft.CircuitBreakerStrategy,
    )
    kinds = (ft.FaultToleranceRule.KIND, *(k.KIND for k in strategies), ft.HttpRequestFallbackAction.KIND)
    return strategies, kinds


def __getattr__(name: str) -> object:
    if name == "STRATEGY_KINDS":
        return _kinds()[0]
    if name == "KINDS":
        return _kinds()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


S = TypeVar("S", bound="Resource")
Applied = list[tuple["Resource", RuleRef]]  # the strategies applied to one resource, in rule order


def _of_kind(applied: Applied, kind: type[S]) -> list[tuple[S, RuleRef]]:
    return [(strategy, ref) for strategy, ref in applied if isinstance(strategy, kind)]


class Entry:
    """One admitted request (from :meth:`Engine.entry`); call :meth:`exit` exactly when it ends.

    ``exit`` is idempotent. The entry is also a context manager whose ``__exit__`` passes the
    exception (if any) as the error; whether it counts as one is the engine's ``errors`` /
    ``ignore`` configuration.
    """

    __slots__ = ("_done", "_engine", "_exit", "start")

    def __init__(self, engine: Engine, checks: ResourceChecks | None, start: int) -> None:
        self._engine = engine
        self._exit = checks.exit if checks is not None else None
        self.start = start
        self._done = False

    def exit(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        leave = self._exit
        if leave is not None:
            if error is not None and not self._engine.counts_as_error(error):
                error = None
            leave(self.start, error)

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


class _References:
    """One version's objects, indexed to resolve what FaultToleranceRules refer to.

    What cannot be resolved is skipped and described in ``problems``."""

    def __init__(self, objects: Mapping[str, list[Resource]], problems: list[str]) -> None:
        from opensergo.spec.faulttolerance import FaultToleranceRule, HttpRequestFallbackAction

        self.problems = problems
        self.by_key: dict[tuple[str, str, str], Resource] = {}
        self.by_name: dict[tuple[str, str], list[Resource]] = {}
        for kind in _kinds()[0]:
            for obj in objects.get(kind.KIND, ()):
                self.by_key[(obj.namespace, obj.kind, obj.name)] = obj
                self.by_name.setdefault((obj.namespace, obj.name), []).append(obj)
        self.actions = {
            (o.namespace, o.name): o
            for o in objects.get(HttpRequestFallbackAction.KIND, ())
            if isinstance(o, HttpRequestFallbackAction)
        }
        self._rules = [
            r for r in objects.get(FaultToleranceRule.KIND, ()) if isinstance(r, FaultToleranceRule)
        ]

    def rules(self) -> list[FaultToleranceRule]:
        return sorted(self._rules, key=lambda r: (r.namespace, r.name))

    def fallback(self, rule: FaultToleranceRule) -> FallbackResponse | None:
        ref = rule.spec.fallbackAction
        if ref is None:
            return None
        action = self.actions.get((rule.namespace, ref.name))
        if action is not None:
            return FallbackResponse.from_action(action)
        self.problems.append(
            f"{_where(rule)}: fallbackAction {ref.name!r} not found "
            "(no HttpRequestFallbackAction of that name); blocked requests get the default"
        )
        return None

    def strategies(self, rule: FaultToleranceRule) -> list[Resource]:
        """The strategies ``rule`` names, in its order; by (kind, name), or by name alone."""
        found: list[Resource] = []
        ns, where = rule.namespace, _where(rule)
        for ref in rule.spec.strategies:
            if ref.kind is not None:
                strategy = self.by_key.get((ns, ref.kind.value, ref.name))
                if strategy is None:
                    self.problems.append(f"{where}: {ref.kind.value} {ref.name!r} not found; skipped")
                else:
                    found.append(strategy)
                continue
            candidates = self.by_name.get((ns, ref.name), [])
            if len(candidates) == 1:
                found.append(candidates[0])
            elif not candidates:
                self.problems.append(f"{where}: no strategy named {ref.name!r}; skipped")
            else:
                kinds = ", ".join(c.kind for c in candidates)
                self.problems.append(
                    f"{where}: strategy {ref.name!r} is ambiguous ({kinds}); give its kind; skipped"
                )
        return found


def _where(rule: FaultToleranceRule) -> str:
    return f"FaultToleranceRule {rule.namespace}/{rule.name}"


class Engine:
    """Compiles fault-tolerance rules and guards resources with them.

    ``errors`` / ``ignore`` say which exceptions raised inside a guard count as errors for circuit
    breakers (default: every ``Exception``; a BlockedError never counts). ``instances`` is the
    app's live instance count for GlobalToLocal rate limits. ``sampler`` provides CPU and load
    figures for adaptive protection (a :class:`SystemSampler` that starts when the first adaptive
    rule arrives, by default).

    ``checks(resource)`` gives the compiled checks of ``resource`` in the current version (None:
    unguarded). It is the current table's own lookup, replaced at every swap, so that the per-call
    path pays one C call for it.
    """

    checks: Callable[[str], ResourceChecks | None]

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
        self.errors = errors
        self.ignore = ignore
        self._sampler = sampler
        self._owns_sampler = sampler is None
        self._instances = max(1, instances)
        self._table: dict[str, ResourceChecks] = {}
        self.checks = self._table.get
        self._objects: dict[str, list[Resource]] = {}
        self._nodes: dict[str, ResourceNode] = {}
        self._kept: dict[Hashable, object] = {}
        self._counters: dict[tuple[str, str, str], BlockCounter] = {}
        self._listeners: list[StateListener] = []
        self._observer: EntryObserver | None = None
        self._warned_global: set[tuple[str, str]] = set()
        self._token_source: TokenSource | None = None
        self._compile_lock = threading.RLock()
        self._problems: tuple[str, ...] = ()
        self._version = 0
        self._unguarded = Entry(self, None, 0)  # shared by every request to an unguarded resource

    # -- the per-call API ---------------------------------------------------------------------

    def entry(self, resource: str, *, inbound: bool = True, params: ParamLookup | None = None) -> Entry:
        """Admit one request to ``resource`` or raise a BlockedError; sleeps when throttled.

        ``params`` reads the request's parameters for HotParamRateLimitStrategies (see
        :data:`~opensergo.governance.faulttolerance.hotparam.ParamLookup`); without it those
        limits do not apply. It is called only when the resource has such a limit."""
        checks = self.checks(resource)
        if checks is None:
            return self._unguarded
        if params is not None and checks.hot_params is not None:
            return Entry(self, checks, checks.enter_params(params, inbound))
        return Entry(self, checks, checks.enter(inbound))

    async def aentry(
        self, resource: str, *, inbound: bool = True, params: ParamLookup | None = None
    ) -> Entry:
        """``entry`` for asyncio: waits for throttling without blocking the event loop."""
        checks = self.checks(resource)
        if checks is None:
            return self._unguarded
        if params is not None and checks.hot_params is not None:
            return Entry(self, checks, await checks.aenter_params(params, inbound))
        if checks.throttles:
            return Entry(self, checks, await checks.aenter(inbound))
        return Entry(self, checks, checks.enter(inbound))

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
            return [obj for kind in _kinds()[1] for obj in self._objects.get(kind, ())]

    def set_rules(self, objects: Iterable[Resource]) -> ApplyResult:
        """Replace every fault-tolerance object and recompile (non fault-tolerance objects are ignored)."""
        from opensergo.spec.faulttolerance import GROUP

        kinds = _kinds()[1]
        grouped: dict[str, list[Resource]] = {}
        ignored = 0
        for obj in objects:
            if getattr(obj, "GROUP", None) == GROUP and obj.kind in kinds:
                grouped.setdefault(obj.kind, []).append(obj)
            else:
                ignored += 1
        with self._compile_lock:
            self._objects = grouped
            return self._recompile(ignored)

    def update_kind(self, kind: str, objects: Iterable[Resource]) -> ApplyResult:
        """Replace the objects of one kind (a per-kind push) and recompile."""
        kinds = _kinds()[1]
        if kind not in kinds:
            raise ValueError(f"{kind!r} is not a fault-tolerance kind; expected one of {', '.join(kinds)}")
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
        :class:`~opensergo.governance.faulttolerance.checks.EntryObserver`. Recompiles, so every
        resource sees the change at once."""
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
        """Requests of ``resource`` in flight (tracked while a concurrency or adaptive rule applies).

        Under contention this may read one above a limit for an instant: a refused caller's own
        tentative count, which it takes back at once (see InFlight).
        """
        node = self._nodes.get(resource)
        return node.in_flight.count if node is not None else 0

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

    # -- compiling and the swap ---------------------------------------------------------------

    def _system_sampler(self) -> SystemSampler:
        if self._sampler is None:
            self._sampler = SystemSampler()
        return self._sampler

    def _recompile(self, ignored: int) -> ApplyResult:
        build = Compilation(
            previous=self._kept,
            token_source=self._token_source,
            instances=self._instances,
            listeners=self._listeners,
            sampler=self._system_sampler,
            now=self.clock.now_ns,
            warned=self._warned_global,
        )
        per_resource = self._resolve(build.problems)
        nodes: dict[str, ResourceNode] = {}
        table: dict[str, ResourceChecks] = {}
        for resource, applied in per_resource.items():
            node = nodes[resource] = self._nodes.get(resource) or ResourceNode()
            table[resource] = self._build(resource, applied, node, build)
            for _, ref in applied:
                if ref.key not in self._counters:
                    self._counters[ref.key] = BlockCounter()
        # The switch: one reference assignment for the per-call path.
        self._table = table
        self.checks = table.get
        self._nodes = nodes
        self._kept = build.kept
        for retired in build.retired():
            if isinstance(retired, GlobalRate | GlobalPermits):
                retired.close()  # gives back what its leases did not use
        self._problems = tuple(build.problems)
        self._version += 1
        for problem in build.problems:
            log.warning("fault-tolerance rules: %s", problem)
        if build.uses_sampler:
            self._system_sampler().start()
        elif self._sampler is not None and self._owns_sampler:
            self._sampler.stop()
        return ApplyResult(self._version, tuple(sorted(table)), tuple(build.problems), ignored)

    def _resolve(self, problems: list[str]) -> dict[str, Applied]:
        """Strategies per resource, in rule order (rules sorted by namespace and name)."""
        refs = _References(self._objects, problems)
        per_resource: dict[str, Applied] = {}
        seen: set[tuple[str, str, str, str]] = set()
        for rule in refs.rules():
            ns = rule.namespace
            fallback = refs.fallback(rule)
            strategies = refs.strategies(rule)
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
        self, resource: str, applied: Applied, node: ResourceNode, build: Compilation
    ) -> ResourceChecks:
        """Each strategy module compiles its part; the node keeps only what the parts use."""
        from opensergo.spec.faulttolerance import (
            AdaptiveOverloadProtectionStrategy,
            CircuitBreakerStrategy,
            ConcurrencyLimitStrategy,
            HotParamRateLimitStrategy,
            RateLimitStrategy,
            ThrottlingStrategy,
        )

        adaptive_check = adaptive.compile_check(
            _of_kind(applied, AdaptiveOverloadProtectionStrategy), node, build
        )
        limits = concurrency.compile_check(resource, _of_kind(applied, ConcurrencyLimitStrategy), build)
        rates = ratelimit.compile_check(resource, _of_kind(applied, RateLimitStrategy), node, build)
        throttles = throttling.compile_check(resource, _of_kind(applied, ThrottlingStrategy), build)
        breakers = breaker.compile_check(resource, _of_kind(applied, CircuitBreakerStrategy), build)
        hot_params = hotparam.compile_check(resource, _of_kind(applied, HotParamRateLimitStrategy), build)
        bbr = adaptive_check is not None and adaptive_check.uses_bbr
        node.keep_only(ratelimit.windows_in_use(rates), metrics=bbr)
        clock = self.clock
        return ResourceChecks(
            resource,
            now=clock.now_ns,
            sleep=clock.sleep,
            asleep=clock.asleep,
            counters=self._counters,
            observer=self._observer,
            refs=tuple(ref for _, ref in applied),
            adaptive=adaptive_check,
            concurrency=limits,
            in_flight=node.in_flight if limits is not None or adaptive_check is not None else None,
            rate_limits=rates,
            throttling=throttles,
            breakers=breakers,
            metrics=node.metrics if bbr else None,
            hot_params=hot_params,
        )
