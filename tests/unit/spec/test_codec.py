from __future__ import annotations

import pytest
from google.protobuf import any_pb2, struct_pb2

from opensergo.proto.common.v1 import common_pb2
from opensergo.proto.ext.v1 import resource_pb2
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft_pb2
from opensergo.spec import (
    NATIVE_TYPE_URL,
    FaultToleranceRule,
    RateLimitStrategy,
    Resource,
    SpecError,
    decode,
    encode_native,
    encode_upstream,
    lookup,
)
from opensergo.spec.kinds import by_api_version_kind

from .conftest import one

pytestmark = pytest.mark.unit

RATE_LIMIT = """apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: rl, namespace: prod, labels: {app: demo}, annotations: {note: x}, resourceVersion: "42"}
spec: {threshold: 10, statDurationSeconds: 2}
"""


def test_native_round_trip_for_every_kind(samples: list[Resource], examples: list[Resource]) -> None:
    seen = set()
    for resource in samples + examples:
        info = by_api_version_kind(resource.apiVersion, resource.kind)
        seen.add(info.kind)
        payload = encode_native(resource)
        assert payload.type_url == NATIVE_TYPE_URL
        assert decode(payload, kind=info, namespace="elsewhere", app="ignored") == resource
    assert len(seen) >= 17  # VirtualWorkload is covered below


def test_native_round_trip_virtual_workload(examples: list[Resource]) -> None:
    [vw] = [r for r in examples if r.kind == "VirtualWorkload"]
    assert decode(encode_native(vw), kind=lookup("VirtualWorkload"), namespace="x", app="y") == vw


def test_native_payload_fields() -> None:
    resource = one(RATE_LIMIT)
    payload = encode_native(resource)
    message = resource_pb2.Resource()
    assert payload.Unpack(message)
    assert (message.api_version, message.kind, message.name, message.namespace) == (
        "fault-tolerance.opensergo.io/v1alpha1",
        "RateLimitStrategy",
        "rl",
        "prod",
    )
    assert dict(message.labels) == {"app": "demo"}
    assert dict(message.annotations) == {"note": "x"}
    assert message.resource_version == 42
    assert message.spec["threshold"] == 10.0  # Struct stores numbers as doubles …

    back = decode(payload, kind=lookup("RateLimitStrategy"), namespace="prod", app="demo")
    assert isinstance(back, RateLimitStrategy)
    assert type(back.spec.threshold) is int and back.spec.threshold == 10  # … and they come back as ints
    assert type(back.spec.statDurationSeconds) is int
    assert back.metadata.resourceVersion == "42"
    assert encode_native(one(RATE_LIMIT.replace(', resourceVersion: "42"', ""))).value != payload.value


def test_native_payload_is_deterministic() -> None:
    """The bytes are those of the message built field by field, serialized with sorted map keys
    (labels and spec keys are given out of order, so insertion order would differ)."""
    labels = {"zeta": "1", "app": "demo", "beta": "2", "mu": "3", "alpha": "4", "kappa": "5"}
    resource = one(
        RATE_LIMIT.replace(
            "labels: {app: demo}",
            "labels: {zeta: '1', app: demo, beta: '2', mu: '3', alpha: '4', kappa: '5'}",
        ).replace(
            "{threshold: 10, statDurationSeconds: 2}",
            "{threshold: 10, statDurationSeconds: 2, limitMode: Local}",
        )
    )
    spec = struct_pb2.Struct()
    spec.update(
        {"limitMode": "Local", "threshold": 10, "statDurationSeconds": 2, "metricType": "RequestAmount"}
    )
    expected = resource_pb2.Resource(
        api_version="fault-tolerance.opensergo.io/v1alpha1",
        kind="RateLimitStrategy",
        name="rl",
        namespace="prod",
        labels=labels,
        annotations={"note": "x"},
        resource_version=42,
        spec=spec,
    )
    payload = encode_native(resource)
    assert payload.type_url == "type.googleapis.com/opensergo.ext.v1.Resource"
    assert payload.value == expected.SerializeToString(deterministic=True)


def test_upstream_round_trip_for_fault_tolerance_kinds(samples: list[Resource]) -> None:
    checked = set()
    for resource in samples:
        info = by_api_version_kind(resource.apiVersion, resource.kind)
        payload = encode_upstream(resource)
        if info.proto is None:
            assert payload is None
            continue
        assert payload is not None
        assert payload.type_url == info.type_url
        back = decode(payload, kind=info, namespace=resource.namespace, app="demo", index=7)
        assert type(back) is type(resource)
        assert encode_upstream(back) == payload
        checked.add(info.kind)
    assert {
        "FaultToleranceRule",
        "RateLimitStrategy",
        "ThrottlingStrategy",
        "ConcurrencyLimitStrategy",
        "CircuitBreakerStrategy",
        "TrafficRouter",
    } <= checked


def test_upstream_payload_is_deterministic_and_decodable() -> None:
    resource = one(RATE_LIMIT)
    payload = encode_upstream(resource)
    expected = ft_pb2.RateLimitStrategy(
        name="rl",
        metric_type=ft_pb2.RateLimitStrategy.TYPE_REQUEST_AMOUNT,
        limit_mode=ft_pb2.RateLimitStrategy.MODE_LOCAL,
        threshold=10,
        stat_duration=2,
        stat_duration_time_unit=common_pb2.SECOND,
    )
    assert payload is not None and payload.value == expected.SerializeToString(deterministic=True)
    assert payload.type_url == "type.googleapis.com/io.opensergo.proto.fault_tolerance.v1.RateLimitStrategy"
    message = ft_pb2.RateLimitStrategy()
    assert payload.Unpack(message)
    assert message.threshold == 10 and message.stat_duration == 2


def test_upstream_rule_gets_a_generated_name() -> None:
    payload = any_pb2.Any()
    payload.Pack(
        ft_pb2.FaultToleranceRule(
            targets=[ft_pb2.FaultToleranceRule.FaultToleranceRuleTargetRef(target_resource_name="GET:/fooa")],
            strategies=[
                ft_pb2.FaultToleranceRule.FaultToleranceStrategyRef(
                    name="rate-limit-foo", kind="RateLimitStrategy"
                )
            ],
        )
    )
    rule = decode(payload, kind=lookup("FaultToleranceRule"), namespace="default", app="foo-app", index=3)
    assert isinstance(rule, FaultToleranceRule)
    assert rule.name == "foo-app-rule-3"
    assert rule.namespace == "default" and rule.app == "foo-app"


def test_decode_from_go_control_plane_rate_limit() -> None:
    payload = any_pb2.Any()
    payload.Pack(ft_pb2.RateLimitStrategy(name="rate-limit-foo", threshold=3, stat_duration=5))
    strategy = decode(payload, kind=lookup("RateLimitStrategy"), namespace="default", app="foo-app")
    assert isinstance(strategy, RateLimitStrategy)
    assert strategy.spec.stat_duration_millis == 5000
    assert strategy.spec.limitMode.value == "Local"


def test_type_mismatches() -> None:
    payload = encode_native(one(RATE_LIMIT))
    with pytest.raises(
        SpecError, match=r"expected fault-tolerance\.opensergo\.io/v1alpha1/ThrottlingStrategy"
    ):
        decode(payload, kind=lookup("ThrottlingStrategy"), namespace="n", app="a")
    upstream = encode_upstream(one(RATE_LIMIT))
    assert upstream is not None
    with pytest.raises(SpecError, match="does not match kind ThrottlingStrategy"):
        decode(upstream, kind=lookup("ThrottlingStrategy"), namespace="n", app="a")
    with pytest.raises(SpecError, match="does not match kind HttpRequestFallbackAction"):
        decode(upstream, kind=lookup("HttpRequestFallbackAction"), namespace="n", app="a")
    broken = any_pb2.Any(type_url=upstream.type_url, value=b"\xff\xff")
    with pytest.raises(SpecError, match="cannot decode"):
        decode(broken, kind=lookup("RateLimitStrategy"), namespace="n", app="a")


def test_invalid_upstream_content_is_a_spec_error() -> None:
    payload = any_pb2.Any()
    payload.Pack(
        ft_pb2.ThrottlingStrategy(name="th", min_interval_millis_of_requests=10, queue_timeout_millis=0)
    )
    with pytest.raises(SpecError) as info:
        decode(payload, kind=lookup("ThrottlingStrategy"), namespace="n", app="a", index=1)
    assert info.value.field == "spec.queueTimeout"
    assert "ThrottlingStrategy payload 1" in (info.value.source or "")
