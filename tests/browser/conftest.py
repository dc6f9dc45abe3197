"""Browser tests: Playwright driving Debian's Chromium (never a downloaded browser).

Skipped only when /usr/bin/chromium is missing (`apt-get install chromium`). Set
OPENSERGO_UPDATE_SCREENSHOTS=1 to write the screenshots under docs/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers import ROOT, ControlPlaneProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}  # a common laptop screen
TOKENS = {
    "tokens": [
        {"name": "alice", "token": "alice-admin-token", "roles": {"*": "admin"}},
        {"name": "bob", "token": "bob-viewer-token", "roles": {"*": "viewer"}},
    ]
}


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    """Every browser test needs Debian's chromium; without it they fail (never skip: a skipped
    test passes nothing). ``make test`` installs it (scripts/system-deps.sh)."""
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")


def screenshot(page: Page, name: str, full_page: bool = False) -> None:
    """Save a screenshot under docs/screenshots when OPENSERGO_UPDATE_SCREENSHOTS is set."""
    if os.environ.get("OPENSERGO_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def secured_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    base = tmp_path_factory.mktemp("dashboard")
    tokens = base / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    logs = base / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(
        base / "data",
        logs,
        ["--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens), "--heartbeat-interval", "2"],
    )
    cp.start()
    yield cp
    cp.stop()


def login(page: Page, url: str, token: str = "alice-admin-token") -> None:
    page.goto(url + "/#/login")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("main[data-ready=overview]")


@contextmanager
def logged_in_page(browser: Browser, url: str) -> Iterator[Page]:
    """A page of a fresh context, logged in as alice; on leaving, no page error and no console
    error (but the 401s of the login itself) may have happened."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text else None)
    login(p, url)
    yield p
    context.close()
    assert not errors, errors
