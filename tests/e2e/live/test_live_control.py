"""Live control: `opensergo apply` / `delete` take effect on real FastAPI and Flask processes.

Each app runs in its own process (uvicorn for FastAPI, Flask's threaded server), governed through
``enable_from_env``. The rule-to-effect latency is measured from the moment the CLI command
returns to the first response showing the change, and printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, ControlPlaneProcess, start_inside_a_breaker_window, wait_until

from .conftest import EXAMPLES, Cli, LiveApp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BUDGET = 1.0  # seconds from the CLI returning to the effect


def rate_limit_rules(app: str, resource: str) -> str:
    return f"""
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {{name: hello-limit, namespace: default, labels: {{app: {app}}}}}
spec: {{metricType: RequestAmount, limitMode: Local, threshold: 2, statDuration: 1s}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HttpRequestFallbackAction
metadata: {{name: hello-busy, namespace: default, labels: {{app: {app}}}}}
spec:
  behavior: ReturnProvidedResponse
  behaviorDesc:
    responseStatusCode: 429
    responseContentBody: '{{"error": "slow down", "app": "{app}"}}'
    responseAdditionalHeaders:
      - {{key: Content-Type, value: application/json}}
      - {{key: X-OpenSergo-Fallback, value: hello-busy}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: hello-rule, namespace: default, labels: {{app: {app}}}}}
spec:
  targets: [{{targetResourceName: '{resource}'}}]
  strategies: [{{name: hello-limit, kind: RateLimitStrategy}}]
  fallbackAction: {{name: hello-busy, kind: HttpRequestFallbackAction}}
"""


def breaker_rules(app: str) -> str:
    return f"""
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: CircuitBreakerStrategy
metadata: {{name: flaky-breaker, namespace: default, labels: {{app: {app}}}}}
spec:
  strategy: ErrorRequestRatio
  triggerRatio: '50%'
  statDuration: 10s
  recoveryTimeout: 1s
  minRequestAmount: 4
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HttpRequestFallbackAction
metadata: {{name: flaky-open, namespace: default, labels: {{app: {app}}}}}
spec:
  behavior: ReturnProvidedResponse
  behaviorDesc:
    responseStatusCode: 503
    responseContentBody: circuit open
    responseAdditionalHeaders: [{{key: Retry-After, value: '1'}}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: flaky-rule, namespace: default, labels: {{app: {app}}}}}
spec:
  targets: [{{targetResourceName: 'GET:/flaky'}}]
  strategies: [{{name: flaky-breaker, kind: CircuitBreakerStrategy}}]
  fallbackAction: {{name: flaky-open, kind: HttpRequestFallbackAction}}
"""


def is_fallback(response: httpx.Response, app: str) -> bool:
    return (
        response.status_code == 429
        and response.headers.get("x-opensergo-fallback") == "hello-busy"
        and response.headers.get("content-type") == "application/json"
        and response.json() == {"error": "slow down", "app": app}
    )


def apply_and_measure(cli: Cli, app: LiveApp, rules: Path, path: str) -> tuple[float, float]:
    """Apply ``rules``; the seconds from the CLI returning (and from its start) to the first
    fallback response."""
    for _ in range(5):  # not limited before
        assert app.http.get(path).status_code == 200
    returned = cli.apply(rules)
    deadline = returned + 10
    while time.monotonic() < deadline:
        response = app.http.get(path)
        if response.status_code != 200:
            now = time.monotonic()
            assert is_fallback(response, app.app), (response.status_code, response.headers, response.text)
            return now - returned, now - cli.started
    raise AssertionError(f"the rule did not take effect on {app.app} within 10 s")


def delete_and_measure(cli: Cli, app: LiveApp, rules: Path, path: str) -> float:
    """Delete ``rules``; the seconds from the CLI returning until blocks stopped (the start of 6
    consecutive successes, 3x the limit, within a few ms)."""
    returned = cli.delete(rules)
    deadline = returned + 10
    streak_start: float | None = None
    streak = 0
    while time.monotonic() < deadline:
        sent = time.monotonic()
        response = app.http.get(path)
        if response.status_code == 200:
            if streak == 0:
                streak_start = sent
            streak += 1
            if streak >= 6:
                assert streak_start is not None
                return max(0.0, streak_start - returned)
        else:
            assert is_fallback(response, app.app)
            streak = 0
    raise AssertionError(f"blocks did not stop on {app.app} within 10 s")


def run_rate_limit_scenario(cli: Cli, app: LiveApp, tmp_path: Path, resource: str, path: str) -> None:
    rules = tmp_path / f"{app.app}-rate-limit.yaml"
    rules.write_text(rate_limit_rules(app.app, resource))
    applied, whole = apply_and_measure(cli, app, rules, path)
    print(
        f"\n[{app.app}] {resource}: apply returned -> first fallback response: {applied * 1000:.1f} ms"
        f" (from starting the CLI process: {whole * 1000:.0f} ms)"
    )
    assert applied < BUDGET
    status = app.status()
    assert resource in status["resources"]
    assert any(key.startswith(f"{resource}|hello-rule|hello-limit") for key in status["blocks"])
    lifted = delete_and_measure(cli, app, rules, path)
    print(f"[{app.app}] {resource}: delete returned -> blocks stopped: {lifted * 1000:.1f} ms")
    assert lifted < BUDGET
    wait_until(lambda: resource not in app.status()["resources"], timeout=5, what="rule gone")


def test_fastapi_app_live_rate_limit_and_breaker(
    live: tuple[Cli, list[LiveApp]], control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    cli, apps = live
    app = LiveApp(EXAMPLES / "fastapi_app.py", "fastapi-demo", control_plane, tmp_path)
    apps.append(app)
    app.wait_ready()
    run_rate_limit_scenario(cli, app, tmp_path, "GET:/hello", "/hello")

    # The route template is the resource: one limit shared by every user id.
    rules = tmp_path / "users.yaml"
    rules.write_text(rate_limit_rules(app.app, "GET:/users/{user_id}"))
    cli.apply(rules)
    wait_until(lambda: "GET:/users/{user_id}" in app.status()["resources"], timeout=5, what="users rule")
    codes = [app.http.get(f"/users/{i}").status_code for i in range(4)]
    assert codes.count(429) >= 2, codes
    cli.delete(rules)

    # A circuit breaker: 500s open it, the fallback answers while open, a good probe closes it.
    breaker = tmp_path / "breaker.yaml"
    breaker.write_text(breaker_rules(app.app))
    returned = cli.apply(breaker)
    wait_until(lambda: "GET:/flaky" in app.status()["resources"], timeout=5, what="breaker rule")
    print(f"[{app.app}] breaker rule visible after {(time.monotonic() - returned) * 1000:.0f} ms (polled)")
    start_inside_a_breaker_window(10)  # the four failures in one statDuration window
    for _ in range(4):
        assert app.http.get("/flaky", params={"fail": "true"}).status_code == 500
    opened = app.http.get("/flaky")
    assert (opened.status_code, opened.text, opened.headers["retry-after"]) == (503, "circuit open", "1")
    started = time.monotonic()
    wait_until(
        lambda: app.http.get("/flaky").status_code == 200, timeout=5, interval=0.1, what="half-open probe"
    )
    assert time.monotonic() - started >= 0.5  # it waited for the 1 s recovery timeout
    assert all(app.http.get("/flaky").status_code == 200 for _ in range(5))  # closed again
    cli.delete(breaker)


def test_flask_app_live_rate_limit(
    live: tuple[Cli, list[LiveApp]], control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    cli, apps = live
    app = LiveApp(EXAMPLES / "flask_app.py", "flask-demo", control_plane, tmp_path)
    apps.append(app)
    app.wait_ready()
    run_rate_limit_scenario(cli, app, tmp_path, "GET:/hello", "/hello")
    # Flask URL rules are the resource names: GET:/users/<user_id>
    run_rate_limit_scenario(cli, app, tmp_path, "GET:/users/<user_id>", "/users/7")


def test_launcher_governs_an_unmodified_flask_app(
    live: tuple[Cli, list[LiveApp]], control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    """``opensergo-run -- python flask_app.py --plain``: the app has no OpenSergo code at all."""
    cli, apps = live
    launcher = ROOT / "src" / "opensergo" / "launcher.py"
    flask_app = str(EXAMPLES / "flask_app.py")
    app = LiveApp(launcher, "flask-auto", control_plane, tmp_path, "--", "python", flask_app, "--plain")
    apps.append(app)
    app.wait_ready()
    run_rate_limit_scenario(cli, app, tmp_path, "GET:/users/<user_id>", "/users/3")
