"""Hot keys travel on the SDK's OTLP metrics export to a real control plane and are served,
per app and live, by GET /api/v1/metrics/hotkeys (the dashboard's Hot keys tab)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis

from opensergo.cache import governed
from opensergo.cache.rules import CacheRules
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.observability import enable_metrics
from opensergo.spec.loader import parse_documents
from tests.helpers import ControlPlaneProcess, wait_until
from tests.integration.cache.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

POLICY = """
apiVersion: cache.opensergo.io/v1alpha1
kind: CachePolicy
metadata: {name: p, labels: {app: hot-app}}
spec:
  cacheNames: [products]
  hotKey: {threshold: 50, window: 1s, capacity: 64, reportTop: 5}
"""


def test_hot_keys_reported_to_the_control_plane_per_app(
    control_plane: ControlPlaneProcess, redis_server: RedisServer, cache_rules: CacheRules
) -> None:
    cache_rules.apply(parse_documents(POLICY), namespace="default")
    client = governed(redis.Redis(port=redis_server.port), "products", rules=cache_rules)
    handle = enable_metrics(
        app="hot-app", endpoint=control_plane.grpc_address, engine=Engine(), interval=0.25
    )

    def hot_keys() -> list[dict[str, Any]]:
        for _ in range(300):  # product:7 hot (~hundreds/s), product:8 warm
            client.get("product:7")
        client.get("product:8")
        r = httpx.get(
            f"{control_plane.http_url}/api/v1/metrics/hotkeys",
            params={"namespace": "default", "app": "hot-app"},
            timeout=10,
        )
        r.raise_for_status()
        items: list[dict[str, Any]] = r.json()["items"]
        return items if any(i["key"] == "product:7" and i["hot"] for i in items) else []

    try:
        items = wait_until(hot_keys, 30.0, 0.1, "product:7 reported hot")
    finally:
        handle.shutdown()
        client.close()
    top = items[0]
    assert top["cache"] == "products" and top["key"] == "product:7" and top["hot"]
    assert top["rate"] >= 50 and top["instances"] == 1
    assert all(i["cache"] == "products" for i in items)
    assert abs(top["lastSeen"] - time.time()) < 30
    other = httpx.get(
        f"{control_plane.http_url}/api/v1/metrics/hotkeys",
        params={"namespace": "default", "app": "another-app"},
        timeout=10,
    ).json()
    assert other["items"] == []
