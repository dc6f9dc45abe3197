"""``opensergo sidecar --token`` against a control plane with auth on, with the real Envoy.

With the namespace's agent token (``--token``, or the bootstrap's ``"token"`` as the SDK reads
it) Envoy gets its configuration, including a Global rate limit whose RateLimitService calls
carry the same credential, and the app is registered. Without a token, with an unknown one, or
with another namespace's, Envoy gets nothing and the app is not registered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.sidecar.conftest import Mesh, Sidecar
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OPS = "ops-token-0123456789"
SHOP_AGENT = "shop-agent-token-0123456789"
BANK_AGENT = "bank-agent-token-0123456789"
TOKENS = {
    "tokens": [
        {"name": "ops", "token": OPS, "roles": {"*": "admin"}},
        {"name": "shop-agent", "token": SHOP_AGENT, "roles": {"shop": "agent"}},
        {"name": "bank-agent", "token": BANK_AGENT, "roles": {"bank": "agent"}},
    ]
}

GLOBAL_LIMIT = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: rl-orders, namespace: shop, labels: {app: orders}}
spec: {metricType: RequestAmount, limitMode: Global, threshold: 2, statDuration: 60s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HttpRequestFallbackAction
metadata: {name: fb-orders, namespace: shop, labels: {app: orders}}
spec:
  behavior: ReturnProvidedResponse
  behaviorDesc: {responseStatusCode: 429, responseContentBody: '{"blocked": "globally"}'}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule-orders, namespace: shop, labels: {app: orders}}
spec:
  targets: [{targetResourceName: "GET:/orders/{id}"}]
  strategies: [{name: rl-orders, kind: RateLimitStrategy}]
  fallbackAction: {name: fb-orders, kind: HttpRequestFallbackAction}
"""


@pytest.fixture
def secured_mesh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mesh]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    mesh = Mesh(tmp_path, ["--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens)], token=OPS)
    mesh.cp.start()
    try:
        yield mesh
    finally:
        mesh.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(mesh.dump_logs())


def dynamic_listeners(sidecar: Sidecar) -> list[str]:
    dump = httpx.get(sidecar.admin + "/config_dump", params={"resource": "dynamic_listeners"}, timeout=5)
    return [item["name"] for item in dump.json().get("configs", [])]


def inbound_answers(sidecar: Sidecar) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{sidecar.inbound_port}/orders/1", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def test_with_the_namespaces_token_envoy_is_configured_and_the_app_registered(secured_mesh: Mesh) -> None:
    mesh = secured_mesh
    orders = mesh.sidecar(
        "orders",
        "orders",
        mesh.app("orders"),
        "version=v1",
        extra=["--namespace", "shop", "--token", SHOP_AGENT],
    )
    # The token as the SDK reads it: the bootstrap's "token" (no --token, no $OPENSERGO_TOKEN).
    bootstrap = {"endpoint": mesh.cp.grpc_address, "namespace": "shop", "token": SHOP_AGENT}
    billing = mesh.sidecar(
        "billing",
        "billing",
        mesh.app("billing"),
        env={"OPENSERGO_BOOTSTRAP_CONFIG": json.dumps(bootstrap), "OPENSERGO_TOKEN": ""},
    )
    for sidecar in (orders, billing):
        assert "inbound" in dynamic_listeners(sidecar)
    [instance] = wait_until(lambda: mesh.instances("orders", "shop"), timeout=15, what="orders registered")
    assert instance["addresses"] == [f"http://127.0.0.1:{orders.inbound_port}"]
    wait_until(lambda: mesh.instances("billing", "shop"), timeout=15, what="billing registered")
    clients = wait_until(
        lambda: [c for c in mesh.xds_clients() if c["node"].get("cluster") in ("orders", "billing")] or None,
        timeout=10,
        what="both Envoys listed",
    )
    assert {c["node"]["metadata"]["namespace"] for c in clients} == {"shop"}

    # A Global limit: every request is a RateLimitService call, authenticated with the
    # credential the control plane copied from the ADS stream (without it the call would be
    # refused, Envoy would fail open and nothing would be limited).
    mesh.apply(GLOBAL_LIMIT)
    url = f"http://127.0.0.1:{orders.inbound_port}/orders/7"
    statuses: list[int] = []

    def blocked() -> httpx.Response | None:
        response = httpx.get(url, timeout=5)
        statuses.append(response.status_code)
        return response if response.status_code == 429 else None

    response = wait_until(blocked, timeout=15, interval=0.05, what="a globally limited request")
    assert response.json() == {"blocked": "globally"}
    assert statuses.count(200) <= 2
    assert orders.stat("cluster.opensergo_control_plane.upstream_rq_403") == 0


def refused_config(sidecar: Sidecar) -> bool:
    """Envoy's ADS stream was refused at least twice (it retries with back-off)."""
    return sidecar.stat("cluster_manager.cds.update_failure") >= 2


def test_without_a_valid_token_envoy_gets_nothing_and_nothing_is_registered(secured_mesh: Mesh) -> None:
    mesh = secured_mesh
    no_env = {"OPENSERGO_TOKEN": ""}
    cases: dict[str, list[str]] = {
        "none": ["--namespace", "shop"],
        "unknown": ["--namespace", "shop", "--token", "not-a-token-of-the-file"],
        "other-namespace": ["--namespace", "shop", "--token", BANK_AGENT],
    }
    sidecars: dict[str, Sidecar] = {}
    for app, extra in cases.items():
        sidecars[app] = mesh.sidecar(app, app, mesh.app(app), extra=extra, env=no_env, wait_ready=False)
    for app, sidecar in sidecars.items():
        wait_until(lambda s=sidecar: s.ready() or refused_config(s), timeout=30, what=f"{app}'s Envoy up")
        wait_until(lambda s=sidecar: refused_config(s), timeout=30, what=f"{app}'s ADS stream refused")
    wait_until(
        lambda: "xds stream of sidecar~other-namespace" in mesh.cp.logs(),
        timeout=10,
        what="the foreign namespace refused",
    )
    # The registration clients were refused too (UNAUTHENTICATED / PERMISSION_DENIED).
    for app in cases:
        wait_until(
            lambda a=app: "UNAUTHENTICATED" in _log(mesh, a) or "PERMISSION_DENIED" in _log(mesh, a),
            timeout=15,
            what=f"{app}'s registration refused",
        )
    for app, sidecar in sidecars.items():
        assert sidecar.stat("cluster_manager.cds.update_success") == 0, app
        assert sidecar.stat("listener_manager.lds.update_success") == 0, app
        assert dynamic_listeners(sidecar) == [], app
        assert not inbound_answers(sidecar), app
        assert mesh.instances(app) == [], app
    assert [c for c in mesh.xds_clients() if c["node"].get("cluster") in cases] == []


def _log(mesh: Mesh, app: str) -> str:
    return (mesh.logs / f"sidecar-{app}.log").read_text(errors="replace")
