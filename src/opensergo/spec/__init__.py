"""OpenSergo custom resources: models, validation, the kind registry, parsing and wire encoding."""

from opensergo.spec.base import ObjectMeta, Resource, SpecModel
from opensergo.spec.codec import NATIVE_TYPE_URL, decode, encode_native, encode_upstream
from opensergo.spec.database import (
    DatabaseDiscovery,
    DatabaseEndpoint,
    DistributedTransaction,
    Encryption,
    ReadWriteSplitting,
    Shadow,
    Sharding,
    VirtualDatabase,
    dangling_references,
)
from opensergo.spec.discovery import ServiceInstance
from opensergo.spec.errors import SpecError, SpecErrors
from opensergo.spec.faulttolerance import (
    AdaptiveOverloadProtectionStrategy,
    CircuitBreakerStrategy,
    ConcurrencyLimitStrategy,
    FaultToleranceRule,
    HttpRequestFallbackAction,
    RateLimitStrategy,
    ThrottlingStrategy,
)
from opensergo.spec.kinds import KindInfo, all_kinds, by_api_version_kind, by_full_kind, by_resource, lookup
from opensergo.spec.loader import load_paths, parse_documents, parse_object
from opensergo.spec.traffic import TrafficLane, TrafficRouter, VirtualWorkload
from opensergo.spec.units import Duration, Ratio

__all__ = [
    "NATIVE_TYPE_URL",
    "AdaptiveOverloadProtectionStrategy",
    "CircuitBreakerStrategy",
    "ConcurrencyLimitStrategy",
    "DatabaseDiscovery",
    "DatabaseEndpoint",
    "DistributedTransaction",
    "Duration",
    "Encryption",
    "FaultToleranceRule",
    "HttpRequestFallbackAction",
    "KindInfo",
    "ObjectMeta",
    "RateLimitStrategy",
    "Ratio",
    "ReadWriteSplitting",
    "Resource",
    "ServiceInstance",
    "Shadow",
    "Sharding",
    "SpecError",
    "SpecErrors",
    "SpecModel",
    "ThrottlingStrategy",
    "TrafficLane",
    "TrafficRouter",
    "VirtualDatabase",
    "VirtualWorkload",
    "all_kinds",
    "by_api_version_kind",
    "by_full_kind",
    "by_resource",
    "dangling_references",
    "decode",
    "encode_native",
    "encode_upstream",
    "load_paths",
    "lookup",
    "parse_documents",
    "parse_object",
]
