"""The fault-tolerance kinds <-> ``io.opensergo.proto.fault_tolerance.v1`` messages.

Encoding deliberately departs from the Go control plane's conversion, whose bugs are listed in
protocol.md §3.4:

* Durations are exact milliseconds (upstream multiplies seconds by 10), and every
  ``*_time_unit`` field is set. With UNKNOWN units Sentinel's OpenSergo data source drops every
  circuit breaker.
* RateLimitStrategy carries real ``metric_type`` and ``limit_mode`` values; upstream always
  sends 0. ``stat_duration`` is in seconds with ``stat_duration_time_unit = SECOND``, or in
  milliseconds (unit MILLISECOND) when the duration is not a whole number of seconds.
* ``limitMode: GlobalToLocal`` is sent as ``MODE_GLOBAL``. The proto has no value for it, and
  the threshold in such a strategy is a cluster-wide total. MODE_GLOBAL keeps that meaning: a
  consumer with cluster flow control enforces the total, and one without it (Sentinel's data
  source today ignores limit_mode) behaves as it would for any mode. MODE_LOCAL would tell every
  instance it may admit the whole total, N times too much, and MODE_UNKNOWN says nothing. A
  control plane that knows the instance count can send the exact per-instance form instead via
  :meth:`~opensergo.spec.faulttolerance.RateLimitStrategy.localized`.
* CircuitBreakerStrategy sets ``slow_condition`` only when ``slowConditions`` is given, and
  ``error_condition`` for ErrorRequestRatio. Upstream always sends a slow condition (-1 when
  absent) and never an error condition.
* FaultToleranceRule sets ``action`` from ``fallbackAction`` and allows any strategy kind;
  upstream drops the action and its CRD allows only two kinds.

Decoding reads what the Go control plane sends, including its UNKNOWN enums and units: an UNKNOWN
RateLimit duration unit means seconds (upstream copies ``statDurationSeconds``), an UNKNOWN unit
elsewhere means milliseconds, and an UNKNOWN limit mode means Local.
"""

from __future__ import annotations

from typing import Any

from opensergo.proto.common.v1 import common_pb2
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft_pb2
from opensergo.spec.errors import SpecError
from opensergo.spec.faulttolerance import (
    ActionKind,
    BreakerStrategy,
    CircuitBreakerStrategy,
    ConcurrencyLimitMode,
    ConcurrencyLimitStrategy,
    FaultToleranceRule,
    LimitMode,
    MetricType,
    RateLimitStrategy,
    ThrottlingStrategy,
)
from opensergo.spec.units import Duration, Ratio
from opensergo.spec.upstream.form import UpstreamForm, rebuild

# Upstream TimeUnit -> milliseconds per unit (UNKNOWN is resolved by the caller).
_TIME_UNIT_MILLIS: dict[int, int] = {
    common_pb2.MILLISECOND: 1,
    common_pb2.SECOND: 1000,
    common_pb2.MINUTE: 60_000,
    common_pb2.HOUR: 3_600_000,
    common_pb2.DAY: 86_400_000,
}


def time_unit_to_millis(value: int, unit: int, *, unknown_as: int) -> int:
    """Convert an upstream (value, TimeUnit) pair; ``unknown_as`` is the unit assumed for UNKNOWN."""
    if unit == common_pb2.UNKNOWN:
        unit = unknown_as
    try:
        return value * _TIME_UNIT_MILLIS[unit]
    except KeyError:
        raise ValueError(f"unsupported time unit {unit}") from None


def _millis(value: int, unit: int, *, unknown_as: int) -> int:
    try:
        return time_unit_to_millis(value, unit, unknown_as=unknown_as)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def _duration_from(value: int, unit: int, *, unknown_as: int) -> Duration:
    millis = _millis(value, unit, unknown_as=unknown_as)
    if millis < 0:
        # The Go control plane sends -1 for a duration it could not parse.
        raise SpecError(f"invalid duration {value} in the upstream message")
    return Duration.from_millis(millis)


# --- RateLimitStrategy ------------------------------------------------------------------------

_RATE_LIMIT_MODES = {
    LimitMode.LOCAL: ft_pb2.RateLimitStrategy.MODE_LOCAL,
    LimitMode.GLOBAL: ft_pb2.RateLimitStrategy.MODE_GLOBAL,
    LimitMode.GLOBAL_TO_LOCAL: ft_pb2.RateLimitStrategy.MODE_GLOBAL,  # see the module docstring
}


def encode_rate_limit(strategy: RateLimitStrategy) -> ft_pb2.RateLimitStrategy:
    millis = strategy.spec.stat_duration_millis
    if millis % 1000 == 0:
        duration, unit = millis // 1000, common_pb2.SECOND
    else:
        duration, unit = millis, common_pb2.MILLISECOND
    return ft_pb2.RateLimitStrategy(
        name=strategy.metadata.name,
        metric_type=ft_pb2.RateLimitStrategy.TYPE_REQUEST_AMOUNT,
        limit_mode=_RATE_LIMIT_MODES[strategy.spec.limitMode],
        threshold=strategy.spec.threshold,
        stat_duration=duration,
        stat_duration_time_unit=unit,
    )


def decode_rate_limit(
    message: ft_pb2.RateLimitStrategy, /, *, name: str, namespace: str, app: str
) -> RateLimitStrategy:
    mode = {
        ft_pb2.RateLimitStrategy.MODE_GLOBAL: LimitMode.GLOBAL,
    }.get(message.limit_mode, LimitMode.LOCAL)
    spec: dict[str, Any] = {
        "metricType": MetricType.REQUEST_AMOUNT,
        "limitMode": mode,
        "threshold": message.threshold,
    }
    if message.stat_duration:
        unit = message.stat_duration_time_unit
        if unit in (common_pb2.UNKNOWN, common_pb2.SECOND):
            spec["statDurationSeconds"] = message.stat_duration
        else:
            millis = _millis(message.stat_duration, unit, unknown_as=common_pb2.SECOND)
            spec["statDuration"] = Duration.from_millis(millis)
    return rebuild(RateLimitStrategy, name=message.name or name, namespace=namespace, app=app, spec=spec)


# --- ThrottlingStrategy -----------------------------------------------------------------------


def encode_throttling(strategy: ThrottlingStrategy) -> ft_pb2.ThrottlingStrategy:
    return ft_pb2.ThrottlingStrategy(
        name=strategy.metadata.name,
        min_interval_millis_of_requests=strategy.spec.minIntervalOfRequests.millis,
        queue_timeout_millis=strategy.spec.queueTimeout.millis,
    )


def decode_throttling(
    message: ft_pb2.ThrottlingStrategy, /, *, name: str, namespace: str, app: str
) -> ThrottlingStrategy:
    ms = common_pb2.MILLISECOND
    spec = {
        "minIntervalOfRequests": _duration_from(message.min_interval_millis_of_requests, ms, unknown_as=ms),
        "queueTimeout": _duration_from(message.queue_timeout_millis, ms, unknown_as=ms),
    }
    return rebuild(ThrottlingStrategy, name=message.name or name, namespace=namespace, app=app, spec=spec)


# --- ConcurrencyLimitStrategy -----------------------------------------------------------------


def encode_concurrency_limit(strategy: ConcurrencyLimitStrategy) -> ft_pb2.ConcurrencyLimitStrategy:
    mode = {
        ConcurrencyLimitMode.LOCAL: ft_pb2.ConcurrencyLimitStrategy.MODE_LOCAL,
        ConcurrencyLimitMode.GLOBAL: ft_pb2.ConcurrencyLimitStrategy.MODE_GLOBAL,
    }[strategy.spec.limitMode]
    return ft_pb2.ConcurrencyLimitStrategy(
        name=strategy.metadata.name, limit_mode=mode, max_concurrency=strategy.spec.maxConcurrency
    )


def decode_concurrency_limit(
    message: ft_pb2.ConcurrencyLimitStrategy, /, *, name: str, namespace: str, app: str
) -> ConcurrencyLimitStrategy:
    mode = {
        ft_pb2.ConcurrencyLimitStrategy.MODE_GLOBAL: ConcurrencyLimitMode.GLOBAL,
    }.get(message.limit_mode, ConcurrencyLimitMode.LOCAL)
    spec = {"maxConcurrency": message.max_concurrency, "limitMode": mode}
    return rebuild(
        ConcurrencyLimitStrategy, name=message.name or name, namespace=namespace, app=app, spec=spec
    )


# --- CircuitBreakerStrategy -------------------------------------------------------------------

_BREAKER = ft_pb2.CircuitBreakerStrategy
_BREAKER_STRATEGIES = {
    BreakerStrategy.SLOW_REQUEST_RATIO: _BREAKER.STRATEGY_SLOW_REQUEST_RATIO,
    BreakerStrategy.ERROR_REQUEST_RATIO: _BREAKER.STRATEGY_ERROR_REQUEST_RATIO,
}
_BREAKER_STRATEGIES_BACK = {wire: strategy for strategy, wire in _BREAKER_STRATEGIES.items()}


def encode_circuit_breaker(strategy: CircuitBreakerStrategy) -> ft_pb2.CircuitBreakerStrategy:
    spec = strategy.spec
    msg = _BREAKER(
        name=strategy.metadata.name,
        strategy=_BREAKER_STRATEGIES[spec.strategy],
        trigger_ratio=float(spec.triggerRatio),
        stat_duration=spec.statDuration.millis,
        stat_duration_time_unit=common_pb2.MILLISECOND,
        recovery_timeout=spec.recoveryTimeout.millis,
        recovery_timeout_time_unit=common_pb2.MILLISECOND,
        min_request_amount=spec.minRequestAmount,
    )
    if spec.slowConditions is not None:
        msg.slow_condition.max_allowed_rt_millis = spec.slowConditions.maxAllowedRt.millis
    if spec.strategy is BreakerStrategy.ERROR_REQUEST_RATIO:
        msg.error_condition.SetInParent()
    return msg


def decode_circuit_breaker(
    message: ft_pb2.CircuitBreakerStrategy, /, *, name: str, namespace: str, app: str
) -> CircuitBreakerStrategy:
    strategy = _BREAKER_STRATEGIES_BACK.get(message.strategy)
    if strategy is None:
        raise SpecError(f"circuit breaker {message.name!r} has an unknown strategy ({message.strategy})")
    ms = common_pb2.MILLISECOND
    spec: dict[str, Any] = {
        "strategy": strategy,
        "triggerRatio": Ratio(message.trigger_ratio),
        "statDuration": _duration_from(message.stat_duration, message.stat_duration_time_unit, unknown_as=ms),
        "recoveryTimeout": _duration_from(
            message.recovery_timeout, message.recovery_timeout_time_unit, unknown_as=ms
        ),
        "minRequestAmount": message.min_request_amount,
    }
    # Upstream always sends a slow condition, with -1 when there is none.
    if message.HasField("slow_condition") and message.slow_condition.max_allowed_rt_millis > 0:
        rt = message.slow_condition.max_allowed_rt_millis
        spec["slowConditions"] = {"maxAllowedRt": Duration.from_millis(rt)}
    return rebuild(CircuitBreakerStrategy, name=message.name or name, namespace=namespace, app=app, spec=spec)


# --- FaultToleranceRule -----------------------------------------------------------------------

_RULE = ft_pb2.FaultToleranceRule


def encode_rule(rule: FaultToleranceRule) -> ft_pb2.FaultToleranceRule:
    msg = _RULE(
        targets=[
            _RULE.FaultToleranceRuleTargetRef(target_resource_name=t.targetResourceName)
            for t in rule.spec.targets
        ],
        strategies=[
            _RULE.FaultToleranceStrategyRef(name=s.name, kind=s.kind.value if s.kind else "")
            for s in rule.spec.strategies
        ],
    )
    action = rule.spec.fallbackAction
    if action is not None:
        # There is one action kind, so a reference without kind can only mean it.
        kind = action.kind or ActionKind.HTTP_REQUEST_FALLBACK
        msg.action.CopyFrom(_RULE.FaultToleranceActionRef(name=action.name, kind=kind.value))
    return msg


def decode_rule(
    message: ft_pb2.FaultToleranceRule, /, *, name: str, namespace: str, app: str
) -> FaultToleranceRule:
    """The message has no name field (upstream), so ``name`` is always used."""
    spec: dict[str, Any] = {
        "targets": [{"targetResourceName": t.target_resource_name} for t in message.targets],
        "strategies": [{"name": s.name, "kind": s.kind or None} for s in message.strategies],
    }
    if message.HasField("action") and message.action.name:
        spec["fallbackAction"] = {"name": message.action.name, "kind": message.action.kind or None}
    return rebuild(FaultToleranceRule, name=name, namespace=namespace, app=app, spec=spec)


RULE = UpstreamForm(ft_pb2.FaultToleranceRule, encode_rule, decode_rule)
RATE_LIMIT = UpstreamForm(ft_pb2.RateLimitStrategy, encode_rate_limit, decode_rate_limit)
THROTTLING = UpstreamForm(ft_pb2.ThrottlingStrategy, encode_throttling, decode_throttling)
CONCURRENCY_LIMIT = UpstreamForm(
    ft_pb2.ConcurrencyLimitStrategy, encode_concurrency_limit, decode_concurrency_limit
)
CIRCUIT_BREAKER = UpstreamForm(ft_pb2.CircuitBreakerStrategy, encode_circuit_breaker, decode_circuit_breaker)
