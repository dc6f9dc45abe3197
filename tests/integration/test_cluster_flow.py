"""limitMode Global with real processes: 4 data planes share one cluster-wide threshold."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ControlPlaneProcess, put_object, spawn_python, wait_until
from tests.integration.apps.cluster_runs import admitted, first_steady_second, judged_seconds, lines

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
APP = Path(__file__).parent / "apps" / "cluster_client.py"


def apply(cp: ControlPlaneProcess, kind: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": FT,
        "kind": kind,
        "metadata": {"name": name, "labels": {"app": "cluster-app"}},
        "spec": spec,
    }
    response = put_object(cp, body)
    assert response.status_code in (200, 201), response.text


def rule(cp: ControlPlaneProcess, resource: str, strategy: str, kind: str) -> None:
    spec = {"targets": [{"targetResourceName": resource}], "strategies": [{"name": strategy, "kind": kind}]}
    apply(cp, "FaultToleranceRule", f"rule-{strategy}", spec)


def mode_since(log: Path, mode: str, since: float) -> float | None:
    """When the client at ``log`` first reported ``mode`` at or after ``since``."""
    times = [r["at"] for r in lines(log) if r.get("mode") == mode and r["at"] >= since]
    return min(times) if times else None


def show_client_logs(logs: list[Path]) -> None:
    """Print what the clients said (pytest shows it when the test fails)."""
    for log in logs:
        print(f"--- {log.name} ---")
        for line in log.read_text().splitlines():
            if not line.startswith((" ", "Traceback", '{"admitted"')):
                print(line[:300])


def test_global_rate_limit_accuracy_and_failover(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    spec = {"metricType": "RequestAmount", "limitMode": "Global", "threshold": 100, "statDurationSeconds": 1}
    apply(control_plane, "RateLimitStrategy", "global-100", spec)
    rule(control_plane, "GET:/x", "global-100", "RateLimitStrategy")
    logs = [tmp_path / f"client-{i}.log" for i in range(4)]
    # Each offers 60 requests/s for 24 s (long enough to outlive a slow restart on a busy CI host):
    # 240/s in all against a cluster threshold of 100/s.
    procs = [spawn_python(APP, control_plane.grpc_address, "GET:/x", "60", "24", log=log) for log in logs]
    try:
        wait_until(
            lambda: all(any(r.get("ready") for r in lines(log)) for log in logs), timeout=30, what="ready"
        )
        time.sleep(9)
        control_plane.kill()
        killed_at = time.time()
        # The mode watcher polls every 10 ms; allow for that much before the kill was recorded.
        wait_until(
            lambda: all(mode_since(log, "local", killed_at - 0.05) for log in logs), timeout=5, what="local"
        )
        to_local = max(mode_since(log, "local", killed_at - 0.05) or 0.0 for log in logs) - killed_at
        # Clients may reconnect before start() has seen the new process ready: take the time first.
        restarted_at = time.time()
        control_plane.start()
        ready_at = time.time()
        wait_until(
            lambda: all(mode_since(log, "global", restarted_at) for log in logs), timeout=15, what="global"
        )
        to_global = max(mode_since(log, "global", restarted_at) or 0.0 for log in logs) - restarted_at
        for p in procs:
            p.wait(timeout=30)
    finally:
        for p in procs:
            p.kill()
        show_client_logs(logs)
    results, totals = admitted(logs)
    series = [totals[s] for s in sorted(totals)]
    print(f"\nadmitted per second across 4 clients (threshold 100): {series}")
    print(f"control plane killed: all 4 clients on local shares after {to_local * 1000:.0f} ms")
    print(
        f"control plane back: all 4 clients in global mode {to_global * 1000:.0f} ms after its launch "
        f"(it took {(ready_at - restarted_at) * 1000:.0f} ms to report ready)"
    )
    # Global mode, steady state: after the warm-up and before the kill, in the seconds in which
    # every client offered its full 60/s and every token request was answered in time (else the
    # host starved a generator or the control plane: scheduler noise, not the limiter's accuracy).
    judged, excluded = judged_seconds(results, first_steady_second(results), int(killed_at))
    print(f"steady seconds judged: {[totals[s] for s in judged]}; excluded (a generator behind, or a"
          f" token request unanswered): {[totals[s] for s in excluded]}")  # fmt: skip
    assert len(judged) >= 3, f"judged {judged}, excluded {excluded}; series {series}"
    for second in judged:
        assert 90 <= totals[second] <= 110, f"{totals[second]} admitted in one second; series {series}"
    assert to_local < 3.0  # a speed figure (printed above): only a hang or a 10x regression fails


def test_dead_client_permits_are_reclaimed(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    apply(control_plane, "ConcurrencyLimitStrategy", "global-2",
          {"maxConcurrency": 2, "limitMode": "Global"})  # fmt: skip
    rule(control_plane, "GET:/slow", "global-2", "ConcurrencyLimitStrategy")
    holder_log = tmp_path / "holder.log"
    # The holder takes both permits and keeps them (its requests never finish).
    holder = spawn_python(APP, control_plane.grpc_address, "GET:/slow", "20", "1", "60", log=holder_log)
    probe_log = tmp_path / "probe.log"
    try:
        wait_until(lambda: any("admitted" in r for r in lines(holder_log)), timeout=30, what="holder")
        result = next(r for r in lines(holder_log) if "admitted" in r)
        assert sum(result["admitted"].values()) == 2
        probe = spawn_python(APP, control_plane.grpc_address, "GET:/slow", "20", "1", log=probe_log)
        probe.wait(timeout=30)
        blocked_run = next(r for r in lines(probe_log) if "admitted" in r)
        assert sum(blocked_run["admitted"].values()) == 0  # both permits are held elsewhere
        holder.kill()  # kill -9: its permits must come back
        holder.wait()
        probe = spawn_python(APP, control_plane.grpc_address, "GET:/slow", "20", "1", "5", log=probe_log)
        wait_until(lambda: any("admitted" in r for r in lines(probe_log)), timeout=30, what="probe")
        reclaimed_run = next(r for r in lines(probe_log) if "admitted" in r)
        assert sum(reclaimed_run["admitted"].values()) == 2
        probe.kill()
    finally:
        holder.kill()
