"""The ``fault-tolerance.opensergo.io/v1alpha1`` kinds and their upstream proto form.

Shapes follow the spec documents (zh-Hans fault-tolerance.md, the en sample) and the upstream CRDs,
accepting the union of both where they differ (``statDuration: "1s"`` and
``statDurationSeconds: 1``; a strategy reference without ``kind``; ``fallbackAction`` as a bare
name).

``to_proto()`` deliberately departs from the Go control plane's conversion, whose bugs are listed
in protocol.md §3.4:

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
  instance it may admit the whole total, N times too much, and MODE_UNKNOWN says nothing.
* CircuitBreakerStrategy sets ``slow_condition`` only when ``slowConditions`` is given, and
  ``error_condition`` for ErrorRequestRatio. Upstream always sends a slow condition (-1 when
  absent) and never an error condition.
* FaultToleranceRule sets ``action`` from ``fallbackAction`` and allows any strategy kind;
  upstream drops the action and its CRD allows only two kinds.

``from_proto()`` reads what the Go control plane sends, including its UNKNOWN enums and units:
an UNKNOWN RateLimit duration unit means seconds (upstream copies ``statDurationSeconds``), an
UNKNOWN unit elsewhere means milliseconds, and an UNKNOWN limit mode means Local.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar

from google.protobuf.message import Message
from pydantic import Field, field_validator, model_validator

from opensergo.proto.common.v1 import common_pb2
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft_pb2
from opensergo.spec.base import Resource, SpecModel
from opensergo.spec.errors import FieldError, SpecError
from opensergo.spec.units import Duration, Ratio, time_unit_to_millis

GROUP = "fault-tolerance.opensergo.io"
VERSION = "v1alpha1"

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# RFC 9110 token characters for header names; values must not smuggle in CR/LF.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class CaseInsensitiveEnum(StrEnum):
    """A string enum that also accepts its values in any letter case ("local" -> Local)."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


class MetricType(CaseInsensitiveEnum):
    REQUEST_AMOUNT = "RequestAmount"


class LimitMode(CaseInsensitiveEnum):
    LOCAL = "Local"
    GLOBAL = "Global"
    # The threshold is a cluster total, enforced on each instance as total / instances.
    GLOBAL_TO_LOCAL = "GlobalToLocal"


class ConcurrencyLimitMode(CaseInsensitiveEnum):
    LOCAL = "Local"
    GLOBAL = "Global"


class BreakerStrategy(CaseInsensitiveEnum):
    SLOW_REQUEST_RATIO = "SlowRequestRatio"
    ERROR_REQUEST_RATIO = "ErrorRequestRatio"


class AdaptiveMetricType(CaseInsensitiveEnum):
    CPU_PERCENTAGE = "CpuPercentage"
    SYSTEM_LOAD = "SystemLoad"


class AdaptiveStrategy(CaseInsensitiveEnum):
    BBR = "BBR"
    NONE = "NONE"


class FallbackBehavior(CaseInsensitiveEnum):
    RETURN_PROVIDED_RESPONSE = "ReturnProvidedResponse"


class StrategyKind(CaseInsensitiveEnum):
    """Kinds a FaultToleranceRule may reference as strategies."""

    RATE_LIMIT = "RateLimitStrategy"
    THROTTLING = "ThrottlingStrategy"
    CONCURRENCY_LIMIT = "ConcurrencyLimitStrategy"
    CIRCUIT_BREAKER = "CircuitBreakerStrategy"
    ADAPTIVE_OVERLOAD_PROTECTION = "AdaptiveOverloadProtectionStrategy"


class ActionKind(CaseInsensitiveEnum):
    """Kinds a FaultToleranceRule may reference as its fallback action."""

    HTTP_REQUEST_FALLBACK = "HttpRequestFallbackAction"


def _positive(value: Duration) -> Duration:
    if value.millis <= 0:
        raise ValueError(f"must be a positive duration, got {value.text!r}")
    return value


def _int32_millis(value: Duration) -> Duration:
    # The proto carries these as int32 milliseconds (about 24.8 days at most).
    if value.millis > INT32_MAX:
        raise ValueError(f"{value.text!r} is too long: at most {INT32_MAX} ms")
    return value


def _unit_interval(value: Ratio) -> Ratio:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a ratio between 0 and 1 (0% to 100%), got {value._serialize()!r}")
    return value


class _FaultToleranceResource(Resource):
    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = VERSION


_M = TypeVar("_M", bound=Message)


def _expect(message: Message, cls: type[_M]) -> _M:
    if not isinstance(message, cls):
        raise SpecError(f"expected {cls.DESCRIPTOR.full_name}, got {message.DESCRIPTOR.full_name}")
    return message


# --- RateLimitStrategy ------------------------------------------------------------------------


class RateLimitStrategySpec(SpecModel):
    """At most ``threshold`` requests per ``statDuration`` window."""

    metricType: MetricType = MetricType.REQUEST_AMOUNT
    limitMode: LimitMode = LimitMode.LOCAL
    threshold: int = Field(ge=0, le=INT64_MAX)
    # The CRD spells the window as whole seconds, the spec documents as a duration string.
    statDurationSeconds: int | None = Field(default=None, ge=1, le=INT32_MAX)
    statDuration: Duration | None = None

    @field_validator("statDuration")
    @classmethod
    def _check_duration(cls, value: Duration | None) -> Duration | None:
        return None if value is None else _positive(value)

    @model_validator(mode="after")
    def _one_duration(self) -> Self:
        if self.statDuration is not None and self.statDurationSeconds is not None:
            raise FieldError(("statDuration",), "set either statDuration or statDurationSeconds, not both")
        if self.statDuration is not None:
            millis = self.statDuration.millis
            if millis % 1000 and millis > INT32_MAX:
                raise FieldError(("statDuration",), "too long for a window that is not whole seconds")
        return self

    @property
    def stat_duration_millis(self) -> int:
        """The statistics window in milliseconds (1 s when neither field is set)."""
        if self.statDuration is not None:
            return self.statDuration.millis
        return (self.statDurationSeconds or 1) * 1000


_RATE_LIMIT_MODES = {
    LimitMode.LOCAL: ft_pb2.RateLimitStrategy.MODE_LOCAL,
    LimitMode.GLOBAL: ft_pb2.RateLimitStrategy.MODE_GLOBAL,
    LimitMode.GLOBAL_TO_LOCAL: ft_pb2.RateLimitStrategy.MODE_GLOBAL,  # see the module docstring
}


class RateLimitStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "RateLimitStrategy"
    PLURAL: ClassVar[str] = "ratelimitstrategies"

    spec: RateLimitStrategySpec

    def to_proto(self) -> ft_pb2.RateLimitStrategy:
        millis = self.spec.stat_duration_millis
        if millis % 1000 == 0:
            duration, unit = millis // 1000, common_pb2.SECOND
        else:
            duration, unit = millis, common_pb2.MILLISECOND
        return ft_pb2.RateLimitStrategy(
            name=self.metadata.name,
            metric_type=ft_pb2.RateLimitStrategy.TYPE_REQUEST_AMOUNT,
            limit_mode=_RATE_LIMIT_MODES[self.spec.limitMode],
            threshold=self.spec.threshold,
            stat_duration=duration,
            stat_duration_time_unit=unit,
        )

    @classmethod
    def from_proto(cls, message: Message, *, name: str, namespace: str, app: str) -> Self:
        message = _expect(message, ft_pb2.RateLimitStrategy)
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
        return cls._from_upstream(name=message.name or name, namespace=namespace, app=app, spec=spec)


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


# --- ThrottlingStrategy -----------------------------------------------------------------------


class ThrottlingStrategySpec(SpecModel):
    """Pace requests ``minIntervalOfRequests`` apart, queueing each for at most ``queueTimeout``."""

    minIntervalOfRequests: Duration
    queueTimeout: Duration

    @field_validator("queueTimeout")
    @classmethod
    def _check_timeout(cls, value: Duration) -> Duration:
        return _positive(value)


class ThrottlingStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "ThrottlingStrategy"
    PLURAL: ClassVar[str] = "throttlingstrategies"

    spec: ThrottlingStrategySpec

    def to_proto(self) -> ft_pb2.ThrottlingStrategy:
        return ft_pb2.ThrottlingStrategy(
            name=self.metadata.name,
            min_interval_millis_of_requests=self.spec.minIntervalOfRequests.millis,
            queue_timeout_millis=self.spec.queueTimeout.millis,
        )

    @classmethod
    def from_proto(cls, message: Message, *, name: str, namespace: str, app: str) -> Self:
        message = _expect(message, ft_pb2.ThrottlingStrategy)
        ms = common_pb2.MILLISECOND
        spec = {
            "minIntervalOfRequests": _duration_from(
                message.min_interval_millis_of_requests, ms, unknown_as=ms
            ),
            "queueTimeout": _duration_from(message.queue_timeout_millis, ms, unknown_as=ms),
        }
        return cls._from_upstream(name=message.name or name, namespace=namespace, app=app, spec=spec)


# --- ConcurrencyLimitStrategy -----------------------------------------------------------------


class ConcurrencyLimitStrategySpec(SpecModel):
    """At most ``maxConcurrency`` requests in flight."""

    maxConcurrency: int = Field(ge=0, le=INT64_MAX)
    limitMode: ConcurrencyLimitMode = ConcurrencyLimitMode.LOCAL


class ConcurrencyLimitStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "ConcurrencyLimitStrategy"
    PLURAL: ClassVar[str] = "concurrencylimitstrategies"

    spec: ConcurrencyLimitStrategySpec

    def to_proto(self) -> ft_pb2.ConcurrencyLimitStrategy:
        mode = {
            ConcurrencyLimitMode.LOCAL: ft_pb2.ConcurrencyLimitStrategy.MODE_LOCAL,
            ConcurrencyLimitMode.GLOBAL: ft_pb2.ConcurrencyLimitStrategy.MODE_GLOBAL,
        }[self.spec.limitMode]
        return ft_pb2.ConcurrencyLimitStrategy(
            name=self.metadata.name, limit_mode=mode, max_concurrency=self.spec.maxConcurrency
        )

    @classmethod
    def from_proto(cls, message: Message, *, name: str, namespace: str, app: str) -> Self:
        message = _expect(message, ft_pb2.ConcurrencyLimitStrategy)
        mode = {
            ft_pb2.ConcurrencyLimitStrategy.MODE_GLOBAL: ConcurrencyLimitMode.GLOBAL,
        }.get(message.limit_mode, ConcurrencyLimitMode.LOCAL)
        spec = {"maxConcurrency": message.max_concurrency, "limitMode": mode}
        return cls._from_upstream(name=message.name or name, namespace=namespace, app=app, spec=spec)


# --- CircuitBreakerStrategy -------------------------------------------------------------------


class SlowConditions(SpecModel):
    maxAllowedRt: Duration  # a request slower than this counts as slow

    @field_validator("maxAllowedRt")
    @classmethod
    def _check_rt(cls, value: Duration) -> Duration:
        return _int32_millis(_positive(value))


class ErrorConditions(SpecModel):
    # The CRD names the field ``representation``, the spec document ``errorType``; neither is
    # interpreted yet (upstream drops the whole object).
    representation: str | None = None
    errorType: str | None = None


class CircuitBreakerStrategySpec(SpecModel):
    """Open the circuit when the slow/error ratio over ``statDuration`` reaches ``triggerRatio``."""

    strategy: BreakerStrategy
    triggerRatio: Ratio
    statDuration: Duration
    recoveryTimeout: Duration
    minRequestAmount: int = Field(ge=1, le=INT32_MAX)
    slowConditions: SlowConditions | None = None
    errorConditions: ErrorConditions | None = None

    @field_validator("triggerRatio")
    @classmethod
    def _check_ratio(cls, value: Ratio) -> Ratio:
        return _unit_interval(value)

    @field_validator("statDuration")
    @classmethod
    def _check_stat(cls, value: Duration) -> Duration:
        return _positive(value)

    @field_validator("recoveryTimeout")
    @classmethod
    def _check_recovery(cls, value: Duration) -> Duration:
        return _int32_millis(_positive(value))

    @model_validator(mode="after")
    def _conditions(self) -> Self:
        if self.strategy is BreakerStrategy.SLOW_REQUEST_RATIO and self.slowConditions is None:
            raise FieldError(
                ("slowConditions",),
                "required when strategy is SlowRequestRatio (e.g. slowConditions: {maxAllowedRt: '500ms'})",
            )
        return self


class CircuitBreakerStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "CircuitBreakerStrategy"
    PLURAL: ClassVar[str] = "circuitbreakerstrategies"

    spec: CircuitBreakerStrategySpec

    def to_proto(self) -> ft_pb2.CircuitBreakerStrategy:
        spec = self.spec
        pb = ft_pb2.CircuitBreakerStrategy
        msg = pb(
            name=self.metadata.name,
            strategy={
                BreakerStrategy.SLOW_REQUEST_RATIO: pb.STRATEGY_SLOW_REQUEST_RATIO,
                BreakerStrategy.ERROR_REQUEST_RATIO: pb.STRATEGY_ERROR_REQUEST_RATIO,
            }[spec.strategy],
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

    @classmethod
    def from_proto(cls, message: Message, *, name: str, namespace: str, app: str) -> Self:
        message = _expect(message, ft_pb2.CircuitBreakerStrategy)
        pb = ft_pb2.CircuitBreakerStrategy
        strategy = {
            pb.STRATEGY_SLOW_REQUEST_RATIO: BreakerStrategy.SLOW_REQUEST_RATIO,
            pb.STRATEGY_ERROR_REQUEST_RATIO: BreakerStrategy.ERROR_REQUEST_RATIO,
        }.get(message.strategy)
        if strategy is None:
            raise SpecError(f"circuit breaker {message.name!r} has an unknown strategy ({message.strategy})")
        ms = common_pb2.MILLISECOND
        spec: dict[str, Any] = {
            "strategy": strategy,
            "triggerRatio": Ratio(message.trigger_ratio),
            "statDuration": _duration_from(
                message.stat_duration, message.stat_duration_time_unit, unknown_as=ms
            ),
            "recoveryTimeout": _duration_from(
                message.recovery_timeout, message.recovery_timeout_time_unit, unknown_as=ms
            ),
            "minRequestAmount": message.min_request_amount,
        }
        # Upstream always sends a slow condition, with -1 when there is none.
        if message.HasField("slow_condition") and message.slow_condition.max_allowed_rt_millis > 0:
            rt = message.slow_condition.max_allowed_rt_millis
            spec["slowConditions"] = {"maxAllowedRt": Duration.from_millis(rt)}
        return cls._from_upstream(name=message.name or name, namespace=namespace, app=app, spec=spec)


# --- AdaptiveOverloadProtectionStrategy -------------------------------------------------------


class AdaptiveOverloadProtectionStrategySpec(SpecModel):
    """Instance-wide protection once a system metric passes ``triggerThreshold``. No upstream proto."""

    metricType: AdaptiveMetricType
    # '70%' / 0.7 for CpuPercentage; a plain number (load average) for SystemLoad.
    triggerThreshold: Ratio
    adaptiveStrategy: AdaptiveStrategy = AdaptiveStrategy.NONE

    @model_validator(mode="after")
    def _threshold_range(self) -> Self:
        if self.triggerThreshold < 0:
            raise FieldError(("triggerThreshold",), "must be >= 0")
        if self.metricType is AdaptiveMetricType.CPU_PERCENTAGE and self.triggerThreshold > 1:
            raise FieldError(
                ("triggerThreshold",),
                "CpuPercentage takes a ratio between 0 and 1 (e.g. '70%' or 0.7), "
                f"got {self.triggerThreshold._serialize()!r}",
            )
        return self


class AdaptiveOverloadProtectionStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "AdaptiveOverloadProtectionStrategy"
    PLURAL: ClassVar[str] = "adaptiveoverloadprotectionstrategies"

    spec: AdaptiveOverloadProtectionStrategySpec


# --- HttpRequestFallbackAction ----------------------------------------------------------------


class HeaderValue(SpecModel):
    key: str
    value: str

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError(f"invalid HTTP header name {value!r}")
        return value

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: str) -> str:
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError("header values must not contain CR, LF or NUL")
        return value


class BehaviorDesc(SpecModel):
    responseStatusCode: int = Field(ge=100, le=599)
    responseContentBody: str = ""
    responseAdditionalHeaders: list[HeaderValue] = Field(default_factory=list)


class HttpRequestFallbackActionSpec(SpecModel):
    """What a blocked HTTP request gets back. No upstream proto."""

    behavior: FallbackBehavior = FallbackBehavior.RETURN_PROVIDED_RESPONSE
    behaviorDesc: BehaviorDesc


class HttpRequestFallbackAction(_FaultToleranceResource):
    KIND: ClassVar[str] = "HttpRequestFallbackAction"
    PLURAL: ClassVar[str] = "httprequestfallbackactions"

    spec: HttpRequestFallbackActionSpec


# --- FaultToleranceRule -----------------------------------------------------------------------


class TargetRef(SpecModel):
    targetResourceName: str = Field(min_length=1, max_length=1024)


class StrategyRef(SpecModel):
    """A strategy by metadata.name; ``kind`` may be omitted (the en spec sample does)."""

    name: str = Field(min_length=1)
    kind: StrategyKind | None = None


class ActionRef(SpecModel):
    name: str = Field(min_length=1)
    kind: ActionKind | None = None


class FaultToleranceRuleSpec(SpecModel):
    """Apply ``strategies`` to requests for ``targets``; blocked ones get ``fallbackAction``."""

    selector: dict[str, str] | None = None
    targets: list[TargetRef] = Field(min_length=1)
    strategies: list[StrategyRef] = Field(min_length=1)
    fallbackAction: ActionRef | None = None

    @field_validator("fallbackAction", mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        # The spec sample writes ``fallbackAction: fallback-foo``.
        return {"name": value} if isinstance(value, str) else value


class FaultToleranceRule(_FaultToleranceResource):
    KIND: ClassVar[str] = "FaultToleranceRule"
    PLURAL: ClassVar[str] = "faulttolerancerules"

    spec: FaultToleranceRuleSpec

    def to_proto(self) -> ft_pb2.FaultToleranceRule:
        pb = ft_pb2.FaultToleranceRule
        msg = pb(
            targets=[
                pb.FaultToleranceRuleTargetRef(target_resource_name=t.targetResourceName)
                for t in self.spec.targets
            ],
            strategies=[
                pb.FaultToleranceStrategyRef(name=s.name, kind=s.kind.value if s.kind else "")
                for s in self.spec.strategies
            ],
        )
        action = self.spec.fallbackAction
        if action is not None:
            # There is one action kind, so a reference without kind can only mean it.
            kind = action.kind or ActionKind.HTTP_REQUEST_FALLBACK
            msg.action.CopyFrom(pb.FaultToleranceActionRef(name=action.name, kind=kind.value))
        return msg

    @classmethod
    def from_proto(cls, message: Message, *, name: str, namespace: str, app: str) -> Self:
        message = _expect(message, ft_pb2.FaultToleranceRule)
        spec: dict[str, Any] = {
            "targets": [{"targetResourceName": t.target_resource_name} for t in message.targets],
            "strategies": [{"name": s.name, "kind": s.kind or None} for s in message.strategies],
        }
        if message.HasField("action") and message.action.name:
            spec["fallbackAction"] = {"name": message.action.name, "kind": message.action.kind or None}
        return cls._from_upstream(name=name, namespace=namespace, app=app, spec=spec)


STRATEGY_KINDS: tuple[type[Resource], ...] = (
    RateLimitStrategy,
    ThrottlingStrategy,
    ConcurrencyLimitStrategy,
    CircuitBreakerStrategy,
    AdaptiveOverloadProtectionStrategy,
)
