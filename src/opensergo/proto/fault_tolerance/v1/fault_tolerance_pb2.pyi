from opensergo.proto.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaultToleranceRule(_message.Message):
    __slots__ = ("targets", "strategies", "action")
    class FaultToleranceRuleTargetRef(_message.Message):
        __slots__ = ("target_resource_name",)
        TARGET_RESOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
        target_resource_name: str
        def __init__(self, target_resource_name: _Optional[str] = ...) -> None: ...
    class FaultToleranceStrategyRef(_message.Message):
        __slots__ = ("name", "kind")
        NAME_FIELD_NUMBER: _ClassVar[int]
        KIND_FIELD_NUMBER: _ClassVar[int]
        name: str
        kind: str
        def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...
    class FaultToleranceActionRef(_message.Message):
        __slots__ = ("name", "kind")
        NAME_FIELD_NUMBER: _ClassVar[int]
        KIND_FIELD_NUMBER: _ClassVar[int]
        name: str
        kind: str
        def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[FaultToleranceRule.FaultToleranceRuleTargetRef]
    strategies: _containers.RepeatedCompositeFieldContainer[FaultToleranceRule.FaultToleranceStrategyRef]
    action: FaultToleranceRule.FaultToleranceActionRef
    def __init__(self, targets: _Optional[_Iterable[_Union[FaultToleranceRule.FaultToleranceRuleTargetRef, _Mapping]]] = ..., strategies: _Optional[_Iterable[_Union[FaultToleranceRule.FaultToleranceStrategyRef, _Mapping]]] = ..., action: _Optional[_Union[FaultToleranceRule.FaultToleranceActionRef, _Mapping]] = ...) -> None: ...

class RateLimitStrategy(_message.Message):
    __slots__ = ("name", "metric_type", "limit_mode", "threshold", "stat_duration", "stat_duration_time_unit")
    class MetricType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNKNOWN: _ClassVar[RateLimitStrategy.MetricType]
        TYPE_REQUEST_AMOUNT: _ClassVar[RateLimitStrategy.MetricType]
    TYPE_UNKNOWN: RateLimitStrategy.MetricType
    TYPE_REQUEST_AMOUNT: RateLimitStrategy.MetricType
    class LimitMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNKNOWN: _ClassVar[RateLimitStrategy.LimitMode]
        MODE_LOCAL: _ClassVar[RateLimitStrategy.LimitMode]
        MODE_GLOBAL: _ClassVar[RateLimitStrategy.LimitMode]
    MODE_UNKNOWN: RateLimitStrategy.LimitMode
    MODE_LOCAL: RateLimitStrategy.LimitMode
    MODE_GLOBAL: RateLimitStrategy.LimitMode
    NAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MODE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STAT_DURATION_FIELD_NUMBER: _ClassVar[int]
    STAT_DURATION_TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    metric_type: RateLimitStrategy.MetricType
    limit_mode: RateLimitStrategy.LimitMode
    threshold: int
    stat_duration: int
    stat_duration_time_unit: _common_pb2.TimeUnit
    def __init__(self, name: _Optional[str] = ..., metric_type: _Optional[_Union[RateLimitStrategy.MetricType, str]] = ..., limit_mode: _Optional[_Union[RateLimitStrategy.LimitMode, str]] = ..., threshold: _Optional[int] = ..., stat_duration: _Optional[int] = ..., stat_duration_time_unit: _Optional[_Union[_common_pb2.TimeUnit, str]] = ...) -> None: ...

class ThrottlingStrategy(_message.Message):
    __slots__ = ("name", "min_interval_millis_of_requests", "queue_timeout_millis")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_INTERVAL_MILLIS_OF_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIMEOUT_MILLIS_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_interval_millis_of_requests: int
    queue_timeout_millis: int
    def __init__(self, name: _Optional[str] = ..., min_interval_millis_of_requests: _Optional[int] = ..., queue_timeout_millis: _Optional[int] = ...) -> None: ...

class ConcurrencyLimitStrategy(_message.Message):
    __slots__ = ("name", "limit_mode", "max_concurrency")
    class LimitMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNKNOWN: _ClassVar[ConcurrencyLimitStrategy.LimitMode]
        MODE_LOCAL: _ClassVar[ConcurrencyLimitStrategy.LimitMode]
        MODE_GLOBAL: _ClassVar[ConcurrencyLimitStrategy.LimitMode]
    MODE_UNKNOWN: ConcurrencyLimitStrategy.LimitMode
    MODE_LOCAL: ConcurrencyLimitStrategy.LimitMode
    MODE_GLOBAL: ConcurrencyLimitStrategy.LimitMode
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit_mode: ConcurrencyLimitStrategy.LimitMode
    max_concurrency: int
    def __init__(self, name: _Optional[str] = ..., limit_mode: _Optional[_Union[ConcurrencyLimitStrategy.LimitMode, str]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class CircuitBreakerStrategy(_message.Message):
    __slots__ = ("name", "strategy", "trigger_ratio", "stat_duration", "stat_duration_time_unit", "recovery_timeout", "recovery_timeout_time_unit", "min_request_amount", "slow_condition", "error_condition")
    class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STRATEGY_UNKNOWN: _ClassVar[CircuitBreakerStrategy.Strategy]
        STRATEGY_SLOW_REQUEST_RATIO: _ClassVar[CircuitBreakerStrategy.Strategy]
        STRATEGY_ERROR_REQUEST_RATIO: _ClassVar[CircuitBreakerStrategy.Strategy]
    STRATEGY_UNKNOWN: CircuitBreakerStrategy.Strategy
    STRATEGY_SLOW_REQUEST_RATIO: CircuitBreakerStrategy.Strategy
    STRATEGY_ERROR_REQUEST_RATIO: CircuitBreakerStrategy.Strategy
    class CircuitBreakerSlowCondition(_message.Message):
        __slots__ = ("max_allowed_rt_millis",)
        MAX_ALLOWED_RT_MILLIS_FIELD_NUMBER: _ClassVar[int]
        max_allowed_rt_millis: int
        def __init__(self, max_allowed_rt_millis: _Optional[int] = ...) -> None: ...
    class CircuitBreakerErrorCondition(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_RATIO_FIELD_NUMBER: _ClassVar[int]
    STAT_DURATION_FIELD_NUMBER: _ClassVar[int]
    STAT_DURATION_TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_TIMEOUT_TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUEST_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SLOW_CONDITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_CONDITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy: CircuitBreakerStrategy.Strategy
    trigger_ratio: float
    stat_duration: int
    stat_duration_time_unit: _common_pb2.TimeUnit
    recovery_timeout: int
    recovery_timeout_time_unit: _common_pb2.TimeUnit
    min_request_amount: int
    slow_condition: CircuitBreakerStrategy.CircuitBreakerSlowCondition
    error_condition: CircuitBreakerStrategy.CircuitBreakerErrorCondition
    def __init__(self, name: _Optional[str] = ..., strategy: _Optional[_Union[CircuitBreakerStrategy.Strategy, str]] = ..., trigger_ratio: _Optional[float] = ..., stat_duration: _Optional[int] = ..., stat_duration_time_unit: _Optional[_Union[_common_pb2.TimeUnit, str]] = ..., recovery_timeout: _Optional[int] = ..., recovery_timeout_time_unit: _Optional[_Union[_common_pb2.TimeUnit, str]] = ..., min_request_amount: _Optional[int] = ..., slow_condition: _Optional[_Union[CircuitBreakerStrategy.CircuitBreakerSlowCondition, _Mapping]] = ..., error_condition: _Optional[_Union[CircuitBreakerStrategy.CircuitBreakerErrorCondition, _Mapping]] = ...) -> None: ...
