from __future__ import annotations

import pytest

from opensergo.proto.common.v1 import common_pb2
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft_pb2
from opensergo.spec import (
    AdaptiveOverloadProtectionStrategy,
    CircuitBreakerStrategy,
    ConcurrencyLimitStrategy,
    FaultToleranceRule,
    HttpRequestFallbackAction,
    RateLimitStrategy,
    SpecError,
    SpecErrors,
    ThrottlingStrategy,
    parse_documents,
)
from opensergo.spec.faulttolerance import LimitMode, StrategyKind
from opensergo.spec.units import Duration
from opensergo.spec.upstream.codec import from_proto, to_proto

from .conftest import one

pytestmark = pytest.mark.unit

FT = "apiVersion: fault-tolerance.opensergo.io/v1alpha1"


def rate_limit(spec: str) -> RateLimitStrategy:
    resource = one(f"{FT}\nkind: RateLimitStrategy\nmetadata: {{name: rl}}\nspec: {spec}\n")
    assert isinstance(resource, RateLimitStrategy)
    return resource


def breaker(spec: str) -> CircuitBreakerStrategy:
    resource = one(f"{FT}\nkind: CircuitBreakerStrategy\nmetadata: {{name: cb}}\nspec: {spec}\n")
    assert isinstance(resource, CircuitBreakerStrategy)
    return resource


def field_error(text: str) -> SpecError:
    with pytest.raises(SpecErrors) as info:
        parse_documents(text)
    [error] = info.value.errors
    return error


# --- RateLimitStrategy -------------------------------------------------------------------------


def test_rate_limit_accepts_both_duration_forms() -> None:
    seconds = rate_limit("{threshold: 10, statDurationSeconds: 5}")
    text = rate_limit("{threshold: 10, statDuration: 5s}")
    assert seconds.spec.stat_duration_millis == text.spec.stat_duration_millis == 5000
    assert to_proto(seconds) == to_proto(text)
    # Each keeps its own spelling for a round trip.
    assert seconds.to_dict()["spec"]["statDurationSeconds"] == 5
    assert text.to_dict()["spec"]["statDuration"] == "5s"


def test_rate_limit_defaults_to_one_second_local_request_amount() -> None:
    spec = rate_limit("{threshold: 3}").spec
    assert spec.stat_duration_millis == 1000
    assert spec.limitMode is LimitMode.LOCAL
    assert spec.metricType.value == "RequestAmount"


def test_rate_limit_rejects_both_duration_forms() -> None:
    error = field_error(
        f"{FT}\nkind: RateLimitStrategy\nmetadata: {{name: rl}}\n"
        "spec: {threshold: 1, statDuration: 1s, statDurationSeconds: 1}"
    )
    assert error.field == "spec.statDuration"
    assert "not both" in error.message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{threshold: -1}", "spec.threshold"),
        ("{threshold: 1.5}", "spec.threshold"),
        ("{threshold: 1, statDurationSeconds: 0}", "spec.statDurationSeconds"),
        ("{threshold: 1, statDuration: 0s}", "spec.statDuration"),
        ("{threshold: 1, statDuration: 5x}", "spec.statDuration"),
        ("{threshold: 1, limitMode: Cluster}", "spec.limitMode"),
        ("{threshold: 1, metricType: Bytes}", "spec.metricType"),
        ("{}", "spec.threshold"),
    ],
)
def test_rate_limit_validation(spec: str, field: str) -> None:
    error = field_error(f"{FT}\nkind: RateLimitStrategy\nmetadata: {{name: rl}}\nspec: {spec}")
    assert error.field == field


def test_limit_modes_are_case_insensitive() -> None:
    assert rate_limit("{threshold: 1, limitMode: globaltolocal}").spec.limitMode is LimitMode.GLOBAL_TO_LOCAL


def test_rate_limit_to_proto() -> None:
    msg = to_proto(rate_limit("{threshold: 10, limitMode: Global, statDuration: 1min}"))
    assert msg.name == "rl"
    assert msg.metric_type == ft_pb2.RateLimitStrategy.TYPE_REQUEST_AMOUNT
    assert msg.limit_mode == ft_pb2.RateLimitStrategy.MODE_GLOBAL
    assert msg.threshold == 10
    assert msg.stat_duration == 60
    assert msg.stat_duration_time_unit == common_pb2.SECOND


def test_rate_limit_sub_second_window_is_sent_in_milliseconds() -> None:
    msg = to_proto(rate_limit("{threshold: 10, statDuration: 1500ms}"))
    assert (msg.stat_duration, msg.stat_duration_time_unit) == (1500, common_pb2.MILLISECOND)


def test_rate_limit_modes_to_proto() -> None:
    modes = {m: to_proto(rate_limit(f"{{threshold: 1, limitMode: {m}}}")).limit_mode for m in LimitMode}
    assert modes == {
        LimitMode.LOCAL: ft_pb2.RateLimitStrategy.MODE_LOCAL,
        LimitMode.GLOBAL: ft_pb2.RateLimitStrategy.MODE_GLOBAL,
        # A cluster-wide total: see the faulttolerance module docstring.
        LimitMode.GLOBAL_TO_LOCAL: ft_pb2.RateLimitStrategy.MODE_GLOBAL,
    }


def test_rate_limit_from_go_control_plane() -> None:
    # What the Go control plane sends: enums 0, unit UNKNOWN, value = statDurationSeconds.
    msg = ft_pb2.RateLimitStrategy(name="rate-limit-foo", threshold=3, stat_duration=5)
    strategy = from_proto(RateLimitStrategy, msg, name="ignored", namespace="default", app="foo-app")
    assert strategy.name == "rate-limit-foo"
    assert strategy.metadata.labels == {"app": "foo-app"}
    assert strategy.spec.limitMode is LimitMode.LOCAL
    assert strategy.spec.stat_duration_millis == 5000
    assert strategy.spec.threshold == 3


def test_rate_limit_from_proto_units() -> None:
    msg = ft_pb2.RateLimitStrategy(
        name="r",
        threshold=1,
        stat_duration=2,
        stat_duration_time_unit=common_pb2.MINUTE,
        limit_mode=ft_pb2.RateLimitStrategy.MODE_GLOBAL,
    )
    strategy = from_proto(RateLimitStrategy, msg, name="r", namespace="ns", app="a")
    assert strategy.spec.statDuration == Duration("2min")
    assert strategy.spec.limitMode is LimitMode.GLOBAL


def test_from_proto_rejects_another_message() -> None:
    with pytest.raises(
        SpecError, match=r"expected io\.opensergo\.proto\.fault_tolerance\.v1\.RateLimitStrategy"
    ):
        from_proto(RateLimitStrategy, ft_pb2.ThrottlingStrategy(), name="x", namespace="ns", app="a")


# --- ThrottlingStrategy / ConcurrencyLimitStrategy ----------------------------------------------


def test_throttling_to_proto_uses_real_milliseconds() -> None:
    strategy = one(
        f"{FT}\nkind: ThrottlingStrategy\nmetadata: {{name: th}}\n"
        "spec: {minIntervalOfRequests: 20ms, queueTimeout: 1s}"
    )
    assert isinstance(strategy, ThrottlingStrategy)
    msg = to_proto(strategy)
    assert (msg.name, msg.min_interval_millis_of_requests, msg.queue_timeout_millis) == ("th", 20, 1000)
    back = from_proto(ThrottlingStrategy, msg, name="th", namespace="default", app="a")
    assert back.spec == strategy.spec


def test_throttling_validation() -> None:
    base = f"{FT}\nkind: ThrottlingStrategy\nmetadata: {{name: th}}\n"
    assert (
        field_error(base + "spec: {minIntervalOfRequests: 0ms, queueTimeout: 0ms}").field
        == "spec.queueTimeout"
    )
    one(base + "spec: {minIntervalOfRequests: 0ms, queueTimeout: 1ms}")  # CRD allows a 0 interval
    with pytest.raises(SpecError, match="invalid duration"):
        from_proto(
            ThrottlingStrategy,
            ft_pb2.ThrottlingStrategy(name="th", min_interval_millis_of_requests=-1, queue_timeout_millis=5),
            name="th",
            namespace="ns",
            app="a",
        )


def test_concurrency_limit_to_proto() -> None:
    strategy = one(
        f"{FT}\nkind: ConcurrencyLimitStrategy\nmetadata: {{name: cl}}\n"
        "spec: {maxConcurrency: 8, limitMode: Global}"
    )
    assert isinstance(strategy, ConcurrencyLimitStrategy)
    msg = to_proto(strategy)
    assert (msg.name, msg.max_concurrency, msg.limit_mode) == (
        "cl",
        8,
        ft_pb2.ConcurrencyLimitStrategy.MODE_GLOBAL,
    )
    unknown = ft_pb2.ConcurrencyLimitStrategy(name="cl", max_concurrency=2)
    assert (
        from_proto(ConcurrencyLimitStrategy, unknown, name="x", namespace="n", app="a").spec.limitMode.value
        == "Local"
    )


# --- CircuitBreakerStrategy --------------------------------------------------------------------


SLOW = (
    "{strategy: SlowRequestRatio, triggerRatio: '60%', statDuration: 30s, recoveryTimeout: 5s, "
    "minRequestAmount: 5, slowConditions: {maxAllowedRt: 500ms}}"
)
ERROR = (
    "{strategy: ErrorRequestRatio, triggerRatio: 0.5, statDuration: 1min, recoveryTimeout: 1h, "
    "minRequestAmount: 1}"
)


def test_slow_breaker_to_proto() -> None:
    msg = to_proto(breaker(SLOW))
    assert msg.name == "cb"
    assert msg.strategy == ft_pb2.CircuitBreakerStrategy.STRATEGY_SLOW_REQUEST_RATIO
    assert msg.trigger_ratio == pytest.approx(0.6)
    assert (msg.stat_duration, msg.stat_duration_time_unit) == (30_000, common_pb2.MILLISECOND)
    assert (msg.recovery_timeout, msg.recovery_timeout_time_unit) == (5_000, common_pb2.MILLISECOND)
    assert msg.min_request_amount == 5
    assert msg.HasField("slow_condition")
    assert msg.slow_condition.max_allowed_rt_millis == 500
    assert not msg.HasField("error_condition")


def test_error_breaker_to_proto() -> None:
    msg = to_proto(breaker(ERROR))
    assert msg.strategy == ft_pb2.CircuitBreakerStrategy.STRATEGY_ERROR_REQUEST_RATIO
    assert msg.trigger_ratio == 0.5
    assert msg.stat_duration == 60_000
    assert msg.recovery_timeout == 3_600_000
    assert msg.HasField("error_condition")
    assert not msg.HasField("slow_condition")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("slowConditions: {maxAllowedRt: 500ms}", ""), "spec.slowConditions"),
        (("'60%'", "'160%'"), "spec.triggerRatio"),
        (("'60%'", "-0.1"), "spec.triggerRatio"),
        (("minRequestAmount: 5", "minRequestAmount: 0"), "spec.minRequestAmount"),
        (("statDuration: 30s", "statDuration: 0s"), "spec.statDuration"),
        (("recoveryTimeout: 5s", "recoveryTimeout: 30d"), "spec.recoveryTimeout"),
        (("maxAllowedRt: 500ms", "maxAllowedRt: 0ms"), "spec.slowConditions.maxAllowedRt"),
        (("SlowRequestRatio", "Slow"), "spec.strategy"),
    ],
)
def test_breaker_validation(change: tuple[str, str], field: str) -> None:
    spec = SLOW.replace(*change).replace(", }", "}")
    error = field_error(f"{FT}\nkind: CircuitBreakerStrategy\nmetadata: {{name: cb}}\nspec: {spec}")
    assert error.field == field, error


def test_breaker_from_go_control_plane() -> None:
    # Go control plane: UNKNOWN units (values in its ms), slow condition -1 for an error breaker.
    msg = ft_pb2.CircuitBreakerStrategy(
        name="cb",
        strategy=ft_pb2.CircuitBreakerStrategy.STRATEGY_ERROR_REQUEST_RATIO,
        trigger_ratio=0.6,
        stat_duration=600,
        recovery_timeout=50,
        min_request_amount=5,
        slow_condition=ft_pb2.CircuitBreakerStrategy.CircuitBreakerSlowCondition(max_allowed_rt_millis=-1),
    )
    strategy = from_proto(CircuitBreakerStrategy, msg, name="x", namespace="default", app="foo-app")
    assert strategy.spec.statDuration.millis == 600
    assert strategy.spec.recoveryTimeout.millis == 50
    assert strategy.spec.slowConditions is None
    assert strategy.spec.triggerRatio == 0.6


def test_breaker_from_proto_needs_a_strategy() -> None:
    with pytest.raises(SpecError, match="unknown strategy"):
        from_proto(
            CircuitBreakerStrategy,
            ft_pb2.CircuitBreakerStrategy(name="cb"),
            name="cb",
            namespace="n",
            app="a",
        )


def test_breaker_round_trips_through_proto() -> None:
    for spec in (SLOW, ERROR):
        original = breaker(spec)
        back = from_proto(CircuitBreakerStrategy, to_proto(original), name="cb", namespace="default", app="")
        assert back.spec == original.spec
        assert to_proto(back) == to_proto(original)


# --- AdaptiveOverloadProtectionStrategy / HttpRequestFallbackAction --------------------------


def adaptive(spec: str) -> AdaptiveOverloadProtectionStrategy:
    resource = one(f"{FT}\nkind: AdaptiveOverloadProtectionStrategy\nmetadata: {{name: ad}}\nspec: {spec}")
    assert isinstance(resource, AdaptiveOverloadProtectionStrategy)
    return resource


def test_adaptive_thresholds() -> None:
    assert (
        adaptive(
            "{metricType: CpuPercentage, triggerThreshold: '70%', adaptiveStrategy: BBR}"
        ).spec.triggerThreshold
        == 0.7
    )
    assert adaptive("{metricType: SystemLoad, triggerThreshold: 8}").spec.triggerThreshold == 8.0
    assert adaptive("{metricType: SystemLoad, triggerThreshold: 8}").spec.adaptiveStrategy.value == "NONE"
    assert to_proto(adaptive("{metricType: SystemLoad, triggerThreshold: 8}")) is None
    base = f"{FT}\nkind: AdaptiveOverloadProtectionStrategy\nmetadata: {{name: ad}}\n"
    error = field_error(base + "spec: {metricType: CpuPercentage, triggerThreshold: 70}")
    assert error.field == "spec.triggerThreshold"
    assert "between 0 and 1" in error.message
    assert (
        field_error(base + "spec: {metricType: SystemLoad, triggerThreshold: -1}").field
        == "spec.triggerThreshold"
    )
    assert field_error(base + "spec: {metricType: Memory, triggerThreshold: 1}").field == "spec.metricType"


def test_fallback_action() -> None:
    action = one(
        f"""{FT}
kind: HttpRequestFallbackAction
metadata: {{name: fb}}
spec:
  behavior: ReturnProvidedResponse
  behaviorDesc:
    responseStatusCode: 429
    responseContentBody: '{{"error": "limited"}}'
    responseAdditionalHeaders: [{{key: Content-Type, value: application/json}}]
"""
    )
    assert isinstance(action, HttpRequestFallbackAction)
    desc = action.spec.behaviorDesc
    assert desc.responseStatusCode == 429
    assert desc.responseAdditionalHeaders[0].key == "Content-Type"
    assert to_proto(action) is None


@pytest.mark.parametrize(
    ("desc", "field"),
    [
        ("{responseStatusCode: 99}", "spec.behaviorDesc.responseStatusCode"),
        ("{responseStatusCode: 429, responseAdditionalHeaders: [{key: 'a b', value: x}]}", None),
        (
            '{responseStatusCode: 429, responseAdditionalHeaders: [{key: X, value: "a\\r\\nSet-Cookie: 1"}]}',
            None,
        ),
        ("{}", "spec.behaviorDesc.responseStatusCode"),
    ],
)
def test_fallback_action_validation(desc: str, field: str | None) -> None:
    error = field_error(
        f"{FT}\nkind: HttpRequestFallbackAction\nmetadata: {{name: fb}}\nspec: {{behaviorDesc: {desc}}}"
    )
    if field is None:
        assert error.field.startswith("spec.behaviorDesc.responseAdditionalHeaders[0].")
    else:
        assert error.field == field


# --- FaultToleranceRule ------------------------------------------------------------------------


RULE = f"""{FT}
kind: FaultToleranceRule
metadata: {{name: rule, labels: {{app: demo}}}}
spec:
  targets: [{{targetResourceName: 'GET:/hello'}}, {{targetResourceName: '/pkg.Svc/Method'}}]
  strategies:
    - {{name: rl, kind: RateLimitStrategy}}
    - {{name: cb, kind: CircuitBreakerStrategy}}
    - {{name: th}}
  fallbackAction: {{name: fb, kind: HttpRequestFallbackAction}}
"""


def test_rule_to_proto() -> None:
    rule = one(RULE)
    assert isinstance(rule, FaultToleranceRule)
    msg = to_proto(rule)
    assert [t.target_resource_name for t in msg.targets] == ["GET:/hello", "/pkg.Svc/Method"]
    assert [(s.name, s.kind) for s in msg.strategies] == [
        ("rl", "RateLimitStrategy"),
        ("cb", "CircuitBreakerStrategy"),  # upstream's CRD would refuse this kind
        ("th", ""),
    ]
    assert (msg.action.name, msg.action.kind) == ("fb", "HttpRequestFallbackAction")


def test_rule_fallback_action_as_bare_name() -> None:
    rule = one(RULE.replace("{name: fb, kind: HttpRequestFallbackAction}", "fb"))
    assert isinstance(rule, FaultToleranceRule)
    assert rule.spec.fallbackAction is not None and rule.spec.fallbackAction.name == "fb"
    assert to_proto(rule).action.kind == "HttpRequestFallbackAction"


def test_rule_without_fallback_sends_no_action() -> None:
    rule = one(RULE.replace("  fallbackAction: {name: fb, kind: HttpRequestFallbackAction}\n", ""))
    assert isinstance(rule, FaultToleranceRule)
    assert not to_proto(rule).HasField("action")


# Spelled out, not read from StrategyKind, so that a kind dropped there fails here.
STRATEGY_KINDS = [
    "RateLimitStrategy",
    "ThrottlingStrategy",
    "ConcurrencyLimitStrategy",
    "CircuitBreakerStrategy",
    "AdaptiveOverloadProtectionStrategy",
    "HotParamRateLimitStrategy",
]


def test_the_strategy_kinds_below_are_every_kind() -> None:
    # A kind added to StrategyKind without a case here fails too.
    assert sorted(kind.value for kind in StrategyKind) == sorted(STRATEGY_KINDS)


@pytest.mark.parametrize("kind", STRATEGY_KINDS)
def test_rule_accepts_every_strategy_kind(kind: str) -> None:
    rule = one(RULE.replace("kind: CircuitBreakerStrategy", f"kind: {kind}"))
    assert isinstance(rule, FaultToleranceRule)
    assert rule.spec.strategies[1].kind == StrategyKind(kind)
    assert (to_proto(rule).strategies[1].name, to_proto(rule).strategies[1].kind) == ("cb", kind)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("kind: CircuitBreakerStrategy", "kind: Nope"), "spec.strategies[1].kind"),
        (("{name: th}", "{name: ''}"), "spec.strategies[2].name"),
        (("'GET:/hello'", "''"), "spec.targets[0].targetResourceName"),
        (("kind: HttpRequestFallbackAction}", "kind: RateLimitStrategy}"), "spec.fallbackAction.kind"),
    ],
)
def test_rule_validation(change: tuple[str, str], field: str) -> None:
    assert field_error(RULE.replace(*change)).field == field


def test_rule_needs_targets_and_strategies() -> None:
    base = f"{FT}\nkind: FaultToleranceRule\nmetadata: {{name: r}}\n"
    assert field_error(base + "spec: {targets: [], strategies: [{name: a}]}").field == "spec.targets"
    assert field_error(base + "spec: {targets: [{targetResourceName: a}]}").field == "spec.strategies"


def test_rule_from_proto() -> None:
    rule = one(RULE)
    assert isinstance(rule, FaultToleranceRule)
    back = from_proto(FaultToleranceRule, to_proto(rule), name="demo-rule-0", namespace="default", app="demo")
    assert back.name == "demo-rule-0"
    assert back.spec == rule.spec
