"""Metrics end to end: a real SDK exporting OTLP to the control plane, raw OTLP exports, the
downsampled history across a restart, and the control plane's Prometheus metrics (clients,
ACK/NACK counts, push latency)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from opensergo.client import Heartbeat, OpenSergoClient, Snapshot
from opensergo.governance import BlockedError, Engine, guard, load_rules
from opensergo.observability import enable_metrics, names
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from tests.helpers import ControlPlaneProcess, wait_until
from tests.integration.test_transport import RawStream, subscribe
from tests.unit.dashboard.otlp_builders import counter, gauge, histogram, request, res

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: rl, labels: {app: metrics-app}}
spec: {threshold: 3, statDuration: 1s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule, labels: {app: metrics-app}}
spec:
  targets: [{targetResourceName: "GET:/limited"}]
  strategies: [{name: rl, kind: RateLimitStrategy}]
"""


def series(cp: ControlPlaneProcess, app: str, window: int = 30) -> dict[str, Any]:
    data = httpx.get(
        f"{cp.http_url}/api/v1/metrics/series", params={"namespace": "default", "app": app, "window": window}
    ).json()
    return {r["resource"]: r for r in data["resources"]}


def prometheus(cp: ControlPlaneProcess) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"{cp.http_url}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_sdk_exports_to_the_control_plane(control_plane: ControlPlaneProcess) -> None:
    engine = Engine()
    load_rules(RULES, app="metrics-app", engine=engine)
    handle = enable_metrics(
        app="metrics-app", endpoint=control_plane.grpc_address, engine=engine, interval=0.25
    )
    try:
        deadline = time.monotonic() + 3
        blocked = 0
        while time.monotonic() < deadline:
            try:
                with guard("GET:/limited", engine=engine):
                    pass
            except BlockedError:
                blocked += 1
            time.sleep(0.01)
        assert blocked > 0
        handle.force_flush()

        def exported() -> dict[str, Any] | None:
            found = series(control_plane, "metrics-app").get("GET:/limited")
            return found if found and sum(p["block"] for p in found["points"]) >= blocked - 1 else None

        found = wait_until(exported, timeout=10, what="the exported block counts")
        total_blocks = sum(p["block"] for p in found["points"])
        assert total_blocks == pytest.approx(blocked, abs=1)
        assert sum(p["pass"] for p in found["points"]) > 0  # passes come through the engine's observer
        apps = httpx.get(f"{control_plane.http_url}/api/v1/metrics/apps", params={"window": 30}).json()[
            "items"
        ]
        assert [a["app"] for a in apps] == ["metrics-app"] and apps[0]["blockQps"] > 0
    finally:
        handle.shutdown()
        engine.close()


def test_raw_otlp_exports_and_history_survive_a_restart(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(
        tmp_path / "data", logs, ["--allow-loopback", "--metrics-history-resolution", "1"]
    )
    cp.start()
    channel = grpc.insecure_channel(cp.grpc_address)
    try:
        stub = ms_grpc.MetricsServiceStub(channel)
        start = time.time()
        bounds = list(names.RT_BOUNDARIES_MS)
        counts = [0] * (len(bounds) + 1)
        counts[bounds.index(20.0)] = 10
        for i in range(1, 4):
            now = time.time()
            stub.Export(
                request(
                    [
                        counter(names.PASSED, [(res("GET:/raw"), 10 * i)], start, now),
                        counter(
                            names.BLOCKED,
                            [(res("GET:/raw", **{names.RULE: "r", names.STRATEGY: "s"}), i)],
                            start,
                            now,
                        ),
                        histogram(res("GET:/raw"), [c * i for c in counts], bounds, 150.0 * i, start, now),
                        gauge(names.CONCURRENCY, [(res("GET:/raw"), 4)], now),
                        gauge(names.BREAKER_STATE, [(res("GET:/raw", **{names.STRATEGY: "cb"}), 1)], now),
                    ],
                    app="raw-app",
                )
            )
            time.sleep(0.3)
        found = wait_until(lambda: series(cp, "raw-app").get("GET:/raw"), timeout=5, what="raw series")
        wait_until(
            lambda: sum(p["pass"] for p in series(cp, "raw-app")["GET:/raw"]["points"]) == pytest.approx(30),
            timeout=5,
            what="30 passes in the last seconds",
        )
        found = series(cp, "raw-app")["GET:/raw"]
        assert sum(p["block"] for p in found["points"]) == pytest.approx(3)
        assert sum(p["completed"] for p in found["points"]) == pytest.approx(30)
        assert found["concurrency"] == 4
        assert found["breakers"] == [
            {"strategy": "cb", "instances": {"closed": 0, "open": 1, "half-open": 0}}
        ]
        p99s = [p["p99Rt"] for p in found["points"] if p["p99Rt"] is not None]
        assert p99s and all(15.0 < v <= 20.0 for v in p99s)

        def history() -> list[dict[str, Any]]:
            return list(
                httpx.get(
                    f"{cp.http_url}/api/v1/metrics/history", params={"namespace": "default", "app": "raw-app"}
                ).json()["items"]
            )

        wait_until(lambda: sum(i["passQps"] for i in history()) >= 29.9, timeout=10, what="history rows")
        before = history()
        channel.close()
        cp.stop()
        cp.start()
        assert history() == before
    finally:
        channel.close()
        cp.stop()


def test_prometheus_counts_clients_acks_nacks_and_push_latency(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    cp = control_plane
    raw_stream: RawStream | None = None
    client = OpenSergoClient(
        cp.grpc_address,
        app="foo-app",
        snapshot=Snapshot(tmp_path / "snap"),
        heartbeat=Heartbeat(interval=None),
    )
    client.subscribe(f"{FT}/RateLimitStrategy")
    client.start()
    try:
        wait_until(lambda: prometheus(cp).get("opensergo_connected_clients") == 1, what="one client")
        body = {
            "apiVersion": FT,
            "kind": "RateLimitStrategy",
            "metadata": {"name": "rl", "labels": {"app": "foo-app"}},
            "spec": {"threshold": 5, "statDuration": "1s"},
        }
        assert httpx.put(
            f"{cp.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies/rl", json=body
        ).is_success
        wait_until(
            lambda: prometheus(cp).get("opensergo_push_latency_seconds_count", 0) >= 1,
            timeout=10,
            what="a push latency sample",
        )
        metrics = prometheus(cp)
        assert metrics['opensergo_acks_total{kind="RateLimitStrategy"}'] >= 2  # initial state + the change
        assert metrics["opensergo_ack_latency_seconds_count"] >= 1
        assert metrics['opensergo_subscriptions{state="acked"}'] == 1

        # A raw stream NACKs what it gets.
        raw_stream = RawStream(cp.grpc_address)
        raw_stream.send(subscribe([f"{FT}/RateLimitStrategy"], "sub-1"))
        push = raw_stream.recv()
        raw_stream.send(
            pb.SubscribeRequest(
                response_ack="NACK",
                request_id=push.response_id,
                status=pb.Status(code=4002, message="cannot apply"),
                identifier="raw-test-client",
            )
        )
        wait_until(
            lambda: prometheus(cp).get('opensergo_nacks_total{kind="RateLimitStrategy"}') == 1,
            timeout=10,
            what="one NACK counted",
        )
        assert prometheus(cp)["opensergo_connected_clients"] == 2
        rollout = httpx.get(
            f"{cp.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies/rl/rollout"
        ).json()
        states = {c["identifier"]: (c["state"], c["message"]) for c in rollout["clients"]}
        assert states["raw-test-client"] == ("nacked", "cannot apply")
        assert states[client.identifier] == ("acked", "")
    finally:
        client.stop()
        if raw_stream is not None:
            raw_stream.close()


def _history_cp(tmp_path: Path, retention: int) -> ControlPlaneProcess:
    logs = tmp_path / "logs"
    logs.mkdir()
    args = ["--allow-loopback", "--metrics-history-resolution", "1"]
    return ControlPlaneProcess(
        tmp_path / "data", logs, [*args, "--metrics-history-retention", str(retention)]
    )


def _history(cp: ControlPlaneProcess, app: str) -> list[dict[str, Any]]:
    params = {"namespace": "default", "app": app, "start": 0, "end": int(time.time()) + 60}
    items: list[dict[str, Any]] = httpx.get(f"{cp.http_url}/api/v1/metrics/history", params=params).json()[
        "items"
    ]
    return items


def _serve_traffic(cp: ControlPlaneProcess, app: str, seconds: float) -> None:
    """An SDK exporting every 250 ms while guarding a few calls per 100 ms, for ``seconds``."""
    engine = Engine()
    load_rules(
        RULES.replace("GET:/limited", "GET:/kept").replace("threshold: 3", "threshold: 1000"),
        app="metrics-app",
        engine=engine,
    )
    handle = enable_metrics(app=app, endpoint=cp.grpc_address, engine=engine, interval=0.25)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(3):
                with guard("GET:/kept", engine=engine):
                    pass
            time.sleep(0.1)
        handle.force_flush()
    finally:
        handle.shutdown()
        engine.close()


def test_metrics_history_keeps_only_its_retention(tmp_path: Path) -> None:
    retention = 4
    cp = _history_cp(tmp_path, retention)
    cp.start()
    try:
        _serve_traffic(cp, "kept-app", 8)
        rows = wait_until(lambda: _history(cp, "kept-app"), timeout=10, what="history rows")
        # Written every second, pruned as it goes: nothing older than the retention (+ the last
        # period's grace and one resolution).
        assert min(r["t"] for r in rows) >= time.time() - retention - 4, rows
        assert all(r["resource"] == "GET:/kept" and r["seconds"] == 1 for r in rows)
        # With the app silent, the history it left is gone after the retention, as documented
        # ("kept for --metrics-history-retention seconds").
        wait_until(lambda: _history(cp, "kept-app") == [], timeout=retention + 10, what="history expired")
    finally:
        cp.stop()


def test_metrics_history_retention_0_turns_history_off(tmp_path: Path) -> None:
    cp = _history_cp(tmp_path, 0)
    cp.start()
    try:
        _serve_traffic(cp, "no-history-app", 4)
        # The metrics arrived (live series in memory) ...
        wait_until(lambda: series(cp, "no-history-app").get("GET:/kept"), timeout=10, what="live series")
        time.sleep(3)  # longer than a history period and its grace: a row would have been written
        # ... and none went to a history: no rows, no database file.
        assert _history(cp, "no-history-app") == []
        assert not (tmp_path / "data" / "metrics-history.db").exists()
    finally:
        cp.stop()
