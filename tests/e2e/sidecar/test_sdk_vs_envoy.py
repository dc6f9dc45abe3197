"""One TrafficRouter + VirtualWorkload, two data planes: the SDK's httpx routing transport in this
process, and Envoy behind ``opensergo sidecar`` (the consumer's outbound port). Both call the same
provider apps; retries, timeouts, fault injection and outlier ejection must be observably equal
(timing within a tolerance)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from opensergo.client import OpenSergoClient
from opensergo.governance.routing import ServiceDirectory
from opensergo.integrations.httpx import RoutingTransport
from tests.e2e.sidecar.conftest import Mesh
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RULES = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: provider, labels: {app: provider}}
spec:
  hosts: [provider]
  http:
  - match: [{uri: {prefix: /retry}}]
    route: [{destination: {host: provider}}]
    retries: {attempts: 2, retryOn: 5xx}
  - match: [{uri: {prefix: /timeout}}]
    route: [{destination: {host: provider}}]
    timeout: 300ms
  - match: [{uri: {prefix: /abort}}]
    route: [{destination: {host: provider}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
  - match: [{uri: {prefix: /delay}}]
    route: [{destination: {host: provider}}]
    fault: {delay: {fixedDelay: 250ms, percentage: {value: 100}}}
  - route: [{destination: {host: provider}}]
---
apiVersion: traffic.opensergo.io/v1alpha1
kind: VirtualWorkload
metadata: {name: flaky, labels: {app: flaky}}
spec:
  host: flaky
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutiveGatewayErrors: 2, consecutive5xxErrors: 0, interval: 1s,
                       baseEjectionTime: 60s, maxEjectionPercent: 50}
"""


@pytest.fixture
def planes(mesh: Mesh) -> Iterator[dict[str, Callable[[str, str], httpx.Response]]]:
    mesh.sidecar("provider", "provider", mesh.app("provider"))
    mesh.sidecar("flaky-good", "flaky", mesh.app("flaky-good"))
    mesh.sidecar("flaky-bad", "flaky", mesh.app("flaky-bad", fail_status=502))
    consumer = mesh.sidecar("consumer", "consumer", mesh.app("consumer"), outbound=True)
    wait_until(lambda: len(mesh.instances("flaky")) == 2, timeout=15, what="two flaky instances")
    mesh.apply(RULES)
    client = OpenSergoClient(mesh.cp.grpc_address, app="sdk-consumer", snapshot=None, heartbeat=None)
    client.start()
    directory = ServiceDirectory(client)
    directory.prepare("provider", "flaky")
    sdk = httpx.Client(transport=RoutingTransport(directory), timeout=10)
    envoy = httpx.Client(timeout=10)
    outbound = f"http://127.0.0.1:{consumer.outbound_port}"

    def via_sdk(service: str, path: str) -> httpx.Response:
        return sdk.get(f"http://{service}{path}")

    def via_envoy(service: str, path: str) -> httpx.Response:
        return envoy.get(outbound + path, headers={"host": service})

    # Both planes have the rules: the Envoy route answers the fault path with 418.
    wait_until(
        lambda: via_envoy("provider", "/abort").status_code == 418, timeout=10, what="Envoy has the rules"
    )
    wait_until(
        lambda: via_sdk("provider", "/abort").status_code == 418, timeout=10, what="the SDK has the rules"
    )
    try:
        yield {"sdk": via_sdk, "envoy": via_envoy}
    finally:
        sdk.close()
        envoy.close()
        directory.close()
        client.stop()


def _count(call: Callable[[str, str], httpx.Response]) -> int:
    """The provider's request count, not counting this request."""
    return int(call("provider", "/count").json()["count"]) - 1


def test_same_rule_same_behaviour(planes: dict[str, Callable[[str, str], httpx.Response]]) -> None:
    results: dict[str, dict[str, object]] = {}
    for name, call in planes.items():
        out: dict[str, object] = {}
        before = _count(call)
        response = call("provider", "/retry/status/503")
        out["retry_status"] = response.status_code
        out["retry_tries"] = _count(call) - before - 1  # minus the /count call made by _count

        started = time.monotonic()
        response = call("provider", "/timeout/sleep/2000")
        out["timeout"] = (response.status_code, response.text)
        out["timeout_seconds"] = time.monotonic() - started

        before = _count(call)
        response = call("provider", "/abort")
        out["abort"] = (response.status_code, response.text)
        out["abort_tries"] = _count(call) - before - 1

        started = time.monotonic()
        response = call("provider", "/delay")
        out["delay"] = response.status_code
        out["delay_seconds"] = time.monotonic() - started

        statuses = [call("flaky", "/x").status_code for _ in range(12)]
        out["ejection_502s"] = statuses.count(502)
        out["ejection_tail"] = statuses[-6:]
        results[name] = out

    sdk, envoy = results["sdk"], results["envoy"]
    assert sdk["retry_status"] == envoy["retry_status"] == 503
    assert sdk["retry_tries"] == envoy["retry_tries"] == 3, results
    assert sdk["timeout"] == envoy["timeout"] == (504, "upstream request timeout")
    for name in ("sdk", "envoy"):
        assert 0.28 <= float(results[name]["timeout_seconds"]) <= 0.8, results  # type: ignore[arg-type]
        assert 0.24 <= float(results[name]["delay_seconds"]) <= 0.8, results  # type: ignore[arg-type]
    assert sdk["abort"] == envoy["abort"] == (418, "fault filter abort")
    assert sdk["abort_tries"] == envoy["abort_tries"] == 0
    assert sdk["delay"] == envoy["delay"] == 200
    # Round robin over good/bad: the bad instance answers 502 twice, then is ejected for 60 s.
    assert sdk["ejection_502s"] == envoy["ejection_502s"] == 2, results
    assert sdk["ejection_tail"] == envoy["ejection_tail"] == [200] * 6
