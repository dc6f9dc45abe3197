"""``opensergo sidecar --engine ext_proc``: Envoy asks the SDK engine (in the sidecar process) about
every inbound request, so rules Envoy's filters cannot express hold exactly: here a circuit
breaker on the *slow*-request ratio, with its open state, its fallback response and its recovery
(half-open probe), and a sliding-window rate limit."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.sidecar.conftest import Mesh
from tests.helpers import start_inside_a_breaker_window, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: CircuitBreakerStrategy
metadata: {name: slow, labels: {app: orders}}
spec:
  strategy: SlowRequestRatio
  triggerRatio: '50%'
  statDuration: 10s
  recoveryTimeout: 2s
  minRequestAmount: 2
  slowConditions: {maxAllowedRt: 100ms}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: three, labels: {app: orders}}
spec: {threshold: 3, statDuration: 60s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HttpRequestFallbackAction
metadata: {name: open, labels: {app: orders}}
spec:
  behaviorDesc: {responseStatusCode: 503, responseContentBody: circuit open,
                 responseAdditionalHeaders: [{key: X-Breaker, value: open}]}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: breaker, labels: {app: orders}}
spec:
  targets: [{targetResourceName: "GET:/sleep/{ms}"}]
  strategies: [{name: slow, kind: CircuitBreakerStrategy}]
  fallbackAction: open
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: limit, labels: {app: orders}}
spec:
  targets: [{targetResourceName: "GET:/limited"}]
  strategies: [{name: three}]
"""


FT = "fault-tolerance.opensergo.io/v1alpha1"


def _acked(mesh: Mesh, plural: str, name: str) -> bool:
    """Every client subscribed to the object ACKed its current version (each kind is pushed on its
    own, so the rate limit being in force says nothing about the breaker's kinds)."""
    url = f"{mesh.cp.http_url}/apis/{FT}/namespaces/default/{plural}/{name}/rollout"
    clients = httpx.get(url, headers=mesh.headers, timeout=5).json()["clients"]
    return bool(clients) and all(c["state"] == "acked" for c in clients)


def test_slow_ratio_breaker_and_sliding_window_through_the_sdk_engine(mesh: Mesh) -> None:
    sidecar = mesh.sidecar("orders", "orders", mesh.app("orders"), engine="ext_proc")
    mesh.apply(RULES)
    base = f"http://127.0.0.1:{sidecar.inbound_port}"
    with httpx.Client(timeout=5) as http:
        wait_until(
            lambda: http.get(base + "/limited").status_code == 429, timeout=10, what="rules in the engine"
        )
        for plural, name in (
            ("circuitbreakerstrategies", "slow"),
            ("httprequestfallbackactions", "open"),
            ("faulttolerancerules", "breaker"),
        ):
            wait_until(lambda: _acked(mesh, plural, name), timeout=10, what=f"{name} ACKed")  # noqa: B023
        blocked = http.get(base + "/limited")
        assert blocked.text == "Blocked by OpenSergo (flow limiting)"
        assert http.get(base + "/other").status_code == 200  # ungoverned paths pass

        # Two slow calls (> 100 ms) trip the breaker: the next call, even a fast one, is refused.
        start_inside_a_breaker_window(10)
        assert [http.get(base + "/sleep/200").status_code for _ in range(2)] == [200, 200]
        refused = http.get(base + "/sleep/1")
        assert (refused.status_code, refused.text, refused.headers["x-breaker"]) == (
            503,
            "circuit open",
            "open",
        )
        # After recoveryTimeout one probe passes; a fast probe closes the breaker.
        time.sleep(2.2)
        assert http.get(base + "/sleep/1").status_code == 200
        assert [http.get(base + "/sleep/1").status_code for _ in range(3)] == [200] * 3
