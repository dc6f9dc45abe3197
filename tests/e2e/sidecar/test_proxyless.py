"""Proxyless gRPC: a plain grpcio client dials ``xds:///provider`` with the bootstrap printed by
``opensergo xds-bootstrap`` and follows the provider's TrafficRouter and VirtualWorkload (weights
and a header route) over two versions of a gRPC server, with no sidecar and no SDK code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.sidecar.conftest import Mesh
from tests.helpers import ROOT, run_cli, spawn_python, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

APPS = Path(__file__).parent / "apps"

RULES = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: VirtualWorkload
metadata: {name: provider, labels: {app: provider}}
spec:
  host: provider
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: provider, labels: {app: provider}}
spec:
  hosts: [provider]
  http:
  - match: [{headers: {x-user: {exact: alice}}}]
    route: [{destination: {host: provider, subset: v2}}]
  - route:
    - {destination: {host: provider, subset: v1}, weight: 80}
    - {destination: {host: provider, subset: v2}, weight: 20}
"""


def _calls(bootstrap: Path, count: int, *headers: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(APPS / "xds_client.py"), "provider", str(count), *headers],
        capture_output=True,
        text=True,
        timeout=60,
        env={"GRPC_XDS_BOOTSTRAP": str(bootstrap), "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def test_proxyless_grpc_weighted_and_header_routes(mesh: Mesh, tmp_path: Path) -> None:
    for version in ("v1", "v2"):
        mesh.procs[f"grpc-{version}"] = spawn_python(
            APPS / "grpc_echo.py",
            mesh.cp.grpc_address,
            "provider",
            f"provider-{version}",
            f"version={version}",
            log=mesh.logs / f"grpc-{version}.log",
        )
    wait_until(lambda: len(mesh.instances("provider")) == 2, timeout=20, what="two gRPC providers")
    mesh.apply(RULES)
    printed = run_cli("xds-bootstrap", "--app", "consumer", "--control-plane", mesh.cp.grpc_address)
    assert printed.returncode == 0, printed.stderr
    bootstrap = tmp_path / "grpc-bootstrap.json"
    bootstrap.write_text(printed.stdout)
    assert json.loads(printed.stdout)["node"]["locality"]

    assert _calls(bootstrap, 20, "x-user=alice") == {"provider-v2": 20}
    seen = _calls(bootstrap, 300)
    assert set(seen) == {"provider-v1", "provider-v2"}, seen
    assert 0.13 <= seen["provider-v2"] / 300 <= 0.27, seen
    # The proxyless client is listed with its ACKed subscriptions.
    clients = [c for c in mesh.clients() if c.get("protocol") == "xds"]
    assert clients and all(s["state"] in ("acked", "pending") for c in clients for s in c["subscriptions"])
    assert any(s["state"] == "acked" for c in clients for s in c["subscriptions"])
