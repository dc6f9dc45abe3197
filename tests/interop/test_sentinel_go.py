"""A tiny Go HTTP service governed by Sentinel-Go (github.com/alibaba/sentinel-golang v1.0.4) through
our control plane: a rate limit applied with `opensergo apply` makes Sentinel block requests.

Sentinel-Go's own OpenSergo data source (github.com/alibaba/sentinel-golang/pkg/datasource/opensergo)
cannot be resolved from the Go module proxy here, nor can the Go SDK version it needs, so
interop/go/sentinel.go bridges the pushes to Sentinel flow rules the way that data source does
(docs/interop.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ControlPlaneProcess, free_port, wait_until
from tests.interop.conftest import ProgramRun, go_command
from tests.interop.expected import cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RULES = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata:
  name: hello-limit
  labels:
    app: sentinel-app
spec:
  metricType: RequestAmount
  limitMode: Local
  threshold: {threshold}
  statDurationSeconds: 1
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata:
  name: hello-rule
  labels:
    app: sentinel-app
spec:
  targets:
    - targetResourceName: GET:/hello
  strategies:
    - name: hello-limit
      kind: RateLimitStrategy
"""


def burst(url: str, count: int) -> list[int]:
    with httpx.Client(timeout=5) as http:
        return [http.get(url).status_code for _ in range(count)]


def loaded(go: ProgramRun, threshold: float) -> dict[str, Any]:
    """The newest flow-rule event with exactly the /hello rule at ``threshold``, else {}."""
    want = [{"resource": "GET:/hello", "threshold": threshold, "statIntervalInMs": 1000}]
    for event in reversed(go.events("sentinel_rules")):
        if event["rules"] == want:
            found: dict[str, Any] = event
            return found
    return {}


def test_rate_limit_applied_with_opensergo_apply_blocks_in_sentinel_go(
    control_plane: ControlPlaneProcess,
    go_client: Path,
    run_program: Callable[..., ProgramRun],
    tmp_path: Path,
) -> None:
    port = free_port()
    go = run_program(
        "sentinel-service",
        go_command(
            go_client,
            control_plane,
            "-app",
            "sentinel-app",
            "-kinds",
            "FaultToleranceRule,RateLimitStrategy",
            "-sentinel-listen",
            f"127.0.0.1:{port}",
            "-sentinel-log-dir",
            str(tmp_path / "sentinel-logs"),
        ),
    )
    url = f"http://127.0.0.1:{port}/hello"
    wait_until(lambda: go.events("sentinel_started"), timeout=10, what="the Sentinel-Go service")
    # No rule yet: nothing is blocked.
    wait_until(lambda: burst(url, 1) == [200], timeout=10, what="the HTTP service")
    assert set(burst(url, 20)) == {200}
    # Sentinel counts passes even without a rule: let its 1 s window slide past that burst, or
    # the new threshold would start out exhausted.
    time.sleep(1.1)

    cli(control_plane, "apply", "-f", "-", stdin=RULES.format(threshold=3))
    event = wait_until(lambda: loaded(go, 3), timeout=10, what="Sentinel flow rule threshold 3")
    assert event["error"] == ""
    codes = burst(url, 30)
    passed = codes.count(200)
    assert codes.count(429) >= 20, codes  # at most 3 per second pass (6 across a second boundary)
    assert 1 <= passed <= 6, codes
    assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 200  # other resources

    # Raising the limit with `opensergo apply` lifts the blocking.
    cli(control_plane, "apply", "-f", "-", stdin=RULES.format(threshold=1000))
    wait_until(lambda: loaded(go, 1000), timeout=10, what="Sentinel flow rule threshold 1000")
    assert set(burst(url, 30)) == {200}
