"""The HotParamRateLimitStrategy form in a real browser against a real control plane: the fields
show the stored object, an edit (threshold, exception items) is reviewed as a YAML diff and
applied, and the stored object then holds exactly what the form said."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import logged_in_page, screenshot
from tests.helpers import ControlPlaneProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
ADMIN = {"Authorization": "Bearer alice-admin-token"}


@pytest.fixture
def page(browser: Browser, secured_cp: ControlPlaneProcess) -> Iterator[Page]:
    with logged_in_page(browser, secured_cp.http_url) as p:
        yield p


def test_hot_param_form_edits_threshold_and_exception_items(
    page: Page, secured_cp: ControlPlaneProcess
) -> None:
    url = secured_cp.http_url
    obj_url = f"{url}/apis/{FT}/namespaces/default/hotparamratelimitstrategies/per-user"
    body = {
        "apiVersion": FT,
        "kind": "HotParamRateLimitStrategy",
        "metadata": {"name": "per-user", "namespace": "default", "labels": {"app": "shop"}},
        "spec": {"param": {"source": "query", "name": "user_id"}, "threshold": 5, "statDuration": "1s"},
    }
    assert httpx.put(obj_url, json=body, headers=ADMIN).status_code in (200, 201)

    page.goto(url + "/#/rules/default/hotparamratelimitstrategies/per-user")
    page.wait_for_selector("main[data-ready=rules]")
    page.get_by_role("button", name="Form").click()
    expect(page.get_by_label("Parameter source", exact=True)).to_have_value("query")
    expect(page.get_by_label("Parameter name", exact=True)).to_have_value("user_id")
    threshold = page.get_by_label("Threshold per value", exact=True)
    expect(threshold).to_have_value("5")
    threshold.fill("3")
    page.get_by_label("Exception items", exact=True).fill("vip=100\nabuser=0")
    screenshot(page, "hotparam-form")
    page.get_by_role("button", name="Review changes").click()
    expect(page.locator(".diff")).to_contain_text("+  threshold: 3")
    expect(page.locator(".diff")).to_contain_text("value: vip")
    page.get_by_role("button", name="Apply").click()
    wait_until(
        lambda: (
            httpx.get(obj_url, headers=ADMIN).json()["spec"].get("exceptionItems")
            == [{"value": "vip", "threshold": 100}, {"value": "abuser", "threshold": 0}]
        ),
        what="the edit stored",
    )
    assert httpx.get(obj_url, headers=ADMIN).json()["spec"]["threshold"] == 3
