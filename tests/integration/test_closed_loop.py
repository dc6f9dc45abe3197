"""The closed loop with real processes: apply -> push -> ACK, update, delete, restart, snapshot."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.client import OpenSergoClient, Snapshot
from tests.helpers import ControlPlaneProcess, Recorder, run_cli, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RATE_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"

RULE = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata:
  name: rate-limit-foo
  labels:
    app: foo-app
spec:
  metricType: RequestAmount
  limitMode: Local
  threshold: {threshold}
  statDurationSeconds: 1
"""


def cli(cp: ControlPlaneProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--server", cp.http_url, stdin=stdin)


def acked_versions(cp: ControlPlaneProcess, kind: str = RATE_KIND) -> list[int | None]:
    clients = httpx.get(cp.http_url + "/api/v1/clients", params={"connected": "true"}).json()["items"]
    return [s["ackedVersion"] for c in clients for s in c["subscriptions"] if s["kind"] == kind]


def new_client(cp: ControlPlaneProcess, snapshots: Path, **kw: Any) -> OpenSergoClient:
    return OpenSergoClient(cp.grpc_address, app="foo-app", snapshot=Snapshot(snapshots), **kw)


def test_apply_update_delete(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    rec = Recorder()
    with new_client(control_plane, tmp_path / "snap") as client:
        client.subscribe(RATE_KIND, callback=rec)
        # The empty state of the world arrives at once (upstream would send nothing).
        wait_until(lambda: rec.last is not None and rec.last[1] == [], what="initial empty push")

        result = cli(control_plane, "apply", "-f", "-", stdin=RULE.format(threshold=10))
        assert result.returncode == 0, result.stderr
        assert "ratelimitstrategy.fault-tolerance.opensergo.io/rate-limit-foo created" in result.stdout
        wait_until(lambda: rec.thresholds() == [10], what="rule pushed")
        v1 = rec.last[0]  # type: ignore[index]
        assert v1 >= 1
        wait_until(lambda: acked_versions(control_plane) == [v1], what="ACK recorded")

        result = cli(control_plane, "apply", "-f", "-", stdin=RULE.format(threshold=10))
        assert "unchanged" in result.stdout

        cli(control_plane, "apply", "-f", "-", stdin=RULE.format(threshold=20))
        wait_until(lambda: rec.thresholds() == [20], what="update pushed")
        v2 = rec.last[0]  # type: ignore[index]
        assert v2 > v1
        wait_until(lambda: acked_versions(control_plane) == [v2], what="ACK of the update")

        result = cli(control_plane, "delete", "ratelimitstrategy", "rate-limit-foo")
        assert result.returncode == 0, result.stderr
        wait_until(lambda: rec.last is not None and rec.last[0] > v2 and rec.last[1] == [], what="empty push")
        assert client.cache.get(RATE_KIND) == []


def test_restart_keeps_rules_and_versions(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    rec = Recorder()
    cli(control_plane, "apply", "-f", "-", stdin=RULE.format(threshold=7))
    with new_client(control_plane, tmp_path / "snap") as client:
        client.subscribe(RATE_KIND, callback=rec)
        wait_until(lambda: rec.thresholds() == [7], what="rule pushed")
        before = rec.last[0]  # type: ignore[index]
        calls_before = len(rec.calls)

        control_plane.stop()
        control_plane.start()

        # The client reconnects on its own, re-subscribes and gets the same rules again.
        wait_until(lambda: len(rec.calls) > calls_before, timeout=20, what="push after restart")
        version, resources = rec.last  # type: ignore[misc]
        assert version >= before
        assert [r.spec.threshold for r in resources] == [7]
        wait_until(lambda: acked_versions(control_plane) == [version], what="ACK after restart")


def test_snapshot_is_enforced_when_control_plane_is_down(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    snapshots = tmp_path / "snap"
    rec = Recorder()
    cli(control_plane, "apply", "-f", "-", stdin=RULE.format(threshold=3))
    with new_client(control_plane, snapshots) as client:
        client.subscribe(RATE_KIND, callback=rec)
        wait_until(lambda: rec.thresholds() == [3], what="rule pushed")
    control_plane.stop()

    offline = Recorder()
    with new_client(control_plane, snapshots) as client:
        client.subscribe(RATE_KIND, callback=offline)
        wait_until(lambda: offline.thresholds() == [3], timeout=5, what="snapshot delivered while offline")
        assert [r.spec.threshold for r in client.cache.get(RATE_KIND)] == [3]

        # When the control plane comes back, live pushes take over.
        control_plane.start()
        cli(control_plane, "apply", "-f", "-", stdin=RULE.format(threshold=4))
        wait_until(lambda: offline.thresholds() == [4], timeout=20, what="live push after recovery")
