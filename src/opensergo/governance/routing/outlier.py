"""Outlier detection in the SDK's load balancer: VirtualWorkload ``trafficPolicy.outlierDetection``.

Istio's fields with Envoy's consecutive-error semantics (the sidecar gets the same settings):

* ``consecutive5xxErrors`` (default 5; 0 turns it off): that many 5xx answers in a row, or
  transport failures (connect error, reset, timeout), eject the instance.
* ``consecutiveGatewayErrors`` (default 0 = off): that many 502/503/504 answers or transport
  failures in a row eject it.
* An ejected instance is skipped for ``baseEjectionTime`` (default 30 s) times the number of
  times it was ejected, at most 300 s.
* At most ``maxEjectionPercent`` (default 10 %) of a pool is ejected at once, but one instance
  always may be. With every candidate ejected the pool uses them all (Envoy's panic mode).

Any answer that is not counted as an error resets the instance's consecutive counters. Envoy
re-admits an ejected host at its next ``interval`` tick after the ejection time; here it is
re-admitted as soon as the time has passed (within ``interval`` of Envoy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opensergo.governance.routing.model import Instance
from opensergo.spec.resilience import parse_duration_seconds

__all__ = ["MAX_EJECTION_SECONDS", "OutlierSettings", "OutlierState", "record_outcome"]

MAX_EJECTION_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class OutlierSettings:
    consecutive_5xx: int = 5
    consecutive_gateway: int = 0
    base_ejection: float = 30.0
    max_ejection_percent: float = 10.0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> OutlierSettings | None:
        if not spec:
            return None
        return cls(
            consecutive_5xx=int(spec.get("consecutive5xxErrors", spec.get("consecutiveErrors", 5)) or 0),
            consecutive_gateway=int(spec.get("consecutiveGatewayErrors", 0) or 0),
            base_ejection=parse_duration_seconds(
                spec.get("baseEjectionTime", "30s"), ("outlierDetection", "baseEjectionTime")
            ),
            max_ejection_percent=float(spec.get("maxEjectionPercent", 10)),
        )


class OutlierState:
    """One instance's counters and ejection (kept on the Instance, shared by its pools)."""

    __slots__ = ("ejected_until", "ejections", "errors_5xx", "gateway_errors")

    def __init__(self) -> None:
        self.errors_5xx = 0
        self.gateway_errors = 0
        self.ejections = 0
        self.ejected_until = 0.0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until


def state_of(instance: Instance) -> OutlierState:
    state: OutlierState | None = instance.outlier
    if state is None:
        state = instance.outlier = OutlierState()
    return state


def record_outcome(
    instance: Instance,
    pool: Sequence[Instance],
    settings: OutlierSettings,
    *,
    status: int | None = None,
    failed: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Count one answer (``status``) or transport failure (``failed``); True when it ejected."""
    state = state_of(instance)
    server_error = failed or (status is not None and status >= 500)
    gateway_error = failed or status in (502, 503, 504)
    state.errors_5xx = state.errors_5xx + 1 if server_error else 0
    state.gateway_errors = state.gateway_errors + 1 if gateway_error else 0
    now = clock()
    if state.ejected(now):
        return False
    tripped = (settings.consecutive_5xx and state.errors_5xx >= settings.consecutive_5xx) or (
        settings.consecutive_gateway and state.gateway_errors >= settings.consecutive_gateway
    )
    if not tripped:
        return False
    ejected = sum(1 for i in pool if i.outlier is not None and i.outlier.ejected(now))
    if ejected and (ejected + 1) * 100 > settings.max_ejection_percent * len(pool):
        return False
    state.ejections += 1
    state.ejected_until = now + min(settings.base_ejection * state.ejections, MAX_EJECTION_SECONDS)
    state.errors_5xx = state.gateway_errors = 0
    return True


def admitted(instances: Sequence[Instance], now: float) -> list[Instance]:
    """The instances not ejected now; all of them when every one is (panic)."""
    live = [i for i in instances if i.outlier is None or not i.outlier.ejected(now)]
    return live or list(instances)
