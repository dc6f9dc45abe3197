"""Builders for fault-tolerance CRs and an engine on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from opensergo.governance import Engine, ManualClock, SystemSampler
from opensergo.spec.base import Resource
from opensergo.spec.faulttolerance import (
    AdaptiveOverloadProtectionStrategy,
    CircuitBreakerStrategy,
    ConcurrencyLimitStrategy,
    FaultToleranceRule,
    HttpRequestFallbackAction,
    RateLimitStrategy,
    ThrottlingStrategy,
)

APP = "demo"


def _meta(name: str, namespace: str = "default", app: str | None = APP) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if app is not None:
        meta["labels"] = {"app": app}
    return meta


def rate_limit(
    name: str,
    threshold: int,
    *,
    stat: str | None = None,
    stat_seconds: int | None = None,
    mode: str = "Local",
    **meta: Any,
) -> RateLimitStrategy:
    spec: dict[str, Any] = {"threshold": threshold, "limitMode": mode}
    if stat is not None:
        spec["statDuration"] = stat
    if stat_seconds is not None:
        spec["statDurationSeconds"] = stat_seconds
    return RateLimitStrategy.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def throttling(name: str, interval: str, queue: str, **meta: Any) -> ThrottlingStrategy:
    spec = {"minIntervalOfRequests": interval, "queueTimeout": queue}
    return ThrottlingStrategy.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def concurrency(name: str, limit: int, *, mode: str = "Local", **meta: Any) -> ConcurrencyLimitStrategy:
    spec = {"maxConcurrency": limit, "limitMode": mode}
    return ConcurrencyLimitStrategy.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def breaker(
    name: str,
    *,
    strategy: str = "ErrorRequestRatio",
    ratio: str | float = "50%",
    stat: str = "10s",
    recovery: str = "5s",
    min_requests: int = 1,
    max_rt: str | None = None,
    **meta: Any,
) -> CircuitBreakerStrategy:
    spec: dict[str, Any] = {
        "strategy": strategy,
        "triggerRatio": ratio,
        "statDuration": stat,
        "recoveryTimeout": recovery,
        "minRequestAmount": min_requests,
    }
    if max_rt is not None:
        spec["slowConditions"] = {"maxAllowedRt": max_rt}
    return CircuitBreakerStrategy.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def slow_breaker(name: str, *, max_rt: str, **kw: Any) -> CircuitBreakerStrategy:
    return breaker(name, strategy="SlowRequestRatio", max_rt=max_rt, **kw)


def adaptive(
    name: str, metric: str, threshold: str | float, strategy: str = "NONE", **meta: Any
) -> AdaptiveOverloadProtectionStrategy:
    spec = {"metricType": metric, "triggerThreshold": threshold, "adaptiveStrategy": strategy}
    return AdaptiveOverloadProtectionStrategy.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def fallback(
    name: str, status: int = 429, body: str = "", headers: Sequence[tuple[str, str]] = (), **meta: Any
) -> HttpRequestFallbackAction:
    spec = {
        "behavior": "ReturnProvidedResponse",
        "behaviorDesc": {
            "responseStatusCode": status,
            "responseContentBody": body,
            "responseAdditionalHeaders": [{"key": k, "value": v} for k, v in headers],
        },
    }
    return HttpRequestFallbackAction.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def rule(
    name: str,
    targets: Sequence[str],
    strategies: Sequence[Resource | str | tuple[str, str]],
    *,
    fallback_action: str | None = None,
    **meta: Any,
) -> FaultToleranceRule:
    refs: list[dict[str, Any]] = []
    for s in strategies:
        if isinstance(s, Resource):
            refs.append({"name": s.name, "kind": s.kind})
        elif isinstance(s, tuple):
            refs.append({"name": s[0], "kind": s[1]})
        else:
            refs.append({"name": s})  # no kind: resolved by name
    spec: dict[str, Any] = {
        "targets": [{"targetResourceName": t} for t in targets],
        "strategies": refs,
    }
    if fallback_action is not None:
        spec["fallbackAction"] = {"name": fallback_action, "kind": "HttpRequestFallbackAction"}
    return FaultToleranceRule.model_validate({"metadata": _meta(name, **meta), "spec": spec})


def protect(resource: str, *strategies: Resource, name: str = "rule", **kw: Any) -> list[Resource]:
    """The strategies plus one FaultToleranceRule applying them (in order) to ``resource``."""
    return [*strategies, rule(name, [resource], list(strategies), **kw)]


class FakeSampler(SystemSampler):
    """A sampler whose values the test sets; it never starts a thread."""

    def __init__(self, cpu: float = -1.0, load: float = -1.0) -> None:
        super().__init__(read_cpu=lambda: self.next_cpu, read_load=lambda: self.next_load)
        self.cpu = cpu
        self.load = load
        self.next_cpu = cpu
        self.next_load = load
        self.started = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        pass


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=0)


@pytest.fixture
def sampler() -> FakeSampler:
    return FakeSampler()


@pytest.fixture
def engine(clock: ManualClock, sampler: FakeSampler) -> Iterator[Engine]:
    eng = Engine(clock=clock, sampler=sampler)
    yield eng
    eng.close()
