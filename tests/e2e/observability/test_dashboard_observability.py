"""The dashboard's observability views in Chromium, over launched services and a real control
plane: the endpoint list (live figures, rules, "Protect this endpoint" opening the rule form with
the target filled in), the trace waterfall across two services, and the block points of the
live-metrics chart leading to the blocked traces.

``OPENSERGO_UPDATE_SCREENSHOTS=1`` writes the screenshots under docs/screenshots/.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, screenshot
from tests.helpers import ControlPlaneProcess, free_port, put_object, wait_until

from .conftest import Launched, api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def rate_limit(app: str, resource: str, threshold: int) -> list[dict[str, Any]]:
    meta = {"namespace": "default", "labels": {"app": app}}
    return [
        {
            "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
            "kind": "RateLimitStrategy",
            "metadata": {"name": "two-per-second", **meta},
            "spec": {
                "metricType": "RequestAmount",
                "limitMode": "Local",
                "threshold": threshold,
                "statDuration": "1s",
            },
        },
        {
            "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
            "kind": "FaultToleranceRule",
            "metadata": {"name": "protect-calls", **meta},
            "spec": {
                "targets": [{"targetResourceName": resource}],
                "strategies": [{"name": "two-per-second", "kind": "RateLimitStrategy"}],
            },
        },
    ]


def test_endpoints_trace_view_and_blocked_traces(
    browser: Browser, cp: ControlPlaneProcess, launched: Launched
) -> None:
    back_port, front_port = free_port(), free_port()
    launched.run(
        "backend",
        "backend-app",
        {"version": "v1"},
        ["python", "backend.py", str(back_port)],
        APP_VERSION="v1",
    )
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "frontend:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(front_port),
    ]
    launched.run("frontend", "frontend", {}, uvicorn)
    front = httpx.Client(base_url=f"http://127.0.0.1:{front_port}", timeout=10)
    wait_until(lambda: front.get("/call/1").status_code == 200, timeout=90, interval=0.3, what="the frontend")
    for body in rate_limit("frontend", "GET:/call/{user_id}", 2):
        assert put_object(cp, body).status_code in (200, 201)

    # Traffic: one traced call across both services, then bursts that the limit partly blocks.
    assert front.get(
        "/call/7", headers={"traceparent": f"00-{TRACE_ID}-2222222222222222-01"}
    ).status_code in (200, 429)

    def some_blocked() -> bool:
        return any(front.get(f"/call/{n}").status_code == 429 for n in range(6))

    wait_until(some_blocked, timeout=30, interval=0.2, what="blocked calls")
    blocked = {"namespace": "default", "app": "frontend", "blocked": "true"}
    wait_until(lambda: api(cp, "/api/v1/traces", **blocked)["items"], timeout=30, what="blocked traces")
    wait_until(lambda: len({s["app"] for s in api(cp, f"/api/v1/traces/{TRACE_ID}")["spans"]}) == 2,
               timeout=30, what="the trace of both services")  # fmt: skip

    page: Page = browser.new_page(viewport=VIEWPORT)
    try:
        # Endpoints: the frontend's route with its live figures and the rule protecting it.
        page.goto(f"{cp.http_url}/#/apps/default/frontend?tab=endpoints")
        rows = page.locator("[data-testid=endpoint-list] tbody tr")
        expect(rows.filter(has_text="GET:/call/{user_id}")).to_have_count(1, timeout=20_000)
        call = rows.filter(has_text="GET:/call/{user_id}")
        expect(call).to_contain_text("protect-calls", timeout=20_000)
        expect(call).to_contain_text("pass/s", timeout=20_000)
        expect(call).to_contain_text("Greeting")
        screenshot(page, "endpoints")
        page.goto(f"{cp.http_url}/#/apps/default/backend-app?tab=endpoints")
        backend_rows = page.locator("[data-testid=endpoint-list] tbody tr")
        expect(backend_rows.filter(has_text="GET:/hello/<user_id>")).to_have_count(1, timeout=20_000)
        expect(backend_rows.filter(has_text="POST:/orders")).to_have_count(1)
        expect(backend_rows.filter(has_text="GET:/hello/<user_id>")).to_contain_text("unprotected")

        # "Protect this endpoint": the rule form with the target filled in.
        page.locator('[data-protect="GET:/hello/<user_id>"]').click()
        expect(page.locator("main[data-ready=rules]")).to_be_visible(timeout=20_000)
        expect(page.locator("main h1")).to_have_text("New rule")
        page.get_by_role("button", name="Form").click()
        expect(page.get_by_label("Target resources")).to_have_value("GET:/hello/<user_id>")
        expect(page.get_by_label("Name", exact=True)).to_have_value("protect-get-hello-user-id")
        screenshot(page, "protect-endpoint")

        # The waterfall of the traced call: spans of both services, nested.
        page.goto(f"{cp.http_url}/#/traces/{TRACE_ID}")
        expect(page.locator("main[data-ready=apps]")).to_be_visible(timeout=20_000)
        waterfall = page.locator(".waterfall .wf-row")
        expect(waterfall.filter(has_text="backend-app")).not_to_have_count(0)
        expect(waterfall.filter(has_text="frontend")).not_to_have_count(0)
        backend_row = waterfall.filter(has_text="backend-app").first
        backend_row.click()
        expect(page.locator("#span-details")).to_contain_text("GET:/hello/<user_id>")
        screenshot(page, "trace-view", full_page=True)

        # Live metrics: a block point links to the traces blocked at that time.
        page.goto(f"{cp.http_url}/#/apps/default/frontend?tab=metrics")
        mark = page.locator('[data-resource="GET:/call/{user_id}"] a.block-mark').first
        expect(mark).to_be_attached(timeout=30_000)
        screenshot(page, "live-metrics-blocks")
        href = mark.get_attribute("href")
        assert href is not None and "blocked=1" in href and "resource=GET" in href
        page.goto(f"{cp.http_url}/{href}")
        listed = page.locator("[data-testid=trace-list] tbody tr")
        expect(listed.first).to_contain_text("blocked by protect-calls", timeout=20_000)
        screenshot(page, "blocked-traces")
        listed.first.locator("a").first.click()
        expect(page.locator(".wf-bar.blocked")).not_to_have_count(0, timeout=20_000)
        expect(page.locator("#span-details")).to_contain_text("Blocked by rule protect-calls")
    finally:
        page.close()
