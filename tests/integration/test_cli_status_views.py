"""`opensergo get instances | apps | clients` through the CLI process, against a real control plane
with two real SDK instances of one app (one in this process, one in its own)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opensergo.client import Heartbeat, OpenSergoClient, ServiceInfo
from tests.helpers import ROOT, ControlPlaneProcess, free_port, run_cli, spawn_python, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP = "views-app"
KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
INSTANCE = ROOT / "tests" / "integration" / "apps" / "instance.py"


def cli(cp: ControlPlaneProcess, *args: str) -> str:
    done = run_cli("get", *args, "--server", cp.http_url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def items(cp: ControlPlaneProcess, *args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cli(cp, *args, "-o", "json"))["items"]
    return found


@pytest.fixture
def two_instances(control_plane: ControlPlaneProcess, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Two instances of APP: the ports they listen on (this process's first)."""
    ports = (free_port(), free_port())
    client = OpenSergoClient(
        control_plane.grpc_address,
        app=APP,
        snapshot=None,
        heartbeat=Heartbeat(interval=0.5),
        service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=[f"127.0.0.1:{ports[0]}"])],
    )
    client.subscribe(KIND)
    client.start()
    other = spawn_python(INSTANCE, control_plane.grpc_address, APP, str(ports[1]), log=tmp_path / "other.log")
    try:
        wait_until(lambda: len(items(control_plane, "instances")) == 2, timeout=30, what="2 instances")
        yield ports
    finally:
        client.stop()
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=10)


RULE = f"""apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {{name: views-limit, namespace: default, labels: {{app: {APP}}}}}
spec: {{metricType: RequestAmount, limitMode: Local, threshold: 5, statDuration: 1s}}
"""


def test_get_instances_apps_and_clients(
    control_plane: ControlPlaneProcess, two_instances: tuple[int, int], tmp_path: Path
) -> None:
    addresses = sorted(f"http://127.0.0.1:{port}" for port in two_instances)

    # instances: both, with their addresses; filtered by app and namespace.
    listed = items(control_plane, "instances")
    assert [(i["app"], i["healthy"]) for i in listed] == [(APP, True), (APP, True)]
    assert sorted(a for i in listed for a in i["addresses"]) == addresses
    table = cli(control_plane, "instances").splitlines()
    assert table[0].split() == ["APP", "NODE", "ADDRESSES", "TAG", "ENV", "HEALTHY"]
    assert sorted(row.split()[2] for row in table[1:] if row.strip()) == addresses
    assert items(control_plane, "instances", "--app", "another-app") == []
    assert items(control_plane, "instances", "--namespace", "elsewhere") == []
    assert len(items(control_plane, "instances", "--all-namespaces", "--app", APP)) == 2

    # apps: one app with two healthy instances.
    [app] = [a for a in items(control_plane, "apps") if a["app"] == APP]
    assert (app["instances"], app["healthyInstances"]) == (2, 2)
    [row] = [line.split() for line in cli(control_plane, "apps").splitlines() if line.split()[:1] == [APP]]
    assert row[:3] == [APP, "2", "2"]

    # clients: after a rule is applied, both subscribers ACKed its version.
    rules = tmp_path / "rule.yaml"
    rules.write_text(RULE)
    applied = run_cli("apply", "-f", str(rules), "--server", control_plane.http_url)
    assert applied.returncode == 0, applied.stderr

    def acked() -> list[tuple[int, int, str]]:
        return [
            (s["pushedVersion"], s["ackedVersion"], s["state"])
            for c in items(control_plane, "clients")
            if c["connected"]
            for s in c["subscriptions"]
            if s["kind"] == KIND and s["app"] == APP
        ]

    def both_acked() -> bool:
        states = acked()
        return len(states) == 2 and all(v > 0 and state == "acked" for v, _, state in states)

    wait_until(both_acked, timeout=30, what="both subscribers ACKed the rule")
    first, second = acked()
    version = first[0]
    assert first == second == (version, version, "acked")
    table = cli(control_plane, "clients").splitlines()
    assert table[0].split() == ["ID", "IDENTIFIER", "CONNECTED", "SUBSCRIPTIONS"]
    assert sum(f"RateLimitStrategy@{APP}:v{version}(acked)" in row for row in table) == 2
