"""GlobalToLocal follows the live instance count that the control plane pushes.

An in-process Governance (its own engine) is one instance of ``g2l-app``; a second instance is a
real process (tests/integration/apps/instance.py). The local share of a GlobalToLocal threshold
of 10 goes 10 -> 5 when the second instance registers and back to 10 when it stops.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.client import Heartbeat, OpenSergoClient, ServiceInfo
from opensergo.governance import Engine, RateLimitedError
from opensergo.governance.faulttolerance.checks import describe
from opensergo.governance.runtime import attach
from tests.helpers import ROOT, ControlPlaneProcess, free_port, spawn_python, wait_until

from .conftest import Cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

APP = "g2l-app"
RESOURCE = "GET:/g2l"
INSTANCE = ROOT / "tests" / "integration" / "apps" / "instance.py"

RULES = f"""
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {{name: shared-limit, namespace: default, labels: {{app: {APP}}}}}
spec: {{metricType: RequestAmount, limitMode: GlobalToLocal, threshold: 10, statDuration: 1s}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: shared-rule, namespace: default, labels: {{app: {APP}}}}}
spec:
  targets: [{{targetResourceName: '{RESOURCE}'}}]
  strategies: [{{name: shared-limit, kind: RateLimitStrategy}}]
"""


def threshold(engine: Engine) -> int | None:
    checks = engine.checks(RESOURCE)
    if checks is None:
        return None
    limits = describe(checks)["rate_limits"]
    return int(limits[0][0]) if limits else None


def admitted(engine: Engine, tries: int = 20) -> int:
    passed = 0
    for _ in range(tries):
        try:
            engine.entry(RESOURCE).exit()
            passed += 1
        except RateLimitedError:
            pass
    return passed


def instances(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    response = httpx.get(f"{cp.http_url}/api/v1/instances", params={"app": APP}, timeout=5)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_global_to_local_share_follows_instances(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    engine = Engine()
    client = OpenSergoClient(
        control_plane.grpc_address,
        app=APP,
        snapshot=None,
        heartbeat=Heartbeat(interval=0.5),
        service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=[f"127.0.0.1:{free_port()}"])],
    )
    governance = attach(client, engine)
    governance.start()
    other = None
    try:
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES)
        Cli(control_plane).apply(rules)
        wait_until(
            lambda: governance.instance_count == 1 and threshold(engine) == 10, timeout=10, what="1 instance"
        )

        log = tmp_path / "instance.log"
        other = spawn_python(INSTANCE, control_plane.grpc_address, APP, str(free_port()), log=log)
        deadline = time.monotonic() + 20
        while engine.instances != 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        updated = time.time()  # wall clock, as the control plane's firstSeen
        assert engine.instances == 2, log.read_text(errors="replace")
        assert threshold(engine) == 5
        [listed] = [i for i in instances(control_plane) if i["pid"] == other.pid]
        join = updated - listed["firstSeen"]
        print(f"\n[{APP}] 2nd instance registered -> local share 5: {join * 1000:.0f} ms")
        assert 0 < join < 3.0  # a speed figure (printed above): only a hang or a 10x regression fails
        assert admitted(engine) == 5

        other.send_signal(signal.SIGTERM)
        other.wait(timeout=10)
        gone = time.monotonic()
        wait_until(lambda: engine.instances == 1, timeout=5, interval=0.01, what="instance left")
        leave = time.monotonic() - gone
        print(f"[{APP}] 2nd instance exited -> local share 10: {leave * 1000:.0f} ms")
        assert leave < 3.0
        assert threshold(engine) == 10
    finally:
        if other is not None and other.poll() is None:
            other.kill()
            other.wait(timeout=5)
        governance.stop()
        engine.close()
