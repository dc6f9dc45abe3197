"""Inbound: two plain HTTP apps behind ``opensergo sidecar``; a rate limit applied with
``opensergo apply`` answers the fallback action through Envoy within 1 s of Envoy's ACK, and is
lifted on delete; ACK states show in the client list."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.e2e.sidecar.conftest import Mesh
from tests.helpers import run_cli, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {{name: rl-{app}, labels: {{app: {app}}}}}
spec: {{metricType: RequestAmount, limitMode: Local, threshold: 3, statDuration: 60s}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HttpRequestFallbackAction
metadata: {{name: fb-{app}, labels: {{app: {app}}}}}
spec:
  behavior: ReturnProvidedResponse
  behaviorDesc:
    responseStatusCode: 429
    responseContentBody: '{{"blocked": "{app}"}}'
    responseAdditionalHeaders: [{{key: X-Blocked-By, value: opensergo}}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: rule-{app}, labels: {{app: {app}}}}}
spec:
  targets: [{{targetResourceName: "GET:/orders/{{id}}"}}]
  strategies: [{{name: rl-{app}, kind: RateLimitStrategy}}]
  fallbackAction: {{name: fb-{app}, kind: HttpRequestFallbackAction}}
"""

RATE_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"


def _acked_at(mesh: Mesh, app: str, version: int) -> float | None:
    for client in mesh.xds_clients():
        for sub in client["subscriptions"]:
            if sub["app"] == app and sub["kind"] == RATE_KIND and (sub["ackedVersion"] or 0) >= version:
                return float(sub["ackedAt"])
    return None


def test_rate_limit_through_envoy_follows_apply_and_delete(mesh: Mesh) -> None:
    sidecars = {}
    for app in ("orders", "billing"):
        port = mesh.app(app)
        sidecars[app] = mesh.sidecar(app, app, port)
    wait_until(lambda: len(mesh.xds_clients()) == 2, timeout=15, what="two Envoys subscribed")
    with httpx.Client(timeout=5) as http:
        url = f"http://127.0.0.1:{sidecars['orders'].inbound_port}/orders/42"
        assert http.get(url).json()["name"] == "orders"  # through Envoy to the app

        rules = RULES.format(app="orders")
        mesh.apply(rules)
        applied = time.time()
        statuses = []

        def blocked() -> httpx.Response | None:
            response = http.get(url)
            statuses.append(response.status_code)
            return response if response.status_code == 429 else None

        response = wait_until(blocked, timeout=5, interval=0.01, what="a blocked request")
        first_block = time.time()
        assert response.json() == {"blocked": "orders"}
        assert response.headers["x-blocked-by"] == "opensergo"
        # The bucket admits its 3 requests, then everything is blocked.
        assert statuses.count(200) <= 3
        assert [http.get(url).status_code for _ in range(5)] == [429] * 5
        # Other paths of the app and the other app are not governed by this rule.
        assert http.get(f"http://127.0.0.1:{sidecars['orders'].inbound_port}/health").status_code == 200
        other = f"http://127.0.0.1:{sidecars['billing'].inbound_port}/orders/42"
        assert [http.get(other).status_code for _ in range(6)] == [200] * 6

        version = max(
            s["pushedVersion"] or 0
            for c in mesh.xds_clients()
            for s in c["subscriptions"]
            if s["app"] == "orders" and s["kind"] == RATE_KIND
        )
        acked = wait_until(lambda: _acked_at(mesh, "orders", version), timeout=5, what="Envoy's ACK")
        assert first_block - acked <= 1.0, f"blocked {first_block - acked:.3f}s after the ACK"
        assert first_block - applied <= 2.0
        listing = run_cli("get", "clients", "-s", mesh.cp.http_url)
        assert "RateLimitStrategy@orders" in listing.stdout and "(acked)" in listing.stdout

        mesh.delete(rules)
        wait_until(lambda: http.get(url).status_code == 200, timeout=2, interval=0.01, what="limit lifted")
        assert [http.get(url).status_code for _ in range(10)] == [200] * 10


GLOBAL_AND_CONCURRENCY = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: cluster-wide, labels: {app: orders}}
spec: {limitMode: Global, threshold: 4, statDuration: 60s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: ConcurrencyLimitStrategy
metadata: {name: one-at-a-time, labels: {app: orders}}
spec: {maxConcurrency: 1}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: global, labels: {app: orders}}
spec:
  targets: [{targetResourceName: "GET:/global"}]
  strategies: [{name: cluster-wide}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: concurrency, labels: {app: orders}}
spec:
  targets: [{targetResourceName: "GET:/slow/sleep/{ms}"}]
  strategies: [{name: one-at-a-time}]
"""


def test_global_limit_across_envoys_and_concurrency_limit(mesh: Mesh) -> None:
    """Two Envoys of one app share a Global threshold through the RateLimitService; a
    concurrency limit of 1 blocks a second request while the first is in flight."""
    first = mesh.sidecar("orders-1", "orders", mesh.app("orders-1"))
    second = mesh.sidecar("orders-2", "orders", mesh.app("orders-2"))
    mesh.apply(GLOBAL_AND_CONCURRENCY)
    urls = [f"http://127.0.0.1:{s.inbound_port}" for s in (first, second)]
    with httpx.Client(timeout=5) as http:
        wait_until(
            lambda: http.get(urls[0] + "/global").status_code == 429, timeout=10, what="the global limit"
        )
        statuses = [http.get(urls[i % 2] + "/global").status_code for i in range(10)]
        assert statuses == [429] * 10  # the 4 tokens of the window are spent, on both Envoys
        blocked = http.get(urls[1] + "/global")
        assert blocked.text == "Blocked by OpenSergo (flow limiting)"  # the SDK's default answer

        results: list[int] = []

        def slow() -> None:
            with httpx.Client(timeout=5) as client:
                results.append(client.get(urls[0] + "/slow/sleep/800").status_code)

        threads = [threading.Thread(target=slow) for _ in range(3)]
        wait_until(lambda: http.get(urls[0] + "/slow/sleep/1").status_code == 200, timeout=10, what="route")
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join()
        assert sorted(results) == [200, 429, 429], results


BREAKER_AND_ADAPTIVE = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: CircuitBreakerStrategy
metadata: {name: errors, labels: {app: orders}}
spec:
  strategy: ErrorRequestRatio
  triggerRatio: '50%'
  statDuration: 10s
  recoveryTimeout: 5s
  minRequestAmount: 5
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: AdaptiveOverloadProtectionStrategy
metadata: {name: adaptive, labels: {app: orders}}
spec: {metricType: CpuPercentage, triggerThreshold: '90%', adaptiveStrategy: BBR}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: protect, labels: {app: orders}}
spec:
  targets: [{targetResourceName: "GET:/status/{code}"}]
  strategies: [{name: errors}, {name: adaptive}]
"""


def test_breaker_and_adaptive_filters_are_accepted_and_reject_failing_traffic(mesh: Mesh) -> None:
    sidecar = mesh.sidecar("orders", "orders", mesh.app("orders"))
    mesh.apply(BREAKER_AND_ADAPTIVE)

    def listener_acked() -> bool:
        [client] = mesh.xds_clients()
        lds = client["xds"]["LDS"]
        assert lds["state"] != "nacked", lds["error"]
        return bool(lds["state"] == "acked" and sidecar.stat("listener_manager.lds.update_success") >= 2)

    wait_until(listener_acked, timeout=10, what="the new inbound listener ACKed")
    url = f"http://127.0.0.1:{sidecar.inbound_port}/status/500"
    with httpx.Client(timeout=5) as http:
        wait_until(lambda: "admission_control" in httpx.get(sidecar.admin + "/config_dump").text, timeout=10)
        # Every answer fails: admission control starts rejecting locally (Envoy's own 503).
        statuses = [http.get(url).status_code for _ in range(200)]
    assert statuses.count(500) > 0 and statuses.count(503) > 20, statuses
    assert sidecar.stat("http.inbound.admission_control.rq_rejected") > 20
