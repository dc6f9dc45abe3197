"""The dashboard in a real browser against a real control plane with auth on, a live SDK client
and live metrics: logging in, apps, creating a rule through a validation error, its ACK,
a live chart, the form view, a rollback and a delete."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from opensergo.client import Heartbeat, InstanceInfo, OpenSergoClient, ServiceInfo, Snapshot
from opensergo.governance import BlockedError, Engine, guard, load_rules
from opensergo.observability import enable_metrics
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from tests.browser.conftest import VIEWPORT, logged_in_page, screenshot
from tests.helpers import ControlPlaneProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE_KIND = f"{FT}/RateLimitStrategy"
ADMIN = {"Authorization": "Bearer alice-admin-token"}
BAD_RULE = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata:
  name: shop-limit
  namespace: default
  labels:
    app: shop
spec:
  threshold: -1
  statDuration: 1s
"""
METRIC_RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: orders-limit, labels: {app: shop}}
spec: {threshold: 5, statDuration: 1s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: orders-rule, labels: {app: shop}}
spec:
  targets: [{targetResourceName: "GET:/orders"}]
  strategies: [{name: orders-limit, kind: RateLimitStrategy}]
"""


def contract() -> sc.ServiceContract:
    method = sc.MethodDescriptor(
        name="ListOrders",
        input_types=["shop.ListOrdersRequest"],
        output_types=["shop.ListOrdersReply"],
        http_paths=["/orders"],
        http_methods=["GET"],
    )
    return sc.ServiceContract(
        services=[sc.ServiceDescriptor(name="shop.OrderService", methods=[method], description="Orders")],
        types=[
            sc.TypeDescriptor(
                name="shop.ListOrdersRequest", fields=[sc.FieldDescriptor(name="page", number=1)]
            )
        ],
    )


@pytest.fixture(scope="module")
def sdk(
    secured_cp: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenSergoClient]:
    """A live data plane of app "shop": reports its contract, subscribes to rate limits."""
    client = OpenSergoClient(
        secured_cp.grpc_address,
        app="shop",
        snapshot=Snapshot(tmp_path_factory.mktemp("snap")),
        heartbeat=Heartbeat(interval=2.0),
        token="alice-admin-token",  # the gRPC port has auth too
        service_metadata=[
            ServiceInfo(
                protocols=["http"], listening_addresses=["127.0.0.1:8080"], service_contract=contract()
            )
        ],
        instance=InstanceInfo(
            tag="blue",
            env="prod",
            cluster="eu-1",
            region="eu",
            zone="eu-1a",
            labels={"language": "python", "framework": "fastapi"},
        ),
    )
    client.subscribe(RATE_KIND)
    client.start()
    yield client
    client.stop()


@pytest.fixture(scope="module")
def page(browser: Browser, secured_cp: ControlPlaneProcess) -> Iterator[Page]:
    with logged_in_page(browser, secured_cp.http_url) as p:
        yield p


def test_login(browser: Browser, secured_cp: ControlPlaneProcess) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    try:
        page.goto(secured_cp.http_url + "/#/rules")
        page.wait_for_selector("main[data-ready=login]")
        screenshot(page, "login")
        page.get_by_label("Access token").fill("not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not valid")
        page.get_by_label("Access token").fill("bob-viewer-token")
        page.keyboard.press("Enter")
        page.wait_for_selector("main[data-ready=rules]")  # back where the user wanted to go
        expect(page.locator("#session")).to_contain_text("bob")
        # A viewer sees rules but cannot create them.
        page.goto(secured_cp.http_url + "/#/rules/new")
        page.wait_for_selector("main[data-ready=rules]")
        expect(page.locator(".alert.info")).to_contain_text("Read-only")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_selector("main[data-ready=login]")
    finally:
        context.close()


def test_app_list_and_app_page(page: Page, secured_cp: ControlPlaneProcess, sdk: OpenSergoClient) -> None:
    url = secured_cp.http_url
    wait_until(
        lambda: httpx.get(f"{url}/api/v1/apps", headers=ADMIN).json()["items"],
        timeout=15,
        what="the app registered",
    )
    page.goto(url + "/#/apps")
    page.wait_for_selector("main[data-ready=apps]")
    row = page.locator("table.apps tbody tr", has_text="shop")
    expect(row).to_contain_text("1 / 1")
    expect(row).to_contain_text("healthy")
    expect(row).to_contain_text("python")
    expect(row).to_contain_text("fastapi")
    expect(row).to_contain_text("shop.OrderService")
    screenshot(page, "apps")
    row.get_by_role("link", name="shop").click()
    page.wait_for_selector("main[data-ready=apps] h1:text('shop')")
    instances = page.locator("table.instances")
    for text in ("blue", "prod", "eu-1", "eu / eu-1a", "127.0.0.1:8080", "healthy"):
        expect(instances).to_contain_text(text)
    screenshot(page, "app-instances")
    page.get_by_role("tab", name="Service contracts").click()
    expect(page.locator("#tabpanel")).to_contain_text("shop.OrderService")
    expect(page.locator("#tabpanel")).to_contain_text("GET /orders")
    expect(page.locator("#tabpanel")).to_contain_text("shop.ListOrdersRequest")
    page.get_by_role("tab", name="Subscribed kinds").click()
    expect(page.locator("#tabpanel")).to_contain_text("RateLimitStrategy")
    # Keyboard: arrow keys move between tabs.
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Service contracts")).to_have_attribute("aria-selected", "true")


def test_create_rule_with_a_validation_error_then_acked(
    page: Page, secured_cp: ControlPlaneProcess, sdk: OpenSergoClient
) -> None:
    url = secured_cp.http_url
    page.goto(url + "/#/rules/new?kind=ratelimitstrategies")
    page.wait_for_selector("main[data-ready=rules]")
    editor = page.get_by_label("YAML definition")
    editor.fill(BAD_RULE)
    problem = page.locator(".problems li")
    expect(problem).to_contain_text("spec.threshold")
    expect(problem).to_contain_text(">= 0")
    expect(problem).to_contain_text("Line 9")
    expect(page.locator(".gutter span.err")).to_have_text("9")
    expect(editor).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Review and create")).to_be_disabled()
    screenshot(page, "rule-validation-error")
    # Nothing was saved.
    assert (
        httpx.get(
            f"{url}/apis/{FT}/namespaces/default/ratelimitstrategies/shop-limit", headers=ADMIN
        ).status_code
        == 404
    )

    problem.get_by_role("button", name="Line 9").click()  # jumps to the line
    editor.fill(BAD_RULE.replace("threshold: -1", "threshold: 10"))
    expect(page.locator(".status-line")).to_contain_text("valid")
    page.get_by_role("button", name="Review and create").click()
    expect(page.locator(".diff")).to_contain_text("+  threshold: 10")
    screenshot(page, "rule-diff")
    page.get_by_role("button", name="Create", exact=True).click()

    # The rollout view: the live SDK client ACKs the new version.
    page.wait_for_selector("main[data-ready=rules] table.rollout")
    row = page.locator("table.rollout tbody tr", has_text=sdk.identifier)
    expect(row).to_contain_text("acked", timeout=15_000)
    wait_until(lambda: [r.name for r in sdk.get(RATE_KIND)] == ["shop-limit"], what="the SDK holds the rule")
    text = page.inner_text("main")
    assert "null" not in text and "undefined" not in text
    screenshot(page, "rule-rollout")


def test_live_chart_updates(page: Page, secured_cp: ControlPlaneProcess) -> None:
    engine = Engine()
    load_rules(METRIC_RULES, app="shop", engine=engine)
    handle = enable_metrics(
        app="shop",
        endpoint=secured_cp.grpc_address,
        engine=engine,
        interval=0.5,
        framework="fastapi",
        token="alice-admin-token",  # the gRPC port has auth too
    )
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                with guard("GET:/orders", engine=engine):
                    time.sleep(random.uniform(0.001, 0.02))
            except BlockedError:
                pass
            time.sleep(0.01 + 0.02 * (1 + math.sin(time.time() / 3)))

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        page.goto(secured_cp.http_url + "/#/apps/default/shop?tab=metrics")
        card = page.locator('.resource-card[data-resource="GET:/orders"]')
        expect(card).to_be_visible(timeout=15_000)
        block_line = card.locator('path[data-series="block"]')
        wait_until(lambda: "L" in (block_line.get_attribute("d") or ""), timeout=15, what="a block line")
        first = block_line.get_attribute("d")
        wait_until(lambda: block_line.get_attribute("d") != first, timeout=10, what="the chart to move")
        summary = card.locator("header")
        expect(summary).to_contain_text("block/s")
        qps_chart = card.locator("svg").first
        label = qps_chart.get_attribute("aria-label") or ""
        assert "Requests per second" in label and "block" in label
        if os.environ.get("OPENSERGO_UPDATE_SCREENSHOTS"):
            time.sleep(12)  # a fuller chart for the picture
        screenshot(page, "live-metrics")
    finally:
        stop.set()
        worker.join(5)
        handle.shutdown()
        engine.close()


def test_form_view_edit_and_rollback(
    page: Page, secured_cp: ControlPlaneProcess, sdk: OpenSergoClient
) -> None:
    url = secured_cp.http_url
    rule_url = f"{url}/apis/{FT}/namespaces/default/ratelimitstrategies/shop-limit"
    first_version = httpx.get(rule_url, headers=ADMIN).json()["metadata"]["resourceVersion"]
    page.goto(url + "/#/rules/default/ratelimitstrategies/shop-limit")
    page.wait_for_selector("main[data-ready=rules]")
    expect(page.locator(".status-line")).to_contain_text("valid")
    # Edit through the form view: the YAML follows.
    page.get_by_role("button", name="Form").click()
    threshold = page.get_by_label("Threshold", exact=True)
    expect(threshold).to_have_value("10")
    threshold.fill("25")
    expect(page.get_by_role("button", name="Review changes")).to_be_enabled()
    screenshot(page, "rule-form")
    page.get_by_role("button", name="Review changes").click()
    expect(page.locator(".diff")).to_contain_text("-  threshold: 10")
    expect(page.locator(".diff")).to_contain_text("+  threshold: 25")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_selector("main[data-ready=rules] table.rollout")
    wait_until(lambda: sdk.get(RATE_KIND)[0].spec.threshold == 25, what="the SDK got threshold 25")

    # History: roll back to the first version, after seeing the diff.
    page.get_by_role("tab", name="History").click()
    page.locator(f'button[data-rollback="{first_version}"]').click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("+  threshold: 10")
    expect(dialog).to_contain_text("-  threshold: 25")
    screenshot(page, "rule-rollback")
    dialog.get_by_role("button", name="Roll back").click()
    wait_until(
        lambda: httpx.get(rule_url, headers=ADMIN).json()["spec"]["threshold"] == 10, what="rolled back"
    )
    wait_until(lambda: sdk.get(RATE_KIND)[0].spec.threshold == 10, what="the SDK got the rollback")
    page.wait_for_selector("main[data-ready=rules] table.history")
    expect(page.locator("table.history tbody tr").first).to_contain_text("current")
    screenshot(page, "rule-history")

    # Delete, with confirmation.
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert httpx.get(rule_url, headers=ADMIN).status_code == 200
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.wait_for_selector("main[data-ready=rules] table.rules")
    wait_until(lambda: httpx.get(rule_url, headers=ADMIN).status_code == 404, what="deleted")
    wait_until(lambda: sdk.get(RATE_KIND) == [], what="the SDK dropped the rule")


def test_overview_rules_and_clients_pages(
    page: Page, secured_cp: ControlPlaneProcess, sdk: OpenSergoClient
) -> None:
    url = secured_cp.http_url
    body: dict[str, Any] = {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": "checkout-limit", "labels": {"app": "shop"}},
        "spec": {"threshold": 50, "statDuration": "1s"},
    }
    assert httpx.put(
        f"{url}/apis/{FT}/namespaces/default/ratelimitstrategies/checkout-limit", json=body, headers=ADMIN
    ).is_success
    page.goto(url + "/#/")
    page.wait_for_selector("main[data-ready=overview]")
    expect(page.locator(".cards")).to_contain_text("Connected clients")
    screenshot(page, "overview")
    page.goto(url + "/#/rules")
    page.wait_for_selector("main[data-ready=rules] table.rules")
    row = page.locator("table.rules tbody tr", has_text="checkout-limit")
    expect(row).to_contain_text("1 ACKed", timeout=10_000)
    page.get_by_label("Kind").select_option("faulttolerancerules")
    expect(page.locator("table.rules tbody tr", has_text="checkout-limit")).to_have_count(0)
    page.get_by_label("Kind").select_option("")
    screenshot(page, "rules")
    page.goto(url + "/#/clients")
    page.wait_for_selector("main[data-ready=clients]")
    expect(page.locator("table.clients")).to_contain_text(sdk.identifier)
    screenshot(page, "clients")


def test_screens_fit_a_laptop_and_have_labels(page: Page, secured_cp: ControlPlaneProcess) -> None:
    for route, ready in (("#/apps", "apps"), ("#/rules", "rules"), ("#/rules/new", "rules")):
        page.goto(f"{secured_cp.http_url}/{route}")
        page.wait_for_selector(f"main[data-ready={ready}]")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORT["width"], f"{route} scrolls sideways ({width}px)"
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter((el) => !el.labels?.length && !el.getAttribute('aria-label'))
                .map((el) => el.outerHTML)"""
        )
        assert unlabeled == [], unlabeled
    # Keyboard: on a fresh load the skip link is the first stop, then the navigation.
    page.reload()
    page.wait_for_selector("main[data-ready=rules]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "brand"
    page.keyboard.press("Enter")
    page.wait_for_selector("main[data-ready=overview]")
