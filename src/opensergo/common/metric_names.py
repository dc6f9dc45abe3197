"""Metric names shared by the SDK (which emits these OpenTelemetry instruments) and the control
plane (which receives them over OTLP and charts them). Any OTel pipeline may carry them.

Every instrument is keyed by the attribute :data:`RESOURCE` (``GET:/foo``, ``/pkg.Svc/Method``).
The app and namespace come from the OTel resource: ``service.name`` and ``service.namespace``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALL",
    "BLOCKED",
    "BLOCK_EVENT",
    "BREAKER_STATE",
    "BREAKER_STATES",
    "CACHE",
    "CACHE_HOT",
    "CACHE_KEY",
    "CONCURRENCY",
    "DURATION",
    "ERRORS",
    "FRAMEWORK",
    "HOT_KEYS",
    "PASSED",
    "RESOURCE",
    "RT_BOUNDARIES_MS",
    "RULE",
    "SDK_LANGUAGE",
    "SERVICE_INSTANCE_ID",
    "SERVICE_NAME",
    "SERVICE_NAMESPACE",
    "STRATEGY",
    "STRATEGY_KIND",
]

PASSED: Final = "opensergo.requests.passed"
"""Counter: requests admitted by every fault-tolerance check (attribute: resource)."""
BLOCKED: Final = "opensergo.requests.blocked"
"""Counter: requests refused (attributes: resource, rule, strategy, and strategy kind when known)."""
ERRORS: Final = "opensergo.requests.errors"
"""Counter: admitted requests that ended with an error that counts for circuit breakers."""
DURATION: Final = "opensergo.requests.duration"
"""Histogram, milliseconds: response time of admitted requests (its count is the completions)."""
CONCURRENCY: Final = "opensergo.requests.concurrency"
"""Gauge: requests in flight (tracked while a concurrency or BBR rule applies to the resource)."""
BREAKER_STATE: Final = "opensergo.circuit_breaker.state"
"""Gauge: 0 closed, 1 open, 2 half-open (attributes: resource, strategy)."""

HOT_KEYS: Final = "opensergo.cache.hot_keys"
"""Gauge, requests per second: the heaviest keys of a governed cache over its detection window
(attributes: cache, key, hot). Its points are not per resource."""

ALL: Final = (PASSED, BLOCKED, ERRORS, DURATION, CONCURRENCY, BREAKER_STATE, HOT_KEYS)

# Attributes.
RESOURCE: Final = "opensergo.resource"
RULE: Final = "opensergo.rule"
STRATEGY: Final = "opensergo.strategy"
STRATEGY_KIND: Final = "opensergo.strategy.kind"
CACHE: Final = "opensergo.cache"
"""The name a cache is governed under (``opensergo.cache.governed(client, name=...)``)."""
CACHE_KEY: Final = "opensergo.cache.key"
CACHE_HOT: Final = "opensergo.cache.hot"
"""``true`` when the key's rate reached the CachePolicy's hotKey threshold."""
FRAMEWORK: Final = "opensergo.framework"
"""Resource attribute: the web framework the app serves with (fastapi, flask, grpc, ...)."""

SERVICE_NAME: Final = "service.name"
SERVICE_NAMESPACE: Final = "service.namespace"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
SDK_LANGUAGE: Final = "telemetry.sdk.language"

BLOCK_EVENT: Final = "opensergo.block"
"""Name of the span event added to the current span when a request is blocked."""

BREAKER_STATES: Final = ("closed", "open", "half-open")

RT_BOUNDARIES_MS: Final = (
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
    500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 7500.0, 10000.0, 30000.0,
)  # fmt: skip
"""Histogram bucket boundaries (ms) the SDK advises; the control plane stores RT on these."""
