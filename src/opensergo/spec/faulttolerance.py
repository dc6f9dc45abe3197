"""The ``fault-tolerance.opensergo.io/v1alpha1`` kinds and their upstream proto form.

Shapes follow the spec documents (zh-Hans fault-tolerance.md, the en sample) and the upstream CRDs,
accepting the union of both where they differ (``statDuration: "1s"`` and
``statDurationSeconds: 1``; a strategy reference without ``kind``; ``fallbackAction`` as a bare
name).

Their upstream wire form (the ``io.opensergo.proto.fault_tolerance.v1`` messages) is built and
read in :mod:`opensergo.spec.upstream.faulttolerance`; AdaptiveOverloadProtectionStrategy and
HttpRequestFallbackAction have none.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from opensergo.spec.base import Resource, SpecModel
from opensergo.spec.errors import FieldError
from opensergo.spec.units import Duration, Ratio

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
    HOT_PARAM_RATE_LIMIT = "HotParamRateLimitStrategy"


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
            # The wire carries int32 seconds, or int32 milliseconds when not whole seconds.
            millis = self.statDuration.millis
            if millis % 1000 and millis > INT32_MAX:
                raise FieldError(("statDuration",), "too long for a window that is not whole seconds")
            if millis // 1000 > INT32_MAX:
                raise FieldError(("statDuration",), f"too long: at most {INT32_MAX} seconds")
        return self

    @property
    def stat_duration_millis(self) -> int:
        """The statistics window in milliseconds (1 s when neither field is set)."""
        if self.statDuration is not None:
            return self.statDuration.millis
        return (self.statDurationSeconds or 1) * 1000


class RateLimitStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "RateLimitStrategy"
    PLURAL: ClassVar[str] = "ratelimitstrategies"

    spec: RateLimitStrategySpec

    def per_instance_threshold(self, instances: int) -> int:
        """The threshold one of ``instances`` enforces on its own: the whole threshold for Local,
        else an equal share rounded down, at least 1 (the SDK engine and the Envoy translation
        both use this, so a sidecar and an SDK instance admit the same)."""
        spec = self.spec
        if spec.limitMode is LimitMode.LOCAL or spec.threshold == 0:
            return spec.threshold
        return max(1, spec.threshold // max(1, instances))


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


# --- ConcurrencyLimitStrategy -----------------------------------------------------------------


class ConcurrencyLimitStrategySpec(SpecModel):
    """At most ``maxConcurrency`` requests in flight."""

    maxConcurrency: int = Field(ge=0, le=INT64_MAX)
    limitMode: ConcurrencyLimitMode = ConcurrencyLimitMode.LOCAL


class ConcurrencyLimitStrategy(_FaultToleranceResource):
    KIND: ClassVar[str] = "ConcurrencyLimitStrategy"
    PLURAL: ClassVar[str] = "concurrencylimitstrategies"

    spec: ConcurrencyLimitStrategySpec


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


# --- HotParamRateLimitStrategy (ours: upstream has no hot-parameter kind) ---------------------


class ParamSource(CaseInsensitiveEnum):
    """Where the parameter of a hot-parameter limit is read from."""

    HEADER = "header"  # an HTTP request header (case-insensitive name)
    QUERY = "query"  # a query-string parameter (the first value)
    PATH = "path"  # a path parameter of the matched route template (``/users/{user_id}``)
    CLIENT_IP = "clientIP"  # the peer address of the connection (HTTP and gRPC)
    GRPC_METADATA = "grpcMetadata"  # a gRPC request metadata key
    ARGUMENT = "argument"  # a named argument of a function decorated with ``@guard``


class HotParamBehavior(CaseInsensitiveEnum):
    REJECT = "Reject"  # a token bucket per value: refuse beyond threshold (+ burst) per duration
    THROTTLING = "Throttling"  # pace each value's requests duration/threshold apart, queueing


_GRPC_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The most values one strategy may track; Sentinel Java caps its computed capacity at 200 000.
MAX_TRACKED_VALUES = 1_000_000
MAX_EXCEPTION_ITEMS = 10_000


class HotParam(SpecModel):
    """The parameter whose values are limited one by one."""

    source: ParamSource
    # The header, query/path parameter, metadata key or argument name; not for clientIP.
    name: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        source, name = self.source, self.name
        if source is ParamSource.CLIENT_IP:
            if name is not None:
                raise FieldError(("name",), "clientIP takes no name (the peer address is used)")
            return self
        if name is None:
            raise FieldError(("name",), f"required for source {source.value} (the {_NAME_OF[source]})")
        if source is ParamSource.HEADER and not _HEADER_NAME.match(name):
            raise FieldError(("name",), f"invalid HTTP header name {name!r}")
        if source is ParamSource.GRPC_METADATA and not _GRPC_KEY.match(name.lower()):
            raise FieldError(("name",), f"invalid gRPC metadata key {name!r} (0-9 a-z _ . -)")
        if source is ParamSource.GRPC_METADATA and name.lower().endswith("-bin"):
            raise FieldError(("name",), f"binary metadata ({name!r}) cannot be a hot parameter")
        if source in (ParamSource.ARGUMENT, ParamSource.PATH) and not _IDENTIFIER.match(name):
            raise FieldError(("name",), f"{name!r} is not a valid {_NAME_OF[source]}")
        return self


_NAME_OF = {
    ParamSource.HEADER: "header name",
    ParamSource.QUERY: "query parameter name",
    ParamSource.PATH: "path parameter name",
    ParamSource.GRPC_METADATA: "metadata key",
    ParamSource.ARGUMENT: "function argument name",
}


class ParamExceptionItem(SpecModel):
    """A value with its own threshold (Sentinel's ``paramFlowItemList``): a VIP with more, a
    known abuser with 0."""

    value: str = Field(max_length=4096)
    threshold: int = Field(ge=0, le=INT64_MAX)

    @field_validator("value", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        # Values are matched as text; a YAML ``value: 42`` means the parameter text "42".
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class HotParamRateLimitStrategySpec(SpecModel):
    """At most ``threshold`` requests per ``statDuration`` for *each value* of ``param``."""

    param: HotParam
    threshold: int = Field(ge=0, le=INT64_MAX)
    # Whole seconds, as Sentinel's durationInSec; written either way, like RateLimitStrategy.
    statDurationSeconds: int | None = Field(default=None, ge=1, le=INT32_MAX)
    statDuration: Duration | None = None
    burst: int = Field(default=0, ge=0, le=INT64_MAX)
    behavior: HotParamBehavior = HotParamBehavior.REJECT
    queueTimeout: Duration | None = None
    exceptionItems: list[ParamExceptionItem] = Field(default_factory=list, max_length=MAX_EXCEPTION_ITEMS)
    maxTrackedValues: int | None = Field(default=None, ge=1, le=MAX_TRACKED_VALUES)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.statDuration is not None:
            if self.statDurationSeconds is not None:
                raise FieldError(
                    ("statDuration",), "set either statDuration or statDurationSeconds, not both"
                )
            millis = self.statDuration.millis
            if millis <= 0 or millis % 1000:
                raise FieldError(
                    ("statDuration",),
                    f"must be a whole number of seconds (e.g. '1s', '1m'), got {self.statDuration.text!r}",
                )
            if millis // 1000 > INT32_MAX:
                raise FieldError(("statDuration",), f"too long: at most {INT32_MAX} seconds")
        throttling = self.behavior is HotParamBehavior.THROTTLING
        if throttling and self.burst:
            raise FieldError(
                ("burst",), "burst applies to behavior Reject only (Throttling paces; it has no bucket)"
            )
        if self.queueTimeout is not None:
            if not throttling:
                raise FieldError(("queueTimeout",), "queueTimeout applies to behavior Throttling only")
            if self.queueTimeout.millis > INT32_MAX:
                raise FieldError(("queueTimeout",), f"too long: at most {INT32_MAX} ms")
        seen: dict[str, int] = {}
        for i, item in enumerate(self.exceptionItems):
            if item.value in seen:
                raise FieldError(
                    ("exceptionItems", i, "value"),
                    f"duplicate value {item.value!r} (also item {seen[item.value]})",
                )
            seen[item.value] = i
        return self

    @property
    def duration_seconds(self) -> int:
        """The window in whole seconds (1 when neither field is set)."""
        if self.statDuration is not None:
            return self.statDuration.millis // 1000
        return self.statDurationSeconds or 1

    @property
    def exceptions(self) -> dict[str, int]:
        return {item.value: item.threshold for item in self.exceptionItems}


class HotParamRateLimitStrategy(_FaultToleranceResource):
    """A limit per parameter value (Sentinel's ParamFlowRule). Not an upstream kind: it travels in
    the native payload (``opensergo.ext.v1.Resource``)."""

    KIND: ClassVar[str] = "HotParamRateLimitStrategy"
    PLURAL: ClassVar[str] = "hotparamratelimitstrategies"

    spec: HotParamRateLimitStrategySpec


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


STRATEGY_KINDS: tuple[type[Resource], ...] = (
    RateLimitStrategy,
    ThrottlingStrategy,
    ConcurrencyLimitStrategy,
    CircuitBreakerStrategy,
    AdaptiveOverloadProtectionStrategy,
    HotParamRateLimitStrategy,
)
