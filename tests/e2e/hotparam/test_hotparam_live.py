"""A hot-parameter limit end to end: a FastAPI app on uvicorn, governed by a real control plane,
limited per ``user_id`` query parameter; the limit is changed live with ``opensergo apply -f``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, ControlPlaneProcess, free_port, spawn_python, stop_processes, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

APP = "orders"
RESOURCE = "GET:/orders"
HOT_KIND = "HotParamRateLimitStrategy"


def rules(threshold: int) -> str:
    # A one-minute window: nothing refills while the test counts.
    return f"""
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HotParamRateLimitStrategy
metadata: {{name: per-user, namespace: default, labels: {{app: {APP}}}}}
spec:
  param: {{source: query, name: user_id}}
  threshold: {threshold}
  statDuration: 1m
  exceptionItems:
    - {{value: vip, threshold: 100}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: orders-per-user, namespace: default, labels: {{app: {APP}}}}}
spec:
  targets: [{{targetResourceName: '{RESOURCE}'}}]
  strategies: [{{name: per-user, kind: HotParamRateLimitStrategy}}]
"""


def cli(cp: ControlPlaneProcess, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opensergo.cli", *args, "--server", cp.http_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, f"opensergo {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def orders_app(control_plane: ControlPlaneProcess, tmp_path: Path) -> Iterator[httpx.Client]:
    port = free_port()
    log = tmp_path / "orders.log"
    bootstrap = {"endpoint": control_plane.grpc_address, "snapshotDir": str(tmp_path / "snapshot")}
    env = {"OPENSERGO_BOOTSTRAP_CONFIG": json.dumps(bootstrap), "OPENSERGO_APP": APP}
    proc = spawn_python(Path(__file__).with_name("orders_app.py"), "--port", str(port), log=log, env=env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"orders app exited:\n{log.read_text(errors='replace')}")
        try:
            status = client.get("/opensergo/status").json()
        except httpx.HTTPError:
            return False
        return bool(status.get("connected")) and HOT_KIND in status.get("versions", {})

    try:
        wait_until(ready, timeout=30, interval=0.1, what="orders app subscribed to HotParamRateLimitStrategy")
        yield client
    finally:
        client.close()
        stop_processes([proc])
        print(log.read_text(errors="replace"))


def statuses(client: httpx.Client, user: str | None, n: int) -> list[int]:
    params = {"user_id": user} if user is not None else {}
    return [client.get("/orders", params=params).status_code for _ in range(n)]


def test_one_user_is_limited_others_untouched_and_the_cli_changes_the_limit(
    control_plane: ControlPlaneProcess, orders_app: httpx.Client, tmp_path: Path
) -> None:
    client = orders_app
    assert statuses(client, "alice", 5) == [200] * 5  # no rule yet

    path = tmp_path / "per-user.yaml"
    path.write_text(rules(3))
    cli(control_plane, "apply", "-f", str(path))
    wait_until(
        lambda: RESOURCE in client.get("/opensergo/status").json()["resources"],
        timeout=10,
        what="rule pushed",
    )

    assert statuses(client, "alice", 6) == [200] * 3 + [429] * 3  # one user is limited
    assert statuses(client, "bob", 3) == [200] * 3  # the others keep their own allowance
    assert statuses(client, "carol", 3) == [200] * 3
    assert statuses(client, "vip", 20) == [200] * 20  # an exception item
    assert statuses(client, None, 10) == [200] * 10  # no user_id: not limited
    blocked = client.get("/orders", params={"user_id": "alice"})
    assert blocked.status_code == 429 and "Blocked by" in blocked.text
    status = client.get("/opensergo/status").json()
    assert status["blocks"] == {f"{RESOURCE}|orders-per-user|per-user": 4}, status

    # Raise the limit live: the changed strategy starts with fresh buckets of 6.
    path.write_text(rules(6))
    cli(control_plane, "apply", "-f", str(path))
    wait_until(lambda: client.get("/orders", params={"user_id": "alice"}).status_code == 200, timeout=10)
    assert statuses(client, "alice", 6) == [200] * 5 + [429]  # 1 spent by the poll that saw it
    assert statuses(client, "dave", 7) == [200] * 6 + [429]

    # Lower it to 1: dave gets one request, erin too; alice is refused after her one.
    path.write_text(rules(1))
    cli(control_plane, "apply", "-f", str(path))
    wait_until(lambda: client.get("/orders", params={"user_id": "probe"}).status_code == 200, timeout=10)
    wait_until(lambda: statuses(client, "probe", 1) == [429], timeout=10, what="threshold 1 in effect")
    assert statuses(client, "erin", 3) == [200, 429, 429]

    # Delete the rule: nobody is limited any more.
    cli(control_plane, "delete", "-f", str(path))
    wait_until(lambda: statuses(client, "alice", 1) == [200], timeout=10, what="rule deleted")
    assert statuses(client, "alice", 10) == [200] * 10
