"""OpenSergo custom resources: models, validation, the kind registry, parsing and wire encoding.

Names are loaded on first use: importing one model (``opensergo.spec.faulttolerance``) or the
package does not pay for every domain's models and the wire codecs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opensergo.spec.base import ObjectMeta, Resource, SpecModel
    from opensergo.spec.cache import CachePolicy
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
        HotParamRateLimitStrategy,
        HttpRequestFallbackAction,
        RateLimitStrategy,
        ThrottlingStrategy,
    )
    from opensergo.spec.kinds import (
        KindInfo,
        all_kinds,
        by_api_version_kind,
        by_full_kind,
        by_resource,
        lookup,
    )
    from opensergo.spec.loader import load_paths, parse_documents, parse_object
    from opensergo.spec.traffic import TrafficLane, TrafficRouter, VirtualWorkload
    from opensergo.spec.units import Duration, Ratio

_LAZY: dict[str, str] = {
    "ObjectMeta": "opensergo.spec.base",
    "Resource": "opensergo.spec.base",
    "SpecModel": "opensergo.spec.base",
    "CachePolicy": "opensergo.spec.cache",
    "NATIVE_TYPE_URL": "opensergo.spec.codec",
    "decode": "opensergo.spec.codec",
    "encode_native": "opensergo.spec.codec",
    "encode_upstream": "opensergo.spec.codec",
    "DatabaseDiscovery": "opensergo.spec.database",
    "DatabaseEndpoint": "opensergo.spec.database",
    "DistributedTransaction": "opensergo.spec.database",
    "Encryption": "opensergo.spec.database",
    "ReadWriteSplitting": "opensergo.spec.database",
    "Shadow": "opensergo.spec.database",
    "Sharding": "opensergo.spec.database",
    "VirtualDatabase": "opensergo.spec.database",
    "dangling_references": "opensergo.spec.database",
    "ServiceInstance": "opensergo.spec.discovery",
    "SpecError": "opensergo.spec.errors",
    "SpecErrors": "opensergo.spec.errors",
    "AdaptiveOverloadProtectionStrategy": "opensergo.spec.faulttolerance",
    "CircuitBreakerStrategy": "opensergo.spec.faulttolerance",
    "ConcurrencyLimitStrategy": "opensergo.spec.faulttolerance",
    "FaultToleranceRule": "opensergo.spec.faulttolerance",
    "HotParamRateLimitStrategy": "opensergo.spec.faulttolerance",
    "HttpRequestFallbackAction": "opensergo.spec.faulttolerance",
    "RateLimitStrategy": "opensergo.spec.faulttolerance",
    "ThrottlingStrategy": "opensergo.spec.faulttolerance",
    "KindInfo": "opensergo.spec.kinds",
    "all_kinds": "opensergo.spec.kinds",
    "by_api_version_kind": "opensergo.spec.kinds",
    "by_full_kind": "opensergo.spec.kinds",
    "by_resource": "opensergo.spec.kinds",
    "lookup": "opensergo.spec.kinds",
    "load_paths": "opensergo.spec.loader",
    "parse_documents": "opensergo.spec.loader",
    "parse_object": "opensergo.spec.loader",
    "TrafficLane": "opensergo.spec.traffic",
    "TrafficRouter": "opensergo.spec.traffic",
    "VirtualWorkload": "opensergo.spec.traffic",
    "Duration": "opensergo.spec.units",
    "Ratio": "opensergo.spec.units",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "NATIVE_TYPE_URL",
    "AdaptiveOverloadProtectionStrategy",
    "CachePolicy",
    "CircuitBreakerStrategy",
    "ConcurrencyLimitStrategy",
    "DatabaseDiscovery",
    "DatabaseEndpoint",
    "DistributedTransaction",
    "Duration",
    "Encryption",
    "FaultToleranceRule",
    "HotParamRateLimitStrategy",
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
