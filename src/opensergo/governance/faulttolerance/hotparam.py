"""Per-value limits for hot parameters (Sentinel's ``ParamFlowRule``), as bounded LRU tables.

A hot-parameter limit applies a threshold to each *value* of a parameter separately: every user
id, product id or cache key gets its own allowance. Two behaviours, both keyed by the value:

* :class:`ParamBuckets` (reject): Sentinel's per-value token bucket (Java
  ``ParamFlowChecker.passDefaultLocalCheck``, Go ``rejectTrafficShapingController``). A value
  first seen is admitted with ``threshold + burst - count`` tokens left; later calls spend tokens;
  once *more than* ``duration`` has passed since the last refill the bucket refills by
  ``floor(elapsed * threshold / duration)``, capped at ``threshold + burst``. In effect a fixed
  window anchored at the first request after the previous one expired: with threshold 5 per 1 s,
  five calls at ``t`` pass and a sixth at any time up to ``t + 1000 ms`` is blocked.
* :class:`ParamPacer` (throttling): requests of one value are spaced
  ``count * duration / threshold`` apart, queueing for at most ``max_queue_ms`` (Java
  ``passThrottleLocalCheck``).

Both take a threshold 0 as "block every request of that value", refuse a batch the threshold
cannot ever hold, and track at most ``max_values`` values: the least recently used one is
forgotten when a new one arrives. A forgotten value comes back with a full allowance (so cycling
through more distinct values than the capacity evades the limit, as in Sentinel; size the
capacity to the hot set).

Sentinel keeps (time, tokens) in lock-free maps and retries a lost CAS. Here one small lock
guards the table: a check is a few dictionary operations, the lock is uncontended almost always,
and (time, tokens) always change together, which Sentinel Go does not guarantee.

In the engine (:func:`compile_check`, :class:`HotParams`) a HotParamRateLimitStrategy becomes one
table per (resource, strategy), kept across pushes while its spec is unchanged. The integration
that admits a request hands the engine a :data:`ParamLookup` that reads a parameter from the
request (header, query, path, client IP, gRPC metadata, or a function argument); it is called only
for resources that have a hot-parameter limit, so other resources pay nothing. A parameter the
request lacks passes (Sentinel: a missing argument skips the rule). The limits run before the
resource-wide checks, as Sentinel Java's ParamFlowSlot precedes its FlowSlot: a request a later
check refuses has still spent its value's token, as in Java.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from opensergo.common.clock import SYSTEM_CLOCK, Clock
from opensergo.governance.errors import BlockedError, HotParamLimitedError
from opensergo.governance.faulttolerance.ref import RuleRef

# The spec models (pydantic) are imported where used: the guard API imports this module, and stays
# light until the first rules arrive.
if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.compiling import Compilation
    from opensergo.spec.faulttolerance import HotParamRateLimitStrategy, ParamSource

# Sentinel's default number of tracked values per rule at a 1 s duration (Java ParameterMetric,
# Go traffic_shaping.go); both grow it with the duration, Java up to 200 000.
DEFAULT_MAX_VALUES = 4000
MAX_VALUES_CAP = 200_000

BLOCKED = -1


def default_max_values(duration_seconds: int) -> int:
    """Sentinel Java's capacity for a rule without one: 4000 per second of duration, at most
    200 000."""
    return min(DEFAULT_MAX_VALUES * max(duration_seconds, 1), MAX_VALUES_CAP)


class _ValueTable:
    """What both behaviours share: thresholds per value, the clock and the bounded LRU table."""

    __slots__ = ("_lock", "_now_ms", "_table", "duration_ms", "exceptions", "max_values", "threshold")

    def __init__(
        self,
        threshold: int,
        duration_seconds: int,
        exceptions: Mapping[str, int] | None,
        max_values: int,
        clock: Clock,
    ) -> None:
        if threshold < 0:
            raise ValueError(f"threshold must not be negative (got {threshold})")
        if duration_seconds <= 0:
            raise ValueError(f"duration must be at least 1 second (got {duration_seconds})")
        if max_values <= 0:
            raise ValueError(f"max tracked values must be at least 1 (got {max_values})")
        items = dict(exceptions or {})
        for value, limit in items.items():
            if limit < 0:
                raise ValueError(f"exception threshold for {value!r} must not be negative (got {limit})")
        self.threshold = threshold
        self.duration_ms = duration_seconds * 1000
        self.exceptions = items
        self.max_values = max_values
        self._now_ms = clock.now_ms
        self._lock = threading.Lock()
        self._table: OrderedDict[str, list[int]] = OrderedDict()

    def threshold_for(self, value: str) -> int:
        """The threshold of ``value``: its exception item's, else the rule's."""
        return self.exceptions.get(value, self.threshold)

    def __len__(self) -> int:
        return len(self._table)

    def tracked(self) -> list[str]:
        """The tracked values, least recently used first."""
        with self._lock:
            return list(self._table)

    def _remember(self, value: str, state: list[int]) -> None:
        """Track a new value (the caller holds the lock), forgetting the least recently used."""
        table = self._table
        if len(table) >= self.max_values:
            table.popitem(last=False)
        table[value] = state


class ParamBuckets(_ValueTable):
    """A token bucket per value (Sentinel's QPS reject behaviour); see the module docstring."""

    __slots__ = ("burst",)

    def __init__(
        self,
        threshold: int,
        duration_seconds: int = 1,
        burst: int = 0,
        exceptions: Mapping[str, int] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if burst < 0:
            raise ValueError(f"burst must not be negative (got {burst})")
        super().__init__(threshold, duration_seconds, exceptions, max_values, clock)
        self.burst = burst

    def try_acquire(self, value: str, count: int = 1, now_ms: int | None = None) -> bool:
        """Take ``count`` tokens of ``value``'s bucket at ``now_ms`` (the clock's when None)."""
        tokens = self.exceptions.get(value, self.threshold) if self.exceptions else self.threshold
        if tokens == 0:
            return False
        most = tokens + self.burst
        if count > most:
            return False
        if now_ms is None:
            now_ms = self._now_ms()
        with self._lock:
            table = self._table
            state = table.get(value)
            if state is None:
                # [last refill (ms), tokens left]
                self._remember(value, [now_ms, most - count])
                return True
            table.move_to_end(value)
            elapsed = now_ms - state[0]
            rest = state[1]
            if elapsed > self.duration_ms:
                added = elapsed * tokens // self.duration_ms
                left = most - count if added + rest > most else added + rest - count
                if left < 0:
                    return False
                state[0] = now_ms
                state[1] = left
                return True
            if rest - count >= 0:
                state[1] = rest - count
                return True
            return False


class ParamPacer(_ValueTable):
    """Uniform pacing per value with a bounded queue (Sentinel's throttling behaviour)."""

    __slots__ = ("max_queue_ms",)

    def __init__(
        self,
        threshold: int,
        duration_seconds: int = 1,
        max_queue_ms: int = 0,
        exceptions: Mapping[str, int] | None = None,
        max_values: int = DEFAULT_MAX_VALUES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if max_queue_ms < 0:
            raise ValueError(f"queue timeout must not be negative (got {max_queue_ms})")
        super().__init__(threshold, duration_seconds, exceptions, max_values, clock)
        self.max_queue_ms = max_queue_ms

    def reserve(self, value: str, count: int = 1, now_ms: int | None = None) -> int:
        """Admit ``count`` requests of ``value``: the wait in ms (0 = at once), or BLOCKED.

        The cost of a request is ``count * duration / threshold`` ms, rounded (Sentinel Java).
        It passes when the previous admission plus the cost has already passed, or when the wait
        is *less than* the queue timeout (so a timeout of 0 never queues); the slot is then
        reserved and the caller waits. The first request of a value passes at once."""
        tokens = self.exceptions.get(value, self.threshold) if self.exceptions else self.threshold
        if tokens == 0:
            return BLOCKED
        cost = round(count * self.duration_ms / tokens)
        if now_ms is None:
            now_ms = self._now_ms()
        with self._lock:
            table = self._table
            state = table.get(value)
            if state is None:
                self._remember(value, [now_ms])
                return 0
            table.move_to_end(value)
            expected = state[0] + cost
            if expected <= now_ms:
                state[0] = now_ms
                return 0
            wait = expected - now_ms
            if wait < self.max_queue_ms:
                state[0] = expected
                return wait
            return BLOCKED


# -- the engine's side ---------------------------------------------------------------------------

ParamLookup = Callable[["ParamSource", "str | None"], object]
"""Reads one parameter from the request being admitted: ``(source, name) -> value``; None when the
request has no such parameter (or the integration cannot read that source). A str is the value;
a list, tuple or set means every element must pass (Sentinel Java); anything else is matched by
its ``str()``."""

_MAX_SHOWN = 64  # characters of a value quoted in a refusal


def _texts(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list | tuple | set | frozenset):
        return tuple(t for item in raw if item is not None for t in _texts(item))
    if isinstance(raw, bytes | bytearray):
        return (bytes(raw).decode("utf-8", "replace"),)
    return (str(raw),)


class HotParamLimit:
    """One HotParamRateLimitStrategy on one resource: where its parameter comes from, and its
    table (buckets for Reject, a pacer for Throttling)."""

    __slots__ = ("name", "ref", "source", "table")

    def __init__(
        self, source: ParamSource, name: str | None, table: ParamBuckets | ParamPacer, ref: RuleRef
    ) -> None:
        self.source = source
        self.name = name
        self.table = table
        self.ref = ref

    def refusal(self, value: str) -> HotParamLimitedError:
        table = self.table
        shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
        where = self.source.value if self.name is None else f"{self.source.value} {self.name!r}"
        seconds = table.duration_ms // 1000
        if isinstance(table, ParamPacer) and table.threshold_for(value):
            how = f"queueing would exceed {table.max_queue_ms} ms"
        else:
            how = f"threshold {table.threshold_for(value)}"
            if isinstance(table, ParamBuckets) and table.burst:
                how += f" + burst {table.burst}"
        r = self.ref
        detail = f"{where} = {shown!r}: {how} per {seconds} s"
        return HotParamLimitedError(r.resource, r.rule, r.strategy, r.kind, r.fallback, detail)


class HotParams:
    """The compiled hot-parameter limits of one resource, in rule order."""

    __slots__ = ("limits",)

    def __init__(self, limits: tuple[HotParamLimit, ...]) -> None:
        self.limits = limits

    def admit(self, lookup: ParamLookup, now_ms: int) -> int | BlockedError:
        """Charge every limit for the request's values; the total wait in ms (Throttling queues;
        0 = at once), or the refusal of the first limit a value exceeds (what earlier limits and
        values took stays taken, as in Sentinel)."""
        wait = 0
        for limit in self.limits:
            raw = lookup(limit.source, limit.name)
            if raw is None:
                continue  # the request lacks this parameter: the limit does not apply
            table = limit.table
            for value in (raw,) if isinstance(raw, str) else _texts(raw):
                if isinstance(table, ParamBuckets):
                    if not table.try_acquire(value, 1, now_ms):
                        return limit.refusal(value)
                    continue
                waited = table.reserve(value, 1, now_ms + wait)
                if waited == BLOCKED:
                    return limit.refusal(value)
                wait += waited
        return wait

    def describe(self) -> list[dict[str, object]]:
        """Plain data for debugging and the dashboard."""
        out: list[dict[str, object]] = []
        for limit in self.limits:
            table = limit.table
            out.append(
                {
                    "strategy": limit.ref.strategy,
                    "source": limit.source.value,
                    "name": limit.name,
                    "threshold": table.threshold,
                    "duration_s": table.duration_ms // 1000,
                    "tracked": len(table),
                    "max_values": table.max_values,
                }
            )
        return out


def table_for(strategy: HotParamRateLimitStrategy) -> ParamBuckets | ParamPacer:
    """A fresh table for ``strategy``."""
    from opensergo.spec.faulttolerance import HotParamBehavior

    spec = strategy.spec
    seconds = spec.duration_seconds
    capacity = spec.maxTrackedValues or default_max_values(seconds)
    if spec.behavior is HotParamBehavior.THROTTLING:
        queue = spec.queueTimeout.millis if spec.queueTimeout is not None else 0
        return ParamPacer(spec.threshold, seconds, queue, spec.exceptions, capacity)
    return ParamBuckets(spec.threshold, seconds, spec.burst, spec.exceptions, capacity)


def compile_check(
    resource: str, strategies: Sequence[tuple[HotParamRateLimitStrategy, RuleRef]], build: Compilation
) -> HotParams | None:
    """The hot-parameter check of ``resource`` (None: no hot-parameter limit applies). A table
    keeps its values' state across pushes while its strategy is unchanged; a changed strategy
    starts with fresh buckets."""
    if not strategies:
        return None
    limits: list[HotParamLimit] = []
    for strategy, ref in strategies:
        table = build.keep(
            ("hotparam", resource, ref.namespace, strategy.name, build.spec_key(strategy)),
            partial(table_for, strategy),
        )
        param = strategy.spec.param
        limits.append(HotParamLimit(param.source, param.name, table, ref))
    return HotParams(tuple(limits))


_MISSING = object()

ArgumentReader = Callable[[tuple[Any, ...], Mapping[str, Any], str], object]


def argument_reader(fn: Callable[..., Any]) -> ArgumentReader:
    """``(args, kwargs, name) -> value`` for ``fn``'s parameters, resolved from its signature once
    (at decoration), so a call costs a dict lookup and an index, not ``Signature.bind``. Unknown
    names and ``*args`` / ``**kwargs`` collectors read as None; a parameter not passed reads as
    its default."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: keyword arguments only
        params = {}  # type: ignore[assignment]
    positions: dict[str, int] = {}
    defaults: dict[str, object] = {}
    keyword_ok: set[str] = set()
    for i, (pname, p) in enumerate(params.items()):
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positions[pname] = i
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            keyword_ok.add(pname)
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is not p.empty:
            defaults[pname] = p.default
    has_var_keyword = any(p.kind is p.VAR_KEYWORD for p in params.values())

    def read(args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str) -> object:
        if name in keyword_ok or (has_var_keyword and name not in positions):
            value = kwargs.get(name, _MISSING)
            if value is not _MISSING:
                return value
        i = positions.get(name)
        if i is not None and i < len(args):
            return args[i]
        return defaults.get(name)

    return read


def argument_lookup(read: ArgumentReader, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> ParamLookup:
    """The ParamLookup of one call of a ``@guard``-decorated function: ``argument`` parameters
    come from its arguments; other sources do not exist there."""

    def lookup(source: ParamSource, name: str | None) -> object:
        if source == "argument" and name is not None:  # ParamSource.ARGUMENT (a StrEnum)
            return read(args, kwargs, name)
        return None

    return lookup


def mapping_lookup(values: Mapping[str, object]) -> ParamLookup:
    """A ParamLookup over named values, for ``Engine.entry(resource, params=...)`` by hand:
    ``params=mapping_lookup({"user_id": uid})`` serves every source by its ``name``
    (``clientIP`` by the key ``"clientIP"``)."""

    def lookup(source: ParamSource, name: str | None) -> object:
        return values.get(name if name is not None else source.value)

    return lookup
