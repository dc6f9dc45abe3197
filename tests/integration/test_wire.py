"""Wire compatibility: decode a real push with message classes built HERE from descriptor_pb2.

The classes below are written from the upstream field tables (docs/protocol.md), independently of
our generated code. A wrong package name, message name, field number or type URL fails this test.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from tests.helpers import ControlPlaneProcess, put_object

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED


def _message(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
    msg = descriptor_pb2.DescriptorProto(name=name)
    for fname, number, ftype, label, type_name in fields:
        field = msg.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            field.type_name = type_name
    return msg


def _enum(name: str, *values: str) -> descriptor_pb2.EnumDescriptorProto:
    enum = descriptor_pb2.EnumDescriptorProto(name=name)
    for i, value in enumerate(values):
        enum.value.add(name=value, number=i)
    return enum


def _independent_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)

    t = ".io.opensergo.proto.transport.v1."
    transport = descriptor_pb2.FileDescriptorProto(
        name="independent/transport.proto",
        package="io.opensergo.proto.transport.v1",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    transport.enum_type.append(_enum("SubscribeOpType", "SUBSCRIBE", "UNSUBSCRIBE"))
    transport.message_type.extend(
        [
            _message(
                "Status",
                ("code", 1, F.TYPE_INT32, OPT, ""),
                ("message", 2, F.TYPE_STRING, OPT, ""),
                ("details", 3, F.TYPE_MESSAGE, REP, ".google.protobuf.Any"),
            ),
            _message(
                "SubscribeLabelKV", ("key", 1, F.TYPE_STRING, OPT, ""), ("value", 2, F.TYPE_STRING, OPT, "")
            ),
            _message(
                "SubscribeRequestTarget",
                ("namespace", 1, F.TYPE_STRING, OPT, ""),
                ("app", 2, F.TYPE_STRING, OPT, ""),
                ("labels", 3, F.TYPE_MESSAGE, REP, t + "SubscribeLabelKV"),
                ("kinds", 4, F.TYPE_STRING, REP, ""),
            ),
            _message(
                "SubscribeRequest",
                ("target", 1, F.TYPE_MESSAGE, OPT, t + "SubscribeRequestTarget"),
                ("op_type", 2, F.TYPE_ENUM, OPT, t + "SubscribeOpType"),
                ("response_ack", 3, F.TYPE_STRING, OPT, ""),
                ("attachments", 4, F.TYPE_MESSAGE, REP, ".google.protobuf.Any"),
                ("status", 5, F.TYPE_MESSAGE, OPT, t + "Status"),
                ("identifier", 6, F.TYPE_STRING, OPT, ""),
                ("request_id", 7, F.TYPE_STRING, OPT, ""),
            ),
            _message("ControlPlaneDesc", ("identifier", 1, F.TYPE_STRING, OPT, "")),
            _message(
                "DataWithVersion",
                ("data", 1, F.TYPE_MESSAGE, REP, ".google.protobuf.Any"),
                ("version", 2, F.TYPE_INT64, OPT, ""),
            ),
            _message(
                "SubscribeResponse",
                ("status", 1, F.TYPE_MESSAGE, OPT, t + "Status"),
                ("ack", 2, F.TYPE_STRING, OPT, ""),
                ("namespace", 3, F.TYPE_STRING, OPT, ""),
                ("app", 4, F.TYPE_STRING, OPT, ""),
                ("kind", 5, F.TYPE_STRING, OPT, ""),
                ("dataWithVersion", 6, F.TYPE_MESSAGE, OPT, t + "DataWithVersion"),
                ("control_plane", 7, F.TYPE_MESSAGE, OPT, t + "ControlPlaneDesc"),
                ("response_id", 8, F.TYPE_STRING, OPT, ""),
            ),
        ]
    )
    pool.Add(transport)

    common = descriptor_pb2.FileDescriptorProto(
        name="independent/common.proto", package="io.opensergo.proto.common.v1", syntax="proto3"
    )
    common.enum_type.append(_enum("TimeUnit", "UNKNOWN", "MILLISECOND", "SECOND", "MINUTE", "HOUR", "DAY"))
    pool.Add(common)

    ft = ".io.opensergo.proto.fault_tolerance.v1."
    unit = ".io.opensergo.proto.common.v1.TimeUnit"
    fault = descriptor_pb2.FileDescriptorProto(
        name="independent/fault_tolerance.proto",
        package="io.opensergo.proto.fault_tolerance.v1",
        syntax="proto3",
        dependency=["independent/common.proto"],
    )
    rate = _message(
        "RateLimitStrategy",
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("metric_type", 2, F.TYPE_ENUM, OPT, ft + "RateLimitStrategy.MetricType"),
        ("limit_mode", 3, F.TYPE_ENUM, OPT, ft + "RateLimitStrategy.LimitMode"),
        ("threshold", 4, F.TYPE_INT64, OPT, ""),
        ("stat_duration", 5, F.TYPE_INT32, OPT, ""),
        ("stat_duration_time_unit", 6, F.TYPE_ENUM, OPT, unit),
    )
    rate.enum_type.extend(
        [
            _enum("MetricType", "TYPE_UNKNOWN", "TYPE_REQUEST_AMOUNT"),
            _enum("LimitMode", "MODE_UNKNOWN", "MODE_LOCAL", "MODE_GLOBAL"),
        ]
    )
    breaker = _message(
        "CircuitBreakerStrategy",
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("strategy", 2, F.TYPE_ENUM, OPT, ft + "CircuitBreakerStrategy.Strategy"),
        ("trigger_ratio", 3, F.TYPE_DOUBLE, OPT, ""),
        ("stat_duration", 4, F.TYPE_INT64, OPT, ""),
        ("stat_duration_time_unit", 5, F.TYPE_ENUM, OPT, unit),
        ("recovery_timeout", 6, F.TYPE_INT32, OPT, ""),
        ("recovery_timeout_time_unit", 7, F.TYPE_ENUM, OPT, unit),
        ("min_request_amount", 8, F.TYPE_INT32, OPT, ""),
        ("slow_condition", 9, F.TYPE_MESSAGE, OPT, ft + "CircuitBreakerStrategy.CircuitBreakerSlowCondition"),
        (
            "error_condition",
            10,
            F.TYPE_MESSAGE,
            OPT,
            ft + "CircuitBreakerStrategy.CircuitBreakerErrorCondition",
        ),
    )
    breaker.enum_type.append(
        _enum("Strategy", "STRATEGY_UNKNOWN", "STRATEGY_SLOW_REQUEST_RATIO", "STRATEGY_ERROR_REQUEST_RATIO")
    )
    breaker.nested_type.extend(
        [
            _message("CircuitBreakerSlowCondition", ("max_allowed_rt_millis", 1, F.TYPE_INT32, OPT, "")),
            _message("CircuitBreakerErrorCondition"),
        ]
    )
    rule = _message(
        "FaultToleranceRule",
        ("targets", 1, F.TYPE_MESSAGE, REP, ft + "FaultToleranceRule.FaultToleranceRuleTargetRef"),
        ("strategies", 2, F.TYPE_MESSAGE, REP, ft + "FaultToleranceRule.FaultToleranceStrategyRef"),
        ("action", 3, F.TYPE_MESSAGE, OPT, ft + "FaultToleranceRule.FaultToleranceActionRef"),
    )
    rule.nested_type.extend(
        [
            _message("FaultToleranceRuleTargetRef", ("target_resource_name", 1, F.TYPE_STRING, OPT, "")),
            _message(
                "FaultToleranceStrategyRef",
                ("name", 1, F.TYPE_STRING, OPT, ""),
                ("kind", 2, F.TYPE_STRING, OPT, ""),
            ),
            _message(
                "FaultToleranceActionRef",
                ("name", 1, F.TYPE_STRING, OPT, ""),
                ("kind", 2, F.TYPE_STRING, OPT, ""),
            ),
        ]
    )
    fault.message_type.extend([rule, rate, breaker])
    pool.Add(fault)
    return pool


POOL = _independent_pool()


def cls(full_name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


SubscribeRequest = cls("io.opensergo.proto.transport.v1.SubscribeRequest")
SubscribeResponse = cls("io.opensergo.proto.transport.v1.SubscribeResponse")
RateLimitStrategy = cls("io.opensergo.proto.fault_tolerance.v1.RateLimitStrategy")
CircuitBreakerStrategy = cls("io.opensergo.proto.fault_tolerance.v1.CircuitBreakerStrategy")
FaultToleranceRule = cls("io.opensergo.proto.fault_tolerance.v1.FaultToleranceRule")

SUBSCRIBE_PATH = "/io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService/SubscribeConfig"
FT = "fault-tolerance.opensergo.io/v1alpha1"

RULES = [
    {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": "rate-limit-foo", "labels": {"app": "foo-app"}},
        "spec": {
            "metricType": "RequestAmount",
            "limitMode": "Local",
            "threshold": 10,
            "statDurationSeconds": 1,
        },
    },
    {
        "apiVersion": FT,
        "kind": "CircuitBreakerStrategy",
        "metadata": {"name": "cb-foo", "labels": {"app": "foo-app"}},
        "spec": {
            "strategy": "SlowRequestRatio",
            "triggerRatio": "60%",
            "statDuration": "30s",
            "recoveryTimeout": "5s",
            "minRequestAmount": 5,
            "slowConditions": {"maxAllowedRt": "500ms"},
        },
    },
    {
        "apiVersion": FT,
        "kind": "FaultToleranceRule",
        "metadata": {"name": "my-rule", "labels": {"app": "foo-app"}},
        "spec": {
            "targets": [{"targetResourceName": "GET:/foo"}],
            "strategies": [{"name": "rate-limit-foo", "kind": "RateLimitStrategy"}],
        },
    },
]


def _apply(cp: ControlPlaneProcess, body: dict[str, Any]) -> None:
    response = put_object(cp, body)
    assert response.status_code in (200, 201), response.text


def _subscribe_once(cp: ControlPlaneProcess, kind: str) -> Any:
    with grpc.insecure_channel(cp.grpc_address) as channel:
        call = channel.stream_stream(
            SUBSCRIBE_PATH,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=SubscribeResponse.FromString,
        )
        # Exactly what the Go SDK sends: no identifier, no request_id.
        request = SubscribeRequest()
        request.target.namespace = "default"
        request.target.app = "foo-app"
        request.target.kinds.append(f"{FT}/{kind}")
        responses = call(iter([request]), timeout=10)
        return next(responses)


def test_pushes_decode_with_independent_descriptors(control_plane: ControlPlaneProcess) -> None:
    for body in RULES:
        _apply(control_plane, body)

    push = _subscribe_once(control_plane, "RateLimitStrategy")
    assert push.ack == ""
    assert (push.namespace, push.app, push.kind) == ("default", "foo-app", f"{FT}/RateLimitStrategy")
    assert push.status.code == 1
    assert push.dataWithVersion.version >= 1
    assert push.control_plane.identifier.startswith("osg-")
    [payload] = push.dataWithVersion.data
    assert payload.type_url == "type.googleapis.com/io.opensergo.proto.fault_tolerance.v1.RateLimitStrategy"
    rate = RateLimitStrategy.FromString(payload.value)
    assert rate.name == "rate-limit-foo"
    assert rate.threshold == 10
    assert rate.metric_type == 1  # TYPE_REQUEST_AMOUNT (upstream CP sends 0)
    assert rate.limit_mode == 1  # MODE_LOCAL (upstream CP sends 0)
    assert rate.stat_duration == 1
    assert rate.stat_duration_time_unit == 2  # SECOND (upstream CP leaves UNKNOWN)

    push = _subscribe_once(control_plane, "CircuitBreakerStrategy")
    [payload] = push.dataWithVersion.data
    assert (
        payload.type_url == "type.googleapis.com/io.opensergo.proto.fault_tolerance.v1.CircuitBreakerStrategy"
    )
    cb = CircuitBreakerStrategy.FromString(payload.value)
    assert cb.name == "cb-foo"
    assert cb.strategy == 1
    assert cb.trigger_ratio == pytest.approx(0.6)
    assert (cb.stat_duration, cb.stat_duration_time_unit) == (30_000, 1)  # real ms + MILLISECOND
    assert (cb.recovery_timeout, cb.recovery_timeout_time_unit) == (5_000, 1)
    assert cb.min_request_amount == 5
    assert cb.slow_condition.max_allowed_rt_millis == 500

    push = _subscribe_once(control_plane, "FaultToleranceRule")
    [payload] = push.dataWithVersion.data
    assert payload.type_url == "type.googleapis.com/io.opensergo.proto.fault_tolerance.v1.FaultToleranceRule"
    rule = FaultToleranceRule.FromString(payload.value)
    assert [t.target_resource_name for t in rule.targets] == ["GET:/foo"]
    assert [(s.name, s.kind) for s in rule.strategies] == [("rate-limit-foo", "RateLimitStrategy")]


def test_empty_group_is_pushed_and_invalid_request_is_nacked(control_plane: ControlPlaneProcess) -> None:
    with grpc.insecure_channel(control_plane.grpc_address) as channel:
        call = channel.stream_stream(
            SUBSCRIBE_PATH,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=SubscribeResponse.FromString,
        )
        bad = SubscribeRequest(request_id="7")  # no target
        good = SubscribeRequest(request_id="8")
        good.target.namespace = "default"
        good.target.app = "nobody"
        good.target.kinds.append(f"{FT}/RateLimitStrategy")
        responses = call(iter([bad, good]), timeout=10)
        nack = next(responses)
        assert (nack.ack, nack.status.code, nack.response_id) == ("NACK", 4002, "7")
        push = next(responses)  # the stream survived the bad request
        assert push.ack == "" and push.response_id == "8"
        assert push.HasField("dataWithVersion")
        assert list(push.dataWithVersion.data) == []
