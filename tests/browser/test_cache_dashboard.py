"""Cache governance in a real browser against a real control plane with auth on: the app page's
Hot keys tab shows the keys a governed redis-py client (on a real redis-server) reports over
its OTLP metrics export, and a CachePolicy created through the form is stored as the form said."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from opensergo.cache import governed
from opensergo.cache.rules import CacheRules
from opensergo.governance import Engine
from opensergo.observability import enable_metrics
from opensergo.spec.loader import parse_documents
from tests.browser.conftest import logged_in_page, screenshot
from tests.helpers import ControlPlaneProcess, wait_until
from tests.integration.cache.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CACHE = "cache.opensergo.io/v1alpha1"
ADMIN = {"Authorization": "Bearer alice-admin-token"}
APP = "cache-shop"
POLICY = f"""
apiVersion: {CACHE}
kind: CachePolicy
metadata: {{name: products, labels: {{app: {APP}}}}}
spec:
  cacheNames: [products]
  hotKey: {{threshold: 50, window: 1s, capacity: 64, reportTop: 5}}
"""


@pytest.fixture
def page(browser: Browser, secured_cp: ControlPlaneProcess) -> Iterator[Page]:
    with logged_in_page(browser, secured_cp.http_url) as p:
        yield p


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_hot_keys_tab_shows_the_keys_a_governed_client_reports(
    page: Page, secured_cp: ControlPlaneProcess, redis_server: RedisServer
) -> None:
    rules = CacheRules()
    rules.apply(parse_documents(POLICY), namespace="default")
    client = governed(redis.Redis(port=redis_server.port), "products", rules=rules)
    client.set("product:7", "seven")
    engine = Engine()
    handle = enable_metrics(
        app=APP,
        endpoint=secured_cp.grpc_address,
        engine=engine,
        interval=0.25,
        token="alice-admin-token",  # the gRPC port has auth too
    )
    stop = threading.Event()

    def traffic() -> None:
        # product:7 far above 50/s; product:8 at most 5/s, so never 5 in one 0.1 s slice either
        # (a key that alone reaches the threshold rate within one slice is hot at once).
        rounds = 0
        while not stop.is_set():
            for _ in range(40):
                client.get("product:7")
            if rounds % 10 == 0:
                client.get("product:8")
            rounds += 1
            time.sleep(0.02)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        wait_until(  # the app is known from its first export (no registered instance here)
            lambda: httpx.get(f"{secured_cp.http_url}/api/v1/apps/default/{APP}", headers=ADMIN).is_success,
            timeout=15,
            what="the first metrics export",
        )
        page.goto(f"{secured_cp.http_url}/#/apps/default/{APP}?tab=hotkeys")
        expect(page.get_by_role("tab", name="Hot keys")).to_have_attribute("aria-selected", "true")
        table = page.locator("table.hot-keys")
        hot_row = table.locator("tbody tr", has=page.locator('[data-key="product:7"]'))
        expect(hot_row).to_contain_text("hot", timeout=30_000)
        expect(hot_row).to_contain_text("products")
        warm_row = table.locator("tbody tr", has=page.locator('[data-key="product:8"]'))
        expect(warm_row).to_contain_text("warm", timeout=15_000)
        # The heaviest key comes first, and the table keeps refreshing (every second).
        expect(table.locator("tbody tr").first).to_contain_text("product:7")
        section = page.get_by_role("region", name="Hot keys")
        first = section.get_attribute("data-updated")
        wait_until(lambda: section.get_attribute("data-updated") != first, timeout=10, what="a refresh")
        screenshot(page, "app-hot-keys")
    finally:
        stop.set()
        worker.join(5)
        handle.shutdown()
        engine.close()
        client.close()

    # Another app's tab has no report from this client.
    other = httpx.get(
        f"{secured_cp.http_url}/api/v1/metrics/hotkeys",
        params={"namespace": "default", "app": "another-app"},
        headers=ADMIN,
        timeout=10,
    )
    assert other.status_code == 200 and other.json()["items"] == []


def test_cache_policy_created_through_the_form(page: Page, secured_cp: ControlPlaneProcess) -> None:
    url = secured_cp.http_url
    obj_url = f"{url}/apis/{CACHE}/namespaces/default/cachepolicies/catalog-cache"
    assert httpx.get(obj_url, headers=ADMIN).status_code == 404

    page.goto(f"{url}/#/rules/new?kind=cachepolicies&app={APP}")
    page.wait_for_selector("main[data-ready=rules]")
    page.get_by_role("button", name="Form").click()
    expect(page.get_by_label("App", exact=True)).to_have_value(APP)
    page.get_by_label("Name", exact=True).fill("catalog-cache")
    page.get_by_label("Cache names", exact=True).fill("catalog\nprices")
    page.get_by_label("Hot-key threshold (requests/s per key)", exact=True).fill("250")
    page.get_by_label("Detection window", exact=True).fill("5s")
    page.get_by_label("Near-cache entries", exact=True).fill("500")
    page.get_by_label("Near-cache TTL", exact=True).fill("20s")
    page.get_by_label("Breaker error ratio", exact=True).fill("40%")
    page.get_by_label("Stale if error", exact=True).fill("30s")
    page.get_by_label("When open and no stale value", exact=True).select_option("Miss")
    page.get_by_label("Refuse above (bytes or 8MiB)", exact=True).fill("8MiB")
    screenshot(page, "cache-policy-form")
    expect(page.locator(".status-line")).to_contain_text("valid")
    page.get_by_role("button", name="Review and create").click()
    diff = page.locator(".diff")
    expect(diff).to_contain_text("threshold: 250")
    expect(diff).to_contain_text("- catalog")
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_selector("main[data-ready=rules] table.rollout")

    wait_until(lambda: httpx.get(obj_url, headers=ADMIN).status_code == 200, what="the policy stored")
    stored = httpx.get(obj_url, headers=ADMIN).json()
    assert stored["metadata"]["labels"] == {"app": APP}
    spec = stored["spec"]
    assert spec["cacheNames"] == ["catalog", "prices"]
    assert spec["hotKey"]["threshold"] == 250 and spec["hotKey"]["window"] == "5s"
    assert spec["nearCache"]["maxEntries"] == 500 and spec["nearCache"]["ttl"] == "20s"
    assert spec["breaker"]["errorRatio"] in ("40%", 0.4)
    assert spec["breaker"]["staleIfError"] == "30s" and spec["breaker"]["whenOpen"] == "Miss"
    assert spec["bigValue"]["refuseAbove"] in ("8MiB", 8 * 1024 * 1024)
