"""Outbound through a consumer's sidecar: a TrafficRouter splitting 80/20 by weight and routing by
header, to provider instances that are themselves behind sidecars (registered with
``--label version=...``); killing the v2 instance moves its share to the fallback subset as soon
as the control plane updates the routes and endpoints. Also: a rule Envoy rejects is shown
NACKed with Envoy's message while the last good configuration stays in force, and a control
plane restart under load leaves Envoy serving."""

from __future__ import annotations

import collections
import threading
import time

import httpx
import pytest

from tests.e2e.sidecar.conftest import Mesh, Sidecar
from tests.helpers import run_cli, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROUTER_KIND = "traffic.opensergo.io/v1alpha1/TrafficRouter"

RULES = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: VirtualWorkload
metadata: {name: provider, labels: {app: provider}}
spec:
  host: provider
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: provider, labels: {app: provider}}
spec:
  hosts: [provider]
  http:
  - match: [{headers: {x-user: {exact: alice}}}]
    route: [{destination: {host: provider, subset: v2}}]
  - route:
    - {destination: {host: provider, subset: v1}, weight: 80}
    - {destination: {host: provider, subset: v2, fallback: {host: provider, subset: v1}}, weight: 20}
"""

# Python's re accepts a lookahead; Envoy's RE2 does not: valid for us, NACKed by Envoy.
REJECTED = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: provider, labels: {app: provider}}
spec:
  hosts: [provider]
  http:
  - match: [{headers: {x-user: {regex: "(?=a)alice"}}}]
    route: [{destination: {host: provider, subset: v1}}]
  - route: [{destination: {host: provider, subset: v1}}]
"""


def _start(mesh: Mesh) -> tuple[Sidecar, dict[str, Sidecar]]:
    providers = {}
    for version in ("v1", "v2"):
        port = mesh.app(f"provider-{version}")
        providers[version] = mesh.sidecar(f"provider-{version}", "provider", port, f"version={version}")
    consumer = mesh.sidecar("consumer", "consumer", mesh.app("consumer"), outbound=True)
    wait_until(lambda: len(mesh.instances("provider")) == 2, timeout=15, what="two provider instances")
    return consumer, providers


def _names(
    http: httpx.Client, url: str, count: int, headers: dict[str, str] | None = None
) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        response = http.get(url, headers={"host": "provider", **(headers or {})})
        seen[response.json()["name"] if response.status_code == 200 else str(response.status_code)] += 1
    return seen


def _routes_to(http: httpx.Client, url: str, expected: str, headers: dict[str, str] | None = None) -> bool:
    return _names(http, url, 20, headers) == {expected: 20}


def test_weights_headers_and_a_killed_instance(mesh: Mesh) -> None:
    consumer, _ = _start(mesh)
    url = f"http://127.0.0.1:{consumer.outbound_port}/hello"
    with httpx.Client(timeout=5) as http:
        # Without a router every instance of the service is used.
        wait_until(
            lambda: set(_names(http, url, 10)) == {"provider-v1", "provider-v2"},
            timeout=10,
            what="both providers reachable",
        )
        mesh.apply(RULES)
        wait_until(
            lambda: _routes_to(http, url, "provider-v2", {"x-user": "alice"}), timeout=5, what="header route"
        )
        seen = _names(http, url, 400)
        assert set(seen) == {"provider-v1", "provider-v2"}
        share = seen["provider-v2"] / 400
        assert 0.14 <= share <= 0.26, seen  # 20 % +- 6 points (binomial sd is 2 points)
        assert _names(http, url, 20, {"x-user": "bob"})["provider-v2"] < 20

        mesh.kill("sidecar-provider-v2")  # the instance's registration stream ends with it
        killed = time.monotonic()
        wait_until(lambda: len(mesh.instances("provider")) == 1, timeout=10, what="v2 expired")
        wait_until(
            lambda: _routes_to(http, url, "provider-v1"), timeout=5, interval=0.05, what="v2 share moved"
        )
        moved = time.monotonic() - killed
        assert moved < 5.0
        # The weighted route now sends everything to v1 (v2's fallback); no error answers.
        assert _names(http, url, 100) == {"provider-v1": 100}


def test_nack_keeps_last_good_config_and_restart_keeps_serving(mesh: Mesh) -> None:
    consumer, _ = _start(mesh)
    url = f"http://127.0.0.1:{consumer.outbound_port}/hello"
    with httpx.Client(timeout=5) as http:
        mesh.apply(RULES)
        wait_until(
            lambda: _routes_to(http, url, "provider-v2", {"x-user": "alice"}), timeout=10, what="header route"
        )

        mesh.apply(REJECTED)

        def nacked() -> str | None:
            for client in mesh.xds_clients():
                if not client["identifier"].startswith("sidecar~consumer"):
                    continue
                for sub in client["subscriptions"]:
                    if sub["kind"] == ROUTER_KIND and sub["app"] == "provider" and sub["state"] == "nacked":
                        return str(sub["message"])
            return None

        message = wait_until(nacked, timeout=10, what="Envoy's NACK recorded")
        assert "regex" in message.lower() or "invalid" in message.lower(), message
        listing = run_cli("get", "clients", "-o", "yaml", "-s", mesh.cp.http_url)
        assert "nacked" in listing.stdout
        # The rule's rollout view names the consumer's Envoy as NACKing it, with Envoy's message.
        rollout = httpx.get(
            f"{mesh.cp.http_url}/apis/traffic.opensergo.io/v1alpha1/namespaces/default/trafficrouters/provider/rollout",
            timeout=5,
        ).json()
        envoy = [c for c in rollout["clients"] if c["identifier"].startswith("sidecar~consumer")]
        assert envoy and envoy[0]["state"] == "nacked" and "(?=" in envoy[0]["message"], rollout
        # Envoy keeps the last configuration it accepted: alice still goes to v2.
        assert _routes_to(http, url, "provider-v2", {"x-user": "alice"})
        assert consumer.stat("http.outbound.rds.outbound.update_rejected") >= 1

        # A good rule after the bad one is accepted again.
        mesh.apply(RULES)
        wait_until(lambda: nacked() is None, timeout=10, what="NACK cleared by the next good version")

        # Control plane restart under load: Envoy keeps serving with what it has, then resubscribes.
        errors: list[str] = []
        served = [0]
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    response = client.get(url, headers={"host": "provider", "x-user": "alice"})
                    if response.status_code != 200 or response.json()["name"] != "provider-v2":
                        errors.append(f"{response.status_code} {response.text[:80]}")
                    served[0] += 1

        worker = threading.Thread(target=load)
        worker.start()
        try:
            connected = consumer.stat("control_plane.connected_state")
            assert connected == 1
            mesh.cp.stop()
            wait_until(
                lambda: consumer.stat("control_plane.connected_state") == 0, timeout=10, what="disconnected"
            )
            before = served[0]
            time.sleep(1.0)
            assert served[0] > before, "Envoy stopped serving without its control plane"
            mesh.cp.start()
            wait_until(
                lambda: consumer.stat("control_plane.connected_state") == 1, timeout=30, what="resubscribed"
            )
            wait_until(
                lambda: any(c["identifier"].startswith("sidecar~consumer") for c in mesh.xds_clients()),
                timeout=10,
                what="consumer listed again",
            )
        finally:
            stop.set()
            worker.join(timeout=10)
        assert not errors, errors[:5]
        assert served[0] > 20
